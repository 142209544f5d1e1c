"""Integration tables: operator actions on events, outbound webhooks (subscriptions, deliveries,
attempts), the CRM loop's last-sent account state, and the diagnostic probes.

The outbox itself (``event``, ``event_delivery``) is core's.
"""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import BigId, metadata

# Who retried, replayed or skipped which event, when and why (the CLI's `events` commands).
event_action = sa.Table(
    "event_action",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # retry, replay, skip
    sa.Column("reason", sa.Text),
    sa.Column("details", sa.Text),  # JSON: status and attempts before, handlers re-run
)

webhook_subscription = sa.Table(
    "webhook_subscription",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("url", sa.String(2000), nullable=False),
    # The signing secret, encrypted: "fernet:<token>" (integration/secret_box.py); rows written before
    # encryption hold it in plain text until webhook.reseal (or the integration_0002 migration) encrypts them.
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("secret_hint", sa.String(8)),  # the secret's last 4 characters, for listings
    sa.Column("event_types", sa.Text, nullable=False),  # JSON list; "*" = every published type
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("disabled_at", sa.String(32)),
)

# One row per (subscription, event): the body is frozen when the event is handled, so a retry
# sends exactly the same bytes (with a fresh timestamp and signature).
webhook_delivery = sa.Table(
    "webhook_delivery",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("subscription_id", sa.BigInteger, nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("aggregate_type", sa.String(32), nullable=False),
    sa.Column("aggregate_id", sa.String(128), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, delivered, dead, skipped
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.String(32)),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("lease_until", sa.String(32)),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("delivered_at", sa.String(32)),
    sa.UniqueConstraint("subscription_id", "event_id"),
    sa.Index("ix_webhook_delivery_open", "id", sqlite_where=sa.text("status = 'pending'"),
             postgresql_where=sa.text("status = 'pending'")),
    sa.Index("ix_webhook_delivery_aggregate", "subscription_id", "aggregate_type", "aggregate_id", "event_id"),
)

# The delivery log: every HTTP attempt with its outcome.
webhook_attempt = sa.Table(
    "webhook_attempt",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("worker", sa.String(64)),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("duration_ms", sa.Integer, nullable=False),
)

# What the CRM was last told about each account (a change is only sent when the state differs).
crm_account_state = sa.Table(
    "crm_account_state",
    metadata,
    sa.Column("account", sa.String(128), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # JSON
    sa.Column("event_id", sa.BigInteger),  # the event that last changed it
    sa.Column("updated_at", sa.String(32), nullable=False),
)

# Diagnostic probes: a named synthetic handler an operator (or a scenario) can break and repair.
probe = sa.Table(
    "probe",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("broken", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("delivered", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.String(32), nullable=False),
)
