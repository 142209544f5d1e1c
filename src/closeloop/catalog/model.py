"""The catalogue's pure core: products, prices and their validation. No database, no clock.

Amounts inside a price are :class:`~decimal.Decimal` major units. Unit amounts (``per_unit``,
``usage``, a tier's ``unit_amount``) may carry more decimals than the currency (0.0015 USD per
API call); fixed amounts (a ``flat`` amount, a ``package`` amount, a tier's ``flat_amount``) must be
whole minor units. Rating (:mod:`closeloop.catalog.rating`) rounds once, at the end, per line.

A price's terms travel in contract events as :meth:`PriceTerms.to_dict` and come back with
:meth:`PriceTerms.from_dict`, so billing rates exactly what the contract says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from closeloop.core.errors import ValidationError
from closeloop.core.money import exponent

TREATMENTS = ("ratable", "point_in_time", "usage", "milestone")
MODELS = ("flat", "per_unit", "tiered", "volume", "package", "usage")
TIERED_MODELS = ("tiered", "volume")
PERIODS = ("month", "quarter", "year", "one_time")
PERIOD_MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}
TIMINGS = ("advance", "arrears")
AGGREGATIONS = ("sum", "count", "max", "unique_count")
DEFAULT_TAX_CODE = "saas"
# Unit amounts may be finer than the currency (fractions of a cent per event), up to this many decimals.
MAX_UNIT_DECIMALS = 12


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input: the field (``tiers[1].up_to``) and why."""

    field: str
    reason: str


def raise_problems(problems: list[Problem], record: str) -> None:
    """Raise one ``validation_error`` naming every problem (the first one's field in ``details.field``)."""
    if problems:
        text = "; ".join(f"{p.field}: {p.reason}" for p in problems)
        raise ValidationError(f"{record}: {text}", field=problems[0].field, record=record,
                              errors=[{"field": p.field, "reason": p.reason} for p in problems])


@dataclass(frozen=True, slots=True)
class Tier:
    """A price tier. ``up_to`` is inclusive; ``None`` means no upper bound (only the last tier)."""

    up_to: Decimal | None
    unit_amount: Decimal
    flat_amount: Decimal = Decimal(0)

    def to_dict(self) -> dict[str, Any]:
        return {"up_to": None if self.up_to is None else dec_str(self.up_to),
                "unit_amount": dec_str(self.unit_amount), "flat_amount": dec_str(self.flat_amount)}


@dataclass(frozen=True, slots=True)
class PriceTerms:
    """What rating needs: the model and its amounts, in one currency, for one billing period.

    ``metric`` set means the price is metered: it rates the period's aggregated usage of that metric
    (``aggregation``), always in arrears. ``aggregation_property`` names the usage property whose
    distinct values ``unique_count`` counts.
    """

    model: str
    currency: str
    period: str
    timing: str
    amount: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    package_size: int | None = None
    metric: str | None = None
    aggregation: str | None = None
    aggregation_property: str | None = None
    price_id: str | None = None

    @property
    def metered(self) -> bool:
        return self.metric is not None

    @property
    def recurring(self) -> bool:
        return self.period != "one_time"

    @property
    def months(self) -> int | None:
        """Months in one billing period (None for one_time)."""
        return PERIOD_MONTHS.get(self.period)

    @property
    def has_unit_amount(self) -> bool:
        """Whether one unit amount describes the price (false for tiered and volume)."""
        return self.model not in TIERED_MODELS

    def with_amount(self, amount: Decimal) -> PriceTerms:
        """The same terms with another ``amount`` (a negotiated unit price). Not for tiered/volume."""
        if not self.has_unit_amount:
            raise ValidationError(f"a {self.model} price has no single amount to replace", field="unit_amount")
        return replace(self, amount=amount)

    def scaled(self, factor: Decimal) -> PriceTerms:
        """Every amount multiplied by ``factor`` exactly (no rounding): a renewal uplift."""
        if factor == 1:
            return self
        return replace(
            self,
            amount=None if self.amount is None else self.amount * factor,
            tiers=tuple(Tier(t.up_to, t.unit_amount * factor, t.flat_amount * factor) for t in self.tiers),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "price_id": self.price_id,
            "model": self.model,
            "currency": self.currency,
            "amount": None if self.amount is None else dec_str(self.amount),
            "tiers": [t.to_dict() for t in self.tiers],
            "package_size": self.package_size,
            "period": self.period,
            "timing": self.timing,
            "metric": self.metric,
            "aggregation": self.aggregation,
            "aggregation_property": self.aggregation_property,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceTerms:
        """Rebuild terms from :meth:`to_dict` (as carried by contract events)."""
        return cls(
            model=data["model"],
            currency=data["currency"],
            period=data["period"],
            timing=data["timing"],
            amount=None if data.get("amount") is None else Decimal(str(data["amount"])),
            tiers=tuple(
                Tier(None if t.get("up_to") is None else Decimal(str(t["up_to"])), Decimal(str(t["unit_amount"])),
                     Decimal(str(t.get("flat_amount") or 0)))
                for t in data.get("tiers") or ()
            ),
            package_size=data.get("package_size"),
            metric=data.get("metric"),
            aggregation=data.get("aggregation"),
            aggregation_property=data.get("aggregation_property"),
            price_id=data.get("price_id"),
        )


@dataclass(frozen=True, slots=True)
class Product:
    """A sellable product. ``ssp`` is per unit per month (per unit for one-time products), in
    ``ssp_currency`` when given, else in the currency of the line that sells it."""

    sku: str
    name: str
    treatment: str
    tax_code: str = DEFAULT_TAX_CODE
    ssp: Decimal | None = None
    ssp_currency: str | None = None
    revenue_role: str | None = None
    family: str | None = None
    active: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"sku": self.sku, "name": self.name, "treatment": self.treatment, "tax_code": self.tax_code,
                "ssp": None if self.ssp is None else dec_str(self.ssp), "ssp_currency": self.ssp_currency,
                "revenue_role": self.revenue_role, "family": self.family, "active": self.active}


@dataclass(frozen=True, slots=True)
class Price:
    price_id: str
    sku: str
    terms: PriceTerms
    active: bool = True
    description: str | None = None
    extra: tuple[tuple[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"price_id": self.price_id, "sku": self.sku, "active": self.active, "description": self.description,
                **{k: v for k, v in self.terms.to_dict().items() if k != "price_id"}}


# --------------------------------------------------------------------------- decimals


def dec_str(value: Decimal) -> str:
    """A Decimal as a plain string without exponent or superfluous trailing zeros ("12.5", "0.0015", "100")."""
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    text = format(value.normalize(), "f")
    return text


def money_str(value: Decimal, currency: str) -> str:
    """A major-unit Decimal shown with at least the currency's decimals: 8.5 USD -> "8.50", 0.0015 -> "0.0015"."""
    exp = exponent(currency)
    quantum = Decimal(1).scaleb(-exp)
    if value == value.quantize(quantum):
        return format(value.quantize(quantum), "f")
    return format(value.normalize(), "f")


def decimal_places(value: Decimal) -> int:
    exp = value.normalize().as_tuple().exponent
    return max(0, -int(exp)) if isinstance(exp, int) else 0


def to_decimal(value: Any, field: str, problems: list[Problem]) -> Decimal | None:
    if value is None:
        return None
    try:
        dec = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        problems.append(Problem(field, f"{value!r} is not a decimal number"))
        return None
    if not dec.is_finite():
        problems.append(Problem(field, f"{value!r} is not a finite number"))
        return None
    return dec


# --------------------------------------------------------------------------- validation


def check_product(sku: str, name: str, treatment: str, ssp: Decimal | None, ssp_currency: str | None) -> list[Problem]:
    problems: list[Problem] = []
    if not sku or len(sku) > 64 or any(c.isspace() for c in sku):
        problems.append(Problem("sku", f"{sku!r} must be 1-64 characters without spaces"))
    if not name or not name.strip():
        problems.append(Problem("name", "a product needs a name"))
    if treatment not in TREATMENTS:
        problems.append(Problem("treatment", f"{treatment!r} must be one of {', '.join(TREATMENTS)}"))
    if ssp is not None and ssp < 0:
        problems.append(Problem("ssp", f"the standalone selling price must not be negative ({ssp})"))
    if ssp_currency is not None:
        try:
            exponent(ssp_currency)
        except ValidationError:
            problems.append(Problem("ssp_currency", f"unknown currency {ssp_currency!r}"))
    return problems


def _check_minor(value: Decimal, currency: str, field: str, problems: list[Problem]) -> None:
    if decimal_places(value) > exponent(currency):
        problems.append(Problem(field, f"{dec_str(value)} has more decimals than {currency} allows "
                                       f"({exponent(currency)}); a fixed amount is whole minor units"))


def _check_unit(value: Decimal, field: str, problems: list[Problem]) -> None:
    if value < 0:
        problems.append(Problem(field, f"must not be negative ({dec_str(value)})"))
    if decimal_places(value) > MAX_UNIT_DECIMALS:
        problems.append(Problem(field, f"{value} has more than {MAX_UNIT_DECIMALS} decimals"))


def check_tiers(tiers: tuple[Tier, ...], currency: str) -> list[Problem]:
    """Tiers must be sorted by ``up_to`` ascending, never overlap, and end with an unbounded tier."""
    problems: list[Problem] = []
    if not tiers:
        return [Problem("tiers", "a tiered or volume price needs at least one tier")]
    previous: Decimal | None = Decimal(0)
    for i, tier in enumerate(tiers):
        where = f"tiers[{i}]"
        last = i == len(tiers) - 1
        if tier.up_to is None:
            if not last:
                problems.append(Problem(f"{where}.up_to", "only the last tier may be unbounded (up_to: null);"
                                                          " tiers are unsorted"))
        else:
            if tier.up_to <= 0:
                problems.append(Problem(f"{where}.up_to", f"must be positive ({dec_str(tier.up_to)})"))
            elif previous is not None and tier.up_to <= previous and i > 0:
                kind = "overlaps" if tier.up_to == previous else "is below"
                problems.append(Problem(f"{where}.up_to", f"{dec_str(tier.up_to)} {kind} tiers[{i - 1}].up_to "
                                                          f"{dec_str(previous)}: tiers must be sorted by up_to "
                                                          "ascending and must not overlap"))
            if last:
                problems.append(Problem(f"{where}.up_to", "the last tier must be unbounded (up_to: null) so that"
                                                          " every quantity has a price"))
        _check_unit(tier.unit_amount, f"{where}.unit_amount", problems)
        if tier.flat_amount < 0:
            problems.append(Problem(f"{where}.flat_amount", f"must not be negative ({dec_str(tier.flat_amount)})"))
        _check_minor(tier.flat_amount, currency, f"{where}.flat_amount", problems)
        previous = tier.up_to if tier.up_to is not None else previous
    return problems


def check_terms(terms: PriceTerms) -> list[Problem]:
    """Every problem with a price's terms (empty when valid)."""
    problems: list[Problem] = []
    try:
        exponent(terms.currency)
    except ValidationError:
        return [Problem("currency", f"unknown currency {terms.currency!r}: expected an ISO 4217 code")]
    if terms.model not in MODELS:
        problems.append(Problem("model", f"{terms.model!r} must be one of {', '.join(MODELS)}"))
    if terms.period not in PERIODS:
        problems.append(Problem("period", f"{terms.period!r} must be one of {', '.join(PERIODS)}"))
    if terms.timing not in TIMINGS:
        problems.append(Problem("timing", f"{terms.timing!r} must be one of {', '.join(TIMINGS)}"))
    if terms.model in TIERED_MODELS:
        if terms.amount is not None:
            problems.append(Problem("amount", f"a {terms.model} price takes its amounts from tiers, not amount"))
        problems.extend(check_tiers(terms.tiers, terms.currency))
    elif terms.model in MODELS:
        if terms.tiers:
            problems.append(Problem("tiers", f"a {terms.model} price takes amount, not tiers"))
        if terms.amount is None:
            problems.append(Problem("amount", f"a {terms.model} price needs an amount"))
        elif terms.model in ("flat", "package"):
            if terms.amount < 0:
                problems.append(Problem("amount", f"must not be negative ({dec_str(terms.amount)})"))
            _check_minor(terms.amount, terms.currency, "amount", problems)
        else:
            _check_unit(terms.amount, "amount", problems)
    if terms.model == "package":
        if terms.package_size is None or terms.package_size <= 0:
            problems.append(Problem("package_size", "a package price needs a positive whole package_size"))
    elif terms.package_size is not None:
        problems.append(Problem("package_size", f"only a package price takes package_size (this one is {terms.model})"))
    if terms.model == "usage" and terms.metric is None:
        problems.append(Problem("metric", "a usage price needs the metric it rates"))
    if terms.metric is not None:
        if not terms.metric.strip() or len(terms.metric) > 64:
            problems.append(Problem("metric", "a metric name is 1-64 characters"))
        if terms.aggregation not in AGGREGATIONS:
            problems.append(Problem("aggregation", f"{terms.aggregation!r} must be one of {', '.join(AGGREGATIONS)}"))
        if terms.period == "one_time":
            problems.append(Problem("period", "a metered price rates a billing period's usage; it cannot be one_time"))
        if terms.timing != "arrears":
            problems.append(Problem("timing", "usage is known only after the period: a metered price is billed in"
                                              " arrears"))
    else:
        if terms.aggregation is not None:
            problems.append(Problem("aggregation", "aggregation applies only to a metered price (give metric)"))
        if terms.aggregation_property is not None:
            problems.append(Problem("aggregation_property", "applies only to a metered price (give metric)"))
    return problems


def tiers_from(raw: Iterable[Mapping[str, Any]] | None, problems: list[Problem]) -> tuple[Tier, ...]:
    out = []
    for i, t in enumerate(raw or ()):
        up_to = to_decimal(t.get("up_to"), f"tiers[{i}].up_to", problems)
        unit = to_decimal(t.get("unit_amount", 0), f"tiers[{i}].unit_amount", problems)
        flat = to_decimal(t.get("flat_amount") or 0, f"tiers[{i}].flat_amount", problems)
        out.append(Tier(up_to, unit if unit is not None else Decimal(0), flat if flat is not None else Decimal(0)))
    return tuple(out)
