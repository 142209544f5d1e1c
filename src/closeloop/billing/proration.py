"""Proration by days. Pure; the rule of SCENARIOS.md ("Rules that the numbers depend on").

A partial period is charged as ``price x days / days in the billing period that encloses it``
(periods follow the contract's billing day), rounded ROUND_HALF_UP once, per line. On a change
in a period billed in advance:

- credit = old price x unused days / days in the old price's enclosing period, capped at what is
  still creditable on the original line;
- charge = new price x days from the effective date to the end of the new price's enclosing period.

Arrears periods are split at the change (each piece charged by the same rule).

Example: 100.00 per month, billing day 1, upgrade to 200.00 effective 2026-01-16 (January has 31
days, 16 of them unused from the 16th): credit = 100.00 x 16 / 31 = 51.6129 -> -51.61; charge =
200.00 x 16 / 31 = 103.2258 -> 103.23.
"""

from __future__ import annotations

from fractions import Fraction

from closeloop.contracts.schedule import round_fraction


def prorate(amount: int, days: int, full_days: int) -> int:
    """``amount`` (minor units per full period) for ``days`` of a ``full_days`` period, rounded half-up."""
    if full_days <= 0:
        raise ValueError("a billing period has at least one day")
    if days == full_days:
        return amount
    return round_fraction(Fraction(amount * days, full_days))


def capped_credit(period_amount: int, unused_days: int, full_days: int, creditable: int,
                  already: int = 0) -> int:
    """The credit (positive minor units) for ``unused_days`` of a period billed in advance.

    ``already`` is what earlier changes credited on the same original line for the same reason
    (the target credit is cumulative: a line shortened twice is credited up to the total unused
    part); ``creditable`` is what is still creditable on the original line."""
    target = prorate(period_amount, unused_days, full_days) if period_amount >= 0 else 0
    return max(0, min(target - already, creditable))
