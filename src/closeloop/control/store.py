"""Control tables: reconciliation runs, each rule's outcome in a run, and the breaks found."""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import BigId, metadata

recon_run = sa.Table(
    "recon_run",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("business_date", sa.String(10), nullable=False),
    sa.Column("as_of", sa.String(10), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("rules", sa.Text, nullable=False),  # JSON list of the rules asked for
    sa.Column("matched", sa.BigInteger, nullable=False),
    sa.Column("breaks", sa.BigInteger, nullable=False),
)

# One row per rule per run: ran (ok), or could not run (unavailable: a side is not registered yet;
# error: a side failed), with its counts. The `recon` query reads each rule's latest row.
recon_rule_run = sa.Table(
    "recon_rule_run",
    metadata,
    sa.Column("run_id", sa.BigInteger, primary_key=True),
    sa.Column("rule", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # ok, unavailable, error
    sa.Column("message", sa.Text),
    sa.Column("left_count", sa.BigInteger, nullable=False),
    sa.Column("right_count", sa.BigInteger, nullable=False),
    sa.Column("matched", sa.BigInteger, nullable=False),
    sa.Column("breaks", sa.BigInteger, nullable=False),
    sa.Column("opened", sa.Integer, nullable=False),
    sa.Column("updated", sa.Integer, nullable=False),
    sa.Column("closed", sa.Integer, nullable=False),
    sa.Index("ix_recon_rule_run_rule", "rule", "run_id"),
)

recon_break = sa.Table(
    "recon_break",
    metadata,
    sa.Column("run_id", sa.BigInteger, primary_key=True),
    sa.Column("rule", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("category", sa.String(24), nullable=False),  # missing_left, missing_right, amount_difference, ...
    sa.Column("match_key", sa.String(400), nullable=False),
    sa.Column("currency", sa.String(3)),
    sa.Column("amount", sa.BigInteger),  # minor units at stake (absolute difference)
    sa.Column("left_amount", sa.BigInteger),
    sa.Column("right_amount", sa.BigInteger),
    sa.Column("details", sa.Text),  # JSON: key fields, both records, differing fields
    sa.Column("exception_id", sa.BigInteger),
)
