"""Parallel run: a legacy system's invoice register for a period against closeloop's invoices, line by line.

While a wave runs in parallel, the legacy system keeps invoicing and closeloop runs its own bill run
for the same period (without sending its invoices). ``parallel.import {entity, period, file | content}``
stores the legacy register (CSV, one row per invoice line)::

    invoice,customer,date,sku,description,period_start,period_end,quantity,unit_price,amount,tax,currency

(``invoice``, ``customer``, ``date`` and ``amount`` — the line's net amount — are required; rows dated
outside the period, or of another ``entity`` when the file has that column, are left out and counted).
``parallel.run {entity, period}`` reconciles the latest register of the entity and period with
closeloop's invoices dated in the period, **line by line**: per customer (a legacy id merged by the
migration counts as its survivor) and product (sku, else the description), lines are paired by
service period; each pair or lone line is

- ``matched`` — same net amount and tax;
- ``price`` — same service period, another net amount;
- ``proration`` — another service period (start or end) and another amount;
- ``tax`` — same net amount, another tax;
- ``missing`` — billed by the legacy system only; ``extra`` — billed by closeloop only.

Differences are reported by customer and cause (legacy, closeloop and their difference, with the
lines), each one a ``recon_break`` exception (rule ``parallel_run``; its dedup key names entity,
period, customer and cause, so a rerun updates it, and closes those that no longer differ). Query
``parallel_run {entity?, period?}`` lists the runs, oldest first; the last one's ``difference``
(the sum of the absolute line differences, in the entity's currency) is what the rollout wave gate
``parallel_run_difference`` compares with its threshold.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from closeloop.core import registry
from closeloop.core.boundary import nul_line
from closeloop.core.entities import get_entity
from closeloop.core.errors import CloseloopError, NotFoundError, ValidationError
from closeloop.core.exception_queue import close_exception, open_exception
from closeloop.core.money import check_currency, format_minor, to_minor
from closeloop.core.periods import check_period, period_end, period_start
from closeloop.core.registry import command, payload, query
from closeloop.core.uow import dumps
from closeloop.rollout.waves import UNGATED

ROLES = ("implementation", "billing", "admin")
CAUSES = ("price", "proration", "tax", "missing", "extra")
REQUIRED = ("invoice", "customer", "date", "amount")
OPTIONAL = ("entity", "sku", "description", "period_start", "period_end", "quantity", "unit_price", "tax", "currency")
RULE = "parallel_run"
LENGTHS = {"invoice": 64, "customer": 128, "sku": 64, "quantity": 40, "unit_price": 40}

# A parallel run happens before its wave goes live: like the other commands that manage the rollout itself,
# its commands are never refused by the live-scope guard (closeloop.rollout.waves).
UNGATED.update({"parallel.import", "parallel.run"})


@dataclass(frozen=True, slots=True)
class Line:
    """One invoice line on either side (amounts in minor units of ``currency``; service days inclusive)."""

    side: str  # legacy or closeloop
    invoice: str
    customer: str
    product: str
    description: str
    period_start: str | None
    period_end: str | None
    net: int
    tax: int
    currency: str
    row: int | None = None
    quantity: str | None = None
    unit_price: str | None = None

    @property
    def total(self) -> int:
        return self.net + self.tax

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"invoice": self.invoice, "product": self.product, "description": self.description,
                               "period_start": self.period_start, "period_end": self.period_end,
                               "net": format_minor(self.net, self.currency), "tax": format_minor(self.tax, self.currency)}
        if self.row is not None:
            out["row"] = self.row
        return out


# =========================================================================== pure matching


def _overlap(a: Line, b: Line) -> int:
    if not (a.period_start and a.period_end and b.period_start and b.period_end):
        return 0
    start = max(date.fromisoformat(a.period_start), date.fromisoformat(b.period_start))
    end = min(date.fromisoformat(a.period_end), date.fromisoformat(b.period_end))
    return max(0, (end - start).days + 1)


def pair_lines(legacy: Sequence[Line], closeloop: Sequence[Line]) -> list[tuple[Line | None, Line | None]]:
    """Pair one customer's lines per product: identical lines first (so a match is never paired away), then the
    same service period, the largest overlap, equal amounts, and the rest in order. Deterministic (inputs sorted)."""
    out: list[tuple[Line | None, Line | None]] = []
    by_product: dict[str, tuple[list[Line], list[Line]]] = defaultdict(lambda: ([], []))
    for ln in legacy:
        by_product[ln.product][0].append(ln)
    for ln in closeloop:
        by_product[ln.product][1].append(ln)

    def key(ln: Line) -> tuple[str, str, str, int]:
        return ln.period_start or "", ln.period_end or "", ln.invoice, ln.net

    for product in sorted(by_product):
        left = sorted(by_product[product][0], key=key)
        right = sorted(by_product[product][1], key=key)
        for rule in ("exact", "same_period", "overlap", "amount", "order"):
            for a in list(left):
                best = None
                for b in right:
                    if rule == "exact" and cause_of(a, b) is None and (a.period_start, a.period_end) == (
                            b.period_start, b.period_end):
                        best = b
                        break
                    if rule == "same_period" and (a.period_start, a.period_end) == (b.period_start, b.period_end) \
                            and a.period_start is not None:
                        best = b
                        break
                    if rule == "overlap" and _overlap(a, b) > 0 and (best is None or _overlap(a, b) > _overlap(a, best)):
                        best = b
                    if rule == "amount" and a.net == b.net:
                        best = b
                        break
                    if rule == "order":
                        best = b
                        break
                if best is not None:
                    out.append((a, best))
                    left.remove(a)
                    right.remove(best)
        out.extend((a, None) for a in left)
        out.extend((None, b) for b in right)
    return out


def _same_number(x: str | None, y: str | None) -> bool:
    try:
        return x is not None and y is not None and Decimal(x) == Decimal(y)
    except InvalidOperation:
        return False


def cause_of(a: Line | None, b: Line | None) -> str | None:
    """None when the pair matches, else the cause of its difference: another service period, or the same unit
    price and quantity giving another amount, is ``proration``; another unit price (or none to compare) is
    ``price``; the same net amount with another tax is ``tax``."""
    if a is None:
        return "extra"
    if b is None:
        return "missing"
    if a.net != b.net:
        if a.period_start and b.period_start and (a.period_start, a.period_end) != (b.period_start, b.period_end):
            return "proration"
        if _same_number(a.unit_price, b.unit_price) and _same_number(a.quantity or "1", b.quantity or "1"):
            return "proration"
        return "price"
    if a.tax != b.tax:
        return "tax"
    return None


def reconcile(legacy: Sequence[Line], closeloop: Sequence[Line]) -> dict[str, Any]:
    """Match two sides' lines; differences by customer and cause (pure)."""
    customers = sorted({ln.customer for ln in legacy} | {ln.customer for ln in closeloop})
    left: dict[str, list[Line]] = defaultdict(list)
    right: dict[str, list[Line]] = defaultdict(list)
    for ln in legacy:
        left[ln.customer].append(ln)
    for ln in closeloop:
        right[ln.customer].append(ln)
    matched = 0
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for customer in customers:
        for a, b in pair_lines(left[customer], right[customer]):
            cause = cause_of(a, b)
            if cause is None:
                matched += 1
                continue
            currency = (a or b).currency  # type: ignore[union-attr]
            g = groups.setdefault((customer, cause), {"customer": customer, "cause": cause, "currency": currency,
                                                      "legacy": 0, "closeloop": 0, "absolute": 0, "lines": []})
            la, lb = (a.total if a else 0), (b.total if b else 0)
            g["legacy"] += la
            g["closeloop"] += lb
            g["absolute"] += abs(lb - la)
            g["lines"].append({"legacy": a.view() if a else None, "closeloop": b.view() if b else None,
                               "difference": format_minor(lb - la, currency)})
    differences = []
    by_cause: Counter[str] = Counter()
    for (_customer, cause), g in sorted(groups.items(), key=lambda x: (x[0][0], CAUSES.index(x[0][1]))):
        cur = g["currency"]
        by_cause[cause] += 1
        differences.append({"customer": g["customer"], "cause": cause, "currency": cur,
                            "legacy": format_minor(g["legacy"], cur), "closeloop": format_minor(g["closeloop"], cur),
                            "difference": format_minor(g["closeloop"] - g["legacy"], cur),
                            "absolute": g["absolute"], "lines": g["lines"]})
    return {"matched": matched, "differences": differences, "by_cause": dict(by_cause),
            "legacy_lines": len(legacy), "closeloop_lines": len(closeloop)}


# =========================================================================== the legacy register


def _read_register(text: str, name: str, entity: str, period: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                            Counter[str]]:
    line = nul_line(text)
    if line is not None:
        raise ValidationError(f"{name} line {line} contains a NUL character: not a text CSV", field="file",
                              record=name, line=line)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except (StopIteration, csv.Error):
        raise ValidationError(f"{name} is empty: it needs a header ({', '.join(REQUIRED)}, ...)", field="file",
                              record=name) from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ValidationError(f"{name} has no column {', '.join(missing)} (header: {', '.join(header)}); required:"
                              f" {', '.join(REQUIRED)}", field=missing[0], record=name)
    first, last = period_start(period).isoformat(), period_end(period).isoformat()
    rows, problems = [], []
    skipped: Counter[str] = Counter()
    line = reader.line_num
    while True:
        at = line + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append({"row": at, "field": "(row)", "reason": f"malformed: {exc}"})
            break
        line = reader.line_num
        if not cells or not "".join(cells).strip():
            continue
        if len(cells) != len(header):
            problems.append({"row": at, "field": "(row)", "reason": f"has {len(cells)} fields where the header has"
                             f" {len(header)}"})
            continue
        r = {h: c.strip() for h, c in zip(header, cells, strict=True)}
        if r.get("entity") and r["entity"] != entity:
            skipped["other_entity"] += 1
            continue
        try:
            day = date.fromisoformat(r["date"]).isoformat()
        except ValueError:
            problems.append({"row": at, "field": "date", "reason": f"{r['date']!r} is not a date (YYYY-MM-DD)"})
            continue
        if not first <= day <= last:
            skipped["outside_period"] += 1
            continue
        rows.append({"row": at, **r, "date": day})
    return rows, problems, skipped


@payload
class ParallelImport:
    entity: str
    period: str
    file: str | None = None
    content: str | None = None
    name: str | None = None
    system: str | None = None


@command("parallel.import", ParallelImport, roles=ROLES,
         summary="Import a legacy system's invoice register (CSV) for an entity and period, for a parallel run")
def parallel_import(uow: Any, cmd: ParallelImport) -> dict[str, Any]:
    ent = get_entity(uow, cmd.entity)
    period = check_period(cmd.period)
    if (cmd.file is None) == (cmd.content is None):
        raise ValidationError("give file (a path) or content (the CSV text)", field="file")
    if cmd.file is not None:
        try:
            raw = Path(cmd.file).read_bytes()
        except FileNotFoundError:
            raise ValidationError(f"file {cmd.file} does not exist", field="file", record=cmd.file) from None
        name = cmd.name or Path(cmd.file).name
    else:
        raw = (cmd.content or "").encode("utf-8")
        name = cmd.name or "register.csv"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    rows, problems, skipped = _read_register(text, name, ent.code, period)
    lines = []
    for r in rows:
        cur = r.get("currency") or ent.currency
        try:
            check_currency(cur)
            net = to_minor(r["amount"], cur, field="amount")
            tax = to_minor(r.get("tax") or "0", cur, field="tax")
            for value, fieldname in ((net, "amount"), (tax, "tax")):
                if abs(value) >= 10**15:
                    raise ValidationError(f"{fieldname} is out of range", field=fieldname)
            for f in ("period_start", "period_end"):
                if r.get(f):
                    date.fromisoformat(r[f])
            for f in ("quantity", "unit_price"):
                if r.get(f):
                    Decimal(r[f])
        except CloseloopError as exc:
            problems.append({"row": r["row"], "field": str(exc.details.get("field") or "amount"), "reason": exc.message})
            continue
        except (ValueError, InvalidOperation) as exc:
            problems.append({"row": r["row"], "field": "period_start", "reason": f"not a date or number: {exc}"})
            continue
        if not r["invoice"] or not r["customer"]:
            problems.append({"row": r["row"], "field": "invoice" if not r["invoice"] else "customer",
                             "reason": "required value is empty"})
            continue
        too_long = next((f for f, n in LENGTHS.items() if len(r.get(f) or "") > n), None)
        if too_long:
            problems.append({"row": r["row"], "field": too_long,
                             "reason": f"longer than {LENGTHS[too_long]} characters"})
            continue
        lines.append((r["row"], r["invoice"], r["customer"], r["date"], r.get("sku") or None,
                      r.get("description") or None, r.get("period_start") or None, r.get("period_end") or None,
                      r.get("quantity") or None, r.get("unit_price") or None, net, tax, cur))
    if problems:
        problems.sort(key=lambda p: p["row"])
        first = problems[0]
        raise ValidationError(f"{name}: {len(problems)} row(s) cannot be read, nothing was imported (first: line"
                              f" {first['row']}, {first['field']}: {first['reason']})", field=first["field"],
                              record=f"{name}:{first['row']}", problems=problems)
    register_id = int(uow.scalar(
        "INSERT INTO parallel_register (entity, period, system, file, sha256, lines, imported_at, actor)"
        " VALUES (?,?,?,?,?,?,?,?) RETURNING id",
        (ent.code, period, (cmd.system or "")[:100] or None, name[:200], hashlib.sha256(raw).hexdigest(), len(lines), uow.now(), uow.actor)))
    uow.executemany("INSERT INTO parallel_register_line (register_id, row, invoice, customer, date, sku, description,"
                    " period_start, period_end, quantity, unit_price, net, tax, currency)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", [(register_id, *ln) for ln in lines])
    return {"register": register_id, "entity": ent.code, "period": period, "lines": len(lines),
            "invoices": len({ln[1] for ln in lines}), "skipped": dict(skipped)}


# =========================================================================== the run


def _legacy_lines(uow: Any, register_id: int) -> list[Line]:
    from closeloop.customers.service import get_customer

    survivors: dict[str, str] = {}
    out = []
    for (row, invoice, customer, sku, desc, p_start, p_end, net, tax, cur, qty, unit) in uow.all(
            "SELECT row, invoice, customer, sku, description, period_start, period_end, net, tax, currency, quantity,"
            " unit_price FROM parallel_register_line WHERE register_id = ? ORDER BY row", (register_id,)):
        if customer not in survivors:
            try:
                survivors[customer] = get_customer(uow, customer).external_id
            except NotFoundError:
                survivors[customer] = customer
        out.append(Line("legacy", invoice, survivors[customer], sku or (desc or "").strip().lower(), desc or "",
                        p_start, p_end, int(net), int(tax), cur, int(row), qty, unit))
    return out


def _closeloop_lines(uow: Any, entity: str, period: str) -> list[Line]:
    """closeloop's invoices of the entity dated in the period (held ones included), through billing's queries."""
    invoices_q, invoice_q = registry.get("invoices", "query"), registry.get("invoice", "query")
    first, last = period_start(period), period_end(period)
    out: list[Line] = []
    day = first
    while day <= last:  # a day at a time: the invoices query lists at most 10,000
        found = invoices_q.fn(uow, invoices_q.parse({"entity": entity, "date_from": day.isoformat(),
                                                     "date_to": day.isoformat(), "limit": 10_000}))
        for item in found["items"]:
            where = {"number": item["number"]} if item["number"] else {"customer": item["customer"],
                                                                       "seq": item["seq"]}
            inv = invoice_q.fn(uow, invoice_q.parse(where))
            if inv["status"] == "void":
                continue
            cur = inv["currency"]
            for ln in inv["lines"]:
                product = ln.get("sku") or (ln.get("description") or "").strip().lower()
                out.append(Line("closeloop", inv["number"] or f"(held) {inv['customer']}#{inv['seq']}",
                                inv["customer"], product, ln.get("description") or "", ln.get("period_start"),
                                ln.get("period_end"), to_minor(ln["amount"], cur), to_minor(ln["tax"], cur), cur,
                                None, ln.get("quantity"), ln.get("unit_price")))
        day = date.fromordinal(day.toordinal() + 1)
    return out


def _functional(uow: Any, amount: int, currency: str, functional: str, day: str) -> tuple[int, bool]:
    if currency == functional:
        return amount, True
    from closeloop.core.fx import convert

    try:
        return convert(uow, amount, currency, functional, day), True
    except NotFoundError:
        return amount, False


@payload
class ParallelRun:
    entity: str
    period: str


@command("parallel.run", ParallelRun, roles=ROLES,
         summary="Reconcile the legacy invoice register of a period with closeloop's invoices, line by line")
def parallel_run_command(uow: Any, cmd: ParallelRun) -> dict[str, Any]:
    ent = get_entity(uow, cmd.entity)
    period = check_period(cmd.period)
    reg = uow.one("SELECT id FROM parallel_register WHERE entity = ? AND period = ? ORDER BY id DESC LIMIT 1",
                  (ent.code, period))
    if reg is None:
        raise NotFoundError(f"no legacy invoice register for {ent.code} {period}; import one with parallel.import",
                            field="period", record=f"{ent.code}:{period}")
    register_id = int(reg[0])
    result = reconcile(_legacy_lines(uow, register_id), _closeloop_lines(uow, ent.code, period))
    day = period_end(period).isoformat()
    total = 0
    converted = True
    for d in result["differences"]:
        value, ok = _functional(uow, d.pop("absolute"), d["currency"], ent.currency, day)
        total += value
        converted = converted and ok
    difference = format_minor(total, ent.currency)
    run_id = int(uow.scalar(
        "INSERT INTO parallel_run (entity, period, register_id, at, actor, matched, difference, currency, result)"
        " VALUES (?,?,?,?,?,?,?,?,?) RETURNING id",
        (ent.code, period, register_id, uow.now(), uow.actor, result["matched"], difference, ent.currency,
         dumps(result))))
    prefix = f"{RULE}:{ent.code}:{period}:"
    keep = set()
    for d in result["differences"]:
        key = f"{prefix}{d['customer']}:{d['cause']}"
        keep.add(key)
        cur = d["currency"]
        amount = abs(to_minor(d["difference"], cur))
        open_exception(uow, "recon_break", record_type="customer", record_id=d["customer"],
                       message=f"parallel run {ent.code} {period}: {d['cause']} difference for {d['customer']}:"
                               f" legacy {d['legacy']}, closeloop {d['closeloop']} {cur}"
                               f" ({len(d['lines'])} line(s))",
                       entity=ent.code, amount=amount or None, currency=cur,
                       details={"rule": RULE, "run": run_id, "period": period, "cause": d["cause"],
                                "legacy": d["legacy"], "closeloop": d["closeloop"], "difference": d["difference"],
                                "lines": d["lines"][:20]},
                       dedup_key=key)
    closed = 0
    for exc_id, key in uow.all("SELECT id, dedup_key FROM exception_item WHERE kind = 'recon_break' AND status ="
                               " 'open' AND dedup_key LIKE ?", (prefix.replace("%", "") + "%",)):
        if key not in keep:
            close_exception(uow, int(exc_id), "auto_closed", f"parallel run {run_id}: no longer different")
            closed += 1
    uow.emit("parallel.completed", "parallel_run", str(run_id), {
        "run": run_id, "entity": ent.code, "period": period, "matched": result["matched"],
        "differences": len(result["differences"]), "difference": difference}, entity=ent.code)
    return {"run": run_id, "entity": ent.code, "period": period, "register": register_id,
            "matched": result["matched"], "differences": result["differences"], "difference": difference,
            "currency": ent.currency, "by_cause": result["by_cause"], "legacy_lines": result["legacy_lines"],
            "closeloop_lines": result["closeloop_lines"], "exceptions_closed": closed,
            **({} if converted else {"note": "a difference in another currency has no FX rate; counted unconverted"})}


@payload
class ParallelRunQuery:
    entity: str | None = None
    period: str | None = None


@query("parallel_run", ParallelRunQuery, summary="Parallel runs, oldest first: matched lines and differences by"
       " customer and cause (the wave gate reads the last)")
def parallel_run_query(uow: Any, q: ParallelRunQuery) -> dict[str, Any]:
    sql = ("SELECT id, entity, period, register_id, at, actor, matched, difference, currency, result FROM parallel_run")
    where, params = [], []
    if q.entity:
        where.append("entity = ?")
        params.append(q.entity)
    if q.period:
        where.append("period = ?")
        params.append(check_period(q.period))
    if where:
        sql += " WHERE " + " AND ".join(where)
    runs = []
    for run_id, ent, period, reg, at, actor, matched, difference, cur, result in uow.all(sql + " ORDER BY id", params):
        data = json.loads(result)
        runs.append({"run": int(run_id), "entity": ent, "period": period, "register": int(reg), "at": at,
                     "actor": actor, "matched": int(matched), "difference": difference, "currency": cur,
                     "by_cause": data.get("by_cause", {}),
                     "differences": [{k: v for k, v in d.items() if k != "lines"} | {"line_count": len(d.get("lines", []))}
                                     for d in data.get("differences", [])]})
    return {"count": len(runs), "runs": runs}
