"""Reconciliation sides and checks that run on today's data: the general ledger.

- ``ledger.maintained_balances``: the balances the ledger maintains per entity,
  period, account and transaction currency (what every report reads);
- ``ledger.journal_line_totals``: the same totals summed from the journal lines
  themselves. Comparing the two catches a line changed, added or removed
  outside closeloop (a direct database edit): the posting path always moves
  both together;
- ``ledger.debits`` / ``ledger.credits``: per entity and period, so an entry
  that no longer balances is found;
- ``ledger.account_balance``: one account (by role or code) per entity as of
  the run date, through the ``balance`` query (the GL side of the declared
  subledger rules);
- check ``ledger.audit_chain``: the ``ledger_verify`` query (the hash chain
  replayed) as a control, each problem a break.

The first three read the ledger's tables directly (read-only, portable SQL):
the ledger area exposes no query for line totals yet. They belong in the
ledger area and should move there (``ledger/recon_sides.py``) when it
registers its own; the rule file would not change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from closeloop.control.recon import SideContext, recon_check, recon_side
from closeloop.core import registry
from closeloop.core.money import to_minor


def _accounts(uow: Any) -> dict[int, tuple[str, str]]:
    return {int(i): (code, entity) for i, code, entity in uow.all("SELECT id, code, entity FROM ledger_account")}


def _currencies(uow: Any) -> dict[str, str]:
    return {code: ccy for code, ccy in uow.all("SELECT code, currency FROM legal_entity")}


def _period_filter(ctx: SideContext, column: str) -> tuple[str, list[Any]]:
    where, params = [f"{column} <= ?"], [ctx.as_of.isoformat()[:7]]
    return where, params


@recon_side("ledger.maintained_balances", area="ledger",
            description="Maintained ledger balances per entity, period, account and transaction currency")
def maintained_balances(uow: Any, ctx: SideContext) -> Iterable[dict[str, Any]]:
    accounts, currencies = _accounts(uow), _currencies(uow)
    where, params = _period_filter(ctx, "period")
    if ctx.entity:
        where.append("entity = ?")
        params.append(ctx.entity)
    for entity, period, account_id, cur, amount, lines in uow.all(
            "SELECT entity, period, account_id, currency, amount, line_count FROM ledger_balance"
            f" WHERE {' AND '.join(where)}", params):
        if int(amount) == 0 and int(lines) == 0:
            continue
        code = accounts.get(int(account_id), (f"#{account_id}", entity))[0]
        yield {"entity": entity, "period": period, "account": code, "txn_currency": cur,
               "currency": currencies.get(entity), "amount": int(amount), "lines": int(lines),
               "record": {"balance": f"{entity} {period} {code} {cur}"}}


@recon_side("ledger.journal_line_totals", area="ledger",
            description="Journal lines summed per entity, period, account and transaction currency")
def journal_line_totals(uow: Any, ctx: SideContext) -> Iterable[dict[str, Any]]:
    accounts, currencies = _accounts(uow), _currencies(uow)
    where, params = _period_filter(ctx, "e.period")
    if ctx.entity:
        where.append("e.entity = ?")
        params.append(ctx.entity)
    for entity, period, account_id, cur, amount, lines in uow.all(
            "SELECT e.entity, e.period, l.account_id, l.currency, SUM(l.amount), COUNT(*) FROM journal_line l"
            f" JOIN journal_entry e ON e.id = l.entry_id WHERE {' AND '.join(where)}"
            " GROUP BY e.entity, e.period, l.account_id, l.currency", params):
        code = accounts.get(int(account_id), (f"#{account_id}", entity))[0]
        yield {"entity": entity, "period": period, "account": code, "txn_currency": cur,
               "currency": currencies.get(entity), "amount": int(amount), "lines": int(lines),
               "record": {"lines": f"{entity} {period} {code} {cur}"}}


def _sides_of_entries(uow: Any, ctx: SideContext, sign: str) -> Iterable[dict[str, Any]]:
    currencies = _currencies(uow)
    where, params = _period_filter(ctx, "e.period")
    if ctx.entity:
        where.append("e.entity = ?")
        params.append(ctx.entity)
    where.append("l.amount > 0" if sign == "debit" else "l.amount < 0")
    for entity, period, amount in uow.all(
            "SELECT e.entity, e.period, SUM(l.amount) FROM journal_line l JOIN journal_entry e ON e.id = l.entry_id"
            f" WHERE {' AND '.join(where)} GROUP BY e.entity, e.period", params):
        yield {"entity": entity, "period": period, "currency": currencies.get(entity), "amount": abs(int(amount)),
               "record": {"period": f"{entity} {period}"}}


@recon_side("ledger.debits", area="ledger", description="Sum of debit journal lines per entity and period")
def debits(uow: Any, ctx: SideContext) -> Iterable[dict[str, Any]]:
    return _sides_of_entries(uow, ctx, "debit")


@recon_side("ledger.credits", area="ledger", description="Sum of credit journal lines per entity and period")
def credits(uow: Any, ctx: SideContext) -> Iterable[dict[str, Any]]:
    return _sides_of_entries(uow, ctx, "credit")


@recon_side("ledger.account_balance", area="ledger",
            description="One account's balance (params: role or account) per entity as of the run date")
def account_balance(uow: Any, ctx: SideContext) -> Iterable[dict[str, Any]]:
    entities = registry.get("entities", "query")
    balance = registry.get("balance", "query")
    role, account = ctx.params.get("role"), ctx.params.get("account")
    for ent in entities.fn(uow, entities.parse({}))["entities"]:
        if ctx.entity and ent["code"] != ctx.entity:
            continue
        result = balance.fn(uow, balance.parse({"role": role, "account": account, "entity": ent["code"],
                                                "as_of": ctx.as_of.isoformat()}))
        yield {"entity": ent["code"], "currency": result["currency"],
               "amount": to_minor(result["amount"], result["currency"]),
               "record": {"account": f"{ent['code']}:{result['account']}"}}


CHAIN_CATEGORIES = {
    "changed": "field_difference",     # the entry's content no longer hashes to what the chain recorded
    "removed": "missing_right",        # in the chain, gone from the tables
    "inserted": "missing_left",        # in the tables, never in the chain
    "orphan_line": "missing_left",     # lines without their entry
    "balance_mismatch": "amount_difference",
}


@recon_check("ledger.audit_chain", area="ledger",
             description="Replay the ledger's hash chain (ledger_verify); every changed, removed or inserted row")
def audit_chain(uow: Any, ctx: SideContext) -> dict[str, Any]:
    verify = registry.get("ledger_verify", "query")
    result = verify.fn(uow, verify.parse({"entity": ctx.entity}))
    breaks = [{"category": CHAIN_CATEGORIES.get(p["kind"], "field_difference"),
               "key": {"entity": p["entity"], "record": p["record"], "problem": p["kind"]},
               "detail": f"{p['kind']}: {p['detail']}", "record": {"journal": p["record"]}}
              for p in result["problems"]]
    return {"checked": int(result["entries_checked"]), "breaks": breaks}
