"""The unit of work: one database transaction per command, with its clock, actor, source and outbox.

Only the unit of work commits. A command handler receives it, reads and
writes through it, and appends its business events with :meth:`emit`; the
events land in the outbox table in the same transaction as the change. If
the handler raises, everything is rolled back, and only what was registered
with :meth:`keep_on_failure` (the exception and audit records that describe
the refusal) is written afterwards in a transaction of its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import Any

from closeloop.core import faults
from closeloop.core.clock import Clock
from closeloop.core.db import Dialect
from closeloop.core.events import has_handlers


def dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class UnitOfWork:
    def __init__(
        self,
        connection: Any,
        dialect: Dialect,
        *,
        clock: Clock,
        actor: str,
        source: str,
        command_id: int | None = None,
        correlation_id: str | None = None,
        causation_id: int | None = None,
        write: bool = True,
        services: Any = None,
    ) -> None:
        self.connection = connection
        self.dialect = dialect
        self.clock = clock
        self.actor = actor
        self.source = source
        self.command_id = command_id
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self.write = write
        self.services = services  # the App's shared caches and configuration
        self.cursor = connection.cursor()
        self.dispatch_needed = False
        self.emitted: list[int] = []
        self.cache: dict[Any, Any] = {}
        self._keep: list[Callable[[UnitOfWork], None]] = []
        self._after_commit: list[Callable[[], None]] = []
        self._now: str | None = None
        self._active = False

    # ------------------------------------------------------------------ transaction

    def begin(self) -> None:
        if self.dialect.is_sqlite:
            self.cursor.execute("BEGIN IMMEDIATE" if self.write else "BEGIN")
        self._active = True

    def commit(self) -> None:
        if faults.HOOK is not None:
            faults.hit("uow.commit")
        self.connection.commit()
        self._active = False
        if faults.HOOK is not None:
            faults.hit("uow.committed")
        for fn in self._after_commit:
            fn()

    def rollback(self) -> None:
        if self._active:
            self.connection.rollback()
            self._active = False

    def savepoint(self) -> Any:
        """A nested scope: ``with uow.savepoint(): ...`` undoes only its own writes if it raises."""
        return _Savepoint(self)

    def keep_on_failure(self, record: Callable[[UnitOfWork], None]) -> None:
        """Register a write (exception, audit) that must survive the rollback of a refused command."""
        self._keep.append(record)

    @property
    def kept_on_failure(self) -> list[Callable[[UnitOfWork], None]]:
        return list(self._keep)

    def after_commit(self, fn: Callable[[], None]) -> None:
        self._after_commit.append(fn)

    # ------------------------------------------------------------------ caches

    def cached(self, namespace: str, key: Any, loader: Callable[[], Any]) -> Any:
        """Read-through cache shared by the App's units of work; filled only when this one commits."""
        shared = self.services.cache(namespace) if self.services is not None else None
        if shared is not None and key in shared:
            return shared[key]
        local = self.cache.setdefault(namespace, {})
        if key in local:
            return local[key]
        value = loader()
        local[key] = value
        if shared is not None:
            self._after_commit.append(lambda: shared.__setitem__(key, value))
        return value

    def invalidate(self, namespace: str, key: Any) -> None:
        self.cache.get(namespace, {}).pop(key, None)
        if self.services is not None:
            shared = self.services.cache(namespace)
            shared.pop(key, None)
            self._after_commit.append(lambda: shared.pop(key, None))

    # ------------------------------------------------------------------ clock

    def now(self) -> str:
        """The command's timestamp (one per unit of work, ISO UTC)."""
        if self._now is None:
            self._now = self.clock.timestamp()
        return self._now

    def today(self) -> date:
        return self.clock.today()

    # ------------------------------------------------------------------ SQL

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        cur = self.cursor
        cur.execute(self.dialect.sql(sql), params)
        return cur

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = rows if isinstance(rows, list) else list(rows)
        if rows:
            self.cursor.executemany(self.dialect.sql(sql), rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self.cursor
        cur.execute(self.dialect.sql(sql), params)
        return cur.fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        cur = self.cursor
        cur.execute(self.dialect.sql(sql), params)
        return cur.fetchall()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]

    def dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.cursor
        cur.execute(self.dialect.sql(sql), params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def for_update(self) -> str:
        """Row-lock suffix for SELECTs that guard a serialisation point (SQLite's writer lock already does)."""
        return "" if self.dialect.is_sqlite else " FOR UPDATE"

    def next_ids(self, name: str, count: int = 1, *, table: str | None = None, gapless: bool = False) -> int:
        """Reserve ``count`` consecutive ids from the named block; returns the first.

        With ``table`` on SQLite the ids continue the table's own key (the writer lock held by
        this transaction makes MAX(id) safe), which saves a write per transaction on hot paths.
        On PostgreSQL the App's allocator reserves surrogate keys in a transaction of its own
        (core.ids: concurrent workers would otherwise queue on the block's row until commit); a
        ``gapless`` series (business numbers) is reserved in this transaction and rolls back with it.
        """
        if table is not None and self.dialect.is_sqlite:
            return int(self.scalar(f"SELECT COALESCE(MAX(id), 0) FROM {table}")) + 1
        allocate = None if gapless else getattr(self.services, "allocate_ids", None)
        if allocate is not None:
            return int(allocate(name, count))
        row = self.one(
            "UPDATE id_block SET next_value = next_value + ? WHERE name = ? RETURNING next_value", (count, name)
        )
        if row is None:
            self.execute(
                "INSERT INTO id_block (name, next_value) VALUES (?, 1) ON CONFLICT (name) DO NOTHING", (name,)
            )
            row = self.one(
                "UPDATE id_block SET next_value = next_value + ? WHERE name = ? RETURNING next_value",
                (count, name),
            )
        return int(row[0]) - count

    # ------------------------------------------------------------------ outbox

    def emit(
        self,
        type: str,
        aggregate_type: str,
        aggregate_id: str,
        payload: dict[str, Any],
        *,
        entity: str | None = None,
        version: int = 1,
        idempotency_key: str | None = None,
        occurred_at: str | None = None,
    ) -> int:
        """Append one business event to the outbox in this transaction; returns its id."""
        pending = has_handlers(type)
        if pending:
            self.dispatch_needed = True
        now = self.now()
        row = self.one(
            "INSERT INTO event (type, version, aggregate_type, aggregate_id, entity, payload, idempotency_key,"
            " source, actor, occurred_at, recorded_at, command_id, causation_id, correlation_id, status, attempts)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0) RETURNING id",
            (
                type,
                version,
                aggregate_type,
                str(aggregate_id),
                entity,
                dumps(payload),
                idempotency_key,
                self.source,
                self.actor,
                occurred_at or now,
                now,
                self.command_id,
                self.causation_id,
                self.correlation_id,
                "pending" if pending else "done",
            ),
        )
        event_id = int(row[0])
        self.emitted.append(event_id)
        if faults.HOOK is not None:
            faults.hit("uow.emit")
        return event_id

    def emit_many(
        self,
        type: str,
        aggregate_type: str,
        items: Sequence[tuple[Any, ...]],
        *,
        version: int = 1,
        occurred_at: str | None = None,
    ) -> None:
        """Append many events of one type: ``items`` are (aggregate_id, entity, payload[, causation_id]).

        A payload may be given already serialised (a JSON object string) by hot paths; a fourth
        element overrides the unit of work's causation id for that event (batch handlers)."""
        if not items:
            return
        if faults.HOOK is not None:
            faults.hit("uow.emit")
        pending = has_handlers(type)
        if pending:
            self.dispatch_needed = True
        now = self.now()
        status = "pending" if pending else "done"
        at = occurred_at or now
        src, actor, cmd, cause, corr = self.source, self.actor, self.command_id, self.causation_id, self.correlation_id
        self.executemany(
            "INSERT INTO event (type, version, aggregate_type, aggregate_id, entity, payload, source, actor,"
            " occurred_at, recorded_at, command_id, causation_id, correlation_id, status, attempts)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)",
            [
                (type, version, aggregate_type, item[0], item[1], item[2] if isinstance(item[2], str) else dumps(item[2]),
                 src, actor, at, now, cmd, item[3] if len(item) > 3 else cause, corr, status)
                for item in items
            ],
        )

class _Savepoint:
    _counter = 0

    def __init__(self, uow: UnitOfWork) -> None:
        _Savepoint._counter += 1
        self.uow = uow
        self.name = f"sp_{_Savepoint._counter}"

    def __enter__(self) -> _Savepoint:
        self.uow.cursor.execute(f"SAVEPOINT {self.name}")
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.uow.cursor.execute(f"RELEASE SAVEPOINT {self.name}")
        else:
            self.uow.cursor.execute(f"ROLLBACK TO SAVEPOINT {self.name}")
            self.uow.cursor.execute(f"RELEASE SAVEPOINT {self.name}")
