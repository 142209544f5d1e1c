"""Ledger commands: legal entities and their books, accounts, posting, manual journals, periods.

:func:`post_entries` is the one way into the ledger: posting rules (a later
area) and manual journals both end there. In one transaction it checks every
entry (accounts, periods, balance), reserves ids, extends the entity's hash
chain, inserts entries and lines, maintains the period balances and appends a
``journal.posted`` event per entry to the outbox.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date as Date
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from closeloop.core.calendars import FiscalCalendar, calendar_named
from closeloop.core.entities import LegalEntity, get_entity, insert_entity, list_entities
from closeloop.core.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PeriodClosedError,
    ValidationError,
)
from closeloop.core.fx import convert
from closeloop.core.money import check_currency, format_minor, to_minor
from closeloop.core.periods import check_period, iso, parse_date
from closeloop.core.registry import command, payload
from closeloop.core.uow import dumps
from closeloop.ledger.model import (
    ACCOUNT_ROLES,
    ACCOUNT_TYPES,
    GENESIS_HASH,
    Account,
    EntryDraft,
    LineDraft,
    check_entry,
    convert_balanced,
    entry_hash,
    entry_number,
)

# --------------------------------------------------------------------------- chart of accounts


@lru_cache(maxsize=1)
def default_chart() -> tuple[dict[str, Any], ...]:
    text = (resources.files("closeloop") / "config" / "chart_of_accounts.yaml").read_text()
    data = yaml.safe_load(text)
    accounts = tuple(data["accounts"])
    roles = [a["role"] for a in accounts if a.get("role")]
    missing = set(ACCOUNT_ROLES) - set(roles)
    if missing or len(roles) != len(set(roles)):
        raise RuntimeError(f"chart_of_accounts.yaml must map every role exactly once; missing {sorted(missing)}")
    for a in accounts:
        if a["type"] not in ACCOUNT_TYPES:
            raise RuntimeError(f"chart_of_accounts.yaml: account {a['code']} has unknown type {a['type']}")
    return accounts


def _insert_account(uow: Any, entity: str, code: str, name: str, type_: str, role: str | None) -> None:
    uow.execute(
        "INSERT INTO ledger_account (entity, code, name, type, role, created_at) VALUES (?,?,?,?,?,?)",
        (entity, code, name, type_, role, uow.now()),
    )


def accounts(uow: Any, entity: str) -> dict[str, Account]:
    """The entity's accounts keyed by code and by role."""

    def load() -> dict[str, Account]:
        out: dict[str, Account] = {}
        for row in uow.all("SELECT id, entity, code, name, type, role FROM ledger_account WHERE entity = ?", (entity,)):
            acct = Account(int(row[0]), row[1], row[2], row[3], row[4], row[5])
            out[acct.code] = acct
            if acct.role:
                out[acct.role] = acct
        return out

    return uow.cached("accounts", entity, load)  # type: ignore[no-any-return]


def resolve_account(uow: Any, entity: str, name: str, *, field: str = "account", record: str | None = None) -> Account:
    acct = accounts(uow, entity).get(name)
    if acct is None:
        get_entity(uow, entity)
        raise NotFoundError(
            f"{record + ': ' if record else ''}account {name!r} does not exist in entity {entity}"
            " (give an account code or an account role)",
            field=field, record=record, account=name, entity=entity,
        )
    return acct


# --------------------------------------------------------------------------- entity.create


@payload
class EntityCreate:
    code: str
    name: str
    country: str
    currency: str
    region: str | None = None
    tax_id: str | None = None
    address: dict[str, Any] | None = None
    maker_checker: bool = False
    fiscal_calendar: str = "calendar"


@command("entity.create", EntityCreate, roles=("admin", "controller"), summary="Create a legal entity and open its books")
def entity_create(uow: Any, cmd: EntityCreate) -> dict[str, Any]:
    if not cmd.code or not cmd.code.replace("_", "").isalnum() or len(cmd.code) > 16:
        raise ValidationError(f"entity code {cmd.code!r} must be 1-16 letters or digits", field="code")
    if len(cmd.country) != 2 or not cmd.country.isalpha():
        raise ValidationError(f"country {cmd.country!r} must be an ISO 3166 alpha-2 code", field="country")
    calendar_named(cmd.fiscal_calendar)
    check_currency(cmd.currency)
    entity = LegalEntity(
        code=cmd.code, name=cmd.name, country=cmd.country.upper(), currency=cmd.currency, region=cmd.region,
        tax_id=cmd.tax_id, address=cmd.address, maker_checker=cmd.maker_checker, fiscal_calendar=cmd.fiscal_calendar,
    )
    insert_entity(uow, entity)
    for a in default_chart():
        _insert_account(uow, cmd.code, str(a["code"]), a["name"], a["type"], a.get("role"))
    uow.execute("INSERT INTO ledger_chain (entity, seq, hash) VALUES (?, 0, ?)", (cmd.code, GENESIS_HASH))
    uow.invalidate("accounts", cmd.code)
    uow.invalidate("entity", cmd.code)
    uow.emit("entity.created", "entity", cmd.code, {"code": cmd.code, "name": cmd.name, "country": entity.country,
             "currency": cmd.currency, "maker_checker": cmd.maker_checker}, entity=cmd.code)
    return {"code": cmd.code, "currency": cmd.currency, "accounts": len(default_chart())}


@payload
class AccountCreate:
    entity: str
    code: str
    name: str
    type: str
    role: str | None = None


@command("account.create", AccountCreate, roles=("controller", "admin"), summary="Add an account to an entity's chart")
def account_create(uow: Any, cmd: AccountCreate) -> dict[str, Any]:
    get_entity(uow, cmd.entity)
    if cmd.type not in ACCOUNT_TYPES:
        raise ValidationError(f"account type {cmd.type!r} must be one of {', '.join(ACCOUNT_TYPES)}", field="type")
    if cmd.code in ACCOUNT_ROLES or not cmd.code.strip() or any(c.isspace() or c in ":;" for c in cmd.code):
        raise ValidationError(f"account code {cmd.code!r} must be a plain code without spaces, not a role name",
                              field="code")
    if cmd.role is not None and cmd.role not in ACCOUNT_ROLES:
        raise ValidationError(f"unknown account role {cmd.role!r}", field="role")
    existing = accounts(uow, cmd.entity)
    if cmd.code in existing:
        raise ConflictError(f"account {cmd.code} already exists in {cmd.entity}", field="code", record=cmd.code)
    if cmd.role is not None and cmd.role in existing:
        raise ConflictError(f"role {cmd.role} is already mapped to account {existing[cmd.role].code}", field="role")
    _insert_account(uow, cmd.entity, cmd.code, cmd.name, cmd.type, cmd.role)
    uow.invalidate("accounts", cmd.entity)
    uow.emit("account.created", "account", f"{cmd.entity}:{cmd.code}",
             {"entity": cmd.entity, "code": cmd.code, "name": cmd.name, "type": cmd.type, "role": cmd.role},
             entity=cmd.entity)
    return {"entity": cmd.entity, "code": cmd.code}


# --------------------------------------------------------------------------- posting


@dataclass(frozen=True, slots=True)
class PostedEntry:
    id: int
    entity: str
    seq: int
    number: str
    date: str
    hash: str


@lru_cache(maxsize=4096)
def _dimensions_json(dimensions: tuple[tuple[str, str], ...]) -> str:
    return json.dumps(dict(dimensions), sort_keys=True)


def closed_periods(uow: Any, entity: str, first: str, last: str) -> set[str]:
    rows = uow.all(
        "SELECT period FROM ledger_period WHERE entity = ? AND status = 'closed' AND period >= ? AND period <= ?",
        (entity, first, last),
    )
    return {r[0] for r in rows}


def _journal_request_number(uow: Any) -> int:
    return int(uow.next_ids("journal_request", 1, gapless=True)) + 1


def post_entries(
    uow: Any,
    drafts: Sequence[EntryDraft],
    *,
    event_id: int | None = None,
    approved_by: str | None = None,
    event_ids: Sequence[int | None] | None = None,
) -> list[PostedEntry]:
    """Post entries atomically. Refuses the whole batch on the first problem (nothing is written).

    ``event_id`` names the business event the entries were posted from; ``event_ids`` gives one
    per draft instead (a batch of events posted together)."""
    if not drafts:
        return []
    by_entity: dict[str, list[int]] = {}
    for i, d in enumerate(drafts):
        by_entity.setdefault(d.entity, []).append(i)
    first_id = uow.next_ids("journal_entry", len(drafts), table="journal_entry")
    now, source, actor = uow.now(), uow.source, uow.actor
    entry_rows: list[tuple[Any, ...]] = []
    line_rows: list[tuple[Any, ...]] = []
    balances: dict[tuple[str, str, int, str], list[int]] = {}
    events: list[tuple[Any, ...]] = []
    posted: list[PostedEntry | None] = [None] * len(drafts)
    lock = uow.for_update()
    heads: list[tuple[int, str, str]] = []
    for entity_code, indexes in by_entity.items():
        ent = get_entity(uow, entity_code)
        ccy = ent.currency
        accts = accounts(uow, entity_code)
        fiscal = None if ent.fiscal_calendar == "calendar" else calendar_named(ent.fiscal_calendar)
        periods = {drafts[i].date[:7] if fiscal is None else fiscal.period_of(Date.fromisoformat(drafts[i].date))
                   for i in indexes}
        closed = closed_periods(uow, entity_code, min(periods), max(periods))
        head = uow.one(f"SELECT seq, hash FROM ledger_chain WHERE entity = ?{lock}", (entity_code,))
        seq, prev = (int(head[0]), head[1]) if head else (0, GENESIS_HASH)
        entity_json = json.dumps(entity_code)
        for i in indexes:
            d = drafts[i]
            record = d.reference or (f"entry {i + 1}" if len(drafts) > 1 else "journal")
            day = d.date
            if len(day) != 10 or day[4] != "-" or day[7] != "-":
                parse_date(day, record=record)
            period = day[:7] if fiscal is None else fiscal.period_of(Date.fromisoformat(day))
            if period in closed:
                raise PeriodClosedError(
                    f"{record}: period {period} of {entity_code} is closed; post into an open period",
                    record=record, entity=entity_code, period=period, field="date",
                )
            check_entry(d, ccy, record=record)
            seq += 1
            entry_id = first_id + i
            hash_lines = []
            for n, line in enumerate(d.lines, 1):
                acct = accts.get(line.account)
                if acct is None:
                    raise NotFoundError(
                        f"{record}: line {n}: account {line.account!r} does not exist in entity {entity_code}",
                        record=record, field=f"lines[{n - 1}].account", account=line.account, entity=entity_code,
                    )
                amount = line.amount
                cur = line.currency or ccy
                txn = amount if line.txn_amount is None else line.txn_amount
                dims = _dimensions_json(line.dimensions) if line.dimensions else None
                line_rows.append((entry_id, n, acct.id, amount, cur, txn, line.memo, dims))
                hash_lines.append((acct.code, amount, cur, txn))
                key = (entity_code, period, acct.id, cur)
                bal = balances.get(key)
                if bal is None:
                    balances[key] = [amount, txn, 1]
                else:
                    bal[0] += amount
                    bal[1] += txn
                    bal[2] += 1
            digest = entry_hash(prev, entity_code, seq, day, d.memo, d.manual, d.reverses, hash_lines)
            prev = digest
            number = f"JE-{entity_code}-{seq:07d}"
            cause = event_id if event_ids is None else event_ids[i]
            entry_rows.append((entry_id, entity_code, seq, day, period, d.memo, d.manual, d.reference, d.reverses,
                               source, actor, approved_by, cause, now, digest))
            # journal.posted payload, serialised directly (same keys and order as json.dumps(sort_keys=True))
            payload = (f'{{"date":"{day}","entity":{entity_json},"id":{entry_id},"journal":"{number}",'
                       f'"manual":{"true" if d.manual else "false"},'
                       f'"reference":{json.dumps(d.reference) if d.reference is not None else "null"}}}')
            events.append((number, entity_code, payload) if event_ids is None
                          else (number, entity_code, payload, cause))
            posted[i] = PostedEntry(entry_id, entity_code, seq, number, day, digest)
        heads.append((seq, prev, entity_code))
    # Nothing is written until every entry of every entity has passed its checks.
    uow.executemany("UPDATE ledger_chain SET seq = ?, hash = ? WHERE entity = ?", heads)
    uow.executemany(
        "INSERT INTO journal_entry (id, entity, seq, date, period, memo, manual, reference, reverses_id, source,"
        " actor, approved_by, event_id, posted_at, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        entry_rows,
    )
    uow.executemany(
        "INSERT INTO journal_line (entry_id, line_no, account_id, amount, currency, txn_amount, memo, dimensions)"
        " VALUES (?,?,?,?,?,?,?,?)",
        line_rows,
    )
    uow.executemany(
        "INSERT INTO ledger_balance (entity, period, account_id, currency, amount, txn_amount, line_count)"
        " VALUES (?,?,?,?,?,?,?) ON CONFLICT (entity, period, account_id, currency) DO UPDATE SET"
        " amount = ledger_balance.amount + excluded.amount,"
        " txn_amount = ledger_balance.txn_amount + excluded.txn_amount,"
        " line_count = ledger_balance.line_count + excluded.line_count",
        [(e, p, a, c, v[0], v[1], v[2]) for (e, p, a, c), v in balances.items()],
    )
    uow.emit_many("journal.posted", "journal", events)
    return [p for p in posted if p is not None]


# --------------------------------------------------------------------------- journal.post


@payload
class JournalLineIn:
    account: str
    debit: Decimal | None = None
    credit: Decimal | None = None
    currency: str | None = None
    memo: str | None = None
    dimensions: dict[str, str] | None = None


@payload
class JournalPost:
    entity: str
    lines: tuple[JournalLineIn, ...]
    date: str | None = None
    memo: str = ""
    manual: bool = True
    journal_id: str | None = None


def manual_draft(uow: Any, cmd: JournalPost) -> EntryDraft:
    """Validate a manual journal's lines and convert them to functional-currency minor units."""
    ent = get_entity(uow, cmd.entity)
    day = iso(parse_date(cmd.date, field="date")) if cmd.date else iso(uow.today())
    record = cmd.journal_id or "journal"
    parsed: list[tuple[JournalLineIn, str, str, int]] = []
    foreign: set[str] = set()
    for i, line in enumerate(cmd.lines):
        where = f"lines[{i}]"
        if (line.debit is None) == (line.credit is None):
            raise ValidationError(f"{record}: {where} needs exactly one of debit or credit", field=where, record=record)
        side, value = ("debit", line.debit) if line.debit is not None else ("credit", line.credit)
        assert value is not None
        if value < 0:
            raise ValidationError(f"{record}: {where}.{side} must not be negative ({value})",
                                  field=f"{where}.{side}", record=record)
        cur = line.currency or ent.currency
        check_currency(cur)
        minor = to_minor(value, cur, field=f"{where}.{side}", record=record)
        signed = minor if side == "debit" else -minor
        code = resolve_account(uow, cmd.entity, line.account, field=f"{where}.account", record=record).code
        if cur != ent.currency:
            foreign.add(cur)
            try:
                convert(uow, signed, cur, ent.currency, day)
            except NotFoundError:
                raise ValidationError(
                    f"{record}: {where} is in {cur} but there is no FX rate {cur}->{ent.currency} on or before {day};"
                    " record one with fx.rate", field=f"{where}.currency", record=record,
                ) from None
        parsed.append((line, code, cur, signed))
    functional = [s for _, _, _, s in parsed]
    if len(foreign) == 1 and all(cur != ent.currency for _, _, cur, _ in parsed):
        # one foreign currency, balanced there: convert as a balanced set (each side's total once)
        (ccy,) = foreign
        functional = convert_balanced(functional, lambda minor: convert(uow, minor, ccy, ent.currency, day))
    else:
        functional = [s if cur == ent.currency else convert(uow, s, cur, ent.currency, day)
                      for _, _, cur, s in parsed]
    lines = tuple(
        LineDraft(
            account=code,
            amount=amount,
            currency=cur if cur != ent.currency else None,
            txn_amount=signed if cur != ent.currency else None,
            memo=line.memo,
            dimensions=tuple(sorted((line.dimensions or {}).items())),
        )
        for (line, code, cur, signed), amount in zip(parsed, functional, strict=True)
    )
    draft = EntryDraft(entity=cmd.entity, date=day, memo=cmd.memo, lines=lines, manual=True, reference=cmd.journal_id)
    check_entry(draft, ent.currency, record=record)
    return draft


def _check_reference_free(uow: Any, reference: str | None) -> None:
    if reference is None:
        return
    if uow.one("SELECT 1 FROM journal_entry WHERE reference = ?", (reference,)) or uow.one(
        "SELECT 1 FROM journal_request WHERE reference = ?", (reference,)
    ):
        raise ConflictError(f"journal {reference!r} already exists", field="journal_id", record=reference)


def _draft_to_json(d: EntryDraft) -> str:
    return dumps({
        "entity": d.entity, "date": d.date, "memo": d.memo, "reference": d.reference,
        "lines": [{"account": ln.account, "amount": ln.amount, "currency": ln.currency, "txn_amount": ln.txn_amount,
                   "memo": ln.memo, "dimensions": dict(ln.dimensions)} for ln in d.lines],
    })


def _draft_from_json(text: str) -> EntryDraft:
    data = json.loads(text)
    return EntryDraft(
        entity=data["entity"], date=data["date"], memo=data["memo"], manual=True, reference=data["reference"],
        lines=tuple(LineDraft(account=ln["account"], amount=ln["amount"], currency=ln["currency"],
                              txn_amount=ln["txn_amount"], memo=ln["memo"],
                              dimensions=tuple(sorted(ln["dimensions"].items()))) for ln in data["lines"]),
    )


def _posted_result(entry: PostedEntry, draft: EntryDraft, currency: str) -> dict[str, Any]:
    debit = sum(ln.amount for ln in draft.lines if ln.amount > 0)
    return {"journal": draft.reference or entry.number, "number": entry.number, "status": "posted",
            "entity": entry.entity, "date": entry.date, "total": format_minor(debit, currency)}


@command("journal.post", JournalPost, roles=("controller", "admin"),
         summary="Post a manual journal (held for a second person's approval where the entity requires it)")
def journal_post(uow: Any, cmd: JournalPost) -> dict[str, Any]:
    if not cmd.manual:
        raise ValidationError("journal.post takes manual journals only; system journals come from posting rules",
                              field="manual")
    draft = manual_draft(uow, cmd)
    _check_reference_free(uow, cmd.journal_id)
    ent = get_entity(uow, cmd.entity)
    if ent.maker_checker:
        period = draft.date[:7]
        if period in closed_periods(uow, cmd.entity, period, period):
            raise PeriodClosedError(f"{draft.reference or 'journal'}: period {period} of {cmd.entity} is closed",
                                    entity=cmd.entity, period=period, field="date")
        reference = cmd.journal_id or f"MJ-{cmd.entity}-{_journal_request_number(uow):06d}"
        draft = replace(draft, reference=reference)
        uow.execute(
            "INSERT INTO journal_request (reference, entity, payload, maker, status, created_at)"
            " VALUES (?,?,?,?,'pending',?)",
            (reference, cmd.entity, _draft_to_json(draft), uow.actor, uow.now()),
        )
        uow.emit("journal.submitted", "journal", reference, {"journal": reference, "entity": cmd.entity,
                 "maker": uow.actor, "date": draft.date}, entity=cmd.entity)
        return {"journal": reference, "status": "pending_approval", "entity": cmd.entity, "date": draft.date}
    entry = post_entries(uow, [draft])[0]
    return _posted_result(entry, draft, ent.currency)


@payload
class JournalApprove:
    journal: str
    approver: str | None = None


@command("journal.approve", JournalApprove, roles=("controller", "admin"),
         summary="Approve a manual journal held for maker-checker; the approver must not be its maker")
def journal_approve(uow: Any, cmd: JournalApprove) -> dict[str, Any]:
    row = uow.one(
        f"SELECT id, entity, payload, maker, status FROM journal_request WHERE reference = ?{uow.for_update()}",
        (cmd.journal,),
    )
    if row is None:
        raise NotFoundError(f"no manual journal {cmd.journal!r} is awaiting approval", field="journal",
                            record=cmd.journal)
    request_id, entity, text, maker, status = row
    if status != "pending":
        raise ConflictError(f"journal {cmd.journal} is already {status}", field="journal", record=cmd.journal)
    approver = cmd.approver or uow.actor
    if approver == maker:
        raise ForbiddenError(
            f"journal {cmd.journal} was made by {maker}; segregation of duties needs a second person to approve it",
            field="approver", record=cmd.journal, maker=maker,
        )
    draft = _draft_from_json(text)
    entry = post_entries(uow, [draft], approved_by=approver)[0]
    uow.execute(
        "UPDATE journal_request SET status = 'approved', decided_by = ?, decided_at = ?, entry_id = ? WHERE id = ?",
        (approver, uow.now(), entry.id, request_id),
    )
    uow.emit("journal.approved", "journal", cmd.journal, {"journal": cmd.journal, "entity": entity, "maker": maker,
             "approver": approver, "number": entry.number}, entity=entity)
    result = _posted_result(entry, draft, get_entity(uow, entity).currency)
    result["approved_by"] = approver
    return result


def find_entry(uow: Any, journal: str) -> tuple[Any, ...]:
    """An entry by number (JE-US01-0000001) or by the client reference it was posted with."""
    cols = "id, entity, seq, date, period, memo, manual, reference, reverses_id, source, actor, approved_by, posted_at, hash"
    row = None
    if journal.startswith("JE-") and journal.count("-") >= 2:
        entity, _, seq = journal[3:].rpartition("-")
        if seq.isdigit():
            row = uow.one(f"SELECT {cols} FROM journal_entry WHERE entity = ? AND seq = ?", (entity, int(seq)))
    if row is None:
        row = uow.one(f"SELECT {cols} FROM journal_entry WHERE reference = ?", (journal,))
    if row is None:
        raise NotFoundError(f"journal {journal!r} is not in the ledger", field="journal", record=journal)
    return tuple(row)


@payload
class JournalReverse:
    journal: str
    date: str | None = None
    memo: str | None = None


@command("journal.reverse", JournalReverse, roles=("controller", "admin"),
         summary="Correct a posted entry by posting its reversal (posted entries never change)")
def journal_reverse(uow: Any, cmd: JournalReverse) -> dict[str, Any]:
    entry = find_entry(uow, cmd.journal)
    entry_id, entity, seq = int(entry[0]), entry[1], int(entry[2])
    if uow.one("SELECT reversal_id FROM journal_reversal WHERE original_id = ?", (entry_id,)):
        raise ConflictError(f"journal {cmd.journal} has already been reversed", field="journal", record=cmd.journal)
    if entry[8] is not None:
        raise ValidationError(f"journal {cmd.journal} is itself a reversal; post a new entry instead", field="journal")
    day = iso(parse_date(cmd.date)) if cmd.date else entry[3]
    rows = uow.all(
        "SELECT a.code, l.amount, l.currency, l.txn_amount, l.memo, l.dimensions FROM journal_line l"
        " JOIN ledger_account a ON a.id = l.account_id WHERE l.entry_id = ? ORDER BY l.line_no",
        (entry_id,),
    )
    ccy = get_entity(uow, entity).currency
    lines = tuple(
        LineDraft(account=code, amount=-amount, currency=None if cur == ccy else cur,
                  txn_amount=None if cur == ccy else -txn, memo=memo,
                  dimensions=tuple(sorted(json.loads(dims).items())) if dims else ())
        for code, amount, cur, txn, memo, dims in rows
    )
    draft = EntryDraft(entity=entity, date=day, memo=cmd.memo or f"Reversal of {entry_number(entity, seq)}",
                       lines=lines, manual=bool(entry[6]), reverses=entry_id)
    posted = post_entries(uow, [draft])[0]
    uow.execute("INSERT INTO journal_reversal (original_id, reversal_id) VALUES (?,?)", (entry_id, posted.id))
    uow.emit("journal.reversed", "journal", entry_number(entity, seq),
             {"journal": entry_number(entity, seq), "reversal": posted.number, "entity": entity, "date": day},
             entity=entity)
    return {"journal": posted.number, "reverses": entry_number(entity, seq), "date": day, "status": "posted"}


# --------------------------------------------------------------------------- periods


@payload
class PeriodClose:
    entity: str
    period: str


def set_period_status(uow: Any, entity: str, period: str, status: str, reason: str | None = None) -> None:
    uow.execute(
        "INSERT INTO ledger_period (entity, period, status, changed_at, changed_by, reason) VALUES (?,?,?,?,?,?)"
        " ON CONFLICT (entity, period) DO UPDATE SET status = excluded.status, changed_at = excluded.changed_at,"
        " changed_by = excluded.changed_by, reason = excluded.reason",
        (entity, period, status, uow.now(), uow.actor, reason),
    )


def period_status(uow: Any, entity: str, period: str) -> str:
    row = uow.one("SELECT status FROM ledger_period WHERE entity = ? AND period = ?", (entity, period))
    return row[0] if row else "open"


@command("period.close", PeriodClose, roles=("controller", "admin"),
         summary="Lock a period: nothing more can be posted into it")
def period_close(uow: Any, cmd: PeriodClose) -> dict[str, Any]:
    get_entity(uow, cmd.entity)
    check_period(cmd.period)
    if period_status(uow, cmd.entity, cmd.period) == "closed":
        return {"entity": cmd.entity, "period": cmd.period, "status": "closed", "changed": False}
    set_period_status(uow, cmd.entity, cmd.period, "closed")
    uow.emit("period.closed", "period", f"{cmd.entity}:{cmd.period}",
             {"entity": cmd.entity, "period": cmd.period}, entity=cmd.entity)
    return {"entity": cmd.entity, "period": cmd.period, "status": "closed", "changed": True}


def entity_calendar(uow: Any, entity: str) -> FiscalCalendar:
    """The entity's fiscal calendar (calendar months unless it was created with another)."""
    return calendar_named(get_entity(uow, entity).fiscal_calendar)


def entities_for(uow: Any, entity: str | None) -> list[LegalEntity]:
    if entity:
        return [get_entity(uow, entity)]
    return list_entities(uow)


def single_entity(uow: Any, entity: str | None) -> LegalEntity:
    """The named entity, or the only one; several entities and no name is a validation error."""
    if entity:
        return get_entity(uow, entity)
    found = list_entities(uow)
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFoundError("no legal entity exists yet; create one with entity.create", field="entity")
    raise ValidationError(
        f"entity is required: there are {len(found)} legal entities ({', '.join(e.code for e in found)})",
        field="entity",
    )


def as_of_date(value: str | None, field: str = "as_of") -> Date | None:
    return parse_date(value, field=field) if value else None
