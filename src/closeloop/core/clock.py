"""Clocks. Business code never reads the system time; it asks the unit of work's clock.

Scenarios run on a :class:`ScenarioClock` that only moves forward; the system
clock is UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from closeloop.core.errors import ValidationError


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def today(self) -> date:
        return self.now().date()

    def timestamp(self) -> str:
        return self.now().isoformat(timespec="microseconds").replace("+00:00", "Z")


class SystemClock(Clock):
    pass


class ScenarioClock(Clock):
    """A clock set by the scenario's ``at:`` steps. It never moves backwards."""

    def __init__(self, start: date | None = None) -> None:
        self._day = start or datetime.now(UTC).date()
        self._tick = 0

    def set(self, day: date) -> None:
        if day < self._day:
            raise ValidationError(
                f"the scenario clock cannot move backwards from {self._day} to {day}", field="at"
            )
        if day != self._day:
            self._tick = 0
        self._day = day

    def now(self) -> datetime:
        # A strictly increasing timestamp within the day keeps recorded order stable.
        self._tick += 1
        return datetime.combine(self._day, time(12, 0), UTC).replace(microsecond=self._tick % 1_000_000)

    def today(self) -> date:
        return self._day
