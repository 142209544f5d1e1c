"""Work that ``closeloop worker`` processes share besides the outbox: units an area hands out.

An area registers a work source with ``@work_source(name)``: a function ``(app, worker_id) -> int``
that claims one unit of its pending work (a bill run's partition, say), does it in its own unit of
work and returns how many units it did (0 when there is nothing to claim). Claims must be safe for
many workers at once (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's writer lock serialises them)
and a unit that dies half-way must leave nothing behind (one transaction per unit), so that a killed
worker's unit is simply claimed again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

WorkSource = Callable[[Any, str], int]

_SOURCES: dict[str, WorkSource] = {}


def work_source(name: str) -> Callable[[WorkSource], WorkSource]:
    def register(fn: WorkSource) -> WorkSource:
        _SOURCES[name] = fn
        return fn

    return register


def sources() -> dict[str, WorkSource]:
    return dict(_SOURCES)


def run_work_sources(app: Any, worker_id: str) -> int:
    """One round: every source is asked for one unit; returns how many units were done."""
    return sum(fn(app, worker_id) for fn in list(_SOURCES.values()))
