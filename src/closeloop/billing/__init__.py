"""Billing: subscriptions (from contract events), usage metering, bill runs, invoices, credit memos, documents.

Pure core: :mod:`model` (records), :mod:`proration` (the day rule), :mod:`generator` (the invoice
generator). :mod:`store` holds the tables, :mod:`service` the commands and queries, :mod:`usage`
the metering API, :mod:`documents` the HTML/PDF rendering. See docs/billing.md.
"""
