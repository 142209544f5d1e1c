"""Billing tables.

- ``billing_subscription`` / ``billing_contract_change``: the billing view of each contract, built
  only from contract events (header + the change log the events carried);
- ``billing_milestone``, ``billing_partial``: milestones completed and partial billings recorded;
- ``billing_meter``: who may send usage for which metric when (derived from the subscriptions);
- ``billing_usage``: metered events, unique by idempotency key, quantities in micro-units;
- ``billing_run`` / ``billing_run_partition``: bill runs and their partitions (claimed by workers);
- ``billing_invoice`` / ``billing_line``: invoices and credit memos and their lines. A generated line
  is also the *billed item* the generator compares against (service period, period amount,
  credits received);
- ``billing_credit`` / ``billing_credit_use``: customer credit (negative invoices, credit memos
  beyond the balance) and its applications;
- ``billing_sequence``: gapless numbers per legal entity and sequence (invoice, credit memo);
- ``billing_coupon`` / ``billing_coupon_redemption``: coupons and where they apply (customer, contract
  or line), with what each redemption has used;
- ``billing_wallet`` / ``billing_wallet_txn``: prepaid credits (balances in minor units) and every
  top-up, draw-down and expiry.
"""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import BigId, metadata

billing_subscription = sa.Table(
    "billing_subscription",
    metadata,
    sa.Column("contract_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("billing_day", sa.Integer, nullable=False),
    sa.Column("start", sa.String(10), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active, cancelled, expired
    sa.Column("scan_from", sa.String(10)),  # billed up to the period enclosing this date
    sa.Column("next_date", sa.String(10)),  # the earliest date something may fall due
    sa.Column("changes", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.Index("ix_billing_subscription_customer_id", "customer_id"),
    sa.Index("ix_billing_subscription_next_date", "next_date"),
)

billing_contract_change = sa.Table(
    "billing_contract_change",
    metadata,
    sa.Column("contract_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("effective", sa.String(10), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # JSON: contracts.model.Change.to_dict()
    sa.Column("event_id", sa.BigInteger),
    sa.Column("recorded_at", sa.String(32), nullable=False),
)

billing_milestone = sa.Table(
    "billing_milestone",
    metadata,
    sa.Column("contract_id", sa.String(64), primary_key=True),
    sa.Column("line_id", sa.String(64), primary_key=True),
    sa.Column("milestone_id", sa.String(64), primary_key=True),
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("recorded_at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
)

billing_partial = sa.Table(
    "billing_partial",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("contract_id", sa.String(64), nullable=False),
    sa.Column("line_id", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("recorded_at", sa.String(32), nullable=False),
    sa.Index("ix_billing_partial_contract_id", "contract_id"),
)

billing_meter = sa.Table(
    "billing_meter",
    metadata,
    sa.Column("contract_id", sa.String(64), primary_key=True),
    sa.Column("line_id", sa.String(64), primary_key=True),
    sa.Column("start", sa.String(10), primary_key=True),
    sa.Column("end", sa.String(10), nullable=False),  # last day, inclusive
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Index("ix_billing_meter_customer_id", "customer_id", "metric"),
)

billing_usage = sa.Table(
    "billing_usage",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(200), nullable=False, unique=True),
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("quantity", sa.String(40), nullable=False),
    sa.Column("qty_micro", sa.BigInteger, nullable=False),
    sa.Column("properties", sa.Text),
    sa.Column("recorded_at", sa.String(32), nullable=False),
    sa.Index("ix_billing_usage_customer_id", "customer_id", "metric", "day"),
)

billing_run = sa.Table(
    "billing_run",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("as_of", sa.String(10), nullable=False),
    sa.Column("entity", sa.String(16)),
    sa.Column("status", sa.String(16), nullable=False),  # running, completed
    sa.Column("partitions", sa.Integer, nullable=False),
    sa.Column("invoices", sa.Integer, nullable=False),
    sa.Column("held", sa.Integer, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("completed_at", sa.String(32)),
)

billing_run_partition = sa.Table(
    "billing_run_partition",
    metadata,
    sa.Column("run_id", sa.BigInteger, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # pending, done
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("invoices", sa.Integer, nullable=False),
    sa.Column("done_at", sa.String(32)),
    sa.Column("first_customer", sa.BigInteger),  # the partition's customers: ids in [first, last]
    sa.Column("last_customer", sa.BigInteger),
)

billing_invoice = sa.Table(
    "billing_invoice",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("number", sa.String(40), unique=True),  # assigned at issue; NULL while held
    sa.Column("kind", sa.String(16), nullable=False),  # invoice, credit_memo
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("seq", sa.Integer),  # the customer's n-th invoice (credit memos: NULL)
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("due_date", sa.String(10), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("subtotal", sa.BigInteger, nullable=False),
    sa.Column("tax", sa.BigInteger, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("credit_created", sa.BigInteger, nullable=False),
    sa.Column("credit_applied", sa.BigInteger, nullable=False),
    sa.Column("paid", sa.BigInteger, nullable=False),
    sa.Column("credited", sa.BigInteger, nullable=False),  # by credit memos
    sa.Column("written_off", sa.BigInteger, nullable=False),
    sa.Column("balance", sa.BigInteger, nullable=False),
    sa.Column("wallet_applied", sa.BigInteger, nullable=False, server_default=sa.text("0")),  # prepaid credits used
    sa.Column("original_id", sa.BigInteger),  # credit memo: the invoice it credits
    sa.Column("reason", sa.Text),
    sa.Column("tax_breakdown", sa.Text),  # JSON [{treatment, rate, category, taxable, tax, exemption_reason, mention}]
    sa.Column("mentions", sa.Text),  # JSON [str]
    sa.Column("held_reason", sa.Text),
    sa.Column("run_id", sa.BigInteger),
    sa.Column("payment_terms_days", sa.Integer, nullable=False),
    sa.Column("issued_at", sa.String(32)),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Index("ix_billing_invoice_customer_id", "customer_id", "seq"),
    sa.Index("ix_billing_invoice_status", "status"),
    # an invoice's credit memos (the invoice view lists them): without it, a scan of every invoice
    sa.Index("ix_billing_invoice_original_id", "original_id", sqlite_where=sa.text("original_id IS NOT NULL"),
             postgresql_where=sa.text("original_id IS NOT NULL")),
)

billing_line = sa.Table(
    "billing_line",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("invoice_id", sa.BigInteger, nullable=False),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # recurring, usage, one_time, milestone, partial, credit, memo
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("sku", sa.String(64)),
    sa.Column("contract_id", sa.String(64)),
    sa.Column("line_id", sa.String(64)),
    sa.Column("version", sa.Integer),
    sa.Column("quantity", sa.String(40), nullable=False),
    sa.Column("unit_price", sa.String(40)),
    sa.Column("net", sa.BigInteger, nullable=False),
    sa.Column("tax", sa.BigInteger, nullable=False),
    sa.Column("tax_treatment", sa.String(16)),
    sa.Column("tax_rate", sa.String(16)),
    sa.Column("tax_category", sa.String(8)),
    sa.Column("tax_code", sa.String(32)),
    sa.Column("jurisdiction", sa.String(32)),
    sa.Column("revenue_role", sa.String(40), nullable=False),
    sa.Column("treatment", sa.String(16), nullable=False),
    sa.Column("product_family", sa.String(64)),
    sa.Column("performing_entity", sa.String(16)),
    sa.Column("period_start", sa.String(10)),  # enclosing billing period (exclusive end)
    sa.Column("period_end", sa.String(10)),
    sa.Column("service_from", sa.String(10)),  # days charged (exclusive end)
    sa.Column("service_to", sa.String(10)),
    sa.Column("period_amount", sa.BigInteger),
    sa.Column("usage_count", sa.Integer, nullable=False),
    sa.Column("credited", sa.BigInteger, nullable=False),  # by later changes (net)
    sa.Column("memo_credited", sa.BigInteger, nullable=False),  # by credit memos (net)
    sa.Column("memo_tax_credited", sa.BigInteger, nullable=False),
    sa.Column("ref", sa.String(80)),
    sa.Column("credit_of", sa.BigInteger),  # the line a credit (or a credit memo line) reverses
    sa.UniqueConstraint("invoice_id", "line_no"),
    sa.Index("ix_billing_line_contract_id", "contract_id", "period_end"),
)

billing_credit = sa.Table(
    "billing_credit",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("source_id", sa.BigInteger, nullable=False),  # the invoice or credit memo that created it
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("remaining", sa.BigInteger, nullable=False),
    sa.Index("ix_billing_credit_customer_id", "customer_id", "remaining"),
)

billing_credit_use = sa.Table(
    "billing_credit_use",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("credit_id", sa.BigInteger, nullable=False),
    sa.Column("invoice_id", sa.BigInteger, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("auto", sa.Boolean, nullable=False),
)

billing_sequence = sa.Table(
    "billing_sequence",
    metadata,
    sa.Column("entity", sa.String(16), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("next_value", sa.BigInteger, nullable=False),
)

billing_coupon = sa.Table(
    "billing_coupon",
    metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("percent_off", sa.String(20)),
    sa.Column("amount_off", sa.BigInteger),  # minor units of currency
    sa.Column("currency", sa.String(3)),
    sa.Column("duration", sa.String(16), nullable=False),  # once, repeating, forever
    sa.Column("duration_months", sa.Integer),
    sa.Column("redeem_by", sa.String(10)),  # last day it may be redeemed
    sa.Column("max_redemptions", sa.Integer),
    sa.Column("redeemed", sa.Integer, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("duration_periods", sa.Integer),  # repeating: for this many invoices (instead of months)
)

billing_coupon_redemption = sa.Table(
    "billing_coupon_redemption",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("coupon", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("contract_id", sa.String(64)),
    sa.Column("line_id", sa.String(64)),
    sa.Column("scope", sa.String(140), nullable=False),  # "<contract>/<line>" ("/" for the whole customer)
    sa.Column("start", sa.String(10), nullable=False),
    sa.Column("uses", sa.Integer, nullable=False),
    sa.Column("remaining", sa.BigInteger),  # a once fixed coupon's value left
    sa.Column("discounted", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active, exhausted
    sa.Column("source", sa.String(16), nullable=False),  # apply, quote
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("coupon", "customer_id", "scope"),
    sa.Index("ix_billing_coupon_redemption_customer_id", "customer_id", "status"),
)

billing_wallet = sa.Table(
    "billing_wallet",
    metadata,
    sa.Column("wallet_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("rate", sa.String(40), nullable=False),  # value of one credit in the currency
    sa.Column("balance", sa.BigInteger, nullable=False),  # minor units
    sa.Column("applies_to", sa.String(8), nullable=False),  # usage, all
    sa.Column("expires", sa.String(10)),  # first day the credits can no longer be used
    sa.Column("threshold", sa.BigInteger),  # automatic top-up at or below this balance
    sa.Column("topup_credits", sa.String(40)),
    sa.Column("status", sa.String(16), nullable=False),  # active, expired
    sa.Column("created", sa.String(10), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Index("ix_billing_wallet_customer_id", "customer_id"),
)

billing_wallet_txn = sa.Table(
    "billing_wallet_txn",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("wallet_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # topup, drawdown, expiry
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),  # + top-up, - draw-down or expiry
    sa.Column("credits", sa.String(40), nullable=False),
    sa.Column("invoice_id", sa.BigInteger),
    sa.Column("invoice", sa.String(40)),
    sa.Column("balance_after", sa.BigInteger, nullable=False),
    sa.Column("auto", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Index("ix_billing_wallet_txn_wallet_id", "wallet_id"),
)
