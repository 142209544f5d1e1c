"""Ledger tables: accounts, journal entries and lines, maintained balances, the audit chain, periods."""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import BigId, metadata

ledger_account = sa.Table(
    "ledger_account",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("code", sa.String(32), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("role", sa.String(40)),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("entity", "code"),
    sa.UniqueConstraint("entity", "role"),
)

# Posted entries only; immutable. Ids are reserved in blocks so batches insert with known keys.
journal_entry = sa.Table(
    "journal_entry",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("memo", sa.Text, nullable=False),
    sa.Column("manual", sa.Boolean, nullable=False),
    sa.Column("reference", sa.String(128)),
    sa.Column("reverses_id", sa.BigInteger),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("approved_by", sa.String(64)),
    sa.Column("event_id", sa.BigInteger),  # the business event this entry was posted from
    sa.Column("posted_at", sa.String(32), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("entity", "seq"),
    sa.Index("ix_journal_entry_entity_date", "entity", "date"),
    sa.Index(
        "ix_journal_entry_reference",
        "reference",
        sqlite_where=sa.text("reference IS NOT NULL"),
        postgresql_where=sa.text("reference IS NOT NULL"),
    ),
)

journal_line = sa.Table(
    "journal_line",
    metadata,
    sa.Column("entry_id", sa.BigInteger, primary_key=True),
    sa.Column("line_no", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),  # functional currency, debit positive
    sa.Column("currency", sa.String(3), nullable=False),  # transaction currency
    sa.Column("txn_amount", sa.BigInteger, nullable=False),
    sa.Column("memo", sa.Text),
    sa.Column("dimensions", sa.Text),  # JSON object: product_family, region, department...
    # No index on account_id: GL detail reads the entity's entries by date (ix_journal_entry_entity_date),
    # narrowed to the periods where the account has a balance row; posting stays one B-tree per line.
    sqlite_with_rowid=False,  # one B-tree keyed by (entry_id, line_no): lines append in key order
)

# Balances maintained in the posting transaction, per entity/period/account/currency, so a
# trial balance reads O(accounts x periods) rows however many lines were posted.
ledger_balance = sa.Table(
    "ledger_balance",
    metadata,
    sa.Column("entity", sa.String(16), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("account_id", sa.BigInteger, primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("txn_amount", sa.BigInteger, nullable=False),
    sa.Column("line_count", sa.BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# Head of each entity's hash chain; the row is also the entity's posting lock.
ledger_chain = sa.Table(
    "ledger_chain",
    metadata,
    sa.Column("entity", sa.String(16), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

ledger_period = sa.Table(
    "ledger_period",
    metadata,
    sa.Column("entity", sa.String(16), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # open, closed
    sa.Column("changed_at", sa.String(32), nullable=False),
    sa.Column("changed_by", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text),
)

journal_reversal = sa.Table(
    "journal_reversal",
    metadata,
    sa.Column("original_id", sa.BigInteger, primary_key=True),
    sa.Column("reversal_id", sa.BigInteger, nullable=False),
)

# Manual journals awaiting a second person's approval (maker-checker); not in the ledger yet.
journal_request = sa.Table(
    "journal_request",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("reference", sa.String(128), nullable=False, unique=True),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("maker", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, approved, rejected
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("decided_by", sa.String(64)),
    sa.Column("decided_at", sa.String(32)),
    sa.Column("entry_id", sa.BigInteger),
)

# One row per entity and period whose open foreign-currency balances were revalued.
ledger_fx_revaluation = sa.Table(
    "ledger_fx_revaluation",
    metadata,
    sa.Column("entity", sa.String(16), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("total", sa.BigInteger, nullable=False),  # net unrealised adjustment, functional currency
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("revalued_at", sa.String(32), nullable=False),
    sa.Column("revalued_by", sa.String(64), nullable=False),
)
