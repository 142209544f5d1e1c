"""Period-end revaluation of open foreign-currency balances (unrealised FX), reversed next period.

For each monetary account (receivables, cash, unapplied cash, customer credit by default)
the maintained balances give, per transaction currency, the open balance in that currency
and what it is carried at in the functional currency. Revalued at the period-end rate, the
difference is the unrealised gain or loss. ``fx.revalue`` emits an ``fx.revalued`` event
dated the period end and its reversal dated the next period's first day; the posting rules
book both (Dr/Cr the account, Cr/Dr fx_gain_loss). Revaluation lines are booked in the
functional currency, so the foreign-currency buckets keep their historical carrying amount
and each period end revalues afresh.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from closeloop.core.entities import get_entity
from closeloop.core.errors import ConflictError, PeriodClosedError, ValidationError
from closeloop.core.fx import rate_on
from closeloop.core.money import exponent, format_minor, round_half_up
from closeloop.core.periods import check_period, iso
from closeloop.core.registry import command, payload, query
from closeloop.ledger.model import ACCOUNT_ROLES
from closeloop.ledger.service import accounts, entity_calendar, period_status

MONETARY_ROLES = ("accounts_receivable", "cash", "payment_clearing", "unapplied_cash", "customer_credit",
                  "intercompany_receivable", "intercompany_payable")


@payload
class FxRevalue:
    entity: str
    period: str
    roles: tuple[str, ...] | None = None


@command("fx.revalue", FxRevalue, roles=("controller", "admin"),
         summary="Revalue open foreign-currency balances at the period-end rate (reversed next period)")
def fx_revalue(uow: Any, cmd: FxRevalue) -> dict[str, Any]:
    ent = get_entity(uow, cmd.entity)
    check_period(cmd.period)
    if period_status(uow, ent.code, cmd.period) == "closed":
        raise PeriodClosedError(f"period {cmd.period} of {ent.code} is closed; revalue before closing it",
                                field="period", entity=ent.code, period=cmd.period)
    if uow.one("SELECT 1 FROM ledger_fx_revaluation WHERE entity = ? AND period = ?", (ent.code, cmd.period)):
        raise ConflictError(f"{ent.code} {cmd.period} is already revalued", field="period")
    roles = cmd.roles or MONETARY_ROLES
    unknown = [r for r in roles if r not in ACCOUNT_ROLES]
    if unknown:
        raise ValidationError(f"unknown account roles {unknown}", field="roles")
    end = entity_calendar(uow, ent.code).bounds(cmd.period)[1]
    day = iso(end)
    accts = accounts(uow, ent.code)
    lines = []
    for role in roles:
        acct = accts[role]
        for currency, txn, carried in uow.all(
                "SELECT currency, SUM(txn_amount), SUM(amount) FROM ledger_balance WHERE entity = ? AND account_id = ?"
                " AND period <= ? AND currency <> ? GROUP BY currency", (ent.code, acct.id, cmd.period, ent.currency)):
            txn, carried = int(txn), int(carried)
            if txn == 0 and carried == 0:
                continue
            rate = rate_on(uow, currency, ent.currency, day)  # not_found names the pair and date
            revalued = round_half_up(Decimal(txn).scaleb(-exponent(currency)) * rate, ent.currency)
            adjustment = revalued - carried
            if adjustment:
                lines.append({"role": role, "account": acct.code, "txn_currency": currency,
                              "txn_balance": format_minor(txn, currency), "rate": str(rate),
                              "amount": format_minor(adjustment, ent.currency)})
    total = sum(round_half_up(Decimal(ln["amount"]), ent.currency) for ln in lines)
    uow.execute("INSERT INTO ledger_fx_revaluation (entity, period, total, lines, revalued_at, revalued_by)"
                " VALUES (?,?,?,?,?,?)", (ent.code, cmd.period, total, len(lines), uow.now(), uow.actor))
    if lines:
        base = {"entity": ent.code, "period": cmd.period, "currency": ent.currency}
        uow.emit("fx.revalued", "entity", ent.code, {**base, "date": day, "reversal": False, "lines": lines},
                 entity=ent.code)
        reversal = [{**ln, "amount": format_minor(-round_half_up(Decimal(ln["amount"]), ent.currency), ent.currency)}
                    for ln in lines]
        uow.emit("fx.revalued", "entity", ent.code,
                 {**base, "date": iso(end + timedelta(days=1)), "reversal": True, "lines": reversal}, entity=ent.code)
    return {"entity": ent.code, "period": cmd.period, "lines": lines,
            "unrealised": format_minor(total, ent.currency), "currency": ent.currency}


@payload
class FxRevaluationStatus:
    entity: str
    period: str


@query("fx_revaluation", FxRevaluationStatus, summary="Whether (and how) a period's FX revaluation was posted")
def fx_revaluation(uow: Any, q: FxRevaluationStatus) -> dict[str, Any]:
    ent = get_entity(uow, q.entity)
    row = uow.one("SELECT total, lines, revalued_at, revalued_by FROM ledger_fx_revaluation WHERE entity = ?"
                  " AND period = ?", (ent.code, q.period))
    if row is None:
        return {"entity": ent.code, "period": q.period, "revalued": False}
    return {"entity": ent.code, "period": q.period, "revalued": True,
            "unrealised": format_minor(int(row[0]), ent.currency), "lines": int(row[1]), "at": row[2], "by": row[3]}
