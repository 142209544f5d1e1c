"""Billing periods of a contract and the value of a line over a span of days. Pure.

A contract's billing periods follow its billing day: the *anchor* is the first date on or after
the contract start whose day of month is the billing day (clamped to the month's length: a
billing day of 31 is the 30th in April, the 28th or 29th in February). Periods of N months run
from anchor + k x N months to anchor + (k + 1) x N months (half-open), for every integer k, so a
start before the anchor falls in the period that ends at the anchor ("the billing period that
encloses it", SCENARIOS.md).

A line charging C per billing period is worth, over the days [first, last]:

    sum over the periods p it overlaps of  round_half_up(C x days in p and [first, last] / days in p)

so every full period is exactly C and a partial period is prorated by days, rounded once per
piece. This is the rule bill runs follow; contract values (TCV) are built from it so that what a
contract says it is worth and what billing invoices agree.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

from closeloop.core.periods import add_months

ONE_DAY = timedelta(days=1)


def round_fraction(value: Fraction) -> int:
    """ROUND_HALF_UP of an exact rational to an integer (halves away from zero)."""
    if value >= 0:
        return int((value + Fraction(1, 2)).__floor__())
    return -int((-value + Fraction(1, 2)).__floor__())


def clamp_day(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def anchor_date(start: date, billing_day: int) -> date:
    """The first date on or after ``start`` that falls on the billing day (clamped to the month)."""
    candidate = clamp_day(start.year, start.month, billing_day)
    if candidate >= start:
        return candidate
    nxt = add_months(date(start.year, start.month, 1), 1)
    return clamp_day(nxt.year, nxt.month, billing_day)


@dataclass(frozen=True, slots=True)
class Grid:
    """The billing-period grid of a contract: anchor, billing day and period length in months."""

    anchor: date
    billing_day: int
    months: int

    @classmethod
    def of(cls, contract_start: date, billing_day: int, months: int) -> Grid:
        return cls(anchor_date(contract_start, billing_day), billing_day, months)

    def boundary(self, k: int) -> date:
        return _boundary(self.anchor, self.billing_day, self.months, k)

    def index_of(self, day: date) -> int:
        """k such that boundary(k) <= day < boundary(k + 1)."""
        months = (day.year - self.anchor.year) * 12 + (day.month - self.anchor.month)
        k = months // self.months
        while self.boundary(k) > day:
            k -= 1
        while self.boundary(k + 1) <= day:
            k += 1
        return k

    def period_of(self, day: date) -> tuple[date, date]:
        """The billing period enclosing ``day``: (first day, first day of the next period)."""
        k = self.index_of(day)
        return self.boundary(k), self.boundary(k + 1)

    def pieces(self, first: date, last: date) -> Iterator[tuple[date, date, date, date]]:
        """The periods overlapping the inclusive span [first, last]:
        (period start, period end exclusive, overlap start, overlap end exclusive)."""
        return iter(_pieces(self, first, last))


# Contracts signed alike share a grid and a span: a list of a hundred thousand contracts (values, due
# schedules) cuts the same few thousand spans over and over, and the calendar arithmetic is the cost.
@lru_cache(maxsize=65536)
def _boundary(anchor: date, billing_day: int, months: int, k: int) -> date:
    return add_months(anchor, k * months, day=billing_day)


@lru_cache(maxsize=8192)
def _pieces(grid: Grid, first: date, last: date) -> tuple[tuple[date, date, date, date], ...]:
    if last < first:
        return ()
    end = last + ONE_DAY
    k = grid.index_of(first)
    out = []
    while True:
        p_start, p_end = grid.boundary(k), grid.boundary(k + 1)
        if p_start >= end:
            return tuple(out)
        out.append((p_start, p_end, max(first, p_start), min(end, p_end)))
        k += 1


def prorated(amount: int, grid: Grid, first: date, last: date) -> int:
    """Value of ``amount`` per period over [first, last]: each period's share rounded half-up, summed."""
    total = 0
    for p_start, p_end, o_start, o_end in grid.pieces(first, last):
        days = (o_end - o_start).days
        full = (p_end - p_start).days
        total += amount if days == full else round_fraction(Fraction(amount) * days / full)
    return total


def months_in(grid_monthly: Grid, first: date, last: date) -> Fraction:
    """How many billing months [first, last] spans, exactly (partial months by days)."""
    total = Fraction(0)
    for p_start, p_end, o_start, o_end in grid_monthly.pieces(first, last):
        total += Fraction((o_end - o_start).days, (p_end - p_start).days)
    return total


def to_fraction(value: Decimal) -> Fraction:
    return Fraction(value)
