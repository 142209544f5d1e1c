"""Ledger reports, all "as of" any date: trial balance, balance, P&L, balance sheet, GL detail, journal.

Balances come from the maintained ``ledger_balance`` rows (one per entity,
period, account and currency), so the cost depends on accounts x periods, not
on the number of journal lines. An as-of date inside a period adds that
period's lines up to the date.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from closeloop.core.calendars import FiscalCalendar
from closeloop.core.errors import ValidationError
from closeloop.core.money import format_minor
from closeloop.core.periods import iso, parse_date
from closeloop.core.registry import Limit, payload, query
from closeloop.ledger.model import DEBIT_NORMAL, PROFIT_AND_LOSS, Account
from closeloop.ledger.service import accounts, entity_calendar, find_entry, resolve_account, single_entity


def account_balances(uow: Any, entity: str, as_of: date | None) -> dict[int, int]:
    """Functional-currency balances (debit positive) by account id, as of the end of ``as_of``."""
    out: dict[int, int] = {}
    if as_of is None:
        rows = uow.all("SELECT account_id, SUM(amount) FROM ledger_balance WHERE entity = ? GROUP BY account_id",
                       (entity,))
    else:
        calendar = entity_calendar(uow, entity)
        period = calendar.period_of(as_of)
        first, last = calendar.bounds(period)
        if as_of == last:
            rows = uow.all(
                "SELECT account_id, SUM(amount) FROM ledger_balance WHERE entity = ? AND period <= ?"
                " GROUP BY account_id", (entity, period))
        else:
            rows = uow.all(
                "SELECT account_id, SUM(amount) FROM ledger_balance WHERE entity = ? AND period < ?"
                " GROUP BY account_id", (entity, period))
            rows += uow.all(
                "SELECT l.account_id, SUM(l.amount) FROM journal_entry e JOIN journal_line l ON l.entry_id = e.id"
                " WHERE e.entity = ? AND e.date >= ? AND e.date <= ? GROUP BY l.account_id",
                (entity, iso(first), iso(as_of)))
    for account_id, amount in rows:
        out[int(account_id)] = out.get(int(account_id), 0) + int(amount)
    return out


def movements(uow: Any, entity: str, start: date | None, end: date | None) -> dict[int, int]:
    """Net change per account over the inclusive date range."""
    closing = account_balances(uow, entity, end)
    if start is None:
        return closing
    opening = account_balances(uow, entity, start - timedelta(days=1))
    return {k: closing.get(k, 0) - opening.get(k, 0) for k in set(closing) | set(opening)}


def _by_id(uow: Any, entity: str) -> dict[int, Account]:
    return {a.id: a for a in accounts(uow, entity).values()}


def _date(value: str | None, field: str) -> date | None:
    return parse_date(value, field=field) if value else None


# --------------------------------------------------------------------------- trial balance


@payload
class TrialBalanceQuery:
    entity: str | None = None
    as_of: str | None = None


def trial_balance_data(uow: Any, entity_code: str | None, as_of: date | None) -> dict[str, Any]:
    ent = single_entity(uow, entity_code)
    ccy = ent.currency
    by_id = _by_id(uow, ent.code)
    balances = account_balances(uow, ent.code, as_of)
    debits = credits = 0
    accounts_out: dict[str, str] = {}
    rows = []
    for account_id, amount in sorted(balances.items(), key=lambda kv: by_id[kv[0]].code):
        if amount == 0:
            continue
        acct = by_id[account_id]
        if amount > 0:
            debits += amount
        else:
            credits -= amount
        accounts_out[acct.code] = format_minor(amount, ccy)
        rows.append({"code": acct.code, "name": acct.name, "type": acct.type, "role": acct.role,
                     "debit": format_minor(amount, ccy) if amount > 0 else "",
                     "credit": format_minor(-amount, ccy) if amount < 0 else ""})
    return {
        "entity": ent.code, "currency": ccy, "as_of": iso(as_of) if as_of else None,
        "debits": format_minor(debits, ccy), "credits": format_minor(credits, ccy),
        "balanced": debits == credits, "accounts": accounts_out, "rows": rows,
    }


@query("trial_balance", TrialBalanceQuery, summary="Trial balance of an entity as of a date")
def trial_balance(uow: Any, q: TrialBalanceQuery) -> dict[str, Any]:
    return trial_balance_data(uow, q.entity, _date(q.as_of, "as_of"))


# --------------------------------------------------------------------------- balance


@payload
class BalanceQuery:
    role: str | None = None
    account: str | None = None
    entity: str | None = None
    as_of: str | None = None


@query("balance", BalanceQuery, summary="Balance of one account (by role or code), debit positive")
def balance(uow: Any, q: BalanceQuery) -> dict[str, Any]:
    if (q.role is None) == (q.account is None):
        raise ValidationError("balance needs exactly one of role or account", field="role")
    ent = single_entity(uow, q.entity)
    name = q.role or q.account
    assert name is not None
    acct = resolve_account(uow, ent.code, name, field="role" if q.role else "account")
    amount = account_balances(uow, ent.code, _date(q.as_of, "as_of")).get(acct.id, 0)
    return {"entity": ent.code, "account": acct.code, "role": acct.role, "currency": ent.currency,
            "amount": format_minor(amount, ent.currency)}


# --------------------------------------------------------------------------- profit and loss


@payload
class ProfitAndLossQuery:
    entity: str | None = None
    period: str | None = None  # YYYY-MM or YYYY-MM..YYYY-MM
    start: str | None = None
    end: str | None = None


def date_range(period: str | None, start: str | None, end: str | None,
               calendar: FiscalCalendar | None = None) -> tuple[date | None, date | None]:
    """A period (``YYYY-MM``), a range of periods (``YYYY-MM..YYYY-MM``) or explicit dates."""
    if period:
        first, _, last = period.partition("..")
        last = last or first
        for p in (first, last):
            if len(p) != 7:
                raise ValidationError(f"period {period!r} must be YYYY-MM or YYYY-MM..YYYY-MM", field="period")
        cal = calendar or FiscalCalendar()
        return cal.bounds(first)[0], cal.bounds(last)[1]
    return _date(start, "start"), _date(end, "end")


def profit_and_loss_data(uow: Any, entity: str | None, start: date | None, end: date | None) -> dict[str, Any]:
    ent = single_entity(uow, entity)
    ccy = ent.currency
    by_id = _by_id(uow, ent.code)
    moves = movements(uow, ent.code, start, end)
    revenue = expenses = 0
    lines = []
    for account_id, amount in sorted(moves.items(), key=lambda kv: by_id[kv[0]].code):
        acct = by_id[account_id]
        if acct.type not in PROFIT_AND_LOSS or amount == 0:
            continue
        shown = -amount if acct.type == "revenue" else amount
        if acct.type == "revenue":
            revenue += shown
        else:
            expenses += shown
        lines.append({"code": acct.code, "name": acct.name, "type": acct.type, "amount": format_minor(shown, ccy)})
    return {"entity": ent.code, "currency": ccy, "start": iso(start) if start else None,
            "end": iso(end) if end else None, "revenue": format_minor(revenue, ccy),
            "expenses": format_minor(expenses, ccy), "net_income": format_minor(revenue - expenses, ccy),
            "lines": lines}


@query("profit_and_loss", ProfitAndLossQuery, summary="Income statement over a period or date range")
def profit_and_loss(uow: Any, q: ProfitAndLossQuery) -> dict[str, Any]:
    ent = single_entity(uow, q.entity)
    start, end = date_range(q.period, q.start, q.end, entity_calendar(uow, ent.code))
    return profit_and_loss_data(uow, q.entity, start, end)


# --------------------------------------------------------------------------- balance sheet


@payload
class BalanceSheetQuery:
    entity: str | None = None
    as_of: str | None = None


def balance_sheet_data(uow: Any, entity: str | None, as_of: date | None) -> dict[str, Any]:
    ent = single_entity(uow, entity)
    ccy = ent.currency
    by_id = _by_id(uow, ent.code)
    totals = {"asset": 0, "liability": 0, "equity": 0}
    earnings = 0
    sections: dict[str, list[dict[str, str]]] = {"asset": [], "liability": [], "equity": []}
    for account_id, amount in sorted(account_balances(uow, ent.code, as_of).items(),
                                     key=lambda kv: by_id[kv[0]].code):
        acct = by_id[account_id]
        if amount == 0:
            continue
        if acct.type in PROFIT_AND_LOSS:
            earnings -= amount
            continue
        shown = amount if acct.type in DEBIT_NORMAL else -amount
        totals[acct.type] += shown
        sections[acct.type].append({"code": acct.code, "name": acct.name, "amount": format_minor(shown, ccy)})
    equity = totals["equity"] + earnings
    return {
        "entity": ent.code, "currency": ccy, "as_of": iso(as_of) if as_of else None,
        "assets": format_minor(totals["asset"], ccy), "liabilities": format_minor(totals["liability"], ccy),
        "equity": format_minor(equity, ccy), "unclosed_earnings": format_minor(earnings, ccy),
        "balanced": totals["asset"] == totals["liability"] + equity,
        "sections": {"assets": sections["asset"], "liabilities": sections["liability"], "equity": sections["equity"]},
    }


@query("balance_sheet", BalanceSheetQuery, summary="Balance sheet as of a date (unclosed earnings in equity)")
def balance_sheet(uow: Any, q: BalanceSheetQuery) -> dict[str, Any]:
    return balance_sheet_data(uow, q.entity, _date(q.as_of, "as_of"))


# --------------------------------------------------------------------------- GL detail


@payload
class GeneralLedgerQuery:
    account: str
    entity: str | None = None
    start: str | None = None
    end: str | None = None
    limit: Limit = 1000


@query("general_ledger", GeneralLedgerQuery, summary="GL detail of one account with opening and running balance")
def general_ledger(uow: Any, q: GeneralLedgerQuery) -> dict[str, Any]:
    ent = single_entity(uow, q.entity)
    ccy = ent.currency
    acct = resolve_account(uow, ent.code, q.account)
    start, end = _date(q.start, "start"), _date(q.end, "end")
    opening = account_balances(uow, ent.code, start - timedelta(days=1)).get(acct.id, 0) if start else 0
    first_period = uow.scalar("SELECT MIN(period) FROM ledger_balance WHERE entity = ? AND account_id = ?",
                              (ent.code, acct.id))
    low = max(iso(start) if start else "", f"{first_period}-01" if first_period else "9999-12-31")
    sql = ("SELECT e.date, e.entity, e.seq, e.memo, e.manual, l.amount, l.currency, l.txn_amount, l.memo"
           " FROM journal_entry e JOIN journal_line l ON l.entry_id = e.id"
           " WHERE e.entity = ? AND e.date >= ? AND l.account_id = ?")
    params: list[Any] = [ent.code, low, acct.id]
    if end:
        sql += " AND e.date <= ?"
        params.append(iso(end))
    sql += " ORDER BY e.date, e.seq, l.line_no LIMIT ?"
    params.append(min(q.limit, 100_000))
    running = opening
    lines = []
    for day, entity, seq, memo, manual, amount, cur, txn, line_memo in uow.all(sql, params):
        running += int(amount)
        lines.append({"date": day, "journal": f"JE-{entity}-{int(seq):07d}", "memo": line_memo or memo,
                      "manual": bool(manual), "amount": format_minor(int(amount), ccy),
                      "currency": cur, "txn_amount": format_minor(int(txn), cur),
                      "balance": format_minor(running, ccy)})
    return {"entity": ent.code, "account": acct.code, "name": acct.name, "currency": ccy,
            "opening": format_minor(opening, ccy), "closing": format_minor(running, ccy), "lines": lines}


# --------------------------------------------------------------------------- one journal


@payload
class JournalQuery:
    journal: str


@query("journal", JournalQuery, summary="One journal entry with its lines")
def journal(uow: Any, q: JournalQuery) -> dict[str, Any]:
    row = find_entry(uow, q.journal)
    entry_id, entity, seq, day, period, memo, manual, reference, reverses, source, actor, approved_by, posted_at, \
        digest = row
    ccy = single_entity(uow, entity).currency
    lines = [
        {"account": code, "name": name, "amount": format_minor(int(amount), ccy),
         "debit": format_minor(int(amount), ccy) if amount > 0 else None,
         "credit": format_minor(-int(amount), ccy) if amount < 0 else None,
         "currency": cur, "txn_amount": format_minor(int(txn), cur), "memo": line_memo}
        for code, name, amount, cur, txn, line_memo in uow.all(
            "SELECT a.code, a.name, l.amount, l.currency, l.txn_amount, l.memo FROM journal_line l"
            " JOIN ledger_account a ON a.id = l.account_id WHERE l.entry_id = ? ORDER BY l.line_no", (entry_id,))
    ]
    reversed_by = uow.scalar("SELECT reversal_id FROM journal_reversal WHERE original_id = ?", (entry_id,))
    return {"number": f"JE-{entity}-{int(seq):07d}", "id": int(entry_id), "entity": entity, "date": day,
            "period": period, "memo": memo, "manual": bool(manual), "reference": reference,
            "reverses": reverses, "reversed_by": reversed_by, "source": source, "actor": actor,
            "approved_by": approved_by, "posted_at": posted_at, "hash": digest, "lines": lines}
