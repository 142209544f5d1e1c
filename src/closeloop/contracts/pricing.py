"""Pricing a quote: from what a user typed to priced :class:`ContractLine` records. Reads, never writes.

Used by ``quote.create``/``quote.update``, the opportunity conversion and ``contract.amend``
(added lines), so a line is checked the same way wherever it comes from. Every problem with the
lines is collected and reported at once (``validation_error`` with ``details.errors``); a record
that does not exist (price, product, entity, customer) is ``not_found``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
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

    def to_dict(self) -> dict[str, Any]:
        return {"line_id": self.line_id, "price_id": self.price_id, "quantity": dec_str(self.quantity),
                "discount_pct": None if self.discount_pct is None else dec_str(self.discount_pct),
                "unit_amount": None if self.unit_amount is None else dec_str(self.unit_amount),
                "ssp": None if self.ssp is None else dec_str(self.ssp),
                "milestones": None if self.milestones is None else [
                    {"milestone_id": m, "amount": dec_str(a)} for m, a in self.milestones],
                "performing_entity": self.performing_entity}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LineSpec:
        def dec(key: str) -> Decimal | None:
            return None if d.get(key) is None else Decimal(str(d[key]))

        ms = d.get("milestones")
        return cls(line_id=str(d["line_id"]), price_id=str(d["price_id"]), quantity=Decimal(str(d["quantity"])),
                   discount_pct=dec("discount_pct"), unit_amount=dec("unit_amount"), ssp=dec("ssp"),
                   milestones=None if ms is None else tuple((str(m["milestone_id"]), Decimal(str(m["amount"])))
                                                            for m in ms),
                   performing_entity=d.get("performing_entity"))


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

    def to_dict(self) -> dict[str, Any]:
        return {"quote_id": self.quote_id, "customer": self.customer, "start": self.start,
                "term_months": self.term_months, "lines": [ln.to_dict() for ln in self.lines],
                "entity": self.entity, "currency": self.currency, "billing_day": self.billing_day,
                "auto_renew": self.auto_renew, "opportunity": self.opportunity,
                "renewal_term_months": self.renewal_term_months,
                "renewal_uplift_pct": None if self.renewal_uplift_pct is None else dec_str(self.renewal_uplift_pct),
                "name": self.name}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuoteSpec:
        return cls(quote_id=d["quote_id"], customer=d["customer"], start=d["start"], term_months=int(d["term_months"]),
                   lines=tuple(LineSpec.from_dict(x) for x in d["lines"]), entity=d.get("entity"),
                   currency=d.get("currency"), billing_day=d.get("billing_day"), auto_renew=bool(d.get("auto_renew")),
                   opportunity=d.get("opportunity"), renewal_term_months=d.get("renewal_term_months"),
                   renewal_uplift_pct=None if d.get("renewal_uplift_pct") is None else Decimal(d["renewal_uplift_pct"]),
                   name=d.get("name"))


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
    if len(problems) > n0:
        return None
    line = ContractLine(
        line_id=spec.line_id,
        product=ProductRef(product.sku, product.name, product.treatment, product.tax_code, product.revenue_role,
                           product.family),
        list_terms=terms, quantity=q, performing_entity=performing, start=start, discount_pct=d,
        unit_amount=spec.unit_amount, milestones=milestones)
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


def _decimals(value: Decimal) -> int:
    exp = value.normalize().as_tuple().exponent
    return max(0, -int(exp)) if isinstance(exp, int) else 0


def _with_ssp(uow: Any, line: ContractLine, spec: LineSpec, product: Any, *, where: str, currency: str,
              term_last: date, term_months: int | None, billing_day: int, contract_start: date,
              problems: list[Problem]) -> ContractLine | None:
    """Standalone selling price: as quoted (for the line's whole term), else the product's per unit per
    month (converted to the line's currency), else the line's own contract value."""
    q = line.quantity
    months: Fraction
    if term_months is not None:
        months = Fraction(term_months)
    else:
        months = months_in(Grid.of(contract_start, billing_day, 1), line.start, term_last)
    per_month = line.recurring
    if spec.ssp is not None:
        try:
            ssp = to_minor(spec.ssp, currency, field=f"{where}.ssp")
        except ValidationError as exc:
            problems.append(Problem(f"{where}.ssp", exc.message))
            return None
        unit = None
        if not line.metered and q > 0:
            basis = Fraction(q) * (months if per_month else 1)
            unit = _dec(Fraction(spec.ssp) / basis) if basis else None
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
        total = Fraction(unit) * Fraction(q) * (months if per_month else 1) * 10 ** exponent(currency)
        return replace(line, ssp=round_fraction(total), ssp_unit=unit, ssp_source="product")
    if line.metered:
        return line
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
    entity = selling_entity(uow, spec.entity, customer)
    currency = spec.currency or getattr(customer, "currency", None) or get_entity(uow, entity).currency
    check_billable_currency(uow, currency, entity, start.isoformat())
    billing_day = spec.billing_day or start.day
    last = term_end(start, spec.term_months)
    lines = price_lines(uow, spec.lines, currency=currency, entity=entity, start=start, term_last=last,
                        term_months=spec.term_months, billing_day=billing_day, contract_start=start, record=record)
    tl = replay([Change(1, "activation", start, start, spec.quote_id, lines=lines, term_months=spec.term_months)])
    vals = values(tl, start, billing_day)
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
