"""Posting: apply the active rule version to each money-moving event and post through the ledger.

Every event type the catalogue marks ``moves_money`` is handled here exactly once (the
dispatcher's delivery record). The rule version in force on the event's date is applied;
amounts in another currency are converted to the entity's functional currency at the
event date. An event that cannot be posted (no rule, unknown account, closed period, no FX
rate, an unbalanced payload) becomes an ``unposted_event`` exception, never a silent skip;
``exception.resolve`` with ``retry`` posts it once the cause is fixed.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from closeloop.core.entities import get_entity, list_entities
from closeloop.core.errors import (
    CloseloopError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)
from closeloop.core.events import EVENT_COLUMNS, Event, event_from_row, handles, handles_batch
from closeloop.core.exception_queue import close_exception, on_resolve, open_exception
from closeloop.core.fx import convert
from closeloop.core.money import allocate
from closeloop.core.periods import parse_date
from closeloop.core.registry import command, payload, query
from closeloop.ledger.model import EntryDraft, LineDraft, convert_balanced
from closeloop.ledger.service import accounts, post_entries
from closeloop.posting.model import EventSchema, RuleSet, parse_catalogue, parse_rules, plan


@lru_cache(maxsize=1)
def catalogue() -> dict[str, EventSchema]:
    text = (resources.files("closeloop") / "config" / "event_catalogue.yaml").read_text()
    return parse_catalogue(yaml.safe_load(text))


@lru_cache(maxsize=1)
def shipped_rules() -> RuleSet:
    text = (resources.files("closeloop") / "config" / "posting_rules.yaml").read_text()
    rules, problems = parse_rules(yaml.safe_load(text), catalogue())
    if rules is None:
        raise RuntimeError("config/posting_rules.yaml is invalid:\n  " + "\n  ".join(problems))
    return rules


def _approved_versions(uow: Any) -> list[RuleSet]:
    def load() -> list[RuleSet]:
        out = []
        for body, in uow.all("SELECT body FROM posting_rule_version WHERE status = 'approved' ORDER BY version"):
            rules, _ = parse_rules(yaml.safe_load(body), catalogue())
            if rules is not None:
                out.append(rules)
        return out

    return uow.cached("posting_rules", "approved", load)  # type: ignore[no-any-return]


def rules_on(uow: Any, day: str) -> RuleSet:
    """The rule version in force on ``day``: the highest approved version effective by then."""
    candidates = [shipped_rules(), *_approved_versions(uow)]
    live = [r for r in candidates if r.effective_from <= day]
    return max(live or [shipped_rules()], key=lambda r: r.version)


# ----------------------------------------------------------------------------- posting an event


def event_date(ev: Event) -> str:
    day = ev.payload.get("date")
    return str(day) if day else ev.occurred_at[:10]


def drafts_for(uow: Any, ev: Event) -> list[EntryDraft]:
    """The journal entries an event produces under the rules in force on its date (pure apart from lookups)."""
    rules = rules_on(uow, event_date(ev))
    templates = rules.rules.get(ev.type)
    if templates is None:
        raise NotFoundError(f"no posting rule for event type {ev.type} in rule version {rules.version}",
                            field="type", record=str(ev.id))
    drafts = []
    for template in templates:
        try:
            planned = plan(template, ev.payload, lambda code: get_entity(uow, code).currency)
        except KeyError as exc:
            raise ValidationError(f"event {ev.id} ({ev.type}): {exc}", record=str(ev.id)) from None
        if planned is None or not planned.lines:
            continue
        drafts.append(_to_draft(uow, planned, ev))
    return drafts


def _to_draft(uow: Any, planned: Any, ev: Event) -> EntryDraft:
    ent = get_entity(uow, planned.entity)
    functional = ent.currency
    day = planned.date
    accts = accounts(uow, ent.code)
    for i, line in enumerate(planned.lines):
        if line.role not in accts:
            raise NotFoundError(f"event {ev.id} ({ev.type}): role {line.role!r} maps to no account in {ent.code}",
                                field=f"lines[{i}].role", record=str(ev.id))
    converted = [line.amount for line in planned.lines]
    foreign = [i for i, line in enumerate(planned.lines)
               if not line.in_functional and planned.currency != functional]
    if foreign and any(planned.lines[i].rate != "spot" for i in foreign):
        converted = _convert_with_carrying(uow, ent.code, planned, foreign, converted, accts, day, functional)
    elif foreign:
        # the document-currency lines balance among themselves: convert them as a balanced set
        values = convert_balanced([planned.lines[i].amount for i in foreign],
                                  lambda minor: convert(uow, minor, planned.currency, functional, day))
        for i, value in zip(foreign, values, strict=True):
            converted[i] = value
    drafts = []
    for line, amount in zip(planned.lines, converted, strict=True):
        if line.in_functional or planned.currency == functional:
            cur, txn = (line.txn_currency, 0) if line.txn_currency and line.txn_currency != functional else (None, None)
        else:
            cur, txn = planned.currency, line.amount
        drafts.append(LineDraft(account=accts[line.role].code, amount=amount, currency=cur, txn_amount=txn,
                                memo=line.memo, dimensions=line.dimensions))
    lines = tuple(drafts)
    reference = next((str(ev.payload[k]) for k in ("invoice", "credit_memo", "payment", "payout", "run")
                      if ev.payload.get(k)), None)
    return EntryDraft(entity=ent.code, date=day, memo=planned.memo, lines=lines, manual=False,
                      reference=f"{ev.type}:{reference}" if reference else f"{ev.type}:{ev.id}")


def _convert_with_carrying(uow: Any, entity: str, planned: Any, foreign: list[int], converted: list[int],
                           accts: dict[str, Any], day: str, functional: str) -> list[int]:
    """Lines with ``rate: carrying`` relieve the account's balance in the document currency at the rate
    it is carried at (its functional amount over its transaction amount: exact when it is relieved in
    full), other lines convert at the day's rate, and ``rate: balance`` lines take the difference,
    allocated in proportion to their amounts, so the entry balances in the functional currency."""
    out = list(converted)
    balancing = [i for i in foreign if planned.lines[i].rate == "balance"]
    carrying: dict[str, list[int]] = {}
    for i in foreign:
        line = planned.lines[i]
        if line.rate == "carrying":
            carrying.setdefault(line.role, []).append(i)
        elif line.rate == "spot":
            out[i] = convert(uow, line.amount, planned.currency, functional, day)
    for role, index in carrying.items():
        # all lines of the entry that relieve one account's bucket together: its share of the carried
        # amount, allocated back to the lines (exact when the bucket is relieved in full)
        row = uow.one("SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(txn_amount), 0) FROM ledger_balance"
                      " WHERE entity = ? AND account_id = ? AND currency = ?",
                      (entity, accts[role].id, planned.currency))
        carried, txn = int(row[0]), int(row[1])
        relief = sum(planned.lines[i].amount for i in index)
        if txn and carried and (txn > 0) == (carried > 0) and relief and (relief > 0) != (txn > 0) \
                and abs(relief) <= abs(txn):
            total = -round_fraction_half_up(carried * -relief, txn)
            weights = [abs(planned.lines[i].amount) for i in index]
            for i, part in zip(index, allocate(total, weights), strict=True):
                out[i] = part
        else:
            for i in index:
                out[i] = convert(uow, planned.lines[i].amount, planned.currency, functional, day)
    rest = -sum(out[i] for i in range(len(out)) if i not in balancing)
    weights = [abs(planned.lines[i].amount) for i in balancing]
    if balancing and sum(weights):
        for i, part in zip(balancing, allocate(rest, weights), strict=True):
            out[i] = part
    return out


def round_fraction_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half away from zero, in integers."""
    sign = -1 if (numerator < 0) != (denominator < 0) else 1
    q, r = divmod(abs(numerator), abs(denominator))
    return sign * (q + (1 if 2 * r >= abs(denominator) else 0))


def post_event(uow: Any, ev: Event) -> None:
    """The posting handler: post the event's entries, or record why it cannot be posted."""
    parse_date(event_date(ev), field="date", record=str(ev.id))
    try:
        with uow.savepoint():
            drafts = drafts_for(uow, ev)
            post_entries(uow, drafts, event_id=ev.id)
    except CloseloopError as err:
        open_exception(
            uow, "unposted_event", record_type="event", record_id=str(ev.id),
            message=f"{ev.type} {ev.aggregate_id} could not be posted: {err.message}",
            entity=ev.payload.get("entity"), details={"event_type": ev.type, "code": str(err.code),
                                                      "error": err.message, "aggregate": ev.aggregate_id},
            dedup_key=f"unposted:{ev.id}",
        )


def post_events(uow: Any, events: list[Event]) -> None:
    """The batch form of :func:`post_event`: every event's entries in one ``post_entries`` call.

    Any problem (an event that cannot be posted) raises, so the dispatcher undoes the batch and
    delivers the events one by one, where each refusal becomes its own unposted_event exception."""
    start = 0
    while start < len(events):
        actor = events[start].actor
        end = start
        while end < len(events) and events[end].actor == actor:
            end += 1
        uow.actor = actor
        drafts: list[EntryDraft] = []
        ids: list[int | None] = []
        for ev in events[start:end]:
            parse_date(event_date(ev), field="date", record=str(ev.id))
            if _reads_balances(uow, ev):
                # its conversion reads the ledger: post what came before, then this event alone
                post_entries(uow, drafts, event_ids=ids)
                drafts, ids = [], []
                post_entries(uow, drafts_for(uow, ev), event_id=ev.id)
                continue
            for draft in drafts_for(uow, ev):
                drafts.append(draft)
                ids.append(ev.id)
        post_entries(uow, drafts, event_ids=ids)
        start = end


def _reads_balances(uow: Any, ev: Event) -> bool:
    """Does posting this event read ledger balances (a carrying-rate conversion of a foreign document)?"""
    rules = rules_on(uow, event_date(ev)).rules.get(ev.type, ())
    if not any(line.rate == "carrying" for template in rules for line in template.lines):
        return False
    entity = ev.payload.get("entity")
    return bool(entity) and ev.payload.get("currency") != get_entity(uow, str(entity)).currency


for _type, _schema in catalogue().items():
    if _schema.moves_money:
        handles(_type, "posting")(post_event)
        handles_batch(_type, "posting")(post_events)


@on_resolve("unposted_event", "retry")
def _retry_posting(uow: Any, item: dict[str, Any], cmd: Any) -> dict[str, Any]:
    event_id = int(item["record"]["event"])
    row = uow.one(f"SELECT {EVENT_COLUMNS} FROM event WHERE id = ?", (event_id,))
    if row is None:
        raise NotFoundError(f"event {event_id} no longer exists", field="exception")
    ev = event_from_row(row)
    if uow.one("SELECT 1 FROM journal_entry WHERE event_id = ?", (event_id,)):
        return {"posted": "already"}
    posted = post_entries(uow, drafts_for(uow, ev), event_id=ev.id)  # a refusal here keeps the exception open
    return {"posted": [p.number for p in posted]}


# ----------------------------------------------------------------------------- rule versions


@payload
class PostingRulesPropose:
    body: str
    reason: str


@command("posting_rules.propose", PostingRulesPropose, roles=("controller", "admin"),
         summary="Propose a new posting-rule version (YAML); it needs a second person's approval")
def posting_rules_propose(uow: Any, cmd: PostingRulesPropose) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(cmd.body)
    except yaml.YAMLError as exc:
        raise ValidationError(f"posting rules are not valid YAML: {exc}", field="body") from None
    rules, problems = parse_rules(doc, catalogue())
    if rules is not None:
        for ent in list_entities(uow):
            known = accounts(uow, ent.code)
            for event_type, templates in rules.rules.items():
                for t in templates:
                    for line in t.lines:
                        roles = [line.role] if line.role and "{" not in line.role else (
                            [r for _, r in line.role_by[1]] + ([line.role_by[2]] if line.role_by[2] else [])
                            if line.role_by else [])
                        problems.extend(f"rules.{event_type}: role {r} has no account in entity {ent.code}"
                                        for r in roles if r not in known)
    if problems:
        raise ValidationError(f"posting rules refused: {len(problems)} problem(s): " + "; ".join(problems),
                              field="body", errors=problems)
    assert rules is not None
    current = max([shipped_rules().version, *[int(v) for v, in uow.all("SELECT version FROM posting_rule_version")]])
    if rules.version <= current:
        raise ConflictError(f"version {rules.version} is not above the latest version {current}", field="version")
    uow.execute(
        "INSERT INTO posting_rule_version (version, effective_from, body, status, reason, proposed_by, proposed_at)"
        " VALUES (?,?,?,'proposed',?,?,?)",
        (rules.version, rules.effective_from, cmd.body, cmd.reason, uow.actor, uow.now()))
    uow.emit("posting_rules.proposed", "posting_rules", str(rules.version),
             {"version": rules.version, "effective_from": rules.effective_from, "proposed_by": uow.actor,
              "reason": cmd.reason})
    return {"version": rules.version, "effective_from": rules.effective_from, "status": "proposed"}


@payload
class PostingRulesDecide:
    version: int
    approver: str | None = None
    reason: str | None = None


def _decide(uow: Any, cmd: PostingRulesDecide, status: str) -> dict[str, Any]:
    row = uow.one("SELECT status, proposed_by, effective_from FROM posting_rule_version WHERE version = ?",
                  (cmd.version,))
    if row is None:
        raise NotFoundError(f"posting-rule version {cmd.version} was never proposed", field="version")
    if row[0] != "proposed":
        raise ConflictError(f"posting-rule version {cmd.version} is already {row[0]}", field="version")
    approver = cmd.approver or uow.actor
    if approver == row[1]:
        raise ForbiddenError(f"posting-rule version {cmd.version} was proposed by {row[1]}; a second person must"
                             f" {'approve' if status == 'approved' else 'reject'} it", field="approver")
    uow.execute("UPDATE posting_rule_version SET status = ?, decided_by = ?, decided_at = ? WHERE version = ?",
                (status, approver, uow.now(), cmd.version))
    uow.invalidate("posting_rules", "approved")
    uow.emit(f"posting_rules.{status}", "posting_rules", str(cmd.version),
             {"version": cmd.version, "decided_by": approver, "reason": cmd.reason})
    return {"version": cmd.version, "status": status, "effective_from": row[2], "decided_by": approver}


@command("posting_rules.approve", PostingRulesDecide, roles=("controller", "admin"),
         summary="Approve a proposed posting-rule version (not by its proposer)")
def posting_rules_approve(uow: Any, cmd: PostingRulesDecide) -> dict[str, Any]:
    return _decide(uow, cmd, "approved")


@command("posting_rules.reject", PostingRulesDecide, roles=("controller", "admin"),
         summary="Reject a proposed posting-rule version")
def posting_rules_reject(uow: Any, cmd: PostingRulesDecide) -> dict[str, Any]:
    return _decide(uow, cmd, "rejected")


@payload
class PostingRulesQuery:
    as_of: str | None = None


@query("posting_rules", PostingRulesQuery, summary="The posting-rule version in force and every proposal")
def posting_rules(uow: Any, q: PostingRulesQuery) -> dict[str, Any]:
    day = q.as_of or uow.today().isoformat()
    live = rules_on(uow, day)
    versions = [{"version": shipped_rules().version, "effective_from": shipped_rules().effective_from,
                 "status": "shipped", "proposed_by": None, "decided_by": None}]
    for version, eff, status, by, decided in uow.all(
            "SELECT version, effective_from, status, proposed_by, decided_by FROM posting_rule_version"
            " ORDER BY version"):
        versions.append({"version": int(version), "effective_from": eff, "status": status, "proposed_by": by,
                         "decided_by": decided})
    return {"as_of": day, "version": live.version, "effective_from": live.effective_from,
            "event_types": sorted(live.rules), "versions": versions}


@payload
class PostingPreviewQuery:
    event: int


@query("posting_preview", PostingPreviewQuery, summary="The journal lines an event produces (or produced)")
def posting_preview(uow: Any, q: PostingPreviewQuery) -> dict[str, Any]:
    row = uow.one(f"SELECT {EVENT_COLUMNS} FROM event WHERE id = ?", (q.event,))
    if row is None:
        raise NotFoundError(f"event {q.event} does not exist", field="event")
    ev = event_from_row(row)
    from closeloop.core.money import format_minor

    out = []
    for d in drafts_for(uow, ev):
        ccy = get_entity(uow, d.entity).currency
        out.append({"entity": d.entity, "date": d.date, "memo": d.memo,
                    "lines": [{"account": ln.account, "amount": format_minor(ln.amount, ccy)} for ln in d.lines]})
    return {"event": q.event, "type": ev.type, "entries": out}


_ = (json, close_exception)
