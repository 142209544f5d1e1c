"""The tax rules engine (pure): who sells what to whom, where and when -> treatment and rate.

Nothing here touches the database, the clock or a file: the rules are a
:class:`TaxRules` value (parsed and validated from ``config/tax_rules.yaml``
by :func:`parse_rules`), the parties are frozen records, the date is an
argument. Two steps:

1. :meth:`TaxRules.determine` decides one supply: the buyer's status
   (:func:`buyer_status`: ``exempt`` with a certificate, ``business`` with a
   valid tax id, else ``consumer``), then the first rule of the ordered list
   whose conditions match (seller zone, buyer zone, same country, status, tax
   code, dates) gives the treatment, EN 16931 category, exemption reason and
   legal mention; its ``rate_from`` says whose rate applies (the seller's
   country, the buyer's country, the buyer's US state) and the effective-dated
   rate tables give the rate in force on the date, with its source. Anything
   that cannot be decided is a :class:`Held` with the reason, never a guess.
2. :func:`compute_groups` sums the lines of each (treatment, rate, category)
   group, rounds the group's tax once (ROUND_HALF_UP at the currency's
   exponent) and allocates it back to the lines by largest remainder, as
   EN 16931 requires (the VAT breakdown is the authority; line tax is derived).

A taxable share (Texas taxes 80 % of a data-processing charge) is part of the
determination: the line's taxable base is ``net x share`` and the tax is the
group's rounded taxable base x rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date as Date
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from closeloop.core.money import allocate, round_minor

TREATMENTS = ("standard", "reduced", "zero", "exempt", "reverse_charge", "out_of_scope")
# EN 16931 / UNCL5305 categories used here. AA (lower rate) is kept internally for the
# reduced treatment; EN 16931 documents carry it as S (see closeloop.einvoice).
CATEGORIES = ("S", "AA", "Z", "E", "AE", "O", "K", "G")
STATUSES = ("business", "consumer", "exempt")
RATE_FROM = ("seller_country", "buyer_country", "us_state")
_CONDITIONS = ("seller_in", "seller_not_in", "buyer_in", "buyer_not_in", "same_country", "status", "tax_code",
               "from", "until")
_OUTCOME_KEYS = ("treatment", "category", "rate_from", "reason", "vatex", "mention", "hold", "requires_vat_id",
                 "source")
# VAT number prefixes that are not the ISO country code.
_VAT_PREFIX_COUNTRY = {"EL": "GR", "XI": "GB"}


class RulesError(ValueError):
    """``config/tax_rules.yaml`` is not valid; the message lists every problem."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Party:
    """A party to the supply as the rules see it.

    country: ISO 3166 alpha-2 (``GB`` for the United Kingdom); region: the subdivision
    code without the country prefix (US state: ``NY``); postal_code for local rates;
    tax_id with tax_id_valid (checked by the customer master); tax_exempt with
    exemption_ref (the certificate) for exempt buyers.
    """

    country: str | None
    region: str | None = None
    postal_code: str | None = None
    tax_id: str | None = None
    tax_id_valid: bool = False
    tax_exempt: bool = False
    exemption_ref: str | None = None


@dataclass(frozen=True, slots=True)
class RatePeriod:
    """A rate in force from ``start`` (inclusive) until the next period's start, with its source."""

    rate: Decimal
    start: str
    source: str


@dataclass(frozen=True, slots=True)
class Determination:
    """How one supply is taxed.

    treatment: one of :data:`TREATMENTS`; rate: the nominal rate (0 when nothing is charged);
    category: EN 16931 VAT category; jurisdiction: ``DE``, ``US-NY``, ``US-NY-NYC``...;
    taxable_share: the part of the net amount that is taxed (1 but for e.g. Texas SaaS);
    exemption_reason / vatex: text and code for E, AE, K, G, O; mention: the legal
    mention the invoice must print; rule: the rule id that decided; source: where the
    rate (or the non-taxability) comes from.
    """

    treatment: str
    rate: Decimal
    category: str
    jurisdiction: str
    taxable_share: Decimal = Decimal(1)
    exemption_reason: str | None = None
    vatex: str | None = None
    mention: str | None = None
    rule: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class Held:
    """The supply's tax cannot be decided: ``reason`` says what data is missing or unknown."""

    reason: str
    rule: str = ""


@dataclass(frozen=True, slots=True)
class Condition:
    seller_in: frozenset[str] | None = None
    seller_not_in: frozenset[str] | None = None
    buyer_in: frozenset[str] | None = None
    buyer_not_in: frozenset[str] | None = None
    same_country: bool | None = None
    status: frozenset[str] | None = None
    tax_code: frozenset[str] | None = None
    start: str | None = None
    until: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    when: Condition
    treatment: str | None = None
    category: str | None = None
    rate_from: str | None = None
    reason: str | None = None
    vatex: str | None = None
    mention: str | None = None
    hold: str | None = None
    source: str = ""
    requires_vat_id: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class TaxCode:
    code: str
    kind: str  # digital, services, goods, exempt
    rate_class: str  # standard or reduced
    description: str


@dataclass(frozen=True, slots=True)
class LocalRate:
    """A county/city rate added to the state rate for postal codes starting with a prefix."""

    code: str
    name: str
    postal_prefixes: tuple[str, ...]
    tax_codes: frozenset[str]
    rates: tuple[RatePeriod, ...]


@dataclass(frozen=True, slots=True)
class StateRule:
    """US state sales tax for the tax codes it names.

    no_sales_tax: the state levies none (the text says why, with its source);
    taxable: tax code -> (share of the charge that is taxed, source);
    not_taxable: tax code -> the reason with its source.
    """

    code: str
    name: str
    rates: tuple[RatePeriod, ...] = ()
    no_sales_tax: str | None = None
    taxable: Mapping[str, tuple[Decimal, str]] = field(default_factory=dict)
    not_taxable: Mapping[str, str] = field(default_factory=dict)
    local: tuple[LocalRate, ...] = ()


# --------------------------------------------------------------------------- helpers


def buyer_status(buyer: Party) -> str:
    """``exempt`` (flag and certificate), ``business`` (a valid tax id) or ``consumer``.

    The exempt flag without a certificate reference is not applied (the customer master
    warns about it when the account is created)."""
    if buyer.tax_exempt and buyer.exemption_ref:
        return "exempt"
    if buyer.tax_id and buyer.tax_id_valid:
        return "business"
    return "consumer"


def rate_on(periods: Sequence[RatePeriod], on: str) -> RatePeriod | None:
    """The period in force on ``on`` (ISO date): the latest whose start is not after it."""
    found = None
    for period in periods:
        if period.start <= on and (found is None or period.start >= found.start):
            found = period
    return found


def _dec(value: Any, where: str, problems: list[str]) -> Decimal:
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        problems.append(f"{where}: {value!r} is not a decimal number")
        return Decimal(0)
    if not out.is_finite() or out < 0 or out > 1:
        problems.append(f"{where}: {value!r} must be a decimal between 0 and 1")
    return out


def _iso(value: Any, where: str, problems: list[str]) -> str:
    text = str(value)
    try:
        Date.fromisoformat(text)
    except ValueError:
        problems.append(f"{where}: {value!r} is not an ISO date YYYY-MM-DD")
    return text


def _periods(raw: Any, where: str, problems: list[str]) -> tuple[RatePeriod, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: must be a non-empty list of {{from, rate, source}}")
        return ()
    out = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{at}: must be a mapping with from, rate and source")
            continue
        unknown = set(item) - {"from", "rate", "source"}
        if unknown:
            problems.append(f"{at}: unknown keys {sorted(unknown)}")
        if not item.get("source"):
            problems.append(f"{at}: every rate needs its source")
        if "from" not in item or "rate" not in item:
            problems.append(f"{at}: from and rate are required")
            continue
        out.append(RatePeriod(_dec(item["rate"], at + ".rate", problems), _iso(item["from"], at + ".from", problems),
                              str(item.get("source") or "")))
    starts = [p.start for p in out]
    if len(set(starts)) != len(starts):
        problems.append(f"{where}: two rates start on the same date")
    return tuple(sorted(out, key=lambda p: p.start))


# --------------------------------------------------------------------------- the rules


@dataclass(frozen=True, slots=True)
class TaxRules:
    """The validated rule set (see ``config/tax_rules.yaml`` for the meaning of each part)."""

    version: int
    groups: Mapping[str, frozenset[str]]
    tax_codes: Mapping[str, TaxCode]
    vat_rates: Mapping[str, Mapping[str, tuple[RatePeriod, ...]]]
    us_states: Mapping[str, StateRule]
    rules: tuple[Rule, ...]
    default_tax_code: str = "saas"

    # ---------------------------------------------------------------- zones

    def _members(self, names: frozenset[str]) -> frozenset[str]:
        out: set[str] = set()
        for name in names:
            out |= self.groups.get(name, frozenset({name}))
        return frozenset(out)

    def _in(self, country: str | None, names: frozenset[str] | None) -> bool:
        return names is None or (country is not None and country in self._members(names))

    def _matches(self, c: Condition, seller: Party, buyer: Party, status: str, code: str, on: str) -> bool:
        if c.start is not None and on < c.start:
            return False
        if c.until is not None and on > c.until:
            return False
        if not self._in(seller.country, c.seller_in) or not self._in(buyer.country, c.buyer_in):
            return False
        if c.seller_not_in is not None and seller.country in self._members(c.seller_not_in):
            return False
        if c.buyer_not_in is not None and buyer.country in self._members(c.buyer_not_in):
            return False
        if c.same_country is not None and (seller.country == buyer.country) != c.same_country:
            return False
        if c.status is not None and status not in c.status:
            return False
        return c.tax_code is None or code in c.tax_code

    # ---------------------------------------------------------------- determination

    def determine(self, seller: Party, buyer: Party, tax_code: str | None, on: str) -> Determination | Held:
        """Decide how a supply of ``tax_code`` by ``seller`` to ``buyer`` on ``on`` is taxed."""
        code = tax_code or self.default_tax_code
        if code not in self.tax_codes:
            return Held(f"unknown tax code {code!r}; known: {', '.join(sorted(self.tax_codes))}")
        if not seller.country:
            return Held("the seller entity has no country")
        if not buyer.country:
            return Held("the customer has no country")
        status = buyer_status(buyer)
        for rule in self.rules:
            if not self._matches(rule.when, seller, buyer, status, code, on):
                continue
            if rule.hold:
                return Held(rule.hold, rule.id)
            return self._outcome(rule, seller, buyer, code, on)
        return Held(f"no tax rule for a {status} buyer in {buyer.country} of a seller in {seller.country}"
                    f" (tax code {code})")

    def _outcome(self, rule: Rule, seller: Party, buyer: Party, code: str, on: str) -> Determination | Held:
        if rule.requires_vat_id is not None:
            prefix = (buyer.tax_id or "")[:2].upper()
            if _VAT_PREFIX_COUNTRY.get(prefix, prefix) not in self._members(rule.requires_vat_id):
                zone = "/".join(sorted(rule.requires_vat_id))
                return Held(f"{rule.id}: the customer's {zone} VAT identification number is required"
                            f" (the invoice must show it), but its tax id is {buyer.tax_id or 'missing'}", rule.id)
        reason = rule.reason.format(exemption_ref=buyer.exemption_ref or "") if rule.reason else None
        mention = rule.mention.format(exemption_ref=buyer.exemption_ref or "") if rule.mention else None
        if rule.rate_from is None:
            assert rule.treatment is not None and rule.category is not None
            return Determination(rule.treatment, Decimal(0), rule.category, _jurisdiction(buyer, seller, rule),
                                 exemption_reason=reason, vatex=rule.vatex, mention=mention, rule=rule.id,
                                 source=rule.source)
        if rule.rate_from == "us_state":
            return self._us_state(rule, buyer, code, on)
        country = seller.country if rule.rate_from == "seller_country" else buyer.country
        assert country is not None
        rate_class = self.tax_codes[code].rate_class
        tables = self.vat_rates.get(country)
        if tables is None:
            return Held(f"no VAT rates for {country} (rule {rule.id})", rule.id)
        periods = tables.get(rate_class)
        if not periods:
            return Held(f"no {rate_class} VAT rate for {country} (tax code {code})", rule.id)
        period = rate_on(periods, on)
        if period is None:
            return Held(f"no {rate_class} VAT rate for {country} in force on {on}", rule.id)
        treatment, category = _rated(rate_class, period.rate)
        return Determination(treatment, period.rate, category, country, exemption_reason=reason,
                             vatex=rule.vatex, mention=mention, rule=rule.id, source=period.source)

    def _us_state(self, rule: Rule, buyer: Party, code: str, on: str) -> Determination | Held:
        if not buyer.region:
            return Held("the US customer has no state (region): sales tax depends on it", rule.id)
        state = self.us_states.get(buyer.region)
        jurisdiction = f"US-{buyer.region}"
        if state is None:
            return Held(f"no sales tax rule for the US state {buyer.region}", rule.id)
        if state.no_sales_tax:
            return Determination("out_of_scope", Decimal(0), "O", jurisdiction, exemption_reason=state.no_sales_tax,
                                 rule=rule.id, source=state.no_sales_tax)
        if code in state.not_taxable:
            text = state.not_taxable[code]
            return Determination("out_of_scope", Decimal(0), "O", jurisdiction, exemption_reason=text, rule=rule.id,
                                 source=text)
        if code not in state.taxable:
            return Held(f"no sales tax rule for tax code {code} in US state {buyer.region}", rule.id)
        share, taxability_source = state.taxable[code]
        period = rate_on(state.rates, on)
        if period is None:
            return Held(f"no sales tax rate for US state {buyer.region} in force on {on}", rule.id)
        rate, sources = period.rate, [period.source, taxability_source]
        for local in state.local:
            if code in local.tax_codes and buyer.postal_code and buyer.postal_code.startswith(local.postal_prefixes):
                local_period = rate_on(local.rates, on)
                if local_period is not None:
                    rate += local_period.rate
                    sources.append(local_period.source)
                    jurisdiction = f"{jurisdiction}-{local.code}"
                break
        treatment, category = _rated("standard", rate)
        return Determination(treatment, rate, category, jurisdiction, taxable_share=share, rule=rule.id,
                             source="; ".join(s for s in sources if s))


def _rated(rate_class: str, rate: Decimal) -> tuple[str, str]:
    if rate == 0:
        return "zero", "Z"
    return ("reduced", "AA") if rate_class == "reduced" else ("standard", "S")


def _jurisdiction(buyer: Party, seller: Party, rule: Rule) -> str:
    if buyer.country == "US" and buyer.region:
        return f"US-{buyer.region}"
    return buyer.country or seller.country or ""


# --------------------------------------------------------------------------- parsing and validation


def _names(raw: Any, where: str, problems: list[str]) -> frozenset[str] | None:
    if raw is None:
        return None
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        problems.append(f"{where}: must be a name or a list of names")
        return None
    return frozenset(items)


def parse_rules(doc: Mapping[str, Any]) -> TaxRules:
    """Validate a rules document (the YAML, loaded) and return :class:`TaxRules`.

    Every problem is collected and reported at once in a :class:`RulesError`."""
    problems: list[str] = []
    if not isinstance(doc, Mapping):
        raise RulesError("tax rules: the document must be a mapping")
    groups = {str(k): frozenset(v) for k, v in (doc.get("groups") or {}).items()}

    codes: dict[str, TaxCode] = {}
    for name, spec in (doc.get("tax_codes") or {}).items():
        spec = spec or {}
        kind = spec.get("kind")
        if kind not in ("digital", "services", "goods", "exempt"):
            problems.append(f"tax_codes.{name}.kind: {kind!r} must be digital, services, goods or exempt")
        rate_class = spec.get("rate_class", "standard")
        if rate_class not in ("standard", "reduced"):
            problems.append(f"tax_codes.{name}.rate_class: {rate_class!r} must be standard or reduced")
        codes[str(name)] = TaxCode(str(name), str(kind), str(rate_class), str(spec.get("description", "")))
    default_code = str(doc.get("default_tax_code", "saas"))
    if default_code not in codes:
        problems.append(f"default_tax_code: {default_code!r} is not a tax code")

    vat: dict[str, dict[str, tuple[RatePeriod, ...]]] = {}
    for country, classes in (doc.get("vat_rates") or {}).items():
        if not isinstance(classes, Mapping):
            problems.append(f"vat_rates.{country}: must map standard/reduced to rate lists")
            continue
        vat[str(country)] = {}
        for cls, raw in classes.items():
            if cls not in ("standard", "reduced"):
                problems.append(f"vat_rates.{country}.{cls}: only standard and reduced rate lists are known")
                continue
            vat[str(country)][str(cls)] = _periods(raw, f"vat_rates.{country}.{cls}", problems)

    states: dict[str, StateRule] = {}
    for code, spec in (doc.get("us_states") or {}).items():
        at = f"us_states.{code}"
        spec = spec or {}
        unknown = set(spec) - {"name", "rates", "no_sales_tax", "taxable", "not_taxable", "local"}
        if unknown:
            problems.append(f"{at}: unknown keys {sorted(unknown)}")
        taxable: dict[str, tuple[Decimal, str]] = {}
        for tc, tspec in (spec.get("taxable") or {}).items():
            tspec = tspec or {}
            if tc not in codes:
                problems.append(f"{at}.taxable.{tc}: not a tax code")
            if not tspec.get("source"):
                problems.append(f"{at}.taxable.{tc}: needs its source")
            taxable[str(tc)] = (_dec(tspec.get("share", "1"), f"{at}.taxable.{tc}.share", problems),
                                str(tspec.get("source") or ""))
        not_taxable = {str(k): str(v) for k, v in (spec.get("not_taxable") or {}).items()}
        for tc in not_taxable:
            if tc not in codes:
                problems.append(f"{at}.not_taxable.{tc}: not a tax code")
            if tc in taxable:
                problems.append(f"{at}: {tc} is both taxable and not taxable")
        no_tax = spec.get("no_sales_tax")
        rates: tuple[RatePeriod, ...] = ()
        if no_tax:
            if taxable or spec.get("rates"):
                problems.append(f"{at}: a state with no_sales_tax has no rates or taxable codes")
        elif taxable:
            rates = _periods(spec.get("rates"), f"{at}.rates", problems)
        local = []
        for i, lspec in enumerate(spec.get("local") or []):
            lat = f"{at}.local[{i}]"
            prefixes = tuple(str(p) for p in (lspec.get("postal_prefixes") or []))
            if not prefixes:
                problems.append(f"{lat}: postal_prefixes is required")
            lcodes = _names(lspec.get("tax_codes"), f"{lat}.tax_codes", problems) or frozenset()
            local.append(LocalRate(str(lspec.get("code", "")), str(lspec.get("name", "")), prefixes, lcodes,
                                   _periods(lspec.get("rates"), f"{lat}.rates", problems)))
        states[str(code)] = StateRule(str(code), str(spec.get("name", code)), rates, str(no_tax) if no_tax else None,
                                      taxable, not_taxable, tuple(local))

    rules: list[Rule] = []
    seen: set[str] = set()
    known_zones = set(groups)
    for i, raw in enumerate(doc.get("rules") or []):
        rid = str((raw or {}).get("id") or f"rules[{i}]")
        at = f"rules[{i}] ({rid})"
        if rid in seen:
            problems.append(f"{at}: duplicate rule id")
        seen.add(rid)
        when_raw = raw.get("when") or {}
        unknown = set(when_raw) - set(_CONDITIONS)
        if unknown:
            problems.append(f"{at}.when: unknown conditions {sorted(unknown)}")
        status = _names(when_raw.get("status"), f"{at}.when.status", problems)
        if status and not status <= set(STATUSES):
            problems.append(f"{at}.when.status: {sorted(status - set(STATUSES))} not in {STATUSES}")
        tcodes = _names(when_raw.get("tax_code"), f"{at}.when.tax_code", problems)
        if tcodes and not tcodes <= set(codes):
            problems.append(f"{at}.when.tax_code: unknown tax codes {sorted(tcodes - set(codes))}")
        zones = {}
        for key in ("seller_in", "seller_not_in", "buyer_in", "buyer_not_in"):
            zones[key] = _names(when_raw.get(key), f"{at}.when.{key}", problems)
            for name in zones[key] or ():
                if not (name in known_zones or (len(name) == 2 and name.isupper())):
                    problems.append(f"{at}.when.{key}: {name!r} is neither a group nor a country code")
        same = when_raw.get("same_country")
        if same is not None and not isinstance(same, bool):
            problems.append(f"{at}.when.same_country: must be true or false")
        cond = Condition(
            seller_in=zones["seller_in"], seller_not_in=zones["seller_not_in"], buyer_in=zones["buyer_in"],
            buyer_not_in=zones["buyer_not_in"], same_country=same, status=status, tax_code=tcodes,
            start=_iso(when_raw["from"], f"{at}.when.from", problems) if "from" in when_raw else None,
            until=_iso(when_raw["until"], f"{at}.when.until", problems) if "until" in when_raw else None,
        )
        then = raw.get("then") or {}
        unknown = set(then) - set(_OUTCOME_KEYS)
        if unknown:
            problems.append(f"{at}.then: unknown keys {sorted(unknown)}")
        rate_from = then.get("rate_from")
        treatment = then.get("treatment")
        category = then.get("category")
        if then.get("hold"):
            pass
        elif rate_from is not None:
            if rate_from not in RATE_FROM:
                problems.append(f"{at}.then.rate_from: {rate_from!r} must be one of {RATE_FROM}")
        else:
            if treatment not in TREATMENTS:
                problems.append(f"{at}.then.treatment: {treatment!r} must be one of {TREATMENTS}")
            if category not in CATEGORIES:
                problems.append(f"{at}.then.category: {category!r} must be one of {CATEGORIES}")
            if category in ("E", "AE", "K", "G", "O") and not then.get("reason"):
                problems.append(f"{at}.then.reason: category {category} needs an exemption reason")
            if treatment == "reverse_charge" and not then.get("mention"):
                problems.append(f"{at}.then.mention: a reverse charge needs its legal mention")
            if not then.get("source"):
                problems.append(f"{at}.then.source: a treatment without a rate needs its legal source")
        requires = _names(then.get("requires_vat_id"), f"{at}.then.requires_vat_id", problems)
        for name in requires or ():
            if name not in known_zones:
                problems.append(f"{at}.then.requires_vat_id: {name!r} is not a group")
        rules.append(Rule(rid, cond, treatment, category, rate_from, then.get("reason"), then.get("vatex"),
                          then.get("mention"), then.get("hold"), str(then.get("source") or ""), requires))
    if not rules:
        problems.append("rules: at least one rule is required")

    # Every country a rate_from rule can reach must have rates; report the gaps once.
    for name, members in groups.items():
        for country in members:
            if not (len(country) == 2 and country.isupper()):
                problems.append(f"groups.{name}: {country!r} is not an ISO country code")
    if "EU" in groups:
        for country in sorted(groups["EU"]):
            if "standard" not in vat.get(country, {}):
                problems.append(f"vat_rates.{country}: an EU member needs its standard rate")
    if problems:
        raise RulesError("config tax rules:\n  " + "\n  ".join(problems))
    return TaxRules(int(doc.get("version", 1)), groups, codes, vat, states, tuple(rules), default_code)


# --------------------------------------------------------------------------- invoice computation


@dataclass(frozen=True, slots=True)
class LineIn:
    line_no: int
    net_minor: int
    determination: Determination


@dataclass(frozen=True, slots=True)
class LineOut:
    line_no: int
    determination: Determination
    taxable_minor: int
    tax_minor: int


@dataclass(frozen=True, slots=True)
class GroupOut:
    treatment: str
    rate: Decimal
    category: str
    taxable_minor: int
    tax_minor: int
    exemption_reason: str | None
    vatex: str | None
    mention: str | None
    line_nos: tuple[int, ...]


def allocate_signed(total: int, weights: Sequence[Decimal | int]) -> list[int]:
    """Largest-remainder split of ``total`` in proportion to ``weights`` that may have mixed signs.

    Weights of one sign use the project's allocator (:func:`closeloop.core.money.allocate`).
    With mixed signs each quota is ``total x w / sum(w)``; the floors are taken and the
    units left are given to the largest remainders (ties to the earlier line). The parts
    always sum to ``total``; weights summing to zero (with a zero total) give zeros."""
    decs = [Decimal(w) for w in weights]
    if all(d >= 0 for d in decs) and any(d > 0 for d in decs):
        return allocate(total, decs)
    if all(d <= 0 for d in decs) and any(d < 0 for d in decs):
        return allocate(total, [-d for d in decs])
    weight_sum = sum(decs, Decimal(0))
    if weight_sum == 0:
        if total != 0:
            raise ValueError("cannot allocate a non-zero total over weights that sum to zero")
        return [0] * len(decs)
    quotas = [Decimal(total) * d / weight_sum for d in decs]
    parts = [int(q.to_integral_value(rounding=ROUND_FLOOR)) for q in quotas]
    left = total - sum(parts)
    order = sorted(range(len(decs)), key=lambda i: (-(quotas[i] - parts[i]), i))
    for i in order[:left]:
        parts[i] += 1
    return parts


def group_key(d: Determination) -> tuple[str, Decimal, str]:
    return (d.treatment, d.rate.normalize() if d.rate else Decimal(0), d.category)


def compute_groups(lines: Iterable[LineIn]) -> tuple[tuple[LineOut, ...], tuple[GroupOut, ...]]:
    """Tax per (treatment, rate, category) group, allocated back to the lines.

    For each group: taxable = round(sum of net x share); tax = round(taxable x rate); the
    taxable base and the tax are each split over the group's lines by largest remainder
    (weights: net x share). Groups come out in the order of their first line."""
    order: list[tuple[str, Decimal, str]] = []
    members: dict[tuple[str, Decimal, str], list[LineIn]] = {}
    for line in lines:
        key = group_key(line.determination)
        if key not in members:
            members[key] = []
            order.append(key)
        members[key].append(line)
    outs: dict[int, LineOut] = {}
    groups: list[GroupOut] = []
    for key in order:
        items = members[key]
        exact = [Decimal(x.net_minor) * x.determination.taxable_share for x in items]
        taxable = round_minor(sum(exact, Decimal(0)))
        tax = round_minor(Decimal(taxable) * key[1])
        if all(e == e.to_integral_value() for e in exact):
            taxable_parts = [int(e) for e in exact]  # no share: each line's base is its net
        else:
            taxable_parts = allocate_signed(taxable, exact) if any(exact) else [0] * len(items)
        tax_parts = allocate_signed(tax, exact) if any(exact) else [0] * len(items)
        for item, t_base, t_tax in zip(items, taxable_parts, tax_parts, strict=True):
            outs[item.line_no] = LineOut(item.line_no, item.determination, t_base, t_tax)
        reasons = _distinct(x.determination.exemption_reason for x in items)
        mentions = _distinct(x.determination.mention for x in items)
        vatex = _distinct(x.determination.vatex for x in items)
        groups.append(GroupOut(key[0], key[1], key[2], taxable, tax, "; ".join(reasons) or None,
                               vatex[0] if len(vatex) == 1 else None, "; ".join(mentions) or None,
                               tuple(x.line_no for x in items)))
    ordered = tuple(outs[x.line_no] for key in order for x in members[key])
    return tuple(sorted(ordered, key=lambda o: o.line_no)), tuple(groups)


def _distinct(values: Iterable[str | None]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v and v not in out:
            out.append(v)
    return out
