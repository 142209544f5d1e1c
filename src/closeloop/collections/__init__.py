"""Collections: payments, cash application, dunning, disputes, write-offs and refunds, AR aging.

Pure: :mod:`closeloop.collections.model` (cash application, aging, dunning schedules) and
:mod:`closeloop.collections.connectors` (camt.053/054, MT940, CSV, Stripe events).
Commands and queries: :mod:`closeloop.collections.service`. Tables: :mod:`closeloop.collections.store`.
Billing owns invoices and their balances; collections calls its service functions
(``open_invoices``, ``apply_payment_to_invoice``, ``unapply_payment``, ``write_off_invoice``,
``issue_credit_memo``, ``find_invoice``) and emits the money events of the catalogue
(``payment.received``, ``payment.applied``, ``payment.refunded``, ``payout.paid``). See docs/collections.md.
"""
