"""Migration and parallel-run tables (imported by rollout/store.py).

- ``migration_run``: each accepted migration of a legacy data set (who, when, the files' digest,
  the cutover date, mode and the report as it was accepted);
- ``migration_record``: every legacy record a migration brought in, by kind and legacy key, with
  the digest of its row, so re-running a data set finds it unchanged (and a changed row is caught);
- ``parallel_register`` / ``parallel_register_line``: a legacy system's invoice register for one
  entity and period, line by line (amounts in minor units);
- ``parallel_run``: each reconciliation of a register against closeloop's invoices of the period.
"""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import BigId, metadata

__all__ = ["migration_run", "migration_record", "parallel_register", "parallel_register_line", "parallel_run"]

migration_run = sa.Table(
    "migration_run",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("system", sa.String(100)),  # the legacy system's name (manifest)
    sa.Column("dataset", sa.String(64), nullable=False),  # sha256 over the files
    sa.Column("cutover", sa.String(10), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),  # all_or_nothing, accept_valid
    sa.Column("created", sa.Integer, nullable=False),
    sa.Column("unchanged", sa.Integer, nullable=False),
    sa.Column("rejected", sa.Integer, nullable=False),
    sa.Column("report", sa.Text, nullable=False),  # JSON, lists cut to the first rows
)

migration_record = sa.Table(
    "migration_record",
    metadata,
    sa.Column("kind", sa.String(24), primary_key=True),  # customer, contact, product, price, contract, invoice, ...
    sa.Column("key", sa.String(128), primary_key=True),  # the legacy id (entity for opening balances)
    sa.Column("digest", sa.String(40), nullable=False),  # of the legacy row as imported
    sa.Column("run_id", sa.BigInteger, nullable=False),
    sa.Column("target", sa.String(128)),  # what it became in closeloop (external id, number, journal)
    sa.Column("detail", sa.Text),  # JSON: e.g. a contract's billed-through date
)

parallel_register = sa.Table(
    "parallel_register",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("system", sa.String(100)),
    sa.Column("file", sa.String(200), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("imported_at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Index("ix_parallel_register_entity", "entity", "period", "id"),
)

parallel_register_line = sa.Table(
    "parallel_register_line",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("register_id", sa.BigInteger, nullable=False),
    sa.Column("row", sa.Integer, nullable=False),  # line in the file (the header is line 1)
    sa.Column("invoice", sa.String(64), nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("sku", sa.String(64)),
    sa.Column("description", sa.Text),
    sa.Column("period_start", sa.String(10)),  # service days, inclusive
    sa.Column("period_end", sa.String(10)),
    sa.Column("quantity", sa.String(40)),
    sa.Column("unit_price", sa.String(40)),
    sa.Column("net", sa.BigInteger, nullable=False),
    sa.Column("tax", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Index("ix_parallel_register_line_register_id", "register_id"),
)

parallel_run = sa.Table(
    "parallel_run",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("register_id", sa.BigInteger, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("matched", sa.Integer, nullable=False),
    sa.Column("difference", sa.String(40), nullable=False),  # total absolute difference, decimal string
    sa.Column("currency", sa.String(3)),
    sa.Column("result", sa.Text, nullable=False),  # JSON: differences by customer and cause, with their lines
    sa.Index("ix_parallel_run_entity", "entity", "id"),
)
