"""Coupons on draft invoices: discount lines, pure (no database, no clock).

A :class:`Coupon` takes a percentage or a fixed amount off, for a duration (``once``, ``repeating``
for N months or N billing periods, ``forever``). A :class:`Redemption` is a coupon applied to a customer, a contract or
one contract line from a date. :func:`apply_coupons` turns the redemptions in force on a draft
invoice's date into **discount lines** on that invoice, before tax (Lago and Stripe deduct coupons
from the amount before tax), so tax, posting and revenue see them like any other line:

- a percentage coupon gives each charge it covers a discount line of
  ``round_half_up(amount x percent / 100)`` (rounded once per line);
- a fixed coupon is spread over the charges it covers in proportion to their amounts before tax,
  with :func:`closeloop.core.money.allocate` (largest remainder), never more than those charges add
  up to — so no line goes below zero — and the unused part is reported (:class:`Use.unused`). A
  ``once`` fixed coupon keeps its unused value for the next invoices until it is spent (Lago's
  ``amount_cents_remaining``); a ``repeating`` or ``forever`` one offers its amount again each invoice;
- coupons apply in the order they were redeemed, each to what earlier ones left;
- a charge that is later credited (an amendment, a cancellation) gets back the same share of its
  discount: a positive discount line beside the credit, so the credit equals what was paid.

Each discount line copies the charge it discounts (contract, line, service period, tax code, revenue
role): it is a price reduction of that obligation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from closeloop.billing.model import DISCOUNTABLE, Charge, DraftInvoice, dec_plain
from closeloop.contracts.schedule import round_fraction
from closeloop.core.money import allocate, format_minor
from closeloop.core.periods import add_months

DURATIONS = ("once", "repeating", "forever")


@dataclass(frozen=True, slots=True)
class Coupon:
    """``percent_off`` (0-100] or ``amount_off`` (minor units of ``currency``); ``redeem_by``: the last day it
    may be redeemed; ``max_redemptions``: how many times in all."""

    code: str
    name: str
    duration: str
    percent_off: Decimal | None = None
    amount_off: int | None = None
    currency: str | None = None
    duration_months: int | None = None
    redeem_by: date | None = None
    max_redemptions: int | None = None
    duration_periods: int | None = None  # repeating for N billing periods (invoices) rather than months

    def label(self) -> str:
        if self.percent_off is not None:
            return f"{self.name} ({dec_plain(self.percent_off)}% off)"
        return f"{self.name} ({format_minor(self.amount_off or 0, self.currency or 'USD')} off)"

    def problem(self, currency: str, day: date, redeemed: int) -> str | None:
        """Why this coupon cannot be redeemed on ``day`` for an invoice currency (None: it can)."""
        if self.redeem_by is not None and day > self.redeem_by:
            return f"coupon {self.code} expired: it could be redeemed until {self.redeem_by}"
        if self.amount_off is not None and self.currency != currency:
            return f"coupon {self.code} takes {self.currency} off; it does not apply to {currency}"
        if self.max_redemptions is not None and redeemed >= self.max_redemptions:
            return f"coupon {self.code} is exhausted: redeemed {redeemed} of {self.max_redemptions} times"
        return None


@dataclass(frozen=True, slots=True)
class Redemption:
    """A coupon applied to a customer (``contract_id`` None), a contract (``line_id`` None) or a line, from
    ``start``. ``uses``: invoices discounted so far; ``remaining``: what a ``once`` fixed coupon has left."""

    id: int
    coupon: Coupon
    customer_id: int
    start: date
    contract_id: str | None = None
    line_id: str | None = None
    uses: int = 0
    remaining: int | None = None
    discounted: int = 0
    status: str = "active"

    def in_force(self, day: date) -> bool:
        c = self.coupon
        if self.status != "active" or day < self.start:
            return False
        if c.duration == "once":
            return self.uses == 0 if c.amount_off is None else (self.remaining or 0) > 0
        if c.duration == "repeating":
            if c.duration_periods is not None:
                return self.uses < c.duration_periods
            return day < add_months(self.start, int(c.duration_months or 0))
        return True

    def covers(self, charge: Charge) -> bool:
        if charge.kind not in DISCOUNTABLE or charge.amount <= 0:
            return False
        if self.contract_id is not None and charge.contract_id != self.contract_id:
            return False
        return self.line_id is None or charge.line_id == self.line_id


@dataclass(frozen=True, slots=True)
class Use:
    """A redemption applied on one invoice: ``amount`` discounted, ``unused`` (fixed coupons) the part of the
    coupon's value the invoice could not take."""

    redemption_id: int
    code: str
    date: date
    amount: int
    unused: int = 0


@dataclass(frozen=True, slots=True)
class Discounted:
    """An item's discount: (its amount, the discount it received (negative), the redemption ref)."""

    amount: int
    discount: int
    ref: str


def percent_of(amount: int, pct: Decimal) -> int:
    """``amount x pct / 100`` rounded half-up once (a line's percentage discount)."""
    return int((Decimal(amount) * pct / 100).to_integral_value(rounding=ROUND_HALF_UP))


def spread(value: int, amounts: Sequence[int]) -> tuple[list[int], int]:
    """A fixed discount of ``value`` over lines of ``amounts`` (each >= 0) in proportion to them, never more
    than they add up to: (the part of each line, the unused part of ``value``). The parts sum exactly."""
    pool = sum(a for a in amounts if a > 0)
    used = min(max(value, 0), pool)
    if used == 0:
        return [0] * len(amounts), max(value, 0)
    parts = allocate(used, [max(a, 0) for a in amounts])
    return parts, max(value, 0) - used


def _discount_line(target: Charge, amount: int, red: Redemption, description: str, target_id: int) -> Charge:
    return replace(target, kind="discount", description=description, amount=amount, quantity=Decimal(1),
                   unit_price=None, usage_count=0, period_amount=None, credit_of=target_id or None,
                   ref=f"coupon:{red.id}", scheduled=False)


def apply_coupons(draft: DraftInvoice, redemptions: Sequence[Redemption],
                  discounted: Mapping[int, Discounted]) -> tuple[DraftInvoice, list[Redemption], list[Use],
                                                                 dict[int, Discounted]]:
    """The draft with its discount lines (each right after the charge it discounts), the redemptions' new
    state, what each redemption took, and the discounts of this draft's charges by their provisional item id
    (for credits of them later in the same run). ``discounted``: the discounts of items already billed."""
    charges = list(draft.charges)
    ids = list(draft.item_ids) if draft.item_ids else [0] * len(charges)
    currency = draft.account.currency
    extra: dict[int, list[Charge]] = {}
    reduced = [c.amount for c in charges]
    state = {r.id: r for r in redemptions}
    uses: list[Use] = []
    found: dict[int, Discounted] = {}
    for red in redemptions:
        c = red.coupon
        if c.amount_off is not None and c.currency != currency:
            continue  # a fixed coupon in another currency never applies (documented)
        if not red.in_force(draft.date):
            continue
        covered = [i for i, ch in enumerate(charges) if red.covers(ch) and reduced[i] > 0]
        if not covered:
            continue
        parts: list[int]
        unused = 0
        if c.percent_off is not None:
            parts = [min(percent_of(reduced[i], c.percent_off), reduced[i]) for i in covered]
        else:
            offered = red.remaining if c.duration == "once" else c.amount_off
            parts, unused = spread(int(offered or 0), [reduced[i] for i in covered])
        total = sum(parts)
        if total == 0:
            continue
        for i, part in zip(covered, parts, strict=True):
            if not part:
                continue
            reduced[i] -= part
            target = charges[i]
            extra.setdefault(i, []).append(_discount_line(target, -part, red, f"Coupon {c.label()}: {target.description}",
                                                          ids[i]))
            if ids[i]:
                prev = found.get(ids[i])
                found[ids[i]] = Discounted(target.amount, (prev.discount if prev else 0) - part, f"coupon:{red.id}")
        remaining = red.remaining
        status = red.status
        if c.amount_off is not None and c.duration == "once":
            remaining = (red.remaining or 0) - total
            status = "exhausted" if remaining <= 0 else status
        elif c.duration == "once":
            status = "exhausted"
        state[red.id] = replace(red, uses=red.uses + 1, remaining=remaining, discounted=red.discounted + total,
                                status=status)
        uses.append(Use(red.id, c.code, draft.date, total, unused))
    # credits of discounted items give back the same share of the discount
    given: dict[int, int] = {}
    for i, ch in enumerate(charges):
        if ch.kind != "credit" or ch.credit_of is None:
            continue
        disc = discounted.get(ch.credit_of) or found.get(ch.credit_of)
        if disc is None or disc.discount >= 0 or disc.amount <= 0:
            continue
        cap = -disc.discount - given.get(ch.credit_of, 0)
        back = min(cap, round_fraction(Fraction(-ch.amount * -disc.discount, disc.amount)))
        if back <= 0:
            continue
        given[ch.credit_of] = given.get(ch.credit_of, 0) + back
        line = replace(ch, kind="discount", amount=back, credit_of=ch.credit_of, quantity=Decimal(1), unit_price=None,
                       description=f"Discount returned with the credit: {ch.description}", ref=disc.ref,
                       period_amount=None, scheduled=False)
        extra.setdefault(i, []).append(line)
    if not extra:
        return draft, [state[r.id] for r in redemptions], uses, found
    out_charges: list[Charge] = []
    out_ids: list[int] = []
    for i, ch in enumerate(charges):
        out_charges.append(ch)
        out_ids.append(ids[i])
        for d in extra.get(i, ()):
            out_charges.append(d)
            out_ids.append(0)
    new = DraftInvoice(draft.account, draft.date, tuple(out_charges), tuple(out_ids) if draft.item_ids else ())
    return new, [state[r.id] for r in redemptions], uses, found


def discounts_of(items: Sequence[tuple[int, int, int | None, str | None]]) -> dict[int, Discounted]:
    """Discounts of billed items from their lines: (line id, net, the line it discounts, ref) of every
    discount line and charge (a discount line names its charge in ``credit_of``)."""
    amounts = {lid: net for lid, net, _of, _ref in items}
    out: dict[int, Discounted] = {}
    for _lid, net, of, ref in items:
        if of is None or not ref or not ref.startswith("coupon:"):
            continue
        prev = out.get(of)
        out[of] = Discounted(amounts.get(of, prev.amount if prev else 0), (prev.discount if prev else 0) + net, ref)
    return out
