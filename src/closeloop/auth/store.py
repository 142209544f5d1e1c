"""Access-control tables: users (hashed passwords), API keys (hashed), browser sessions, auth events."""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import BigId, metadata

# A person or an integration. Roles and entity scope are lists stored as comma-separated text;
# an empty entity list means every entity.
auth_user = sa.Table(
    "auth_user",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(200)),
    sa.Column("roles", sa.String(200), nullable=False),
    sa.Column("entities", sa.String(400), nullable=False, server_default=""),
    sa.Column("locale", sa.String(16)),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

# API keys: ``clk_<key_id>_<secret>``; only a SHA-256 of the whole key is kept (the key is random,
# 256 bits, so a slow hash adds nothing but latency). The key is shown once, at creation.
auth_api_key = sa.Table(
    "auth_api_key",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("key_id", sa.String(32), nullable=False, unique=True),
    sa.Column("user_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("label", sa.String(100)),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("revoked_at", sa.String(32)),
)

# Browser sessions: the cookie holds a random token; only its SHA-256 is stored.
auth_session = sa.Table(
    "auth_session",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("expires_at", sa.String(32), nullable=False),
)

# Authentication outcomes and denials that never reach a command's audit record
# (wrong password, unknown or revoked key, missing CSRF token, ...).
auth_event = sa.Table(
    "auth_event",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("client", sa.String(64)),
    sa.Index("ix_auth_event_kind", "kind", "id"),
)
