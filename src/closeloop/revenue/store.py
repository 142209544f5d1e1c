"""Revenue recognition tables.

- ``revenue_contract_change``: every contract event recognition received (the payload as sent), so a
  contract's plan is re-folded from its history (never from the contracts tables);
- ``revenue_contract``: the contract position — billed, recognised, and what the GL holds for it as
  deferred revenue (contract liability) and unbilled receivable (contract asset);
- ``revenue_obligation``: one row per contract line (performance obligation): facts, SSP, allocation;
- ``revenue_schedule``: the schedule, one row per piece and accounting period, with what a run has
  recognised of it; ``active`` rows are those a run still has to look at (partial index);
- ``revenue_adjustment``: what invoices add to schedules (usage as billed) and credit memos take away;
- ``revenue_milestone``: milestones completed;
- ``revenue_billing``: the invoice and credit memo lines recognition has seen (billed per contract);
- ``revenue_recognition``: every line of every ``revenue.recognized`` event emitted (runs, billing
  reliefs, reclassifications): what the revenue query, waterfall and roll-forward read;
- ``revenue_run``: recognition runs;
- ``revenue_migration``: contracts migrated from a legacy system (``contract.migrated``): the cutover, the
  billed-through date and what the legacy system billed and recognised per obligation by then.
"""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import BigId, metadata

revenue_contract_change = sa.Table(
    "revenue_contract_change",
    metadata,
    sa.Column("contract_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("effective", sa.String(10), nullable=False),
    sa.Column("modification", sa.String(16), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("event_id", sa.BigInteger),
    sa.Column("recorded_at", sa.String(32), nullable=False),
)

revenue_contract = sa.Table(
    "revenue_contract",
    metadata,
    sa.Column("contract_id", sa.String(64), primary_key=True),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("billed", sa.BigInteger, nullable=False),
    sa.Column("recognised", sa.BigInteger, nullable=False),
    sa.Column("deferred", sa.BigInteger, nullable=False),
    sa.Column("unbilled", sa.BigInteger, nullable=False),
    sa.Column("transaction_price", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.Index("ix_revenue_contract_entity", "entity", "currency"),
    sa.Index("ix_revenue_contract_customer", "customer"),
)

revenue_obligation = sa.Table(
    "revenue_obligation",
    metadata,
    sa.Column("contract_id", sa.String(64), primary_key=True),
    sa.Column("line_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),  # order on the contract
    sa.Column("treatment", sa.String(16), nullable=False),
    sa.Column("revenue_role", sa.String(40), nullable=False),
    sa.Column("product_family", sa.String(64)),
    sa.Column("ssp", sa.BigInteger),  # None: not part of the allocation (usage)
    sa.Column("allocated", sa.BigInteger, nullable=False),
)

# Clustered by entity and accounting period on SQLite (a WITHOUT ROWID table keyed by them), so a month's
# rows are adjacent: a run reads and updates a few contiguous pages, not one row on every page.
revenue_schedule = sa.Table(
    "revenue_schedule",
    metadata,
    sa.Column("entity", sa.String(16), primary_key=True),
    sa.Column("bucket", sa.String(7), primary_key=True),  # the period, or "pending" (a milestone not completed)
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("contract_id", sa.String(64), nullable=False),
    sa.Column("line_id", sa.String(64), nullable=False),
    sa.Column("period", sa.String(7)),  # None while pending
    sa.Column("first", sa.String(10)),
    sa.Column("last", sa.String(10)),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("recognised", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # ratable, point, milestone, catch_up, remainder, usage, credit, carry
    sa.Column("ref", sa.String(64), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),  # a run still has to look at it
    sa.Index("ix_revenue_schedule_contract", "contract_id", "line_id"),
    sa.Index("ix_revenue_schedule_active", "entity", "first",
             sqlite_where=sa.text("active"), postgresql_where=sa.text("active")),
    sqlite_with_rowid=False,
)

revenue_adjustment = sa.Table(
    "revenue_adjustment",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("contract_id", sa.String(64), nullable=False),
    sa.Column("line_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # usage, credit
    sa.Column("first", sa.String(10), nullable=False),
    sa.Column("last", sa.String(10), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("document", sa.String(64), nullable=False),  # the invoice or credit memo
    sa.Index("ix_revenue_adjustment_contract", "contract_id"),
)

revenue_milestone = sa.Table(
    "revenue_milestone",
    metadata,
    sa.Column("contract_id", sa.String(64), primary_key=True),
    sa.Column("line_id", sa.String(64), primary_key=True),
    sa.Column("milestone_id", sa.String(64), primary_key=True),
    sa.Column("date", sa.String(10), nullable=False),
)

revenue_billing = sa.Table(
    "revenue_billing",
    metadata,
    sa.Column("document", sa.String(64), primary_key=True),  # invoice or credit memo number
    sa.Column("line_no", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # invoice, credit_memo
    sa.Column("invoice", sa.String(64), nullable=False),  # the invoice (itself, or the one a memo credits)
    sa.Column("contract_id", sa.String(64), nullable=False),
    sa.Column("line_id", sa.String(64), nullable=False),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("net", sa.BigInteger, nullable=False),  # billed (a credit memo's lines negative)
    sa.Column("treatment", sa.String(16), nullable=False),
    sa.Column("revenue_role", sa.String(40), nullable=False),
    sa.Column("period_start", sa.String(10)),
    sa.Column("period_end", sa.String(10)),  # inclusive, as invoice.issued states it
    sa.Column("description", sa.Text, nullable=False),
    sa.Index("ix_revenue_billing_contract", "contract_id"),
    sa.Index("ix_revenue_billing_entity_date", "entity", "date"),
)

# Clustered by entity and period on SQLite: a run appends its lines in key order.
revenue_recognition = sa.Table(
    "revenue_recognition",
    metadata,
    sa.Column("entity", sa.String(16), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),  # the accounting period it is posted in
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("run", sa.String(64), nullable=False),  # run id, or billing:<document>
    sa.Column("kind", sa.String(8), nullable=False),  # revenue (a run), relief (billing), reclass (a later date)
    sa.Column("contract_id", sa.String(64), nullable=False),
    sa.Column("line_id", sa.String(64), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("date", sa.String(10), nullable=False),  # the journal date
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("deferred", sa.BigInteger, nullable=False),
    sa.Column("unbilled", sa.BigInteger, nullable=False),
    sa.Column("revenue_role", sa.String(40), nullable=False),
    sa.Column("event_id", sa.BigInteger),
    sa.Index("ix_revenue_recognition_contract", "contract_id", "line_id"),
    sqlite_with_rowid=False,
)

revenue_run = sa.Table(
    "revenue_run",
    metadata,
    sa.Column("run", sa.String(64), primary_key=True),
    sa.Column("entity", sa.String(16)),  # None: every entity
    sa.Column("through", sa.String(10), nullable=False),
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)

revenue_migration = sa.Table(
    "revenue_migration",
    metadata,
    sa.Column("contract_id", sa.String(64), primary_key=True),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("cutover", sa.String(10), nullable=False),  # the legacy books end with this day
    sa.Column("billed_through", sa.String(10), nullable=False),
    sa.Column("system", sa.String(200), nullable=False),
    sa.Column("lines", sa.Text, nullable=False),  # JSON {line_id: {"billed": minor, "recognised": minor}}
    sa.Column("event_id", sa.BigInteger),
    sa.Column("recorded_at", sa.String(32), nullable=False),
)
