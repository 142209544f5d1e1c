"""Core tables: the outbox, deliveries, audit log, id blocks, FX rates and legal entities."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from closeloop.core.db import BigId, metadata

# Events whose payload carries the business date of their document ("date": the day an invoice is dated,
# the day a payment was applied), which reports select by period: an expression index on that date finds
# one period's events without reading every payload (KPIs over a year of invoices).
DATED_EVENT_TYPES = ("invoice.issued", "payment.applied")


def payload_date_sql(sqlite: bool, column: str = "payload") -> str:
    """SQL for the top-level ``date`` of a JSON payload column, as text: exactly the expression that
    ``ix_event_payload_date`` indexes (JSON functions differ between SQLite and PostgreSQL)."""
    return f"json_extract({column}, '$.date')" if sqlite else f"(CAST({column} AS json) ->> 'date')"


class payload_date(FunctionElement[str]):  # noqa: N801 - a SQL function name
    """``payload_date(event.c.payload)``: :func:`payload_date_sql` as a SQLAlchemy expression."""

    type = sa.String()
    name = "payload_date"
    inherit_cache = True


@compiles(payload_date)
def _payload_date_postgresql(element: Any, compiler: Any, **kw: Any) -> str:
    return payload_date_sql(False, compiler.process(next(iter(element.clauses)), **kw))


@compiles(payload_date, "sqlite")
def _payload_date_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return payload_date_sql(True, compiler.process(next(iter(element.clauses)), **kw))


# The transactional outbox: every business event, appended in the transaction of its cause.
event = sa.Table(
    "event",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("aggregate_type", sa.String(32), nullable=False),
    sa.Column("aggregate_id", sa.String(128), nullable=False),
    sa.Column("entity", sa.String(16)),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.String(200)),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("occurred_at", sa.String(32), nullable=False),
    sa.Column("recorded_at", sa.String(32), nullable=False),
    sa.Column("command_id", sa.BigInteger),
    sa.Column("causation_id", sa.BigInteger),
    sa.Column("correlation_id", sa.String(64)),
    # Delivery state: pending until every registered handler has run, then done; dead after N failures.
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.String(32)),
    sa.Column("last_error", sa.Text),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("lease_until", sa.String(32)),
    # Partial indexes: most events are delivered at once (or have no handler), so only the
    # pending ones and the ones carrying a key are indexed for the dispatcher and for dedup.
    sa.Index("ix_event_pending", "id", sqlite_where=sa.text("status = 'pending'"),
             postgresql_where=sa.text("status = 'pending'")),
    sa.Index("ix_event_idempotency_key", "idempotency_key", unique=True,
             sqlite_where=sa.text("idempotency_key IS NOT NULL"),
             postgresql_where=sa.text("idempotency_key IS NOT NULL")),
    sa.Index("ix_event_aggregate", "aggregate_type", "aggregate_id", "id"),
    # The dispatcher asks, for every candidate, whether an earlier event of its aggregate is still
    # open: only open (pending, dead) events are indexed, so that costs the same however long the history.
    sa.Index("ix_event_open_aggregate", "aggregate_type", "aggregate_id", "id",
             sqlite_where=sa.text("status IN ('pending', 'dead')"),
             postgresql_where=sa.text("status IN ('pending', 'dead')")),
    # Events of one type (and the ones a given command emitted): readers that ask for a type no longer
    # scan the whole outbox.
    sa.Index("ix_event_type", "type", "command_id"),
)
_DATED = sa.text(" OR ".join(f"type = '{t}'" for t in DATED_EVENT_TYPES))
sa.Index("ix_event_payload_date", event.c.type, payload_date(event.c.payload), sqlite_where=_DATED,
         postgresql_where=_DATED)

# One row per (event, handler) that ran; written in the handler's own transaction, so a
# handler's effect happens exactly once however often the event is delivered.
event_delivery = sa.Table(
    "event_delivery",
    metadata,
    sa.Column("event_id", sa.BigInteger, primary_key=True),
    sa.Column("handler", sa.String(64), primary_key=True),
    sa.Column("delivered_at", sa.String(32), nullable=False),
)

# Every command: who, when, from which source, what, and what came of it (refusals included).
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("business_date", sa.String(10), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("command", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),  # ok, or the error code
    sa.Column("result", sa.Text),
    sa.Column("correlation_id", sa.String(64)),
    sa.Index("ix_audit_log_command", "command", "id"),
)

# Blocks of ids handed out inside a transaction (journal entries, invoices...), so batches
# can insert rows with known keys in one executemany.
id_block = sa.Table(
    "id_block",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("next_value", sa.BigInteger, nullable=False),
)

fx_rate = sa.Table(
    "fx_rate",
    metadata,
    sa.Column("base", sa.String(3), primary_key=True),
    sa.Column("quote", sa.String(3), primary_key=True),
    sa.Column("date", sa.String(10), primary_key=True),
    sa.Column("rate", sa.String(40), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
)

legal_entity = sa.Table(
    "legal_entity",
    metadata,
    sa.Column("code", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("region", sa.String(16)),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("tax_id", sa.String(64)),
    sa.Column("address", sa.Text),  # JSON object
    sa.Column("maker_checker", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("fiscal_calendar", sa.String(16), nullable=False, server_default="calendar"),
    sa.Column("created_at", sa.String(32), nullable=False),
)

# The one exception queue: every failed delivery, governance violation, reconciliation
# break, tax hold, dispute... Each has an owner role, an SLA, links to its records.
exception_item = sa.Table(
    "exception_item",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open, resolved
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("owner_role", sa.String(32), nullable=False),
    sa.Column("assignee", sa.String(64)),
    sa.Column("entity", sa.String(16)),
    sa.Column("record_type", sa.String(32), nullable=False),
    sa.Column("record_id", sa.String(200), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("amount", sa.BigInteger),
    sa.Column("currency", sa.String(3)),
    sa.Column("details", sa.Text),  # JSON
    sa.Column("dedup_key", sa.String(300)),
    sa.Column("opened_at", sa.String(32), nullable=False),
    sa.Column("opened_on", sa.String(10), nullable=False),  # business date
    sa.Column("due_at", sa.String(32)),
    sa.Column("resolved_at", sa.String(32)),
    sa.Column("resolved_on", sa.String(10)),
    sa.Column("resolution", sa.String(32)),
    sa.Column("correlation_id", sa.String(64)),
    sa.Index("ix_exception_item_kind_status", "kind", "status"),
    sa.Index("ix_exception_item_record", "record_type", "record_id"),
    sa.Index("ix_exception_item_dedup", "dedup_key"),
)

exception_action = sa.Table(
    "exception_action",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("exception_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("details", sa.Text),
)
