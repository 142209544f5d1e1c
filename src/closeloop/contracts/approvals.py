"""Quote approval rules: data in ``config/approval_rules.yaml``, validated on load, evaluated purely.

A rule names who may approve it (``roles``: any one of them) and when it applies: ``when`` (every
condition holds) or ``when_any`` (a list of condition sets, any one holds). Conditions:

=============================== ====================================================================
``discount_pct_above: N``       some line's discount off list is above N % (a negotiated unit amount
                                below the list price counts as a discount)
``term_months_above: N``        the term is longer than N months
``term_months_not_in: [..]``    the term is none of these lengths
``billing_day_differs_from_start`` the billing day is not the start date's day
``tcv_above: {USD: "100000"}``  the quote's TCV is above the amount given for its currency
``renewal_uplift_pct_below: N`` the auto-renewal uplift is below N %
``performing_entity_differs``   some line is performed by another entity than the selling one
``has_milestones``              some line bills by milestones
``custom_price``                some line has a negotiated unit amount
``auto_renew``                  the quote renews automatically (true) / does not (false)
=============================== ====================================================================

A quote is approved when the approvals recorded since its last change cover every rule it
triggers (SCENARIOS.md); an approval covers the rules whose roles the approver holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

CONDITIONS = {
    "discount_pct_above": "number",
    "term_months_above": "number",
    "term_months_not_in": "numbers",
    "billing_day_differs_from_start": "bool",
    "tcv_above": "amounts",
    "renewal_uplift_pct_below": "number",
    "performing_entity_differs": "bool",
    "has_milestones": "bool",
    "custom_price": "bool",
    "auto_renew": "bool",
}


@dataclass(frozen=True, slots=True)
class QuoteFacts:
    """What approval rules look at, computed from a priced quote."""

    max_discount_pct: Decimal
    term_months: int
    billing_day_differs: bool
    currency: str
    tcv: Decimal  # major units
    renewal_uplift_pct: Decimal | None
    performing_entity_differs: bool
    has_milestones: bool
    custom_price: bool
    auto_renew: bool


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    description: str
    roles: tuple[str, ...]
    all_of: tuple[tuple[str, Any], ...] = ()
    any_of: tuple[tuple[tuple[str, Any], ...], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "description": self.description, "roles": list(self.roles)}


def _holds(name: str, value: Any, f: QuoteFacts) -> bool:
    if name == "discount_pct_above":
        return f.max_discount_pct > value
    if name == "term_months_above":
        return f.term_months > value
    if name == "term_months_not_in":
        return f.term_months not in value
    if name == "billing_day_differs_from_start":
        return f.billing_day_differs == value
    if name == "tcv_above":
        limit = value.get(f.currency)
        return limit is not None and f.tcv > limit
    if name == "renewal_uplift_pct_below":
        return f.renewal_uplift_pct is not None and f.renewal_uplift_pct < value
    if name == "performing_entity_differs":
        return f.performing_entity_differs == value
    if name == "has_milestones":
        return f.has_milestones == value
    if name == "custom_price":
        return f.custom_price == value
    if name == "auto_renew":
        return f.auto_renew == value
    raise KeyError(name)


def triggered(rules: Sequence[Rule], facts: QuoteFacts) -> list[Rule]:
    """The rules a quote triggers, in configuration order."""
    out = []
    for rule in rules:
        hit_all = bool(rule.all_of) and all(_holds(n, v, facts) for n, v in rule.all_of)
        hit_any = any(all(_holds(n, v, facts) for n, v in group) for group in rule.any_of)
        if hit_all or hit_any:
            out.append(rule)
    return out


def covering(rule: Rule, roles: frozenset[str] | None) -> bool:
    """Whether a user holding ``roles`` (None: every role) may approve ``rule``."""
    return roles is None or bool(roles & set(rule.roles))


# --------------------------------------------------------------------------- loading


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def _condition(name: Any, value: Any, where: str, errors: list[str]) -> tuple[str, Any] | None:
    kind = CONDITIONS.get(name)
    if kind is None:
        errors.append(f"{where}: unknown condition {name!r}; known: {', '.join(sorted(CONDITIONS))}")
        return None
    if kind == "number":
        num = _number(value)
        if num is None:
            errors.append(f"{where}.{name}: {value!r} is not a number")
            return None
        return name, num
    if kind == "numbers":
        if not isinstance(value, list) or any(_number(v) is None for v in value):
            errors.append(f"{where}.{name}: must be a list of numbers")
            return None
        return name, tuple(int(v) for v in value)
    if kind == "bool":
        if not isinstance(value, bool):
            errors.append(f"{where}.{name}: must be true or false")
            return None
        return name, value
    if not isinstance(value, dict) or any(_number(v) is None for v in value.values()):
        errors.append(f"{where}.{name}: must map currencies to amounts, e.g. {{USD: \"100000.00\"}}")
        return None
    return name, {str(k): _number(v) for k, v in value.items()}


def _conditions(raw: Any, where: str, errors: list[str]) -> tuple[tuple[str, Any], ...]:
    if not isinstance(raw, dict) or not raw:
        errors.append(f"{where}: must be a non-empty mapping of conditions")
        return ()
    out = []
    for name, value in raw.items():
        cond = _condition(name, value, where, errors)
        if cond is not None:
            out.append(cond)
    return tuple(out)


def parse_rules(doc: Any, name: str = "approval_rules.yaml") -> tuple[list[Rule], list[str]]:
    """Rules and every problem of an approval-rules document (all at once)."""
    errors: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        return [], [f"{name}: a mapping with version and a list of rules"]
    for key in sorted(set(doc) - {"version", "rules"}):
        errors.append(f"{name}: unknown key {key!r}")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(doc["rules"]):
        where = f"{name}: rules[{i}]"
        if not isinstance(raw, dict):
            errors.append(f"{where}: must be a mapping")
            continue
        rid = raw.get("id")
        if not isinstance(rid, str) or not rid:
            errors.append(f"{where}: id is required")
            rid = f"rule{i}"
        elif rid in seen:
            errors.append(f"{where}: duplicate id {rid!r}")
        seen.add(rid)
        where = f"{name}: rule {rid}"
        for key in sorted(set(raw) - {"id", "description", "roles", "role", "when", "when_any"}):
            errors.append(f"{where}: unknown key {key!r}")
        roles = raw.get("roles") or ([raw["role"]] if raw.get("role") else [])
        if not roles or not all(isinstance(r, str) and r for r in roles):
            errors.append(f"{where}: roles (who may approve) is required")
        if ("when" in raw) == ("when_any" in raw):
            errors.append(f"{where}: give exactly one of when (all conditions) or when_any (a list)")
        all_of: tuple[tuple[str, Any], ...] = ()
        any_of: tuple[tuple[tuple[str, Any], ...], ...] = ()
        if "when" in raw:
            all_of = _conditions(raw["when"], f"{where}.when", errors)
        if "when_any" in raw:
            if not isinstance(raw["when_any"], list) or not raw["when_any"]:
                errors.append(f"{where}.when_any: must be a non-empty list of condition sets")
            else:
                any_of = tuple(_conditions(g, f"{where}.when_any[{j}]", errors) for j, g in enumerate(raw["when_any"]))
        rules.append(Rule(rid, str(raw.get("description") or rid), tuple(roles), all_of, any_of))
    return rules, errors


@lru_cache(maxsize=1)
def shipped_rules() -> tuple[Rule, ...]:
    text = (resources.files("closeloop") / "config" / "approval_rules.yaml").read_text(encoding="utf-8")
    rules, errors = parse_rules(yaml.safe_load(text), "config/approval_rules.yaml")
    if errors:
        raise RuntimeError("invalid approval rules: " + "; ".join(errors))
    return tuple(rules)


def rules_for(services: Any) -> tuple[Rule, ...]:
    """The rules in force: ``services.config["approval_rules"]`` (a document) when set, else the shipped file."""
    config = getattr(services, "config", None) or {}
    doc = config.get("approval_rules")
    if doc is None:
        return shipped_rules()
    rules, errors = parse_rules(doc, "approval_rules")
    if errors:
        from closeloop.core.errors import ValidationError

        raise ValidationError("invalid approval rules: " + "; ".join(errors), field="approval_rules")
    return tuple(rules)


def user_roles(raw_users: Any, name: str) -> frozenset[str] | None:
    """Roles of ``name`` in a users definition (SCENARIOS.md ``users:``); None when no users are defined.
    Accepted shapes: ``{alice: [finance]}``, ``{alice: finance}``, ``{alice: {roles: [...]}}``,
    ``[{name: alice, roles: [...]}]``. A user defined without roles holds every role."""
    if not raw_users:
        return None
    spec: Any = None
    if isinstance(raw_users, Mapping):
        if name not in raw_users:
            return frozenset()
        spec = raw_users[name]
    elif isinstance(raw_users, list):
        found = [u for u in raw_users if isinstance(u, Mapping) and u.get("name") == name]
        if not found:
            return frozenset()
        spec = found[0]
    if isinstance(spec, str):
        return frozenset({spec})
    if isinstance(spec, list):
        return frozenset(str(r) for r in spec)
    if isinstance(spec, Mapping):
        roles = spec.get("roles") or ([spec["role"]] if spec.get("role") else None)
        return None if roles is None else frozenset(str(r) for r in roles)
    return None
