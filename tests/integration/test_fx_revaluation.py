"""Unrealised FX: open foreign-currency receivables revalued at period end and reversed next period."""

from __future__ import annotations

import pytest

from closeloop.core.errors import CloseloopError
from tests.integration.test_posting import emit, invoice_payload


def test_revaluation_posts_unrealised_fx_and_reverses_it(app, us01):
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-01", "rate": "1.10"})
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-31", "rate": "1.1234"})
    emit(app, "invoice.issued", invoice_payload(currency="EUR", date="2026-01-15", lines=(("100.00", "0.00"),)))
    assert app.query("balance", {"role": "accounts_receivable"})["amount"] == "110.00"
    result = app.do("fx.revalue", {"entity": "US01", "period": "2026-01"})
    # 100.00 EUR at 1.1234 = 112.34 USD, carried at 110.00: an unrealised gain of 2.34
    assert result["unrealised"] == "2.34"
    assert result["lines"] == [{"role": "accounts_receivable", "account": "1100", "txn_currency": "EUR",
                                "txn_balance": "100.00", "rate": "1.1234", "amount": "2.34"}]
    assert app.query("balance", {"role": "accounts_receivable", "as_of": "2026-01-31"})["amount"] == "112.34"
    assert app.query("balance", {"role": "fx_gain_loss", "as_of": "2026-01-31"})["amount"] == "-2.34"
    assert app.query("balance", {"role": "accounts_receivable", "as_of": "2026-02-01"})["amount"] == "110.00"
    assert app.query("balance", {"role": "fx_gain_loss", "as_of": "2026-02-01"})["amount"] == "0.00"
    assert app.query("fx_revaluation", {"entity": "US01", "period": "2026-01"})["unrealised"] == "2.34"
    with pytest.raises(CloseloopError) as err:
        app.do("fx.revalue", {"entity": "US01", "period": "2026-01"})
    assert err.value.code == "conflict"


def test_missing_rate_is_not_found_naming_pair_and_date(app, us01):
    app.do("fx.rate", {"base": "GBP", "quote": "USD", "date": "2026-01-10", "rate": "1.25"})
    emit(app, "invoice.issued", invoice_payload(currency="GBP", date="2026-01-15", lines=(("10.00", "0.00"),)))
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-01", "rate": "1.1"})
    # the GBP rate exists (Jan 10 is on or before Jan 31) so February with no later rate still revalues;
    # a currency with no rate at all is refused
    with app.unit_of_work() as uow:
        uow.execute("DELETE FROM fx_rate WHERE base = 'GBP'")
    with pytest.raises(CloseloopError) as err:
        app.do("fx.revalue", {"entity": "US01", "period": "2026-01"})
    assert err.value.code == "not_found"
    assert err.value.details["base"] == "GBP" and err.value.details["date"] == "2026-01-31"
    app.do("period.close", {"entity": "US01", "period": "2026-01"})
    with pytest.raises(CloseloopError) as err:
        app.do("fx.revalue", {"entity": "US01", "period": "2026-01"})
    assert err.value.code == "period_closed"
