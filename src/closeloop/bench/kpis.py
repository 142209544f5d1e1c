"""kpis.period: every KPI for one period over a year of a 100,000-customer company (issue 9).

Data (seeded; not timed). One legal entity (US01, USD) and, for 2026, the records a year of
order-to-cash leaves behind, written by a seeded generator STRAIGHT into the application's own
SQLite tables with raw sqlite3 executemany (the bill run, posting and cash application are measured
by their own workloads). So that the generator stays correct with the schema, a scratch database
first runs one of each real flow through the command vocabulary — customers, quotes accepted into
contracts, a bill run, a void, a credit memo, a bank statement import with an automatic and an
unmatched receipt, a payment applied by hand, a held invoice released by ``exception.resolve``, a
dispute, a manual journal, a reconciliation break — and the generator clones those rows (and the
payloads of the events they emitted) with new keys, amounts and dates:

- 100,000 active customers (plus a few merged ones) with a realistic master: some without a postal
  code, an address, an e-mail/website or a tax id; a few malformed postcodes and tax ids checked
  by format only; subsidiaries; suspected duplicate pairs (most open, some dismissed);
- one 12-month contract per customer (contracts_contract + its activation change), billing day 1-28,
  five monthly plans in advance; a few planted leaking contracts have one month never billed;
- ~1.2M invoices (billing_invoice + billing_line + ``invoice.issued``), each posted (journal entry
  ``invoice.issued:<number>``: receivable, deferred revenue, tax); 1% voided before posting and
  re-issued the same day; 1% credited (``credit_memo.issued`` + its journal); 0.1% held for tax and
  released by hand (``exception.resolve``); 0.4% disputed (collections_dispute + dispute exception),
  a quarter resolved by a credit memo;
- payments: each invoice paid around its due date (a few never, the rest of December's still open at
  year end), received through one ``bank.import`` per day (``payment.received`` + its journal), applied
  automatically (``payment.applied`` + its journal) or — 2.5% — held unapplied (a low-confidence-match
  exception) and applied by hand with ``payment.apply``, or — 0.5% — by accepting the proposal
  (``exception.resolve``); every command has its audit_log row;
- 300-600 manual journals a month (``journal.post``), a reconciliation run at every month end whose
  breaks open recon_break exceptions (most resolved within weeks), 12 locked close cycles;
- ``journal.posted`` for every entry, and ledger_balance rows aggregated from the lines.

Timed: ``app.query("kpis", {"period": "2026-06"})`` (the whole company), median of 3 runs, alternating
with the peer. Correct: every KPI value equals the one the generator planted (computed from its own
bookkeeping, not by the application); ``exact`` says so.

The peer is the storage limit: raw sqlite3 SQL on the same file computing the same eleven figures the
simplest way, knowing this data's shape (JSON payload dates by ``json_extract``, counts and sums in
SQL, the contract value due as months elapsed x monthly amount, the master's validity by pattern); its
figures are checked against the planted ones too.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import queue
import random
import sqlite3
import statistics
import threading
import time
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from closeloop.bench.runner import BenchContext, median, result, workload

ENTITY, CURRENCY = "US01", "USD"
YEAR = 2026
PERIOD = "2026-06"
SEED = 9
GEN_VERSION = 1
FLUSH_ROWS = 200_000
JOURNAL_POSTED_EVENTS = True  # posting's journal.posted for every entry, as the application emits it
# (price id, monthly amount in cents, share of customers)
PLANS = (("p-basic", 4_900, 0.35), ("p-team", 9_900, 0.30), ("p-business", 19_900, 0.20),
         ("p-scale", 49_900, 0.10), ("p-enterprise", 150_000, 0.05))
# (state, postal code prefix, sales tax rate in basis points)
STATES = (("NY", "100", 400), ("WA", "981", 650), ("PA", "191", 600), ("FL", "331", 600), ("TX", "750", 625),
          ("CA", "941", 725), ("IL", "606", 625), ("MA", "021", 625))
SHARE_VOID, SHARE_CREDIT, SHARE_HELD, SHARE_DISPUTE = 0.01, 0.01, 0.001, 0.004
SHARE_NEVER_PAID, SHARE_MANUAL_APPLY, SHARE_ACCEPTED = 0.02, 0.025, 0.005
RECON_RULES = ("invoices_vs_ledger", "bank_vs_ledger", "ar_subledger_vs_gl", "invoices_vs_ar_subledger")
MANUAL_ACCOUNTS = (("6400", "2500"), ("6300", "2400"), ("6200", "2500"), ("5000", "2400"), ("6500", "1000"))


# ----------------------------------------------------------------------------- helpers


def money(cents: int) -> str:
    """Minor units as the decimal string the application writes (2 places)."""
    found = _MONEY.get(cents)
    if found is None:
        sign = "-" if cents < 0 else ""
        found = f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"
        if len(_MONEY) < 100_000:
            _MONEY[cents] = found
    return found


_MONEY: dict[int, str] = {}


def kpi_number(value: Decimal | int | None, places: int) -> str | None:
    """The KPI value format of docs/kpis.md: rounded half up, trailing zeros dropped."""
    if value is None:
        return None
    q = Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = format(q.normalize(), "f")
    return "0" if text in ("-0", "") else text


def kpi_ratio(numerator: int, denominator: int) -> str | None:
    return kpi_number(Decimal(numerator) / denominator, 4) if denominator else None


def json_template(payload: Any, variable: dict[str, str]) -> str:
    """A %-format string of a JSON value as the application serialises it (``dumps``): the template value
    with the fields named in ``variable`` (dotted paths -> format names; a name starting with ``#`` is
    written unquoted, for numbers) left as ``%(name)s`` placeholders."""
    from closeloop.core.uow import dumps

    data = json.loads(payload) if isinstance(payload, str) else json.loads(json.dumps(payload))
    for path, name in variable.items():
        node = data
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = f"@@{name}@@"
        else:
            if last not in node:
                raise KeyError(f"payload has no field {path!r}: {sorted(node)}")
            node[last] = f"@@{name}@@"
    text = dumps(data).replace("%", "%%")
    for name in set(variable.values()):
        if f'"@@{name}@@"' not in text:
            raise ValueError(f"placeholder {name!r} not written")
        key = name.lstrip("#")
        text = text.replace(f'"@@{name}@@"', f"%({key})s" if name.startswith("#") else f'"%({key})s"')
    return text


class Clone:
    """Rows of one table cloned from a template row of the scratch database, with new values by column."""

    def __init__(self, con: sqlite3.Connection, table: str, where: str, params: tuple[Any, ...] = ()) -> None:
        self.cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
        row = con.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY rowid LIMIT 1", params).fetchone()
        if row is None:
            raise LookupError(f"no template row in {table} where {where} {params}")
        self.base = list(row)
        self.ix = {c: i for i, c in enumerate(self.cols)}
        self.sql = f"INSERT INTO {table} ({', '.join(self.cols)}) VALUES ({', '.join('?' * len(self.cols))})"

    def value(self, column: str) -> Any:
        return self.base[self.ix[column]]

    def make(self, values: dict[str, Any]) -> list[Any]:
        row = self.base.copy()
        ix = self.ix
        for k, v in values.items():
            row[ix[k]] = v
        return row


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# ----------------------------------------------------------------------------- templates (real commands)


def _base_commands(app: Any) -> None:
    app.do("entity.create", {"code": ENTITY, "name": "Acme Inc", "country": "US", "currency": CURRENCY,
                             "tax_id": "12-3456789", "address": {"street": "1 Bench Way", "city": "Benchville"}})
    app.do("product.create", {"sku": "pro", "name": "Pro plan", "treatment": "ratable"})
    for price_id, cents, _ in PLANS:
        app.do("price.create", {"price_id": price_id, "sku": "pro", "model": "flat", "amount": money(cents),
                                "period": "month", "timing": "advance", "currency": CURRENCY})


def make_templates(path: Path) -> None:
    """One of each flow through the real commands, in a scratch database the generator clones from."""
    from closeloop.app import App
    from closeloop.core.clock import ScenarioClock

    _remove(path)
    clock = ScenarioClock(date(YEAR, 1, 1))
    app = App(str(path), clock=clock, actor="bench", dispatch="worker")

    def do(name: str, body: dict[str, Any], actor: str | None = None) -> dict[str, Any]:
        out = app.do(name, body, actor=actor)
        app.dispatch()
        return out

    def at(day: str) -> None:
        clock.set(date.fromisoformat(day))

    _base_commands(app)
    app.dispatch()
    customers = (("TPL-1", "Template One Inc", "NY"), ("TPL-2", "Template Two Inc", "NY"),
                 ("TPL-3", "Template Three Inc", None), ("TPL-4", "Template Four LLC", "NY"),
                 ("TPL-5", "Template Five Corp", "NY"))
    for ext, name, region in customers:
        body: dict[str, Any] = {"source": "crm", "external_id": ext, "name": name, "country": "US",
                                "postal_code": "10017", "address": {"street": "1 Main Street", "city": "New York"},
                                "email": f"ap@{ext.lower()}.example.org", "tax_id": "04-2103594",
                                "website": f"https://{ext.lower()}.example.org"}
        if region:
            body["region"] = region
        do("customer.upsert", body)
    for k, (ext, _, _) in enumerate(customers):
        price_id = PLANS[k % len(PLANS)][0]
        do("quote.create", {"quote_id": f"Q-{ext}", "customer": ext, "start": f"{YEAR}-01-01", "term_months": 12,
                            "lines": [{"line_id": "L1", "price_id": price_id, "quantity": 1}]})
        do("quote.accept", {"quote_id": f"Q-{ext}", "contract_id": f"C-{ext}"})
    # the bill run: TPL-1..2 issued, TPL-3 held (no state); TPL-2's invoice voided before posting
    app.do("billing.run", {"as_of": f"{YEAR}-01-01"})
    app.do("invoice.void", {"invoice": {"customer": "TPL-2", "seq": 1}, "reason": "wrong plan"})
    app.dispatch()
    at(f"{YEAR}-01-03")
    do("customer.upsert", {"source": "crm", "external_id": "TPL-3", "region": "NY"})
    held = app.query("exceptions", {"kind": "tax_undetermined"})["items"][0]["id"]
    do("exception.resolve", {"exception": held, "action": "release", "reason": "state recorded"})
    at(f"{YEAR}-01-10")
    do("invoice.credit", {"invoice": {"customer": "TPL-1", "seq": 1}, "amount": "10.00", "reason": "goodwill"})
    at(f"{YEAR}-01-12")
    do("dispute.open", {"dispute_id": "D-TPL", "invoice": {"customer": "TPL-4", "seq": 1}, "amount": "10.00",
                        "reason": "seat count"})
    at(f"{YEAR}-01-20")
    do("dispute.resolve", {"dispute_id": "D-TPL", "outcome": "rejected"})
    one = app.query("invoice", {"customer": "TPL-4", "seq": 1})
    content = f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
 <BkToCstmrStmt><GrpHdr><MsgId>MSG-0121</MsgId><CreDtTm>{YEAR}-01-21T18:00:00</CreDtTm></GrpHdr>
  <Stmt><Id>STMT-0121</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>USD</Ccy></Acct>
   <Ntry><Amt Ccy="USD">{one["total"]}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
    <BookgDt><Dt>{YEAR}-01-21</Dt></BookgDt><NtryDtls><TxDtls><RmtInf><Ustrd>Invoice {one["number"]}</Ustrd>
    </RmtInf></TxDtls></NtryDtls></Ntry>
   <Ntry><Amt Ccy="USD">1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
    <BookgDt><Dt>{YEAR}-01-21</Dt></BookgDt><NtryDtls><TxDtls><RltdPties><Dbtr><Pty><Nm>Template Three Inc</Nm>
    </Pty></Dbtr></RltdPties><RmtInf><Ustrd>part</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
  </Stmt></BkToCstmrStmt></Document>
"""
    at(f"{YEAR}-01-21")
    do("bank.import", {"format": "camt053", "file": f"statement-{YEAR}-01-21.xml", "content": content,
                       "entity": ENTITY})
    unapplied = [p for p in app.query("payments", {})["payments"] if p["status"] != "applied"][0]["payment"]
    at(f"{YEAR}-01-22")
    do("payment.apply", {"payment": unapplied, "invoice": {"customer": "TPL-3", "seq": 1}, "amount": "1.00"})
    do("journal.post", {"entity": ENTITY, "date": f"{YEAR}-01-22", "memo": "Consulting accrual", "manual": True,
                        "lines": [{"account": "6400", "debit": "250.00"}, {"account": "2500", "credit": "250.00"}]})
    # a contract signed without a bill run: the month-end reconciliation opens a break
    do("quote.create", {"quote_id": "Q-TPL-6", "customer": "TPL-1", "start": f"{YEAR}-01-01", "term_months": 12,
                        "lines": [{"line_id": "L1", "price_id": PLANS[0][0], "quantity": 1}]})
    do("quote.accept", {"quote_id": "Q-TPL-6", "contract_id": "C-TPL-6"})
    at(f"{YEAR}-01-31")
    do("recon.run", {"rules": ["contract_vs_billed"]})
    app.close()


# ----------------------------------------------------------------------------- the generator


def _ordinal(day: str) -> int:
    return date.fromisoformat(day).toordinal()


def generate(db: Path, tpl_path: Path, n: int, seed: int) -> dict[str, Any]:
    """Write the year into a fresh application database at ``db``; returns the planted KPI values."""
    from closeloop.app import App
    from closeloop.contracts.model import Change, replay
    from closeloop.contracts.recon_sides import due_schedule
    from closeloop.core.clock import ScenarioClock
    from closeloop.core.uow import dumps
    from closeloop.customers.model import QualityInput, name_key, quality_score
    from closeloop.customers.service import quality_weights

    _remove(db)
    app = App(str(db), clock=ScenarioClock(date(YEAR, 1, 1)), actor="bench", dispatch="worker")
    _base_commands(app)
    app.dispatch()
    app.close()

    rng = random.Random(seed)
    scale = n / 100_000
    t = sqlite3.connect(tpl_path)
    con = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=DELETE", "journal_mode=OFF", "synchronous=OFF", "cache_size=-500000",
                   "temp_store=MEMORY"):
        con.execute(f"PRAGMA {pragma}")
    big = ("event", "audit_log", "journal_entry", "billing_invoice", "billing_line", "customer", "contracts_contract",
           "contracts_change", "exception_item", "customer_duplicate", "collections_dispute")
    marks = ",".join("?" * len(big))
    indexes = con.execute(f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                          f" AND tbl_name IN ({marks})", big).fetchall()
    for name, _ in indexes:
        con.execute(f"DROP INDEX {name}")

    def account(where: str, value: str) -> int:
        return int(con.execute(f"SELECT id FROM ledger_account WHERE entity = ? AND {where} = ?",
                               (ENTITY, value)).fetchone()[0])

    AR, DEFERRED, TAX = account("role", "accounts_receivable"), account("role", "deferred_revenue"), \
        account("role", "tax_payable")
    CASH, UNAPPLIED = account("role", "cash"), account("role", "unapplied_cash")
    manual_accounts = [(account("code", a), account("code", b)) for a, b in MANUAL_ACCOUNTS]

    # ------------------------------------------------------------------ templates of rows and payloads
    def payload_of(type_: str, aggregate_id: str | None = None) -> str:
        sql = "SELECT payload FROM event WHERE type = ?" + (" AND aggregate_id = ?" if aggregate_id else "")
        row = t.execute(sql + " ORDER BY id LIMIT 1", (type_, aggregate_id) if aggregate_id else (type_,)).fetchone()
        if row is None:
            raise LookupError(f"no template {type_} event")
        return str(row[0])

    tpl_invoice = Clone(t, "billing_invoice", "customer = 'TPL-1' AND kind = 'invoice'")
    tpl_memo = Clone(t, "billing_invoice", "kind = 'credit_memo'")
    tpl_line = Clone(t, "billing_line", "invoice_id = ? AND kind = 'recurring'", (tpl_invoice.value("id"),))
    tpl_memo_line = Clone(t, "billing_line", "kind = 'memo'")
    tpl_customer = Clone(t, "customer", "external_id = 'TPL-1'")
    tpl_duplicate = Clone(t, "customer_duplicate", "1 = 1")
    tpl_dispute = Clone(t, "collections_dispute", "dispute_id = 'D-TPL'")
    tpl_exc = {kind: Clone(t, "exception_item", "kind = ?", (kind,))
               for kind in ("tax_undetermined", "dispute", "low_confidence_match", "recon_break")}
    tpl_audit = {cmd: Clone(t, "audit_log", "command = ?", (cmd,))
                 for cmd in ("billing.run", "invoice.void", "invoice.credit", "dispute.open", "dispute.resolve",
                             "bank.import", "payment.apply", "exception.resolve", "journal.post", "recon.run")}
    tpl_contract = [Clone(t, "contracts_contract", "contract_id = ?", (f"C-TPL-{k + 1}",)) for k in range(len(PLANS))]
    tpl_change = [Clone(t, "contracts_change", "contract_id = ?", (f"C-TPL-{k + 1}",)) for k in range(len(PLANS))]
    change_fmt = [json_template(c.value("payload"), {"effective": "effective", "recorded_on": "recorded_on",
                                                     "ref": "ref", "lines.0.start": "start"}) for c in tpl_change]
    first_number = tpl_invoice.value("number")
    fmt_issued = json_template(payload_of("invoice.issued", first_number), {
        "customer": "customer", "date": "date", "due_date": "due_date", "invoice": "invoice",
        "lines.0.contract_id": "contract", "lines.0.net": "net", "lines.0.tax": "tax", "lines.0.period_start": "ps",
        "lines.0.period_end": "pe", "subtotal": "net", "tax": "tax", "total": "total"})
    fmt_voided = json_template(payload_of("invoice.voided"), {
        "customer": "customer", "date": "date", "invoice": "invoice", "subtotal": "net", "tax": "tax",
        "total": "total"})
    fmt_memo = json_template(payload_of("credit_memo.issued"), {
        "credit_memo": "memo", "customer": "customer", "date": "date", "invoice": "invoice", "lines.0.net": "net",
        "lines.0.tax": "tax", "subtotal": "net", "tax": "tax", "total": "total"})
    fmt_received = json_template(payload_of("payment.received"), {"amount": "amount", "date": "date",
                                                                  "payment": "payment"})
    fmt_applied = json_template(payload_of("payment.applied"), {
        "amount": "amount", "customer": "customer", "date": "date", "invoice": "invoice", "payment": "payment"})
    fmt_posted = json_template(payload_of("journal.posted"), {
        "date": "date", "id": "#id", "journal": "journal", "manual": "#manual", "reference": "#reference"})
    fmt_dopened = json_template(payload_of("dispute.opened"), {
        "amount": "amount", "customer": "customer", "date": "date", "dispute_id": "dispute", "invoice": "invoice",
        "sla_due": "sla_due"})
    fmt_dresolved = json_template(payload_of("dispute.resolved"), {
        "amount": "amount", "credit_memo": "#memo", "customer": "customer", "cycle_days": "#cycle", "date": "date",
        "dispute_id": "dispute", "invoice": "invoice", "outcome": "outcome", "status": "status"})
    fmt_recon = json_template(payload_of("recon.completed"), {"as_of": "date", "breaks": "#breaks",
                                                              "matched": "#matched", "run": "#run"})
    fmt_breakdown = json_template(tpl_invoice.value("tax_breakdown"), {"0.rate": "rate", "0.tax": "#tax",
                                                                       "0.taxable": "#net"})
    t.close()

    # ------------------------------------------------------------------ writing
    pending: dict[str, tuple[str, list[Any]]] = {}
    counted = [0]

    def rows_of(sql: str) -> list[Any]:
        found = pending.get(sql)
        if found is None:
            found = pending[sql] = (sql, [])
        return found[1]

    # Rows are written by a thread of their own (sqlite3 lets go of the GIL while it steps), so that
    # generating the next batch overlaps with writing the last one.
    work: queue.Queue[list[tuple[str, list[Any]]] | None] = queue.Queue(maxsize=2)
    failed: list[BaseException] = []

    def writer() -> None:
        while (batch := work.get()) is not None:
            if failed:
                continue
            try:
                con.execute("BEGIN")
                for sql, rows in batch:
                    con.executemany(sql, rows)
                con.execute("COMMIT")
            except BaseException as exc:  # noqa: BLE001 - handed to the generating thread
                failed.append(exc)

    thread = threading.Thread(target=writer, name="kpis-writer", daemon=True)
    thread.start()

    def flush() -> None:
        if failed:
            raise failed[0]
        batch = [(sql, rows[:]) for sql, rows in pending.values() if rows]
        for _, rows in pending.values():
            rows.clear()
        work.put(batch)
        counted[0] = 0

    def finish() -> None:
        flush()
        work.put(None)
        thread.join()
        if failed:
            raise failed[0]

    def maybe_flush() -> None:
        counted[0] += 1
        if counted[0] >= FLUSH_ROWS // 20:
            flush()

    EV_SQL = ("INSERT INTO event (id, type, version, aggregate_type, aggregate_id, entity, payload, source, actor,"
              " occurred_at, recorded_at, command_id, causation_id, status, attempts)"
              " VALUES (?,?,1,?,?,?,?,?,?,?,?,?,?,'done',0)")
    JE_SQL = ("INSERT INTO journal_entry (id, entity, seq, date, period, memo, manual, reference, source, actor,"
              " event_id, posted_at, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'')")
    JL_SQL = ("INSERT INTO journal_line (entry_id, line_no, account_id, amount, currency, txn_amount, memo,"
              " dimensions) VALUES (?,?,?,?,?,?,?,?)")
    events, entries, jlines = rows_of(EV_SQL), rows_of(JE_SQL), rows_of(JL_SQL)
    invoices, lines = rows_of(tpl_invoice.sql), rows_of(tpl_line.sql)
    audits = rows_of(tpl_audit["billing.run"].sql)
    exceptions = rows_of(tpl_exc["dispute"].sql)

    ids = {name: int(con.execute(f"SELECT COALESCE(MAX(id), 0) FROM {name}").fetchone()[0]) + 1
           for name in ("event", "audit_log", "journal_entry", "billing_invoice", "billing_line", "exception_item")}

    def next_id(name: str) -> int:
        value = ids[name]
        ids[name] = value + 1
        return value

    days_iso = {o: date.fromordinal(o).isoformat() for o in range(_ordinal(f"{YEAR - 1}-12-01"),
                                                                   _ordinal(f"{YEAR + 1}-03-31"))}
    JAN1, DEC31 = _ordinal(f"{YEAR}-01-01"), _ordinal(f"{YEAR}-12-31")
    month_first = {m: date(YEAR + (m > 12), (m - 1) % 12 + 1, 1).toordinal() for m in range(1, 14)}
    p_start, p_end = _ordinal(f"{PERIOD}-01"), _ordinal(f"{PERIOD}-{_days_in(PERIOD):02d}")

    stamps = {o: f"{iso}T12:00:00Z" for o, iso in days_iso.items()}
    period_of = {o: iso[:7] for o, iso in days_iso.items()}

    def stamp(day: int, tick: int = 0) -> str:
        return stamps[day]

    # what the KPIs must find (period PERIOD, the whole company)
    x: dict[str, Any] = {"entries": 0, "manual_entries": 0, "debits": 0, "manual_debits": 0, "receivable": 0,
                         "invoiced": 0, "payments": 0, "auto_payments": 0, "leakage": 0}
    issued_in_period: dict[str, int] = {}
    first_touch: dict[str, int] = {}
    touched_ever: set[str] = set()
    by_hand: set[str] = set()
    breaks: list[tuple[int, int | None]] = []
    dispute_cycles: list[int] = []
    bal_amount: dict[tuple[str, int], int] = defaultdict(int)
    bal_count: dict[tuple[str, int], int] = defaultdict(int)

    def audit(cmd: str, day: int, actor: str, body: dict[str, Any] | None = None) -> int:
        aid = next_id("audit_log")
        values: dict[str, Any] = {"id": aid, "at": stamp(day, aid), "business_date": days_iso[day], "actor": actor,
                                  "correlation_id": f"cmd-{aid}"}
        if body is not None:
            values["payload"] = json.dumps(body, separators=(",", ":"), sort_keys=True)
        audits.append(tpl_audit[cmd].make(values))
        return aid

    def event(type_: str, agg_type: str, agg_id: str, payload: str, day: int, command: int | None,
              cause: int | None = None, source: str = "closeloop", actor: str = "scheduler") -> int:
        eid = next_id("event")
        at = stamps[day]
        events.append((eid, type_, agg_type, agg_id, ENTITY, payload, source, actor, at, at, command, cause))
        return eid

    def post(day: int, memo: str, reference: str | None, cause: int | None, jl: list[tuple[int, int, Any, Any]],
             *, manual: bool = False, command: int | None = None, actor: str = "scheduler") -> int:
        """One journal entry as posting writes it (lines debit positive), its balances and its journal.posted."""
        eid = ids["journal_entry"]
        ids["journal_entry"] = eid + 1
        iso = days_iso[day]
        period = period_of[day]
        source = "closeloop" if manual else "system"
        entries.append((eid, ENTITY, eid, iso, period, memo, manual, reference, source, actor, cause, stamps[day]))
        for k, (acc, amount, line_memo, dims) in enumerate(jl, 1):
            jlines.append((eid, k, acc, amount, CURRENCY, amount, line_memo, dims))
            key = (period, acc)
            bal_amount[key] += amount
            bal_count[key] += 1
        if day <= p_end:
            ar = sum(a for acc, a, _, _ in jl if acc == AR)
            x["receivable"] += ar
            if day >= p_start:
                debits = sum(a for _, a, _, _ in jl if a > 0)
                x["entries"] += 1
                x["debits"] += debits
                if manual:
                    x["manual_entries"] += 1
                    x["manual_debits"] += debits
                if ar > 0 and reference and reference.startswith("invoice.issued:"):
                    x["invoiced"] += ar
        if JOURNAL_POSTED_EVENTS:
            journal = f"JE-{ENTITY}-{eid:07d}"
            event("journal.posted", "journal", journal, fmt_posted % {
                "date": iso, "id": eid, "journal": journal, "manual": "true" if manual else "false",
                "reference": "null" if reference is None else f'"{reference}"'}, day, command, cause, source=source,
                actor=actor)
        return eid

    def exception(kind: str, day: int, record_id: str, amount: int, *, resolved: int | None, resolution: str | None,
                  message: str, details: str, dedup: str, command: int) -> int:
        xid = next_id("exception_item")
        exceptions.append(tpl_exc[kind].make({
            "id": xid, "record_id": record_id, "message": message, "amount": amount, "details": details,
            "dedup_key": dedup, "opened_at": stamp(day, xid), "opened_on": days_iso[day],
            "due_at": f"{days_iso[day + 2]}T12:00:00Z", "status": "open" if resolved is None else "resolved",
            "resolved_at": None if resolved is None else stamp(resolved, xid),
            "resolved_on": None if resolved is None else days_iso[resolved], "resolution": resolution,
            "correlation_id": f"cmd-{command}"}))
        return xid

    # ------------------------------------------------------------------ customers (the master)
    words = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Tyrell", "Cyberdyne", "Soylent", "Hooli",
             "Vandelay", "Wonka", "Gringotts", "Monarch", "Oscorp", "Nakatomi", "Dunder", "Sterling", "Pied", "Aperture",
             "Massive", "Bluth", "Prestige", "Vehement", "Sirius", "Ollivander", "Krusty", "Genco", "Olivia", "Duff")
    kinds = ("Systems", "Labs", "Logistics", "Foods", "Media", "Health", "Energy", "Capital", "Robotics", "Retail")
    suffixes = ("Inc", "LLC", "Corp", "Co", "Ltd")
    streets = ("Main Street", "Oak Avenue", "Market Street", "Broadway", "Elm Street", "Park Lane", "2nd Avenue")
    states = STATES
    merged_extra = max(1, n // 300)
    plan_cum = []
    acc_share = 0.0
    for _, _, share in PLANS:
        acc_share += share
        plan_cum.append(acc_share)
    cust_plan, cust_day, cust_state, cust_ext = [], [], [], []
    filled = possible = checked = valid = parents = 0
    customers_sql = tpl_customer.sql
    crows = rows_of(customers_sql)
    now0 = stamp(_ordinal(f"{YEAR - 1}-12-15"))
    for c in range(n + merged_extra):
        cid = c + 1
        ext = f"CRM-{cid:07d}"
        name = f"{rng.choice(words)} {rng.choice(kinds)} {cid} {rng.choice(suffixes)}"
        st = rng.randrange(len(states))
        state, prefix, _ = states[st]
        has_postal = rng.random() < 0.97
        postal = f"{prefix}{rng.randrange(100):02d}" if has_postal else None
        bad_postal = has_postal and rng.random() < 0.005
        if bad_postal:
            postal = f"{prefix}O{rng.randrange(10)}"
        has_address = rng.random() < 0.98
        address = (json.dumps({"city": f"City {cid % 500}", "street": f"{rng.randint(1, 999)} {rng.choice(streets)}"},
                              separators=(",", ":"), sort_keys=True) if has_address else None)
        email = f"ap@customer{cid}.example.com" if rng.random() < 0.88 else None
        website = f"https://customer{cid}.example.com" if rng.random() < 0.5 else None
        has_tax = rng.random() < 0.7
        tax_id = f"{rng.randint(10, 99)}-{rng.randint(1_000_000, 9_999_999)}" if has_tax else None
        tax_check = ("checksum" if rng.random() < 0.96 else "format") if has_tax else None
        parent = rng.randint(1, c) if c > 100 and c < n and rng.random() < 0.01 else None
        active = c < n
        crows.append(tpl_customer.make({
            "id": cid, "external_id": ext, "name": name, "name_key": name_key(name), "region": state,
            "postal_code": postal, "address": address, "email": email, "website": website, "phone": None,
            "tax_id": tax_id, "tax_id_valid": has_tax, "tax_id_check": tax_check, "parent_id": parent,
            "status": "active" if active else "merged", "merged_into": None if active else rng.randint(1, n),
            "created_at": now0, "updated_at": now0, "version": 1}))
        if active:
            filled += 2 + has_postal + has_address + bool(email or website) + has_tax
            possible += 6
            checked += 1 + has_tax + has_postal
            valid += 1 + (tax_check == "checksum") + (has_postal and not bad_postal)
            parents += parent is not None
            r = rng.random()
            cust_plan.append(next(k for k, edge in enumerate(plan_cum) if r < edge or k == len(PLANS) - 1))
            cust_day.append(rng.randint(1, 28))
            cust_state.append(st)
            cust_ext.append(ext)
    dup_rows = rows_of(tpl_duplicate.sql)
    in_open_pairs: set[int] = set()
    seen_pairs: set[tuple[int, int]] = set()
    for k in range(max(2, n // 100) + max(1, n // 300)):
        a, b = sorted(rng.sample(range(1, n + 1), 2))
        if (a, b) in seen_pairs:
            continue
        seen_pairs.add((a, b))
        status = "open" if k < max(2, n // 100) else "dismissed"
        if status == "open":
            in_open_pairs.update((a, b))
        dup_rows.append(tpl_duplicate.make({"id": len(seen_pairs), "a_id": a, "b_id": b, "status": status,
                                            "detected_at": now0}))
    quality = quality_score(QualityInput(n, filled, possible, checked, valid, len(in_open_pairs), parents, parents,
                                         quality_weights()))
    flush()

    # ------------------------------------------------------------------ contracts
    contract_rows = rows_of(tpl_contract[0].sql)
    change_rows = rows_of(tpl_change[0].sql)
    leaks: dict[int, int] = {}
    for c in rng.sample(range(n), max(2, n // 5000)):
        leaks[c] = rng.randint(1, 6)
    schedules: dict[tuple[int, int], str] = {}  # what contracts.service stores with each contract, per plan and day
    for c in range(n):
        k, d = cust_plan[c], cust_day[c]
        start = f"{YEAR}-01-{d:02d}"
        end = (date(YEAR + 1, 1, d) - timedelta(days=1)).isoformat()
        cid = f"C-{c + 1:07d}"
        at = stamp(_ordinal(start), c)
        change = change_fmt[k] % {"effective": start, "recorded_on": start, "ref": f"{cid}/activation",
                                  "start": start}
        if (k, d) not in schedules:
            schedules[k, d] = dumps(due_schedule(replay([Change.from_dict(json.loads(change))]), d))
        contract_rows.append(tpl_contract[k].make({
            "contract_id": cid, "quote_id": f"Q-{c + 1:07d}", "customer": cust_ext[c], "customer_id": c + 1,
            "billing_day": d, "start": start, "service_end": end, "created_at": at, "updated_at": at,
            "due_schedule": schedules[k, d], "changes_through": start}))
        change_rows.append(tpl_change[k].make({
            "contract_id": cid, "ref": f"{cid}/activation", "effective": start, "recorded_on": start,
            "created_at": at, "event_id": None, "payload": change}))
    flush()

    # ------------------------------------------------------------------ the year, day by day
    bucket: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    by_day: dict[int, list[int]] = defaultdict(list)
    for c in range(n):
        by_day[cust_day[c]].append(c)
    seq = [0] * n
    numbers = {"invoice": 0, "memo": 0, "payment": 0}

    def number_of(kind: str) -> str:
        numbers[kind] += 1
        value = numbers[kind]
        return {"invoice": f"INV-{ENTITY}-{value:06d}", "memo": f"CM-{ENTITY}-{value:06d}",
                "payment": f"PAY-{value:07d}"}[kind]

    rate_text = {bp: format((Decimal(bp) / 10_000).normalize(), "f") for _, _, bp in states}
    billed_by_end = [0] * n  # per contract, net billed on invoices dated by the period end

    def tax_of(net: int, st: int) -> int:
        return (net * states[st][2] + 5_000) // 10_000

    def issue(c: int, day: int, month: int, command: int, *, may_fail: bool = True) -> None:
        k, st = cust_plan[c], cust_state[c]
        net = PLANS[k][1]
        tax = tax_of(net, st)
        total = net + tax
        inv_id = next_id("billing_invoice")
        line_id = next_id("billing_line")
        seq[c] += 1
        customer = cust_ext[c]
        contract = f"C-{c + 1:07d}"
        ps_day = month_first[month] + cust_day[c] - 1  # the billing period: billing day to billing day
        pe_day = month_first[month + 1] + cust_day[c] - 1
        held_until = None
        if may_fail and rng.random() < SHARE_VOID:
            void_cmd = audit("invoice.void", day, "billing.ops", {"invoice": None, "reason": "wrong plan"})
            number = number_of("invoice")
            _invoice_rows(inv_id, line_id, c, number, day, net, tax, total, contract, ps_day, pe_day, command,
                          status="void", credited=0, paid=0, memo=(0, 0), reason="wrong plan")
            iso = days_iso[day]
            values = {"customer": customer, "date": iso, "invoice": number, "net": money(net), "tax": money(tax),
                      "total": money(total), "due_date": days_iso[day + 30], "contract": contract,
                      "ps": days_iso[ps_day], "pe": days_iso[pe_day - 1]}
            event("invoice.issued", "invoice", number, fmt_issued % values, day, command)
            event("invoice.voided", "invoice", number, fmt_voided % values, day, void_cmd, actor="billing.ops")
            first_touch.setdefault(number, day)
            touched_ever.add(number)
            if p_start <= day <= p_end:
                issued_in_period[number] = day
            # its charges are billable again: the next run re-bills them (dated the same day)
            issue(c, day, month, command, may_fail=False)
            return
        if may_fail and rng.random() < SHARE_HELD:
            held_until = min(DEC31, day + rng.randint(1, 3))
        iso_day = day if held_until is None else held_until
        number = number_of("invoice")
        # the invoice's fate, as of the year end
        credit: tuple[int, int, int, str] | None = None  # (day, net, tax, source command)
        dispute: tuple[int, int | None, int, str] | None = None  # (opened, resolved, amount, outcome)
        r = rng.random()
        if r < SHARE_CREDIT:
            cday = iso_day + rng.randint(3, 100)
            if cday <= DEC31:
                cnet = net * rng.randint(10, 50) // 100
                credit = (cday, cnet, tax_of(cnet, st), "invoice.credit")
        elif r < SHARE_CREDIT + SHARE_DISPUTE:
            oday = iso_day + rng.randint(3, 40)
            if oday <= DEC31:
                cycle = min(75, 1 + int(rng.expovariate(1 / 8)))
                rday: int | None = oday + cycle if oday + cycle <= DEC31 else None
                amount = net * rng.randint(10, 100) // 100
                outcome = "credit" if rday is not None and rng.random() < 0.25 else "rejected"
                dispute = (oday, rday, amount, outcome)
                if outcome == "credit":
                    assert rday is not None
                    credit = (rday, amount, tax_of(amount, st), "dispute.resolve")
        credited = credit[1] + credit[2] if credit else 0
        pay: tuple[int, int, str, int] | None = None  # (received, amount, method, applied)
        if rng.random() >= SHARE_NEVER_PAID:
            pday = iso_day + 30 + int(rng.triangular(-12, 45, 2))
            if credit:
                pday = max(pday, credit[0] + 1)
            if dispute:
                pday = max(pday, dispute[1] + 1) if dispute[1] is not None else DEC31 + 1
            if pday <= DEC31:
                m = rng.random()
                method = "manual" if m < SHARE_MANUAL_APPLY else "accept" if m < SHARE_MANUAL_APPLY + SHARE_ACCEPTED \
                    else "auto"
                aday = pday if method == "auto" else min(DEC31, pday + rng.randint(0, 3))
                pay = (pday, total - credited, method, aday)
        paid = pay[1] if pay else 0
        inv_cmd = command
        if held_until is not None:
            inv_cmd = audit("exception.resolve", held_until, "billing.ops",
                            {"action": "release", "exception": None, "reason": "state recorded"})
            exception("tax_undetermined", day, str(inv_id), net, resolved=held_until, resolution="release",
                      message=f"invoice for {customer} held: tax cannot be determined (line 1: the US customer has no"
                              " state (region): sales tax depends on it); fix the customer or tax data, then resolve"
                              " with release",
                      details=json.dumps({"customer": customer, "invoice_id": inv_id}, separators=(",", ":")),
                      dedup=f"tax_undetermined:invoice:{inv_id}", command=command)
            by_hand.add(number)
        _invoice_rows(inv_id, line_id, c, number, iso_day, net, tax, total, contract, ps_day, pe_day, command,
                      status="paid" if total - credited - paid == 0 else "partially_paid" if paid else "open",
                      credited=credited, paid=paid, memo=(credit[1], credit[2]) if credit else (0, 0), reason=None)
        iso = days_iso[iso_day]
        values = {"customer": customer, "date": iso, "invoice": number, "net": money(net), "tax": money(tax),
                  "total": money(total), "due_date": days_iso[iso_day + 30], "contract": contract,
                  "ps": days_iso[ps_day], "pe": days_iso[pe_day - 1]}
        eid = event("invoice.issued", "invoice", number, fmt_issued % values, iso_day, inv_cmd,
                    actor="billing.ops" if held_until is not None else "scheduler")
        post(iso_day, f"Invoice {number} to {customer}", f"invoice.issued:{number}", eid,
             [(AR, total, None, None), (DEFERRED, -net, "Pro plan", '{"revenue_role": "revenue"}'),
              (TAX, -tax, None, None)])
        if p_start <= iso_day <= p_end:
            issued_in_period[number] = iso_day
        if iso_day <= p_end:
            billed_by_end[c] += net
        if credit and credit[3] == "invoice.credit":
            bucket[credit[0]].append(("credit", inv_id, line_id, number, c, credit[1], credit[2], None))
        if dispute:
            bucket[dispute[0]].append(("dispute", inv_id, line_id, number, c, dispute, credit))
        if pay:
            bucket[pay[0]].append(("receipt", number, c, pay))

    def _invoice_rows(inv_id: int, line_id: int, c: int, number: str, day: int, net: int, tax: int, total: int,
                      contract: str, ps_day: int, pe_day: int, command: int, *, status: str, credited: int, paid: int,
                      memo: tuple[int, int], reason: str | None) -> None:
        iso = days_iso[day]
        rate = states[cust_state[c]][2]
        at = stamp(day, inv_id)
        invoices.append(tpl_invoice.make({
            "id": inv_id, "number": number, "customer_id": c + 1, "customer": cust_ext[c], "seq": seq[c], "date": iso,
            "due_date": days_iso[day + 30], "status": status, "subtotal": net, "tax": tax, "total": total,
            "credited": credited, "paid": paid, "balance": 0 if status == "void" else total - credited - paid,
            "reason": reason, "run_id": None, "issued_at": at, "created_at": at,
            "tax_breakdown": fmt_breakdown % {"rate": rate_text[rate], "tax": tax, "net": net}}))
        lines.append(tpl_line.make({
            "id": line_id, "invoice_id": inv_id, "contract_id": contract, "unit_price": str(net // 100), "net": net,
            "tax": tax, "tax_rate": rate_text[rate], "jurisdiction": f"US-{states[cust_state[c]][0]}",
            "period_start": days_iso[ps_day], "period_end": days_iso[pe_day], "service_from": days_iso[ps_day],
            "service_to": days_iso[pe_day], "period_amount": net, "memo_credited": memo[0],
            "memo_tax_credited": memo[1]}))
        maybe_flush()

    def credit_memo(day: int, inv_id: int, line_id: int, number: str, c: int, cnet: int, ctax: int,
                    command: int) -> str:
        memo_no = number_of("memo")
        mid = next_id("billing_invoice")
        at = stamp(day, mid)
        iso = days_iso[day]
        customer = cust_ext[c]
        invoices.append(tpl_memo.make({
            "id": mid, "number": memo_no, "customer_id": c + 1, "customer": customer, "date": iso, "due_date": iso,
            "subtotal": cnet, "tax": ctax, "total": cnet + ctax, "original_id": inv_id, "issued_at": at,
            "created_at": at}))
        lines.append(tpl_memo_line.make({
            "id": next_id("billing_line"), "invoice_id": mid, "contract_id": f"C-{c + 1:07d}", "net": cnet,
            "tax": ctax, "credit_of": line_id}))
        values = {"memo": memo_no, "customer": customer, "date": iso, "invoice": number, "net": money(cnet),
                  "tax": money(ctax), "total": money(cnet + ctax)}
        eid = event("credit_memo.issued", "invoice", number, fmt_memo % values, day, command, actor="billing.ops")
        post(day, f"Credit memo {memo_no} on {number}", f"credit_memo.issued:{number}", eid,
             [(DEFERRED, cnet, "Credit: Pro plan", '{"revenue_role": "revenue"}'), (TAX, ctax, None, None),
              (AR, -(cnet + ctax), None, None)])
        first_touch.setdefault(number, day)
        touched_ever.add(number)
        return memo_no

    def applied(day: int, payment: str, number: str, c: int, amount: int, command: int, method: str) -> None:
        values = {"amount": money(amount), "customer": cust_ext[c], "date": days_iso[day], "invoice": number,
                  "payment": payment}
        actor = "scheduler" if method == "auto" else "ar.clerk"
        eid = event("payment.applied", "payment", payment, fmt_applied % values, day, command, actor=actor)
        post(day, f"Payment {payment} applied to {number}", f"payment.applied:{number}", eid,
             [(UNAPPLIED, amount, None, None), (AR, -amount, None, None)])
        if p_start <= day <= p_end:
            x["payments"] += 1
            x["auto_payments"] += method == "auto"

    month_ends = {_ordinal(f"{YEAR}-{m:02d}-{_days_in(f'{YEAR}-{m:02d}'):02d}"): m for m in range(1, 13)}
    run = 0
    for day in range(JAN1, DEC31 + 1):
        d = date.fromordinal(day)
        if d.day == 1:  # this month's manual journals, on random days
            last = _days_in(f"{YEAR}-{d.month:02d}")
            for _ in range(max(5, round(rng.randint(300, 600) * scale))):
                bucket[day + rng.randrange(last)].append(("manual",))
        todays = [c for c in by_day.get(d.day, ()) if leaks.get(c) != d.month] if d.day <= 28 else []
        if todays:
            command = audit("billing.run", day, "scheduler", {"as_of": days_iso[day]})
            for c in todays:
                issue(c, day, d.month, command)
        items = bucket.pop(day, [])
        receipts = [i for i in items if i[0] == "receipt"]
        if receipts:
            bank_cmd = audit("bank.import", day, "treasury.bot")
            for _, number, c, (_, amount, method, aday) in receipts:
                payment = number_of("payment")
                eid = event("payment.received", "payment", payment,
                            fmt_received % {"amount": money(amount), "date": days_iso[day], "payment": payment},
                            day, bank_cmd, actor="treasury.bot")
                post(day, f"Payment {payment} received", f"payment.received:{payment}", eid,
                     [(CASH, amount, None, None), (UNAPPLIED, -amount, None, None)])
                if method == "auto":
                    applied(day, payment, number, c, amount, bank_cmd, method)
                else:
                    exception("low_confidence_match", day, payment, amount, resolved=aday,
                              resolution="adjust" if method == "manual" else "accept",
                              message=f"payment {payment} of {money(amount)} USD from {cust_ext[c]} is held unapplied:"
                                      " no open invoice matches (no_match, confidence 0.00). Apply it with"
                                      " payment.apply, or accept the proposal by resolving this exception with"
                                      " accept.",
                              details='{"confidence":"0.00","detail":"no reference","proposal":[],"reason":"no_match"}',
                              dedup=f"low_confidence_match:{payment}", command=bank_cmd)
                    bucket[aday].append(("apply", payment, number, c, amount, method))
            items.extend(bucket.pop(day, []))  # applications by hand the same day
        for item in items:
            kind = item[0]
            if kind == "credit":
                _, inv_id, line_id, number, c, cnet, ctax, _ = item
                cmd = audit("invoice.credit", day, "billing.ops", {"amount": money(cnet), "invoice": number,
                                                                   "reason": "goodwill"})
                credit_memo(day, inv_id, line_id, number, c, cnet, ctax, cmd)
            elif kind == "dispute":
                _, inv_id, line_id, number, c, (oday, rday, amount, outcome), credit = item
                dispute_id = f"D-{number[9:]}"
                cmd = audit("dispute.open", day, "ar.clerk", {"amount": money(amount), "dispute_id": dispute_id,
                                                              "invoice": number, "reason": "seat count"})
                sla = days_iso[day + 10]
                xid = exception("dispute", day, dispute_id, amount, resolved=rday,
                                resolution=None if rday is None else "resolved",
                                message=f"{cust_ext[c]} disputes {money(amount)} USD of invoice {number}: seat count"
                                        f" (general); owner collections, resolve by {sla} with dispute.resolve"
                                        " (credit or rejected)",
                                details=json.dumps({"invoice": number, "owner": "collections", "reason_code": "general",
                                                    "sla_due": sla}, separators=(",", ":"), sort_keys=True),
                                dedup=f"dispute:{dispute_id}", command=cmd)
                status = "opened" if rday is None else f"resolved_{outcome}"
                rows_of(tpl_dispute.sql).append(tpl_dispute.make({
                    "dispute_id": dispute_id, "invoice": number, "customer": cust_ext[c], "amount": amount,
                    "status": status, "opened": days_iso[day], "resolved": None if rday is None else days_iso[rday],
                    "sla_due": sla, "cycle_days": None if rday is None else rday - day,
                    "credit_memo": None, "exception_id": xid, "created_at": stamp(day, xid)}))
                values = {"amount": money(amount), "customer": cust_ext[c], "date": days_iso[day],
                          "dispute": dispute_id, "invoice": number, "sla_due": sla}
                event("dispute.opened", "dispute", dispute_id, fmt_dopened % values, day, cmd, actor="ar.clerk")
                if rday is not None:
                    bucket[rday].append(("resolve", inv_id, line_id, number, c, dispute_id, day, amount, outcome,
                                         credit))
                    if p_start <= rday <= p_end:
                        dispute_cycles.append(rday - day)
            elif kind == "resolve":
                _, inv_id, line_id, number, c, dispute_id, oday, amount, outcome, credit = item
                cmd = audit("dispute.resolve", day, "ar.clerk", {"dispute_id": dispute_id, "outcome": outcome})
                memo_no = None
                if outcome == "credit":
                    memo_no = credit_memo(day, inv_id, line_id, number, c, credit[1], credit[2], cmd)
                values = {"amount": money(amount), "memo": "null" if memo_no is None else f'"{memo_no}"',
                          "customer": cust_ext[c], "cycle": day - oday, "date": days_iso[day], "dispute": dispute_id,
                          "invoice": number, "outcome": outcome, "status": f"resolved_{outcome}"}
                event("dispute.resolved", "dispute", dispute_id, fmt_dresolved % values, day, cmd, actor="ar.clerk")
            elif kind == "apply":
                _, payment, number, c, amount, method = item
                if method == "manual":
                    cmd = audit("payment.apply", day, "ar.clerk", {"invoice": number, "payment": payment})
                else:
                    cmd = audit("exception.resolve", day, "ar.clerk", {"action": "accept", "exception": None,
                                                                       "reason": "proposal checked"})
                applied(day, payment, number, c, amount, cmd, method)
            elif kind == "manual":
                amount = rng.randint(10_000, 5_000_000)
                debit, credit_acc = rng.choice(manual_accounts)
                cmd = audit("journal.post", day, "controller", {"date": days_iso[day], "entity": ENTITY,
                                                                "manual": True, "memo": "Accrual"})
                post(day, rng.choice(("Accrual", "Reclassification", "Prepaid expense", "Payroll accrual")), None,
                     None, [(debit, amount, None, None), (credit_acc, -amount, None, None)], manual=True,
                     command=cmd, actor="controller")
        if day in month_ends:
            m = month_ends[day]
            run += 1
            cmd = audit("recon.run", day, "scheduler", {"rules": list(RECON_RULES)})
            count = max(2, round(rng.randint(20, 60) * scale))
            opened: list[tuple[str, str, int, int | None]] = []
            for b in range(count):
                rule = rng.choice(RECON_RULES)
                resolved = day + rng.randint(1, 45) if rng.random() < 0.75 else None
                opened.append((rule, f"{ENTITY}|R{m:02d}{b:05d}|{CURRENCY}", rng.randint(100, 500_000),
                               resolved if resolved is not None and resolved <= DEC31 else None))
            for c, month in leaks.items():
                if month == m:
                    opened.append(("contract_vs_billed", f"{ENTITY}|C-{c + 1:07d}|{CURRENCY}", PLANS[cust_plan[c]][1],
                                   None))
            for rule, key, amount, resolved in opened:
                record = f"{rule}:{key}"
                details = json.dumps({"category": "missing_right", "detail": None, "fields": None, "key": key,
                                      "left": money(amount), "right": None, "rule": rule, "run": run},
                                     separators=(",", ":"), sort_keys=True)
                exception("recon_break", day, record, amount, resolved=resolved,
                          resolution=None if resolved is None else "auto_closed",
                          message=f"{rule}: {key}: missing on the right side (left {money(amount)}, right -, at stake"
                                  f" {money(amount)} USD)", details=details, dedup=f"recon:{record}", command=cmd)
                breaks.append((day, resolved))
            event("recon.completed", "recon_run", str(run),
                  fmt_recon % {"date": days_iso[day], "breaks": len(opened), "matched": n - len(opened), "run": run},
                  day, cmd)
    assert not any(k <= DEC31 for k in bucket), "scheduled work left over"
    # billing leakage at the period end: contracts start on their billing day in January, monthly in advance,
    # so by the end of month M each has M periods due
    leaking = 0
    for c in range(n):
        gap = int(PERIOD[5:]) * PLANS[cust_plan[c]][1] - billed_by_end[c]
        if gap > 0:
            x["leakage"] += gap
            leaking += 1
    # ------------------------------------------------------------------ close cycles and balances
    close_days: dict[str, int] = {}
    for m in range(1, 13):
        period = f"{YEAR}-{m:02d}"
        first = _ordinal(f"{YEAR + (m == 12)}-{m % 12 + 1:02d}-01") + rng.randint(0, 2)
        locked = first + rng.randint(2, 6)
        close_days[period] = locked - first
        rows_of("INSERT INTO close_cycle (entity, period, status, first_action_at, first_action_on, locked_at,"
                " locked_on, locked_by, cycle_days) VALUES (?,?,?,?,?,?,?,?,?)").append(
            (ENTITY, period, "locked", stamp(first), days_iso[first], stamp(locked), days_iso[locked], "controller",
             locked - first))
        rows_of("INSERT INTO ledger_period (entity, period, status, changed_at, changed_by, reason)"
                " VALUES (?,?,?,?,?,?)").append((ENTITY, period, "closed", stamp(locked), "controller",
                                                 "close.run: every gate passed"))
    bal = rows_of("INSERT INTO ledger_balance (entity, period, account_id, currency, amount, txn_amount, line_count)"
                  " VALUES (?,?,?,?,?,?,?)")
    for (period, acc), amount in sorted(bal_amount.items()):
        bal.append((ENTITY, period, acc, CURRENCY, amount, amount, bal_count[(period, acc)]))
    finish()
    last_entry = ids["journal_entry"] - 1
    con.execute("UPDATE ledger_chain SET seq = ? WHERE entity = ?", (last_entry, ENTITY))
    for _, sql in indexes:
        con.execute(sql)
    con.execute("ANALYZE")
    con.execute("PRAGMA journal_mode=WAL")
    counts = {table: int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
              for table in ("customer", "contracts_contract", "billing_invoice", "event", "journal_entry",
                            "journal_line", "audit_log", "exception_item", "collections_dispute")}
    con.close()

    # ------------------------------------------------------------------ the planted values
    defective = [num for num, day in issued_in_period.items()
                 if num in first_touch and first_touch[num] <= day + 60]
    issued_n = len(issued_in_period)
    auto_invoices = sum(1 for num in issued_in_period if num not in touched_ever and num not in by_hand)
    ages = [p_end - o for o, r in breaks if o <= p_end and (r is None or r > p_end)]
    cycles = sorted(dispute_cycles)
    days = p_end - p_start + 1
    expected = {
        "first_pass_invoice_accuracy": kpi_ratio(issued_n - len(defective), issued_n),
        "manual_journal_share": kpi_ratio(x["manual_entries"], x["entries"]),
        "recon_exception_count": str(sum(1 for o, _ in breaks if p_start <= o <= p_end)),
        "recon_exception_mean_age_days": kpi_number(Decimal(sum(ages)) / len(ages), 2) if ages else None,
        "dispute_cycle_days_median": kpi_number(statistics.median(cycles), 2) if cycles else None,
        "dispute_cycle_days_p90": kpi_number(cycles[max(1, -(-90 * len(cycles) // 100)) - 1], 2) if cycles else None,
        "close_cycle_days": kpi_number(close_days[PERIOD], 2),
        "straight_through_rate": kpi_ratio(x["entries"] - x["manual_entries"] + auto_invoices + x["auto_payments"],
                                           x["entries"] + issued_n + x["payments"]),
        "dso_days": kpi_number(Decimal(x["receivable"]) / x["invoiced"] * days, 2) if x["invoiced"] else None,
        "billing_leakage": money(x["leakage"]) if x["leakage"] else "0",
        "data_quality_score": kpi_number(Decimal(quality["score"]), 4),
    }
    planted = {"issued": issued_n, "defective": len(defective), "entries": x["entries"],
               "manual_entries": x["manual_entries"], "amount_share": kpi_ratio(x["manual_debits"], x["debits"]),
               "auto_invoices": auto_invoices, "payments": x["payments"], "auto_payments": x["auto_payments"],
               "receivable": money(x["receivable"]), "invoiced": money(x["invoiced"]),
               "leaking_contracts": leaking,
               "disputes_resolved": len(cycles), "quality": quality}
    return {"expected": expected, "planted": planted, "counts": counts}


def _days_in(period: str) -> int:
    y, m = int(period[:4]), int(period[5:7])
    return (date(y + (m == 12), m % 12 + 1, 1) - date(y, m, 1)).days


# ----------------------------------------------------------------------------- the peer: raw SQL

PEER_INVOICES = """
WITH issued AS (
  SELECT e.id, json_extract(e.payload, '$.invoice') AS inv, json_extract(e.payload, '$.date') AS d, e.command_id
    FROM event e WHERE e.type = 'invoice.issued' AND json_extract(e.payload, '$.date') BETWEEN :s AND :e),
touched AS (
  SELECT json_extract(payload, '$.invoice') AS inv, MIN(json_extract(payload, '$.date')) AS d FROM event
   WHERE type IN ('credit_memo.issued', 'invoice.voided', 'invoice.reissued') GROUP BY 1)
SELECT COUNT(*),
       SUM(t.d IS NOT NULL AND t.d <= date(i.d, '+60 days')),
       SUM(t.inv IS NULL AND i.inv NOT IN (SELECT record_id FROM exception_item WHERE record_type = 'invoice')
           AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.id = i.command_id
                            AND a.command IN ('payment.apply', 'exception.resolve')))
  FROM issued i LEFT JOIN touched t ON t.inv = i.inv
"""
PEER_PAYMENTS = """
SELECT COUNT(*), SUM(a.command IS NULL OR a.command NOT IN ('payment.apply', 'exception.resolve'))
  FROM event e LEFT JOIN audit_log a ON a.id = e.command_id
 WHERE e.type = 'payment.applied' AND json_extract(e.payload, '$.date') BETWEEN :s AND :e
"""
PEER_LEAKAGE = """
WITH due AS (
  SELECT c.contract_id,
         CAST(REPLACE(json_extract(ch.payload, '$.lines[0].period_amount'), '.', '') AS INTEGER)
         * ((CAST(strftime('%Y', :e) AS INTEGER) - CAST(strftime('%Y', c.start) AS INTEGER)) * 12
            + CAST(strftime('%m', :e) AS INTEGER) - CAST(strftime('%m', c.start) AS INTEGER)
            + (CAST(strftime('%d', :e) AS INTEGER) >= c.billing_day)) AS due
    FROM contracts_contract c JOIN contracts_change ch ON ch.contract_id = c.contract_id AND ch.kind = 'activation'
   WHERE c.start <= :e),
billed AS (
  SELECT l.contract_id, SUM(l.net) AS billed FROM billing_line l JOIN billing_invoice i ON i.id = l.invoice_id
   WHERE i.kind = 'invoice' AND i.number IS NOT NULL AND i.status NOT IN ('held', 'void') AND i.date <= :e
     AND l.kind IN ('recurring', 'one_time', 'partial', 'credit') GROUP BY l.contract_id)
SELECT SUM(MAX(0, due.due - COALESCE(billed.billed, 0))) FROM due LEFT JOIN billed USING (contract_id)
"""
PEER_QUALITY = """
SELECT COUNT(*),
       SUM(2 + (COALESCE(postal_code, '') <> '') + (COALESCE(address, '') NOT IN ('', '{}'))
           + (COALESCE(email, '') <> '' OR COALESCE(website, '') <> '') + (COALESCE(tax_id, '') <> '')),
       SUM(1 + (COALESCE(tax_id, '') <> '') + (COALESCE(postal_code, '') <> '')),
       SUM(1 + (COALESCE(tax_id, '') <> '' AND tax_id_check = 'checksum')
           + (postal_code GLOB '[0-9][0-9][0-9][0-9][0-9]')),
       SUM(parent_id IS NOT NULL)
  FROM customer WHERE status = 'active'
"""
PEER_DUPLICATES = """
SELECT COUNT(*) FROM (SELECT a_id AS id FROM customer_duplicate WHERE status = 'open'
                      UNION SELECT b_id FROM customer_duplicate WHERE status = 'open') d
  JOIN customer c ON c.id = d.id AND c.status = 'active'
"""


def peer(path: Path) -> tuple[float, dict[str, str | None]]:
    """The eleven figures in raw sqlite3 SQL, the simplest way this data allows; (seconds, values)."""
    from closeloop.customers.model import QualityInput, quality_score
    from closeloop.customers.service import quality_weights

    con = sqlite3.connect(path)
    s, e = f"{PERIOD}-01", f"{PERIOD}-{_days_in(PERIOD):02d}"
    at = {"s": s, "e": e}
    start = time.perf_counter()
    issued, defective, auto_invoices = con.execute(PEER_INVOICES, at).fetchone()
    manual, entries = con.execute("SELECT COALESCE(SUM(manual), 0), COUNT(*) FROM journal_entry"
                                  " WHERE date BETWEEN :s AND :e", at).fetchone()
    payments, auto_payments = con.execute(PEER_PAYMENTS, at).fetchone()
    opened = con.execute("SELECT COUNT(*) FROM exception_item WHERE kind = 'recon_break'"
                         " AND opened_on BETWEEN :s AND :e", at).fetchone()[0]
    ages = con.execute("SELECT SUM(julianday(:e) - julianday(opened_on)), COUNT(*) FROM exception_item"
                       " WHERE kind = 'recon_break' AND opened_on <= :e AND (resolved_on IS NULL OR resolved_on > :e)",
                       at).fetchone()
    cycles = [int(r[0]) for r in con.execute("SELECT cycle_days FROM collections_dispute WHERE resolved"
                                             " BETWEEN :s AND :e ORDER BY cycle_days", at)]
    close = con.execute("SELECT SUM(cycle_days), COUNT(*) FROM close_cycle WHERE status = 'locked'"
                        " AND period = ?", (PERIOD,)).fetchone()
    ar = con.execute("SELECT id FROM ledger_account WHERE entity = ? AND role = 'accounts_receivable'",
                     (ENTITY,)).fetchone()[0]
    receivable = con.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger_balance WHERE entity = ?"
                             " AND account_id = ? AND period <= ?", (ENTITY, ar, PERIOD)).fetchone()[0]
    invoiced = con.execute("SELECT COALESCE(SUM(l.amount), 0) FROM journal_entry e JOIN journal_line l"
                           " ON l.entry_id = e.id WHERE e.entity = ? AND e.date BETWEEN ? AND ?"
                           " AND e.reference LIKE 'invoice.issued:%' AND l.account_id = ? AND l.amount > 0",
                           (ENTITY, s, e, ar)).fetchone()[0]
    leakage = con.execute(PEER_LEAKAGE, at).fetchone()[0] or 0
    accounts, filled, checked, valid, parents = con.execute(PEER_QUALITY).fetchone()
    duplicates = con.execute(PEER_DUPLICATES).fetchone()[0]
    seconds = time.perf_counter() - start
    con.close()
    quality = quality_score(QualityInput(accounts, filled, 6 * accounts, checked, valid, duplicates, parents, parents,
                                         quality_weights()))
    days = _days_in(PERIOD)
    values = {
        "first_pass_invoice_accuracy": kpi_ratio(issued - defective, issued),
        "manual_journal_share": kpi_ratio(manual, entries),
        "recon_exception_count": str(opened),
        "recon_exception_mean_age_days": kpi_number(Decimal(int(ages[0])) / ages[1], 2) if ages[1] else None,
        "dispute_cycle_days_median": kpi_number(statistics.median(cycles), 2) if cycles else None,
        "dispute_cycle_days_p90": kpi_number(cycles[max(1, -(-90 * len(cycles) // 100)) - 1], 2) if cycles else None,
        "close_cycle_days": kpi_number(Decimal(close[0]) / close[1], 2) if close[1] else None,
        "straight_through_rate": kpi_ratio(entries - manual + auto_invoices + auto_payments,
                                           entries + issued + payments),
        "dso_days": kpi_number(Decimal(receivable) / invoiced * days, 2) if invoiced else None,
        "billing_leakage": money(leakage) if leakage else "0",
        "data_quality_score": kpi_number(Decimal(quality["score"]), 4),
    }
    return seconds, values


# ----------------------------------------------------------------------------- the workload


def _cache_key(n: int) -> str:
    """Generated data is reused while the generator, its size and seed and the schema stay the same."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(Path(__file__).read_bytes())
    for migration in sorted(root.glob("*/migrations/*.py")):
        h.update(migration.name.encode())
    return f"kpis-{n}-s{SEED}-{h.hexdigest()[:12]}"


def _generate_into(db: str, meta: str, n: int) -> None:
    """Child process: templates, then the year, into ``db``; what was planted into ``meta``."""
    scratch = Path(db + ".templates")
    started = time.perf_counter()
    make_templates(scratch)
    out = generate(Path(db), scratch, n, SEED)
    _remove(scratch)
    out["setup_seconds"] = round(time.perf_counter() - started, 2)
    Path(meta).write_text(json.dumps(out))


def dataset(ctx: BenchContext, n: int) -> tuple[Path, dict[str, Any], bool]:
    """(database, what was planted, whether it was generated now) — generated in a child process, so that the
    workload's peak memory is the query's."""
    key = _cache_key(n)
    db, meta = ctx.workdir / f"{key}.db", ctx.workdir / f"{key}.json"
    if db.exists() and meta.exists():
        return db, json.loads(meta.read_text()), False
    for stale in ctx.workdir.glob(f"kpis-{n}-*"):
        stale.unlink()
    tmp_db, tmp_meta = ctx.workdir / f"{key}.tmp.db", ctx.workdir / f"{key}.tmp.json"
    proc = multiprocessing.get_context("spawn").Process(target=_generate_into,
                                                        args=(str(tmp_db), str(tmp_meta), n))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"generating the kpis data set failed (exit {proc.exitcode})")
    _remove(db)
    os.replace(tmp_db, db)
    os.replace(tmp_meta, meta)
    return db, json.loads(meta.read_text()), True


@workload("kpis.period")
def kpis_period(ctx: BenchContext) -> list[dict[str, Any]]:
    from closeloop.app import App
    from closeloop.core.clock import ScenarioClock

    n = ctx.size(100_000)
    db, meta, generated = dataset(ctx, n)
    expected: dict[str, str | None] = meta["expected"]
    app = App(str(db), clock=ScenarioClock(date(YEAR, 12, 31)), actor="bench", dispatch="worker")
    ours_runs, peer_runs = [], []
    found: dict[str, Any] = {}
    peer_values: dict[str, str | None] = {}
    for _ in range(3):
        start = time.perf_counter()
        out = app.query("kpis", {"period": PERIOD})
        ours_runs.append(time.perf_counter() - start)
        found = out["rows"][0]
        seconds, peer_values = peer(db)
        peer_runs.append(seconds)
    app.close()
    wrong = {k: {"ours": found.get(k), "planted": v} for k, v in expected.items() if found.get(k) != v}
    peer_wrong = {k: {"peer": peer_values.get(k), "planted": v} for k, v in expected.items()
                  if peer_values.get(k) != v}
    exact = not wrong
    ours, theirs = median(ours_runs), median(peer_runs)
    counts = meta["counts"]
    goal_seconds = 5 * n / 100_000
    return [result(
        "kpis.period", n=n,
        unit=f"customers (a year: {counts['billing_invoice']:,} invoices and memos, {counts['event']:,} events,"
             f" {counts['journal_line']:,} journal lines)",
        seconds=ours, goal="under 5 s for all KPIs of one period at 100,000 customers (SQLite); every value as planted",
        met=exact and ours < goal_seconds, ratio=theirs / ours,
        baseline={"name": "sqlite3 SQL (the same eleven figures, the simplest way: json_extract of payload dates,"
                          " counts and sums in SQL, contract value due as months x monthly amount)",
                  "seconds": round(theirs, 4), "rate": round(n / theirs, 1),
                  "wrote": "nothing: it reads the same file and computes the eleven values",
                  "exact": not peer_wrong, "mismatches": peer_wrong},
        runs=[round(s, 3) for s in ours_runs], peer_runs=[round(s, 3) for s in peer_runs],
        setup_seconds=meta.get("setup_seconds"), generated_now=generated, period=PERIOD, exact=exact,
        values=found and {k: found.get(k) for k in expected}, mismatches=wrong, planted=meta["planted"],
        rows=counts,
        notes="query kpis {period: 2026-06} (whole company) through the command vocabulary on SQLite, median of 3"
              " alternating with the peer; data written straight into the tables by a seeded generator cloning"
              " rows and payloads of real commands; ratio = peer seconds / ours")]
