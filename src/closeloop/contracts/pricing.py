"""Pricing a quote: from what a user typed to priced :class:`ContractLine` records. Reads, never writes.

Used by ``quote.create``/``quote.update``, the opportunity conversion and ``contract.amend``
(added lines), so a line is checked the same way wherever it comes from. Every problem with the
lines is collected and reported at once (``validation_error`` with ``details.errors``); a record
that does not exist (price, product, entity, customer) is ``not_found``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from closeloop.catalog.model import Problem, dec_str, raise_problems
from closeloop.catalog.service import get_price, get_product
from closeloop.contracts.approvals import QuoteFacts
from closeloop.contracts.model import (
    SSP_DECIMALS,
    Change,
    ContractLine,
    Milestone,
    ProductRef,
    Segment,
    Values,
    _json,
    extensions_of,
    phases,
    replay,
    segment_value,
    term_end,
    values,
)
from closeloop.contracts.schedule import Grid, months_in, round_fraction
from closeloop.core.entities import get_entity
from closeloop.core.errors import NotFoundError, ValidationError
from closeloop.core.fx import rate_on
from closeloop.core.money import check_currency, exponent, format_minor, to_minor
from closeloop.core.periods import parse_date

MAX_TERM_MONTHS = 240
MAX_TRIAL_DAYS = 730  # Stripe's limit for a trial period
TRIAL_INVOICES = ("none", "zero")

# Checks of coupon codes given on quotes, registered by the area that owns coupons (billing): each returns a
# reason the coupon cannot be used (unknown, expired, another currency, exhausted) or None. Contracts cannot
# import billing (dependencies point the other way), so billing registers itself here.
COUPON_CHECKS: list[Callable[[Any, str, str, date], str | None]] = []


def register_coupon_check(check: Callable[[Any, str, str, date], str | None]) -> None:
    if check not in COUPON_CHECKS:
        COUPON_CHECKS.append(check)


@dataclass(frozen=True, slots=True)
class LineSpec:
    """A quote line as given (SCENARIOS.md ``quote.create`` lines)."""

    line_id: str
    price_id: str
    quantity: Decimal
    discount_pct: Decimal | None = None
    unit_amount: Decimal | None = None
    ssp: Decimal | None = None
    milestones: tuple[tuple[str, Decimal], ...] | None = None
    performing_entity: str | None = None
    extensions: tuple[tuple[str, str], ...] = ()  # trial_days, coupons, minimum, ramp... (canonical JSON)

    def to_dict(self) -> dict[str, Any]:
        out = {"line_id": self.line_id, "price_id": self.price_id, "quantity": dec_str(self.quantity),
               "discount_pct": None if self.discount_pct is None else dec_str(self.discount_pct),
               "unit_amount": None if self.unit_amount is None else dec_str(self.unit_amount),
               "ssp": None if self.ssp is None else dec_str(self.ssp),
               "milestones": None if self.milestones is None else [
                   {"milestone_id": m, "amount": dec_str(a)} for m, a in self.milestones],
               "performing_entity": self.performing_entity}
        if self.extensions:
            out["extensions"] = {k: _json(v) for k, v in self.extensions}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LineSpec:
        def dec(key: str) -> Decimal | None:
            return None if d.get(key) is None else Decimal(str(d[key]))

        ms = d.get("milestones")
        return cls(line_id=str(d["line_id"]), price_id=str(d["price_id"]), quantity=Decimal(str(d["quantity"])),
                   discount_pct=dec("discount_pct"), unit_amount=dec("unit_amount"), ssp=dec("ssp"),
                   milestones=None if ms is None else tuple((str(m["milestone_id"]), Decimal(str(m["amount"])))
                                                            for m in ms),
                   performing_entity=d.get("performing_entity"), extensions=extensions_of(d.get("extensions")))


@dataclass(frozen=True, slots=True)
class QuoteSpec:
    """A quote's fields as given (optional ones None when defaulted)."""

    quote_id: str
    customer: str
    start: str
    term_months: int
    lines: tuple[LineSpec, ...]
    entity: str | None = None
    currency: str | None = None
    billing_day: int | None = None
    auto_renew: bool = False
    opportunity: str | None = None
    renewal_term_months: int | None = None
    renewal_uplift_pct: Decimal | None = None
    name: str | None = None
    extensions: tuple[tuple[str, str], ...] = ()  # contract-level: coupons, minimum (canonical JSON)
    coterm: str | None = None  # co-term with this contract: the quote adds its lines to it (docs/billing.md)

    def to_dict(self) -> dict[str, Any]:
        out = {"quote_id": self.quote_id, "customer": self.customer, "start": self.start,
               "term_months": self.term_months, "lines": [ln.to_dict() for ln in self.lines],
               "entity": self.entity, "currency": self.currency, "billing_day": self.billing_day,
               "auto_renew": self.auto_renew, "opportunity": self.opportunity,
               "renewal_term_months": self.renewal_term_months,
               "renewal_uplift_pct": None if self.renewal_uplift_pct is None else dec_str(self.renewal_uplift_pct),
               "name": self.name}
        if self.extensions:
            out["extensions"] = {k: _json(v) for k, v in self.extensions}
        if self.coterm:
            out["coterm"] = self.coterm
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuoteSpec:
        return cls(quote_id=d["quote_id"], customer=d["customer"], start=d["start"], term_months=int(d["term_months"]),
                   lines=tuple(LineSpec.from_dict(x) for x in d["lines"]), entity=d.get("entity"),
                   currency=d.get("currency"), billing_day=d.get("billing_day"), auto_renew=bool(d.get("auto_renew")),
                   opportunity=d.get("opportunity"), renewal_term_months=d.get("renewal_term_months"),
                   renewal_uplift_pct=None if d.get("renewal_uplift_pct") is None else Decimal(d["renewal_uplift_pct"]),
                   name=d.get("name"), extensions=extensions_of(d.get("extensions")), coterm=d.get("coterm"))


@dataclass(frozen=True, slots=True)
class PricedQuote:
    spec: QuoteSpec
    customer_id: int
    customer: str  # the survivor's external id
    entity: str
    currency: str
    start: date
    billing_day: int
    lines: tuple[ContractLine, ...]
    values: Values
    facts: QuoteFacts
    end: date = field(default=date.min)

    def to_dict(self) -> dict[str, Any]:
        cur = self.currency
        return {
            "quote_id": self.spec.quote_id, "customer": self.customer, "customer_id": self.customer_id,
            "entity": self.entity, "currency": cur, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "term_months": self.spec.term_months, "billing_day": self.billing_day, "auto_renew": self.spec.auto_renew,
            "renewal_term_months": self.spec.renewal_term_months,
            "renewal_uplift_pct": None if self.spec.renewal_uplift_pct is None else dec_str(self.spec.renewal_uplift_pct),
            "opportunity": self.spec.opportunity, "name": self.spec.name,
            "tcv": format_minor(self.values.tcv, cur), "acv": format_minor(self.values.acv, cur),
            "mrr": format_minor(self.values.mrr, cur), "one_time": format_minor(self.values.one_time, cur),
            "max_discount_pct": dec_str(self.facts.max_discount_pct),
            "lines": [ln.to_dict() for ln in self.lines],
            **({"extensions": {k: _json(v) for k, v in self.spec.extensions}} if self.spec.extensions else {}),
            **({"coterm": self.spec.coterm} if self.spec.coterm else {}),
        }


def resolve_customer(uow: Any, external_id: str) -> Any:
    from closeloop.customers.service import get_customer

    customer = get_customer(uow, external_id)
    if customer.status == "inactive":
        raise ValidationError(f"customer {external_id} is inactive; reactivate it before quoting", field="customer",
                              record=external_id)
    return customer


def selling_entity(uow: Any, given: str | None, customer: Any) -> str:
    code = given or getattr(customer, "entity", None)
    if code:
        return get_entity(uow, code).code
    from closeloop.core.entities import list_entities

    found = list_entities(uow)
    if len(found) == 1:
        return found[0].code
    raise ValidationError(
        f"entity is required: customer {customer.external_id} has no contracting entity and there are "
        f"{len(found)} legal entities" + (f" ({', '.join(e.code for e in found)})" if found else ""),
        field="entity")


def check_billable_currency(uow: Any, currency: str, entity: str, day: str) -> None:
    """A quote in another currency than the entity's needs an FX rate on or before its start."""
    check_currency(currency)
    functional = get_entity(uow, entity).currency
    if currency == functional:
        return
    try:
        rate_on(uow, currency, functional, day)
    except NotFoundError:
        raise ValidationError(
            f"entity {entity} books in {functional} and has no FX rate {currency}->{functional} on or before {day}:"
            f" it cannot bill in {currency}; record a rate with fx.rate first", field="currency",
            currency=currency, entity=entity, date=day) from None


def price_line(uow: Any, spec: LineSpec, *, where: str, currency: str, entity: str, start: date, term_last: date,
               term_months: int | None, billing_day: int, contract_start: date, problems: list[Problem]) -> ContractLine | None:
    """Price one line starting on ``start`` in a term that ends on ``term_last``. ``term_months`` is
    given when the line spans the whole term (a quote line), None for a line added mid-term."""
    price = get_price(uow, spec.price_id, field=f"{where}.price_id", record=spec.line_id)
    product = get_product(uow, price.sku, field=f"{where}.price_id", record=spec.line_id)
    terms = price.terms
    n0 = len(problems)

    def bad(f: str, reason: str) -> None:
        problems.append(Problem(f"{where}.{f}" if f else where, reason))

    if not spec.line_id or len(spec.line_id) > 64:
        bad("line_id", "a line id is 1-64 characters")
    if not price.active:
        bad("price_id", f"price {price.price_id} is inactive (retired); choose an active price")
    if not product.active:
        bad("price_id", f"product {product.sku} is inactive; it cannot be sold on a new line")
    if terms.currency != currency:
        bad("price_id", f"price {price.price_id} is in {terms.currency}, the quote is in {currency}; use the"
                        f" product's {currency} price")
    q = spec.quantity
    if not q.is_finite() or q < 0:
        bad("quantity", f"must not be negative ({q})")
    elif not terms.metered and q == 0:
        bad("quantity", "must be above zero (remove the line instead)")
    elif not terms.metered and terms.model == "flat" and q != 1:
        bad("quantity", f"a flat price charges a fixed amount; quantity must be 1 (use a per_unit price for"
                        f" {dec_str(q)} units)")
    d = spec.discount_pct if spec.discount_pct is not None else Decimal(0)
    if not d.is_finite() or d < 0 or d > 100:
        bad("discount_pct", f"must be between 0 and 100 ({d})")
    if spec.unit_amount is not None:
        if not terms.has_unit_amount:
            bad("unit_amount", f"a {terms.model} price has no single unit amount to replace; use discount_pct or"
                               " another price")
        elif spec.unit_amount < 0:
            bad("unit_amount", f"must not be negative ({spec.unit_amount})")
        elif terms.model in ("flat", "package") and _decimals(spec.unit_amount) > exponent(currency):
            bad("unit_amount", f"a fixed {terms.model} amount is whole minor units of {currency}")
    performing = spec.performing_entity or entity
    get_entity(uow, performing)
    milestones: tuple[Milestone, ...] = ()
    if spec.milestones is not None:
        if terms.recurring or terms.metered:
            bad("milestones", "milestones bill a one-time charge: give them on a line with a one_time price")
        seen: set[str] = set()
        ms = []
        for j, (mid, amount) in enumerate(spec.milestones):
            if not mid or mid in seen:
                bad(f"milestones[{j}].milestone_id", f"milestone ids must be unique and not empty ({mid!r})")
            seen.add(mid)
            if amount <= 0:
                bad(f"milestones[{j}].amount", f"must be above zero ({amount})")
            try:
                ms.append(Milestone(mid, to_minor(amount, currency, field=f"{where}.milestones[{j}].amount")))
            except ValidationError as exc:
                bad(f"milestones[{j}].amount", exc.message)
        milestones = tuple(ms)
        if not ms:
            bad("milestones", "give at least one milestone, or leave milestones out")
    elif product.treatment == "milestone":
        bad("milestones", f"product {product.sku} is recognised on milestones; give the line's milestones"
                          " [{milestone_id, amount}]")
    if spec.ssp is not None and spec.ssp < 0:
        bad("ssp", f"must not be negative ({spec.ssp})")
    extensions = check_line_extensions(uow, spec, terms, where=where, currency=currency, start=start,
                                       term_last=term_last, problems=problems)
    if len(problems) > n0:
        return None
    line = ContractLine(
        line_id=spec.line_id,
        product=ProductRef(product.sku, product.name, product.treatment, product.tax_code, product.revenue_role,
                           product.family),
        list_terms=terms, quantity=q, performing_entity=performing, start=start, discount_pct=d,
        unit_amount=spec.unit_amount, milestones=milestones, extensions=extensions)
    if milestones:
        total = sum(m.amount for m in milestones)
        charge = line.period_amount or 0
        if total != charge:
            bad("milestones", f"milestones add up to {format_minor(total, currency)} but the line charges"
                              f" {format_minor(charge, currency)}; they must bill exactly the line")
            return None
    return _with_ssp(uow, line, spec, product, where=where, currency=currency, term_last=term_last,
                     term_months=term_months, billing_day=billing_day, contract_start=contract_start,
                     problems=problems)


def _dec_or_none(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return out if out.is_finite() else None


def _date_or_none(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


def ramp_problems(steps: Any, *, start: date, end: date, where: str = "ramp", model: str = "per_unit",
                  metered: bool = False) -> tuple[list[Problem], list[dict[str, Any]]]:
    """Check a ramp (pure): its steps must tile the line's days [start, end] exactly — the first starts on
    ``start``, each next one the day after the previous ends, the last ends on ``end``; a step that begins
    before the previous one ends overlaps it, one that begins later leaves a gap. Each step sets at least
    one of ``unit_amount``, ``quantity``, ``discount_pct``. Returns (problems, the steps normalised)."""
    problems: list[Problem] = []
    out: list[dict[str, Any]] = []
    if not isinstance(steps, list) or not steps:
        return [Problem(where, "a ramp is a list of steps [{start, end, unit_amount?, quantity?, discount_pct?}]")], []
    for i, st in enumerate(steps):
        w = f"{where}[{i}]"
        if not isinstance(st, Mapping):
            problems.append(Problem(w, "a ramp step is {start, end, unit_amount?, quantity?, discount_pct?}"))
            continue
        unknown = sorted(set(st) - {"start", "end", "unit_amount", "quantity", "discount_pct"})
        if unknown:
            problems.append(Problem(w, f"unknown field(s) {', '.join(unknown)}"))
        first, last = _date_or_none(st.get("start")), _date_or_none(st.get("end"))
        if first is None or last is None:
            problems.append(Problem(w, f"start and end are dates YYYY-MM-DD ({st.get('start')!r}, {st.get('end')!r})"))
            continue
        if last < first:
            problems.append(Problem(w, f"ends {last} before it starts {first}"))
        step: dict[str, Any] = {"start": first.isoformat(), "end": last.isoformat()}
        given = 0
        for key in ("unit_amount", "quantity", "discount_pct"):
            if st.get(key) is None:
                continue
            given += 1
            value = _dec_or_none(st.get(key))
            if value is None:
                problems.append(Problem(f"{w}.{key}", f"must be a decimal number ({st.get(key)!r})"))
                continue
            if key == "unit_amount" and (value < 0 or model in ("tiered", "volume")):
                problems.append(Problem(f"{w}.unit_amount", "must not be negative" if value < 0 else
                                        f"a {model} price has no single unit amount; ramp its quantity or discount"))
            if key == "quantity" and (value <= 0 or metered or (model == "flat" and value != 1)):
                problems.append(Problem(f"{w}.quantity", "a metered line's quantity is its usage" if metered else
                                        "a flat price takes quantity 1" if model == "flat" and value > 0 else
                                        f"must be above zero ({value})"))
            if key == "discount_pct" and not 0 <= value <= 100:
                problems.append(Problem(f"{w}.discount_pct", f"must be between 0 and 100 ({value})"))
            step[key] = dec_str(value)
        if not given:
            problems.append(Problem(w, "a step sets unit_amount, quantity or discount_pct"))
        out.append(step)
    if problems:
        return problems, out
    ordered = sorted(out, key=lambda x: (x["start"], x["end"]))
    if ordered[0]["start"] != start.isoformat():
        problems.append(Problem(f"{where}[0].start", f"the first step must start on the line's first day {start}"
                                f" (it starts {ordered[0]['start']})"))
    for a, b in zip(ordered, ordered[1:], strict=False):
        a_end, b_start = date.fromisoformat(a["end"]), date.fromisoformat(b["start"])
        if b_start <= a_end:
            problems.append(Problem(where, f"steps overlap: {a['start']}..{a['end']} and {b['start']}..{b['end']}"))
        elif b_start > a_end + timedelta(days=1):
            problems.append(Problem(where, f"steps leave a gap: nothing applies from {a_end + timedelta(days=1)}"
                                    f" to {b_start - timedelta(days=1)}"))
    if ordered[-1]["end"] != end.isoformat():
        problems.append(Problem(f"{where}[{len(ordered) - 1}].end", f"the last step must end on the term's last day"
                                f" {end} (it ends {ordered[-1]['end']})"))
    return problems, ordered


def check_line_extensions(uow: Any, spec: LineSpec, terms: Any, *, where: str, currency: str, start: date,
                          term_last: date, problems: list[Problem]) -> tuple[tuple[str, str], ...]:
    """Validate a line's optional billing-depth fields (trial, ramp, minimum, coupons); returns them normalised."""
    if not spec.extensions:
        return ()
    ext = {k: _json(v) for k, v in spec.extensions}
    out: dict[str, Any] = {}

    def bad(f: str, reason: str) -> None:
        problems.append(Problem(f"{where}.{f}", reason))

    days = ext.get("trial_days")
    if days is not None:
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_TRIAL_DAYS:
            bad("trial_days", f"a trial is a whole number of days, 1 to {MAX_TRIAL_DAYS} ({days!r})")
        elif not terms.recurring or terms.metered:
            bad("trial_days", "a trial applies to a recurring line with a fixed charge (usage is only billed as used)")
        elif start + timedelta(days=days) > term_last:
            bad("trial_days", f"a {days}-day trial from {start} does not end before the term's last day {term_last}")
        else:
            out["trial_days"] = days
    for key in ("trial_discount_pct", "trial_invoice"):
        if ext.get(key) is not None and days is None:
            bad(key, "give trial_days too")
    if ext.get("trial_discount_pct") is not None and days is not None:
        pct = _dec_or_none(ext["trial_discount_pct"])
        if pct is None or not 0 < pct <= 100:
            bad("trial_discount_pct", f"a trial is 0 to 100% off, above 0 ({ext['trial_discount_pct']!r})")
        else:
            out["trial_discount_pct"] = dec_str(pct)
    if ext.get("trial_invoice") is not None and days is not None:
        if ext["trial_invoice"] not in TRIAL_INVOICES:
            bad("trial_invoice", f"must be {' or '.join(TRIAL_INVOICES)} (a zero invoice for the trial, or none)")
        else:
            out["trial_invoice"] = ext["trial_invoice"]
    if ext.get("ramp") is not None:
        if not terms.recurring:
            bad("ramp", "a ramp steps a recurring line's price over its term; a one-time line has no term")
        else:
            found, steps = ramp_problems(ext["ramp"], start=start, end=term_last, where=f"{where}.ramp",
                                         model=terms.model, metered=terms.metered)
            problems.extend(found)
            if not found:
                out["ramp"] = steps
    if ext.get("minimum") is not None:
        mn = ext["minimum"]
        amount, metric = (mn.get("amount"), mn.get("metric")) if isinstance(mn, Mapping) else (mn, None)
        if not terms.metered:
            bad("minimum", "a spending minimum on a line applies to a metered line; give the quote's minimum for a"
                           " commitment on the whole contract")
        elif metric is not None and metric != terms.metric:
            bad("minimum.metric", f"line {spec.line_id} meters {terms.metric}, not {metric}: a commitment on a metric"
                                  " the line does not meter")
        else:
            value = _minimum_amount(amount, currency, f"{where}.minimum", problems)
            if value is not None:
                out["minimum"] = {"amount": value, "metric": terms.metric}
    if ext.get("coupons") is not None:
        codes = check_coupons(uow, ext["coupons"], currency, start, f"{where}.coupons", problems)
        if codes:
            out["coupons"] = codes
    return extensions_of(out)


def _minimum_amount(amount: Any, currency: str, where: str, problems: list[Problem]) -> str | None:
    value = _dec_or_none(amount)
    if value is None or value <= 0:
        problems.append(Problem(where, f"a minimum commitment is an amount above zero ({amount!r})"))
        return None
    try:
        return format_minor(to_minor(value, currency, field=where), currency)
    except ValidationError as exc:
        problems.append(Problem(where, exc.message))
        return None


def check_coupons(uow: Any, codes: Any, currency: str, day: date, where: str, problems: list[Problem]) -> list[str]:
    if not isinstance(codes, list) or not all(isinstance(c, str) and c.strip() for c in codes):
        problems.append(Problem(where, "coupons is a list of coupon codes"))
        return []
    if len(set(codes)) != len(codes):
        problems.append(Problem(where, "a coupon is given twice"))
        return []
    for j, code in enumerate(codes):
        for check in COUPON_CHECKS:
            reason = check(uow, code, currency, day)
            if reason:
                problems.append(Problem(f"{where}[{j}]", reason))
    return list(codes)


def check_contract_extensions(uow: Any, ext: Mapping[str, Any], lines: Sequence[ContractLine], *, currency: str,
                              start: date, problems: list[Problem]) -> tuple[tuple[str, str], ...]:
    """The quote's contract-level fields: ``coupons`` (on the whole contract) and ``minimum`` {amount, metric?}
    (a minimum spend per billing period on the contract's metered lines, or those of ``metric``)."""
    out: dict[str, Any] = {}
    if ext.get("coupons") is not None:
        codes = check_coupons(uow, ext["coupons"], currency, start, "coupons", problems)
        if codes:
            out["coupons"] = codes
    mn = ext.get("minimum")
    if mn is not None:
        amount, metric = (mn.get("amount"), mn.get("metric")) if isinstance(mn, Mapping) else (mn, None)
        metered = [ln for ln in lines if ln.metered]
        covered = [ln for ln in metered if metric is None or ln.list_terms.metric == metric]
        if not metered:
            problems.append(Problem("minimum", "the contract meters nothing: a minimum commitment applies to usage"
                                               " (add a metered line, or drop the minimum)"))
        elif not covered:
            metrics = sorted({str(ln.list_terms.metric) for ln in metered})
            problems.append(Problem("minimum.metric", f"the contract does not meter {metric} (it meters"
                                                      f" {', '.join(metrics)}): a commitment on a metric the"
                                                      " contract does not meter"))
        elif len({ln.list_terms.months for ln in covered}) > 1:
            problems.append(Problem("minimum", "the metered lines a minimum covers must share one billing period"))
        else:
            value = _minimum_amount(amount, currency, "minimum", problems)
            if value is not None:
                out["minimum"] = {"amount": value, **({"metric": metric} if metric else {})}
    return extensions_of(out)


def _decimals(value: Decimal) -> int:
    exp = value.normalize().as_tuple().exponent
    return max(0, -int(exp)) if isinstance(exp, int) else 0


def phase_segments(line: ContractLine, last: date) -> list[Segment]:
    """The line's own versions (its trial, its ramp steps) over [line.start, last], as segments."""
    found = [(first, v) for first, v in phases(line) if first <= last]
    out = []
    for i, (first, version) in enumerate(found):
        end = found[i + 1][0] - timedelta(days=1) if i + 1 < len(found) else last
        if end >= first:
            out.append(Segment(version, first, end, 0, "activation"))
    return out


def _with_ssp(uow: Any, line: ContractLine, spec: LineSpec, product: Any, *, where: str, currency: str,
              term_last: date, term_months: int | None, billing_day: int, contract_start: date,
              problems: list[Problem]) -> ContractLine | None:
    """Standalone selling price: as quoted (for the line's whole term), else the product's per unit per
    month (converted to the line's currency), else the line's own contract value.

    A line with a ramp or a trial has one SSP per unit per month over its paid days (a trial's SSP is what it
    charges: nothing when free), so a ramp whose price steps up is recognised evenly over the whole term
    (docs/billing.md, "Ramps")."""
    q = line.quantity
    months: Fraction
    if term_months is not None:
        months = Fraction(term_months)
    else:
        months = months_in(Grid.of(contract_start, billing_day, 1), line.start, term_last)
    per_month = line.recurring
    segs = phase_segments(line, term_last) if line.extensions and per_month else []
    phased = len(segs) > 1
    if phased:  # unit-months of the paid phases
        monthly = Grid.of(contract_start, billing_day, 1)
        basis_units = sum((Fraction(s.line.quantity) * months_in(monthly, s.start, s.end) for s in segs
                           if s.line.phase != "trial"), Fraction(0))
    else:
        basis_units = Fraction(q) * (months if per_month else 1)
    if spec.ssp is not None:
        try:
            ssp = to_minor(spec.ssp, currency, field=f"{where}.ssp")
        except ValidationError as exc:
            problems.append(Problem(f"{where}.ssp", exc.message))
            return None
        unit = None
        if not line.metered and q > 0:
            unit = _dec(Fraction(spec.ssp) / basis_units) if basis_units else None
        return replace(line, ssp=ssp, ssp_unit=unit, ssp_source="quote")
    if product.ssp is not None:
        unit_major = product.ssp
        if product.ssp_currency and product.ssp_currency != currency:
            try:
                unit_major = product.ssp * rate_on(uow, product.ssp_currency, currency, line.start.isoformat())
            except NotFoundError:
                problems.append(Problem(f"{where}.ssp", f"product {product.sku}'s SSP is in {product.ssp_currency}"
                                                        f" and there is no FX rate {product.ssp_currency}->{currency}"
                                                        f" on or before {line.start}; give the line's ssp"))
                return None
        unit = unit_major.quantize(SSP_DECIMALS)
        if line.metered:
            return replace(line, ssp=None, ssp_unit=unit, ssp_source="product")
        total = Fraction(unit) * basis_units * 10 ** exponent(currency)
        return replace(line, ssp=round_fraction(total), ssp_unit=unit, ssp_source="product")
    if line.metered:
        return line
    if phased:
        value = sum(segment_value(sg, contract_start, billing_day) for sg in segs)
        unit = _dec(Fraction(value, 10 ** exponent(currency)) / basis_units) if basis_units and line.ext("ramp") \
            else None
        return replace(line, ssp=value, ssp_unit=unit, ssp_source="contract_price")
    value = segment_value(Segment(line, line.start, term_last, 0, "activation"), contract_start, billing_day)
    return replace(line, ssp=value, ssp_unit=None, ssp_source="contract_price")


def _dec(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(SSP_DECIMALS)


def price_lines(uow: Any, specs: Sequence[LineSpec], *, currency: str, entity: str, start: date, term_last: date,
                term_months: int | None, billing_day: int, contract_start: date, prefix: str = "lines",
                record: str, taken: Sequence[str] = ()) -> tuple[ContractLine, ...]:
    problems: list[Problem] = []
    out = []
    seen = set(taken)
    for i, spec in enumerate(specs):
        where = f"{prefix}[{i}]"
        if spec.line_id in seen:
            problems.append(Problem(f"{where}.line_id", f"line id {spec.line_id!r} is used twice"))
            continue
        seen.add(spec.line_id)
        line = price_line(uow, spec, where=where, currency=currency, entity=entity, start=start, term_last=term_last,
                          term_months=term_months, billing_day=billing_day, contract_start=contract_start,
                          problems=problems)
        if line is not None:
            out.append(line)
    raise_problems(problems, record)
    return tuple(out)


def check_header(spec: QuoteSpec) -> list[Problem]:
    problems: list[Problem] = []
    if not spec.quote_id or len(spec.quote_id) > 64 or any(c.isspace() for c in spec.quote_id):
        problems.append(Problem("quote_id", "a quote id is 1-64 characters without spaces"))
    if spec.term_months < 1:
        problems.append(Problem("term_months", f"a term must be at least 1 month ({spec.term_months})"))
    elif spec.term_months > MAX_TERM_MONTHS:
        problems.append(Problem("term_months", f"a term is at most {MAX_TERM_MONTHS} months"))
    if spec.billing_day is not None and not 1 <= spec.billing_day <= 31:
        problems.append(Problem("billing_day", f"must be a day of the month, 1-31 ({spec.billing_day})"))
    if spec.renewal_term_months is not None and not 1 <= spec.renewal_term_months <= MAX_TERM_MONTHS:
        problems.append(Problem("renewal_term_months", "a renewal term is 1 month or more"))
    if spec.renewal_uplift_pct is not None and spec.renewal_uplift_pct <= -100:
        problems.append(Problem("renewal_uplift_pct", "an uplift must be above -100%"))
    if not spec.lines:
        problems.append(Problem("lines", "a quote needs at least one line"))
    return problems


def price_quote(uow: Any, spec: QuoteSpec, *, default_uplift: Decimal | None = None) -> PricedQuote:
    """Check and price a whole quote; raises with every problem found (nothing is written)."""
    record = f"quote {spec.quote_id}"
    problems = check_header(spec)
    try:
        start = parse_date(spec.start, field="start")
    except ValidationError as exc:
        problems.append(Problem("start", exc.message))
        start = date(2000, 1, 1)
    raise_problems(problems, record)
    customer = resolve_customer(uow, spec.customer)
    if spec.coterm:
        return _price_coterm(uow, spec, customer, start, default_uplift)
    entity = selling_entity(uow, spec.entity, customer)
    currency = spec.currency or getattr(customer, "currency", None) or get_entity(uow, entity).currency
    check_billable_currency(uow, currency, entity, start.isoformat())
    billing_day = spec.billing_day or start.day
    last = term_end(start, spec.term_months)
    lines = price_lines(uow, spec.lines, currency=currency, entity=entity, start=start, term_last=last,
                        term_months=spec.term_months, billing_day=billing_day, contract_start=start, record=record)
    if spec.extensions:
        problems = []
        normalised = check_contract_extensions(uow, {k: _json(v) for k, v in spec.extensions}, lines,
                                               currency=currency, start=start, problems=problems)
        raise_problems(problems, record)
        spec = replace(spec, extensions=normalised)
    tl = replay([Change(1, "activation", start, start, spec.quote_id, lines=lines, term_months=spec.term_months)])
    vals = values(tl, start, billing_day)
    return _priced(spec, customer, entity, currency, start, billing_day, lines, vals, last, default_uplift)


def _priced(spec: QuoteSpec, customer: Any, entity: str, currency: str, start: date, billing_day: int,
            lines: tuple[ContractLine, ...], vals: Values, last: date, default_uplift: Decimal | None) -> PricedQuote:
    uplift = spec.renewal_uplift_pct if spec.renewal_uplift_pct is not None else default_uplift
    facts = QuoteFacts(
        max_discount_pct=max((ln.effective_discount_pct for ln in lines), default=Decimal(0)),
        term_months=spec.term_months,
        billing_day_differs=billing_day != start.day,
        currency=currency,
        tcv=Decimal(vals.tcv).scaleb(-exponent(currency)),
        renewal_uplift_pct=uplift if spec.auto_renew else None,
        performing_entity_differs=any(ln.performing_entity != entity for ln in lines),
        has_milestones=any(ln.milestones for ln in lines),
        custom_price=any(ln.unit_amount is not None for ln in lines),
        auto_renew=spec.auto_renew,
    )
    return PricedQuote(spec=spec, customer_id=int(customer.id), customer=customer.external_id, entity=entity,
                       currency=currency, start=start, billing_day=billing_day, lines=lines, values=vals, facts=facts,
                       end=last)


def coterm_target(uow: Any, contract_id: str) -> tuple[dict[str, Any], Any]:
    """The contract a co-termed quote adds its lines to: (header, timeline)."""
    from closeloop.contracts.service import contract_state

    return contract_state(uow, contract_id)


def coterm_months(uow: Any, contract_id: str, start: str) -> int:
    """The whole months from ``start`` to the end of ``contract_id``'s term (rounded up; at least 1)."""
    _header, tl = coterm_target(uow, contract_id)
    day = parse_date(start, field="start")
    grid = Grid.of(day, day.day, 1)
    return max(1, int(-(-months_in(grid, day, max(day, tl.service_end)) // 1)))


def _price_coterm(uow: Any, spec: QuoteSpec, customer: Any, start: date,
                  default_uplift: Decimal | None) -> PricedQuote:
    """A quote co-termed with a contract (``coterm``): its lines start on the quote's start and end with the
    contract's term, on the contract's billing day and grid, prorated by days — they are added to that
    contract by ``quote.accept`` (an amendment), as the lines of ``contract.amend``'s ``add`` are."""
    record = f"quote {spec.quote_id}"
    cid = str(spec.coterm)
    header, tl = coterm_target(uow, cid)
    problems: list[Problem] = []
    if int(header["customer_id"]) != int(customer.id):
        problems.append(Problem("coterm", f"contract {cid} belongs to {header['customer']}, not {customer.external_id}"))
    currency = spec.currency or header["currency"]
    if currency != header["currency"]:
        problems.append(Problem("currency", f"contract {cid} is in {header['currency']}; a co-termed quote is too"))
    if spec.entity and spec.entity != header["entity"]:
        problems.append(Problem("entity", f"contract {cid} is sold by {header['entity']}"))
    billing_day = int(header["billing_day"])
    if spec.billing_day is not None and spec.billing_day != billing_day:
        problems.append(Problem("billing_day", f"a co-termed quote bills on contract {cid}'s billing day"
                                               f" ({billing_day})"))
    if tl.cancelled is not None:
        problems.append(Problem("coterm", f"contract {cid} is cancelled effective {tl.cancelled}"))
    if not tl.start <= start <= tl.service_end:
        problems.append(Problem("start", f"contract {cid} runs {tl.start}..{tl.service_end}; a co-termed quote starts"
                                         " within it"))
    if spec.extensions:
        problems.append(Problem("coupons" if any(k == "coupons" for k, _ in spec.extensions) else "minimum",
                                f"a co-termed quote adds lines to contract {cid}: give coupons and minimums on its"
                                " lines, not on the quote"))
    raise_problems(problems, record)
    term = tl.term_on(start)
    last = min(term.end, tl.service_end)
    entity = str(header["entity"])
    lines = price_lines(uow, spec.lines, currency=currency, entity=entity, start=start, term_last=last,
                        term_months=None, billing_day=billing_day, contract_start=tl.start, record=record,
                        taken=tl.line_order)
    view = replay([Change(1, "activation", term.start, term.start, cid, term_months=term.months),
                   Change(2, "amendment", start, start, spec.quote_id, lines=lines)])
    vals = values(view, start, billing_day)
    return _priced(spec, customer, entity, currency, start, billing_day, lines, vals, last, default_uplift)


def facts_to_dict(f: QuoteFacts) -> dict[str, Any]:
    return {"max_discount_pct": dec_str(f.max_discount_pct), "term_months": f.term_months,
            "billing_day_differs": f.billing_day_differs, "currency": f.currency, "tcv": dec_str(f.tcv),
            "renewal_uplift_pct": None if f.renewal_uplift_pct is None else dec_str(f.renewal_uplift_pct),
            "performing_entity_differs": f.performing_entity_differs, "has_milestones": f.has_milestones,
            "custom_price": f.custom_price, "auto_renew": f.auto_renew}


def facts_from_dict(d: Mapping[str, Any]) -> QuoteFacts:
    return QuoteFacts(max_discount_pct=Decimal(d["max_discount_pct"]), term_months=int(d["term_months"]),
                      billing_day_differs=bool(d["billing_day_differs"]), currency=d["currency"],
                      tcv=Decimal(d["tcv"]),
                      renewal_uplift_pct=None if d.get("renewal_uplift_pct") is None else Decimal(d["renewal_uplift_pct"]),
                      performing_entity_differs=bool(d["performing_entity_differs"]),
                      has_milestones=bool(d["has_milestones"]), custom_price=bool(d["custom_price"]),
                      auto_renew=bool(d["auto_renew"]))
