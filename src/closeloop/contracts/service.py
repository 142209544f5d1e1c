"""Quotes, approvals and contracts: commands, queries and the events billing and revenue act on.

Commands: ``quote.create``, ``quote.update``, ``quote.approve``, ``quote.accept``,
``contract.amend``, ``contract.renew``, ``contract.cancel``, ``renewals.run``.
Queries: ``quote``, ``quotes``, ``contract`` (as of any date), ``contracts``, ``contract_history``.
Events (docs/events.md): ``quote.created``, ``quote.updated``, ``quote.approved``,
``quote.approval_recorded``, ``quote.accepted``, ``contract.activated``, ``contract.amended``,
``contract.renewed``, ``contract.cancelled``. Every contract event carries the whole contract
(header, the lines in force from the change, the full timeline of line versions with values), so
billing and revenue recognition never read these tables.

Read API for other areas: :func:`contract_state` (the timeline of a contract) and
:func:`contract_view` (what the ``contract`` query returns).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from itertools import groupby
from typing import Any

import yaml

from closeloop.catalog.model import Problem, dec_str, raise_problems
from closeloop.catalog.service import get_price, get_product
from closeloop.contracts import approvals
from closeloop.contracts.model import (
    MODIFICATIONS,
    Change,
    ContractLine,
    LineUpdate,
    ProductRef,
    Timeline,
    Values,
    _json,
    change_summary,
    extensions_of,
    lines_view,
    replay,
    segments_view,
    status_on,
    term_end,
    terms_view,
    values,
)
from closeloop.contracts.pricing import (
    LineSpec,
    PricedQuote,
    QuoteSpec,
    facts_from_dict,
    facts_to_dict,
    price_lines,
    price_quote,
)
from closeloop.contracts.recon_sides import due_schedule
from closeloop.core import governance
from closeloop.core.entities import get_entity
from closeloop.core.errors import (
    ApprovalRequiredError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    NotOwnerError,
    ValidationError,
)
from closeloop.core.money import format_minor
from closeloop.core.periods import parse_date
from closeloop.core.registry import command, payload, query
from closeloop.core.uow import dumps

ONE_DAY = timedelta(days=1)
SALES_ROLES = ("sales_ops", "billing", "admin")
APPROVER_ROLES = ("sales_ops", "controller", "admin", "sales_manager", "finance", "legal")
CONTRACT_ROLES = ("sales_ops", "billing", "admin")
EVENT_VERSION = 1


@lru_cache(maxsize=1)
def policy() -> dict[str, Any]:
    """config/contracts.yaml, validated."""
    doc = yaml.safe_load((resources.files("closeloop") / "config" / "contracts.yaml").read_text(encoding="utf-8"))
    renewal = (doc or {}).get("renewal") or {}
    errors = []
    try:
        uplift = Decimal(str(renewal.get("uplift_pct", "0")))
        if uplift <= -100:
            errors.append("renewal.uplift_pct must be above -100")
    except Exception:  # noqa: BLE001
        errors.append("renewal.uplift_pct must be a number")
        uplift = Decimal(0)
    term = renewal.get("term_months")
    if term is not None and (not isinstance(term, int) or term < 1):
        errors.append("renewal.term_months must be null or a positive whole number")
    days = renewal.get("days_before_end", 0)
    if not isinstance(days, int) or days < 0:
        errors.append("renewal.days_before_end must be a whole number of days, 0 or more")
    if errors:
        raise RuntimeError("invalid config/contracts.yaml: " + "; ".join(errors))
    return {"uplift_pct": uplift, "term_months": term, "days_before_end": days}


# --------------------------------------------------------------------------- governance


def require_owner(uow: Any, entity_type: str, record_id: str, changes: dict[str, tuple[Any, Any]],
                  entity: str | None = None) -> None:
    """All or nothing: a change any of whose fields the command's source does not own is refused
    with ``not_owner`` (one ``not_owner`` exception per field, kept after the rollback)."""
    if not changes:
        return
    reg = governance.registry(uow)
    reg.check_source(uow.source)
    allowed, refused = governance.decide(reg, entity_type, changes, uow.source)
    if not refused:
        return
    source = uow.source
    uow.keep_on_failure(lambda u: governance.open_refusals(u, reg, entity_type, record_id, refused, source,
                                                           entity=entity))
    parts = [f"{name} (owned by {' or '.join(reg.owners(entity_type, name))})" for name in refused]
    raise NotOwnerError(f"{entity_type} {record_id}: source {source} does not own {', '.join(parts)};"
                        " nothing was changed", field=next(iter(refused)), record=record_id, source=source,
                        refused=[{"field": n, "owners": list(reg.owners(entity_type, n))} for n in refused])


# --------------------------------------------------------------------------- quote payloads


@payload
class MilestoneIn:
    milestone_id: str
    amount: Decimal


@payload
class QuoteLineIn:
    line_id: str
    price_id: str
    quantity: Decimal
    discount_pct: Decimal | None = None
    unit_amount: Decimal | None = None
    ssp: Decimal | None = None
    milestones: tuple[MilestoneIn, ...] | None = None
    performing_entity: str | None = None
    # billing depth (issue 13; docs/billing.md): trial, coupons, spending minimum, ramp
    trial_days: int | None = None
    trial_discount_pct: Decimal | None = None
    trial_invoice: str | None = None
    coupons: tuple[str, ...] | None = None
    minimum: Any = None
    ramp: Any = None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return dec_str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def line_spec(x: QuoteLineIn) -> LineSpec:
    ext = {name: _jsonable(getattr(x, name)) for name in ("trial_days", "trial_discount_pct", "trial_invoice",
                                                           "coupons", "minimum", "ramp")}
    return LineSpec(line_id=x.line_id, price_id=x.price_id, quantity=x.quantity, discount_pct=x.discount_pct,
                    unit_amount=x.unit_amount, ssp=x.ssp,
                    milestones=None if x.milestones is None else tuple((m.milestone_id, m.amount)
                                                                       for m in x.milestones),
                    performing_entity=x.performing_entity, extensions=extensions_of(ext))


@payload
class QuoteCreate:
    quote_id: str
    customer: str
    start: str
    lines: tuple[QuoteLineIn, ...]
    term_months: int | None = None  # required unless coterm
    entity: str | None = None
    currency: str | None = None
    billing_day: int | None = None
    auto_renew: bool = False
    opportunity: str | None = None
    renewal_term_months: int | None = None
    renewal_uplift_pct: Decimal | None = None
    name: str | None = None
    # billing depth (issue 13): coupons on the whole contract, a contract minimum commitment {amount, metric?},
    # co-terming with an existing contract (the quote's lines are added to it when accepted)
    coupons: tuple[str, ...] | None = None
    minimum: Any = None
    coterm: str | None = None


@payload
class QuoteUpdate:
    quote_id: str
    customer: str | None = None
    start: str | None = None
    term_months: int | None = None
    lines: tuple[QuoteLineIn, ...] | None = None
    entity: str | None = None
    currency: str | None = None
    billing_day: int | None = None
    auto_renew: bool | None = None
    opportunity: str | None = None
    renewal_term_months: int | None = None
    renewal_uplift_pct: Decimal | None = None
    name: str | None = None
    coupons: tuple[str, ...] | None = None
    minimum: Any = None


# --------------------------------------------------------------------------- quote storage


def _quote_row(uow: Any, quote_id: str, *, lock: bool = False) -> dict[str, Any]:
    rows = uow.dicts(
        "SELECT quote_id, version, status, customer, customer_id, entity, currency, start, term_months, opportunity,"
        f" contract_id, created_by FROM contracts_quote WHERE quote_id = ?{uow.for_update() if lock else ''}",
        (quote_id,))
    if not rows:
        raise NotFoundError(f"quote {quote_id!r} does not exist", field="quote_id", record=quote_id)
    return rows[0]


def _version(uow: Any, quote_id: str, version: int) -> dict[str, Any]:
    row = uow.one("SELECT payload, rules, changed, source, actor, recorded_on, created_at FROM contracts_quote_version"
                  " WHERE quote_id = ? AND version = ?", (quote_id, version))
    if row is None:
        raise NotFoundError(f"quote {quote_id} has no version {version}", field="version", record=quote_id)
    data = json.loads(row[0])
    return {"version": version, **data, "rules": json.loads(row[1]), "changed": json.loads(row[2]) if row[2] else [],
            "source": row[3], "actor": row[4], "recorded_on": row[5], "created_at": row[6]}


def _approvals(uow: Any, quote_id: str, version: int) -> list[dict[str, Any]]:
    return [{"approver": r[0], "rules": json.loads(r[1]), "recorded_on": r[2], "at": r[3], "comment": r[4]}
            for r in uow.all("SELECT approver, rules, recorded_on, created_at, comment FROM contracts_quote_approval"
                             " WHERE quote_id = ? AND version = ? ORDER BY id", (quote_id, version))]


def _rule_state(uow: Any, quote_id: str, version: dict[str, Any]) -> tuple[list[approvals.Rule], dict[str, list[str]]]:
    """The rules the version triggers under the rules in force, and who covered each (approver names)."""
    rules = approvals.triggered(approvals.rules_for(uow.services), facts_from_dict(version["facts"]))
    covered: dict[str, list[str]] = {r.id: [] for r in rules}
    for a in _approvals(uow, quote_id, version["version"]):
        for rid in a["rules"]:
            if rid in covered:
                covered[rid].append(a["approver"])
    return rules, covered


def _pending(rules: list[approvals.Rule], covered: dict[str, list[str]]) -> list[approvals.Rule]:
    return [r for r in rules if not covered.get(r.id)]


def _store_version(uow: Any, priced: PricedQuote, version: int, rules: list[approvals.Rule],
                   changed: list[str] | None) -> None:
    body = {"spec": priced.spec.to_dict(), "quote": priced.to_dict(), "facts": facts_to_dict(priced.facts)}
    uow.execute(
        "INSERT INTO contracts_quote_version (quote_id, version, payload, rules, changed, source, actor, recorded_on,"
        " created_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (priced.spec.quote_id, version, dumps(body), dumps([r.id for r in rules]),
         dumps(changed) if changed is not None else None, uow.source, uow.actor, uow.today().isoformat(), uow.now()))


def _quote_event(priced: PricedQuote, version: int, status: str, rules: list[approvals.Rule],
                 **extra: Any) -> dict[str, Any]:
    return {"quote_id": priced.spec.quote_id, "version": version, "status": status, **priced.to_dict(),
            "approval_rules": [r.to_dict() for r in rules], **extra}


def _default_uplift() -> Decimal:
    return Decimal(policy()["uplift_pct"])


def _contract_ext(coupons: Any, minimum: Any) -> tuple[tuple[str, str], ...]:
    return extensions_of({"coupons": _jsonable(coupons), "minimum": _jsonable(minimum)})


def _spec(uow: Any, cmd: QuoteCreate) -> QuoteSpec:
    months = cmd.term_months
    if months is None:
        if not cmd.coterm:
            raise ValidationError(f"quote {cmd.quote_id}: term_months is required (unless the quote co-terms with a"
                                  " contract: coterm)", field="term_months", record=cmd.quote_id)
        from closeloop.contracts.pricing import coterm_months

        months = coterm_months(uow, cmd.coterm, cmd.start)
    return QuoteSpec(quote_id=cmd.quote_id, customer=cmd.customer, start=cmd.start, term_months=months,
                     lines=tuple(line_spec(x) for x in cmd.lines), entity=cmd.entity, currency=cmd.currency,
                     billing_day=cmd.billing_day, auto_renew=cmd.auto_renew, opportunity=cmd.opportunity,
                     renewal_term_months=cmd.renewal_term_months, renewal_uplift_pct=cmd.renewal_uplift_pct,
                     name=cmd.name, extensions=_contract_ext(cmd.coupons, cmd.minimum), coterm=cmd.coterm)


def create_quote(uow: Any, spec: QuoteSpec) -> dict[str, Any]:
    """Create a quote from a spec (also used by the opportunity conversion)."""
    existing = uow.one("SELECT version FROM contracts_quote WHERE quote_id = ?", (spec.quote_id,))
    if existing is not None:
        current = _version(uow, spec.quote_id, int(existing[0]))
        if int(existing[0]) == 1 and current["spec"] == spec.to_dict():
            return {**quote_view(uow, spec.quote_id), "created": False}
        raise ConflictError(f"quote {spec.quote_id!r} already exists; change it with quote.update",
                            field="quote_id", record=spec.quote_id)
    if spec.opportunity is not None and uow.one(
            "SELECT 1 FROM contracts_opportunity WHERE external_id = ?", (spec.opportunity,)) is None:
        raise NotFoundError(f"quote {spec.quote_id}: opportunity {spec.opportunity!r} does not exist",
                            field="opportunity", record=spec.quote_id)
    priced = price_quote(uow, spec, default_uplift=_default_uplift())
    rules = approvals.triggered(approvals.rules_for(uow.services), priced.facts)
    status = "pending_approval" if rules else "approved"
    now = uow.now()
    uow.execute(
        "INSERT INTO contracts_quote (quote_id, version, status, customer, customer_id, entity, currency, start,"
        " term_months, opportunity, contract_id, source, created_by, created_at, updated_at)"
        " VALUES (?,1,?,?,?,?,?,?,?,?,NULL,?,?,?,?)",
        (spec.quote_id, status, priced.customer, priced.customer_id, priced.entity, priced.currency,
         priced.start.isoformat(), spec.term_months, spec.opportunity, uow.source, uow.actor, now, now))
    _store_version(uow, priced, 1, rules, None)
    uow.emit("quote.created", "quote", spec.quote_id, _quote_event(priced, 1, status, rules), entity=priced.entity)
    return {**quote_view(uow, spec.quote_id), "created": True}


@command("quote.create", QuoteCreate, roles=SALES_ROLES, summary="Create a quote: customer, term, start, priced lines")
def quote_create(uow: Any, cmd: QuoteCreate) -> dict[str, Any]:
    return create_quote(uow, _spec(uow, cmd))


# Quote fields as the system-of-record registry names them.
def _governed_changes(old: QuoteSpec, new: QuoteSpec) -> dict[str, tuple[Any, Any]]:
    changes: dict[str, tuple[Any, Any]] = {}
    o, n = old.to_dict(), new.to_dict()
    for name in ("customer", "start", "term_months", "entity", "currency", "billing_day", "auto_renew",
                 "opportunity", "renewal_term_months", "renewal_uplift_pct", "name"):
        if o[name] != n[name]:
            changes[name] = (o[name], n[name])
    old_disc = {ln["line_id"]: ln["discount_pct"] for ln in o["lines"]}
    new_disc = {ln["line_id"]: ln["discount_pct"] for ln in n["lines"]}
    without = [{k: v for k, v in ln.items() if k != "discount_pct"} for ln in o["lines"]]
    without_new = [{k: v for k, v in ln.items() if k != "discount_pct"} for ln in n["lines"]]
    if without != without_new:
        changes["lines"] = (o["lines"], n["lines"])
    if any(d != old_disc.get(k) for k, d in new_disc.items() if k in old_disc or d is not None):
        changes["discounts"] = (old_disc, new_disc)
    old_ext, new_ext = o.get("extensions") or {}, n.get("extensions") or {}
    if old_ext.get("coupons") != new_ext.get("coupons"):
        changes["discounts"] = (o.get("extensions"), n.get("extensions"))
    if old_ext.get("minimum") != new_ext.get("minimum") or o.get("coterm") != n.get("coterm"):
        changes["lines"] = (o["lines"], n["lines"])
    return changes


def update_quote(uow: Any, quote_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Apply changed fields to a quote: a new version, pending approval again if it triggers rules."""
    row = _quote_row(uow, quote_id, lock=True)
    if row["status"] == "accepted":
        raise ConflictError(f"quote {quote_id} was accepted as contract {row['contract_id']}; amend the contract"
                            " with contract.amend instead", field="quote_id", record=quote_id)
    current = _version(uow, quote_id, int(row["version"]))
    old = QuoteSpec.from_dict(current["spec"])
    new = replace(old, **fields)
    changes = _governed_changes(old, new)
    if not changes:
        return {**quote_view(uow, quote_id), "changed": False}
    require_owner(uow, "quote", quote_id, changes, entity=row["entity"])
    priced = price_quote(uow, new, default_uplift=_default_uplift())
    rules = approvals.triggered(approvals.rules_for(uow.services), priced.facts)
    version = int(row["version"]) + 1
    status = "pending_approval" if rules else "approved"
    _store_version(uow, priced, version, rules, sorted(changes))
    uow.execute(
        "UPDATE contracts_quote SET version = ?, status = ?, customer = ?, customer_id = ?, entity = ?, currency = ?,"
        " start = ?, term_months = ?, opportunity = ?, updated_at = ? WHERE quote_id = ?",
        (version, status, priced.customer, priced.customer_id, priced.entity, priced.currency, priced.start.isoformat(),
         new.term_months, new.opportunity, uow.now(), quote_id))
    reset = row["status"] == "approved" and status == "pending_approval"
    uow.emit("quote.updated", "quote", quote_id,
             _quote_event(priced, version, status, rules, changed=sorted(changes), approval_reset=reset),
             entity=priced.entity)
    return {**quote_view(uow, quote_id), "changed": True, "changed_fields": sorted(changes), "approval_reset": reset}


@command("quote.update", QuoteUpdate, roles=SALES_ROLES,
         summary="Change a quote: a new version; a change to an approved quote returns it to pending approval")
def quote_update(uow: Any, cmd: QuoteUpdate) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("customer", "start", "term_months", "entity", "currency", "billing_day", "auto_renew",
                 "opportunity", "renewal_term_months", "renewal_uplift_pct", "name"):
        value = getattr(cmd, name)
        if value is not None:
            fields[name] = value
    if cmd.lines is not None:
        fields["lines"] = tuple(line_spec(x) for x in cmd.lines)
    if cmd.coupons is not None or cmd.minimum is not None:
        row = _quote_row(uow, cmd.quote_id)
        current = dict(QuoteSpec.from_dict(_version(uow, cmd.quote_id, int(row["version"]))["spec"]).extensions)
        ext = {k: json.loads(v) for k, v in current.items()}
        if cmd.coupons is not None:
            ext["coupons"] = list(cmd.coupons) or None
        if cmd.minimum is not None:
            ext["minimum"] = _jsonable(cmd.minimum) or None
        fields["extensions"] = extensions_of(ext)
    if not fields:
        raise ValidationError(f"quote.update {cmd.quote_id}: give at least one field to change", field="quote_id")
    return update_quote(uow, cmd.quote_id, fields)


@payload
class QuoteApprove:
    quote_id: str
    approver: str
    comment: str | None = None


def approver_roles(uow: Any, name: str) -> frozenset[str] | None:
    """The roles of an approver: the scenario's users when it defines them, else the closeloop user of
    that name; None (every role) when neither defines the person."""
    config = getattr(uow.services, "config", None) or {}
    users = config.get("users")
    if users:
        return approvals.user_roles(users, name)
    try:
        from closeloop.auth.users import get_user
    except ImportError:  # pragma: no cover - the auth area is optional
        return None
    try:
        found = get_user(uow, name)
    except Exception:  # noqa: BLE001 - no users table: nobody is defined
        return None
    return None if found is None else frozenset(found.roles)


@command("quote.approve", QuoteApprove, roles=APPROVER_ROLES,
         summary="Record an approval of a quote's current version (covers the rules the approver's roles allow)")
def quote_approve(uow: Any, cmd: QuoteApprove) -> dict[str, Any]:
    row = _quote_row(uow, cmd.quote_id, lock=True)
    if row["status"] == "accepted":
        raise ConflictError(f"quote {cmd.quote_id} is already accepted (contract {row['contract_id']})",
                            field="quote_id", record=cmd.quote_id)
    version = _version(uow, cmd.quote_id, int(row["version"]))
    rules, covered = _rule_state(uow, cmd.quote_id, version)
    roles = approver_roles(uow, cmd.approver)
    covers = [r for r in rules if approvals.covering(r, roles)]
    if rules and not covers:
        needed = sorted({role for r in _pending(rules, covered) or rules for role in r.roles})
        raise ForbiddenError(
            f"quote {cmd.quote_id}: {cmd.approver} holds {', '.join(sorted(roles or ())) or 'no approval role'};"
            f" its rules ({', '.join(r.id for r in rules)}) need one of {', '.join(needed)}",
            field="approver", record=cmd.quote_id, approver=cmd.approver, needed=needed)
    uow.execute("INSERT INTO contracts_quote_approval (quote_id, version, approver, rules, comment, recorded_on,"
                " created_at) VALUES (?,?,?,?,?,?,?)",
                (cmd.quote_id, version["version"], cmd.approver, dumps([r.id for r in covers]), cmd.comment,
                 uow.today().isoformat(), uow.now()))
    for r in covers:
        covered[r.id].append(cmd.approver)
    pending = _pending(rules, covered)
    status = "approved" if not pending else "pending_approval"
    if status != row["status"]:
        uow.execute("UPDATE contracts_quote SET status = ?, updated_at = ? WHERE quote_id = ?",
                    (status, uow.now(), cmd.quote_id))
    event = {"quote_id": cmd.quote_id, "version": version["version"], "approver": cmd.approver,
             "covers": [r.id for r in covers], "pending": [r.id for r in pending], "status": status,
             "needed_approval": bool(rules)}
    uow.emit("quote.approved" if not pending else "quote.approval_recorded", "quote", cmd.quote_id, event,
             entity=row["entity"])
    return {**quote_view(uow, cmd.quote_id), "approval": event}


# --------------------------------------------------------------------------- quote view


def quote_view(uow: Any, quote_id: str, version_no: int | None = None) -> dict[str, Any]:
    row = _quote_row(uow, quote_id)
    current_no = int(row["version"])
    version = _version(uow, quote_id, version_no or current_no)
    rules, covered = _rule_state(uow, quote_id, version)
    pending = _pending(rules, covered)
    quote = {**version["quote"], "customer": row["customer"], "customer_id": row["customer_id"]}
    status = row["status"]
    if version["version"] != current_no:
        status = "superseded"
    elif status != "accepted":
        status = "approved" if not pending else "pending_approval"
    versions = [{"version": int(v[0]), "recorded_on": v[1], "actor": v[2], "source": v[3],
                 "changed": json.loads(v[4]) if v[4] else []}
                for v in uow.all("SELECT version, recorded_on, actor, source, changed FROM contracts_quote_version"
                                 " WHERE quote_id = ? ORDER BY version", (quote_id,))]
    return {
        **quote, "quote_id": quote_id, "version": version["version"], "current_version": current_no,
        "status": status, "approved": not pending, "contract_id": row["contract_id"],
        "rules": [{**r.to_dict(), "covered_by": covered.get(r.id, [])} for r in rules],
        "pending_approvals": [r.id for r in pending],
        "approvals": _approvals(uow, quote_id, version["version"]),
        "versions": versions,
        "lines": [_quote_line(ln, quote["currency"]) for ln in quote["lines"]],
    }


def _quote_line(ln: dict[str, Any], currency: str) -> dict[str, Any]:
    return {"line_id": ln["line_id"], "sku": ln["sku"], "price_id": ln["price"]["price_id"], "quantity": ln["quantity"],
            "discount_pct": ln["discount_pct"], "unit_amount": ln["unit_amount"], "amount": ln["period_amount"],
            "period": ln["price"]["period"], "model": ln["price"]["model"], "metric": ln["price"]["metric"],
            "ssp": ln["ssp"], "ssp_source": ln["ssp_source"], "milestones": ln["milestones"],
            "performing_entity": ln["performing_entity"], "treatment": ln["treatment"],
            **{k: v for k, v in (ln.get("extensions") or {}).items()}}


@payload
class QuoteQuery:
    quote_id: str
    version: int | None = None


@query("quote", QuoteQuery, summary="A quote (current or a given version): status, lines, rules, approvals, versions")
def quote_query(uow: Any, q: QuoteQuery) -> dict[str, Any]:
    return quote_view(uow, q.quote_id, q.version)


@payload
class QuotesQuery:
    customer: str | None = None
    status: str | None = None


@query("quotes", QuotesQuery, summary="Quotes by customer and status")
def quotes_query(uow: Any, q: QuotesQuery) -> dict[str, Any]:
    sql = ("SELECT quote_id, version, status, customer, entity, currency, start, term_months, contract_id"
           " FROM contracts_quote WHERE 1 = 1")
    params: list[Any] = []
    if q.customer:
        from closeloop.customers.service import get_customer

        sql += " AND customer_id = ?"
        params.append(get_customer(uow, q.customer).id)
    if q.status:
        sql += " AND status = ?"
        params.append(q.status)
    items = [{"quote_id": r[0], "version": int(r[1]), "status": r[2], "customer": r[3], "entity": r[4],
              "currency": r[5], "start": r[6], "term_months": int(r[7]), "contract_id": r[8]}
             for r in uow.all(sql + " ORDER BY quote_id", params)]
    return {"count": len(items), "items": items}


# --------------------------------------------------------------------------- contracts: storage and events


def _contract_header(uow: Any, contract_id: str, *, lock: bool = False) -> dict[str, Any]:
    rows = uow.dicts(
        "SELECT contract_id, quote_id, quote_version, customer, customer_id, entity, currency, billing_day,"
        " auto_renew, renewal_term_months, renewal_uplift_pct, start, service_end, cancelled_effective, opportunity,"
        f" changes, created_at FROM contracts_contract WHERE contract_id = ?{uow.for_update() if lock else ''}",
        (contract_id,))
    if not rows:
        raise NotFoundError(f"contract {contract_id!r} does not exist", field="contract_id", record=contract_id)
    h = rows[0]
    h["auto_renew"] = bool(h["auto_renew"])
    return h


def _changes(uow: Any, contract_id: str) -> list[Change]:
    return [Change.from_dict(json.loads(r[0])) for r in
            uow.all("SELECT payload FROM contracts_change WHERE contract_id = ? ORDER BY seq", (contract_id,))]


def contract_state(uow: Any, contract_id: str, through: date | None = None) -> tuple[dict[str, Any], Timeline]:
    """A contract's header and timeline (every recorded change, or those effective on or before ``through``)."""
    header = _contract_header(uow, contract_id)
    return header, replay(_changes(uow, contract_id), through)


def _money(minor: int, currency: str) -> str:
    return format_minor(minor, currency)


def _contract_payload(header: dict[str, Any], before: Timeline | None, tl: Timeline, change: Change) -> dict[str, Any]:
    """The event payload (docs/events.md): the whole contract after the change, for consumers to act alone."""
    cur = header["currency"]
    bday = int(header["billing_day"])
    eff = change.effective
    in_force = tl.segments_on(eff - ONE_DAY) if change.kind == "cancellation" else tl.segments_on(eff)
    view = replay(list(tl.applied) + list(tl.voided), eff)
    vals = values(view, eff, bday)
    term = tl.term_on(min(max(eff, tl.start), tl.terms[-1].end))
    before_day = eff - ONE_DAY if change.kind in ("renewal", "cancellation") else eff
    old = {s.line.line_id: s for s in (before.segments_on(before_day) if before is not None else [])}
    new = {s.line.line_id: s for s in tl.segments_on(eff)}
    changed = []
    for line_id in dict.fromkeys([*old, *new]):
        o, n = old.get(line_id), new.get(line_id)
        if change.kind == "cancellation":
            action = "cancelled"
        elif o is None:
            action = "added"
        elif n is None:
            action = "not_renewed" if change.kind == "renewal" else "removed"
        elif o.line == n.line:
            continue
        else:
            action = "renewed" if change.kind == "renewal" else "changed"
        changed.append({"line_id": line_id, "action": action,
                        "before": None if o is None else {**o.line.to_dict(), "from": o.start.isoformat(),
                                                          "to": o.end.isoformat()},
                        "after": None if n is None or change.kind == "cancellation" else {
                            **n.line.to_dict(), "from": n.start.isoformat(), "to": n.end.isoformat()}})
    if change.kind == "activation":
        changed = [{"line_id": s.line.line_id, "action": "added", "before": None,
                    "after": {**s.line.to_dict(), "from": s.start.isoformat(), "to": s.end.isoformat()}}
                   for s in tl.segments_on(eff)]
    return {
        "contract_id": header["contract_id"], "quote_id": header["quote_id"], "quote_version": header["quote_version"],
        "opportunity": header["opportunity"], "customer": header["customer"], "customer_id": header["customer_id"],
        "entity": header["entity"], "currency": cur, "billing_day": bday, "auto_renew": header["auto_renew"],
        "renewal_term_months": header["renewal_term_months"], "renewal_uplift_pct": header["renewal_uplift_pct"],
        "start": tl.start.isoformat(), "service_end": tl.service_end.isoformat(),
        "cancelled_effective": None if tl.cancelled is None else tl.cancelled.isoformat(),
        "status": status_on(tl, eff if change.kind != "cancellation" else tl.service_end + ONE_DAY),
        "term": {"number": term.number, "start": term.start.isoformat(),
                 "end": min(term.end, tl.service_end).isoformat(), "months": term.months,
                 "uplift_pct": None if term.uplift_pct is None else dec_str(term.uplift_pct)},
        "terms": terms_view(tl),
        "change": {**change_summary(change), "modification": change.modification},
        "effective": eff.isoformat(), "modification": change.modification,
        "lines": [{**s.line.to_dict(), "from": s.start.isoformat(), "to": s.end.isoformat()} for s in in_force],
        "changed_lines": changed,
        "segments": segments_view(tl, cur, bday),
        **({"extensions": {k: _json(v) for k, v in tl.applied[0].extensions}} if tl.applied[0].extensions else {}),
        "voided_changes": [c.ref for c in tl.voided],
        "values": {"tcv": _money(vals.tcv, cur), "acv": _money(vals.acv, cur), "mrr": _money(vals.mrr, cur),
                   "one_time": _money(vals.one_time, cur)},
    }


EVENT_TYPES = {"activation": "contract.activated", "amendment": "contract.amended", "renewal": "contract.renewed",
               "cancellation": "contract.cancelled"}

# The contract event payload, version 1 (docs/events.md): required keys and their JSON types.
CONTRACT_KEYS: dict[str, tuple[type, ...]] = {
    "contract_id": (str,), "quote_id": (str,), "customer": (str,), "customer_id": (int,), "entity": (str,),
    "currency": (str,), "billing_day": (int,), "auto_renew": (bool,), "start": (str,), "service_end": (str,),
    "status": (str,), "term": (dict,), "terms": (list,), "change": (dict,), "effective": (str,), "lines": (list,),
    "changed_lines": (list,), "segments": (list,), "values": (dict,),
}
LINE_KEYS = ("line_id", "sku", "treatment", "tax_code", "price", "quantity", "discount_pct", "unit_amount",
             "period_amount", "ssp", "milestones", "performing_entity", "from", "to")
PRICE_KEYS = ("price_id", "model", "currency", "amount", "tiers", "package_size", "period", "timing", "metric",
              "aggregation")


def validate_contract_payload(payload: dict[str, Any]) -> None:
    """Raise ValueError naming every missing or mistyped field of a contract.* v1 payload."""
    problems = [f"{k}: missing or not {t[0].__name__}" for k, t in CONTRACT_KEYS.items()
                if not isinstance(payload.get(k), t) or (t == (int,) and isinstance(payload.get(k), bool))]
    for i, line in enumerate(payload.get("lines") or []):
        problems += [f"lines[{i}].{k}: missing" for k in LINE_KEYS if k not in line]
        problems += [f"lines[{i}].price.{k}: missing" for k in PRICE_KEYS if k not in (line.get("price") or {})]
    if problems:
        raise ValueError("; ".join(problems))


def _register_schemas() -> None:
    try:
        from closeloop.core.events import register_schema
    except ImportError:  # pragma: no cover - an outbox without schemas
        return
    for event_type in EVENT_TYPES.values():
        register_schema(event_type, validate_contract_payload, version=EVENT_VERSION)


_register_schemas()


def _record_change(uow: Any, header: dict[str, Any], changes: list[Change], change: Change) -> dict[str, Any]:
    """Validate a change against the whole log, store it, update the header and emit its event."""
    before = replay(changes) if changes else None
    tl = replay([*changes, change])
    cid = header["contract_id"]
    event_payload = _contract_payload(header, before, tl, change)
    event_id = uow.emit(EVENT_TYPES[change.kind], "contract", cid, event_payload, entity=header["entity"],
                        version=EVENT_VERSION)
    uow.execute(
        "INSERT INTO contracts_change (contract_id, seq, kind, ref, effective, modification, payload, source, actor,"
        " recorded_on, created_at, event_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (cid, change.seq, change.kind, change.ref, change.effective.isoformat(), change.modification,
         dumps(change.to_dict()), uow.source, uow.actor, change.recorded_on.isoformat(), uow.now(), event_id))
    through = max(c.effective for c in (*changes, change))
    uow.execute("UPDATE contracts_contract SET service_end = ?, cancelled_effective = ?, changes = ?, updated_at = ?,"
                " due_schedule = ?, changes_through = ? WHERE contract_id = ?",
                (tl.service_end.isoformat(), None if tl.cancelled is None else tl.cancelled.isoformat(), change.seq,
                 uow.now(), dumps(due_schedule(tl, int(header["billing_day"]))), through.isoformat(), cid))
    return {"event": event_payload, "timeline": tl}


# --------------------------------------------------------------------------- quote.accept


@payload
class QuoteAccept:
    quote_id: str
    contract_id: str


@command("quote.accept", QuoteAccept, roles=SALES_ROLES,
         summary="Accept (sign) an approved quote: it becomes a contract and contract.activated is emitted")
def quote_accept(uow: Any, cmd: QuoteAccept) -> dict[str, Any]:
    row = _quote_row(uow, cmd.quote_id, lock=True)
    if row["status"] == "accepted":
        raise ConflictError(f"quote {cmd.quote_id} is already accepted as contract {row['contract_id']}",
                            field="quote_id", record=cmd.quote_id)
    if not cmd.contract_id or len(cmd.contract_id) > 64 or any(c.isspace() for c in cmd.contract_id):
        raise ValidationError("a contract id is 1-64 characters without spaces", field="contract_id")
    version = _version(uow, cmd.quote_id, int(row["version"]))
    if not version["spec"].get("coterm") and uow.one("SELECT 1 FROM contracts_contract WHERE contract_id = ?",
                                                     (cmd.contract_id,)):
        raise ConflictError(f"contract {cmd.contract_id!r} already exists", field="contract_id",
                            record=cmd.contract_id)
    rules, covered = _rule_state(uow, cmd.quote_id, version)
    pending = _pending(rules, covered)
    if pending:
        changed = f" (changed since: {', '.join(version['changed'])})" if version["changed"] else ""
        raise ApprovalRequiredError(
            f"quote {cmd.quote_id} version {version['version']}{changed} needs approval: "
            + "; ".join(f"{r.id} by one of {', '.join(r.roles)}" for r in pending)
            + "; record it with quote.approve", field="quote_id", record=cmd.quote_id,
            pending=[r.id for r in pending], version=version["version"])
    quote = version["quote"]
    spec = QuoteSpec.from_dict(version["spec"])
    from closeloop.customers.service import get_customer

    customer = get_customer(uow, quote["customer"])
    lines = tuple(ContractLine.from_dict(x) for x in quote["lines"])
    start = date.fromisoformat(quote["start"])
    if spec.coterm:
        return _accept_coterm(uow, cmd, spec, version, lines, start)
    now = uow.now()
    header = {"contract_id": cmd.contract_id, "quote_id": cmd.quote_id, "quote_version": version["version"],
              "customer": customer.external_id, "customer_id": int(customer.id), "entity": quote["entity"],
              "currency": quote["currency"], "billing_day": int(quote["billing_day"]), "auto_renew": spec.auto_renew,
              "renewal_term_months": spec.renewal_term_months,
              "renewal_uplift_pct": None if spec.renewal_uplift_pct is None else dec_str(spec.renewal_uplift_pct),
              "opportunity": spec.opportunity}
    activation = Change(1, "activation", start, uow.today(), f"{cmd.contract_id}/activation", lines=lines,
                        term_months=spec.term_months,
                        extensions=extensions_of(quote.get("extensions")))
    tl = replay([activation])
    uow.execute(
        "INSERT INTO contracts_contract (contract_id, quote_id, quote_version, customer, customer_id, entity, currency,"
        " billing_day, auto_renew, renewal_term_months, renewal_uplift_pct, start, service_end, cancelled_effective,"
        " opportunity, changes, source, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,?,0,?,?,?)",
        (cmd.contract_id, cmd.quote_id, version["version"], customer.external_id, int(customer.id), quote["entity"],
         quote["currency"], int(quote["billing_day"]), spec.auto_renew, spec.renewal_term_months,
         header["renewal_uplift_pct"], start.isoformat(), tl.service_end.isoformat(), spec.opportunity, uow.source,
         now, now))
    _record_change(uow, header, [], activation)
    uow.execute("UPDATE contracts_quote SET status = 'accepted', contract_id = ?, updated_at = ? WHERE quote_id = ?",
                (cmd.contract_id, now, cmd.quote_id))
    uow.emit("quote.accepted", "quote", cmd.quote_id, {"quote_id": cmd.quote_id, "version": version["version"],
             "contract_id": cmd.contract_id, "customer": customer.external_id}, entity=quote["entity"])
    return contract_view(uow, cmd.contract_id, None)


def _accept_coterm(uow: Any, cmd: QuoteAccept, spec: QuoteSpec, version: dict[str, Any],
                   lines: tuple[ContractLine, ...], start: date) -> dict[str, Any]:
    """Accept a co-termed quote: its lines are added to the contract it co-terms with, from the quote's start to
    that contract's term end (an amendment; contract.amended is emitted)."""
    cid = str(spec.coterm)
    if cmd.contract_id != cid:
        raise ValidationError(f"quote {cmd.quote_id} co-terms with contract {cid}: accept it with contract_id {cid}"
                              " (its lines are added to that contract)", field="contract_id", record=cmd.quote_id)
    header = _contract_header(uow, cid, lock=True)
    _check_open(header, start, "extended by a co-termed quote")
    changes = _changes(uow, cid)
    tl = replay(changes)
    if not tl.start <= start <= tl.service_end:
        raise ValidationError(f"contract {cid} runs {tl.start}..{tl.service_end}; quote {cmd.quote_id} starts {start}",
                              field="start", record=cmd.quote_id)
    taken = [ln.line_id for ln in lines if ln.line_id in tl.line_order]
    if taken:
        raise ConflictError(f"contract {cid} already has line(s) {', '.join(taken)}; give the quote's lines new ids",
                            field="lines", record=cmd.quote_id)
    n_amend = sum(1 for c in changes if c.kind == "amendment") + 1
    change = Change(len(changes) + 1, "amendment", start, uow.today(), f"{cid}-A{n_amend}", modification="prospective",
                    lines=lines, reason=f"co-termed quote {cmd.quote_id}")
    _record_change(uow, header, changes, change)
    uow.execute("UPDATE contracts_quote SET status = 'accepted', contract_id = ?, updated_at = ? WHERE quote_id = ?",
                (cid, uow.now(), cmd.quote_id))
    uow.emit("quote.accepted", "quote", cmd.quote_id, {"quote_id": cmd.quote_id, "version": version["version"],
             "contract_id": cid, "customer": header["customer"], "coterm": True}, entity=header["entity"])
    return {**contract_view(uow, cid, start), "amendment": change_summary(change), "coterm": True}


# --------------------------------------------------------------------------- contract.amend


@payload
class LineChangeIn:
    line_id: str
    quantity: Decimal | None = None
    price_id: str | None = None
    unit_amount: Decimal | None = None
    discount_pct: Decimal | None = None
    remove: bool = False


@payload
class ContractAmend:
    contract_id: str
    effective: str
    changes: tuple[LineChangeIn, ...] = ()
    add: tuple[QuoteLineIn, ...] | None = None
    modification: str = "prospective"
    amendment_id: str | None = None
    reason: str | None = None


def _check_open(header: dict[str, Any], effective: date, what: str) -> None:
    cancelled = header["cancelled_effective"]
    if cancelled is not None and effective.isoformat() >= cancelled:
        raise ConflictError(f"contract {header['contract_id']} is cancelled effective {cancelled}; a cancelled"
                            f" contract cannot be {what}", field="contract_id", record=header["contract_id"],
                            cancelled_effective=cancelled)


def _line_update(uow: Any, ch: LineChangeIn, line: ContractLine, where: str, problems: list[Problem]) -> LineUpdate:
    def bad(f: str, reason: str) -> None:
        problems.append(Problem(f"{where}.{f}" if f else where, reason))

    given = [n for n in ("quantity", "price_id", "unit_amount", "discount_pct") if getattr(ch, n) is not None]
    if ch.remove:
        if given:
            bad("remove", f"a removed line takes no other change ({', '.join(given)})")
        return LineUpdate(ch.line_id, remove=True)
    if not given:
        bad("", f"line {ch.line_id}: give quantity, price_id, unit_amount, discount_pct or remove")
    if not line.recurring:
        bad("line_id", f"line {ch.line_id} is a one-time charge; it cannot be amended (add a new line instead)")
    price = product = None
    terms = line.list_terms
    if ch.price_id is not None:
        p = get_price(uow, ch.price_id, field=f"{where}.price_id", record=ch.line_id)
        prod = get_product(uow, p.sku, field=f"{where}.price_id", record=ch.line_id)
        if not p.active:
            bad("price_id", f"price {p.price_id} is inactive")
        if not prod.active:
            bad("price_id", f"product {prod.sku} is inactive")
        if p.terms.currency != line.currency:
            bad("price_id", f"price {p.price_id} is in {p.terms.currency}; the contract is in {line.currency}")
        if prod.treatment != line.product.treatment:
            bad("price_id", f"product {prod.sku} is recognised {prod.treatment}, the line {line.product.treatment};"
                            " remove the line and add a new one")
        if not p.terms.recurring:
            bad("price_id", "a recurring line cannot change to a one-time price")
        price, terms = p.terms, p.terms
        product = ProductRef(prod.sku, prod.name, prod.treatment, prod.tax_code, prod.revenue_role, prod.family)
    q = ch.quantity
    if q is not None and (q < 0 or (q == 0 and not terms.metered)):
        bad("quantity", f"must be above zero ({q}); remove the line instead")
    new_q = q if q is not None else line.quantity
    if not terms.metered and terms.model == "flat" and new_q != 1:
        bad("quantity", "a flat price charges a fixed amount; quantity must be 1")
    if ch.unit_amount is not None:
        if not terms.has_unit_amount:
            bad("unit_amount", f"a {terms.model} price has no single unit amount to replace")
        elif ch.unit_amount < 0:
            bad("unit_amount", f"must not be negative ({ch.unit_amount})")
    if ch.discount_pct is not None and not 0 <= ch.discount_pct <= 100:
        bad("discount_pct", f"must be between 0 and 100 ({ch.discount_pct})")
    update = LineUpdate(ch.line_id, quantity=q, price=price, product=product, unit_amount=ch.unit_amount,
                        discount_pct=ch.discount_pct)
    if given and not problems and update.apply(line) == line:
        bad("", f"line {ch.line_id}: the change leaves the line as it is")
    return update


@command("contract.amend", ContractAmend, roles=CONTRACT_ROLES,
         summary="Amend a contract from an effective date: quantities, prices, added and removed lines")
def contract_amend(uow: Any, cmd: ContractAmend) -> dict[str, Any]:
    header = _contract_header(uow, cmd.contract_id, lock=True)
    cid = cmd.contract_id
    effective = parse_date(cmd.effective, field="effective")
    _check_open(header, effective, "amended")
    changes = _changes(uow, cid)
    tl = replay(changes)
    if effective < tl.start:
        raise ValidationError(f"contract {cid} starts {tl.start}; an amendment effective {effective} is before it",
                              field="effective", record=cid, start=tl.start.isoformat())
    if effective > tl.service_end:
        raise ValidationError(f"contract {cid} ends {tl.service_end}; an amendment effective {effective} is after"
                              " it (renew the contract first)", field="effective", record=cid,
                              end=tl.service_end.isoformat())
    if cmd.modification not in MODIFICATIONS:
        raise ValidationError(f"modification {cmd.modification!r} must be one of {', '.join(MODIFICATIONS)}",
                              field="modification")
    if not cmd.changes and not cmd.add:
        raise ValidationError(f"amendment of {cid}: give changes or lines to add", field="changes", record=cid)
    in_force = {s.line.line_id: s.line for s in tl.segments_on(effective)}
    problems: list[Problem] = []
    updates = []
    seen: set[str] = set()
    for i, ch in enumerate(cmd.changes):
        where = f"changes[{i}]"
        if ch.line_id in seen:
            problems.append(Problem(f"{where}.line_id", f"line {ch.line_id} is changed twice"))
            continue
        seen.add(ch.line_id)
        line = in_force.get(ch.line_id)
        if line is None:
            known = ", ".join(in_force) or "none"
            raise NotFoundError(f"contract {cid}: line {ch.line_id!r} is not in force on {effective}"
                                f" (lines in force: {known})", field=f"{where}.line_id", record=ch.line_id)
        updates.append(_line_update(uow, ch, line, where, problems))
    raise_problems(problems, f"amendment of {cid}")
    added: tuple[ContractLine, ...] = ()
    for i, x in enumerate(cmd.add or ()):
        if x.line_id in tl.line_order:
            raise ConflictError(f"contract {cid} already has a line {x.line_id!r}; give the added line a new line_id",
                                field=f"add[{i}].line_id", record=x.line_id)
    if cmd.add:
        term = tl.term_on(effective)
        added = price_lines(uow, [line_spec(x) for x in cmd.add], currency=header["currency"],
                            entity=header["entity"], start=effective, term_last=min(term.end, tl.service_end),
                            term_months=None, billing_day=int(header["billing_day"]), contract_start=tl.start,
                            prefix="add", record=f"amendment of {cid}", taken=tl.line_order)
    require_owner(uow, "contract", cid, {"lines": ([], [u.to_dict() for u in updates] + [a.line_id for a in added])},
                  entity=header["entity"])
    seq = len(changes) + 1
    n_amend = sum(1 for c in changes if c.kind == "amendment") + 1
    ref = cmd.amendment_id or f"{cid}-A{n_amend}"
    if any(c.ref == ref for c in changes):
        raise ConflictError(f"contract {cid} already has an amendment {ref!r}", field="amendment_id", record=ref)
    change = Change(seq, "amendment", effective, uow.today(), ref, modification=cmd.modification,
                    lines=added, updates=tuple(updates), reason=cmd.reason)
    out = _record_change(uow, header, changes, change)
    return {**contract_view(uow, cid, effective), "amendment": change_summary(change),
            "changed_lines": [{"line_id": c["line_id"], "action": c["action"]} for c in out["event"]["changed_lines"]]}


# --------------------------------------------------------------------------- contract.renew / renewals.run


@payload
class ContractRenew:
    contract_id: str
    term_months: int
    uplift_pct: Decimal | None = None
    reason: str | None = None


def renew(uow: Any, header: dict[str, Any], changes: list[Change], term_months: int, uplift: Decimal,
          reason: str | None) -> dict[str, Any]:
    cid = header["contract_id"]
    if term_months < 1:
        raise ValidationError(f"a renewal term must be at least 1 month ({term_months})", field="term_months",
                              record=cid)
    if uplift <= -100:
        raise ValidationError(f"uplift_pct {uplift} must be above -100", field="uplift_pct", record=cid)
    tl = replay(changes)
    if tl.cancelled is not None:
        raise ConflictError(f"contract {cid} is cancelled effective {tl.cancelled}; a cancelled contract cannot"
                            " be renewed", field="contract_id", record=cid)
    effective = tl.service_end + ONE_DAY
    n = sum(1 for c in changes if c.kind == "renewal") + 1
    change = Change(len(changes) + 1, "renewal", effective, uow.today(), f"{cid}-R{n}", term_months=term_months,
                    uplift_pct=uplift, reason=reason)
    return _record_change(uow, header, changes, change)


@command("contract.renew", ContractRenew, roles=CONTRACT_ROLES,
         summary="Renew a contract for a new term from the day after it ends, with an optional uplift")
def contract_renew(uow: Any, cmd: ContractRenew) -> dict[str, Any]:
    header = _contract_header(uow, cmd.contract_id, lock=True)
    changes = _changes(uow, cmd.contract_id)
    tl = replay(changes)
    require_owner(uow, "contract", cmd.contract_id, {"end": (tl.service_end.isoformat(), "renewed")},
                  entity=header["entity"])
    out = renew(uow, header, changes, cmd.term_months, cmd.uplift_pct if cmd.uplift_pct is not None else Decimal(0),
                cmd.reason)
    new_term = out["timeline"].terms[-1]
    return {**contract_view(uow, cmd.contract_id, new_term.start),
            "renewal": {"term": new_term.number, "start": new_term.start.isoformat(), "end": new_term.end.isoformat(),
                        "uplift_pct": dec_str(new_term.uplift_pct or Decimal(0))}}


@payload
class RenewalsRun:
    as_of: str
    contract_id: str | None = None
    dry_run: bool = False


@command("renewals.run", RenewalsRun, roles=CONTRACT_ROLES,
         summary="Renew every auto-renewing contract whose term has ended by as_of (with the configured uplift)")
def renewals_run(uow: Any, cmd: RenewalsRun) -> dict[str, Any]:
    as_of = parse_date(cmd.as_of, field="as_of")
    pol = policy()
    horizon = (as_of + timedelta(days=int(pol["days_before_end"])) - ONE_DAY).isoformat()
    sql = ("SELECT contract_id FROM contracts_contract WHERE auto_renew = ? AND cancelled_effective IS NULL"
           " AND service_end <= ?")
    params: list[Any] = [True, horizon]
    if cmd.contract_id:
        sql += " AND contract_id = ?"
        params.append(cmd.contract_id)
    renewed = []
    for (cid,) in uow.all(sql + " ORDER BY contract_id", params):
        header = _contract_header(uow, cid, lock=True)
        changes = _changes(uow, cid)
        while True:
            tl = replay(changes)
            if tl.cancelled is not None or tl.service_end.isoformat() > horizon:
                break
            months = header["renewal_term_months"] or pol["term_months"] or tl.terms[-1].months
            uplift = Decimal(header["renewal_uplift_pct"]) if header["renewal_uplift_pct"] is not None \
                else Decimal(pol["uplift_pct"])
            start = tl.service_end + ONE_DAY
            item = {"contract_id": cid, "term": len(tl.terms) + 1, "start": start.isoformat(),
                    "end": term_end(start, int(months)).isoformat(), "months": int(months),
                    "uplift_pct": dec_str(uplift)}
            renewed.append(item)
            if cmd.dry_run:
                break
            renew(uow, header, changes, int(months), uplift, "auto-renewal")
            changes = _changes(uow, cid)
    return {"as_of": as_of.isoformat(), "dry_run": cmd.dry_run, "count": len(renewed), "renewed": renewed}


# --------------------------------------------------------------------------- contract.cancel


@payload
class ContractCancel:
    contract_id: str
    effective: str
    reason: str | None = None


@command("contract.cancel", ContractCancel, roles=CONTRACT_ROLES,
         summary="Cancel a contract: effective is the first day without service")
def contract_cancel(uow: Any, cmd: ContractCancel) -> dict[str, Any]:
    header = _contract_header(uow, cmd.contract_id, lock=True)
    cid = cmd.contract_id
    effective = parse_date(cmd.effective, field="effective")
    if header["cancelled_effective"] is not None:
        raise ConflictError(f"contract {cid} is already cancelled effective {header['cancelled_effective']}",
                            field="contract_id", record=cid, cancelled_effective=header["cancelled_effective"])
    changes = _changes(uow, cid)
    tl = replay(changes)
    if effective < tl.start:
        raise ValidationError(f"contract {cid} starts {tl.start}; a cancellation effective {effective} is before"
                              " it", field="effective", record=cid)
    if effective > tl.service_end + ONE_DAY:
        raise ValidationError(f"contract {cid} ends {tl.service_end}; a cancellation effective {effective} is after"
                              " it", field="effective", record=cid)
    require_owner(uow, "contract", cid, {"end": (tl.service_end.isoformat(), (effective - ONE_DAY).isoformat()),
                                         "status": ("active", "cancelled")}, entity=header["entity"])
    change = Change(len(changes) + 1, "cancellation", effective, uow.today(), f"{cid}/cancellation",
                    reason=cmd.reason)
    out = _record_change(uow, header, changes, change)
    view = contract_view(uow, cid, effective)
    return {**view, "cancellation": {"effective": effective.isoformat(),
                                     "last_day_of_service": out["timeline"].service_end.isoformat(),
                                     "voided_changes": [c.ref for c in out["timeline"].voided]}}


# --------------------------------------------------------------------------- contract queries


def contract_view(uow: Any, contract_id: str, as_of: date | None) -> dict[str, Any]:
    """The contract as it stood on ``as_of`` (default today): the changes effective by then applied."""
    header = _contract_header(uow, contract_id)
    changes = _changes(uow, contract_id)
    day = as_of or uow.today()
    full = replay(changes)
    tl = replay(changes, day)
    cur = header["currency"]
    bday = int(header["billing_day"])
    view_day = tl.view_day(day)
    term = tl.term_on(view_day)
    vals = values(tl, day, bday)
    applied = {c.seq for c in tl.applied}
    return {
        **_summary(contract_id, header, tl, day, vals),
        "as_of": day.isoformat(), "term_months": term.months, "contract_start": tl.start.isoformat(),
        "service_end": tl.service_end.isoformat(), "customer_id": header["customer_id"], "billing_day": bday,
        "quote_id": header["quote_id"], "arr": _money(vals.mrr * 12, cur), "one_time": _money(vals.one_time, cur),
        "lines": lines_view(tl.segments_on(view_day), cur),
        "terms": terms_view(tl),
        "amendments": [change_summary(c) for c in changes if c.kind == "amendment"],
        "changes": [change_summary(c) for c in changes],
        "pending_changes": [change_summary(c) for c in changes if c.seq not in applied
                            and c not in full.voided],
        "voided_changes": [c.ref for c in full.voided],
        "cancelled_effective": header["cancelled_effective"],
    }


def _summary(contract_id: str, header: Mapping[str, Any], tl: Timeline, day: date, vals: Values | None = None
             ) -> dict[str, Any]:
    """What a list of contracts shows of one: status, current term and values on ``day``."""
    cur = header["currency"]
    term = tl.term_on(tl.view_day(day))
    vals = vals or values(tl, day, int(header["billing_day"]))
    return {"contract_id": contract_id, "customer": header["customer"], "entity": header["entity"], "currency": cur,
            "status": status_on(tl, day), "start": term.start.isoformat(),
            "end": min(term.end, tl.service_end).isoformat(), "term": term.number,
            "tcv": _money(vals.tcv, cur), "acv": _money(vals.acv, cur), "mrr": _money(vals.mrr, cur),
            "auto_renew": bool(header["auto_renew"])}


@payload
class ContractQuery:
    contract_id: str
    as_of: str | None = None


@query("contract", ContractQuery, summary="A contract as of a date: status, term, TCV/ACV/MRR, lines, amendments")
def contract_query(uow: Any, q: ContractQuery) -> dict[str, Any]:
    return contract_view(uow, q.contract_id, parse_date(q.as_of, field="as_of") if q.as_of else None)


@payload
class ContractsQuery:
    customer: str | None = None
    status: str | None = None
    entity: str | None = None
    as_of: str | None = None


@query("contracts", ContractsQuery, summary="Contracts (by customer, entity, status as of a date) with their values")
def contracts_query(uow: Any, q: ContractsQuery) -> dict[str, Any]:
    where = " WHERE 1 = 1"
    params: list[Any] = []
    if q.customer:
        from closeloop.customers.service import get_customer

        where += " AND customer_id = ?"
        params.append(get_customer(uow, q.customer).id)
    if q.entity:
        where += " AND entity = ?"
        params.append(q.entity)
    day = parse_date(q.as_of, field="as_of") if q.as_of else uow.today()
    headers = {r["contract_id"]: r for r in uow.dicts(
        f"SELECT contract_id, customer, entity, currency, billing_day, auto_renew FROM contracts_contract{where}",
        params)}
    # every change log in one pass (in contract order, streamed): one replay per contract, no query per contract
    rows = uow.execute("SELECT contract_id, payload FROM contracts_change WHERE contract_id IN (SELECT contract_id"
                       f" FROM contracts_contract{where}) ORDER BY contract_id, seq", params)
    items = []
    for cid, group in groupby((r for batch in iter(lambda: rows.fetchmany(5_000), []) for r in batch),
                              key=lambda r: r[0]):
        tl = replay([Change.from_dict(json.loads(r[1])) for r in group], day)
        item = _summary(cid, headers[cid], tl, day)
        if not q.status or item["status"] == q.status:
            items.append(item)
    return {"count": len(items), "items": items}


@payload
class ContractHistoryQuery:
    contract_id: str


@query("contract_history", ContractHistoryQuery, summary="Every change of a contract, with who, when and its event")
def contract_history(uow: Any, q: ContractHistoryQuery) -> dict[str, Any]:
    _contract_header(uow, q.contract_id)
    rows = uow.all("SELECT seq, payload, source, actor, created_at, event_id FROM contracts_change"
                   " WHERE contract_id = ? ORDER BY seq", (q.contract_id,))
    full = replay([Change.from_dict(json.loads(r[1])) for r in rows])
    voided = {c.seq for c in full.voided}
    items = [{**change_summary(Change.from_dict(json.loads(r[1]))), "source": r[2], "actor": r[3], "at": r[4],
              "event_id": r[5], "void": int(r[0]) in voided} for r in rows]
    return {"contract_id": q.contract_id, "count": len(items), "items": items}


# --------------------------------------------------------------------------- customer merges, access control


def _repoint(uow: Any, merged_id: int, survivor_id: int) -> list[str]:
    from closeloop.customers.service import customer_by_id

    survivor = customer_by_id(uow, survivor_id).external_id
    ids = [f"quote:{r[0]}" for r in uow.all("SELECT quote_id FROM contracts_quote WHERE customer_id = ?", (merged_id,))]
    ids += [f"contract:{r[0]}" for r in uow.all("SELECT contract_id FROM contracts_contract WHERE customer_id = ?",
                                                (merged_id,))]
    uow.execute("UPDATE contracts_quote SET customer_id = ?, customer = ? WHERE customer_id = ?",
                (survivor_id, survivor, merged_id))
    uow.execute("UPDATE contracts_contract SET customer_id = ?, customer = ? WHERE customer_id = ?",
                (survivor_id, survivor, merged_id))
    return ids


def _restore(uow: Any, merged_id: int, survivor_id: int, ids: Any) -> None:
    from closeloop.customers.service import customer_by_id

    merged = customer_by_id(uow, merged_id).external_id
    for ref in ids:
        kind, _, key = str(ref).partition(":")
        table, column = ("contracts_quote", "quote_id") if kind == "quote" else ("contracts_contract", "contract_id")
        uow.execute(f"UPDATE {table} SET customer_id = ?, customer = ? WHERE {column} = ? AND customer_id = ?",
                    (merged_id, merged, key, survivor_id))


def _new_references(uow: Any, survivor_id: int, since: str) -> int:
    return int(uow.scalar("SELECT COUNT(*) FROM contracts_quote WHERE customer_id = ? AND created_at >= ?",
                          (survivor_id, since)) or 0) + int(uow.scalar(
        "SELECT COUNT(*) FROM contracts_contract WHERE customer_id = ? AND created_at >= ?", (survivor_id, since)) or 0)


def _register_hooks() -> None:
    from closeloop.customers.service import register_reference_holder

    register_reference_holder("contracts", _repoint, restore=_restore, new_references=_new_references)
    try:
        from closeloop.auth.authorizer import maker_checker, record_entity
    except ImportError:  # pragma: no cover - the auth area is optional
        return

    @record_entity("quote_id")
    def _quote_entity(uow: Any, value: Any) -> str | None:
        row = uow.one("SELECT entity FROM contracts_quote WHERE quote_id = ?", (str(value),))
        if row is None:
            raise NotFoundError(f"quote {value!r} does not exist", field="quote_id")
        return str(row[0])

    @record_entity("contract_id")
    def _contract_entity(uow: Any, value: Any) -> str | None:
        row = uow.one("SELECT entity FROM contracts_contract WHERE contract_id = ?", (str(value),))
        if row is None:
            raise NotFoundError(f"contract {value!r} does not exist", field="contract_id")
        return str(row[0])

    @maker_checker("quote.approve")
    def _quote_maker(uow: Any, cmd: Any) -> str | None:
        """Where the selling entity turns maker-checker on, whoever last changed a quote may not approve it."""
        row = uow.one("SELECT q.entity, v.actor FROM contracts_quote q JOIN contracts_quote_version v"
                      " ON v.quote_id = q.quote_id AND v.version = q.version WHERE q.quote_id = ?", (cmd.quote_id,))
        if row is None or not get_entity(uow, row[0]).maker_checker:
            return None
        return str(row[1])


_register_hooks()
