"""REST API tables: stored responses of POST requests by ``Idempotency-Key``."""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import metadata

# One row per (principal, key). ``status`` is NULL while the first request is still running.
api_idempotency = sa.Table(
    "api_idempotency",
    metadata,
    sa.Column("principal", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("method_path", sa.String(300), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer),
    sa.Column("response", sa.Text),
    sa.Column("created_at", sa.String(32), nullable=False),
)
