"""Reconciliation sides provided by posting (see config/recon_rules.yaml).

- ``posting.invoice_postings``: what the GL booked for each invoice — the receivable net of any
  customer credit created, from the invoice's own posting (reference ``invoice.issued:<number>``),
  in the invoice currency. Compared with billing's invoice totals, an invoice edited outside
  closeloop, or never posted, is a break.
- ``ledger.intercompany_receivables`` / ``ledger.intercompany_payables``: intercompany balances per
  creditor:debtor pair in the charge's currency, from the lines the intercompany rule tags with
  their counterparty. Both sides hold the performer's currency, so they must agree to the cent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from closeloop.control.recon import SideContext, recon_side


@recon_side("posting.invoice_postings", area="posting",
            description="The GL's receivable per invoice (net of customer credit), from the invoice's posting")
def invoice_postings(uow: Any, ctx: SideContext) -> Iterable[dict[str, Any]]:
    sql = ("SELECT e.entity, e.reference, l.currency, SUM(l.txn_amount) FROM journal_entry e"
           " JOIN journal_line l ON l.entry_id = e.id JOIN ledger_account a ON a.id = l.account_id"
           " WHERE e.reference LIKE 'invoice.issued:%' AND a.role IN ('accounts_receivable', 'customer_credit')"
           " AND e.date <= ?")
    params: list[Any] = [ctx.as_of.isoformat()]
    if ctx.entity:
        sql += " AND e.entity = ?"
        params.append(ctx.entity)
    for entity, reference, currency, amount in uow.all(sql + " GROUP BY e.entity, e.reference, l.currency", params):
        yield {"entity": entity, "invoice": reference.split(":", 1)[1], "currency": currency,
               "amount": int(amount)}


def _intercompany(uow: Any, ctx: SideContext, role: str) -> dict[tuple[str, str, str], int]:
    totals: dict[tuple[str, str, str], int] = {}
    sql = ("SELECT a.entity, l.currency, l.txn_amount, l.dimensions FROM journal_line l"
           " JOIN ledger_account a ON a.id = l.account_id JOIN journal_entry e ON e.id = l.entry_id"
           " WHERE a.role = ? AND e.date <= ?")
    for entity, currency, amount, dims in uow.all(sql, (role, ctx.as_of.isoformat())):
        counterparty = str(json.loads(dims).get("counterparty", "?")) if dims else "?"
        key = (entity, counterparty, currency)
        totals[key] = totals.get(key, 0) + int(amount)
    return totals


@recon_side("ledger.intercompany_receivables", area="posting",
            description="Intercompany receivables per creditor:debtor pair and currency")
def intercompany_receivables(uow: Any, ctx: SideContext) -> Iterable[dict[str, Any]]:
    for (entity, counterparty, currency), amount in _intercompany(uow, ctx, "intercompany_receivable").items():
        if amount:
            yield {"pair": f"{entity}:{counterparty}", "currency": currency, "amount": amount}


@recon_side("ledger.intercompany_payables", area="posting",
            description="Intercompany payables per creditor:debtor pair and currency")
def intercompany_payables(uow: Any, ctx: SideContext) -> Iterable[dict[str, Any]]:
    for (entity, counterparty, currency), amount in _intercompany(uow, ctx, "intercompany_payable").items():
        if amount:
            yield {"pair": f"{counterparty}:{entity}", "currency": currency, "amount": -amount}
