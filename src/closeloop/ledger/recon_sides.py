"""Reconciliation sides the ledger provides (see config/recon_rules.yaml).

``ledger.account_txn_balances``: one account (params ``role`` or ``account``) per entity and
transaction currency, in that currency, as of the run date. Subledgers keep documents in their own
currency, so this is what they reconcile to: revaluations of foreign-currency balances are booked
in the functional currency against the bucket with a zero transaction amount, and exchange
differences never show up as breaks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from closeloop.control.recon import SideContext, recon_side
from closeloop.ledger.consolidation import balances_by_currency
from closeloop.ledger.service import entities_for, resolve_account


@recon_side("ledger.account_txn_balances", area="ledger",
            description="One account's balance per entity and transaction currency, in that currency")
def account_txn_balances(uow: Any, ctx: SideContext) -> Iterable[dict[str, Any]]:
    name = ctx.params.get("role") or ctx.params.get("account")
    for ent in entities_for(uow, ctx.entity):
        acct = resolve_account(uow, ent.code, str(name))
        for (account_id, currency), amount in sorted(balances_by_currency(uow, ent.code, ctx.as_of).items()):
            if account_id == acct.id and amount:
                yield {"entity": ent.code, "currency": currency, "amount": amount,
                       "record": {"account": f"{ent.code}:{acct.code}"}}
