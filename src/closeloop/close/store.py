"""Close tables: one cycle per entity and period, gate evaluations, overrides, reopen requests."""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import BigId, metadata

close_cycle = sa.Table(
    "close_cycle",
    metadata,
    sa.Column("entity", sa.String(16), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # in_progress, locked, reopened
    sa.Column("first_action_at", sa.String(32), nullable=False),
    sa.Column("first_action_on", sa.String(10), nullable=False),
    sa.Column("locked_at", sa.String(32)),
    sa.Column("locked_on", sa.String(10)),
    sa.Column("locked_by", sa.String(64)),
    sa.Column("cycle_days", sa.Integer),
)

close_gate_log = sa.Table(
    "close_gate_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("gate", sa.String(64), nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Index("ix_close_gate_log_entity_period", "entity", "period", "id"),
)

close_override = sa.Table(
    "close_override",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("gate", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("approver", sa.String(64), nullable=False),
    sa.Column("requested_by", sa.String(64), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
)

period_reopen = sa.Table(
    "period_reopen",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("requested_by", sa.String(64), nullable=False),
    sa.Column("requested_at", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, approved, rejected
    sa.Column("decided_by", sa.String(64)),
    sa.Column("decided_at", sa.String(32)),
)

year_end_close = sa.Table(
    "year_end_close",
    metadata,
    sa.Column("entity", sa.String(16), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("net_income", sa.BigInteger, nullable=False),
    sa.Column("closed_at", sa.String(32), nullable=False),
    sa.Column("closed_by", sa.String(64), nullable=False),
)
