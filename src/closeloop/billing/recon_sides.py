"""Reconciliation sides provided by billing (see config/recon_rules.yaml), and the ``billing_leakage`` query.

Billing owns its tables, so these read them directly (read-only):

- ``billing.invoice_totals`` — every issued invoice (not held, not void; credit memos are not
  invoices) dated on or before ``as_of``, with its total in the invoice currency: what the GL's
  receivable for that invoice must be (rule ``invoices_vs_ledger`` against
  ``posting.invoice_postings``; rule ``legacy_invoice_register`` against a legacy CSV). A migrated
  legacy invoice is posted at the balance still open at cutover (the part paid in the legacy
  system never reached closeloop's ledger), so that is its amount here.
- ``billing.open_invoice_balances`` — the open balance of every issued invoice with one, in the
  invoice currency (rule ``invoices_vs_ar_subledger`` against ``collections.ar_open_items``).
- ``billing.billed_to_date`` — per contract and currency, the net amount invoiced for the
  contract's committed lines on issued invoices dated on or before ``as_of``: recurring charges,
  one-time and partial charges, and the credits from amendments and cancellations. Usage and
  milestone lines are left out, as the contract side leaves them out (it cannot know usage or
  completions); credit memos are after-the-fact adjustments, not billing, and are left out too. A
  held invoice is not billed (rule ``contract_vs_billed`` against
  ``contracts.value_due_to_date``).

Query ``billing_leakage {as_of, entity?}``: contract value due by ``as_of`` but not billed by then —
per contract ``max(0, due - billed)`` from the same two sides, summed per currency. The
``billing_leakage`` KPI reads it (for a period: as of the period end).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from closeloop.control.recon import SideContext, recon_side
from closeloop.core.money import format_minor, to_minor
from closeloop.core.periods import parse_date
from closeloop.core.registry import payload, query

ISSUED = "i.kind = 'invoice' AND i.number IS NOT NULL AND i.status NOT IN ('held', 'void')"
# Invoice lines that bill a contract's committed value (usage and milestones are not committed).
SCHEDULED_KINDS = ("recurring", "one_time", "partial", "credit")


def _where(ctx: SideContext, column: str = "i.entity") -> tuple[str, list[Any]]:
    sql, params = " AND i.date <= ?", [ctx.as_of.isoformat()]
    if ctx.entity:
        sql += f" AND {column} = ?"
        params.append(ctx.entity)
    return sql, params


def _stream(uow: Any, sql: str, params: list[Any]) -> Iterator[Any]:
    """The rows of a query in batches (a side may read a million rows: they are not all held twice).
    Consume it before running another query on the same unit of work."""
    cur = uow.execute(sql, params)
    while True:
        rows = cur.fetchmany(10_000)
        if not rows:
            return
        yield from rows


def _cutover_balances(uow: Any) -> dict[str, int]:
    """Migrated legacy invoices: the balance open at cutover (what the migration posted), by number."""
    out: dict[str, int] = {}
    for number, text in uow.all("SELECT aggregate_id, payload FROM event WHERE type = 'invoice.migrated'"):
        p = json.loads(text)
        out[str(number)] = to_minor(str(p["balance"]), str(p["currency"]))
    return out


@recon_side("billing.invoice_totals", area="billing",
            description="Issued invoices with their totals (what each invoice's receivable must be), by number")
def invoice_totals(uow: Any, ctx: SideContext) -> Iterator[dict[str, Any]]:
    where, params = _where(ctx)
    legacy = _cutover_balances(uow)
    shared: dict[str, str] = {}  # one string object per entity, currency and day, however many invoices
    same = shared.setdefault
    for number, entity, currency, total, day in _stream(
            uow, f"SELECT i.number, i.entity, i.currency, i.total, i.date FROM billing_invoice i WHERE {ISSUED}"
                 f"{where}", params):
        amount = legacy.get(number, total) if legacy else total
        if not int(amount):
            continue  # a zero invoice (a free trial's, one a coupon covers) books no receivable: nothing to match
        yield {"entity": same(entity, entity), "invoice": number, "currency": same(currency, currency),
               "amount": int(amount), "date": same(day, day), "record": {"invoice": number}}


@recon_side("billing.open_invoice_balances", area="billing",
            description="Open balance of every issued invoice that has one, by number")
def open_invoice_balances(uow: Any, ctx: SideContext) -> Iterator[dict[str, Any]]:
    where, params = _where(ctx)
    for number, entity, currency, balance, day in uow.all(
            f"SELECT i.number, i.entity, i.currency, i.balance, i.date FROM billing_invoice i WHERE {ISSUED}"
            f" AND i.balance <> 0{where}", params):
        yield {"entity": entity, "invoice": number, "currency": currency, "amount": int(balance), "date": day,
               "record": {"invoice": number}}


def billed(uow: Any, ctx: SideContext) -> Iterator[dict[str, Any]]:
    where, params = _where(ctx)
    marks = ",".join("?" * len(SCHEDULED_KINDS))
    for contract, entity, currency, amount, first, last in uow.all(
            "SELECT l.contract_id, i.entity, i.currency, SUM(l.net), MIN(i.date), MAX(i.date) FROM billing_line l"
            f" JOIN billing_invoice i ON i.id = l.invoice_id WHERE {ISSUED} AND l.contract_id IS NOT NULL"
            f" AND l.kind IN ({marks}){where} GROUP BY l.contract_id, i.entity, i.currency",
            [*SCHEDULED_KINDS, *params]):
        if int(amount or 0):
            yield {"contract": contract, "currency": currency, "amount": int(amount), "entity": entity,
                   "date": last, "first_invoice": first, "record": {"contract": contract}}


@recon_side("billing.billed_to_date", area="billing",
            description="Net amount invoiced per contract for its committed lines (no usage, milestones or memos)")
def billed_to_date(uow: Any, ctx: SideContext) -> Iterable[dict[str, Any]]:
    return billed(uow, ctx)


# --------------------------------------------------------------------------- billing leakage


@payload
class BillingLeakageQuery:
    as_of: str | None = None
    entity: str | None = None


@query("billing_leakage", BillingLeakageQuery,
       summary="Contract value due by a date but not billed by then, per contract and in total per currency")
def billing_leakage(uow: Any, q: BillingLeakageQuery) -> dict[str, Any]:
    from closeloop.contracts.recon_sides import values_due

    as_of = parse_date(q.as_of, field="as_of") if q.as_of else uow.today()
    ctx = SideContext(rule="billing_leakage", as_of=as_of, params={}, entity=q.entity)
    done = {(r["contract"], r["currency"]): int(r["amount"]) for r in billed(uow, ctx)}
    totals: dict[str, int] = {}
    contracts = []
    for rec in values_due(uow, as_of, q.entity):
        key = (rec["contract"], rec["currency"])
        gap = int(rec["amount"]) - done.get(key, 0)
        if gap > 0:
            cur = rec["currency"]
            totals[cur] = totals.get(cur, 0) + gap
            contracts.append({"contract": rec["contract"], "customer": rec["customer"], "entity": rec["entity"],
                              "currency": cur, "due": format_minor(int(rec["amount"]), cur),
                              "billed": format_minor(done.get(key, 0), cur), "leakage": format_minor(gap, cur)})
    by_currency = {c: format_minor(v, c) for c, v in sorted(totals.items())}
    if not by_currency:
        value: str | None = "0"
    else:
        value = next(iter(by_currency.values())) if len(by_currency) == 1 else None
    return {"as_of": as_of.isoformat(), "value": value, "by_currency": by_currency, "contracts": contracts,
            "records": [c["contract"] for c in contracts]}
