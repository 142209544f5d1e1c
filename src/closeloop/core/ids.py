"""Surrogate-key blocks on PostgreSQL, reserved outside the caller's transaction.

Reserving a block inside the command's transaction (``UPDATE id_block ... RETURNING``) keeps the
``id_block`` row locked until that transaction commits, so concurrent workers queue on one row for
the whole of each other's transactions. Keys need to be unique, not gapless (gapless numbers, such
as invoice numbers, have their own per-entity series), so the block is taken by a short transaction
of its own on a separate connection, as a database sequence would be: the row is locked for one
statement, and a command that rolls back leaves a gap.

That transaction commits asynchronously (``synchronous_commit = off``): the keys are only used by a
transaction that commits later on the same server, and its synchronous commit flushes the WAL up to
its own record, which lies after the reservation's. After a server crash the reservation is therefore
durable whenever any row using its keys is.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

_RESERVE = "UPDATE id_block SET next_value = next_value + %s WHERE name = %s RETURNING next_value"
_CREATE = "INSERT INTO id_block (name, next_value) VALUES (%s, 1) ON CONFLICT (name) DO NOTHING"


class KeyAllocator:
    """``allocator(name, count)`` reserves ``count`` consecutive keys of ``name``; returns the first."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0

    def _connection(self) -> Any:
        if self._conn is None or self._pid != os.getpid():  # a forked child opens its own
            # A connection of its own, outside the pool: it is in autocommit mode, which no unit of
            # work may ever be handed.
            cargs, cparams = self._engine.dialect.create_connect_args(self._engine.url)
            conn = self._engine.dialect.connect(*cargs, **cparams)
            conn.autocommit = True
            conn.execute("SET synchronous_commit = off")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def __call__(self, name: str, count: int) -> int:
        with self._lock:
            try:
                return self._reserve(self._connection(), name, count)
            except Exception:
                self._discard()  # a broken connection (server restart) is replaced on the next call
                return self._reserve(self._connection(), name, count)

    @staticmethod
    def _reserve(conn: Any, name: str, count: int) -> int:
        row = conn.execute(_RESERVE, (count, name)).fetchone()
        if row is None:
            conn.execute(_CREATE, (name,))
            row = conn.execute(_RESERVE, (count, name)).fetchone()
        return int(row[0]) - count

    def _discard(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        with self._lock:
            self._discard()
