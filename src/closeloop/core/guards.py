"""Command guards: checks every command passes after authorisation (e.g. the rollout's live scope).

An area registers ``fn(uow, operation, command)`` with :func:`command_guard`; it raises a
``CloseloopError`` (``not_live``, ...) to refuse the command. Guards see the parsed command,
so they judge exactly what would run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Guard = Callable[[Any, Any, Any], None]
_GUARDS: list[Guard] = []


def command_guard(fn: Guard) -> Guard:
    if fn not in _GUARDS:
        _GUARDS.append(fn)
    return fn


def run_guards(uow: Any, op: Any, cmd: Any) -> None:
    for guard in _GUARDS:
        guard(uow, op, cmd)
