"""Posting rules as data: parse, validate (every rule balances for any payload), and apply.

A rule set maps event types to journal-entry templates::

    invoice.issued:
      - memo: "Invoice {invoice} to {customer}"
        lines:
          - {role: accounts_receivable, debit: total}
          - {for_each: lines, role: deferred_revenue, credit: net, dimensions: {product_family: product_family}}
          - {role: tax_payable, credit: tax}

An entry template may set ``entity``, ``date`` and ``currency`` (payload field names; by
default ``entity``, ``date``, ``currency``) and ``when`` (a field that must be truthy).
A line has ``debit`` or ``credit``: a payload field (or, under ``for_each``, a field of each
item), optionally negated with a leading ``-``; a role (literal, ``{field}`` template, or
``role_by: {field, map, default}``); optional ``memo`` and ``dimensions`` templates, and
``in_functional: true`` when the amount is already in the entity's functional currency (with
``txn_currency: <field>`` it is booked against that currency's bucket with a zero transaction
amount: a revaluation of a foreign-currency balance). ``rate: carrying`` converts a
foreign-currency amount at the rate the account's balance in that currency is carried at (a
non-monetary item, e.g. deferred revenue relieved at its historical rate); ``rate: balance`` marks
the lines that take what the others converted to (allocated in proportion to their amounts).

Validation (all problems returned together): event types exist in the catalogue and every
money-moving type has a rule; fields exist in the payload schema; roles are known; and each
entry balances for any payload — the debits minus credits, as a linear combination of the
payload's amount fields (``sum(coll.field)`` under ``for_each``), must follow from the
catalogue's identities (checked by exact rational elimination). Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

from closeloop.core.money import to_minor
from closeloop.ledger.model import ACCOUNT_ROLES

# ----------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True, slots=True)
class EventSchema:
    type: str
    version: int
    moves_money: bool
    fields: Mapping[str, Any]  # name -> type string or {"type": "list", "items": {...}}
    identities: tuple[str, ...]

    def amount_fields(self) -> set[str]:
        """Symbols usable in rules: top-level amounts and sum(list.field) of list item amounts."""
        out = set()
        for name, kind in self.fields.items():
            if _base(kind) == "amount":
                out.add(name)
            elif isinstance(kind, Mapping) and kind.get("type") == "list":
                for item, ikind in kind.get("items", {}).items():
                    if _base(ikind) == "amount":
                        out.add(f"sum({name}.{item})")
        return out

    def has_field(self, name: str, collection: str | None = None) -> bool:
        if collection is None:
            return name in self.fields
        kind = self.fields.get(collection)
        return isinstance(kind, Mapping) and name in kind.get("items", {})


def _base(kind: Any) -> str:
    return str(kind).rstrip("?") if not isinstance(kind, Mapping) else str(kind.get("type"))


def parse_catalogue(doc: Mapping[str, Any]) -> dict[str, EventSchema]:
    out = {}
    for name, spec in (doc.get("events") or {}).items():
        out[name] = EventSchema(type=name, version=int(spec.get("version", 1)),
                                moves_money=bool(spec.get("moves_money")), fields=dict(spec.get("fields") or {}),
                                identities=tuple(spec.get("identities") or ()))
    return out


# ----------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class LineRule:
    side: str  # debit or credit
    amount: str  # field name (item field under for_each)
    negate: bool
    role: str | None
    role_by: tuple[str, tuple[tuple[str, str], ...], str | None] | None  # (field, map, default)
    for_each: str | None
    memo: str | None
    dimensions: tuple[tuple[str, str], ...]
    in_functional: bool
    txn_currency: str | None = None  # field naming the transaction currency of an in_functional amount
    rate: str = "spot"  # spot, carrying, balance


@dataclass(frozen=True, slots=True)
class EntryRule:
    entity: str
    date: str
    currency: str
    memo: str
    when: str | None
    lines: tuple[LineRule, ...]


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: int
    effective_from: str
    rules: Mapping[str, tuple[EntryRule, ...]]


_TEMPLATE = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


def parse_rules(doc: Mapping[str, Any], catalogue: Mapping[str, EventSchema]) -> tuple[RuleSet | None, list[str]]:
    """Parse and validate a rule set; returns (rules, problems). Rules are None when there are problems."""
    problems: list[str] = []
    if not isinstance(doc, Mapping):
        return None, ["a posting rule set is a mapping with version, effective_from and rules"]
    version = doc.get("version")
    effective = str(doc.get("effective_from") or "")
    if not isinstance(version, int) or version < 1:
        problems.append("version: must be a positive integer")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", effective):
        problems.append("effective_from: must be a date YYYY-MM-DD")
    rules_doc = doc.get("rules")
    if not isinstance(rules_doc, Mapping):
        return None, [*problems, "rules: must map event types to entry templates"]
    parsed: dict[str, tuple[EntryRule, ...]] = {}
    for event_type, entries in rules_doc.items():
        schema = catalogue.get(event_type)
        where = f"rules.{event_type}"
        if schema is None:
            problems.append(f"{where}: no such event type in the catalogue")
            continue
        if not isinstance(entries, list) or not entries:
            problems.append(f"{where}: must be a non-empty list of entry templates")
            continue
        out = []
        for i, entry in enumerate(entries):
            rule = _parse_entry(entry, schema, f"{where}[{i}]", problems)
            if rule is not None:
                out.append(rule)
                problems.extend(_balance_problems(rule, schema, f"{where}[{i}]"))
        parsed[event_type] = tuple(out)
    for name, schema in catalogue.items():
        if schema.moves_money and name not in rules_doc:
            problems.append(f"rules: event type {name} moves money but has no posting rule")
    if problems:
        return None, problems
    return RuleSet(version=int(version), effective_from=effective, rules=parsed), []  # type: ignore[arg-type]


def _parse_entry(entry: Any, schema: EventSchema, where: str, problems: list[str]) -> EntryRule | None:
    if not isinstance(entry, Mapping):
        problems.append(f"{where}: an entry template is a mapping")
        return None
    unknown = set(entry) - {"entity", "date", "currency", "memo", "when", "lines"}
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    for key, default in (("entity", "entity"), ("date", "date"), ("currency", "currency")):
        if not schema.has_field(str(entry.get(key, default))):
            problems.append(f"{where}.{key}: payload of {schema.type} has no field {entry.get(key, default)!r}")
    when = entry.get("when")
    if when is not None and not schema.has_field(str(when)):
        problems.append(f"{where}.when: no field {when!r}")
    memo = str(entry.get("memo", schema.type))
    for field in _TEMPLATE.findall(memo):
        if not schema.has_field(field):
            problems.append(f"{where}.memo: no field {field!r}")
    lines_doc = entry.get("lines")
    if not isinstance(lines_doc, list) or len(lines_doc) < 2:
        problems.append(f"{where}.lines: an entry needs at least two line templates")
        return None
    lines = []
    for j, line in enumerate(lines_doc):
        parsed = _parse_line(line, schema, f"{where}.lines[{j}]", problems)
        if parsed is not None:
            lines.append(parsed)
    rates = {ln.rate for ln in lines}
    if "carrying" in rates and "balance" not in rates:
        problems.append(f"{where}: lines converted at the carrying rate need lines with rate: balance")
    return EntryRule(entity=str(entry.get("entity", "entity")), date=str(entry.get("date", "date")),
                     currency=str(entry.get("currency", "currency")), memo=memo,
                     when=None if when is None else str(when), lines=tuple(lines))


def _parse_line(line: Any, schema: EventSchema, where: str, problems: list[str]) -> LineRule | None:
    if not isinstance(line, Mapping):
        problems.append(f"{where}: a line template is a mapping")
        return None
    unknown = set(line) - {"role", "role_by", "debit", "credit", "for_each", "memo", "dimensions", "in_functional",
                           "txn_currency", "rate"}
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    if ("debit" in line) == ("credit" in line):
        problems.append(f"{where}: needs exactly one of debit or credit")
        return None
    side = "debit" if "debit" in line else "credit"
    expr = str(line[side]).strip()
    negate = expr.startswith("-")
    field = expr.lstrip("-").strip()
    collection = line.get("for_each")
    if collection is not None:
        kind = schema.fields.get(collection)
        if not (isinstance(kind, Mapping) and kind.get("type") == "list"):
            problems.append(f"{where}.for_each: {collection!r} is not a list field of {schema.type}")
            return None
    if not schema.has_field(field, collection):
        problems.append(f"{where}.{side}: no amount field {field!r}" + (f" in {collection} items" if collection else ""))
    else:
        kind = (schema.fields[collection]["items"][field] if collection else schema.fields[field])
        if _base(kind) != "amount":
            problems.append(f"{where}.{side}: field {field!r} is not an amount")
    role = line.get("role")
    role_by = line.get("role_by")
    parsed_role_by = None
    if (role is None) == (role_by is None):
        problems.append(f"{where}: needs exactly one of role or role_by")
    elif role is not None:
        role = str(role)
        names = _TEMPLATE.findall(role)
        if names:
            for name in names:
                if not schema.has_field(name, collection) and not schema.has_field(name):
                    problems.append(f"{where}.role: no field {name!r}")
        elif role not in ACCOUNT_ROLES:
            problems.append(f"{where}.role: unknown account role {role!r}")
    else:
        if not isinstance(role_by, Mapping) or "field" not in role_by or "map" not in role_by:
            problems.append(f"{where}.role_by: needs field and map")
        else:
            for value, mapped in role_by["map"].items():
                if mapped not in ACCOUNT_ROLES:
                    problems.append(f"{where}.role_by.map.{value}: unknown account role {mapped!r}")
            default = role_by.get("default")
            if default is not None and default not in ACCOUNT_ROLES:
                problems.append(f"{where}.role_by.default: unknown account role {default!r}")
            parsed_role_by = (str(role_by["field"]), tuple((str(k), str(v)) for k, v in role_by["map"].items()),
                              None if default is None else str(default))
    dims = line.get("dimensions") or {}
    for name, source in dims.items():
        if not (schema.has_field(str(source), collection) or schema.has_field(str(source))):
            problems.append(f"{where}.dimensions.{name}: no field {source!r}")
    rate = str(line.get("rate", "spot"))
    if rate not in ("spot", "carrying", "balance"):
        problems.append(f"{where}.rate: must be spot, carrying or balance")
    txn_currency = line.get("txn_currency")
    if txn_currency is not None:
        if not line.get("in_functional"):
            problems.append(f"{where}.txn_currency: only for in_functional amounts")
        if not (schema.has_field(str(txn_currency), collection) or schema.has_field(str(txn_currency))):
            problems.append(f"{where}.txn_currency: no field {txn_currency!r}")
    return LineRule(side=side, amount=field, negate=negate, role=None if role is None else str(role),
                    role_by=parsed_role_by, for_each=collection, memo=line.get("memo"),
                    dimensions=tuple((str(k), str(v)) for k, v in dims.items()),
                    in_functional=bool(line.get("in_functional", False)),
                    txn_currency=None if txn_currency is None else str(txn_currency), rate=rate)


# ----------------------------------------------------------------------------- balance proof


def _linear(text: str) -> dict[str, Fraction]:
    """Parse "a + sum(x.y) - b" into {symbol: coefficient}."""
    out: dict[str, Fraction] = {}
    for sign, symbol in re.findall(r"([+-]?)\s*(sum\([a-z_.]+\)|[a-z_]+)", text.replace(" ", "")):
        out[symbol] = out.get(symbol, Fraction(0)) + (Fraction(-1) if sign == "-" else Fraction(1))
    return out


def _identity_vectors(schema: EventSchema) -> list[dict[str, Fraction]]:
    vectors = []
    for identity in schema.identities:
        left, _, right = identity.partition("=")
        vec = _linear(left)
        for symbol, c in _linear(right).items():
            vec[symbol] = vec.get(symbol, Fraction(0)) - c
        vectors.append({k: v for k, v in vec.items() if v != 0})
    return vectors


def _in_span(target: dict[str, Fraction], basis: list[dict[str, Fraction]]) -> bool:
    """Is ``target`` a linear combination of ``basis``? (exact Gaussian elimination)"""
    symbols = sorted({s for v in [target, *basis] for s in v})
    rows = [[v.get(s, Fraction(0)) for s in symbols] for v in basis]
    vec = [target.get(s, Fraction(0)) for s in symbols]
    pivots: list[tuple[int, list[Fraction]]] = []
    for row in rows:
        for col, prow in pivots:
            if row[col] != 0:
                factor = row[col] / prow[col]
                row = [a - factor * b for a, b in zip(row, prow, strict=True)]
        lead = next((i for i, x in enumerate(row) if x != 0), None)
        if lead is not None:
            pivots.append((lead, row))
    for col, prow in pivots:
        if vec[col] != 0:
            factor = vec[col] / prow[col]
            vec = [a - factor * b for a, b in zip(vec, prow, strict=True)]
    return all(x == 0 for x in vec)


def balance_vector(rule: EntryRule) -> dict[str, Fraction]:
    vec: dict[str, Fraction] = {}
    for line in rule.lines:
        symbol = f"sum({line.for_each}.{line.amount})" if line.for_each else line.amount
        sign = Fraction(1 if line.side == "debit" else -1) * (-1 if line.negate else 1)
        key = symbol + ("@functional" if line.in_functional else "")
        vec[key] = vec.get(key, Fraction(0)) + sign
    return {k: v for k, v in vec.items() if v != 0}


def _balance_problems(rule: EntryRule, schema: EventSchema, where: str) -> list[str]:
    vec = balance_vector(rule)
    functional = {k: v for k, v in vec.items() if k.endswith("@functional")}
    document = {k: v for k, v in vec.items() if not k.endswith("@functional")}
    identities = _identity_vectors(schema)
    problems = []
    if document and not _in_span(document, identities):
        terms = " ".join(f"{'+' if c > 0 else '-'} {k}" for k, c in sorted(document.items()))
        problems.append(f"{where}: does not balance for every payload (debits - credits = {terms.lstrip('+ ')}),"
                        f" given the identities {list(schema.identities)}")
    if functional and not _in_span({k[: -len('@functional')]: v for k, v in functional.items()}, identities):
        problems.append(f"{where}: its functional-currency lines do not balance among themselves")
    return problems


# ----------------------------------------------------------------------------- applying a rule


@dataclass(frozen=True, slots=True)
class PlannedLine:
    role: str
    amount: int  # minor units, debit positive; document currency unless in_functional
    in_functional: bool
    memo: str | None
    dimensions: tuple[tuple[str, str], ...]
    txn_currency: str | None = None
    rate: str = "spot"


@dataclass(frozen=True, slots=True)
class PlannedEntry:
    entity: str
    date: str
    currency: str
    memo: str
    lines: tuple[PlannedLine, ...]


@lru_cache(maxsize=1024)
def _template_parts(template: str) -> tuple[tuple[str, bool], ...]:
    """A ``{field}`` template split once into (text, is_field) parts."""
    parts: list[tuple[str, bool]] = []
    last = 0
    for m in _TEMPLATE.finditer(template):
        if m.start() > last:
            parts.append((template[last:m.start()], False))
        parts.append((m.group(1), True))
        last = m.end()
    if last < len(template):
        parts.append((template[last:], False))
    return tuple(parts)


def _fmt(template: str, *scopes: Mapping[str, Any]) -> str:
    """Fill ``{field}`` from the first scope that has a scalar value for it (missing: empty)."""
    out = []
    for text, is_field in _template_parts(template):
        if not is_field:
            out.append(text)
            continue
        for scope in scopes:
            value = scope.get(text)
            if value is not None and not isinstance(value, (list, dict)):
                out.append(str(value))
                break
    return "".join(out)


def plan(rule: EntryRule, payload: Mapping[str, Any], functional_currency_of: Any) -> PlannedEntry | None:
    """Apply one entry template to a payload. Zero lines are dropped; None when ``when`` is falsy."""
    if rule.when is not None and not payload.get(rule.when):
        return None
    currency = str(payload[rule.currency])
    entity = str(payload[rule.entity])
    functional = functional_currency_of(entity)
    lines: list[PlannedLine] = []
    for line in rule.lines:
        scopes: Sequence[Mapping[str, Any]] = payload.get(line.for_each, []) if line.for_each else [payload]
        for item in scopes:
            raw = item.get(line.amount)
            if raw is None:
                continue
            ccy = functional if line.in_functional else currency
            # amounts travel as decimal strings: to_minor's fast path reads them without a Decimal
            value = to_minor(raw if isinstance(raw, (str, Decimal)) else str(raw), ccy, field=line.amount)
            if line.negate:
                value = -value
            amount = value if line.side == "debit" else -value
            if amount == 0:
                continue
            role = _role(line, item, payload)
            dims = tuple((name, str(item.get(src, payload.get(src)) or "")) for name, src in line.dimensions
                         if item.get(src, payload.get(src)) not in (None, ""))
            memo = _fmt(line.memo, item, payload) if line.memo else None
            txn_ccy = None
            if line.txn_currency is not None:
                txn_ccy = str(item.get(line.txn_currency, payload.get(line.txn_currency)) or "") or None
            lines.append(PlannedLine(role, amount, line.in_functional, memo, dims, txn_ccy, line.rate))
    return PlannedEntry(entity=entity, date=str(payload[rule.date]), currency=currency,
                        memo=_fmt(rule.memo, payload), lines=tuple(lines))


def _role(line: LineRule, item: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    if line.role is not None:
        return _TEMPLATE.sub(lambda m: str(item.get(m.group(1), payload.get(m.group(1), ""))), line.role)
    assert line.role_by is not None
    field, mapping, default = line.role_by
    value = str(item.get(field, payload.get(field, "")))
    found = dict(mapping).get(value, default)
    if found is None:
        raise KeyError(f"no role for {field}={value!r}")
    return found
