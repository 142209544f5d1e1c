"""Collections tables: payments and their applications, bank statements and lines, provider events
and payouts, disputes, dunning cases and actions, the e-mail outbox, write-off and refund requests,
payer accounts, collectors, and the invoice index built from ``invoice.issued`` events."""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import BigId, metadata

# Every receipt: a payment.receive, a bank statement credit line, a provider payment.
# Amounts in minor units of ``currency``; applied + refunded + reversed <= amount; the rest is unapplied
# (customer credit when the customer is known).
collections_payment = sa.Table(
    "collections_payment",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("number", sa.String(64), nullable=False, unique=True),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("customer", sa.String(128)),  # external id; NULL: not identified (held unapplied)
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("applied", sa.BigInteger, nullable=False),
    sa.Column("refunded", sa.BigInteger, nullable=False),
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),  # bank, provider
    sa.Column("origin", sa.String(16), nullable=False),  # manual, bank, provider
    sa.Column("reference", sa.Text),
    sa.Column("remittance", sa.Text),
    sa.Column("payer_name", sa.String(300)),
    sa.Column("payer_account", sa.String(64)),
    sa.Column("provider_ref", sa.String(128)),  # pi_... / ch_...
    sa.Column("fee", sa.BigInteger, nullable=False),  # provider fee (settled by the payout)
    sa.Column("payout", sa.String(128)),
    sa.Column("status", sa.String(24), nullable=False),  # unapplied, partially_applied, applied, refunded, reversed
    sa.Column("match_reason", sa.String(64)),
    sa.Column("match_confidence", sa.String(8)),
    sa.Column("match_detail", sa.Text),
    sa.Column("proposal", sa.Text),  # JSON: allocations proposed below the confidence threshold
    sa.Column("exception_id", sa.BigInteger),
    sa.Column("bank_line_id", sa.BigInteger),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Index("ix_collections_payment_customer", "customer"),
    sa.Index("ix_collections_payment_provider_ref", "provider_ref"),
)

collections_application = sa.Table(
    "collections_application",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("payment_id", sa.BigInteger, nullable=False),
    sa.Column("invoice", sa.String(64), nullable=False),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),  # the invoice currency
    sa.Column("amount", sa.BigInteger, nullable=False),  # invoice currency (negative: an application undone)
    sa.Column("payment_amount", sa.BigInteger, nullable=False),  # payment currency
    sa.Column("fx_difference", sa.BigInteger, nullable=False),  # functional currency
    sa.Column("write_off", sa.BigInteger, nullable=False),  # short-pay written off by rule (invoice currency)
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("confidence", sa.String(8), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Index("ix_collections_application_payment_id", "payment_id"),
    sa.Index("ix_collections_application_invoice", "invoice"),
)

# The invoices collections knows of (from invoice.issued): numbers, owners and due dates for matching,
# dunning and aging. Balances are billing's (open_invoices), never stored here.
collections_invoice = sa.Table(
    "collections_invoice",
    metadata,
    sa.Column("number", sa.String(64), primary_key=True),
    sa.Column("norm", sa.String(64), nullable=False),  # upper case, letters and digits only
    sa.Column("digits", sa.String(64), nullable=False),  # its digits without leading zeros (QR references)
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("due_date", sa.String(10), nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Index("ix_collections_invoice_norm", "norm"),
    sa.Index("ix_collections_invoice_digits", "digits"),
    sa.Index("ix_collections_invoice_customer", "customer"),
)

collections_statement = sa.Table(
    "collections_statement",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("format", sa.String(24), nullable=False),
    sa.Column("file_name", sa.String(300), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("statement_id", sa.String(128)),
    sa.Column("account", sa.String(64)),
    sa.Column("currency", sa.String(3)),
    sa.Column("opening_balance", sa.BigInteger),
    sa.Column("closing_balance", sa.BigInteger),
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("imported_at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.UniqueConstraint("entity", "sha256", "statement_id"),
)

collections_bank_line = sa.Table(
    "collections_bank_line",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("statement_id", sa.BigInteger, nullable=False),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("entry", sa.Integer, nullable=False),
    sa.Column("detail", sa.Integer, nullable=False),
    sa.Column("booking_date", sa.String(10), nullable=False),
    sa.Column("value_date", sa.String(10)),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("reversal", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("remittance", sa.Text),
    sa.Column("refs", sa.Text),  # structured references, space separated
    sa.Column("end_to_end", sa.String(128)),
    sa.Column("bank_reference", sa.String(128)),
    sa.Column("payer_name", sa.String(300)),
    sa.Column("payer_account", sa.String(64)),
    # payment (a receipt), payout (a provider payout), returned (a payment reversed), duplicate, ignored
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("payment_id", sa.BigInteger),
    sa.Column("payout", sa.String(128)),
    sa.Column("note", sa.Text),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Index("ix_collections_bank_line_fingerprint", "entity", "fingerprint"),
    sa.Index("ix_collections_bank_line_statement_id", "statement_id"),
)

# Payer accounts (IBANs, provider customer ids) known to belong to a customer: registered or learned
# from payments applied with high confidence.
collections_payer = sa.Table(
    "collections_payer",
    metadata,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("origin", sa.String(16), nullable=False),  # registered, learned
    sa.Column("created_at", sa.String(32), nullable=False),
)

collections_provider_event = sa.Table(
    "collections_provider_event",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("object_id", sa.String(128)),
    sa.Column("created", sa.BigInteger, nullable=False),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # applied, waiting, stale, ignored
    sa.Column("result", sa.Text),
    sa.Column("waiting_for", sa.String(128)),
    sa.Column("received_at", sa.String(32), nullable=False),
    sa.Index("ix_collections_provider_event_waiting_for", "waiting_for"),
)

collections_payout = sa.Table(
    "collections_payout",
    metadata,
    sa.Column("payout", sa.String(128), primary_key=True),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("gross", sa.BigInteger, nullable=False),
    sa.Column("fees", sa.BigInteger, nullable=False),
    sa.Column("net", sa.BigInteger, nullable=False),
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("bank_line_id", sa.BigInteger),
    sa.Column("created_at", sa.String(32), nullable=False),
)

collections_failure = sa.Table(
    "collections_failure",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("invoice", sa.String(64), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("provider_ref", sa.String(128)),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Index("ix_collections_failure_invoice", "invoice"),
)

collections_dispute = sa.Table(
    "collections_dispute",
    metadata,
    sa.Column("dispute_id", sa.String(128), primary_key=True),
    sa.Column("invoice", sa.String(64), nullable=False),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("reason_code", sa.String(32), nullable=False),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("status", sa.String(24), nullable=False),  # opened, under_review, resolved_credit, resolved_rejected
    sa.Column("opened", sa.String(10), nullable=False),
    sa.Column("review_started", sa.String(10)),
    sa.Column("resolved", sa.String(10)),
    sa.Column("sla_due", sa.String(10), nullable=False),
    sa.Column("cycle_days", sa.Integer),
    sa.Column("credit_memo", sa.String(64)),
    sa.Column("resolution_note", sa.Text),
    sa.Column("provider_ref", sa.String(128)),
    sa.Column("exception_id", sa.BigInteger),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Index("ix_collections_dispute_invoice", "invoice"),
)

collections_dunning_case = sa.Table(
    "collections_dunning_case",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("invoice", sa.String(64), nullable=False),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("policy", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active, stopped, completed
    sa.Column("started", sa.String(10), nullable=False),
    sa.Column("failed_on", sa.String(10)),  # the card failure that started retries
    sa.Column("stage", sa.String(32)),
    sa.Column("stopped", sa.String(10)),
    sa.Column("stop_reason", sa.Text),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Index("ix_collections_dunning_case_invoice", "invoice"),
)

collections_dunning_action = sa.Table(
    "collections_dunning_action",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.BigInteger, nullable=False),
    sa.Column("step", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("due_on", sa.String(10), nullable=False),
    sa.Column("done_on", sa.String(10), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),  # the undisputed balance dunned
    sa.Column("details", sa.Text),
    sa.UniqueConstraint("case_id", "step"),
)

collections_email = sa.Table(
    "collections_email",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("to_address", sa.String(254)),
    sa.Column("subject", sa.String(300), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("template", sa.String(64), nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("invoice", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),  # pending, sent, failed, no_address
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("sent_at", sa.String(32)),
    sa.Index("ix_collections_email_status", "status"),
)

# Write-offs and refunds above the approval threshold wait here for a second person.
collections_request = sa.Table(
    "collections_request",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # write_off, refund
    sa.Column("target", sa.String(64), nullable=False),  # invoice or payment number
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, approved, rejected
    sa.Column("maker", sa.String(64), nullable=False),
    sa.Column("decided_by", sa.String(64)),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("decided_at", sa.String(32)),
)

collections_collector = sa.Table(
    "collections_collector",
    metadata,
    sa.Column("customer", sa.String(128), primary_key=True),
    sa.Column("collector", sa.String(64), nullable=False),
    sa.Column("assigned_at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
)

# Provider refunds applied, by the provider's refund id (each applied once, whatever the event order).
collections_provider_refund = sa.Table(
    "collections_provider_refund",
    metadata,
    sa.Column("refund_id", sa.String(128), primary_key=True),
    sa.Column("payment_id", sa.BigInteger, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)
