"""The application object behind every interface: ``closeloop.open(url)`` returns one.

``app.do(command, payload)`` runs a command in one unit of work (validation,
audit record, business events in the outbox, commit) and then, in the
embedded mode, delivers the events in-process; ``app.query(name, where)``
reads. The CLI, the REST API and the scenario runner call exactly these.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from closeloop import areas
from closeloop.core import registry
from closeloop.core.clock import Clock, SystemClock
from closeloop.core.db import Dialect, create_engine, current_heads, expected_heads, resolve_url, upgrade
from closeloop.core.errors import CloseloopError, ForbiddenError
from closeloop.core.events import DeliveryReport, Dispatcher
from closeloop.core.guards import run_guards
from closeloop.core.uow import UnitOfWork, dumps

_expected_heads: set[str] | None = None
_schema_lock = threading.Lock()


def ensure_schema(engine: Any, url: str) -> None:
    """Run the Alembic migrations when the database is not at every area's head."""
    global _expected_heads
    with _schema_lock:
        if _expected_heads is None:
            _expected_heads = expected_heads(engine)
        try:
            current = current_heads(engine)
        except Exception:  # noqa: BLE001 - a brand-new database has no alembic_version table
            current = set()
        if current != _expected_heads:
            upgrade(engine)


class Services:
    """State shared by an App's units of work: read-through caches of rarely-changing records."""

    def __init__(self) -> None:
        self._caches: dict[str, dict[Any, Any]] = {}
        self.config: dict[str, Any] = {}

    def cache(self, namespace: str) -> dict[Any, Any]:
        found = self._caches.get(namespace)
        if found is None:
            found = self._caches[namespace] = {}
        return found

    def clear(self) -> None:
        self._caches.clear()


class App:
    def __init__(
        self,
        url: str | None = None,
        *,
        clock: Clock | None = None,
        actor: str = "system",
        source: str = "closeloop",
        migrate: bool = True,
        dispatch: str = "inline",
        authorizer: Any = None,
    ) -> None:
        areas.load()
        self.url = resolve_url(url)
        self.engine = create_engine(self.url)
        self.dialect = Dialect(self.engine.dialect.name)
        self.clock: Clock = clock or SystemClock()
        self.actor = actor
        self.source = source
        self.dispatch_mode = dispatch  # inline: deliver after each command; worker: leave to workers
        self.services = Services()
        if authorizer is None:  # every user holds every role unless services.config["users"] says otherwise
            from closeloop.auth.authorizer import ConfigAuthorizer

            authorizer = ConfigAuthorizer(trusted=actor)
        self.authorizer = authorizer  # consulted by do/query: closeloop.auth.authorizer
        self._local = threading.local()
        self._connections: list[Any] = []
        # The thread that opened the App keeps one connection for its life (the embedded hot path);
        # any other thread (a server's workers come and go) takes one per unit of work and gives it
        # back, so connections never outlive their threads.
        self._home_thread = threading.current_thread()
        if migrate:
            ensure_schema(self.engine, self.url)
        self.dispatcher = Dispatcher(self._dispatch_uow)

    # ------------------------------------------------------------------ connections and units of work

    def _checkout(self) -> tuple[Any, Any]:
        """(driver connection, pooled connection to give back after the unit of work, or None)."""
        if threading.current_thread() is self._home_thread:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self.engine.raw_connection()
                self._local.conn = conn
                self._connections.append(conn)
            return conn.driver_connection, None
        pooled = self.engine.raw_connection()
        return pooled.driver_connection, pooled

    @contextmanager
    def unit_of_work(
        self,
        *,
        write: bool = True,
        actor: str | None = None,
        source: str | None = None,
        command_id: int | None = None,
        causation_id: int | None = None,
        correlation_id: str | None = None,
    ) -> Iterator[UnitOfWork]:
        if getattr(self._local, "active", False):
            raise RuntimeError("a unit of work is already open on this thread; units of work do not nest")
        connection, pooled = self._checkout()
        self._local.active = True
        try:
            uow = UnitOfWork(
                connection, self.dialect, clock=self.clock, actor=actor or self.actor,
                source=source or self.source, command_id=command_id, causation_id=causation_id,
                correlation_id=correlation_id, write=write, services=self.services,
            )
            uow.begin()
            try:
                yield uow
            except BaseException:
                uow.rollback()
                raise
            uow.commit()
        finally:
            self._local.active = False
            if pooled is not None:
                pooled.close()

    def _dispatch_uow(self, *, actor: str, source: str, causation_id: int | None,
                      correlation_id: str | None) -> Any:
        return self.unit_of_work(actor=actor, source=source, causation_id=causation_id,
                                 correlation_id=correlation_id)

    # ------------------------------------------------------------------ the vocabulary

    def do(self, name: str, payload: dict[str, Any] | None = None, *, actor: str | None = None,
           source: str | None = None, correlation_id: str | None = None) -> dict[str, Any]:
        """Run a command. Raises :class:`CloseloopError` (with its stable code) when refused."""
        payload = dict(payload or {})
        actor = actor or self.actor
        source = str(payload.get("source") or source or self.source)
        current: list[UnitOfWork] = []
        try:
            op = registry.get(name, "command")
            cmd = op.parse(payload)
            with self.unit_of_work(actor=actor, source=source, correlation_id=correlation_id) as uow:
                command_id = uow.scalar(
                    "INSERT INTO audit_log (at, business_date, actor, source, command, payload, outcome,"
                    " correlation_id) VALUES (?,?,?,?,?,?,'ok',?) RETURNING id",
                    (uow.now(), uow.today().isoformat(), actor, source, name, dumps(payload), correlation_id),
                )
                current.append(uow)
                uow.command_id = int(command_id)
                if uow.correlation_id is None:
                    uow.correlation_id = f"cmd-{command_id}"
                cmd = self.authorizer.authorize(uow, op, cmd, actor)
                run_guards(uow, op, cmd)
                result = self.authorizer.check_result(uow, op, cmd, op.fn(uow, cmd), actor)
        except CloseloopError as err:
            kept = current[0].kept_on_failure if current else []
            self._record_refusal(name, payload, actor, source, str(err.code), err.to_dict(), kept, correlation_id)
            raise
        except Exception as exc:
            kept = current[0].kept_on_failure if current else []
            self._record_refusal(name, payload, actor, source, "internal_error",
                                 {"message": f"{type(exc).__name__}: {exc}"}, kept, correlation_id)
            raise
        if uow.dispatch_needed and self.dispatch_mode == "inline":
            self.dispatch()
        return result

    def _record_refusal(self, name: str, payload: dict[str, Any], actor: str, source: str, outcome: str,
                        detail: dict[str, Any], kept: list[Any], correlation_id: str | None) -> None:
        """A refused command writes nothing of its own; its audit record and exceptions are kept."""
        kept = kept or []
        try:
            with self.unit_of_work(actor=actor, source=source, correlation_id=correlation_id) as uow:
                uow.execute(
                    "INSERT INTO audit_log (at, business_date, actor, source, command, payload, outcome, result,"
                    " correlation_id) VALUES (?,?,?,?,?,?,?,?,?)",
                    (uow.now(), uow.today().isoformat(), actor, source, name, dumps(payload), outcome,
                     dumps(detail), correlation_id),
                )
                for record in kept:
                    record(uow)
        except Exception:  # noqa: BLE001 - never mask the original refusal
            pass

    def query(self, name: str, where: dict[str, Any] | None = None, *, actor: str | None = None) -> dict[str, Any]:
        op = registry.get(name, "query")
        q = op.parse(where)
        actor = actor or self.actor
        try:
            with self.unit_of_work(write=False, actor=actor) as uow:
                q = self.authorizer.authorize(uow, op, q, actor)
                return self.authorizer.check_result(uow, op, q, op.fn(uow, q), actor)  # type: ignore[no-any-return]
        except ForbiddenError as err:  # denials of reads are audited too
            self._record_refusal(name, dict(where or {}), actor, self.source, str(err.code), err.to_dict(), [], None)
            raise

    def dispatch(self) -> DeliveryReport:
        """Deliver pending outbox events to their handlers (the embedded mode calls this after each command)."""
        return self.dispatcher.run()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        for conn in self._connections:
            with contextlib.suppress(Exception):
                conn.close()
        self._connections.clear()
        self._local = threading.local()
        self.engine.dispose()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(url: str | None = None, **options: Any) -> App:  # noqa: A001 - the documented entry point
    """Open closeloop on a database URL (None: ``CLOSELOOP_DATABASE_URL`` or ``./closeloop.db``)."""
    return App(url, **options)
