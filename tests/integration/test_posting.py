"""Business events become journal entries through the posting rules, exactly once."""

from __future__ import annotations

import pytest

from closeloop.core.errors import CloseloopError


def invoice_payload(number="INV-1", entity="US01", currency="USD", date="2026-01-31", credit_created="0.00",
                    lines=(("100.00", "8.25"), ("50.00", "0.00"))):
    from decimal import Decimal
    net = sum(Decimal(n) for n, _ in lines)
    tax = sum(Decimal(t) for _, t in lines)
    return {"invoice": number, "entity": entity, "customer": "SF-1", "currency": currency, "date": date,
            "due_date": date, "subtotal": str(net), "tax": str(tax), "total": str(net + tax),
            "credit_created": credit_created,
            "lines": [{"line_no": i, "description": f"line {i}", "revenue_role": "revenue", "treatment": "ratable",
                       "net": n, "tax": t, "tax_treatment": "standard", "product_family": "core"}
                      for i, (n, t) in enumerate(lines, 1)]}


def emit(app, type_, payload, aggregate="invoice"):
    with app.unit_of_work() as uow:
        event_id = uow.emit(type_, aggregate, payload.get("invoice") or payload.get("payment") or "x", payload,
                            entity=payload.get("entity"))
    app.dispatch()
    return event_id


def test_invoice_posts_receivable_deferred_revenue_and_tax(app, us01):
    event_id = emit(app, "invoice.issued", invoice_payload())
    tb = app.query("trial_balance", {"entity": "US01"})
    assert tb["accounts"] == {"1100": "158.25", "2100": "-8.25", "2200": "-150.00"}
    entry = app.query("journal", {"journal": "JE-US01-0000001"})
    assert entry["manual"] is False and entry["reference"] == "invoice.issued:INV-1"
    assert [(ln["account"], ln["amount"]) for ln in entry["lines"]] == [
        ("1100", "158.25"), ("2200", "-100.00"), ("2200", "-50.00"), ("2100", "-8.25")]
    # delivered once: a second dispatch posts nothing more
    with app.unit_of_work() as uow:
        uow.execute("UPDATE event SET status = 'pending' WHERE id = ?", (event_id,))
    app.dispatch()
    assert app.query("trial_balance", {"entity": "US01"})["accounts"]["1100"] == "158.25"
    assert app.query("ledger_verify", {})["ok"]


def test_negative_invoice_becomes_customer_credit(app, us01):
    emit(app, "invoice.issued", invoice_payload(lines=(("-30.00", "0.00"),), credit_created="30.00"))
    # the invoice's own posting (revenue recognition may add entries of its own for the credited line)
    entry = app.query("journal", {"journal": "invoice.issued:INV-1"})
    assert [(ln["account"], ln["amount"]) for ln in entry["lines"]] == [
        ("1100", "-30.00"), ("2200", "30.00"), ("1100", "30.00"), ("2010", "-30.00")]


def test_foreign_currency_invoice_converts_at_the_event_date(app, us01):
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-01", "rate": "1.0851"})
    emit(app, "invoice.issued", invoice_payload(currency="EUR", lines=(("33.33", "6.33"), ("33.33", "6.33"))))
    # 79.32 EUR x 1.0851 = 86.07 (the receivable); the credits are that total allocated by largest remainder
    tb = app.query("trial_balance", {"entity": "US01"})
    assert tb["accounts"] == {"1100": "86.07", "2100": "-13.74", "2200": "-72.33"}
    entry = app.query("journal", {"journal": "JE-US01-0000001"})
    assert entry["lines"][0]["currency"] == "EUR" and entry["lines"][0]["txn_amount"] == "79.32"


def test_payment_cycle_and_payout(app, us01):
    emit(app, "invoice.issued", invoice_payload(lines=(("100.00", "0.00"),)))
    emit(app, "payment.received", {"payment": "P-1", "entity": "US01", "customer": "SF-1", "currency": "USD",
                                   "date": "2026-02-03", "amount": "100.00", "channel": "provider"},
         aggregate="payment")
    emit(app, "payment.applied", {"payment": "P-1", "invoice": "INV-1", "entity": "US01", "customer": "SF-1",
                                  "currency": "USD", "date": "2026-02-03", "amount": "100.00",
                                  "fx_difference": "0"}, aggregate="payment")
    emit(app, "payout.paid", {"payout": "po_1", "entity": "US01", "currency": "USD", "date": "2026-02-05",
                              "gross": "100.00", "fees": "3.20", "net": "96.80"}, aggregate="payout")
    assert app.query("trial_balance", {"entity": "US01"})["accounts"] == {
        "1000": "96.80", "2200": "-100.00", "6000": "3.20"}


def test_unpostable_event_becomes_an_exception_and_retry_posts_it(app, us01):
    app.do("period.close", {"entity": "US01", "period": "2026-01"})
    event_id = emit(app, "invoice.issued", invoice_payload(date="2026-01-31"))
    assert app.query("trial_balance", {"entity": "US01"})["accounts"] == {}
    exc = app.query("exceptions", {"kind": "unposted_event"})
    assert exc["count"] == 1
    item = exc["items"][0]
    assert item["record"] == {"event": str(event_id)} and "closed" in item["message"]
    with pytest.raises(CloseloopError) as err:  # still closed: the retry is refused, the exception stays open
        app.do("exception.resolve", {"exception": item["id"], "action": "retry", "reason": "try again"})
    assert err.value.code == "period_closed"
    assert app.query("exceptions", {"kind": "unposted_event", "status": "open"})["count"] == 1


def test_missing_fx_rate_is_an_exception(app, us01):
    event_id = emit(app, "invoice.issued", invoice_payload(currency="GBP"))
    item = app.query("exceptions", {"kind": "unposted_event"})["items"][0]
    assert "no FX rate GBP->USD" in item["message"]
    app.do("fx.rate", {"base": "GBP", "quote": "USD", "date": "2026-01-01", "rate": "1.25"})
    result = app.do("exception.resolve", {"exception": item["id"], "action": "retry", "reason": "rate recorded"})
    assert result["posted"] == ["JE-US01-0000001"]
    assert app.query("balance", {"role": "accounts_receivable"})["amount"] == "197.81"
    assert app.query("exceptions", {"kind": "unposted_event", "status": "open"})["count"] == 0
    _ = event_id


def test_rule_versions_need_a_second_person_and_apply_from_their_date(app, us01):
    from importlib import resources
    body = (resources.files("closeloop") / "config" / "posting_rules.yaml").read_text()
    body = body.replace("version: 1", "version: 2").replace('effective_from: "2000-01-01"',
                                                             'effective_from: "2026-03-01"')
    body = body.replace("{role: bad_debt_expense, debit: amount}", "{role: fx_gain_loss, debit: amount}")
    proposed = app.do("posting_rules.propose", {"body": body, "reason": "route write-offs"}, actor="maker")
    assert proposed == {"version": 2, "effective_from": "2026-03-01", "status": "proposed"}
    with pytest.raises(CloseloopError) as err:
        app.do("posting_rules.approve", {"version": 2}, actor="maker")
    assert err.value.code == "forbidden"
    write_off = {"invoice": "INV-9", "entity": "US01", "customer": "SF-1", "currency": "USD", "amount": "10.00",
                 "reason": "bankrupt"}
    emit(app, "invoice.written_off", {**write_off, "date": "2026-03-05"})  # v2 proposed, not approved: v1
    app.do("posting_rules.approve", {"version": 2}, actor="checker")
    emit(app, "invoice.written_off", {**write_off, "invoice": "INV-10", "date": "2026-02-27"})  # before v2: v1
    emit(app, "invoice.written_off", {**write_off, "invoice": "INV-11", "date": "2026-03-06"})  # v2
    accounts = app.query("trial_balance", {"entity": "US01"})["accounts"]
    assert accounts["6100"] == "20.00" and accounts["7000"] == "10.00"
    assert app.query("posting_rules", {"as_of": "2026-03-06"})["version"] == 2
    bad = body.replace("version: 2", "version: 3").replace("{role: tax_payable, credit: tax}", "")
    with pytest.raises(CloseloopError) as err:
        app.do("posting_rules.propose", {"body": bad, "reason": "oops"})
    assert err.value.code == "validation_error" and "does not balance" in err.value.message


def test_a_run_of_events_is_posted_as_a_batch_and_falls_back_one_by_one(app, us01):
    with app.unit_of_work() as uow:
        for i in range(1, 6):
            p = invoice_payload(number=f"INV-{i}", lines=(("10.00", "0.00"),),
                                currency="GBP" if i == 3 else "USD")  # no GBP rate: INV-3 cannot post
            uow.emit("invoice.issued", "invoice", p["invoice"], p, entity="US01")
    app.dispatch()
    assert app.query("balance", {"role": "accounts_receivable"})["amount"] == "40.00"
    exc = app.query("exceptions", {"kind": "unposted_event"})
    assert exc["count"] == 1 and "INV-3" in exc["items"][0]["message"]
    with app.unit_of_work(write=False) as uow:
        # one journal per posted event, each linked to its own event
        rows = uow.all("SELECT e.reference, ev.payload FROM journal_entry e JOIN event ev ON ev.id = e.event_id"
                       " ORDER BY e.id")
    assert [r[0] for r in rows] == [f"invoice.issued:INV-{i}" for i in (1, 2, 4, 5)]
    assert all(f'"invoice": "{r[0].split(":")[1]}"' in r[1] or f'"invoice":"{r[0].split(":")[1]}"' in r[1]
               for r in rows)


def test_batch_posting_links_each_entry_to_its_event(app, us01):
    with app.unit_of_work() as uow:
        ids = [uow.emit("invoice.issued", "invoice", f"INV-{i}", invoice_payload(number=f"INV-{i}"), entity="US01")
               for i in range(1, 4)]
    app.dispatch()
    with app.unit_of_work(write=False) as uow:
        linked = uow.all("SELECT event_id FROM journal_entry ORDER BY id")
        causes = uow.all("SELECT causation_id FROM event WHERE type = 'journal.posted' ORDER BY id")
    assert [r[0] for r in linked] == ids and [r[0] for r in causes] == ids


def test_deferred_revenue_in_another_currency_is_relieved_at_its_carrying_rate(app, us01):
    app.do("fx.rate", {"base": "GBP", "quote": "USD", "date": "2026-01-01", "rate": "1.25"})
    app.do("fx.rate", {"base": "GBP", "quote": "USD", "date": "2026-02-01", "rate": "1.40"})
    emit(app, "invoice.issued", invoice_payload(currency="GBP", date="2026-01-15", lines=(("300.00", "0.00"),)))
    # deferred revenue: GBP 300.00 carried at USD 375.00
    def recognise(run, day, amount):
        emit(app, "revenue.recognized", {"run": run, "entity": "US01", "currency": "GBP", "date": day, "lines": [
            {"contract_id": "C1", "line_id": "L1", "revenue_role": "revenue", "amount": amount, "deferred": amount,
             "unbilled": "0.00", "period": day[:7]}]}, aggregate="contract")
    recognise("RR-1", "2026-02-28", "100.00")  # a third of the bucket: USD 125.00, not 140.00 at the spot rate
    assert app.query("balance", {"role": "revenue", "as_of": "2026-02-28"})["amount"] == "-125.00"
    assert app.query("balance", {"role": "deferred_revenue", "as_of": "2026-02-28"})["amount"] == "-250.00"
    recognise("RR-2", "2026-03-31", "200.00")  # the rest: exactly what is left, no exchange residue
    tb = app.query("trial_balance", {"entity": "US01"})
    assert tb["accounts"] == {"1100": "375.00", "4000": "-375.00"}


def test_revaluation_keeps_the_foreign_bucket_and_payment_fx_lands_in_it(app, us01):
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-01", "rate": "1.10"})
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-31", "rate": "1.20"})
    emit(app, "invoice.issued", invoice_payload(currency="EUR", date="2026-01-15", lines=(("100.00", "0.00"),)))
    app.do("fx.revalue", {"entity": "US01", "period": "2026-01"})
    with app.unit_of_work(write=False) as uow:
        rows = uow.all("SELECT b.currency, SUM(b.txn_amount), SUM(b.amount) FROM ledger_balance b JOIN ledger_account a"
                       " ON a.id = b.account_id WHERE a.role = 'accounts_receivable' AND b.period <= '2026-01'"
                       " GROUP BY b.currency")
    assert rows == [("EUR", 10000, 12000)]  # EUR 100.00 still open, carried at USD 120.00 at month end
