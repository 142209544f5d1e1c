"""Dates and accounting periods. Pure functions; the date is always an argument.

Dates travel as ISO strings ``YYYY-MM-DD`` and periods as ``YYYY-MM``; both
sort lexically in time order, which the storage layer relies on.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, timedelta

from closeloop.core.errors import ValidationError

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def parse_date(value: str | date, *, field: str = "date", record: str | None = None) -> date:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise ValidationError(
            f"{record + ': ' if record else ''}{field} {value!r} is not a date (expected YYYY-MM-DD)",
            field=field,
            record=record,
        )
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{field} {value!r} is not a valid calendar date", field=field, record=record) from None


def iso(d: date) -> str:
    return d.isoformat()


def check_period(value: str, *, field: str = "period") -> str:
    if not isinstance(value, str) or not _PERIOD_RE.match(value):
        raise ValidationError(f"{field} {value!r} is not a period (expected YYYY-MM)", field=field)
    return value


def period_of(d: date | str) -> str:
    """The calendar-month period of a date: 2026-03-15 -> "2026-03"."""
    if isinstance(d, str):
        return d[:7]
    return f"{d.year:04d}-{d.month:02d}"


def period_start(period: str) -> date:
    year, month = int(period[:4]), int(period[5:7])
    return date(year, month, 1)


def period_end(period: str) -> date:
    year, month = int(period[:4]), int(period[5:7])
    return date(year, month, calendar.monthrange(year, month)[1])


def next_period(period: str) -> str:
    return period_of(period_end(period) + timedelta(days=1))


def prev_period(period: str) -> str:
    return period_of(period_start(period) - timedelta(days=1))


def periods_between(first: str, last: str) -> list[str]:
    """Inclusive list of periods from ``first`` to ``last``."""
    out = []
    p = first
    while p <= last:
        out.append(p)
        p = next_period(p)
    return out


def add_months(d: date, months: int, day: int | None = None) -> date:
    """Shift by whole months, clamping the day to the month's length (Jan 31 + 1 month = Feb 28/29)."""
    month_index = d.year * 12 + (d.month - 1) + months
    year, month = divmod(month_index, 12)
    month += 1
    want = d.day if day is None else day
    return date(year, month, min(want, calendar.monthrange(year, month)[1]))


def days_between(start: date, end: date) -> int:
    """Days in the half-open interval [start, end)."""
    return (end - start).days
