"""The contract's pure core: lines, the log of changes, its replay into a timeline, and derived values.

A contract is the ordered log of its changes (activation, amendments, renewals, cancellation),
each effective-dated. :func:`replay` folds the log into a :class:`Timeline`: the terms and, for
every line, its *segments* (the versions of the line and the days each applies). Everything the
contract says is derived from the timeline, nothing is typed in:

- the state as of a date: the changes effective on or before it, applied (:func:`replay` with
  ``through``);
- the value of a segment (:func:`segment_value`): the line's rated charge per billing period,
  prorated by days over the segment (:mod:`closeloop.contracts.schedule`); a one-time line is
  worth its charge once, on its first day; a metered line (usage) commits nothing and is worth 0;
- TCV of a term: the value of its segments (recurring and one-time); ACV: the recurring part of
  TCV x 12 / the term's months; MRR on a date: each recurring, non-metered line in force that day,
  its charge per period / months per period, rounded half-up per line.

Changes apply in the order of their effective dates (ties in the order they were recorded). A
cancellation ends service the day before its effective date; any change effective on or after
it is void.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

from closeloop.catalog.model import PriceTerms, dec_str, money_str
from closeloop.catalog.rating import apply_discount, rate
from closeloop.contracts.schedule import Grid, months_in, prorated, round_fraction
from closeloop.core.errors import ConflictError, NotFoundError, ValidationError
from closeloop.core.money import exponent, format_minor
from closeloop.core.periods import add_months

ONE_DAY = timedelta(days=1)
KINDS = ("activation", "amendment", "renewal", "cancellation")
MODIFICATIONS = ("prospective", "catch_up")
# Optional line fields for billing depth (issue 13), carried in ``extensions`` (docs/billing.md): a free or
# discounted trial (``trial_days``, ``trial_discount_pct``, ``trial_invoice``), the line's coupons, a spending
# minimum on a metered line, a ramp (price steps over the term). Values are JSON; the line keeps them as
# canonical JSON text so lines stay hashable.
EXTENSION_FIELDS = ("trial_days", "trial_discount_pct", "trial_invoice", "coupons", "minimum", "ramp", "coterm")
# Contract-level extensions (the quote header): coupons on the whole contract, a contract minimum commitment.
CONTRACT_EXTENSION_FIELDS = ("coupons", "minimum")
PHASE_SEQ = 1000  # a phase of a version started by change ``seq`` is the version ``seq * PHASE_SEQ + k``
SSP_DECIMALS = Decimal("1E-10")


@dataclass(frozen=True, slots=True)
class ProductRef:
    """What a line sells, as the catalogue described it when the line was priced."""

    sku: str
    name: str
    treatment: str
    tax_code: str
    revenue_role: str | None = None
    family: str | None = None


@dataclass(frozen=True, slots=True)
class Milestone:
    milestone_id: str
    amount: int  # minor units of the contract currency

    def to_dict(self, currency: str) -> dict[str, Any]:
        return {"milestone_id": self.milestone_id, "amount": format_minor(self.amount, currency)}


@dataclass(frozen=True, slots=True)
class ContractLine:
    """One line of a quote or contract.

    ``list_terms`` is the catalogue price as snapshotted; ``unit_amount`` a negotiated unit price
    replacing the list amount (before discount); ``factor`` the cumulative renewal uplift. The
    *contracted* terms (:attr:`terms`) are the list terms with both applied, exactly (no rounding);
    the discount applies when rating, which rounds once.
    """

    line_id: str
    product: ProductRef
    list_terms: PriceTerms
    quantity: Decimal
    performing_entity: str
    start: date
    discount_pct: Decimal = Decimal(0)
    unit_amount: Decimal | None = None
    factor: Decimal = Decimal(1)
    ssp: int | None = None  # standalone selling price of the line for its whole first term (minor units)
    ssp_unit: Decimal | None = None  # per unit per month (per unit for one-time), major units
    ssp_source: str = "none"  # quote, product, contract_price, none
    milestones: tuple[Milestone, ...] = ()
    extensions: tuple[tuple[str, str], ...] = ()  # (name, canonical JSON text), sorted
    phase: str | None = None  # "trial" or "ramp:<n>": this version is a phase of ``base`` (see :func:`phases`)
    base: ContractLine | None = field(default=None, compare=False, repr=False)

    def ext(self, name: str, default: Any = None) -> Any:
        """An extension's value (decoded JSON), or ``default``."""
        for key, text in self.extensions:
            if key == name:
                return _json(text)
        return default

    @property
    def currency(self) -> str:
        return self.list_terms.currency

    @property
    def terms(self) -> PriceTerms:
        t = self.list_terms if self.unit_amount is None else self.list_terms.with_amount(self.unit_amount)
        return t.scaled(self.factor)

    @property
    def metered(self) -> bool:
        return self.list_terms.metered

    @property
    def recurring(self) -> bool:
        return self.list_terms.recurring

    @property
    def period_amount(self) -> int | None:
        """The charge per full billing period (once, for one-time lines), after discount; None when metered."""
        if self.metered:
            return None
        return rate(self.terms, self.quantity, discount_pct=self.discount_pct)

    @property
    def net_unit_amount(self) -> Decimal | None:
        """The unit amount after discount (None for tiered and volume prices)."""
        t = self.terms
        if not t.has_unit_amount or t.amount is None:
            return None
        return apply_discount(t.amount, self.discount_pct)

    @property
    def effective_discount_pct(self) -> Decimal:
        """Discount off the list price, counting a negotiated unit amount below list (never negative)."""
        lt = self.list_terms
        if self.unit_amount is None or not lt.has_unit_amount or not lt.amount:
            return self.discount_pct
        net = apply_discount(self.unit_amount, self.discount_pct)
        off = (1 - net / lt.amount) * 100
        return max(Decimal(0), off.quantize(Decimal("0.0001")))

    def to_dict(self) -> dict[str, Any]:
        """The line as carried by contract events and stored in the change log (a phase is carried as the
        line it is a phase of: consumers derive the phases themselves)."""
        if self.base is not None:
            return self.base.to_dict()
        cur = self.currency
        terms = self.terms
        net = self.net_unit_amount
        amount = self.period_amount
        return {
            "line_id": self.line_id,
            "sku": self.product.sku,
            "product_name": self.product.name,
            "treatment": self.product.treatment,
            "tax_code": self.product.tax_code,
            "revenue_role": self.product.revenue_role,
            "product_family": self.product.family,
            "price": terms.to_dict(),
            "list_price": {"amount": None if self.list_terms.amount is None else dec_str(self.list_terms.amount),
                           "tiers": [t.to_dict() for t in self.list_terms.tiers]},
            "negotiated_unit_amount": None if self.unit_amount is None else dec_str(self.unit_amount),
            "uplift_factor": dec_str(self.factor),
            "quantity": dec_str(self.quantity),
            "discount_pct": dec_str(self.discount_pct),
            "unit_amount": None if net is None else money_str(net, cur),
            "period_amount": None if amount is None else format_minor(amount, cur),
            "metered": self.metered,
            "recurring": self.recurring,
            "ssp": None if self.ssp is None else format_minor(self.ssp, cur),
            "ssp_unit": None if self.ssp_unit is None else dec_str(self.ssp_unit),
            "ssp_source": self.ssp_source,
            "milestones": [m.to_dict(cur) for m in self.milestones],
            "performing_entity": self.performing_entity,
            "start": self.start.isoformat(),
            "extensions": {k: _json(v) for k, v in self.extensions},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ContractLine:
        price = dict(d["price"])
        list_price = d.get("list_price") or {}
        list_terms = PriceTerms.from_dict({**price, "amount": list_price.get("amount"),
                                           "tiers": list_price.get("tiers") or []})
        cur = list_terms.currency
        return cls(
            line_id=d["line_id"],
            product=ProductRef(d["sku"], d["product_name"], d["treatment"], d["tax_code"], d.get("revenue_role"),
                               d.get("product_family")),
            list_terms=list_terms,
            quantity=Decimal(d["quantity"]),
            performing_entity=d["performing_entity"],
            start=date.fromisoformat(d["start"]),
            discount_pct=Decimal(d.get("discount_pct") or 0),
            unit_amount=None if d.get("negotiated_unit_amount") is None else Decimal(d["negotiated_unit_amount"]),
            factor=Decimal(d.get("uplift_factor") or 1),
            ssp=None if d.get("ssp") is None else _minor(d["ssp"], cur),
            ssp_unit=None if d.get("ssp_unit") is None else Decimal(d["ssp_unit"]),
            ssp_source=d.get("ssp_source") or "none",
            milestones=tuple(Milestone(m["milestone_id"], _minor(m["amount"], cur)) for m in d.get("milestones") or ()),
            extensions=extensions_of(d.get("extensions")),
        )


def _minor(text: str, currency: str) -> int:
    return int(Decimal(text).scaleb(exponent(currency)))


@lru_cache(maxsize=4096)
def _json(text: str) -> Any:
    return json.loads(text)


def canonical(value: Any) -> str:
    """A JSON value as canonical text (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def extensions_of(values: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """Extension values (name -> JSON value) as a line or change keeps them; None values are dropped."""
    return tuple(sorted((str(k), canonical(v)) for k, v in (values or {}).items() if v is not None))


# --------------------------------------------------------------------------- phases: trials and ramps


def _ramp_version(line: ContractLine, step: Mapping[str, Any]) -> ContractLine:
    changes: dict[str, Any] = {}
    if step.get("unit_amount") is not None:
        changes["unit_amount"] = Decimal(str(step["unit_amount"]))
    if step.get("quantity") is not None:
        changes["quantity"] = Decimal(str(step["quantity"]))
    if step.get("discount_pct") is not None:
        changes["discount_pct"] = Decimal(str(step["discount_pct"]))
    return replace(line, **changes)


@lru_cache(maxsize=8192)
def phases(line: ContractLine) -> tuple[tuple[date, ContractLine], ...]:
    """The versions a line goes through on its own, in date order: ``(first day, the line from then)``.

    - a **ramp** (``ramp: [{start, end, unit_amount?, quantity?, discount_pct?}]``, steps tiling the term) is
      one version per step, each the line with the step's values (after the last step, the last step holds,
      e.g. into a renewal);
    - a **trial** (``trial_days``) makes the first days a phase at ``trial_discount_pct`` off (default 100: a
      free trial); the line converts on the day after.

    A line without either is ``((line.start, line),)``. Each phase is a line whose ``base`` is ``line`` (its
    events carry ``line`` itself)."""
    if not line.extensions:
        return ((line.start, line),)
    steps = line.ext("ramp") or []
    days = line.ext("trial_days")
    bounds: list[date] = [line.start]
    starts = []
    for st in steps:
        first = date.fromisoformat(str(st["start"]))
        starts.append(first)
        if first > line.start:
            bounds.append(first)
    trial_end = line.start + timedelta(days=int(days)) if days else None
    if trial_end is not None:
        bounds.append(trial_end)
    out: list[tuple[date, ContractLine]] = []
    for day in sorted(set(bounds)):
        version = line
        label = None
        if steps:
            k = max([i for i, first in enumerate(starts) if first <= day] or [0])
            version = _ramp_version(version, steps[k])
            label = f"ramp:{k + 1}"
        if trial_end is not None and day < trial_end:
            version = replace(version, discount_pct=Decimal(str(line.ext("trial_discount_pct") or 100)))
            label = "trial"
        if label is None:
            out.append((day, line))
        else:
            out.append((day, replace(version, phase=label, base=line)))
    return tuple(out)


def phase_on(line: ContractLine, day: date) -> ContractLine:
    """The phase of ``line`` in force on ``day`` (the line itself when it has none)."""
    found = line
    for first, version in phases(line):
        if first <= day:
            found = version
        else:
            break
    return found


def without_ramp(line: ContractLine, day: date) -> ContractLine:
    """The line as its ramp step on ``day`` sets it, the ramp dropped (an amendment of a ramped line ends the
    ramp: the amended values hold for the rest of the term)."""
    steps = line.ext("ramp")
    if not steps:
        return line
    step = steps[0]
    for st in steps:
        if date.fromisoformat(str(st["start"])) <= day:
            step = st
    kept = tuple((k, v) for k, v in line.extensions if k != "ramp")
    return replace(_ramp_version(line, step), extensions=kept, phase=None, base=None)


@dataclass(frozen=True, slots=True)
class LineUpdate:
    """An amendment's change to one line. ``price`` (with ``product``) replaces the price; a new price
    or ``unit_amount`` resets the renewal uplift (the new price is what was agreed)."""

    line_id: str
    quantity: Decimal | None = None
    price: PriceTerms | None = None
    product: ProductRef | None = None
    unit_amount: Decimal | None = None
    discount_pct: Decimal | None = None
    remove: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"line_id": self.line_id, "quantity": None if self.quantity is None else dec_str(self.quantity),
                "price": None if self.price is None else self.price.to_dict(),
                "product": None if self.product is None else {
                    "sku": self.product.sku, "name": self.product.name, "treatment": self.product.treatment,
                    "tax_code": self.product.tax_code, "revenue_role": self.product.revenue_role,
                    "family": self.product.family},
                "unit_amount": None if self.unit_amount is None else dec_str(self.unit_amount),
                "discount_pct": None if self.discount_pct is None else dec_str(self.discount_pct),
                "remove": self.remove}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LineUpdate:
        p = d.get("product")
        return cls(
            line_id=d["line_id"],
            quantity=None if d.get("quantity") is None else Decimal(d["quantity"]),
            price=None if d.get("price") is None else PriceTerms.from_dict(d["price"]),
            product=None if p is None else ProductRef(p["sku"], p["name"], p["treatment"], p["tax_code"],
                                                      p.get("revenue_role"), p.get("family")),
            unit_amount=None if d.get("unit_amount") is None else Decimal(d["unit_amount"]),
            discount_pct=None if d.get("discount_pct") is None else Decimal(d["discount_pct"]),
            remove=bool(d.get("remove")),
        )

    def apply(self, line: ContractLine) -> ContractLine:
        changes: dict[str, Any] = {}
        if self.quantity is not None:
            changes["quantity"] = self.quantity
        if self.price is not None:
            changes["list_terms"] = self.price
            changes["unit_amount"] = self.unit_amount
            changes["factor"] = Decimal(1)
            if self.product is not None:
                changes["product"] = self.product
        elif self.unit_amount is not None:
            changes["unit_amount"] = self.unit_amount
            changes["factor"] = Decimal(1)
        if self.discount_pct is not None:
            changes["discount_pct"] = self.discount_pct
        return replace(line, **changes)


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of a contract's change log."""

    seq: int
    kind: str
    effective: date
    recorded_on: date
    ref: str
    modification: str | None = None
    lines: tuple[ContractLine, ...] = ()  # activation: the lines; amendment: lines added
    updates: tuple[LineUpdate, ...] = ()
    term_months: int | None = None  # activation, renewal
    uplift_pct: Decimal | None = None  # renewal
    reason: str | None = None
    extensions: tuple[tuple[str, str], ...] = ()  # activation: contract-level extensions (coupons, minimum)

    def ext(self, name: str, default: Any = None) -> Any:
        for key, text in self.extensions:
            if key == name:
                return _json(text)
        return default

    def to_dict(self) -> dict[str, Any]:
        out = {"seq": self.seq, "kind": self.kind, "effective": self.effective.isoformat(),
               "recorded_on": self.recorded_on.isoformat(), "ref": self.ref, "modification": self.modification,
               "lines": [ln.to_dict() for ln in self.lines], "updates": [u.to_dict() for u in self.updates],
               "term_months": self.term_months,
               "uplift_pct": None if self.uplift_pct is None else dec_str(self.uplift_pct), "reason": self.reason}
        if self.extensions:
            out["extensions"] = {k: _json(v) for k, v in self.extensions}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Change:
        return cls(seq=int(d["seq"]), kind=d["kind"], effective=date.fromisoformat(d["effective"]),
                   recorded_on=date.fromisoformat(d["recorded_on"]), ref=d["ref"], modification=d.get("modification"),
                   lines=tuple(ContractLine.from_dict(x) for x in d.get("lines") or ()),
                   updates=tuple(LineUpdate.from_dict(x) for x in d.get("updates") or ()),
                   term_months=d.get("term_months"),
                   uplift_pct=None if d.get("uplift_pct") is None else Decimal(d["uplift_pct"]), reason=d.get("reason"),
                   extensions=extensions_of(d.get("extensions")))


@dataclass(frozen=True, slots=True)
class Term:
    number: int
    start: date
    end: date  # last day, inclusive
    months: int
    uplift_pct: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """A version of a line and the inclusive span of days it applies to."""

    line: ContractLine
    start: date
    end: date
    seq: int  # the change that started this version
    kind: str  # activation, amendment, renewal

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True, slots=True)
class Timeline:
    start: date
    terms: tuple[Term, ...]
    segments: tuple[Segment, ...]
    service_end: date  # last day of service
    cancelled: date | None  # effective date of the cancellation (first day without service)
    applied: tuple[Change, ...]
    voided: tuple[Change, ...] = ()
    line_order: tuple[str, ...] = field(default=())

    def term_on(self, day: date) -> Term:
        for term in self.terms:
            if term.start <= day <= term.end:
                return term
        return self.terms[0] if day < self.start else self.terms[-1]

    def segments_on(self, day: date) -> list[Segment]:
        return [s for s in self.segments if s.covers(day)]

    def view_day(self, day: date) -> date:
        """``day`` clamped to the days of service (before the start: the start; after the end: the last day)."""
        if day < self.start:
            return self.start
        if day > self.service_end:
            return max(self.service_end, self.start)
        return day


def term_end(start: date, months: int) -> date:
    return add_months(start, months) - ONE_DAY


def replay(changes: Sequence[Change], through: date | None = None) -> Timeline:
    """Fold a change log into a timeline. ``through``: apply only changes effective on or before it
    (the activation always applies). Raises when a change does not fit the contract it meets.

    A line's own phases (a trial, ramp steps: :func:`phases`) are versions of it too: each starts a
    segment of its own (version ``seq * PHASE_SEQ + k``), whatever ``through`` says (they are part of
    the line as signed). Changes apply to the line itself, never to a phase."""
    ordered = sorted(changes, key=lambda c: (c.kind != "activation", c.effective, c.seq))
    if not ordered or ordered[0].kind != "activation":
        raise ValidationError("a contract's change log starts with its activation", field="changes")
    act = ordered[0]
    assert act.term_months is not None
    start = act.effective
    terms = [Term(1, start, term_end(start, act.term_months), act.term_months)]
    open_: dict[str, tuple[ContractLine, date, int, str]] = {}
    base_: dict[str, ContractLine] = {}
    phased: set[str] = set()  # lines with phases still to come
    order: list[str] = []
    closed: list[Segment] = []
    applied = [act]
    voided: list[Change] = []
    cancelled: date | None = None

    def close(line_id: str, last: date) -> None:
        line, s, seq, kind = open_.pop(line_id)
        if last >= s:
            closed.append(Segment(line, s, last, seq, kind))

    def open_line(line_id: str, base: ContractLine, first: date, seq: int, kind: str) -> None:
        base_[line_id] = base
        if base.extensions and len(phases(base)) > 1:
            phased.add(line_id)
            open_[line_id] = (phase_on(base, first), first, seq, kind)
        else:
            phased.discard(line_id)
            open_[line_id] = (base, first, seq, kind)

    def advance(to: date) -> None:
        """Start the phases of open lines that begin on or before ``to``."""
        for line_id in [x for x in order if x in phased and x in open_]:
            line, s, seq, kind = open_[line_id]
            base_seq = seq // PHASE_SEQ if seq >= PHASE_SEQ else seq
            for k, (first, version) in enumerate(phases(base_[line_id])):
                if s < first <= to:
                    close(line_id, first - ONE_DAY)
                    open_[line_id] = (version, first, base_seq * PHASE_SEQ + k, kind)
                    s = first

    for ln in act.lines:
        if ln.line_id in open_:
            raise ConflictError(f"line {ln.line_id} appears twice", field="lines", record=ln.line_id)
        open_line(ln.line_id, ln, start, act.seq, "activation")
        order.append(ln.line_id)
    for c in ordered[1:]:
        if through is not None and c.effective > through:
            continue
        if cancelled is not None and c.effective >= cancelled:
            voided.append(c)
            continue
        end = terms[-1].end
        if phased:
            advance(min(c.effective, end + ONE_DAY))
        if c.kind == "amendment":
            if c.effective < start or c.effective > end:
                raise ValidationError(f"amendment {c.ref} is effective {c.effective}, outside the contract's service"
                                      f" {start}..{end}", field="effective", record=c.ref)
            for u in c.updates:
                if u.line_id not in open_:
                    raise NotFoundError(f"amendment {c.ref}: line {u.line_id} is not in force on {c.effective}",
                                        field="changes", record=u.line_id)
                line = without_ramp(base_[u.line_id], c.effective)
                close(u.line_id, c.effective - ONE_DAY)
                if not u.remove:
                    open_line(u.line_id, u.apply(line), c.effective, c.seq, "amendment")
                else:
                    phased.discard(u.line_id)
            for ln in c.lines:
                if ln.line_id in order:
                    raise ConflictError(f"amendment {c.ref}: line {ln.line_id} already exists on the contract;"
                                        " give the added line a new line_id", field="add", record=ln.line_id)
                open_line(ln.line_id, ln, c.effective, c.seq, "amendment")
                order.append(ln.line_id)
        elif c.kind == "renewal":
            assert c.term_months is not None
            if c.effective != end + ONE_DAY:
                raise ValidationError(f"renewal {c.ref} must start the day after the term ends ({end + ONE_DAY})",
                                      field="effective", record=c.ref)
            uplift = c.uplift_pct or Decimal(0)
            terms.append(Term(len(terms) + 1, c.effective, term_end(c.effective, c.term_months), c.term_months,
                              uplift))
            factor = (Decimal(100) + uplift) / Decimal(100)
            for line_id in list(open_):
                base = base_[line_id]
                close(line_id, end)
                if base.recurring:
                    open_line(line_id, replace(base, factor=base.factor * factor), c.effective, c.seq, "renewal")
                else:
                    phased.discard(line_id)
        elif c.kind == "cancellation":
            if c.effective < start or c.effective > end + ONE_DAY:
                raise ValidationError(f"cancellation {c.ref} is effective {c.effective}, outside {start}..{end + ONE_DAY}",
                                      field="effective", record=c.ref)
            for line_id in list(open_):
                close(line_id, c.effective - ONE_DAY)
            phased.clear()
            cancelled = c.effective
        else:
            raise ValidationError(f"unknown change kind {c.kind!r}", field="kind")
        applied.append(c)
    service_end = terms[-1].end if cancelled is None else cancelled - ONE_DAY
    if phased:
        advance(service_end)
    for line_id in list(open_):
        close(line_id, service_end)
    rank = {line_id: i for i, line_id in enumerate(order)}
    segments = tuple(sorted(closed, key=lambda s: (rank[s.line.line_id], s.start)))
    return Timeline(start=start, terms=tuple(terms), segments=segments, service_end=service_end, cancelled=cancelled,
                    applied=tuple(applied), voided=tuple(voided), line_order=tuple(order))


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Values:
    tcv: int
    acv: int
    mrr: int
    recurring: int  # recurring part of TCV
    one_time: int


def segment_value(seg: Segment, contract_start: date, billing_day: int) -> int:
    """What a segment is worth: its charge prorated over its days; a one-time line once, on its first day."""
    amount = seg.line.period_amount
    if amount is None:
        return 0
    months = seg.line.list_terms.months
    if months is None:
        return amount if seg.start == seg.line.start else 0
    return prorated(amount, Grid.of(contract_start, billing_day, months), seg.start, seg.end)


def segment_ssp(seg: Segment, contract_start: date, billing_day: int) -> int | None:
    """The standalone selling price of a segment: SSP per unit per month x quantity x months covered
    (one-time: per unit x quantity, on the first day). None when the line has no SSP basis."""
    line = seg.line
    if line.phase == "trial":  # a trial is not sold: its standalone price is what it charges (0 when free)
        return segment_value(seg, contract_start, billing_day)
    if line.ssp_unit is None:
        return None if line.metered else segment_value(seg, contract_start, billing_day)
    if line.metered:
        return None
    per = Fraction(line.ssp_unit) * Fraction(line.quantity) * 10 ** exponent(line.currency)
    if line.list_terms.months is None:
        return round_fraction(per) if seg.start == line.start else 0
    return round_fraction(per * months_in(Grid.of(contract_start, billing_day, 1), seg.start, seg.end))


def monthly_amount(line: ContractLine) -> int:
    """A recurring, non-metered line's charge per month, rounded half-up (0 otherwise)."""
    amount = line.period_amount
    months = line.list_terms.months
    if amount is None or months is None:
        return 0
    return amount if months == 1 else round_fraction(Fraction(amount, months))


def values(tl: Timeline, as_of: date, billing_day: int) -> Values:
    """TCV, ACV (recurring TCV x 12 / term months) of the term in force on ``as_of``; MRR on ``as_of``."""
    day = tl.view_day(as_of)
    term = tl.term_on(day)
    recurring = one_time = 0
    for seg in tl.segments:
        if seg.start < term.start or seg.start > term.end:
            continue
        v = segment_value(seg, tl.start, billing_day)
        if seg.line.recurring:
            recurring += v
        else:
            one_time += v
    in_service = tl.start <= as_of <= tl.service_end
    mrr = sum(monthly_amount(s.line) for s in tl.segments_on(as_of)) if in_service else 0
    acv = round_fraction(Fraction(recurring * 12, term.months))
    return Values(tcv=recurring + one_time, acv=acv, mrr=mrr, recurring=recurring, one_time=one_time)


def status_on(tl: Timeline, as_of: date) -> str:
    """active until service ends (signed contracts not started yet included); then cancelled or expired."""
    if as_of <= tl.service_end:
        return "active"
    return "cancelled" if tl.cancelled is not None else "expired"


def lines_view(segments: Iterable[Segment], currency: str) -> list[dict[str, Any]]:
    out = []
    for s in segments:
        ln = s.line
        net = ln.net_unit_amount
        amount = ln.period_amount
        out.append({
            "line_id": ln.line_id, "sku": ln.product.sku, "price_id": ln.list_terms.price_id,
            "quantity": dec_str(ln.quantity),
            "unit_amount": None if net is None else money_str(net, currency),
            "discount_pct": dec_str(ln.discount_pct),
            "amount": None if amount is None else format_minor(amount, currency),
            "period": ln.list_terms.period, "timing": ln.list_terms.timing, "model": ln.list_terms.model,
            "metric": ln.list_terms.metric, "mrr": format_minor(monthly_amount(ln), currency),
            "treatment": ln.product.treatment, "performing_entity": ln.performing_entity,
            "from": s.start.isoformat(), "to": s.end.isoformat(),
            **({"phase": ln.phase} if ln.phase else {}),
        })
    return out


def segments_view(tl: Timeline, currency: str, billing_day: int) -> list[dict[str, Any]]:
    """The whole timeline, every line version with its days, value and SSP (as events carry it)."""
    out = []
    for s in tl.segments:
        v = segment_value(s, tl.start, billing_day)
        ssp = segment_ssp(s, tl.start, billing_day)
        out.append({"line_id": s.line.line_id, "from": s.start.isoformat(), "to": s.end.isoformat(),
                    "term": tl.term_on(s.start).number, "change_seq": s.seq, "reason": s.kind,
                    "quantity": dec_str(s.line.quantity), "price": s.line.terms.to_dict(),
                    "discount_pct": dec_str(s.line.discount_pct),
                    "unit_amount": None if s.line.net_unit_amount is None else money_str(s.line.net_unit_amount,
                                                                                         currency),
                    "period_amount": None if s.line.period_amount is None else format_minor(s.line.period_amount,
                                                                                            currency),
                    "value": format_minor(v, currency), "ssp": None if ssp is None else format_minor(ssp, currency),
                    **({"phase": s.line.phase} if s.line.phase else {})})
    return out


def terms_view(tl: Timeline) -> list[dict[str, Any]]:
    return [{"number": t.number, "start": t.start.isoformat(), "end": min(t.end, tl.service_end).isoformat()
             if t.start <= tl.service_end else t.end.isoformat(), "contracted_end": t.end.isoformat(),
             "months": t.months, "uplift_pct": None if t.uplift_pct is None else dec_str(t.uplift_pct)}
            for t in tl.terms]


def change_summary(c: Change) -> dict[str, Any]:
    out: dict[str, Any] = {"seq": c.seq, "ref": c.ref, "kind": c.kind, "effective": c.effective.isoformat(),
                           "recorded_on": c.recorded_on.isoformat()}
    if c.kind == "amendment":
        out["modification"] = c.modification
        out["changes"] = [{k: v for k, v in u.to_dict().items() if v not in (None, False) and k != "product"}
                          for u in c.updates]
        out["added"] = [ln.line_id for ln in c.lines]
    elif c.kind in ("activation", "renewal"):
        out["term_months"] = c.term_months
        if c.kind == "renewal":
            out["uplift_pct"] = dec_str(c.uplift_pct or Decimal(0))
    if c.reason:
        out["reason"] = c.reason
    return out
