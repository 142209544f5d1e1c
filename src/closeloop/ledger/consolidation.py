"""A consolidated trial balance across entities, in a reporting currency, with eliminations.

Translation: every balance is translated from its transaction currency at the closing rate
of the as-of date (the current-rate method applied to the whole trial balance); what that
leaves unbalanced in an entity is its cumulative translation adjustment, shown as its own
line (``cta``). Eliminations: intercompany receivable against intercompany payable, and
intercompany revenue against intercompany cost. Because both sides of an intercompany
balance are translated from the same transaction currency, they cancel exactly when the
entities agree; any remainder is reported as the pair's difference (a reconciliation break).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from closeloop.core.entities import get_entity, list_entities
from closeloop.core.fx import rate_on
from closeloop.core.money import check_currency, exponent, format_minor, round_half_up
from closeloop.core.periods import iso, parse_date
from closeloop.core.registry import payload, query
from closeloop.ledger.reports import _by_id
from closeloop.ledger.service import entity_calendar

ELIMINATIONS = (("intercompany_receivable", "intercompany_payable"), ("intercompany_revenue", "intercompany_cost"))


def balances_by_currency(uow: Any, entity: str, as_of: date | None) -> dict[tuple[int, str], int]:
    """Transaction-currency balances per (account id, currency) as of the end of ``as_of``."""
    out: dict[tuple[int, str], int] = {}
    if as_of is None:
        rows = uow.all("SELECT account_id, currency, SUM(txn_amount) FROM ledger_balance WHERE entity = ?"
                       " GROUP BY account_id, currency", (entity,))
    else:
        calendar = entity_calendar(uow, entity)
        period = calendar.period_of(as_of)
        first, last = calendar.bounds(period)
        full = as_of == last
        rows = uow.all("SELECT account_id, currency, SUM(txn_amount) FROM ledger_balance WHERE entity = ? AND "
                       f"period {'<=' if full else '<'} ? GROUP BY account_id, currency", (entity, period))
        if not full:
            rows += uow.all(
                "SELECT l.account_id, l.currency, SUM(l.txn_amount) FROM journal_entry e JOIN journal_line l"
                " ON l.entry_id = e.id WHERE e.entity = ? AND e.date >= ? AND e.date <= ?"
                " GROUP BY l.account_id, l.currency", (entity, iso(first), iso(as_of)))
    for account_id, currency, amount in rows:
        key = (int(account_id), currency)
        out[key] = out.get(key, 0) + int(amount)
    return out


@payload
class ConsolidatedTrialBalanceQuery:
    currency: str
    as_of: str | None = None
    entities: tuple[str, ...] | None = None


@query("consolidated_trial_balance", ConsolidatedTrialBalanceQuery,
       summary="Trial balance of several entities in a reporting currency, intercompany eliminated")
def consolidated_trial_balance(uow: Any, q: ConsolidatedTrialBalanceQuery) -> dict[str, Any]:
    reporting = check_currency(q.currency)
    as_of = parse_date(q.as_of, field="as_of") if q.as_of else None
    day = iso(as_of or uow.today())
    entities = [get_entity(uow, e) for e in q.entities] if q.entities else list_entities(uow)
    totals: dict[str, int] = {}
    names: dict[str, str] = {}
    role_codes: dict[str, str] = {}
    per_entity = []
    for ent in entities:
        by_id = _by_id(uow, ent.code)
        translated: dict[str, int] = {}
        for (account_id, currency), txn in balances_by_currency(uow, ent.code, as_of).items():
            if txn == 0:
                continue
            acct = by_id[account_id]
            rate = rate_on(uow, currency, reporting, day)
            value = round_half_up(Decimal(txn).scaleb(-exponent(currency)) * rate, reporting)
            translated[acct.code] = translated.get(acct.code, 0) + value
            names[acct.code] = acct.name
            if acct.role:
                role_codes[acct.role] = acct.code
        cta = -sum(translated.values())
        if cta:
            translated["cta"] = cta
            names["cta"] = "Cumulative translation adjustment"
        for code, value in translated.items():
            totals[code] = totals.get(code, 0) + value
        per_entity.append({"entity": ent.code, "functional_currency": ent.currency,
                           "translation_adjustment": format_minor(cta, reporting)})
    eliminations = []
    for left, right in ELIMINATIONS:
        lcode, rcode = role_codes.get(left), role_codes.get(right)
        lval, rval = totals.pop(lcode, 0) if lcode else 0, totals.pop(rcode, 0) if rcode else 0
        difference = lval + rval
        if difference:
            totals["ic_difference"] = totals.get("ic_difference", 0) + difference
            names["ic_difference"] = "Unreconciled intercompany difference"
        eliminations.append({"pair": [left, right], left: format_minor(lval, reporting),
                             right: format_minor(rval, reporting), "difference": format_minor(difference, reporting),
                             "balanced": difference == 0})
    debits = sum(v for v in totals.values() if v > 0)
    credits = -sum(v for v in totals.values() if v < 0)
    return {"currency": reporting, "as_of": day, "entities": per_entity,
            "accounts": {code: format_minor(v, reporting) for code, v in sorted(totals.items()) if v},
            "names": {code: names.get(code, code) for code in sorted(totals) if totals[code]},
            "eliminations": eliminations, "debits": format_minor(debits, reporting),
            "credits": format_minor(credits, reporting), "balanced": debits == credits}
