"""Revenue recognition's pure core: obligations, allocation, schedules, modifications, the contract position.

No database, no clock: dates and calendars are arguments. The service folds a contract's events
through these functions and stores what they return.

**Obligations.** Every contract line is a performance obligation (ASC 606-10-25-14, IFRS 15.22).
A contract event carries the whole timeline (docs/events.md): each *segment* (a version of a
line over a span of days, in one term) with its value — the line's charge per billing period,
prorated by days exactly as billing invoices it — and its standalone selling price; each line's
product facts (treatment, revenue role, family, milestones) come with the lines.

**Allocation** (IFRS 15.73-80, ASC 606-10-32-28). Each term of a contract is a contract for
allocation: its transaction price is the sum of the values of its segments (fixed
consideration, after discounts); usage lines are variable consideration allocated entirely to
themselves (IFRS 15.85) and take no part. The price is split by relative SSP with
:func:`closeloop.core.money.allocate` (largest remainder), so it always sums exactly.

**Schedules.** An obligation's allocated amount becomes *pieces*, each recognised evenly by day
over its days:

- ratable, recurring: one piece per billing period of each segment (periods follow the billing
  day, partial periods prorated by days exactly as billing does: :func:`billing_pieces`), the
  allocated amount split over them by each period's share of the segment's SSP, shared as
  billing charges (:func:`ssp_spans`) — with no reallocation each piece is exactly what its
  invoice bills, and an obligation whose price changes while its SSP does not is recognised
  evenly (a series of distinct services); a one-time ratable line (an amount billed up front for
  a longer term) is one piece over its whole service;
- point in time: one piece on the line's first day (delivery);
- milestone: one piece per milestone (its share by milestone amounts), dated when completed;
- usage: none — usage revenue is what invoices bill, added as it is billed.

:func:`entries` splits every piece over the accounting periods it touches by days (largest
remainder), the rows the recognition run walks.

**Modifications** (IFRS 15.20-21, ASC 606-10-25-12/13), from the amendment's ``modification``:

- ``prospective``: pieces before the effective date stay (a piece spanning it is cut by days);
  the remaining consideration — the new transaction price less what was scheduled before the
  date — is allocated by the remaining SSP and spread over the remaining pieces;
- ``catch_up``: the new transaction price is allocated over the whole term; each obligation's
  progress at the date (what its old schedule reached, as a share of its old allocation) applied
  to its new allocation gives what should have been recognised; the difference is one
  ``catch_up`` piece on the effective date, the rest is spread over the remaining pieces.

Cancellations and renewals adjust schedules the same way (a cancellation is prospective: what is
left over after it is recognised on the last day of service; a renewal is a new term).

**Position.** Per contract: billed (B) and recognised (R). The contract liability (deferred
revenue) is max(B - R, 0) and the contract asset (unbilled receivable) max(R - B, 0)
(IFRS 15.105-107). :func:`move` says how much of each movement lands on each; :func:`settle`
does it for movements dated before others already booked (a run for January after February's
invoices), so the GL agrees with the position on every date.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from math import gcd
from typing import Any, Protocol

from closeloop.billing.proration import prorate
from closeloop.catalog.model import PERIOD_MONTHS
from closeloop.contracts.schedule import Grid, round_fraction
from closeloop.core.money import allocate, exponent

ONE_DAY = timedelta(days=1)
TREATMENTS = ("ratable", "point_in_time", "usage", "milestone")
MODIFICATIONS = ("prospective", "catch_up")
DEFAULT_REVENUE_ROLE = {"ratable": "revenue", "point_in_time": "revenue", "usage": "usage_revenue",
                        "milestone": "services_revenue"}
# Kinds of schedule pieces.
RATABLE, POINT, MILESTONE, CATCH_UP, REMAINDER, USAGE, CREDIT, DISCOUNT = (
    "ratable", "point", "milestone", "catch_up", "remainder", "usage", "credit", "discount")


class Calendar(Protocol):
    """An accounting calendar (closeloop.core.calendars): the period of a date and its bounds."""

    def period_of(self, day: date) -> str: ...

    def bounds(self, period: str) -> tuple[date, date]: ...


# --------------------------------------------------------------------------- what a contract says


@dataclass(frozen=True, slots=True)
class LineFacts:
    """What a contract line sells, as far as recognition is concerned."""

    line_id: str
    treatment: str
    revenue_role: str
    product_family: str | None
    metered: bool
    start: date  # the line's first day (delivery, for point in time)
    milestones: tuple[tuple[str, int], ...] = ()  # (milestone id, amount)

    @property
    def allocatable(self) -> bool:
        """Takes part in the allocation (usage is variable consideration allocated to itself)."""
        return self.treatment != "usage" and not self.metered


@dataclass(frozen=True, slots=True)
class Seg:
    """A version of a line over the inclusive days [start, end], in one term."""

    line_id: str
    start: date
    end: date
    term: int
    period_amount: int | None  # charge per full billing period (None when metered)
    months: int | None  # billing period in months (None: one-time)
    value: int  # what the segment bills over its days
    ssp: int | None  # its standalone selling price (None: unknown, its value stands in)

    @property
    def ssp_or_value(self) -> int:
        return self.value if self.ssp is None else self.ssp


@dataclass(frozen=True, slots=True)
class Term:
    number: int
    start: date
    end: date


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A contract after one of its changes: the header, the terms and the whole timeline."""

    contract_id: str
    entity: str
    currency: str
    customer: str
    billing_day: int
    start: date
    terms: tuple[Term, ...]
    segments: tuple[Seg, ...]
    facts: tuple[LineFacts, ...]

    def facts_of(self, line_id: str) -> LineFacts:
        for f in self.facts:
            if f.line_id == line_id:
                return f
        raise KeyError(line_id)

    def segs(self, term: int, line_id: str | None = None) -> tuple[Seg, ...]:
        return tuple(s for s in self.segments if s.term == term and (line_id is None or s.line_id == line_id))

    def line_order(self, term: int) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.line_id for s in self.segments if s.term == term))


@dataclass(frozen=True, slots=True)
class Change:
    """One contract event as recognition reads it."""

    seq: int
    kind: str  # activation, amendment, renewal, cancellation
    effective: date
    modification: str  # prospective or catch_up
    snapshot: Snapshot


def _minor(text: Any, currency: str) -> int:
    return int(Decimal(str(text)).scaleb(exponent(currency)))


def _facts(d: Mapping[str, Any], currency: str) -> LineFacts:
    treatment = d.get("treatment") or "ratable"
    period = ((d.get("price") or {}).get("period")) or "month"
    metered = bool(d.get("metered"))
    if treatment == "usage" and period == "one_time":
        metered = False
    return LineFacts(
        line_id=str(d["line_id"]), treatment=treatment,
        revenue_role=d.get("revenue_role") or DEFAULT_REVENUE_ROLE.get(treatment, "revenue"),
        product_family=d.get("product_family"), metered=metered, start=date.fromisoformat(d["start"]),
        milestones=tuple((str(m["milestone_id"]), _minor(m["amount"], currency)) for m in d.get("milestones") or ()))


def change_from_payload(p: Mapping[str, Any], known: Mapping[str, LineFacts] | None = None) -> Change:
    """A contract.* event payload (docs/events.md) as a :class:`Change`. ``known``: facts of lines seen in
    earlier events (a removed line appears in the timeline but no longer among the lines in force)."""
    cur = str(p["currency"])
    facts: dict[str, LineFacts] = dict(known or {})
    for x in p.get("changed_lines") or ():
        for side in ("before", "after"):
            if x.get(side):
                facts[str(x["line_id"])] = _facts(x[side], cur)
    for x in p.get("lines") or ():
        facts[str(x["line_id"])] = _facts(x, cur)
    segs = []
    for s in p.get("segments") or ():
        price = s.get("price") or {}
        period = price.get("period") or "one_time"
        segs.append(Seg(line_id=str(s["line_id"]), start=date.fromisoformat(s["from"]), end=date.fromisoformat(s["to"]),
                        term=int(s.get("term") or 1),
                        period_amount=None if s.get("period_amount") is None else _minor(s["period_amount"], cur),
                        months=PERIOD_MONTHS.get(period), value=_minor(s.get("value") or "0", cur),
                        ssp=None if s.get("ssp") is None else _minor(s["ssp"], cur)))
    for s in segs:
        if s.line_id not in facts:
            facts[s.line_id] = LineFacts(s.line_id, "ratable", "revenue", None, s.period_amount is None, s.start)
    terms = tuple(Term(int(t["number"]), date.fromisoformat(t["start"]),
                       date.fromisoformat(t.get("contracted_end") or t["end"])) for t in p.get("terms") or ())
    if not terms:
        t = p["term"]
        terms = (Term(int(t["number"]), date.fromisoformat(t["start"]), date.fromisoformat(t["end"])),)
    change = p.get("change") or {}
    kind = str(change.get("kind") or "activation")
    modification = p.get("modification") or change.get("modification") or "prospective"
    snap = Snapshot(contract_id=str(p["contract_id"]), entity=str(p["entity"]), currency=cur,
                    customer=str(p.get("customer") or ""), billing_day=int(p.get("billing_day") or 1),
                    start=date.fromisoformat(p["start"]), terms=terms, segments=tuple(segs),
                    facts=tuple(facts.values()))
    return Change(seq=int(change.get("seq") or 1), kind=kind,
                  effective=date.fromisoformat(p.get("effective") or change.get("effective") or p["start"]),
                  modification=modification if modification in MODIFICATIONS else "prospective", snapshot=snap)


# --------------------------------------------------------------------------- allocation


def allocate_price(transaction_price: int, ssps: Sequence[int], fallback: Sequence[int] | None = None) -> list[int]:
    """The transaction price split by relative standalone selling price (largest remainder; sums exactly).

    An SSP below zero counts as zero (a discount line is not an obligation: it lowers the price the
    others share). With no positive SSP at all the ``fallback`` weights (the lines' values) are used."""
    weights = [max(0, s) for s in ssps]
    if not any(weights) and fallback is not None:
        weights = [max(0, abs(v)) for v in fallback]
    if not any(weights):
        if transaction_price == 0:
            return [0] * len(ssps)
        weights = [1] * len(ssps)
    return allocate(transaction_price, weights)


def cumulative_catch_up(new_allocation: int, progress: Fraction, recognised_to_date: int) -> int:
    """The cumulative catch-up adjustment of a modified obligation (IFRS 15.21(b)): what the measure of
    progress applied to the new allocation says should have been recognised, less what was."""
    return round_fraction(Fraction(new_allocation) * progress) - recognised_to_date


# --------------------------------------------------------------------------- pieces


@dataclass(frozen=True, slots=True)
class Piece:
    """An amount of one obligation recognised evenly by day over the inclusive [first, last] (a point when
    first == last). ``first`` is None while the piece waits for an event (a milestone not completed)."""

    line_id: str
    first: date | None
    last: date | None
    amount: int
    kind: str
    ref: str = ""

    @property
    def days(self) -> int:
        assert self.first is not None and self.last is not None
        return (self.last - self.first).days + 1


def split_piece(piece: Piece, cut: date) -> tuple[Piece, Piece]:
    """The piece's days before ``cut`` and from ``cut`` (first < cut <= last), the amount split by days.

    The part from the cut is rounded half-up (largest remainder with ties to it), as billing rounds the
    credit for the unused days of a period, so an unchanged allocation keeps what was billed."""
    assert piece.first is not None and piece.last is not None and piece.first < cut <= piece.last
    after_days = (piece.last - cut).days + 1
    before_days = (cut - piece.first).days
    after, before = allocate(piece.amount, [after_days, before_days])
    return (replace(piece, last=cut - ONE_DAY, amount=before), replace(piece, first=cut, amount=after))


def billing_pieces(seg: Seg, contract_start: date, billing_day: int, cut: date | None = None) -> list[tuple[date, date, int]]:
    """The billing periods of a segment from ``cut`` on: (first day, last day, what billing charges for them).

    Periods follow the billing day (:class:`~closeloop.contracts.schedule.Grid`); a partial period is
    charged price x days / days of the enclosing period, rounded half-up (billing's
    :func:`~closeloop.billing.proration.prorate`). A one-time segment is one period: its whole span."""
    first = seg.start if cut is None else max(seg.start, cut)
    if first > seg.end:
        return []
    if seg.months is None or seg.period_amount is None:
        value = seg.value
        if cut is not None and first > seg.start and seg.value:
            value = allocate(seg.value, [(seg.end - first).days + 1, (first - seg.start).days])[0]
        return [(first, seg.end, value)]
    grid = Grid.of(contract_start, billing_day, seg.months)
    out = []
    for p_start, p_end, o_start, o_end in grid.pieces(first, seg.end):
        out.append((o_start, o_end - ONE_DAY, prorate(seg.period_amount, (o_end - o_start).days,
                                                      (p_end - p_start).days)))
    return out


def _spread(line_id: str, amount: int, spans: Sequence[tuple[date, date, Fraction]], kind: str = RATABLE) -> list[Piece]:
    """``amount`` over the spans in proportion to their weights (by days where every weight is zero)."""
    if not spans:
        return []
    weights = _integer_weights([abs(w) for _, _, w in spans])
    if not any(weights):
        weights = [(b - a).days + 1 for a, b, _ in spans]
    return [Piece(line_id, a, b, part, kind) for (a, b, _), part in zip(spans, allocate(amount, weights), strict=True)
            if part or len(spans) == 1]


def _integer_weights(values: Sequence[Fraction]) -> list[int]:
    """Exact rational weights as integers in the same ratios."""
    scale = 1
    for v in values:
        scale = scale * v.denominator // gcd(scale, v.denominator)
    return [int(v * scale) for v in values]


def ssp_spans(seg: Seg, contract_start: date, billing_day: int, cut: date | None = None) -> list[tuple[date, date, Fraction]]:
    """A segment's billing periods from ``cut`` on, each weighted by its share of the segment's SSP.

    The segment's SSP is shared over its periods as billing charges them (by days where it charges
    nothing), so an obligation whose price changes over time but whose standalone selling price does
    not is recognised evenly over time (a series of distinct services, IFRS 15.22(b)); where the SSP
    is unknown the value stands in for it and the weights are exactly what billing charges."""
    whole = billing_pieces(seg, contract_start, billing_day)
    measure = sum(abs(v) for _, _, v in whole)
    by_days = measure == 0
    if by_days:
        measure = sum((b - a).days + 1 for a, b, _ in whole)
    if not measure:
        return []
    ssp = abs(seg.ssp_or_value)
    return [(a, b, Fraction(ssp * ((b - a).days + 1 if by_days else abs(v)), measure))
            for a, b, v in billing_pieces(seg, contract_start, billing_day, cut)]


def line_pieces(snap: Snapshot, term: int, facts: LineFacts, amount: int, cut: date | None,
                completions: Mapping[tuple[str, str], date]) -> list[Piece]:
    """``amount`` of one obligation as pieces over its service from ``cut`` (all of it when None)."""
    line_id = facts.line_id
    segs = snap.segs(term, line_id)
    if facts.treatment == "point_in_time" or (facts.treatment == "milestone" and not facts.milestones):
        day = facts.start if cut is None or facts.start >= cut else cut
        return [Piece(line_id, day, day, amount, POINT)] if amount or cut is None else []
    if facts.treatment == "milestone":
        todo = [(mid, amt) for mid, amt in facts.milestones
                if cut is None or completions.get((line_id, mid)) is None or completions[(line_id, mid)] >= cut]
        if not todo:
            return _leftover(snap, term, facts, amount, cut)
        parts = allocate(amount, [max(0, a) for _, a in todo]) if any(a > 0 for _, a in todo) else \
            allocate(amount, [1] * len(todo))
        out = []
        for (mid, _), part in zip(todo, parts, strict=True):
            done = completions.get((line_id, mid))
            out.append(Piece(line_id, done, done, part, MILESTONE, mid))
        return out
    spans: list[tuple[date, date, Fraction]] = []
    for s in segs:
        spans.extend(ssp_spans(s, snap.start, snap.billing_day, cut))
    if not spans:
        return _leftover(snap, term, facts, amount, cut)
    return _spread(line_id, amount, spans)


def _leftover(snap: Snapshot, term: int, facts: LineFacts, amount: int, cut: date | None) -> list[Piece]:
    """An amount with no service left to spread it over: recognised on the last day of service (the day
    before the cut of a modification, e.g. a cancellation)."""
    if not amount:
        return []
    segs = snap.segs(term, facts.line_id)
    day = max((s.end for s in segs), default=facts.start) if cut is None else cut - ONE_DAY
    return [Piece(facts.line_id, day, day, amount, REMAINDER)]


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True, slots=True)
class Allocation:
    line_id: str
    ssp: int
    allocated: int


@dataclass(frozen=True, slots=True)
class TermPlan:
    """The allocation and the schedule pieces of one term of a contract."""

    term: int
    transaction_price: int
    allocations: tuple[Allocation, ...]
    pieces: tuple[Piece, ...]
    segments: tuple[Seg, ...] = ()  # the timeline this plan was made from

    def allocated(self, line_id: str) -> int:
        return sum(a.allocated for a in self.allocations if a.line_id == line_id)


def _values(snap: Snapshot, term: int, lines: Sequence[str]) -> tuple[list[int], list[int]]:
    values, ssps = [], []
    for line_id in lines:
        segs = snap.segs(term, line_id)
        values.append(sum(s.value for s in segs))
        ssps.append(sum(s.ssp_or_value for s in segs))
    return values, ssps


def _allocatable(snap: Snapshot, term: int) -> list[str]:
    return [x for x in snap.line_order(term) if snap.facts_of(x).allocatable]


def base_plan(snap: Snapshot, term: Term, completions: Mapping[tuple[str, str], date]) -> TermPlan:
    """A term's plan at inception: its price allocated by relative SSP and spread by treatment."""
    lines = _allocatable(snap, term.number)
    values, ssps = _values(snap, term.number, lines)
    price = sum(values)
    parts = allocate_price(price, ssps, values)
    pieces: list[Piece] = []
    for line_id, part in zip(lines, parts, strict=True):
        pieces.extend(line_pieces(snap, term.number, snap.facts_of(line_id), part, None, completions))
    return TermPlan(term.number, price, tuple(Allocation(x, s, a) for x, s, a in zip(lines, ssps, parts, strict=True)),
                    tuple(pieces), snap.segs(term.number))


def _before(plan: TermPlan, cut: date) -> tuple[list[Piece], dict[str, int]]:
    """The pieces of a plan scheduled before ``cut`` (one spanning it cut by days) and their sum per line."""
    fixed: list[Piece] = []
    sums: dict[str, int] = {}
    for p in plan.pieces:
        if p.first is None or p.last is None or p.first >= cut:
            continue
        if p.last >= cut:
            p = split_piece(p, cut)[0]
        fixed.append(p)
        sums[p.line_id] = sums.get(p.line_id, 0) + p.amount
    return fixed, sums


def _remaining_ssp(snap: Snapshot, term: int, facts: LineFacts, cut: date,
                   completions: Mapping[tuple[str, str], date]) -> int:
    """The SSP of what is left of an obligation from ``cut``."""
    segs = snap.segs(term, facts.line_id)
    ssp = sum(s.ssp_or_value for s in segs)
    if facts.treatment == "point_in_time" or (facts.treatment == "milestone" and not facts.milestones):
        return ssp if facts.start >= cut else 0
    if facts.treatment == "milestone":
        total = sum(max(0, a) for _, a in facts.milestones)
        todo = sum(max(0, a) for mid, a in facts.milestones
                   if completions.get((facts.line_id, mid)) is None or completions[(facts.line_id, mid)] >= cut)
        if total == 0:
            return ssp if todo else 0
        return round_fraction(Fraction(ssp * todo, total))
    left = 0
    for s in segs:
        if s.end < cut:
            continue
        if s.start >= cut:
            left += s.ssp_or_value
            continue
        after = sum(abs(v) for _, _, v in billing_pieces(s, snap.start, snap.billing_day, cut))
        whole = sum(abs(v) for _, _, v in billing_pieces(s, snap.start, snap.billing_day))
        if whole:
            left += round_fraction(Fraction(s.ssp_or_value * after, whole))
        else:
            left += round_fraction(Fraction(s.ssp_or_value * ((s.end - cut).days + 1), (s.end - s.start).days + 1))
    return left


def prospective(old: TermPlan, snap: Snapshot, term: Term, cut: date,
                completions: Mapping[tuple[str, str], date]) -> TermPlan:
    """A modification accounted for prospectively (IFRS 15.21(a)): what was scheduled before ``cut`` stays;
    the remaining consideration is allocated by remaining SSP and spread over what is left."""
    fixed, done = _before(old, cut)
    lines = _allocatable(snap, term.number)
    values, ssps = _values(snap, term.number, lines)
    price = sum(values)
    remaining = price - sum(done.get(x, 0) for x in lines)
    rem_ssp = [_remaining_ssp(snap, term.number, snap.facts_of(x), cut, completions) for x in lines]
    if any(s > 0 for s in rem_ssp):
        parts = allocate_price(remaining, rem_ssp)
    else:
        parts = allocate_price(remaining, ssps, values) if lines else []
    pieces = list(fixed)
    for line_id, part in zip(lines, parts, strict=True):
        pieces.extend(line_pieces(snap, term.number, snap.facts_of(line_id), part, cut, completions))
    allocations = tuple(Allocation(x, s, done.get(x, 0) + a) for x, s, a in zip(lines, ssps, parts, strict=True))
    return TermPlan(term.number, price, allocations, tuple(pieces), snap.segs(term.number))


def catch_up(old: TermPlan, snap: Snapshot, term: Term, cut: date,
             completions: Mapping[tuple[str, str], date]) -> TermPlan:
    """A modification that is part of the existing contract (IFRS 15.21(b)): the new price is allocated over
    the whole term and the effect on what should have been recognised by ``cut`` is one adjustment then."""
    fixed, done = _before(old, cut)
    lines = _allocatable(snap, term.number)
    values, ssps = _values(snap, term.number, lines)
    price = sum(values)
    parts = allocate_price(price, ssps, values)
    pieces = list(fixed)
    for line_id, new in zip(lines, parts, strict=True):
        facts = snap.facts_of(line_id)
        progress = _progress(old, snap, term.number, facts, cut, done.get(line_id, 0), completions)
        should = round_fraction(Fraction(new) * progress)
        adjustment = should - done.get(line_id, 0)
        if adjustment:
            pieces.append(Piece(line_id, cut, cut, adjustment, CATCH_UP))
        pieces.extend(line_pieces(snap, term.number, facts, new - should, cut, completions))
    return TermPlan(term.number, price, tuple(Allocation(x, s, a) for x, s, a in zip(lines, ssps, parts, strict=True)),
                    tuple(pieces), snap.segs(term.number))


def _progress(old: TermPlan, snap: Snapshot, term: int, facts: LineFacts, cut: date, before: int,
              completions: Mapping[tuple[str, str], date]) -> Fraction:
    """An obligation's measure of progress at ``cut``: the share of its old allocation its schedule had
    reached (time elapsed, as its billing periods measure it); 1 once nothing is left, 0 for a new line."""
    if facts.treatment == "point_in_time" or (facts.treatment == "milestone" and not facts.milestones):
        return Fraction(1 if facts.start < cut else 0)
    if facts.treatment == "milestone":
        total = sum(max(0, a) for _, a in facts.milestones)
        done = sum(max(0, a) for mid, a in facts.milestones
                   if completions.get((facts.line_id, mid)) is not None and completions[(facts.line_id, mid)] < cut)
        return Fraction(done, total) if total else Fraction(0)
    segs = snap.segs(term, facts.line_id)
    if not any(s.end >= cut for s in segs):
        return Fraction(1)
    allocated = old.allocated(facts.line_id)
    if allocated and any(a.line_id == facts.line_id for a in old.allocations):
        return min(Fraction(1), max(Fraction(0), Fraction(before, allocated)))
    spans = [sp for s in segs for sp in billing_pieces(s, snap.start, snap.billing_day)]
    whole = sum(abs(v) for _, _, v in spans)
    if not whole:
        return Fraction(0)
    after = sum(abs(v) for s in segs for _, _, v in billing_pieces(s, snap.start, snap.billing_day, cut))
    return Fraction(whole - after, whole)


@dataclass(frozen=True, slots=True)
class ContractPlan:
    contract_id: str
    entity: str
    currency: str
    customer: str
    terms: tuple[TermPlan, ...]
    facts: tuple[LineFacts, ...]

    @property
    def pieces(self) -> tuple[Piece, ...]:
        return tuple(p for t in self.terms for p in t.pieces)

    def allocations(self) -> list[Allocation]:
        """Per line, summed over the terms, in the order lines first appear."""
        out: dict[str, Allocation] = {}
        for t in self.terms:
            for a in t.allocations:
                prev = out.get(a.line_id)
                out[a.line_id] = a if prev is None else Allocation(a.line_id, prev.ssp + a.ssp,
                                                                    prev.allocated + a.allocated)
        return list(out.values())

    @property
    def transaction_price(self) -> int:
        return sum(t.transaction_price for t in self.terms)

    def facts_of(self, line_id: str) -> LineFacts | None:
        return next((f for f in self.facts if f.line_id == line_id), None)


def plan_contract(changes: Sequence[Change], completions: Mapping[tuple[str, str], date] | None = None) -> ContractPlan:
    """Fold a contract's changes, in order, into its plan (every term's allocation and pieces)."""
    if not changes:
        raise ValueError("a contract plan needs at least its activation")
    done = dict(completions or {})
    plans: dict[int, TermPlan] = {}
    snap = changes[0].snapshot
    for change in changes:
        snap = change.snapshot
        for term in snap.terms:
            segs = snap.segs(term.number)
            old = plans.get(term.number)
            if old is None:
                if segs:
                    plans[term.number] = base_plan(snap, term, done)
                continue
            if old.segments == segs:
                continue
            cut = max(change.effective, term.start)
            if change.kind == "amendment" and change.modification == "catch_up":
                plans[term.number] = catch_up(old, snap, term, cut, done)
            else:
                plans[term.number] = prospective(old, snap, term, cut, done)
        for number in list(plans):
            if number not in {t.number for t in snap.terms}:
                del plans[number]
    return ContractPlan(snap.contract_id, snap.entity, snap.currency, snap.customer,
                        tuple(plans[n] for n in sorted(plans)), snap.facts)


# --------------------------------------------------------------------------- entries by accounting period


@dataclass(frozen=True, slots=True)
class Entry:
    """A piece's share of one accounting period: the row a recognition run walks."""

    line_id: str
    period: str | None  # None while pending
    first: date | None
    last: date | None
    amount: int
    kind: str
    ref: str = ""


def period_spans(first: date, last: date, calendar: Calendar) -> list[tuple[str, date, date]]:
    """The accounting periods the inclusive [first, last] touches, with the days in each."""
    out = []
    day = first
    while day <= last:
        period = calendar.period_of(day)
        end = min(calendar.bounds(period)[1], last)
        out.append((period, day, end))
        day = end + ONE_DAY
    return out


def entries(pieces: Iterable[Piece], calendar: Calendar) -> list[Entry]:
    """Every piece split over the accounting periods it touches, by days (largest remainder)."""
    out: list[Entry] = []
    for p in pieces:
        if p.first is None or p.last is None:
            out.append(Entry(p.line_id, None, None, None, p.amount, p.kind, p.ref))
            continue
        spans = period_spans(p.first, p.last, calendar)
        if len(spans) == 1:
            out.append(Entry(p.line_id, spans[0][0], p.first, p.last, p.amount, p.kind, p.ref))
            continue
        parts = allocate(p.amount, [(b - a).days + 1 for _, a, b in spans])
        out.extend(Entry(p.line_id, per, a, b, part, p.kind, p.ref)
                   for (per, a, b), part in zip(spans, parts, strict=True))
    return out


def due(amount: int, first: date, last: date, through: date) -> int:
    """What of an entry recognised evenly over [first, last] is due by the end of ``through``."""
    if through >= last:
        return amount
    if through < first:
        return 0
    done = (through - first).days + 1
    left = (last - through).days
    return allocate(amount, [left, done])[1]


# --------------------------------------------------------------------------- contracts migrated from a legacy system


def split_at_cutover(pieces: Iterable[Piece], cutover: date) -> tuple[list[Piece], dict[str, int]]:
    """A migrated contract's schedule pieces split at the cutover (the last day of the legacy system's books):
    the pieces closeloop recognises (the days after the cutover) and, per obligation, what the pieces held
    through it (recognised by the legacy system; closeloop never books it).

    A piece spanning the cutover — a service period billed in advance across it — is cut by days with
    :func:`split_piece` (the part after it rounded half-up, as billing rounds a credit for unused days), so
    what is carried for it is the period's charge x days after the cutover / days of the period, as a legacy
    system deferring each invoice line by days carries it. Pending pieces (a milestone not completed) stay."""
    kept: list[Piece] = []
    legacy: dict[str, int] = {}
    cut = cutover + ONE_DAY
    for p in pieces:
        if p.first is None or p.last is None:
            kept.append(p)
            continue
        if p.last < cut:
            legacy[p.line_id] = legacy.get(p.line_id, 0) + p.amount
            continue
        if p.first < cut:
            before, p = split_piece(p, cut)
            legacy[p.line_id] = legacy.get(p.line_id, 0) + before.amount
        kept.append(p)
    return kept, legacy


def billed_through(snap: Snapshot, through: date) -> dict[str, int]:
    """What each line of a contract billed for its service through ``through`` (inclusive), as billing charges
    it: every billing period that ends by then (a period running past it by days, which a validated
    billed-through date never leaves); a one-time charge once its first day is reached. Usage is variable
    consideration billed as used: not counted."""
    out: dict[str, int] = {}
    for s in snap.segments:
        if not snap.facts_of(s.line_id).allocatable or s.start > through:
            continue
        total = 0
        if s.months is None or s.period_amount is None:
            total = s.value
        else:
            for first, last, value in billing_pieces(s, snap.start, snap.billing_day):
                if last <= through:
                    total += value
                elif first <= through:
                    total += allocate(value, [(through - first).days + 1, (last - through).days])[0]
        out[s.line_id] = out.get(s.line_id, 0) + total
    return out


# --------------------------------------------------------------------------- the contract position


@dataclass(frozen=True, slots=True)
class Position:
    """A contract's billed and recognised totals and what the GL holds for it: the contract liability
    (deferred revenue) and the contract asset (unbilled receivable). deferred - unbilled = billed - recognised."""

    billed: int = 0
    recognised: int = 0
    deferred: int = 0
    unbilled: int = 0


@dataclass(frozen=True, slots=True)
class Movement:
    position: Position
    amount: int  # revenue (credit the revenue role)
    deferred: int  # debit deferred revenue (negative: credit)
    unbilled: int  # debit unbilled receivable (negative: credit)


def move(pos: Position, billed: int = 0, recognised: int = 0) -> Movement:
    """Bill and/or recognise on a contract. A bill is booked against deferred revenue by the invoice's own
    posting; the movement says what recognition books so that afterwards the GL holds
    deferred = max(billed - recognised, 0) and unbilled = max(recognised - billed, 0):
    ``amount = deferred + unbilled`` always."""
    b = pos.billed + billed
    r = pos.recognised + recognised
    new = Position(b, r, max(b - r, 0), max(r - b, 0))
    return Movement(new, recognised, pos.deferred + billed - new.deferred, new.unbilled - pos.unbilled)



@dataclass(frozen=True, slots=True)
class Booked:
    """A movement of a contract already booked, on its date: a billing (``billed``: the invoice's posting
    credits deferred revenue) or a ``revenue.recognized`` line (amount, deferred, unbilled)."""

    day: date
    billed: int = 0
    amount: int = 0
    deferred: int = 0
    unbilled: int = 0


@dataclass(frozen=True, slots=True)
class Move:
    """A movement to book: billed and/or revenue recognised on ``day``. ``key`` is the caller's reference."""

    day: date
    billed: int = 0
    amount: int = 0
    key: Any = None


@dataclass(frozen=True, slots=True)
class Booking:
    """A ``revenue.recognized`` line to emit: a move's own line (``key`` set) or, with ``key`` None, a
    reclassification between deferred revenue and unbilled receivable on a later date (amount 0)."""

    key: Any
    day: date
    amount: int
    deferred: int
    unbilled: int


def settle(now: Position, booked: Sequence[Booked], moves: Sequence[Move], *, netting: bool = True
           ) -> tuple[list[Booking], Position]:
    """Book ``moves`` on a contract so that, on every date from the first move on, what the GL holds equals the
    contract position of that date: deferred = max(B - R, 0), unbilled = max(R - B, 0), with B and R the
    billing and recognition dated on or before it.

    ``now`` is the position with everything booked so far; ``booked`` must hold every booked movement dated
    on or after the first move (earlier ones may be given too). Movements booked on later dates (an invoice
    dated after the end of the period a run recognises) were split for a position without the new moves:
    where the position of such a date changes, a reclassification line on that date puts it right.

    ``netting=False`` (an invoice line outside any contract, whose billing is its obligation): deferred
    revenue simply carries billed - recognised, never a contract asset."""
    if not moves:
        return [], now

    def target(b: int, r: int) -> tuple[int, int]:
        return (max(b - r, 0), max(r - b, 0)) if netting else (b - r, 0)

    first = min(m.day for m in moves)
    later = [b for b in booked if b.day >= first]
    if not later:  # nothing booked on or after the first move: book the moves in order
        out_: list[Booking] = []
        b_, r_, gl_d, gl_u = now.billed, now.recognised, now.deferred, now.unbilled
        for m in sorted(moves, key=lambda x: x.day):
            b_, r_, gl_d = b_ + m.billed, r_ + m.amount, gl_d + m.billed
            d, u = target(b_, r_)
            out_.append(Booking(m.key, m.day, m.amount, gl_d - d, u - gl_u))
            gl_d, gl_u = d, u
        return out_, Position(b_, r_, gl_d, gl_u)
    b_ = now.billed - sum(x.billed for x in later)
    r_ = now.recognised - sum(x.amount for x in later)
    gl_d = now.deferred - sum(x.billed - x.deferred for x in later)
    gl_u = now.unbilled - sum(x.unbilled for x in later)
    by_day: dict[date, list[Booked]] = {}
    for x in later:
        by_day.setdefault(x.day, []).append(x)
    out: list[Booking] = []
    for day in sorted({*by_day, *(m.day for m in moves)}):
        for x in by_day.get(day, ()):
            b_, r_ = b_ + x.billed, r_ + x.amount
            gl_d, gl_u = gl_d + x.billed - x.deferred, gl_u + x.unbilled
        todo = [m for m in moves if m.day == day]
        for m in todo:
            b_, r_, gl_d = b_ + m.billed, r_ + m.amount, gl_d + m.billed
            d, u = target(b_, r_)
            out.append(Booking(m.key, day, m.amount, gl_d - d, u - gl_u))
            gl_d, gl_u = d, u
        if not todo:
            d, u = target(b_, r_)
            if (gl_d, gl_u) != (d, u):
                out.append(Booking(None, day, 0, gl_d - d, u - gl_u))
                gl_d, gl_u = d, u
    return out, Position(b_, r_, gl_d, gl_u)
