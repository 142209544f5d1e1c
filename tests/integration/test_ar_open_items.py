"""The receivables subledger's open items (closeloop.ledger.subledger.ar_open_items), summed by the database:
an invoice in one transaction currency, one whose AR lines are in two (a payment applied in the functional
currency to an invoice issued in another), a settled one, references that only look like an invoice event's,
and the as-of date."""

from __future__ import annotations

from datetime import date

from closeloop.ledger.model import EntryDraft, LineDraft
from closeloop.ledger.service import accounts, post_entries
from closeloop.ledger.subledger import ar_open_items


def _post(app, day, reference, ar, other, currency=None, txn=None):
    with app.unit_of_work() as uow:
        codes = accounts(uow, "US01")
        post_entries(uow, [EntryDraft("US01", day, reference, (
            LineDraft(codes["accounts_receivable"].code, ar, currency, txn),
            LineDraft(codes[other].code, -ar, currency, None if txn is None else -txn)), reference=reference)])


def _open(app, as_of=None):
    with app.unit_of_work(write=False) as uow:
        return ar_open_items(uow, "US01", as_of)


def test_open_items_by_invoice_across_currencies_and_dates(app, us01):
    # INV-A issued in EUR (10,000.00 EUR booked at 11,000.00 USD), 54.00 USD applied: open 56.00 USD, 100.00 EUR
    _post(app, "2026-01-05", "invoice.issued:INV-A", 11000, "revenue", "EUR", 10000)
    _post(app, "2026-01-20", "payment.applied:INV-A", -5400, "cash")
    # INV-B issued and paid in full: not open
    _post(app, "2026-01-06", "invoice.issued:INV-B", 2000, "revenue")
    _post(app, "2026-01-25", "payment.applied:INV-B", -2000, "cash")
    # INV-C issued in February
    _post(app, "2026-02-03", "invoice.issued:INV-C", 3000, "revenue")
    # not an invoice event's reference: another case, no colon, nothing after it
    _post(app, "2026-01-07", "INVOICE.ISSUED:INV-D", 100, "revenue")
    _post(app, "2026-01-07", "invoice.issued", 200, "revenue")
    _post(app, "2026-01-07", "invoice.issued:", 300, "revenue")
    assert _open(app) == {"INV-A": (5600, 10000, "EUR"), "INV-C": (3000, 3000, "USD")}
    assert _open(app, date(2026, 1, 31)) == {"INV-A": (5600, 10000, "EUR")}
    assert _open(app, date(2026, 1, 10)) == {"INV-A": (11000, 10000, "EUR"), "INV-B": (2000, 2000, "USD")}
