"""Revenue recognition: what recognition learns from events, the recognition run, and its queries.

Events consumed (docs/revenue.md):

- ``contract.activated`` / ``amended`` / ``renewed`` / ``cancelled``: the contract's plan (allocation
  and schedules, :mod:`closeloop.revenue.model`) is re-folded from every change received;
- ``milestone.completed``: the milestone's share of its line is scheduled on its date;
- ``invoice.issued``: billed per contract; usage lines are scheduled as billed (on the invoice date);
  a contract that had revenue recognised ahead of billing (a contract asset) is relieved at once
  (a ``revenue.recognized`` line with amount 0, deferred +x, unbilled -x);
- ``credit_memo.issued``: a price concession: billed goes down and the credited amount comes off the
  obligation's schedule over the credited line's service period (as Stripe Revenue Recognition does).
- ``contract.migrated``: a contract brought in from a legacy system: its schedule through the cutover is the
  legacy system's, and what the legacy system billed by the billed-through date less what it recognised by
  the cutover is carried in as the contract's opening position (docs/revenue.md, "Migrated contracts").

Event emitted: ``revenue.recognized`` (config/event_catalogue.yaml), posted by the shipped rules: Dr
deferred_revenue (deferred), Dr unbilled_receivable (unbilled), Cr the line's revenue role (amount).

Command ``revrec.run {through, entity?, dry_run?}``; queries ``allocation``, ``revenue``,
``deferred_revenue``, ``revenue_schedule``, ``revenue_waterfall``, ``deferred_revenue_rollforward``,
``remaining_performance_obligations``, ``revenue_run_status``; the reconciliation side
``revenue.unrecognized_schedules``.
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

from closeloop.contracts.schedule import round_fraction
from closeloop.core.entities import LegalEntity, get_entity, list_entities
from closeloop.core.errors import NotFoundError, PeriodClosedError, ValidationError
from closeloop.core.events import Event, NotReady, handles
from closeloop.core.fx import convert
from closeloop.core.money import allocate, exponent, format_minor, to_minor
from closeloop.core.periods import add_months, check_period, parse_date, periods_between
from closeloop.core.registry import command, payload, query
from closeloop.core.uow import dumps
from closeloop.ledger.service import accounts, entity_calendar, period_status
from closeloop.revenue import model
from closeloop.revenue.model import ContractPlan, Entry, Piece, Position

ONE_DAY = timedelta(days=1)
RUN_ROLES = ("controller", "admin")
READ_ROLES = ("controller", "admin", "billing", "read_only", "sales_ops", "collections", "implementation")
CONTRACT_EVENTS = ("contract.activated", "contract.amended", "contract.renewed", "contract.cancelled")
PENDING = "pending"  # the schedule bucket of rows waiting for an event (a milestone not completed)
STANDALONE = "invoice:"  # the contract id of an invoice line outside any contract: invoice:<number>
WALLET = "wallet:"  # prepaid credits: the contract liability of wallet <id> (billed by top-ups, drawn by invoices)


# =========================================================================== plans from events


def load_changes(uow: Any, contract_id: str) -> list[model.Change]:
    """Every change of a contract recognition has received, in order, as the model reads them."""
    out: list[model.Change] = []
    known: dict[str, model.LineFacts] = {}
    for (text,) in uow.all("SELECT payload FROM revenue_contract_change WHERE contract_id = ? ORDER BY seq",
                           (contract_id,)):
        change = model.change_from_payload(json.loads(text), known)
        known = {f.line_id: f for f in change.snapshot.facts}
        out.append(change)
    return out


def _completions(uow: Any, contract_id: str) -> dict[tuple[str, str], date]:
    return {(line, mid): date.fromisoformat(day) for line, mid, day in uow.all(
        "SELECT line_id, milestone_id, date FROM revenue_milestone WHERE contract_id = ?", (contract_id,))}


def _adjustments(uow: Any, contract_id: str) -> list[Piece]:
    return [Piece(line, date.fromisoformat(first), date.fromisoformat(last), int(amount), kind, doc)
            for line, kind, first, last, amount, doc in uow.all(
                "SELECT line_id, kind, first, last, amount, document FROM revenue_adjustment WHERE contract_id = ?"
                " ORDER BY id", (contract_id,))]


def contract_plan(uow: Any, contract_id: str) -> ContractPlan:
    """The plan of a contract, folded from the events received (raises not_found for an unknown contract)."""
    changes = load_changes(uow, contract_id)
    if not changes:
        raise NotFoundError(f"contract {contract_id!r} is not known to revenue recognition (no contract event"
                            " received)", field="contract", record=contract_id)
    return model.plan_contract(changes, _completions(uow, contract_id))


def replan(uow: Any, contract_id: str) -> ContractPlan | None:
    """Bring a contract's obligations and schedule in line with what recognition knows of it."""
    if contract_id.startswith(STANDALONE):
        _standalone_replan(uow, contract_id)
        return None
    return _replan_contract(uow, contract_id)


def _replan_contract(uow: Any, contract_id: str, plan: ContractPlan | None = None) -> ContractPlan:
    """Re-fold a contract (unless its ``plan`` is given, folded from every change received) and bring its
    obligations and schedule rows in line with the plan.

    Schedule rows of an (obligation, period) whose pieces did not change keep what runs recognised;
    where they changed, new rows replace them and one ``carry`` row (amount 0) holds what was already
    recognised for that obligation and period, so the next run books exactly the difference."""
    if plan is None:
        plan = contract_plan(uow, contract_id)
    calendar = entity_calendar(uow, plan.entity)
    pieces = list(plan.pieces) + _adjustments(uow, contract_id)
    migrated = _migration(uow, contract_id)
    if migrated is not None:  # the legacy system recognised everything through the cutover
        pieces = model.split_at_cutover(pieces, date.fromisoformat(migrated["cutover"]))[0]
    new_rows = model.entries(pieces, calendar)
    _sync_schedule(uow, plan, new_rows, calendar)
    _sync_obligations(uow, plan, pieces)
    uow.execute(
        "INSERT INTO revenue_contract (contract_id, entity, currency, customer, billed, recognised, deferred,"
        " unbilled, transaction_price, updated_at) VALUES (?,?,?,?,0,0,0,0,?,?)"
        " ON CONFLICT (contract_id) DO UPDATE SET transaction_price = excluded.transaction_price,"
        " customer = excluded.customer, updated_at = excluded.updated_at",
        (contract_id, plan.entity, plan.currency, plan.customer, plan.transaction_price, uow.now()))
    return plan


def _sync_schedule(uow: Any, plan: ContractPlan, rows: Sequence[Entry], calendar: Any) -> None:
    cid = plan.contract_id
    old: dict[tuple[str, str | None], list[tuple[Any, ...]]] = defaultdict(list)
    for r in uow.all("SELECT id, line_id, period, first, last, amount, recognised, kind, ref, bucket FROM"
                     " revenue_schedule WHERE contract_id = ?", (cid,)):
        old[(r[1], r[2])].append(r)
    new: dict[tuple[str, str | None], list[Entry]] = defaultdict(list)
    for e in rows:
        new[(e.line_id, e.period)].append(e)
    drop: list[tuple[str, str, int]] = []
    add: list[tuple[Any, ...]] = []
    for key in dict.fromkeys([*old, *new]):
        o, n = old.get(key, []), new.get(key, [])
        o_sig = sorted((r[3], r[4], int(r[5]), r[7], r[8]) for r in o if r[7] != "carry")
        n_sig = sorted((_iso(e.first), _iso(e.last), e.amount, e.kind, e.ref) for e in n)
        if o_sig == n_sig and not any(r[7] == "carry" for r in o):
            continue
        drop.extend((plan.entity, r[9], int(r[0])) for r in o)
        for e in n:
            add.append((cid, e.line_id, plan.entity, e.period or PENDING, e.period, _iso(e.first), _iso(e.last),
                        e.amount, 0, e.kind, e.ref, e.first is not None))
        done = sum(int(r[6]) for r in o)
        if done and key[1] is not None:
            first = calendar.bounds(key[1])[0].isoformat()
            add.append((cid, key[0], plan.entity, key[1], key[1], first, first, 0, done, "carry", "", True))
    if drop:
        uow.executemany("DELETE FROM revenue_schedule WHERE entity = ? AND bucket = ? AND id = ?", drop)
    if add:
        first_id = uow.next_ids("revenue_schedule", len(add))
        uow.executemany("INSERT INTO revenue_schedule (id, contract_id, line_id, entity, bucket, period, first, last,"
                        " amount, recognised, kind, ref, active) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        [(first_id + i, *row) for i, row in enumerate(add)])


def _sync_obligations(uow: Any, plan: ContractPlan, pieces: Sequence[Piece]) -> None:
    allocations = {a.line_id: a for a in plan.allocations()}
    extra: dict[str, int] = defaultdict(int)
    for p in pieces:
        if p.kind in (model.USAGE, model.CREDIT, model.DISCOUNT):
            extra[p.line_id] += p.amount
    lines = [f for f in plan.facts if f.line_id in allocations or f.line_id in extra
             or any(s.line_id == f.line_id for t in plan.terms for s in t.segments)]
    rows = []
    for i, f in enumerate(lines):
        a = allocations.get(f.line_id)
        rows.append((plan.contract_id, f.line_id, i, f.treatment, f.revenue_role, f.product_family,
                     None if a is None else a.ssp, (0 if a is None else a.allocated)))
    uow.execute("DELETE FROM revenue_obligation WHERE contract_id = ?", (plan.contract_id,))
    if rows:
        uow.executemany("INSERT INTO revenue_obligation (contract_id, line_id, seq, treatment, revenue_role,"
                        " product_family, ssp, allocated) VALUES (?,?,?,?,?,?,?,?)", rows)


def _iso(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


# =========================================================================== handlers


def on_contract_event(uow: Any, ev: Event) -> None:
    p = ev.payload
    change = p.get("change") or {}
    cid = str(p["contract_id"])
    seq = int(change.get("seq") or 1)
    kind = str(change.get("kind") or ev.type.split(".")[1])
    modification = p.get("modification") or change.get("modification") or "prospective"
    uow.execute(
        "INSERT INTO revenue_contract_change (contract_id, seq, kind, effective, modification, payload, event_id,"
        " recorded_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (contract_id, seq) DO NOTHING",
        (cid, seq, kind, str(p.get("effective") or change.get("effective") or p["start"]), modification, dumps(p),
         ev.id, uow.now()))
    replan(uow, cid)


for _type in CONTRACT_EVENTS:
    handles(_type, "revenue")(on_contract_event)


@handles("milestone.completed", "revenue")
def on_milestone_completed(uow: Any, ev: Event) -> None:
    p = ev.payload
    cid = str(p["contract_id"])
    if not uow.one("SELECT 1 FROM revenue_contract WHERE contract_id = ?", (cid,)):
        raise NotReady(f"contract {cid} is not known to revenue recognition yet")
    uow.execute("INSERT INTO revenue_milestone (contract_id, line_id, milestone_id, date) VALUES (?,?,?,?)"
                " ON CONFLICT (contract_id, line_id, milestone_id) DO UPDATE SET date = excluded.date",
                (cid, str(p["line_id"]), str(p["milestone_id"]), str(p["date"])))
    replan(uow, cid)


# --------------------------------------------------------------------------- contracts migrated from a legacy system


def _migration(uow: Any, contract_id: str) -> dict[str, Any] | None:
    rows = uow.dicts("SELECT contract_id, entity, cutover, billed_through, system, lines FROM revenue_migration"
                     " WHERE contract_id = ?", (contract_id,))
    return rows[0] if rows else None


def migration_document(contract_id: str) -> str:
    """The billing document of a migrated contract's opening position (``revenue_billing.document``)."""
    doc = f"migrated:{contract_id}"
    if len(doc) <= 64:
        return doc
    return f"migrated:{hashlib.sha256(contract_id.encode()).hexdigest()[:40]}"


@handles("contract.migrated", "revenue")
def on_contract_migrated(uow: Any, ev: Event) -> None:
    """A contract brought in from a legacy system with its original start (docs/revenue.md, "Migrated
    contracts"). The legacy system recognised everything through the cutover (the date of the opening
    balances): those schedule rows are dropped, now and at every replan. What the legacy system billed for the
    service through the billed-through date, less what the schedule held through the cutover, is the
    contract's opening position — a contract liability (deferred revenue billed in advance for the days after
    the cutover) or a contract asset (recognised there, billed here in arrears). It is booked on the cutover
    date as a billing of kind ``migration``, with no ``revenue.recognized`` event: the migration's opening
    balance journal carries it into the GL."""
    p = ev.payload
    cid = str(p["contract_id"])
    changes = load_changes(uow, cid)
    if not changes:
        raise NotReady(f"contract {cid} is not known to revenue recognition yet (contract.activated first)")
    if _migration(uow, cid) is not None:
        return  # migrated once: a second event changes nothing
    if not p.get("cutover"):
        raise ValidationError(f"contract.migrated for {cid} has no cutover: recognition cannot tell what the legacy"
                              " system recognised", field="cutover", record=cid)
    cutover = date.fromisoformat(str(p["cutover"]))
    through = date.fromisoformat(str(p["billed_through"]))
    system = str(p.get("system") or "legacy")[:200]
    plan = model.plan_contract(changes, _completions(uow, cid))
    _, recognised = model.split_at_cutover(list(plan.pieces) + _adjustments(uow, cid), cutover)
    billed = model.billed_through(changes[-1].snapshot, through)
    order = [f.line_id for f in plan.facts if f.line_id in billed or f.line_id in recognised]
    lines = {x: {"billed": billed.get(x, 0), "recognised": recognised.get(x, 0)} for x in order}
    uow.execute("INSERT INTO revenue_migration (contract_id, entity, cutover, billed_through, system, lines, event_id,"
                " recorded_at) VALUES (?,?,?,?,?,?,?,?)",
                (cid, plan.entity, cutover.isoformat(), through.isoformat(), system, dumps(lines), ev.id, uow.now()))
    _replan_contract(uow, cid, plan)
    pos, _ = _position(uow, cid)
    document = migration_document(cid)
    rows = []
    for n, line_id in enumerate(order, 1):
        net = lines[line_id]["billed"] - lines[line_id]["recognised"]
        if not net:
            continue
        ob = uow.one("SELECT treatment, revenue_role FROM revenue_obligation WHERE contract_id = ? AND line_id = ?",
                     (cid, line_id))
        ahead = through > cutover
        rows.append((document, n, "migration", document, cid, line_id, plan.entity, plan.currency,
                     cutover.isoformat(), net, str(ob[0]) if ob else "ratable", str(ob[1]) if ob else "revenue",
                     (cutover + ONE_DAY).isoformat() if ahead else None, through.isoformat() if ahead else None,
                     f"Migrated from {system}: billed through {through.isoformat()}, recognised through"
                     f" {cutover.isoformat()}"))
    _record_billing(uow, rows)
    net = sum(r[9] for r in rows)
    # what the opening balance journal adds to the GL for this contract: its liability, or its asset
    _store_position(uow, cid, Position(pos.billed + net, pos.recognised, pos.deferred + max(net, 0),
                                       pos.unbilled + max(-net, 0)))


@dataclass
class _Billed:
    contract_id: str
    line_id: str
    net: int
    line: Mapping[str, Any]


def _position(uow: Any, contract_id: str) -> tuple[Position, dict[str, Any]]:
    row = uow.dicts("SELECT contract_id, entity, currency, customer, billed, recognised, deferred, unbilled"
                    f" FROM revenue_contract WHERE contract_id = ?{uow.for_update()}", (contract_id,))
    if not row:
        raise NotReady(f"contract {contract_id} is not known to revenue recognition yet")
    r = row[0]
    return Position(int(r["billed"]), int(r["recognised"]), int(r["deferred"]), int(r["unbilled"])), r


def _store_position(uow: Any, contract_id: str, pos: Position) -> None:
    uow.execute("UPDATE revenue_contract SET billed = ?, recognised = ?, deferred = ?, unbilled = ?, updated_at = ?"
                " WHERE contract_id = ?", (pos.billed, pos.recognised, pos.deferred, pos.unbilled, uow.now(),
                                           contract_id))


def _nets(contract_id: str) -> bool:
    """Contracts net their asset and liability; a charge outside any contract (``invoice:<number>``) is its
    own billing, so its deferred revenue is simply billed - recognised."""
    return not contract_id.startswith((STANDALONE, WALLET))


def _booked_for(uow: Any, contract_id: str, day: str) -> list[model.Booked]:
    """What is booked for a contract on or after ``day``: billing and revenue.recognized lines."""
    out = [model.Booked(date.fromisoformat(d), billed=int(net)) for d, net in uow.all(
        "SELECT date, net FROM revenue_billing WHERE contract_id = ? AND date >= ?", (contract_id, day))]
    out += [model.Booked(date.fromisoformat(d), amount=int(a), deferred=int(df), unbilled=int(u))
            for d, a, df, u in uow.all("SELECT date, amount, deferred, unbilled FROM revenue_recognition"
                                       " WHERE contract_id = ? AND date >= ?", (contract_id, day))]
    return out


def _book_billing(uow: Any, *, document: str, entity: str, currency: str, day: str,
                  billed: Mapping[str, list[_Billed]], aggregate: tuple[str, str]) -> None:
    """Book a document's billing on each contract's position. Where revenue was recognised ahead of billing
    (a contract asset), emit its relief on the document's date (amount 0, deferred +x, unbilled -x); where
    lines booked on later dates no longer fit the position, reclassify them on their dates."""
    calendar = entity_calendar(uow, entity)
    lines: dict[date, list[tuple[Any, ...]]] = defaultdict(list)
    for cid in sorted(billed):
        items = billed[cid]
        pos, head = _position(uow, cid)
        first = max(items, key=lambda b: abs(b.net))
        role, family = _role_of(uow, cid, first.line_id, first.line)
        move = model.Move(date.fromisoformat(day), billed=sum(b.net for b in items), key=first.line_id)
        bookings, final = model.settle(pos, _booked_for(uow, cid, day), [move], netting=_nets(cid))
        _store_position(uow, cid, final)
        for bk in bookings:
            if bk.deferred or bk.unbilled:
                lines[bk.day].append((cid, first.line_id, role, family, head["customer"], bk,
                                      "relief" if bk.key is not None else "reclass"))
    for bk_day, booked_lines in sorted(lines.items()):
        _emit_recognition(uow, run=f"billing:{document}", entity=entity, currency=currency, day=bk_day,
                          period=calendar.period_of(bk_day), items=booked_lines, aggregate=aggregate)


def _formatter(currency: str) -> Any:
    """format_minor for one currency, without looking its exponent up for every amount."""
    exp = exponent(currency)
    if exp == 0:
        return str
    unit = 10 ** exp

    def fmt(minor: int) -> str:
        whole, frac = divmod(-minor if minor < 0 else minor, unit)
        return f"{'-' if minor < 0 else ''}{whole}.{frac:0{exp}d}"

    return fmt


def _emit_recognition(uow: Any, *, run: str, entity: str, currency: str, day: date, period: str,
                      items: Sequence[tuple[Any, ...]], aggregate: tuple[str, str]) -> int:
    """One revenue.recognized event (its lines per contract obligation) and the rows recognition keeps of it.
    ``items``: (contract, line, revenue role, product family, customer, booking, kind)."""
    fmt = _formatter(currency)
    lines = [{"contract_id": cid, "line_id": line, "revenue_role": role, "amount": fmt(bk.amount),
              "deferred": fmt(bk.deferred), "unbilled": fmt(bk.unbilled), "period": period, "product_family": family}
             for cid, line, role, family, _, bk, _ in items]
    event_id = int(uow.emit("revenue.recognized", aggregate[0], aggregate[1],
                            {"run": run, "entity": entity, "currency": currency, "date": day.isoformat(),
                             "lines": lines}, entity=entity))
    first_id = uow.next_ids("revenue_recognition", len(items))
    iso = day.isoformat()
    uow.executemany(
        "INSERT INTO revenue_recognition (id, run, kind, contract_id, line_id, entity, currency, customer, period, date,"
        " amount, deferred, unbilled, revenue_role, event_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [(first_id + i, run, kind, cid, line, entity, currency, customer, period, iso, bk.amount, bk.deferred,
          bk.unbilled, role, event_id) for i, (cid, line, role, _, customer, bk, kind) in enumerate(items)])
    return event_id


def _role_of(uow: Any, contract_id: str, line_id: str, line: Mapping[str, Any]) -> tuple[str, str | None]:
    row = uow.one("SELECT revenue_role, product_family FROM revenue_obligation WHERE contract_id = ? AND line_id = ?",
                  (contract_id, line_id))
    if row:
        return str(row[0]), row[1]
    treatment = str(line.get("treatment") or "point_in_time")
    return str(line.get("revenue_role") or model.DEFAULT_REVENUE_ROLE.get(treatment, "revenue")), \
        line.get("product_family")


@handles("invoice.issued", "revenue")
def on_invoice_issued(uow: Any, ev: Event) -> None:
    p = ev.payload
    cur, day, number, entity = str(p["currency"]), str(p["date"]), str(p["invoice"]), str(p["entity"])
    billed: dict[str, list[_Billed]] = defaultdict(list)
    rows, adjustments, replans = [], [], set()
    for ln in p.get("lines") or ():
        net = to_minor(ln["net"], cur)
        cid, line_id = ln.get("contract_id"), ln.get("line_id")
        treatment = str(ln.get("treatment") or "point_in_time")
        if ln.get("wallet"):
            # prepaid credits bought: a contract liability of the wallet, recognised as the credits are used (by
            # the invoices they pay) or lapse (breakage): no schedule of its own
            cid, line_id = f"{WALLET}{ln['wallet']}", "credits"
            _wallet_contract(uow, cid, entity, cur, str(p.get("customer") or ""))
        elif not cid:
            # a charge outside any contract: an obligation of its own, satisfied on the invoice date
            cid, line_id = f"{STANDALONE}{number}", str(ln["line_no"])
            _standalone(uow, cid, line_id, entity, cur, str(p.get("customer") or ""), treatment, ln)
            adjustments.append((cid, line_id, model.POINT, day, day, net, number))
            replans.add(cid)
        elif not uow.one("SELECT 1 FROM revenue_contract WHERE contract_id = ?", (cid,)):
            raise NotReady(f"invoice {number} bills contract {cid}, not known to revenue recognition yet")
        else:
            line_id = str(line_id or ln["line_no"])
            if treatment == "usage" or _metered(uow, cid, line_id):  # usage: recognised as billed
                adjustments.append((cid, line_id, model.USAGE, day, day, net, number))
                replans.add(cid)
            elif ln.get("kind") == "discount":
                # a coupon's discount lowers the price of the obligation it discounts, over the same service
                # period (at once where it has none), as a credit memo does
                first, last = day, day
                if treatment == "ratable" and ln.get("period_start") and ln.get("period_end"):
                    first, last = str(ln["period_start"]), str(ln["period_end"])
                adjustments.append((cid, line_id, model.DISCOUNT, first, last, net, number))
                replans.add(cid)
        rows.append((number, int(ln["line_no"]), "invoice", number, cid, line_id, entity, cur, day, net, treatment,
                     str(ln.get("revenue_role") or ""), ln.get("period_start"), ln.get("period_end"),
                     str(ln.get("description") or "")))
        billed[cid].append(_Billed(cid, line_id, net, ln))
    if adjustments:
        uow.executemany("INSERT INTO revenue_adjustment (contract_id, line_id, kind, first, last, amount, document)"
                        " VALUES (?,?,?,?,?,?,?)", adjustments)
    for cid in sorted(replans):
        replan(uow, cid)
    _book_billing(uow, document=number, entity=entity, currency=cur, day=day, billed=billed,
                  aggregate=("invoice", number))
    _record_billing(uow, rows)


def _wallet_contract(uow: Any, cid: str, entity: str, currency: str, customer: str) -> None:
    uow.execute(
        "INSERT INTO revenue_contract (contract_id, entity, currency, customer, billed, recognised, deferred, unbilled,"
        " transaction_price, updated_at) VALUES (?,?,?,?,0,0,0,0,0,?) ON CONFLICT (contract_id) DO NOTHING",
        (cid, entity, currency, customer, uow.now()))


@handles("wallet.applied", "revenue")
def on_wallet_applied(uow: Any, ev: Event) -> None:
    """Prepaid credits paid an invoice: the wallet's liability goes down (the invoice's own lines carry the revenue,
    recognised like any other)."""
    p = ev.payload
    cid, cur, day = f"{WALLET}{p['wallet']}", str(p["currency"]), str(p["date"])
    if not uow.one("SELECT 1 FROM revenue_contract WHERE contract_id = ?", (cid,)):
        raise NotReady(f"wallet {p['wallet']} is not known to revenue recognition yet (its top-up invoice first)")
    amount = to_minor(p["amount"], cur)
    document = f"wallet.applied:{ev.id}"
    item = {"line_no": 1, "description": f"Prepaid credits applied to {p['invoice']}", "revenue_role": "revenue",
            "treatment": "prepaid"}
    _book_billing(uow, document=document, entity=str(p["entity"]), currency=cur, day=day,
                  billed={cid: [_Billed(cid, "credits", -amount, item)]}, aggregate=("wallet", str(p["wallet"])))
    _record_billing(uow, [(document, 1, "wallet", str(p["invoice"]), cid, "credits", str(p["entity"]), cur, day,
                           -amount, "prepaid", "revenue", None, None, item["description"])])


@handles("wallet.expired", "revenue")
def on_wallet_expired(uow: Any, ev: Event) -> None:
    """Credits that lapse are breakage: revenue when the customer can no longer use them (the remote-likelihood
    method of ASC 606-10-55-48 / IFRS 15.B46); posted by wallet.expired's own rule (Dr deferred revenue, Cr
    revenue), recorded here so the revenue reports and the contract liability agree with the GL."""
    p = ev.payload
    cid, cur, entity = f"{WALLET}{p['wallet']}", str(p["currency"]), str(p["entity"])
    pos, head = _position(uow, cid)
    amount = to_minor(p["amount"], cur)
    day = date.fromisoformat(str(p["date"]))
    period = entity_calendar(uow, entity).period_of(day)
    b, r = pos.billed, pos.recognised + amount
    _store_position(uow, cid, Position(b, r, b - r, 0))
    rid = uow.next_ids("revenue_recognition", 1)
    uow.execute(
        "INSERT INTO revenue_recognition (id, run, kind, contract_id, line_id, entity, currency, customer, period, date,"
        " amount, deferred, unbilled, revenue_role, event_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (rid, f"wallet.expired:{p['wallet']}", "revenue", cid, "breakage", entity, cur, head["customer"], period,
         day.isoformat(), amount, amount, 0, "revenue", ev.id))


def _record_billing(uow: Any, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        uow.executemany(
            "INSERT INTO revenue_billing (document, line_no, kind, invoice, contract_id, line_id, entity, currency,"
            " date, net, treatment, revenue_role, period_start, period_end, description)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (document, line_no) DO NOTHING", rows)


def _metered(uow: Any, contract_id: str, line_id: str) -> bool:
    row = uow.one("SELECT treatment, ssp FROM revenue_obligation WHERE contract_id = ? AND line_id = ?",
                  (contract_id, line_id))
    return bool(row) and (row[0] == "usage" or row[1] is None)


def _standalone(uow: Any, cid: str, line_id: str, entity: str, currency: str, customer: str, treatment: str,
                ln: Mapping[str, Any]) -> None:
    uow.execute(
        "INSERT INTO revenue_contract (contract_id, entity, currency, customer, billed, recognised, deferred, unbilled,"
        " transaction_price, updated_at) VALUES (?,?,?,?,0,0,0,0,0,?) ON CONFLICT (contract_id) DO NOTHING",
        (cid, entity, currency, customer, uow.now()))
    uow.execute(
        "INSERT INTO revenue_obligation (contract_id, line_id, seq, treatment, revenue_role, product_family, ssp,"
        " allocated) VALUES (?,?,?,?,?,?,NULL,0) ON CONFLICT (contract_id, line_id) DO NOTHING",
        (cid, line_id, int(ln["line_no"]), treatment,
         str(ln.get("revenue_role") or model.DEFAULT_REVENUE_ROLE.get(treatment, "revenue")), ln.get("product_family")))


def _standalone_replan(uow: Any, contract_id: str) -> None:
    """A standalone (invoice) obligation has no contract events: its schedule is its adjustments."""
    row = uow.one("SELECT entity FROM revenue_contract WHERE contract_id = ?", (contract_id,))
    calendar = entity_calendar(uow, row[0])
    pieces = _adjustments(uow, contract_id)
    plan = ContractPlan(contract_id, row[0], "", "", (), ())
    _sync_schedule(uow, plan, model.entries(pieces, calendar), calendar)
    uow.execute("UPDATE revenue_obligation SET allocated = (SELECT COALESCE(SUM(amount), 0) FROM revenue_adjustment a"
                " WHERE a.contract_id = revenue_obligation.contract_id AND a.line_id = revenue_obligation.line_id)"
                " WHERE contract_id = ?", (contract_id,))


@handles("credit_memo.issued", "revenue")
def on_credit_memo_issued(uow: Any, ev: Event) -> None:
    """A credit memo lowers the price of what it credits: billed goes down, and the credited amount comes
    off the obligation's schedule over the credited line's service period (at once when it has none)."""
    p = ev.payload
    cur, day, memo, invoice, entity = (str(p["currency"]), str(p["date"]), str(p["credit_memo"]), str(p["invoice"]),
                                       str(p["entity"]))
    inv_lines = uow.dicts("SELECT line_no, contract_id, line_id, net, treatment, revenue_role, period_start, period_end,"
                          " description"
                          " FROM revenue_billing WHERE document = ? AND kind = 'invoice' ORDER BY line_no", (invoice,))
    if not inv_lines and _legacy_invoice(uow, invoice):
        _credit_legacy_invoice(uow, p)
        return
    if not inv_lines:
        raise NotReady(f"credit memo {memo} credits invoice {invoice}, not seen by revenue recognition yet")
    targets = _memo_targets(p.get("lines") or (), inv_lines, cur)
    billed: dict[str, list[_Billed]] = defaultdict(list)
    rows, adjustments = [], []
    for k, (memo_line, src, amount) in enumerate(targets, 1):
        cid, line_id = str(src["contract_id"]), str(src["line_id"])
        rows.append((memo, k, "credit_memo", invoice, cid, line_id, entity, cur, day, -amount, src["treatment"],
                     src["revenue_role"], src["period_start"], src["period_end"], str(memo_line.get("description") or "")))
        first, last = day, day
        if src["treatment"] == "ratable" and src["period_start"] and src["period_end"]:
            first, last = str(src["period_start"]), str(src["period_end"])
        adjustments.append((cid, line_id, model.CREDIT, first, last, -amount, memo))
        billed[cid].append(_Billed(cid, line_id, -amount, memo_line))
    if adjustments:
        uow.executemany("INSERT INTO revenue_adjustment (contract_id, line_id, kind, first, last, amount, document)"
                        " VALUES (?,?,?,?,?,?,?)", adjustments)
    for cid in sorted(billed):
        replan(uow, cid)
    _book_billing(uow, document=memo, entity=entity, currency=cur, day=day, billed=billed,
                  aggregate=("invoice", invoice))
    _record_billing(uow, rows)


LEGACY = "legacy"  # the obligation treatment of an open invoice migrated from a legacy system


@handles("invoice.migrated", "revenue")
def on_invoice_migrated(uow: Any, ev: Event) -> None:
    """An open invoice migrated from a legacy system (no ``invoice.issued``): its revenue is the legacy system's
    (recognised there, or carried in a migrated contract's opening deferred revenue), so nothing is billed or
    scheduled here. Recognition only learns the invoice, so a credit memo on it is known (a price concession
    on revenue already recognised: see :func:`_credit_legacy_invoice`)."""
    p = ev.payload
    cid = f"{STANDALONE}{p['invoice']}"
    uow.execute(
        "INSERT INTO revenue_contract (contract_id, entity, currency, customer, billed, recognised, deferred, unbilled,"
        " transaction_price, updated_at) VALUES (?,?,?,?,0,0,0,0,0,?) ON CONFLICT (contract_id) DO NOTHING",
        (cid, str(p["entity"]), str(p["currency"]), str(p.get("customer") or ""), uow.now()))
    uow.execute(
        "INSERT INTO revenue_obligation (contract_id, line_id, seq, treatment, revenue_role, product_family, ssp,"
        " allocated) VALUES (?,?,?,?,?,?,NULL,0) ON CONFLICT (contract_id, line_id) DO NOTHING",
        (cid, "1", 1, LEGACY, "revenue", None))


def _legacy_invoice(uow: Any, invoice: str) -> bool:
    return uow.one("SELECT 1 FROM revenue_obligation WHERE contract_id = ? AND treatment = ?",
                   (f"{STANDALONE}{invoice}", LEGACY)) is not None


def _credit_legacy_invoice(uow: Any, p: Mapping[str, Any]) -> None:
    """A credit memo on a migrated legacy invoice: posting books it against deferred revenue like any memo, but
    the revenue it concedes was the legacy system's — recognised there, or carried in a migrated contract's
    opening position (the legacy lines name no contract). It is a reduction of revenue on the memo date: billed
    goes down on the invoice's own obligation (``invoice:<number>``) and the next run recognises it (negative)
    on that date, so deferred revenue returns to what it was."""
    cur, day, memo, invoice, entity = (str(p["currency"]), str(p["date"]), str(p["credit_memo"]), str(p["invoice"]),
                                       str(p["entity"]))
    cid, line_id = f"{STANDALONE}{invoice}", "1"
    rows, adjustments, billed = [], [], []
    for k, ml in enumerate(p.get("lines") or (), 1):
        amount = to_minor(ml["net"], cur)
        if not amount:
            continue
        rows.append((memo, k, "credit_memo", invoice, cid, line_id, entity, cur, day, -amount, LEGACY,
                     str(ml.get("revenue_role") or "revenue"), None, None, str(ml.get("description") or "")))
        adjustments.append((cid, line_id, model.CREDIT, day, day, -amount, memo))
        billed.append(_Billed(cid, line_id, -amount, ml))
    if not rows:
        return
    uow.executemany("INSERT INTO revenue_adjustment (contract_id, line_id, kind, first, last, amount, document)"
                    " VALUES (?,?,?,?,?,?,?)", adjustments)
    replan(uow, cid)
    _book_billing(uow, document=memo, entity=entity, currency=cur, day=day, billed={cid: billed},
                  aggregate=("invoice", invoice))
    _record_billing(uow, rows)


def _memo_targets(memo_lines: Iterable[Mapping[str, Any]], inv_lines: Sequence[Mapping[str, Any]],
                  currency: str) -> list[tuple[Mapping[str, Any], Mapping[str, Any], int]]:
    """Which invoice line each credit memo line credits: by contract and line when the memo line says so;
    else the memo lines follow the credited invoice lines in order, each described "Credit: <the invoice
    line's description>"; what cannot be matched is spread over the invoice's lines of the same revenue
    role by their net amounts."""
    by_key = {(str(r["contract_id"]), str(r["line_id"])): r for r in inv_lines}
    positive = [r for r in inv_lines if int(r["net"]) > 0]
    out: list[tuple[Mapping[str, Any], Mapping[str, Any], int]] = []
    cursor = 0
    for ml in memo_lines:
        amount = to_minor(ml["net"], currency)
        key = (str(ml.get("contract_id")), str(ml.get("line_id")))
        if ml.get("contract_id") and key in by_key:
            out.append((ml, by_key[key], amount))
            continue
        rest = range(cursor, len(positive))
        found = [i for i in rest if f"Credit: {positive[i]['description']}" == ml.get("description")] or \
            [i for i in rest if positive[i]["revenue_role"] == ml.get("revenue_role")
             and positive[i]["treatment"] == ml.get("treatment")]
        if found:
            cursor = found[0] + 1
            out.append((ml, positive[found[0]], amount))
            continue
        pool = [r for r in positive if r["revenue_role"] == ml.get("revenue_role")] or positive
        for r, part in zip(pool, allocate(amount, [int(r["net"]) for r in pool]), strict=True):
            if part:
                out.append((ml, r, part))
    return out


# =========================================================================== the recognition run


@payload
class RevrecRun:
    through: str
    entity: str | None = None
    dry_run: bool = False


@dataclass
class _Delta:
    contract_id: str
    line_id: str
    entity: str
    period: str
    amount: int


def _target_entities(uow: Any, entity: str | None) -> list[LegalEntity]:
    return [get_entity(uow, entity)] if entity else list_entities(uow)


@dataclass
class RunPlan:
    """What a run through a date changes: revenue per (contract, line, period posted in); the schedule rows
    that finish by the date (all recognised: one set-based update) and the partial ones (per row)."""

    through: date
    entities: tuple[str, ...]
    deltas: dict[tuple[str, str, str], int]
    partial: list[tuple[int, str, str, int]]  # (recognised, entity, period, row id) of rows running on
    finished: int  # rows that finish by the date


def compute_run(uow: Any, through: date, entities: Sequence[str], *, lock: bool = False) -> RunPlan:
    """What a run through ``through`` would change (reads only)."""
    deltas: dict[tuple[str, str, str], int] = defaultdict(int)
    day = through.isoformat()
    closed: dict[tuple[str, str], bool] = {}
    target = {ent: entity_calendar(uow, ent).period_of(through) for ent in entities}
    where = " AND entity = ?" if len(entities) == 1 else ""
    one = (entities[0],) if len(entities) == 1 else ()

    def post_in(ent: str, period: str) -> str:
        key = (ent, period)
        if key not in closed:
            closed[key] = period_status(uow, ent, period) == "closed"
        return target[ent] if closed[key] else period

    finished = 0
    # rows that end by the date are due in full
    for ent, cid, line, period, amount, done in uow.all(
            "SELECT entity, contract_id, line_id, period, amount, recognised FROM revenue_schedule"
            f" WHERE active AND first <= ? AND last <= ?{where}", (day, day, *one)):
        if ent not in target:
            continue
        finished += 1
        if amount != done:
            deltas[(cid, line, post_in(ent, period))] += int(amount) - int(done)
    partial: list[tuple[int, str, str, int]] = []
    for rid, ent, cid, line, period, first, last, amount, done in uow.all(
            "SELECT id, entity, contract_id, line_id, period, first, last, amount, recognised FROM revenue_schedule"
            f" WHERE active AND first <= ? AND last > ?{where}{uow.for_update() if lock else ''}", (day, day, *one)):
        if ent not in target:
            continue
        now = model.due(int(amount), date.fromisoformat(first), date.fromisoformat(last), through)
        if now != int(done):
            deltas[(cid, line, post_in(ent, period))] += now - int(done)
            partial.append((now, ent, period, int(rid)))
    return RunPlan(through, tuple(target), {k: v for k, v in deltas.items() if v}, partial, finished)


def _apply_run(uow: Any, plan: RunPlan) -> None:
    """Record on the schedule what the run recognised."""
    day = plan.through.isoformat()
    for ent in plan.entities:
        uow.execute("UPDATE revenue_schedule SET recognised = amount, active = ? WHERE active AND entity = ?"
                    " AND first <= ? AND last <= ?", (False, ent, day, day))
    if plan.partial:
        uow.executemany("UPDATE revenue_schedule SET recognised = ? WHERE entity = ? AND bucket = ? AND id = ?",
                        plan.partial)


@contextmanager
def _batch_gc() -> Iterator[None]:
    """A run allocates many short-lived, acyclic objects; the cyclic collector would rescan the whole heap
    again and again while it does (a third of a large run's time). It runs once at the end instead."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@command("revrec.run", RevrecRun, roles=RUN_ROLES,
         summary="Recognise revenue due through a date: one revenue.recognized event per entity, currency and period")
def revrec_run(uow: Any, cmd: RevrecRun) -> dict[str, Any]:
    through = parse_date(cmd.through, field="through")
    ents = _target_entities(uow, cmd.entity)
    for ent in ents:
        period = entity_calendar(uow, ent.code).period_of(through)
        if period_status(uow, ent.code, period) == "closed":
            raise PeriodClosedError(f"period {period} of {ent.code} is closed: a recognition run through {through}"
                                    " would post into it; reopen it or run through a date in an open period",
                                    field="through", record=ent.code, period=period)
    with _batch_gc():
        return _run(uow, cmd, through, ents)


def _run(uow: Any, cmd: RevrecRun, through: date, ents: Sequence[LegalEntity]) -> dict[str, Any]:
    if not cmd.dry_run and not uow.dialect.is_sqlite:
        # one run at a time, and no schedule or position change under it (SQLite's writer lock does the same)
        uow.execute("LOCK TABLE revenue_schedule IN SHARE ROW EXCLUSIVE MODE")
    plan = compute_run(uow, through, [e.code for e in ents], lock=not cmd.dry_run)
    deltas = plan.deltas
    cids = {cid for cid, _, _ in deltas}
    heads = _heads(uow, cids, lock=not cmd.dry_run)
    metas, first_line = _line_meta(uow, cids)
    calendars = {e.code: entity_calendar(uow, e.code) for e in ents}
    moves: dict[str, list[model.Move]] = defaultdict(list)
    days: dict[tuple[str, str], date] = {}
    for (cid, line, period), amount in deltas.items():
        ent = heads[cid]["entity"]
        day = days.get((ent, period))
        if day is None:
            day = days[(ent, period)] = min(calendars[ent].bounds(period)[1], through)
        moves[cid].append(model.Move(day, amount=amount, key=(line, period)))
    since = min((m.day for ms in moves.values() for m in ms), default=through)
    booked = _booked_since(uow, [e.code for e in ents], since.isoformat(), cids)
    groups: dict[tuple[str, str, str, date], list[tuple[Any, ...]]] = defaultdict(list)
    positions: dict[str, Position] = {}
    for cid in sorted(moves):
        head = heads[cid]
        pos = Position(int(head["billed"]), int(head["recognised"]), int(head["deferred"]), int(head["unbilled"]))
        bookings, positions[cid] = model.settle(pos, booked.get(cid, ()),
                                                sorted(moves[cid], key=lambda m: (m.day, m.key)), netting=_nets(cid))
        ent, cur = head["entity"], head["currency"]
        for bk in bookings:
            if bk.key is None:
                line, period, kind = first_line[cid], calendars[ent].period_of(bk.day), "reclass"
            else:
                (line, period), kind = bk.key, "revenue"
            role, family = metas.get((cid, line), ("revenue", None))
            groups[(ent, cur, period, bk.day)].append((cid, line, role, family, head["customer"], bk, kind))
    total: dict[tuple[str, str], int] = defaultdict(int)
    for (code, cur, _, _), items in groups.items():
        total[(code, cur)] += sum(i[5].amount for i in items)
    summary: dict[str, Any] = {
        "through": through.isoformat(), "entity": cmd.entity, "dry_run": cmd.dry_run,
        "lines": sum(len(v) for v in groups.values()), "rows": plan.finished + len(plan.partial),
        "recognized": [{"entity": e, "currency": c, "amount": format_minor(a, c)} for (e, c), a in sorted(total.items())]}
    if cmd.dry_run:
        summary["events"] = [{"entity": e, "currency": c, "period": p, "date": d.isoformat(), "lines": len(v)}
                             for (e, c, p, d), v in sorted(groups.items())]
        return summary
    if not groups:
        # nothing due: no run is recorded and no run number taken, so a re-run (an operator repeating the command
        # after a crash, a scheduler running twice) leaves the numbering of later runs as it was
        _apply_run(uow, plan)
        _save_positions(uow, positions)
        summary.update({"run": None, "events": [],
                        "note": f"nothing due through {through.isoformat()}: no run recorded"})
        return summary
    run = _next_run_id(uow)
    events = []
    for (code, cur, period, day), items in sorted(groups.items()):
        event_id = _emit_recognition(uow, run=run, entity=code, currency=cur, day=day, period=period, items=items,
                                     aggregate=("revenue_run", f"{run}:{code}:{cur}:{day.isoformat()}"))
        events.append({"entity": code, "currency": cur, "period": period, "date": day.isoformat(), "lines": len(items),
                       "amount": format_minor(sum(i[5].amount for i in items), cur), "event": event_id})
    _apply_run(uow, plan)
    _save_positions(uow, positions)
    uow.execute("INSERT INTO revenue_run (run, entity, through, lines, events, actor, created_at) VALUES (?,?,?,?,?,?,?)",
                (run, cmd.entity, through.isoformat(), summary["lines"], len(events), uow.actor, uow.now()))
    summary.update({"run": run, "events": events})
    return summary


def _save_positions(uow: Any, positions: Mapping[str, Position]) -> None:
    if positions:
        now = uow.now()
        uow.executemany("UPDATE revenue_contract SET billed = ?, recognised = ?, deferred = ?, unbilled = ?,"
                        " updated_at = ? WHERE contract_id = ?",
                        [(p.billed, p.recognised, p.deferred, p.unbilled, now, cid) for cid, p in positions.items()])


def _booked_since(uow: Any, entities: Sequence[str], day: str, contract_ids: set[str]) -> dict[str, list[model.Booked]]:
    """Billing and recognition lines booked on or after ``day`` for the given contracts."""
    out: dict[str, list[model.Booked]] = defaultdict(list)
    if not contract_ids:
        return out
    for ent in entities:
        for cid, d, net in uow.all("SELECT contract_id, date, net FROM revenue_billing WHERE entity = ? AND date >= ?",
                                   (ent, day)):
            if cid in contract_ids:
                out[cid].append(model.Booked(date.fromisoformat(d), billed=int(net)))
        period = entity_calendar(uow, ent).period_of(date.fromisoformat(day))
        for cid, d, a, df, u in uow.all("SELECT contract_id, date, amount, deferred, unbilled FROM revenue_recognition"
                                        " WHERE entity = ? AND period >= ? AND date >= ?", (ent, period, day)):
            if cid in contract_ids:
                out[cid].append(model.Booked(date.fromisoformat(d), amount=int(a), deferred=int(df), unbilled=int(u)))
    return out


def _next_run_id(uow: Any) -> str:
    n = int(uow.scalar("SELECT COUNT(*) FROM revenue_run") or 0) + 1
    while uow.one("SELECT 1 FROM revenue_run WHERE run = ?", (f"RR-{n:06d}",)):
        n += 1
    return f"RR-{n:06d}"


def _chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _heads(uow: Any, contract_ids: set[str], *, lock: bool = False) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    ids = sorted(contract_ids)
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for r in uow.dicts("SELECT contract_id, entity, currency, customer, billed, recognised, deferred, unbilled"
                           f" FROM revenue_contract WHERE contract_id IN ({marks}){uow.for_update() if lock else ''}",
                           list(chunk)):
            out[r["contract_id"]] = r
    return out


def _line_meta(uow: Any, contract_ids: set[str]
               ) -> tuple[dict[tuple[str, str], tuple[str, str | None]], dict[str, str]]:
    """Revenue role and product family per obligation, and each contract's first obligation."""
    out: dict[tuple[str, str], tuple[str, str | None]] = {}
    first: dict[str, tuple[int, str]] = {}
    ids = sorted(contract_ids)
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for cid, line, role, family, seq in uow.all(
                "SELECT contract_id, line_id, revenue_role, product_family, seq FROM revenue_obligation"
                f" WHERE contract_id IN ({marks})", list(chunk)):
            out[(cid, line)] = (role, family)
            if cid not in first or (int(seq), line) < first[cid]:
                first[cid] = (int(seq), line)
    return out, {cid: v[1] for cid, v in first.items()}


# =========================================================================== queries


@payload
class AllocationQuery:
    contract: str


@query("allocation", AllocationQuery, roles=READ_ROLES,
       summary="A contract's transaction price allocated to its obligations by relative SSP")
def allocation(uow: Any, q: AllocationQuery) -> dict[str, Any]:
    plan = contract_plan(uow, q.contract)
    cur = plan.currency
    return {"contract": plan.contract_id, "currency": cur,
            "transaction_price": format_minor(plan.transaction_price, cur),
            "lines": [{"line_id": a.line_id, "ssp": format_minor(a.ssp, cur), "allocated": format_minor(a.allocated, cur),
                       "treatment": _treatment(plan, a.line_id)} for a in plan.allocations()],
            "terms": [{"term": t.term, "transaction_price": format_minor(t.transaction_price, cur),
                       "lines": [{"line_id": a.line_id, "ssp": format_minor(a.ssp, cur),
                                  "allocated": format_minor(a.allocated, cur)} for a in t.allocations]}
                      for t in plan.terms]}


def _treatment(plan: ContractPlan, line_id: str) -> str | None:
    facts = plan.facts_of(line_id)
    return None if facts is None else facts.treatment


def parse_period_range(text: str, field: str = "period") -> tuple[str, str]:
    """``YYYY-MM`` or an inclusive ``YYYY-MM..YYYY-MM``."""
    first, _, last = str(text).partition("..")
    first, last = first.strip(), (last.strip() or first.strip())
    check_period(first, field=field)
    check_period(last, field=field)
    if last < first:
        raise ValidationError(f"{field} {text!r}: the range ends before it starts", field=field)
    return first, last


@payload
class RevenueQuery:
    period: str
    contract: str | None = None
    line_id: str | None = None
    customer: str | None = None
    entity: str | None = None


def _customer_ids(uow: Any, customer: str) -> list[str]:
    ids = [customer]
    try:
        from closeloop.customers.service import get_customer

        found = get_customer(uow, customer)
        if found.external_id not in ids:
            ids.append(found.external_id)
    except Exception:  # noqa: BLE001 - an unknown customer simply matches nothing
        pass
    return ids


@query("revenue", RevenueQuery, roles=READ_ROLES, summary="Revenue recognised in a period or range (positive = revenue)")
def revenue(uow: Any, q: RevenueQuery) -> dict[str, Any]:
    first, last = parse_period_range(q.period)
    sql = ("SELECT entity, currency, date, period, SUM(amount) FROM revenue_recognition WHERE period >= ? AND period <= ?")
    params: list[Any] = [first, last]
    if q.contract:
        sql += " AND contract_id = ?"
        params.append(q.contract)
    if q.line_id:
        sql += " AND line_id = ?"
        params.append(q.line_id)
    if q.customer:
        ids = _customer_ids(uow, q.customer)
        sql += f" AND customer IN ({','.join('?' * len(ids))})"
        params.extend(ids)
    if q.entity:
        get_entity(uow, q.entity)
        sql += " AND entity = ?"
        params.append(q.entity)
    rows = uow.all(sql + " GROUP BY entity, currency, date, period", params)
    currencies = {r[1] for r in rows}
    by_period: dict[str, int] = defaultdict(int)
    if len(currencies) <= 1:
        cur = next(iter(currencies)) if currencies else _default_currency(uow, q.entity)
        for _, _, _, period, amount in rows:
            by_period[period] += int(amount)
    else:
        functional = {get_entity(uow, r[0]).currency for r in rows}
        if len(functional) > 1:
            raise ValidationError("revenue in several currencies across entities with different functional"
                                  " currencies: name an entity (or a contract)", field="entity")
        cur = functional.pop()
        for _, c, day, period, amount in rows:
            by_period[period] += convert(uow, int(amount), c, cur, day)
    total = sum(by_period.values())
    return {"period": q.period, "currency": cur, "recognized": format_minor(total, cur),
            "by_period": {p: format_minor(by_period[p], cur) for p in sorted(by_period)}}


def _default_currency(uow: Any, entity: str | None) -> str:
    if entity:
        return get_entity(uow, entity).currency
    ents = list_entities(uow)
    return ents[0].currency if ents else "USD"


# --------------------------------------------------------------------------- deferred revenue


def subledger_positions(uow: Any, as_of: date, entity: str | None = None) -> dict[str, dict[str, Any]]:
    """Per contract as of the end of ``as_of``: billed, recognised, contract liability and asset."""
    day = as_of.isoformat()
    where, params = ("", []) if entity is None else (" AND entity = ?", [entity])
    out: dict[str, dict[str, Any]] = {}
    for cid, ent, cur, cust in uow.all(f"SELECT contract_id, entity, currency, customer FROM revenue_contract"
                                       f" WHERE 1 = 1{where}", params):
        out[cid] = {"entity": ent, "currency": cur, "customer": cust, "billed": 0, "recognised": 0}
    for cid, amount in uow.all(f"SELECT contract_id, SUM(net) FROM revenue_billing WHERE date <= ?{where}"
                               " GROUP BY contract_id", [day, *params]):
        if cid in out:
            out[cid]["billed"] = int(amount)
    for cid, amount in uow.all(f"SELECT contract_id, SUM(amount) FROM revenue_recognition WHERE date <= ?{where}"
                               " GROUP BY contract_id", [day, *params]):
        if cid in out:
            out[cid]["recognised"] = int(amount)
    for cid, v in out.items():
        net = v["billed"] - v["recognised"]
        v["deferred"], v["unbilled"] = (max(net, 0), max(-net, 0)) if _nets(cid) else (net, 0)
    return out


def _by_currency(positions: Mapping[str, Mapping[str, Any]], key: str) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = defaultdict(int)
    for v in positions.values():
        out[(v["entity"], v["currency"])] += int(v[key])
    return out


def gl_by_currency(uow: Any, entity: str, role: str, as_of: date) -> dict[str, tuple[int, int]]:
    """The GL balance of an account role per transaction currency as of ``as_of``: (functional, transaction),
    debit positive. Read-only from the ledger's maintained balances plus the lines of the open part of the
    period (the ledger exposes no per-currency balance query yet)."""
    acct = accounts(uow, entity).get(role)
    if acct is None:
        return {}
    calendar = entity_calendar(uow, entity)
    period = calendar.period_of(as_of)
    first, last = calendar.bounds(period)
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    if as_of == last:
        rows = uow.all("SELECT currency, SUM(amount), SUM(txn_amount) FROM ledger_balance WHERE entity = ?"
                       " AND account_id = ? AND period <= ? GROUP BY currency", (entity, acct.id, period))
    else:
        rows = uow.all("SELECT currency, SUM(amount), SUM(txn_amount) FROM ledger_balance WHERE entity = ?"
                       " AND account_id = ? AND period < ? GROUP BY currency", (entity, acct.id, period))
        rows += uow.all("SELECT l.currency, SUM(l.amount), SUM(l.txn_amount) FROM journal_entry e JOIN journal_line l"
                        " ON l.entry_id = e.id WHERE e.entity = ? AND e.date >= ? AND e.date <= ? AND l.account_id = ?"
                        " GROUP BY l.currency", (entity, first.isoformat(), as_of.isoformat(), acct.id))
    for cur, amount, txn in rows:
        out[cur][0] += int(amount or 0)
        out[cur][1] += int(txn or 0)
    return {k: (v[0], v[1]) for k, v in out.items()}


def in_functional(uow: Any, entity: str, as_of: date, amounts: Mapping[str, int],
                  role: str = "deferred_revenue") -> int:
    """Document-currency amounts of an entity in its functional currency. A foreign-currency contract
    balance is a non-monetary item carried at the rates it was booked at (IAS 21.23(b)): its value is
    the GL's functional amount for that currency scaled by the subledger / GL transaction amounts (exact
    when they agree); with nothing in the GL, the as-of rate."""
    functional = get_entity(uow, entity).currency
    total = 0
    gl: dict[str, tuple[int, int]] | None = None
    for cur, amount in amounts.items():
        if cur == functional or not amount:
            total += amount
            continue
        if gl is None:
            gl = gl_by_currency(uow, entity, role, as_of)
        f, t = gl.get(cur, (0, 0))
        if t:
            total += round_fraction(Fraction(f * amount, t))
        else:
            total += convert(uow, amount, cur, functional, as_of.isoformat())
    return total


@payload
class DeferredRevenueQuery:
    as_of: str | None = None
    entity: str | None = None


@query("deferred_revenue", DeferredRevenueQuery, roles=READ_ROLES,
       summary="Deferred revenue (contract liabilities) as of a date, positive = a liability")
def deferred_revenue(uow: Any, q: DeferredRevenueQuery) -> dict[str, Any]:
    as_of = parse_date(q.as_of, field="as_of") if q.as_of else uow.today()
    ents = _target_entities(uow, q.entity)
    positions = subledger_positions(uow, as_of, q.entity)
    liab = _by_currency(positions, "deferred")
    asset = _by_currency(positions, "unbilled")
    out: list[dict[str, Any]] = []
    for ent in ents:
        docs = {c: a for (e, c), a in liab.items() if e == ent.code}
        assets = {c: a for (e, c), a in asset.items() if e == ent.code}
        out.append({"entity": ent.code, "currency": ent.currency,
                    "amount": in_functional(uow, ent.code, as_of, docs),
                    "unbilled": in_functional(uow, ent.code, as_of, assets, "unbilled_receivable"),
                    "by_currency": {c: format_minor(a, c) for c, a in sorted(docs.items())}})
    if len(out) == 1:
        e = out[0]
        return {"as_of": as_of.isoformat(), "entity": e["entity"], "currency": e["currency"],
                "amount": format_minor(e["amount"], e["currency"]),
                "unbilled_receivable": format_minor(e["unbilled"], e["currency"]), "by_currency": e["by_currency"]}
    currencies = {e["currency"] for e in out}
    result: dict[str, Any] = {"as_of": as_of.isoformat(),
                              "entities": [{"entity": e["entity"], "currency": e["currency"],
                                            "amount": format_minor(e["amount"], e["currency"]),
                                            "unbilled_receivable": format_minor(e["unbilled"], e["currency"])}
                                           for e in out]}
    if len(currencies) == 1:
        cur = currencies.pop()
        result.update({"currency": cur, "amount": format_minor(sum(e["amount"] for e in out), cur),
                       "unbilled_receivable": format_minor(sum(e["unbilled"] for e in out), cur)})
    return result


# --------------------------------------------------------------------------- schedules and reports


@payload
class ScheduleQuery:
    contract: str
    line_id: str | None = None


@query("revenue_schedule", ScheduleQuery, roles=READ_ROLES,
       summary="A contract's revenue schedule by obligation and period, with what runs recognised")
def revenue_schedule(uow: Any, q: ScheduleQuery) -> dict[str, Any]:
    head = uow.dicts("SELECT currency, entity FROM revenue_contract WHERE contract_id = ?", (q.contract,))
    if not head:
        raise NotFoundError(f"contract {q.contract!r} is not known to revenue recognition", field="contract",
                            record=q.contract)
    cur = head[0]["currency"]
    sql = "SELECT line_id, period, amount, recognised FROM revenue_schedule WHERE contract_id = ?"
    params: list[Any] = [q.contract]
    if q.line_id:
        sql += " AND line_id = ?"
        params.append(q.line_id)
    lines: dict[str, dict[str, Any]] = {}
    for line, period, amount, done in uow.all(sql + " ORDER BY line_id, first, id", params):
        item = lines.setdefault(line, {"line_id": line, "scheduled": 0, "recognized": 0, "periods": defaultdict(int),
                                       "pending": 0})
        item["scheduled"] += int(amount)
        item["recognized"] += int(done)
        if period is None:
            item["pending"] += int(amount)
        else:
            item["periods"][period] += int(amount)
    obligations = {r["line_id"]: r for r in uow.dicts(
        "SELECT line_id, seq, treatment, revenue_role, ssp, allocated FROM revenue_obligation WHERE contract_id = ?",
        (q.contract,))}
    migrated = _migration(uow, q.contract)
    legacy = json.loads(migrated["lines"]) if migrated else {}
    out = []
    for line_id in sorted(lines, key=lambda x: (obligations.get(x, {}).get("seq", 0), x)):
        item = lines[line_id]
        ob = obligations.get(line_id, {})
        row = {"line_id": line_id, "treatment": ob.get("treatment"), "revenue_role": ob.get("revenue_role"),
               "allocated": format_minor(int(ob.get("allocated") or 0), cur),
               "scheduled": format_minor(item["scheduled"], cur),
               "recognized": format_minor(item["recognized"], cur),
               "pending": format_minor(item["pending"], cur),
               "periods": {p: format_minor(a, cur) for p, a in sorted(item["periods"].items()) if a}}
        if migrated:  # the schedule holds the days after the cutover; the legacy system recognised the rest
            done = legacy.get(line_id, {})
            row["legacy_billed"] = format_minor(int(done.get("billed", 0)), cur)
            row["legacy_recognized"] = format_minor(int(done.get("recognised", 0)), cur)
        out.append(row)
    result: dict[str, Any] = {"contract": q.contract, "currency": cur, "lines": out}
    if migrated:
        result["migrated"] = {"cutover": migrated["cutover"], "billed_through": migrated["billed_through"],
                              "system": migrated["system"]}
    return result


@payload
class MigratedQuery:
    entity: str | None = None
    contract: str | None = None


@query("revenue_migrated", MigratedQuery, roles=READ_ROLES,
       summary="Contracts migrated from a legacy system: what it billed and recognised, the position carried in")
def revenue_migrated(uow: Any, q: MigratedQuery) -> dict[str, Any]:
    """Per migrated contract: the cutover, the billed-through date, what the legacy system billed (through that
    date) and recognised (through the cutover), and the opening contract liability (deferred revenue) or asset
    (unbilled receivable) recognition carries from the cutover; totals per entity and currency — what the
    opening balances' deferred revenue and unbilled receivable must hold for those contracts."""
    sql = ("SELECT m.contract_id, m.entity, c.currency, m.cutover, m.billed_through, m.system, m.lines"
           " FROM revenue_migration m JOIN revenue_contract c ON c.contract_id = m.contract_id WHERE 1 = 1")
    params: list[Any] = []
    if q.entity:
        get_entity(uow, q.entity)
        sql += " AND m.entity = ?"
        params.append(q.entity)
    if q.contract:
        sql += " AND m.contract_id = ?"
        params.append(q.contract)
    contracts = []
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for cid, ent, cur, cutover, through, system, text in uow.all(sql + " ORDER BY m.entity, m.contract_id", params):
        lines = json.loads(text)
        billed = sum(int(v["billed"]) for v in lines.values())
        done = sum(int(v["recognised"]) for v in lines.values())
        net = billed - done
        total = totals[(ent, cur)]
        total[0] += max(net, 0)
        total[1] += max(-net, 0)
        total[2] += 1
        contracts.append({"contract_id": cid, "entity": ent, "currency": cur, "cutover": cutover,
                          "billed_through": through, "system": system, "legacy_billed": format_minor(billed, cur),
                          "legacy_recognized": format_minor(done, cur), "deferred": format_minor(max(net, 0), cur),
                          "unbilled": format_minor(max(-net, 0), cur)})
    return {"count": len(contracts), "contracts": contracts,
            "totals": [{"entity": e, "currency": c, "contracts": v[2], "deferred": format_minor(v[0], c),
                        "unbilled": format_minor(v[1], c)} for (e, c), v in sorted(totals.items())]}


@payload
class WaterfallQuery:
    period: str  # YYYY-MM..YYYY-MM
    entity: str | None = None
    contract: str | None = None


@query("revenue_waterfall", WaterfallQuery, roles=READ_ROLES,
       summary="Revenue by month: recognised where runs have posted it, scheduled where they have not yet")
def revenue_waterfall(uow: Any, q: WaterfallQuery) -> dict[str, Any]:
    first, last = parse_period_range(q.period)
    periods = periods_between(first, last)
    where, params = "", []
    if q.entity:
        where += " AND entity = ?"
        params.append(q.entity)
    if q.contract:
        where += " AND contract_id = ?"
        params.append(q.contract)
    currency: dict[str, str] = dict(uow.all("SELECT contract_id, currency FROM revenue_contract"))
    rows: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for cid, line, period, amount in uow.all(
            "SELECT contract_id, line_id, period, SUM(amount) FROM revenue_recognition WHERE period >= ? AND period <= ?"
            f"{where} GROUP BY contract_id, line_id, period", [first, last, *params]):
        rows[(cid, line)][period][0] += int(amount)
    for cid, line, period, amount, done in uow.all(
            "SELECT contract_id, line_id, period, SUM(amount), SUM(recognised) FROM revenue_schedule"
            f" WHERE period >= ? AND period <= ?{where} GROUP BY contract_id, line_id, period",
            [first, last, *params]):
        left = int(amount) - int(done)
        if left:
            rows[(cid, line)][period][1] += left
    totals: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    out = []
    for (cid, line) in sorted(rows):
        cur = currency.get(cid, "USD")
        cells = rows[(cid, line)]
        for p, (rec, sch) in cells.items():
            totals[cur][p][0] += rec
            totals[cur][p][1] += sch
        out.append({"contract_id": cid, "line_id": line, "currency": cur,
                    "recognized": [format_minor(cells[p][0], cur) if p in cells else format_minor(0, cur)
                                   for p in periods],
                    "scheduled": [format_minor(cells[p][1], cur) if p in cells else format_minor(0, cur)
                                  for p in periods]})
    return {"periods": periods, "rows": out,
            "totals": [{"currency": cur, "recognized": [format_minor(t[p][0], cur) for p in periods],
                        "scheduled": [format_minor(t[p][1], cur) for p in periods],
                        "total": [format_minor(t[p][0] + t[p][1], cur) for p in periods]}
                       for cur, t in sorted(totals.items())]}


@payload
class RollforwardQuery:
    period: str  # YYYY-MM or YYYY-MM..YYYY-MM (one roll-forward per month)
    entity: str | None = None


@query("deferred_revenue_rollforward", RollforwardQuery, roles=READ_ROLES,
       summary="Deferred revenue roll-forward per month: opening, billed, recognised, closing, tied to the GL")
def deferred_revenue_rollforward(uow: Any, q: RollforwardQuery) -> dict[str, Any]:
    first, last = parse_period_range(q.period)
    ents = _target_entities(uow, q.entity)
    out = []
    for ent in ents:
        calendar = entity_calendar(uow, ent.code)
        for period in periods_between(first, last):
            start, end = calendar.bounds(period)
            opening = _by_currency(subledger_positions(uow, start - ONE_DAY, ent.code), "deferred")
            closing = _by_currency(subledger_positions(uow, end, ent.code), "deferred")
            billed = dict(((e, c), int(a)) for e, c, a in uow.all(
                "SELECT entity, currency, SUM(net) FROM revenue_billing WHERE entity = ? AND date >= ? AND date <= ?"
                " AND kind <> 'migration' GROUP BY entity, currency", (ent.code, start.isoformat(), end.isoformat())))
            # contract liabilities carried in from a legacy system (a contract asset goes to unbilled receivable)
            migrated: dict[tuple[str, str], int] = defaultdict(int)
            for c, net in uow.all(
                    "SELECT currency, SUM(net) FROM revenue_billing WHERE entity = ? AND date >= ? AND date <= ?"
                    " AND kind = 'migration' GROUP BY contract_id, currency",
                    (ent.code, start.isoformat(), end.isoformat())):
                migrated[(ent.code, c)] += max(int(net), 0)
            moved: dict[tuple[str, str, bool], int] = {}
            for c, kind, amount in uow.all(
                    "SELECT currency, kind, SUM(deferred) FROM revenue_recognition WHERE entity = ? AND period = ?"
                    " AND date >= ? AND date <= ? GROUP BY currency, kind",
                    (ent.code, period, start.isoformat(), end.isoformat())):
                key = (ent.code, c, kind != "revenue")
                moved[key] = moved.get(key, 0) + int(amount)
            gl = gl_by_currency(uow, ent.code, "deferred_revenue", end)
            currencies = sorted({c for (_, c) in [*opening, *closing, *billed, *migrated]}
                                | {c for (_, c, _) in moved} | set(gl))
            for cur in currencies:
                k = (ent.code, cur)
                recognised = moved.get((ent.code, cur, False), 0)
                offset = moved.get((ent.code, cur, True), 0)
                gl_closing = -gl.get(cur, (0, 0))[1]
                close = closing.get(k, 0)
                out.append({"entity": ent.code, "currency": cur, "period": period,
                            "opening": format_minor(opening.get(k, 0), cur), "billed": format_minor(billed.get(k, 0), cur),
                            "migrated": format_minor(migrated.get(k, 0), cur),
                            "recognized": format_minor(recognised, cur),
                            "contract_asset_offset": format_minor(offset, cur),
                            "closing": format_minor(close, cur), "gl_closing": format_minor(gl_closing, cur),
                            "difference": format_minor(close - gl_closing, cur),
                            "ties": close == gl_closing
                            and opening.get(k, 0) + billed.get(k, 0) + migrated.get(k, 0) - recognised - offset
                            == close})
    return {"period": q.period, "rows": out, "ties": all(r["ties"] for r in out)}


@payload
class RpoQuery:
    as_of: str | None = None
    entity: str | None = None
    contract: str | None = None


@query("remaining_performance_obligations", RpoQuery, roles=READ_ROLES,
       summary="Contracted revenue not yet recognised (RPO), within 12 months and later")
def remaining_performance_obligations(uow: Any, q: RpoQuery) -> dict[str, Any]:
    as_of = parse_date(q.as_of, field="as_of") if q.as_of else uow.today()
    horizon = add_months(as_of, 12)
    where, params = "", []
    if q.entity:
        where += " AND s.entity = ?"
        params.append(q.entity)
    if q.contract:
        where += " AND s.contract_id = ?"
        params.append(q.contract)
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    by_contract: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for cid, ent, cur, first, last, amount in uow.all(
            "SELECT s.contract_id, s.entity, c.currency, s.first, s.last, s.amount FROM revenue_schedule s"
            " JOIN revenue_contract c ON c.contract_id = s.contract_id WHERE s.kind NOT IN ('usage', 'carry')"
            f" AND (s.last IS NULL OR s.last > ?){where}", [as_of.isoformat(), *params]):
        amount = int(amount)
        if first is None:
            near, later, pending = 0, 0, amount
        else:
            a, b = date.fromisoformat(first), date.fromisoformat(last)
            done = model.due(amount, a, b, as_of)
            within = model.due(amount, a, b, horizon) - done
            near, later, pending = within, amount - done - within, 0
        for bucket in (totals[(ent, cur)], by_contract[(cid, cur)]):
            bucket[0] += near
            bucket[1] += later
            bucket[2] += pending
    return {"as_of": as_of.isoformat(),
            "totals": [{"entity": e, "currency": c, "within_12_months": format_minor(v[0], c),
                        "later": format_minor(v[1] + v[2], c), "unscheduled": format_minor(v[2], c),
                        "total": format_minor(sum(v), c)} for (e, c), v in sorted(totals.items())],
            "contracts": [{"contract_id": cid, "currency": c, "within_12_months": format_minor(v[0], c),
                           "later": format_minor(v[1] + v[2], c), "total": format_minor(sum(v), c)}
                          for (cid, c), v in sorted(by_contract.items())]}


@payload
class RunStatusQuery:
    through: str
    entity: str | None = None


@query("revenue_run_status", RunStatusQuery, roles=READ_ROLES,
       summary="Whether everything due through a date has been recognised (the close gate)")
def revenue_run_status(uow: Any, q: RunStatusQuery) -> dict[str, Any]:
    through = parse_date(q.through, field="through")
    ents = [e.code for e in _target_entities(uow, q.entity)]
    if not ents:
        return {"done": True, "evidence": "no legal entity"}
    deltas = compute_run(uow, through, ents).deltas
    last = uow.one("SELECT run, through, created_at FROM revenue_run WHERE entity IS NULL OR entity = ?"
                   " ORDER BY created_at DESC LIMIT 1", (q.entity,)) if q.entity else \
        uow.one("SELECT run, through, created_at FROM revenue_run ORDER BY created_at DESC LIMIT 1")
    if deltas:
        return {"done": False, "pending_lines": len(deltas),
                "evidence": f"{len(deltas)} obligation line(s) have revenue due through {through} not recognised yet"
                            f" (last run: {last[0] + ' through ' + last[1] if last else 'never'}); run revrec.run"}
    return {"done": True, "pending_lines": 0,
            "evidence": f"everything due through {through} is recognised"
                        + (f" (last run {last[0]} through {last[1]})" if last else " (nothing was due)")}


# =========================================================================== reconciliation


def unrecognized_by_entity(uow: Any, as_of: date, entity: str | None = None) -> list[dict[str, Any]]:
    """Per entity, in its functional currency: billed revenue not yet recognised, from the schedules and the
    billing recognition has seen — what the GL deferred_revenue balance must be."""
    positions = subledger_positions(uow, as_of, entity)
    liab = _by_currency(positions, "deferred")
    out = []
    for ent in _target_entities(uow, entity):
        docs = {c: a for (e, c), a in liab.items() if e == ent.code}
        out.append({"entity": ent.code, "currency": ent.currency, "amount": in_functional(uow, ent.code, as_of, docs),
                    "record": {"deferred_revenue": f"{ent.code} as of {as_of.isoformat()}"}})
    return out


try:  # the control area's reconciliation framework
    from closeloop.control.recon import SideContext, recon_side

    @recon_side("revenue.unrecognized_schedules", area="revenue",
                description="Revenue schedules: billed and not yet recognised, per entity (functional currency)")
    def _unrecognized_side(uow: Any, ctx: SideContext) -> Iterable[dict[str, Any]]:
        return unrecognized_by_entity(uow, ctx.as_of, ctx.entity)
except ImportError:  # pragma: no cover - an installation without the control area
    pass
