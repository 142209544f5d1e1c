"""Collections views: AR aging as of any date, DSO, statements of account, collectors, recon sides.

- ``ar_aging {as_of, entity?}``: the receivables the ledger holds per invoice on that date
  (:mod:`closeloop.ledger.subledger`: AR lines grouped by the invoice in their reference), bucketed by
  days past the invoice's due date: current (not yet due), d1_30, d31_60, d61_90, over_90; amounts in
  the entity's functional currency.
- ``dso {entity?, as_of?, days?}``: receivables at as_of / receivables invoiced in the ``days`` before
  x ``days``.
- ``statement_of_account {customer, as_of?}``: the customer's open items, payments on account and
  aging, with an HTML rendering (and PDF through WeasyPrint in the CLI).
- ``collector.assign`` / ``collector``: a collector per account; a child account inherits its top
  parent's collector (so reorganising a hierarchy re-routes collections with no re-assignment).
"""

from __future__ import annotations

from datetime import date, timedelta
from html import escape
from typing import Any

from closeloop.billing import service as billing
from closeloop.collections.model import BUCKETS, aging, bucket, dso_days
from closeloop.collections.service import fmt, unapplied_of
from closeloop.control.recon import SideContext, recon_side
from closeloop.core.entities import get_entity, list_entities
from closeloop.core.errors import NotFoundError, ValidationError
from closeloop.core.periods import parse_date
from closeloop.core.registry import command, payload, query
from closeloop.customers.service import ancestors, get_customer
from closeloop.ledger.subledger import ar_balance, ar_open_items, invoiced_between


def _due_dates(uow: Any, numbers: list[str]) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for start in range(0, len(numbers), 500):
        chunk = numbers[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for number, due, customer in uow.all(f"SELECT number, due_date, customer FROM collections_invoice WHERE number"
                                             f" IN ({marks})", chunk):
            out[number] = (due, customer)
    return out


def _entities(uow: Any, entity: str | None) -> list[Any]:
    if entity:
        return [get_entity(uow, entity)]
    found = list_entities(uow)
    if len({e.currency for e in found}) > 1:
        raise ValidationError("the entities have different functional currencies: give entity", field="entity")
    return found


def aging_data(uow: Any, as_of: date, entity: str | None = None, customer: str | None = None) -> dict[str, Any]:
    ents = _entities(uow, entity)
    totals = dict.fromkeys(BUCKETS, 0)
    items: list[dict[str, Any]] = []
    currency = ents[0].currency if ents else None
    for ent in ents:
        open_items = ar_open_items(uow, ent.code, as_of)
        dues = _due_dates(uow, sorted(open_items))
        for number, (functional, txn, cur) in sorted(open_items.items()):
            due, owner = dues.get(number, (None, None))
            if due is None:
                try:
                    inv = billing.find_invoice(uow, number)
                    due, owner = inv["due_date"], inv["customer"]
                except NotFoundError:
                    due, owner = as_of.isoformat(), None
            if customer and owner != customer:
                continue
            days = (as_of - date.fromisoformat(due)).days
            b = bucket(days)
            totals[b] += functional
            items.append({"invoice": number, "customer": owner, "due_date": due, "days_past_due": max(days, 0),
                          "bucket": b, "amount": fmt(functional, ent.currency), "currency": ent.currency,
                          "open": fmt(txn, cur), "invoice_currency": cur})
    out: dict[str, Any] = {"as_of": as_of.isoformat(), "entity": entity, "currency": currency}
    out.update({b: fmt(v, currency) if currency else "0" for b, v in totals.items()})
    out["total"] = fmt(sum(totals.values()), currency) if currency else "0"
    out["invoices"] = items
    return out


@payload
class ArAgingQuery:
    as_of: str | None = None
    entity: str | None = None
    customer: str | None = None


@query("ar_aging", ArAgingQuery, summary="AR aging by bucket (current, d1_30, d31_60, d61_90, over_90) as of a date")
def ar_aging(uow: Any, q: ArAgingQuery) -> dict[str, Any]:
    as_of = parse_date(q.as_of, field="as_of") if q.as_of else uow.today()
    customer = None
    if q.customer:
        customer = get_customer(uow, q.customer).external_id
    return aging_data(uow, as_of, q.entity, customer)


def dso(uow: Any, entity: str, as_of: date, days: int = 90) -> dict[str, Any]:
    ent = get_entity(uow, entity)
    receivables = ar_balance(uow, ent.code, as_of)
    start = as_of - timedelta(days=days - 1)
    billed = invoiced_between(uow, ent.code, start, as_of)
    return {"entity": ent.code, "as_of": as_of.isoformat(), "days": days, "currency": ent.currency,
            "receivables": fmt(receivables, ent.currency), "invoiced": fmt(billed, ent.currency),
            "dso_days": str(dso_days(receivables, billed, days)), "_minor": (receivables, billed)}


@payload
class DsoQuery:
    entity: str | None = None
    as_of: str | None = None
    days: int = 90


@query("dso", DsoQuery, summary="Days sales outstanding: receivables / invoiced over the last N days x N")
def dso_query(uow: Any, q: DsoQuery) -> dict[str, Any]:
    if q.days <= 0:
        raise ValidationError("days must be positive", field="days")
    as_of = parse_date(q.as_of, field="as_of") if q.as_of else uow.today()
    ents = _entities(uow, q.entity)
    parts = [dso(uow, e.code, as_of, q.days) for e in ents]
    rec = sum(p["_minor"][0] for p in parts)
    billed = sum(p["_minor"][1] for p in parts)
    for p in parts:
        p.pop("_minor")
    if len(parts) == 1:
        return parts[0]
    cur = ents[0].currency
    return {"entity": None, "as_of": as_of.isoformat(), "days": q.days, "currency": cur,
            "receivables": fmt(rec, cur), "invoiced": fmt(billed, cur),
            "dso_days": str(dso_days(rec, billed, q.days)), "entities": parts}


# --------------------------------------------------------------------------- statement of account


def statement_data(uow: Any, customer: str, as_of: date) -> dict[str, Any]:
    cust = get_customer(uow, customer)
    invoices = []
    for number, in uow.all("SELECT number FROM collections_invoice WHERE customer = ? AND date <= ? ORDER BY date,"
                           " number", (cust.external_id, as_of.isoformat())):
        inv = billing.find_invoice(uow, number)
        cur = inv["currency"]
        invoices.append({"invoice": number, "date": inv["date"], "due_date": inv["due_date"], "currency": cur,
                         "total": fmt(int(inv["total"]), cur), "paid": fmt(int(inv["paid"]), cur),
                         "credited": fmt(int(inv["credited"]) + int(inv["credit_applied"]), cur),
                         "written_off": fmt(int(inv["written_off"]), cur), "balance": fmt(int(inv["balance"]), cur),
                         "status": inv["status"], "_balance": int(inv["balance"]),
                         "days_past_due": max(0, (as_of - date.fromisoformat(inv["due_date"])).days)})
    payments = []
    for row in uow.all("SELECT number, date, currency, amount, applied, refunded, status, reference FROM"
                       " collections_payment WHERE customer = ? AND date <= ? ORDER BY date, id",
                       (cust.external_id, as_of.isoformat())):
        number, day, cur, amount, applied, refunded, status, reference = row
        payments.append({"payment": number, "date": day, "currency": cur, "amount": fmt(amount, cur),
                         "applied": fmt(applied, cur), "refunded": fmt(refunded, cur),
                         "unapplied": fmt(unapplied_of({"amount": amount, "applied": applied, "refunded": refunded}),
                                          cur), "status": status, "reference": reference,
                         "_unapplied": unapplied_of({"amount": amount, "applied": applied, "refunded": refunded})})
    by_cur: dict[str, dict[str, int]] = {}
    for i in invoices:
        by_cur.setdefault(i["currency"], {"open": 0, "credit": 0})["open"] += i["_balance"]
    for p in payments:
        by_cur.setdefault(p["currency"], {"open": 0, "credit": 0})["credit"] += p["_unapplied"]
    buckets: dict[str, dict[str, int]] = {}
    for i in invoices:
        if i["_balance"] > 0:
            slot = buckets.setdefault(i["currency"], dict.fromkeys(BUCKETS, 0))
            slot[bucket((as_of - date.fromisoformat(i["due_date"])).days)] += i["_balance"]
    for i in invoices:
        i.pop("_balance")
    for p in payments:
        p.pop("_unapplied")
    return {"customer": cust.external_id, "name": cust.name, "as_of": as_of.isoformat(),
            "invoices": invoices, "payments": payments,
            "totals": {c: {"open": fmt(v["open"], c), "unapplied_credit": fmt(v["credit"], c),
                           "net_due": fmt(v["open"] - v["credit"], c)} for c, v in sorted(by_cur.items())},
            "aging": {c: {b: fmt(v, c) for b, v in slot.items()} for c, slot in sorted(buckets.items())},
            "collector": collector_for(uow, cust.external_id)["collector"]}


def statement_html(data: dict[str, Any], entity_name: str = "") -> str:
    """A self-contained HTML statement of account (no external assets)."""
    e = escape
    rows = "".join(
        f"<tr><td>{e(i['invoice'])}</td><td>{i['date']}</td><td>{i['due_date']}</td><td class=n>{i['total']}</td>"
        f"<td class=n>{i['paid']}</td><td class=n>{i['credited']}</td><td class=n>{i['written_off']}</td>"
        f"<td class=n>{i['balance']}</td><td>{i['currency']}</td><td>{e(i['status'])}</td>"
        f"<td class=n>{i['days_past_due']}</td></tr>" for i in data["invoices"])
    pays = "".join(
        f"<tr><td>{e(p['payment'])}</td><td>{p['date']}</td><td class=n>{p['amount']}</td><td class=n>{p['applied']}</td>"
        f"<td class=n>{p['unapplied']}</td><td>{p['currency']}</td><td>{e(p['reference'] or '')}</td></tr>"
        for p in data["payments"])
    totals = "".join(f"<tr><td>{c}</td><td class=n>{t['open']}</td><td class=n>{t['unapplied_credit']}</td>"
                     f"<td class=n><b>{t['net_due']}</b></td></tr>" for c, t in data["totals"].items())
    aging_rows = "".join(f"<tr><td>{c}</td>" + "".join(f"<td class=n>{v}</td>" for v in slot.values()) + "</tr>"
                         for c, slot in data["aging"].items())
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<title>Statement of account {e(data['customer'])} {data['as_of']}</title>
<style>body{{font-family:sans-serif;font-size:11pt;margin:2em}}table{{border-collapse:collapse;width:100%;margin:1em 0}}
th,td{{border-bottom:1px solid #ccc;padding:3px 6px;text-align:left}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}
h1{{font-size:16pt}}</style></head><body>
<h1>Statement of account</h1>
<p>{e(entity_name)}<br>To: <b>{e(data['name'])}</b> ({e(data['customer'])})<br>As of {data['as_of']}
{f"<br>Your collector: {e(data['collector'])}" if data.get('collector') else ''}</p>
<h2>Invoices</h2><table><tr><th>Invoice</th><th>Date</th><th>Due</th><th>Total</th><th>Paid</th><th>Credited</th>
<th>Written off</th><th>Balance</th><th>Currency</th><th>Status</th><th>Days past due</th></tr>{rows}</table>
<h2>Payments</h2><table><tr><th>Payment</th><th>Date</th><th>Amount</th><th>Applied</th><th>On account</th>
<th>Currency</th><th>Reference</th></tr>{pays}</table>
<h2>Summary</h2><table><tr><th>Currency</th><th>Open invoices</th><th>Credit on account</th><th>Net due</th></tr>{totals}</table>
<h2>Aging</h2><table><tr><th>Currency</th>{''.join(f'<th>{b}</th>' for b in BUCKETS)}</tr>{aging_rows}</table>
</body></html>"""


@payload
class StatementQuery:
    customer: str
    as_of: str | None = None
    html: bool = False


@query("statement_of_account", StatementQuery, summary="A customer's statement of account: open items, payments, aging")
def statement_of_account(uow: Any, q: StatementQuery) -> dict[str, Any]:
    as_of = parse_date(q.as_of, field="as_of") if q.as_of else uow.today()
    data = statement_data(uow, q.customer, as_of)
    if q.html:
        cust = get_customer(uow, q.customer)
        name = get_entity(uow, cust.entity).name if cust.entity else ""
        data["html"] = statement_html(data, name)
    return data


def statement_pdf(html: str) -> bytes:
    """Render the statement's HTML as PDF (WeasyPrint, when installed)."""
    try:
        from weasyprint import HTML
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ValidationError("PDF output needs WeasyPrint (pip install weasyprint)", field="pdf") from exc
    return HTML(string=html).write_pdf()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- collectors


def collector_for(uow: Any, customer: str) -> dict[str, Any]:
    """The collector of an account: its top parent's, else the nearest assigned ancestor's, else its own."""
    cust = get_customer(uow, customer)
    chain = [cust] + ancestors(uow, cust.external_id)  # nearest first, the top parent last
    assigned = {}
    exts = [c.external_id for c in chain]
    marks = ",".join("?" * len(exts))
    for ext, collector in uow.all(f"SELECT customer, collector FROM collections_collector WHERE customer IN ({marks})",
                                  exts):
        assigned[ext] = collector
    for c in reversed(chain):
        if c.external_id in assigned:
            return {"customer": cust.external_id, "collector": assigned[c.external_id],
                    "assigned_to": c.external_id, "inherited": c.external_id != cust.external_id,
                    "top_parent": chain[-1].external_id}
    return {"customer": cust.external_id, "collector": None, "assigned_to": None, "inherited": False,
            "top_parent": chain[-1].external_id}


@payload
class CollectorAssign:
    customer: str
    collector: str


@command("collector.assign", CollectorAssign, roles=("collections", "admin"),
         summary="Assign a collector to an account; its child accounts inherit it from their top parent")
def collector_assign(uow: Any, cmd: CollectorAssign) -> dict[str, Any]:
    cust = get_customer(uow, cmd.customer)
    if not cmd.collector.strip():
        raise ValidationError("collector is required", field="collector")
    uow.execute("INSERT INTO collections_collector (customer, collector, assigned_at, actor) VALUES (?,?,?,?)"
                " ON CONFLICT (customer) DO UPDATE SET collector = excluded.collector,"
                " assigned_at = excluded.assigned_at, actor = excluded.actor",
                (cust.external_id, cmd.collector.strip(), uow.now(), uow.actor))
    uow.emit("collector.assigned", "customer", cust.external_id, {"customer": cust.external_id,
             "collector": cmd.collector.strip()}, entity=cust.entity)
    return collector_for(uow, cust.external_id)


@payload
class CollectorQuery:
    customer: str


@query("collector", CollectorQuery, summary="Who collects from an account (inherited from its top parent)")
def collector_query(uow: Any, q: CollectorQuery) -> dict[str, Any]:
    return collector_for(uow, q.customer)


# --------------------------------------------------------------------------- reconciliation sides


@recon_side("collections.ar_open_items", area="collections",
            description="AR open items per invoice as the ledger's receivables subledger holds them")
def ar_open_items_side(uow: Any, ctx: SideContext) -> list[dict[str, Any]]:
    out = []
    for ent in ([get_entity(uow, ctx.entity)] if ctx.entity else list_entities(uow)):
        for number, (_functional, txn, cur) in ar_open_items(uow, ent.code, ctx.as_of).items():
            out.append({"entity": ent.code, "invoice": number, "currency": cur, "amount": txn,
                        "record": {"invoice": number}})
    return out


@recon_side("collections.ar_balance_by_entity", area="collections",
            description="The AR subledger total per entity (sum of open items, functional currency)")
def ar_balance_side(uow: Any, ctx: SideContext) -> list[dict[str, Any]]:
    out = []
    for ent in ([get_entity(uow, ctx.entity)] if ctx.entity else list_entities(uow)):
        total = sum(f for f, _t, _c in ar_open_items(uow, ent.code, ctx.as_of).values())
        out.append({"entity": ent.code, "currency": ent.currency, "amount": total})
    return out


@recon_side("collections.ar_balance_by_currency", area="collections",
            description="The AR subledger per entity and invoice currency (open items, in that currency)")
def ar_balance_by_currency_side(uow: Any, ctx: SideContext) -> list[dict[str, Any]]:
    out = []
    for ent in ([get_entity(uow, ctx.entity)] if ctx.entity else list_entities(uow)):
        totals: dict[str, int] = {}
        for _functional, txn, cur in ar_open_items(uow, ent.code, ctx.as_of).values():
            totals[cur] = totals.get(cur, 0) + txn
        out.extend({"entity": ent.code, "currency": cur, "amount": amount} for cur, amount in sorted(totals.items()))
    return out


@recon_side("collections.payments", area="collections", description="Bank payments recorded, by bank reference")
def payments_side(uow: Any, ctx: SideContext) -> list[dict[str, Any]]:
    rows = uow.all("SELECT p.entity, p.number, p.currency, p.amount, p.date, l.fingerprint FROM collections_payment p"
                   " LEFT JOIN collections_bank_line l ON l.id = p.bank_line_id WHERE p.channel = 'bank'"
                   " AND p.date <= ?", (ctx.as_of.isoformat(),))
    return [{"entity": e, "reference": fp or n, "currency": c, "amount": int(a), "date": d, "record": {"payment": n}}
            for e, n, c, a, d, fp in rows]


@recon_side("collections.bank_lines", area="collections", description="Bank statement credit lines that are receipts")
def bank_lines_side(uow: Any, ctx: SideContext) -> list[dict[str, Any]]:
    rows = uow.all("SELECT entity, fingerprint, currency, amount, booking_date, id FROM collections_bank_line"
                   " WHERE status = 'payment' AND booking_date <= ?", (ctx.as_of.isoformat(),))
    return [{"entity": e, "reference": fp, "currency": c, "amount": int(a), "date": d, "record": {"bank_line": i}}
            for e, fp, c, a, d, i in rows]


def aging_items(uow: Any, as_of: date, entity: str) -> dict[str, int]:
    """Aging buckets (functional minor units) of one entity, for KPIs and dashboards."""
    items = []
    open_items = ar_open_items(uow, entity, as_of)
    dues = _due_dates(uow, sorted(open_items))
    for number, (functional, _t, _c) in open_items.items():
        due = dues.get(number, (as_of.isoformat(), None))[0]
        items.append((functional, date.fromisoformat(due)))
    return aging(items, as_of)

