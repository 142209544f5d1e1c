"""Opt-in fault points for crash tests: kill the process (SIGKILL) at the n-th pass through a named point.

``CLOSELOOP_FAULT=<point>:<n>`` in a process's environment kills it, with no
cleanup at all, the n-th time it reaches ``<point>``; ``<point>`` may be a
name, a prefix ending in ``*`` (``uow.*``) or ``*`` (any point). The points:

- ``uow.emit``: an event row was written to the outbox (the transaction is still open);
- ``uow.commit``: a unit of work is about to commit (everything written, nothing durable yet);
- ``uow.committed``: the commit is durable, the after-commit hooks (cache fills) have not run
  and, in the embedded mode, the command's events have not been delivered yet;
- ``dispatch.claimed``, ``dispatch.before_handler``, ``dispatch.after_handler``,
  ``dispatch.before_commit``, ``dispatch.after_commit``: the dispatcher's own points
  (:func:`closeloop.core.events.set_fault_hook`).

Unset, nothing is installed and a point costs one global read. The crash
suite (``closeloop.bench.crash``) arms the same killer with :func:`arm` at the
start of the phase it targets, and counts the points of an uninterrupted run
with :func:`install`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

HOOK: Callable[[str], None] | None = None


def hit(point: str) -> None:
    """Pass through a fault point (callers test ``faults.HOOK is not None`` first, so unset costs nothing)."""
    if HOOK is not None:
        HOOK(point)


def install(fn: Callable[[str], None] | None) -> None:
    """Install ``fn(point)`` for every point, the dispatcher's included; None removes it."""
    global HOOK
    from closeloop.core import events

    HOOK = fn
    events.set_fault_hook(None if fn is None else (lambda point: fn(f"dispatch.{point}")))


def matches(spec: str, point: str) -> bool:
    if spec == "*":
        return True
    if spec.endswith("*"):
        return point.startswith(spec[:-1])
    return point == spec


def killer(spec: str, n: int, on_kill: Callable[[str, int], None] | None = None) -> Callable[[str], None]:
    """A hook that SIGKILLs this process the ``n``-th time a point matching ``spec`` is reached."""
    if n < 1:
        raise ValueError("n counts from 1")
    seen = 0

    def hook(point: str) -> None:
        nonlocal seen
        if matches(spec, point):
            seen += 1
            if seen == n:
                if on_kill is not None:
                    on_kill(point, n)
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def parse(value: str) -> tuple[str, int]:
    point, sep, count = value.rpartition(":")
    if not sep or not point or not count.isdigit() or int(count) < 1:
        raise ValueError(f"CLOSELOOP_FAULT={value!r}: expected <point>:<n> with n >= 1 (e.g. uow.commit:3)")
    return point, int(count)


def arm(spec: str, n: int, on_kill: Callable[[str, int], None] | None = None) -> None:
    install(killer(spec, n, on_kill))


def from_environment() -> None:
    value = os.environ.get("CLOSELOOP_FAULT")
    if value:
        arm(*parse(value))


from_environment()
