"""The close gates: each evaluated from the data, each with its evidence.

The close area reads every other area only through its queries (looked up in the
registry by name, so an installation without an area shows that gate as not applicable)
or through the shared core tables (events, exceptions). A gate returns
``(passed, evidence)``; ``passed`` is None when the gate does not apply.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from closeloop.core import registry
from closeloop.core.entities import LegalEntity
from closeloop.core.errors import CloseloopError
from closeloop.core.money import to_minor

GateFn = Callable[[Any, LegalEntity, str, date, date], tuple[bool | None, str]]
_GATES: dict[str, GateFn] = {}


@lru_cache(maxsize=1)
def close_config() -> dict[str, Any]:
    doc = yaml.safe_load((resources.files("closeloop") / "config" / "close.yaml").read_text())
    unknown = [g for g in doc["gates"] if g not in _GATES]
    if unknown:
        raise RuntimeError(f"config/close.yaml names unknown gates {unknown}")
    return dict(doc)


def gate(name: str) -> Callable[[GateFn], GateFn]:
    def register(fn: GateFn) -> GateFn:
        _GATES[name] = fn
        return fn

    return register


def gate_fn(name: str) -> GateFn:
    return _GATES[name]


def run_query(uow: Any, name: str, where: dict[str, Any]) -> dict[str, Any] | None:
    """Another area's query, or None when that area is not installed."""
    try:
        op = registry.get(name, "query")
    except CloseloopError:
        return None
    return op.fn(uow, op.parse(where))


@gate("bill_run_complete")
def bill_run_complete(uow: Any, ent: LegalEntity, period: str, start: date, end: date) -> tuple[bool | None, str]:
    preview = run_query(uow, "billing_preview", {"as_of": end.isoformat(), "entity": ent.code})
    if preview is None:
        return None, "billing is not installed"
    pending = preview.get("invoices", [])
    if pending:
        total = ", ".join(f"{i.get('total')} {i.get('currency')}" for i in pending[:5])
        return False, f"a bill run through {end} would still issue {len(pending)} invoice(s): {total}"
    return True, f"nothing left to bill through {end}"


@gate("usage_window_passed")
def usage_window_passed(uow: Any, ent: LegalEntity, period: str, start: date, end: date) -> tuple[bool | None, str]:
    days = int(close_config()["usage_late_days"])
    window_end = end + timedelta(days=days)
    today = uow.today()
    if today > window_end:
        return True, f"late-usage window closed on {window_end} ({days} days after {end}); today is {today}"
    return False, f"usage may still arrive until {window_end} ({days} days after {end}); today is {today}"


@gate("revenue_run_done")
def revenue_run_done(uow: Any, ent: LegalEntity, period: str, start: date, end: date) -> tuple[bool | None, str]:
    status = run_query(uow, "revenue_run_status", {"entity": ent.code, "through": end.isoformat()})
    if status is not None:
        return bool(status.get("done")), str(status.get("evidence") or status)
    row = uow.one("SELECT MAX(occurred_at) FROM event WHERE type = 'revenue.recognized' AND entity = ?", (ent.code,))
    deferred = run_query(uow, "deferred_revenue", {"as_of": end.isoformat(), "entity": ent.code})
    if deferred is None:
        return None, "revenue recognition is not installed"
    last = row[0] if row else None
    if last and last[:10] >= end.isoformat():
        return True, f"last recognition run recorded {last[:10]}"
    if Decimal(str(deferred.get("amount", "0"))) == 0 and not last:
        return True, "no deferred revenue to recognise"
    return False, f"no recognition run through {end} (last: {last[:10] if last else 'never'})"


@gate("events_delivered")
def events_delivered(uow: Any, ent: LegalEntity, period: str, start: date, end: date) -> tuple[bool | None, str]:
    pending = uow.scalar("SELECT COUNT(*) FROM event WHERE status = 'pending' AND (entity = ? OR entity IS NULL)",
                         (ent.code,))
    dead = uow.scalar("SELECT COUNT(*) FROM event WHERE status = 'dead' AND (entity = ? OR entity IS NULL)",
                      (ent.code,))
    unposted = uow.scalar("SELECT COUNT(*) FROM exception_item WHERE kind = 'unposted_event' AND status = 'open'"
                          " AND (entity = ? OR entity IS NULL)", (ent.code,))
    passed = int(pending) == 0 and int(dead) == 0 and int(unposted) == 0
    return passed, f"{pending} pending, {dead} dead-lettered event(s), {unposted} unposted event(s)"


@gate("recon_breaks_below_threshold")
def recon_breaks(uow: Any, ent: LegalEntity, period: str, start: date, end: date) -> tuple[bool | None, str]:
    threshold = to_minor(Decimal(str(close_config()["recon_break_threshold"])), ent.currency)
    rows = uow.all("SELECT id, amount, currency, message FROM exception_item WHERE kind = 'recon_break'"
                   " AND status = 'open' AND (entity = ? OR entity IS NULL)", (ent.code,))
    blocking = [r for r in rows if r[1] is None or abs(int(r[1])) > threshold]
    if blocking:
        ids = ", ".join(f"#{r[0]}" for r in blocking[:10])
        return False, f"{len(blocking)} open reconciliation break(s) above {close_config()['recon_break_threshold']}: {ids}"
    return True, f"{len(rows)} open break(s), none above {close_config()['recon_break_threshold']} {ent.currency}"


@gate("fx_revaluation_posted")
def fx_revaluation_posted(uow: Any, ent: LegalEntity, period: str, start: date, end: date) -> tuple[bool | None, str]:
    done = uow.one("SELECT total FROM ledger_fx_revaluation WHERE entity = ? AND period = ?", (ent.code, period))
    if done:
        return True, f"revaluation posted for {period}"
    foreign = uow.scalar("SELECT COUNT(*) FROM ledger_balance WHERE entity = ? AND period <= ? AND currency <> ?",
                         (ent.code, period, ent.currency))
    if not foreign:
        return True, "no foreign-currency balances to revalue"
    return False, f"{period} has foreign-currency balances but no revaluation (fx.revalue)"


@gate("intercompany_balanced")
def intercompany_balanced(uow: Any, ent: LegalEntity, period: str, start: date, end: date) -> tuple[bool | None, str]:
    ic = uow.scalar("SELECT COUNT(*) FROM ledger_balance b JOIN ledger_account a ON a.id = b.account_id"
                    " WHERE b.entity = ? AND a.role IN ('intercompany_receivable', 'intercompany_payable')",
                    (ent.code,))
    if not ic:
        return True, "no intercompany balances"
    try:
        consolidated = run_query(uow, "consolidated_trial_balance", {"currency": ent.currency,
                                                                      "as_of": end.isoformat()})
    except CloseloopError as err:
        return False, f"cannot consolidate: {err.message}"
    assert consolidated is not None
    pairs = consolidated["eliminations"]
    if all(p["balanced"] for p in pairs):
        return True, "intercompany receivables and payables, revenue and cost eliminate to zero"
    bad = "; ".join(f"{p['pair'][0]}/{p['pair'][1]} differ by {p['difference']}" for p in pairs if not p["balanced"])
    return False, bad


@gate("manual_journals_approved")
def manual_journals_approved(uow: Any, ent: LegalEntity, period: str, start: date, end: date) -> tuple[bool | None, str]:
    rows = uow.all("SELECT reference, payload FROM journal_request WHERE entity = ? AND status = 'pending'", (ent.code,))
    waiting = [ref for ref, body in rows if start.isoformat() <= _date_of(body) <= end.isoformat()]
    if waiting:
        return False, f"{len(waiting)} manual journal(s) awaiting approval: {', '.join(waiting[:10])}"
    return True, "every manual journal of the period is approved"


def _date_of(body: str) -> str:
    import json

    return str(json.loads(body).get("date", ""))
