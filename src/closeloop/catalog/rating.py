"""Rating: price terms x quantity -> integer minor units. Pure; rounds once per line (ROUND_HALF_UP).

The rules (SCENARIOS.md, "Rules that the numbers depend on"):

- ``flat``: the amount, whatever the quantity.
- ``per_unit``: quantity x amount.
- ``tiered`` (graduated): each tier's units at that tier's unit amount, plus the tier's
  ``flat_amount`` for every tier reached (a tier is reached when at least part of the quantity
  falls in it; a quantity of 0 reaches no tier).
- ``volume``: every unit at the unit amount of the tier the total falls in, plus that tier's
  ``flat_amount`` (a quantity of 0 falls in no tier and costs nothing).
- ``package``: ceil(quantity / package_size) x amount.
- ``usage``: per unit on the aggregated quantity.
- Any model with a ``metric`` rates the period's aggregated quantity (:func:`aggregate`).

A line's discount is applied to the exact amount before the one rounding:
``round_half_up(exact x (100 - discount_pct) / 100)``. Tiers' ``up_to`` are inclusive: with
``up_to: 10`` the tenth unit is still in the first tier; fractional quantities split at the bound.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from closeloop.catalog.model import PriceTerms, Tier
from closeloop.core.errors import ValidationError
from closeloop.core.money import round_half_up

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class RatedPart:
    """One piece of a rated amount, for showing how a charge was computed (exact, not rounded)."""

    description: str
    quantity: Decimal
    unit_amount: Decimal
    flat_amount: Decimal
    amount: Decimal


def _check_quantity(quantity: Decimal) -> Decimal:
    q = Decimal(quantity)
    if not q.is_finite() or q < 0:
        raise ValidationError(f"cannot rate a quantity of {quantity}: quantities are zero or more", field="quantity")
    return q


def breakdown(terms: PriceTerms, quantity: Decimal | int | str) -> tuple[RatedPart, ...]:
    """The exact (unrounded) parts of a charge: one per tier reached, or one for the other models."""
    q = _check_quantity(Decimal(quantity))
    model = terms.model
    if model == "flat":
        assert terms.amount is not None
        return (RatedPart("flat", Decimal(1), Decimal(0), terms.amount, terms.amount),)
    if model in ("per_unit", "usage"):
        assert terms.amount is not None
        return (RatedPart("per unit", q, terms.amount, Decimal(0), q * terms.amount),)
    if model == "package":
        assert terms.amount is not None and terms.package_size
        packages = (q / Decimal(terms.package_size)).to_integral_value(rounding=ROUND_CEILING)
        return (RatedPart(f"packages of {terms.package_size}", packages, terms.amount, Decimal(0),
                          packages * terms.amount),)
    if model == "tiered":
        return _graduated(terms.tiers, q)
    if model == "volume":
        return _volume(terms.tiers, q)
    raise ValidationError(f"unknown price model {model!r}", field="model")


def _graduated(tiers: tuple[Tier, ...], q: Decimal) -> tuple[RatedPart, ...]:
    parts = []
    lower = Decimal(0)
    for i, tier in enumerate(tiers):
        if q <= lower:
            break
        upper = q if tier.up_to is None else min(q, tier.up_to)
        units = upper - lower
        if units > 0:
            parts.append(RatedPart(f"tier {i + 1}", units, tier.unit_amount, tier.flat_amount,
                                   units * tier.unit_amount + tier.flat_amount))
        if tier.up_to is None:
            break
        lower = tier.up_to
    return tuple(parts)


def tier_for(tiers: tuple[Tier, ...], q: Decimal) -> int:
    """Index of the tier a total quantity falls in (the first whose inclusive ``up_to`` holds it)."""
    for i, tier in enumerate(tiers):
        if tier.up_to is None or q <= tier.up_to:
            return i
    raise ValidationError(f"quantity {q} is above the last tier and the last tier is bounded", field="tiers")


def _volume(tiers: tuple[Tier, ...], q: Decimal) -> tuple[RatedPart, ...]:
    if q == 0:
        return ()
    i = tier_for(tiers, q)
    tier = tiers[i]
    return (RatedPart(f"tier {i + 1}", q, tier.unit_amount, tier.flat_amount, q * tier.unit_amount + tier.flat_amount),)


def rate_exact(terms: PriceTerms, quantity: Decimal | int | str) -> Decimal:
    """The exact charge in major units, before discount and rounding."""
    return sum((p.amount for p in breakdown(terms, quantity)), Decimal(0))


def check_discount(discount_pct: Decimal | int | str | None, field: str = "discount_pct") -> Decimal:
    d = Decimal(0) if discount_pct is None else Decimal(discount_pct)
    if not d.is_finite() or d < 0 or d > 100:
        raise ValidationError(f"{field} {discount_pct} must be between 0 and 100", field=field)
    return d


def apply_discount(exact: Decimal, discount_pct: Decimal) -> Decimal:
    if not discount_pct:
        return exact
    return exact * (HUNDRED - discount_pct) / HUNDRED


def rate(terms: PriceTerms, quantity: Decimal | int | str, *, discount_pct: Decimal | int | str | None = None) -> int:
    """The charge for ``quantity`` under ``terms``, after the discount, in integer minor units (rounded once)."""
    d = check_discount(discount_pct)
    return round_half_up(apply_discount(rate_exact(terms, quantity), d), terms.currency)


# --------------------------------------------------------------------------- aggregation


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One usage event as aggregation sees it."""

    quantity: Decimal
    properties: Mapping[str, Any] | None = None


def unique_value(record: UsageRecord, aggregation_property: str | None) -> str:
    """What ``unique_count`` counts: the named property's value; without a property name, the event's
    whole property set (canonical JSON), or its quantity when it has no properties."""
    props = record.properties or {}
    if aggregation_property is not None:
        value = props.get(aggregation_property)
        return json.dumps(value, sort_keys=True, default=str)
    if props:
        return json.dumps(dict(props), sort_keys=True, default=str)
    return str(Decimal(record.quantity).normalize())


def aggregate(aggregation: str, records: Iterable[UsageRecord], aggregation_property: str | None = None) -> Decimal:
    """A period's quantity from its usage events: ``sum``, ``count``, ``max`` (0 without events) or
    ``unique_count`` (distinct values, see :func:`unique_value`; events lacking a named property are
    not counted)."""
    items = list(records)
    if aggregation == "sum":
        return sum((Decimal(r.quantity) for r in items), Decimal(0))
    if aggregation == "count":
        return Decimal(len(items))
    if aggregation == "max":
        return max((Decimal(r.quantity) for r in items), default=Decimal(0))
    if aggregation == "unique_count":
        if aggregation_property is not None:
            items = [r for r in items if (r.properties or {}).get(aggregation_property) is not None]
        return Decimal(len({unique_value(r, aggregation_property) for r in items}))
    raise ValidationError(f"unknown aggregation {aggregation!r}", field="aggregation")


def rate_usage(terms: PriceTerms, records: Iterable[UsageRecord], *,
               discount_pct: Decimal | int | str | None = None) -> tuple[Decimal, int]:
    """Aggregate a metered price's period of usage and rate it: (aggregated quantity, minor units)."""
    if not terms.metered:
        raise ValidationError("rate_usage needs a metered price (one with a metric)", field="metric")
    quantity = aggregate(terms.aggregation or "sum", records, terms.aggregation_property)
    return quantity, rate(terms, quantity, discount_pct=discount_pct)
