"""Billing's pure records: subscriptions (the billing view of contracts), billed items, charges,
draft invoices, and the usage book the generator rates from. No database, no clock.

A :class:`Subscription` is what billing learned from a contract's events: its header and its
change log (the contracts area's :class:`~closeloop.contracts.model.Change` records, replayed
with :func:`~closeloop.contracts.model.replay`, so billing and contract values agree), plus the
milestones completed and the partial billings recorded against its lines.

A :class:`BilledItem` is one line already on an invoice (issued or held). A :class:`Charge` is a
line the generator proposes; the service turns charges into invoice lines (with tax) and items.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from closeloop.contracts.model import Change

KINDS = ("recurring", "usage", "one_time", "milestone", "partial", "credit", "minimum", "discount", "wallet_topup")
# Charges a coupon may discount (not credits, other discounts or wallet top-ups).
DISCOUNTABLE = ("recurring", "usage", "one_time", "milestone", "partial", "minimum")
MICRO = Decimal(1_000_000)

# Where recognition lands when the product does not say (invoice.issued lines carry revenue_role).
DEFAULT_REVENUE_ROLE = {"ratable": "revenue", "point_in_time": "revenue", "usage": "usage_revenue",
                        "milestone": "services_revenue"}


@dataclass(frozen=True, slots=True)
class Account:
    """The invoicing unit: one customer, selling entity and currency."""

    customer_id: int
    customer: str  # external id
    entity: str
    currency: str
    payment_terms_days: int = 30


@dataclass(frozen=True, slots=True)
class MilestoneCompletion:
    contract_id: str
    line_id: str
    milestone_id: str
    date: date


@dataclass(frozen=True, slots=True)
class PartialBilling:
    """``billing.partial``: ``amount`` of a one-time line billed on ``date``; the rest is billed later."""

    id: int
    contract_id: str
    line_id: str
    amount: int
    date: date
    description: str = ""


@dataclass(frozen=True, slots=True)
class Subscription:
    """The billing view of one contract, derived only from its events."""

    contract_id: str
    customer_id: int
    entity: str
    currency: str
    billing_day: int
    changes: tuple[Change, ...]
    milestones: tuple[MilestoneCompletion, ...] = ()
    partials: tuple[PartialBilling, ...] = ()
    scan_from: date | None = None  # everything due before the period enclosing this date is billed


@dataclass(frozen=True, slots=True)
class BilledItem:
    """A line already invoiced. Dates: ``period_*`` the enclosing billing period, ``service_*`` the
    days charged; ends are exclusive. ``credited``: credited by later changes; ``memo_credited``: by
    credit memos. ``ref``: milestone id or ``partial:<id>``. ``credit_of``: the item a credit reverses."""

    id: int
    contract_id: str
    line_id: str
    version: int
    kind: str
    amount: int
    period_start: date | None = None
    period_end: date | None = None
    service_from: date | None = None
    service_to: date | None = None
    period_amount: int | None = None
    quantity: Decimal = Decimal(0)
    usage_count: int = 0
    credited: int = 0
    memo_credited: int = 0
    ref: str | None = None
    credit_of: int | None = None


@dataclass(frozen=True, slots=True)
class Charge:
    """A line the generator proposes. ``natural`` is the date it becomes due; ``scheduled`` charges
    (a period start or end on the grid, a contract's first day, a milestone or partial date) date an
    invoice of their own; the others (changes, late usage) go on the next invoice."""

    contract_id: str
    line_id: str
    version: int
    kind: str
    description: str
    amount: int
    natural: date
    scheduled: bool
    quantity: Decimal = Decimal(1)
    unit_price: Decimal | None = None
    sku: str | None = None
    period_start: date | None = None
    period_end: date | None = None
    service_from: date | None = None
    service_to: date | None = None
    period_amount: int | None = None
    usage_count: int = 0
    credit_of: int | None = None
    ref: str | None = None
    tax_code: str = "saas"
    revenue_role: str = "revenue"
    treatment: str = "ratable"
    product_family: str | None = None
    performing_entity: str | None = None
    rank: int = 0  # the line's position in its contract (ordering on the invoice)


@dataclass(frozen=True, slots=True)
class DraftInvoice:
    """An invoice the generator proposes. ``item_ids``: the provisional (negative) id each charge got as a
    billed item in this generation, which later credits of the same generation refer to (``credit_of``)."""

    account: Account
    date: date
    charges: tuple[Charge, ...]
    item_ids: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()  # printed on the invoice (e.g. a coupon's unused part)

    @property
    def subtotal(self) -> int:
        return sum(c.amount for c in self.charges)


@dataclass(frozen=True, slots=True)
class Generation:
    invoices: tuple[DraftInvoice, ...]
    next_date: date | None  # when something next falls due for this account (a hint for the run)


# --------------------------------------------------------------------------- usage


@dataclass(frozen=True, slots=True)
class UsageDay:
    day: date
    total_micro: int
    count: int
    max_micro: int
    values: tuple[str, ...] = ()  # unique_count: the distinct values seen that day


@dataclass
class UsageBook:
    """A customer's usage by metric and day, as aggregated by the store (exact: micro-units)."""

    days: dict[str, list[UsageDay]] = field(default_factory=dict)

    def add(self, metric: str, day: UsageDay) -> None:
        self.days.setdefault(metric, []).append(day)

    def seal(self) -> UsageBook:
        for items in self.days.values():
            items.sort(key=lambda d: d.day)
        return self

    def aggregate(self, metric: str, start: date, end: date, aggregation: str) -> tuple[Decimal, int]:
        """(quantity, events) of ``metric`` over the days [start, end)."""
        items = self.days.get(metric)
        if not items:
            return Decimal(0), 0
        i = bisect_left([d.day for d in items], start)
        total = count = 0
        peak = 0
        seen: set[str] = set()
        while i < len(items) and items[i].day < end:
            d = items[i]
            total += d.total_micro
            count += d.count
            peak = max(peak, d.max_micro)
            seen.update(d.values)
            i += 1
        if aggregation == "count":
            return Decimal(count), count
        if aggregation == "max":
            return Decimal(peak) / MICRO, count
        if aggregation == "unique_count":
            return Decimal(len(seen)), count
        return Decimal(total) / MICRO, count


def dec_plain(value: Decimal) -> str:
    """A quantity as a plain decimal string ("10", "2.5")."""
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    return format(value.normalize(), "f")


def item_from_charge(item_id: int, c: Charge) -> BilledItem:
    return BilledItem(id=item_id, contract_id=c.contract_id, line_id=c.line_id, version=c.version, kind=c.kind,
                      amount=c.amount, period_start=c.period_start, period_end=c.period_end,
                      service_from=c.service_from, service_to=c.service_to, period_amount=c.period_amount,
                      quantity=c.quantity, usage_count=c.usage_count, ref=c.ref, credit_of=c.credit_of)


def charge_sort_key(c: Charge) -> tuple[Any, ...]:
    """Invoice line order: by contract, line, service start; a credit before the charge that replaces it; a
    minimum commitment's true-up after the usage it completes."""
    return (c.contract_id or "", c.rank, c.service_from or c.natural,
            0 if c.kind == "credit" else 2 if c.kind == "minimum" else 1, c.version, c.ref or "")


def sorted_charges(charges: Sequence[Charge]) -> tuple[Charge, ...]:
    return tuple(sorted(charges, key=charge_sort_key))

