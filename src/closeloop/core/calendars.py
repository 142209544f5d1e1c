"""Fiscal calendars: which accounting period a date falls in, and each period's first and last day.

- ``calendar`` (default): periods are calendar months, labelled ``YYYY-MM``.
- ``4-4-5``: a 52/53-week retail calendar. Fiscal year ``Y`` ends on the last Saturday of
  December ``Y`` and starts the day after the previous one ended; each quarter has periods of
  4, 4 and 5 weeks; a 53-week year adds its extra week to period 12. Periods are labelled
  ``YYYY-MM`` too, with ``YYYY`` the fiscal year and ``MM`` the period number, so every
  command that takes a period works the same way.
Pure functions; the date is always an argument.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

from closeloop.core.errors import ValidationError
from closeloop.core.periods import check_period, period_end, period_of, period_start

WEEKS_445 = (4, 4, 5, 4, 4, 5, 4, 4, 5, 4, 4, 5)


class FiscalCalendar:
    name = "calendar"

    def period_of(self, day: date) -> str:
        return period_of(day)

    def bounds(self, period: str) -> tuple[date, date]:
        check_period(period)
        return period_start(period), period_end(period)

    def next_period(self, period: str) -> str:
        return self.period_of(self.bounds(period)[1] + timedelta(days=1))

    def periods_of_year(self, year: int) -> list[str]:
        return [f"{year:04d}-{m:02d}" for m in range(1, 13)]


class Retail445(FiscalCalendar):
    name = "4-4-5"

    @staticmethod
    @lru_cache(maxsize=256)
    def year_end(year: int) -> date:
        last = date(year, 12, 31)
        return last - timedelta(days=(last.weekday() - 5) % 7)  # weekday 5 = Saturday

    def year_start(self, year: int) -> date:
        return self.year_end(year - 1) + timedelta(days=1)

    def weeks(self, year: int) -> tuple[int, ...]:
        total = (self.year_end(year) - self.year_start(year)).days + 1
        extra = total // 7 - 52
        return (*WEEKS_445[:-1], WEEKS_445[-1] + extra)

    def period_of(self, day: date) -> str:
        year = day.year if day <= self.year_end(day.year) else day.year + 1
        offset_weeks = (day - self.year_start(year)).days // 7
        cumulative = 0
        for index, length in enumerate(self.weeks(year), 1):
            cumulative += length
            if offset_weeks < cumulative:
                return f"{year:04d}-{index:02d}"
        raise AssertionError("date beyond the fiscal year")  # pragma: no cover

    def bounds(self, period: str) -> tuple[date, date]:
        check_period(period)
        year, number = int(period[:4]), int(period[5:7])
        weeks = self.weeks(year)
        start = self.year_start(year) + timedelta(weeks=sum(weeks[: number - 1]))
        return start, start + timedelta(weeks=weeks[number - 1]) - timedelta(days=1)


_CALENDARS: dict[str, FiscalCalendar] = {"calendar": FiscalCalendar(), "4-4-5": Retail445()}


def calendar_named(name: str) -> FiscalCalendar:
    found = _CALENDARS.get(name)
    if found is None:
        raise ValidationError(f"unknown fiscal calendar {name!r}; use one of {', '.join(_CALENDARS)}",
                              field="fiscal_calendar")
    return found
