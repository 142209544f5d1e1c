"""The gated period close, overrides, reopening with approval, and the year-end close."""

from __future__ import annotations

from datetime import date

import pytest

from closeloop.core.errors import CloseloopError
from closeloop.core.exception_queue import open_exception
from tests.conftest import post


def gates(result):
    return {g["gate"]: g["passed"] for g in result["gates"]}


def test_close_locks_when_every_gate_passes_and_records_the_cycle(app, us01, clock):
    post(app, "US01", "2026-01-10", ("cash", "debit", "100.00"), ("4000", "credit", "100.00"))
    clock.set(date(2026, 2, 2))
    early = app.do("close.run", {"entity": "US01", "period": "2026-01"})
    assert early["locked"] is False and early["blocking"] == ["usage_window_passed"]
    assert "usage may still arrive until 2026-02-03" in next(
        g["evidence"] for g in early["gates"] if g["gate"] == "usage_window_passed")
    clock.set(date(2026, 2, 5))
    done = app.do("close.run", {"entity": "US01", "period": "2026-01"})
    assert done["locked"] is True and done["cycle_days"] == 3
    status = app.query("close_status", {"entity": "US01", "period": "2026-01"})
    assert status["locked"] is True and all(gates(status).values())
    with pytest.raises(CloseloopError) as err:
        post(app, "US01", "2026-01-31", ("cash", "debit", "1.00"), ("4000", "credit", "1.00"))
    assert err.value.code == "period_closed"
    again = app.do("close.run", {"entity": "US01", "period": "2026-01"})
    assert again["locked"] is True and again["changed"] is False


def test_open_recon_break_blocks_until_resolved(app, us01, clock):
    clock.set(date(2026, 2, 10))
    with app.unit_of_work() as uow:
        exc_id = open_exception(uow, "recon_break", record_type="invoice", record_id="INV-9", entity="US01",
                                message="AR subledger differs from GL", amount=25000, currency="USD")
    app.dispatch()
    blocked = app.do("close.run", {"entity": "US01", "period": "2026-01"})
    assert blocked["locked"] is False and blocked["blocking"] == ["recon_breaks_below_threshold"]
    assert f"#{exc_id}" in next(g["evidence"] for g in blocked["gates"] if g["gate"] == "recon_breaks_below_threshold")
    app.do("exception.resolve", {"exception": exc_id, "action": "accept", "reason": "booked in February"})
    assert app.do("close.run", {"entity": "US01", "period": "2026-01"})["locked"] is True


def test_overrides_need_a_second_person_and_a_reason(app, us01, clock):
    clock.set(date(2026, 2, 10))
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-01", "rate": "1.10"})
    app.do("journal.post", {"entity": "US01", "date": "2026-01-20", "memo": "EUR cash", "lines": [
        {"account": "cash", "debit": "5.00", "currency": "EUR"},
        {"account": "4900", "credit": "5.00", "currency": "EUR"}]})
    blocked = app.do("close.run", {"entity": "US01", "period": "2026-01"})
    assert blocked["blocking"] == ["fx_revaluation_posted"]
    override = {"gate": "fx_revaluation_posted", "reason": "immaterial", "approver": "tester"}
    with pytest.raises(CloseloopError) as err:
        app.do("close.run", {"entity": "US01", "period": "2026-01", "overrides": [override]})
    assert err.value.code == "forbidden"
    done = app.do("close.run", {"entity": "US01", "period": "2026-01",
                                "overrides": [{**override, "approver": "controller2"}]})
    assert done["locked"] is True
    gate = next(g for g in done["gates"] if g["gate"] == "fx_revaluation_posted")
    assert gate["passed"] is False and gate["overridden"] == {"reason": "immaterial", "approver": "controller2"}


def test_pending_manual_journal_blocks_the_close(app, clock):
    app.do("entity.create", {"code": "UK01", "name": "Acme Ltd", "country": "GB", "currency": "GBP",
                             "maker_checker": True})
    app.do("journal.post", {"entity": "UK01", "date": "2026-01-31", "journal_id": "MJ-9", "lines": [
        {"account": "6300", "debit": "10.00"}, {"account": "2500", "credit": "10.00"}]})
    clock.set(date(2026, 2, 10))
    blocked = app.do("close.run", {"entity": "UK01", "period": "2026-01"})
    assert blocked["blocking"] == ["manual_journals_approved"]
    app.do("journal.approve", {"journal": "MJ-9", "approver": "checker"})
    assert app.do("close.run", {"entity": "UK01", "period": "2026-01"})["locked"] is True


def test_reopen_needs_a_second_person(app, us01, clock):
    clock.set(date(2026, 2, 10))
    app.do("close.run", {"entity": "US01", "period": "2026-01"})
    app.do("period.reopen", {"entity": "US01", "period": "2026-01", "reason": "late supplier invoice"},
           actor="alice")
    with pytest.raises(CloseloopError) as err:
        app.do("period.reopen_approve", {"entity": "US01", "period": "2026-01"}, actor="alice")
    assert err.value.code == "forbidden"
    app.do("period.reopen_approve", {"entity": "US01", "period": "2026-01"}, actor="bob")
    post(app, "US01", "2026-01-31", ("6400", "debit", "12.00"), ("cash", "credit", "12.00"))
    assert app.query("close_status", {"entity": "US01", "period": "2026-01"})["locked"] is False


def test_year_end_close_rolls_profit_and_loss_into_retained_earnings(app, us01):
    post(app, "US01", "2026-03-10", ("cash", "debit", "1000.00"), ("4000", "credit", "1000.00"))
    post(app, "US01", "2026-06-10", ("6200", "debit", "600.00"), ("cash", "credit", "600.00"))
    post(app, "US01", "2027-01-05", ("cash", "debit", "50.00"), ("4000", "credit", "50.00"))
    result = app.do("close.year_end", {"entity": "US01", "year": 2026})
    assert result == {"entity": "US01", "year": 2026, "date": "2026-12-31", "net_income": "400.00",
                      "accounts_closed": 2}
    tb = app.query("trial_balance", {"entity": "US01", "as_of": "2026-12-31"})
    assert tb["accounts"] == {"1000": "400.00", "3100": "-400.00"}
    assert app.query("profit_and_loss", {"entity": "US01", "period": "2027-01"})["net_income"] == "50.00"
    with pytest.raises(CloseloopError) as err:
        app.do("close.year_end", {"entity": "US01", "year": 2026})
    assert err.value.code == "conflict"
