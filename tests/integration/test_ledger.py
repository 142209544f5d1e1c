"""The general ledger through the public vocabulary, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from closeloop.app import App
from closeloop.core.errors import CloseloopError
from tests.conftest import post


def counts(app: App) -> tuple[int, int, int]:
    with app.unit_of_work(write=False) as uow:
        return (uow.scalar("SELECT COUNT(*) FROM journal_entry"), uow.scalar("SELECT COUNT(*) FROM journal_line"),
                uow.scalar("SELECT COUNT(*) FROM event"))


def refuse(app: App, code: str, command: str, payload: dict) -> CloseloopError:
    before = counts(app)
    with pytest.raises(CloseloopError) as exc:
        app.do(command, payload)
    assert exc.value.code == code, exc.value.to_dict()
    assert counts(app) == before, "a refused command must write nothing"
    return exc.value


def test_entity_opens_books_with_every_role(app, us01):
    tb = app.query("trial_balance", {"entity": "US01"})
    assert tb == {"entity": "US01", "currency": "USD", "as_of": None, "debits": "0.00", "credits": "0.00",
                  "balanced": True, "accounts": {}, "rows": []}
    for role in ("cash", "accounts_receivable", "deferred_revenue", "retained_earnings", "fx_gain_loss"):
        assert app.query("balance", {"entity": "US01", "role": role})["amount"] == "0.00"
    with pytest.raises(CloseloopError) as exc:
        app.do("entity.create", {"code": "US01", "name": "dup", "country": "US", "currency": "USD"})
    assert exc.value.code == "conflict"


def test_post_and_report(app, us01):
    post(app, "US01", "2026-01-05", ("cash", "debit", "1000.00"), ("3000", "credit", "1000.00"))
    post(app, "US01", "2026-01-20", ("accounts_receivable", "debit", "250.50"), ("revenue", "credit", "250.50"))
    post(app, "US01", "2026-02-03", ("6300", "debit", "99.99"), ("cash", "credit", "99.99"))
    tb = app.query("trial_balance", {"entity": "US01"})
    assert tb["accounts"] == {"1000": "900.01", "1100": "250.50", "3000": "-1000.00", "4000": "-250.50",
                              "6300": "99.99"}
    assert (tb["debits"], tb["credits"], tb["balanced"]) == ("1250.50", "1250.50", True)
    assert app.query("trial_balance", {"entity": "US01", "as_of": "2026-01-31"})["accounts"] == {
        "1000": "1000.00", "1100": "250.50", "3000": "-1000.00", "4000": "-250.50"}
    # as of a date inside a period adds that period's lines up to the date
    assert app.query("trial_balance", {"entity": "US01", "as_of": "2026-01-10"})["accounts"] == {
        "1000": "1000.00", "3000": "-1000.00"}
    assert app.query("balance", {"role": "cash", "entity": "US01", "as_of": "2026-01-04"})["amount"] == "0.00"
    assert app.query("balance", {"account": "1000"})["amount"] == "900.01"
    pnl = app.query("profit_and_loss", {"entity": "US01", "period": "2026-01..2026-02"})
    assert (pnl["revenue"], pnl["expenses"], pnl["net_income"]) == ("250.50", "99.99", "150.51")
    assert app.query("profit_and_loss", {"entity": "US01", "period": "2026-02"})["net_income"] == "-99.99"
    bs = app.query("balance_sheet", {"entity": "US01"})
    assert (bs["assets"], bs["liabilities"], bs["equity"], bs["balanced"]) == ("1150.51", "0.00", "1150.51", True)
    gl = app.query("general_ledger", {"entity": "US01", "account": "cash", "start": "2026-02-01"})
    assert gl["opening"] == "1000.00" and gl["closing"] == "900.01"
    assert [line["amount"] for line in gl["lines"]] == ["-99.99"]


def test_bad_input_is_refused_with_specific_errors_and_nothing_written(app, us01):
    err = refuse(app, "unbalanced", "journal.post", {"entity": "US01", "date": "2026-01-05", "memo": "x", "lines": [
        {"account": "cash", "debit": "10.00"}, {"account": "3000", "credit": "9.99"}]})
    assert (err.details["debits"], err.details["credits"]) == ("10.00", "9.99")
    err = refuse(app, "not_found", "journal.post", {"entity": "US01", "date": "2026-01-05", "lines": [
        {"account": "9999", "debit": "1.00"}, {"account": "cash", "credit": "1.00"}]})
    assert err.details["field"] == "lines[0].account" and "9999" in err.message
    err = refuse(app, "not_found", "journal.post", {"entity": "XX99", "date": "2026-01-05", "lines": [
        {"account": "cash", "debit": "1.00"}, {"account": "3000", "credit": "1.00"}]})
    assert err.details["field"] == "entity"
    err = refuse(app, "validation_error", "journal.post", {"entity": "US01", "date": "2026-01-05", "lines": [
        {"account": "cash", "debit": "1.001"}, {"account": "3000", "credit": "1.001"}]})
    assert err.details["field"] == "lines[0].debit"
    err = refuse(app, "validation_error", "journal.post", {"entity": "US01", "date": "2026-01-05", "lines": [
        {"account": "cash", "debit": "-5.00"}, {"account": "3000", "debit": "5.00"}]})
    assert err.details["field"] == "lines[0].debit" and "negative" in err.message
    err = refuse(app, "validation_error", "journal.post", {"entity": "US01", "date": "2026-01-05", "lines": [
        {"account": "cash", "debit": "5.00", "currency": "EUR"}, {"account": "3000", "credit": "5.00"}]})
    assert err.details["field"] == "lines[0].currency" and "FX rate" in err.message
    err = refuse(app, "validation_error", "journal.post", {"entity": "US01", "date": "2026-01-05", "lines": [
        {"account": "cash", "debit": "5.00", "credit": "5.00"}, {"account": "3000", "credit": "5.00"}]})
    assert err.details["field"] == "lines[0]"
    err = refuse(app, "validation_error", "journal.post", {"entity": "US01", "date": "2026-01-05", "colour": "red",
                                                           "lines": []})
    assert err.details["field"] == "colour"
    refuse(app, "validation_error", "journal.post", {"entity": "US01", "date": "2026-02-30", "lines": [
        {"account": "cash", "debit": "5.00"}, {"account": "3000", "credit": "5.00"}]})
    app.do("period.close", {"entity": "US01", "period": "2026-01"})
    refuse(app, "period_closed", "journal.post", {"entity": "US01", "date": "2026-01-31", "lines": [
        {"account": "cash", "debit": "5.00"}, {"account": "3000", "credit": "5.00"}]})
    assert app.query("trial_balance", {"entity": "US01"})["accounts"] == {}


def test_refusals_are_audited(app, us01):
    with pytest.raises(CloseloopError):
        post(app, "US01", "2026-01-05", ("cash", "debit", "1.00"), ("3000", "credit", "2.00"))
    with app.unit_of_work(write=False) as uow:
        rows = uow.all("SELECT command, outcome, actor FROM audit_log ORDER BY id")
    assert rows[-1] == ("journal.post", "unbalanced", "tester")
    assert rows[0] == ("entity.create", "ok", "tester")


def test_foreign_currency_lines_convert_at_the_latest_rate(app, us01):
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-01", "rate": "1.10"})
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-15", "rate": "1.2345"})
    app.do("journal.post", {"entity": "US01", "date": "2026-01-20", "memo": "EUR receipt", "lines": [
        {"account": "cash", "debit": "10.01", "currency": "EUR"},
        {"account": "4900", "credit": "3.33", "currency": "EUR"},
        {"account": "4900", "credit": "6.68", "currency": "EUR"}]})
    # 10.01 x 1.2345 = 12.357 -> 12.36; 3.33 -> 4.11; 6.68 -> 8.25 (sum 12.36): balanced in USD
    tb = app.query("trial_balance", {"entity": "US01"})
    assert tb["accounts"] == {"1000": "12.36", "4900": "-12.36"}
    entry = app.query("journal", {"journal": "JE-US01-0000001"})
    assert [(ln["amount"], ln["currency"], ln["txn_amount"]) for ln in entry["lines"]] == [
        ("12.36", "EUR", "10.01"), ("-4.11", "EUR", "-3.33"), ("-8.25", "EUR", "-6.68")]
    with pytest.raises(CloseloopError) as exc:
        app.do("journal.post", {"entity": "US01", "date": "2025-12-31", "lines": [
            {"account": "cash", "debit": "1.00", "currency": "EUR"}, {"account": "4900", "credit": "1.00",
                                                                      "currency": "EUR"}]})
    assert exc.value.code == "validation_error"


def test_fx_rounding_difference_lands_on_the_largest_line(app, us01):
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-01", "rate": "1.005"})
    app.do("journal.post", {"entity": "US01", "date": "2026-01-20", "lines": [
        {"account": "cash", "debit": "0.03", "currency": "EUR"},
        {"account": "4900", "credit": "0.01", "currency": "EUR"},
        {"account": "4900", "credit": "0.01", "currency": "EUR"},
        {"account": "4900", "credit": "0.01", "currency": "EUR"}]})
    tb = app.query("trial_balance", {"entity": "US01"})
    assert tb["balanced"] and tb["accounts"] == {"1000": "0.03", "4900": "-0.03"}


def test_maker_checker(app):
    app.do("entity.create", {"code": "UK01", "name": "Acme Ltd", "country": "GB", "currency": "GBP",
                             "maker_checker": True})
    held = app.do("journal.post", {"entity": "UK01", "date": "2026-01-05", "memo": "accrual", "journal_id": "MJ-1",
                                   "lines": [{"account": "6300", "debit": "500.00"},
                                             {"account": "2500", "credit": "500.00"}]}, actor="maker")
    assert held == {"journal": "MJ-1", "status": "pending_approval", "entity": "UK01", "date": "2026-01-05"}
    assert app.query("trial_balance", {"entity": "UK01"})["accounts"] == {}
    with pytest.raises(CloseloopError) as exc:
        app.do("journal.approve", {"journal": "MJ-1", "approver": "maker"})
    assert exc.value.code == "forbidden"
    done = app.do("journal.approve", {"journal": "MJ-1", "approver": "checker"})
    assert done["status"] == "posted" and done["approved_by"] == "checker"
    assert app.query("trial_balance", {"entity": "UK01"})["accounts"] == {"2500": "-500.00", "6300": "500.00"}
    with pytest.raises(CloseloopError) as exc:
        app.do("journal.approve", {"journal": "MJ-1", "approver": "checker"})
    assert exc.value.code == "conflict"
    assert app.query("journal", {"journal": "MJ-1"})["approved_by"] == "checker"


def test_reversal_is_a_new_entry_referencing_the_original(app, us01):
    post(app, "US01", "2026-01-05", ("cash", "debit", "70.00"), ("4900", "credit", "70.00"), journal_id="J-7")
    result = app.do("journal.reverse", {"journal": "J-7", "date": "2026-01-06"})
    assert result == {"journal": "JE-US01-0000002", "reverses": "JE-US01-0000001", "date": "2026-01-06",
                      "status": "posted"}
    assert app.query("trial_balance", {"entity": "US01"})["accounts"] == {}
    assert app.query("journal", {"journal": "JE-US01-0000001"})["reversed_by"] == 2
    with pytest.raises(CloseloopError) as exc:
        app.do("journal.reverse", {"journal": "J-7"})
    assert exc.value.code == "conflict"
    with pytest.raises(CloseloopError) as exc:
        post(app, "US01", "2026-01-07", ("cash", "debit", "1.00"), ("4900", "credit", "1.00"), journal_id="J-7")
    assert exc.value.code == "conflict"


def test_each_posting_appends_an_event_in_the_same_transaction(app, us01):
    post(app, "US01", "2026-01-05", ("cash", "debit", "1.00"), ("3000", "credit", "1.00"))
    with app.unit_of_work(write=False) as uow:
        rows = uow.all("SELECT type, aggregate_id, entity, status, command_id FROM event ORDER BY id")
    assert [r[0] for r in rows] == ["entity.created", "journal.posted"]
    assert rows[1][1:4] == ("JE-US01-0000001", "US01", "done")  # no handler subscribes yet
    assert rows[1][4] is not None


def test_entities_query_and_single_entity_rule(app, us01, de01):
    assert [e["code"] for e in app.query("entities", {})["entities"]] == ["DE01", "US01"]
    with pytest.raises(CloseloopError) as exc:
        app.query("balance", {"role": "cash"})
    assert exc.value.code == "validation_error" and exc.value.details["field"] == "entity"


def test_custom_accounts(app, us01):
    app.do("account.create", {"entity": "US01", "code": "6600", "name": "Travel", "type": "expense"})
    post(app, "US01", "2026-01-05", ("6600", "debit", "12.00"), ("cash", "credit", "12.00"))
    assert app.query("balance", {"account": "6600"})["amount"] == "12.00"
    with pytest.raises(CloseloopError) as exc:
        app.do("account.create", {"entity": "US01", "code": "6600", "name": "Again", "type": "expense"})
    assert exc.value.code == "conflict"
    with pytest.raises(CloseloopError) as exc:
        app.do("account.create", {"entity": "US01", "code": "cash", "name": "x", "type": "asset"})
    assert exc.value.code == "validation_error"


def test_unknown_command_is_named(app):
    with pytest.raises(CloseloopError) as exc:
        app.do("invoice.teleport", {})
    assert exc.value.code == "unknown_command" and "invoice.teleport" in exc.value.message


def test_445_fiscal_calendar_drives_periods(app):
    app.do("entity.create", {"code": "RT01", "name": "Retail Co", "country": "US", "currency": "USD",
                             "fiscal_calendar": "4-4-5"})
    post(app, "RT01", "2026-01-24", ("cash", "debit", "10.00"), ("4000", "credit", "10.00"))  # fiscal 2026-01
    post(app, "RT01", "2026-01-25", ("cash", "debit", "5.00"), ("4000", "credit", "5.00"))    # fiscal 2026-02
    assert app.query("journal", {"journal": "JE-RT01-0000002"})["period"] == "2026-02"
    app.do("period.close", {"entity": "RT01", "period": "2026-01"})
    with pytest.raises(CloseloopError) as exc:
        post(app, "RT01", "2026-01-20", ("cash", "debit", "1.00"), ("4000", "credit", "1.00"))
    assert exc.value.code == "period_closed"
    post(app, "RT01", "2026-01-31", ("cash", "debit", "1.00"), ("4000", "credit", "1.00"))  # fiscal 2026-02 is open
    assert app.query("profit_and_loss", {"entity": "RT01", "period": "2026-01"})["revenue"] == "10.00"
    assert app.query("profit_and_loss", {"entity": "RT01", "period": "2026-02"})["revenue"] == "6.00"
    assert app.query("balance", {"entity": "RT01", "role": "cash", "as_of": "2026-01-24"})["amount"] == "10.00"
    assert app.query("balance", {"entity": "RT01", "role": "cash", "as_of": "2026-01-30"})["amount"] == "15.00"
