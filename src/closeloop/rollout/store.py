"""Rollout tables: the wave plan, wave states, recorded scenario-suite results, variations."""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import BigId, metadata

rollout_plan = sa.Table(
    "rollout_plan",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("body", sa.Text, nullable=False),  # YAML as loaded
    sa.Column("loaded_at", sa.String(32), nullable=False),
    sa.Column("loaded_by", sa.String(64), nullable=False),
)

wave_state = sa.Table(
    "wave_state",
    metadata,
    sa.Column("wave", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # planned, live
    sa.Column("live_on", sa.String(10)),
    sa.Column("decided_by", sa.String(64)),
    sa.Column("evidence", sa.Text),
)

scenario_suite_run = sa.Table(
    "scenario_suite_run",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("passed", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("failures", sa.Text),
)

variation = sa.Table(
    "variation",
    metadata,
    sa.Column("variation_id", sa.String(64), primary_key=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("area", sa.String(32), nullable=False),  # billing, tax, approval, crm
    sa.Column("scope", sa.String(200), nullable=False),  # e.g. entity DE01, region CA, business unit EMEA
    sa.Column("classification", sa.String(16), nullable=False),  # strategic, regulatory, legacy
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("review_date", sa.String(10), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # proposed, approved, rejected, expired
    sa.Column("proposed_by", sa.String(64), nullable=False),
    sa.Column("approved_by", sa.String(64)),
    sa.Column("created_at", sa.String(32), nullable=False),
)
from closeloop.rollout.migration_store import *  # noqa: E402,F401,F403 - migration and parallel-run tables
