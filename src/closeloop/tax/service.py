"""Tax determination for invoices: the contract billing codes against, and the engine behind it.

Billing calls one function per invoice::

    result = compute_invoice_tax(uow, seller_entity="DE01", customer=customer, currency="EUR",
                                 date="2026-01-31", lines=[TaxLineInput(1, 10000, "saas"), ...])

- ``result.lines``: per line, the treatment, nominal rate, EN 16931 category, jurisdiction,
  the taxable base and the tax allocated to it (minor units);
- ``result.groups``: the VAT breakdown, one per (treatment, rate, category): taxable base,
  tax = round(taxable x rate) once per group, exemption reason and legal mention;
- ``result.held``: ``(line_no, reason)`` for every line whose tax cannot be decided
  (unknown jurisdiction, missing tax id where one is required, no rate in force...). When
  it is not empty the invoice must be held with a ``tax_undetermined`` exception; held
  lines are in neither ``lines`` nor ``groups``;
- ``result.mentions``: the legal mentions the invoice must print ("Reverse charge ...").

The engine is an interface (:class:`TaxEngine`): :func:`set_tax_engine` installs another
implementation (an external tax service) for the whole process; :class:`RulesEngine`
(the YAML rules in ``config/tax_rules.yaml``) is the default. Queries: ``tax_determination``
(how one tax code is taxed for a customer) and ``tax_rules`` (the rates in force).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

import yaml

from closeloop.core.entities import get_entity
from closeloop.core.errors import ValidationError
from closeloop.core.money import check_currency, format_minor
from closeloop.core.registry import payload, query
from closeloop.tax.model import (
    Determination,
    GroupOut,
    Held,
    LineIn,
    Party,
    TaxRules,
    compute_groups,
    parse_rules,
    rate_on,
)

# --------------------------------------------------------------------------- the contract


@dataclass(frozen=True, slots=True)
class TaxLineInput:
    """One invoice line to tax: its number, net amount (minor units, may be negative) and tax code."""

    line_no: int
    net_minor: int
    tax_code: str


@dataclass(frozen=True, slots=True)
class TaxLineResult:
    """The tax of one line: treatment, nominal rate, EN 16931 category, jurisdiction,
    taxable base (net x taxable share) and the tax allocated from its group (minor units)."""

    line_no: int
    treatment: str
    rate: Decimal
    tax_minor: int
    category: str
    jurisdiction: str
    taxable_minor: int


@dataclass(frozen=True, slots=True)
class TaxGroup:
    """One line of the VAT breakdown: tax_minor = round(taxable_minor x rate)."""

    treatment: str
    rate: Decimal
    category: str
    taxable_minor: int
    tax_minor: int
    exemption_reason: str | None
    mention: str | None


@dataclass(frozen=True, slots=True)
class TaxResult:
    lines: tuple[TaxLineResult, ...]
    groups: tuple[TaxGroup, ...]
    held: tuple[tuple[int, str], ...]
    mentions: tuple[str, ...]

    @property
    def tax_minor(self) -> int:
        return sum(g.tax_minor for g in self.groups)


@dataclass(frozen=True, slots=True)
class TaxRequest:
    """What an engine is asked: the parties as the rules see them, the currency, the date, the lines."""

    seller_entity: str
    seller: Party
    buyer: Party
    customer_ref: str
    currency: str
    date: str
    lines: tuple[TaxLineInput, ...]


class TaxEngine(Protocol):
    """Anything that turns a :class:`TaxRequest` into a :class:`TaxResult` (an external tax service may)."""

    name: str

    def compute(self, request: TaxRequest) -> TaxResult: ...


# --------------------------------------------------------------------------- the rules engine


@lru_cache(maxsize=1)
def default_rules() -> TaxRules:
    text = (resources.files("closeloop") / "config" / "tax_rules.yaml").read_text(encoding="utf-8")
    return parse_rules(yaml.safe_load(text))


def _rate_text(rate: Decimal) -> Decimal:
    return rate.normalize() if rate else Decimal(0)


class RulesEngine:
    """The default engine: ``config/tax_rules.yaml`` (or the rules given) through :mod:`closeloop.tax.model`."""

    name = "rules"

    def __init__(self, rules: TaxRules | None = None) -> None:
        self._rules = rules

    @property
    def rules(self) -> TaxRules:
        return self._rules or default_rules()

    def determine(self, request: TaxRequest, tax_code: str) -> Determination | Held:
        return self.rules.determine(request.seller, request.buyer, tax_code, request.date)

    def compute(self, request: TaxRequest) -> TaxResult:
        decided: dict[str, Determination | Held] = {}
        taxed: list[LineIn] = []
        held: list[tuple[int, str]] = []
        for line in request.lines:
            code = line.tax_code or self.rules.default_tax_code
            if code not in decided:
                decided[code] = self.determine(request, code)
            outcome = decided[code]
            if isinstance(outcome, Held):
                held.append((line.line_no, outcome.reason))
            else:
                taxed.append(LineIn(line.line_no, line.net_minor, outcome))
        line_outs, group_outs = compute_groups(taxed)
        lines = tuple(
            TaxLineResult(o.line_no, o.determination.treatment, _rate_text(o.determination.rate), o.tax_minor,
                          o.determination.category, o.determination.jurisdiction, o.taxable_minor)
            for o in line_outs
        )
        groups = tuple(_group(g) for g in group_outs)
        mentions: list[str] = []
        for g in group_outs:
            for text in (g.mention or "").split("; "):
                if text and text not in mentions:
                    mentions.append(text)
        return TaxResult(lines, groups, tuple(held), tuple(mentions))


def _group(g: GroupOut) -> TaxGroup:
    return TaxGroup(g.treatment, _rate_text(g.rate), g.category, g.taxable_minor, g.tax_minor, g.exemption_reason,
                    g.mention)


_ENGINE: TaxEngine | None = None


def set_tax_engine(engine: TaxEngine | None) -> TaxEngine | None:
    """Install ``engine`` for every tax computation (``None``: back to the rules engine); returns the previous."""
    global _ENGINE
    previous = _ENGINE
    _ENGINE = engine
    return previous


def tax_engine() -> TaxEngine:
    return _ENGINE or RulesEngine()


# --------------------------------------------------------------------------- the entry point


def seller_party(uow: Any, seller_entity: str) -> Party:
    entity = get_entity(uow, seller_entity)
    postal = (entity.address or {}).get("postal_code") if entity.address else None
    return Party(country=entity.country, region=entity.region, postal_code=postal, tax_id=entity.tax_id,
                 tax_id_valid=bool(entity.tax_id))


def buyer_party(customer: Any) -> Party:
    """The buyer as the rules see it, from a :class:`closeloop.customers.service.Customer`."""
    region = customer.region
    if region and customer.country and region.upper().startswith(customer.country.upper() + "-"):
        region = region[len(customer.country) + 1:]
    return Party(country=customer.country, region=region.upper() if region else None,
                 postal_code=customer.postal_code, tax_id=customer.tax_id,
                 tax_id_valid=bool(customer.tax_id_valid), tax_exempt=bool(customer.tax_exempt),
                 exemption_ref=customer.exemption_ref)


def compute_invoice_tax(uow: Any, *, seller_entity: str, customer: Any, currency: str, date: str,
                        lines: list[TaxLineInput]) -> TaxResult:
    """Tax an invoice's lines: per (treatment, rate) group, rounded once, allocated back to lines.

    Pure but for reading the seller entity. Lines whose tax cannot be decided are returned in
    ``held`` with the reason; the caller holds the invoice (``tax_undetermined``)."""
    check_currency(currency)
    numbers = [line.line_no for line in lines]
    if len(set(numbers)) != len(numbers):
        raise ValidationError("tax: line numbers must be unique within an invoice", field="lines")
    request = TaxRequest(seller_entity, seller_party(uow, seller_entity), buyer_party(customer),
                         str(getattr(customer, "external_id", "")), currency, str(date), tuple(lines))
    return tax_engine().compute(request)


# --------------------------------------------------------------------------- queries


@payload
class TaxDeterminationQuery:
    entity: str
    customer: str
    tax_code: str = "saas"
    date: str | None = None
    amount: str | None = None
    currency: str | None = None


@query("tax_determination", TaxDeterminationQuery, summary="How a tax code is taxed for a customer on a date")
def tax_determination(uow: Any, q: TaxDeterminationQuery) -> dict[str, Any]:
    from closeloop.customers.service import get_customer

    customer = get_customer(uow, q.customer)
    on = q.date or uow.today().isoformat()
    seller, buyer = seller_party(uow, q.entity), buyer_party(customer)
    rules = default_rules()
    engine = tax_engine()
    outcome = rules.determine(seller, buyer, q.tax_code, on) if isinstance(engine, RulesEngine) else None
    out: dict[str, Any] = {"entity": q.entity, "customer": customer.external_id, "tax_code": q.tax_code, "date": on,
                           "engine": engine.name}
    if isinstance(outcome, Held):
        out.update(held=True, reason=outcome.reason, rule=outcome.rule)
    elif outcome is not None:
        out.update(held=False, treatment=outcome.treatment, rate=str(_rate_text(outcome.rate)),
                   category=outcome.category, jurisdiction=outcome.jurisdiction,
                   taxable_share=str(outcome.taxable_share.normalize()), exemption_reason=outcome.exemption_reason,
                   mention=outcome.mention, rule=outcome.rule, source=outcome.source)
    if q.amount is not None:
        currency = q.currency or customer.currency or get_entity(uow, q.entity).currency
        from closeloop.core.money import to_minor

        result = compute_invoice_tax(uow, seller_entity=q.entity, customer=customer, currency=currency, date=on,
                                     lines=[TaxLineInput(1, to_minor(q.amount, currency), q.tax_code)])
        out.update(currency=currency, tax=format_minor(result.tax_minor, currency))
        if outcome is None:
            out["held"] = bool(result.held)
            if result.lines:
                line = result.lines[0]
                out.update(treatment=line.treatment, rate=str(line.rate), category=line.category,
                           jurisdiction=line.jurisdiction)
    return out


@payload
class TaxRulesQuery:
    date: str | None = None
    country: str | None = None


@query("tax_rules", TaxRulesQuery, summary="The VAT and sales tax rates in force on a date, with their sources")
def tax_rules(uow: Any, q: TaxRulesQuery) -> dict[str, Any]:
    on = q.date or uow.today().isoformat()
    rules = default_rules()
    vat = []
    for country, classes in sorted(rules.vat_rates.items()):
        if q.country and country != q.country:
            continue
        for cls, periods in sorted(classes.items()):
            period = rate_on(periods, on)
            if period is not None:
                vat.append({"country": country, "class": cls, "rate": str(period.rate.normalize()),
                            "from": period.start, "source": period.source})
    states = []
    for code, state in sorted(rules.us_states.items()):
        if q.country and q.country not in ("US", f"US-{code}"):
            continue
        period = rate_on(state.rates, on) if state.rates else None
        states.append({"state": code, "name": state.name, "sales_tax": state.no_sales_tax is None,
                       "rate": str(period.rate.normalize()) if period else "0",
                       "from": period.start if period else None,
                       "taxable": {k: str(v[0].normalize()) for k, v in state.taxable.items()},
                       "not_taxable": sorted(state.not_taxable),
                       "source": period.source if period else state.no_sales_tax})
    return {"date": on, "version": rules.version, "vat": vat, "us_states": states,
            "rules": [r.id for r in rules.rules]}
