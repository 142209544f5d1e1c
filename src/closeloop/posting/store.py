"""Posting-rule versions: proposed, approved by a second person, effective from a date."""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import BigId, metadata

posting_rule_version = sa.Table(
    "posting_rule_version",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("version", sa.Integer, nullable=False, unique=True),
    sa.Column("effective_from", sa.String(10), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the YAML as proposed
    sa.Column("status", sa.String(16), nullable=False),  # proposed, approved, rejected
    sa.Column("reason", sa.Text),
    sa.Column("proposed_by", sa.String(64), nullable=False),
    sa.Column("proposed_at", sa.String(32), nullable=False),
    sa.Column("decided_by", sa.String(64)),
    sa.Column("decided_at", sa.String(32)),
)
