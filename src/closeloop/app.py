"""The application object behind every interface: ``closeloop.open(url)`` returns one.

``app.do(command, payload)`` runs a command in one unit of work (validation,
audit record, business events in the outbox, commit) and then, in the
embedded mode, delivers the events in-process; ``app.query(name, where)``
reads. The CLI, the REST API and the scenario runner call exactly these.

The audit record never holds a secret (:func:`redact`): a payload field
declared secret (``secret: str | None = field(default=None, metadata={"secret":
True})`` in its ``@payload`` class) is written as ``[redacted]``, and so, as a
safety net, is any field at any depth whose name says it is one
(:data:`SECRET_NAMES`, :data:`SECRET_SUFFIXES`); the values removed are also
scrubbed from the refusal recorded with the row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from closeloop import areas
from closeloop.core import registry
from closeloop.core.clock import Clock, SystemClock
from closeloop.core.db import Dialect, create_engine, current_heads, expected_heads, resolve_url, upgrade
from closeloop.core.errors import CloseloopError, ForbiddenError
from closeloop.core.events import DeliveryReport, Dispatcher
from closeloop.core.guards import run_guards
from closeloop.core.ids import KeyAllocator
from closeloop.core.uow import UnitOfWork, dumps

_expected_heads: set[str] | None = None
_schema_lock = threading.Lock()

REDACTED = "[redacted]"
# The safety net under the declarations: field names that are secrets wherever they appear.
SECRET_NAMES = frozenset({
    "secret", "password", "passphrase", "passwd", "api_key", "apikey", "token", "access_token", "refresh_token",
    "id_token", "client_secret", "private_key", "secret_key", "signing_secret", "webhook_secret",
})
SECRET_SUFFIXES = ("_secret", "_password", "_token", "_api_key", "_private_key")


def is_secret_name(name: Any) -> bool:
    key = str(name).lower().replace("-", "_")
    return key in SECRET_NAMES or key.endswith(SECRET_SUFFIXES)


@functools.cache
def declared_secrets(payload_class: type) -> frozenset[str]:
    """The fields a ``@payload`` class declares secret (``metadata={"secret": True}``)."""
    if not dataclasses.is_dataclass(payload_class):
        return frozenset()
    return frozenset(f.name for f in dataclasses.fields(payload_class) if f.metadata.get("secret"))


def redact(value: Any, declared: Iterable[str] = ()) -> tuple[Any, list[str]]:
    """A copy of ``value`` with secret fields written as ``[redacted]``, and the secret strings removed.

    ``declared`` names the top-level fields declared secret; below them, and for every other field, the
    name decides (:func:`is_secret_name`). Empty values (None, "") are kept: they say no secret was given."""
    found: list[str] = []
    names = frozenset(declared)

    def walk(item: Any, top: bool) -> Any:
        if isinstance(item, dict):
            out = {}
            for key, sub in item.items():
                if sub not in (None, "") and ((top and key in names) or is_secret_name(key)):
                    found.extend(_strings(sub))
                    out[key] = REDACTED
                else:
                    out[key] = walk(sub, False)
            return out
        if isinstance(item, list | tuple):
            return [walk(sub, False) for sub in item]
        return item

    return walk(value, True), found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for sub in value.values() for s in _strings(sub)]
    if isinstance(value, list | tuple):
        return [s for sub in value for s in _strings(sub)]
    return [str(value)] if value is not None else []


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of ``value`` with every occurrence of a secret inside its strings replaced (working on the
    values, not on their JSON text, so that a secret that looks like JSON cannot break the record). Values
    under 8 characters are left: they would match ordinary text."""
    found = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)
    if not found:
        return value

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            for secret in found:
                if secret in item:
                    item = item.replace(secret, REDACTED)
            return item
        if isinstance(item, dict):
            return {walk(k): walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(sub) for sub in item]
        return item

    return walk(value)


# Any text that could hold a secret field's name (a superset of is_secret_name): the fast path skips the rest.
_MAY_NAME_A_SECRET = re.compile(r"secret|password|passphrase|passwd|token|api[_-]?key|private[_-]?key", re.I)


def audit_payload(op: registry.Operation | None, payload: dict[str, Any]) -> tuple[str, list[str]]:
    """The audit log's text of a payload, secrets redacted, and the secret values it held."""
    text = dumps(payload)
    declared = declared_secrets(op.input) if op is not None else frozenset()
    if not _MAY_NAME_A_SECRET.search(text) and all(payload.get(n) in (None, "") for n in declared):
        return text, []
    redacted, found = redact(payload, declared)
    return dumps(scrub(redacted, found)), found


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
        self.allocate_ids: KeyAllocator | None = None  # PostgreSQL: key blocks outside the transaction

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
        if not self.dialect.is_sqlite:
            self.services.allocate_ids = KeyAllocator(self.engine)
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
        op: registry.Operation | None = None
        try:
            op = registry.get(name, "command")
            cmd = op.parse(payload)
            with self.unit_of_work(actor=actor, source=source, correlation_id=correlation_id) as uow:
                command_id = uow.scalar(
                    "INSERT INTO audit_log (at, business_date, actor, source, command, payload, outcome,"
                    " correlation_id) VALUES (?,?,?,?,?,?,'ok',?) RETURNING id",
                    (uow.now(), uow.today().isoformat(), actor, source, name, audit_payload(op, payload)[0],
                     correlation_id),
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
            self._record_refusal(name, payload, actor, source, str(err.code), err.to_dict(), kept, correlation_id,
                                 op=op)
            raise
        except Exception as exc:
            kept = current[0].kept_on_failure if current else []
            self._record_refusal(name, payload, actor, source, "internal_error",
                                 {"message": f"{type(exc).__name__}: {exc}"}, kept, correlation_id, op=op)
            raise
        if uow.dispatch_needed and self.dispatch_mode == "inline":
            self.dispatch()
        return result

    def _record_refusal(self, name: str, payload: dict[str, Any], actor: str, source: str, outcome: str,
                        detail: dict[str, Any], kept: list[Any], correlation_id: str | None, *,
                        op: registry.Operation | None = None) -> None:
        """A refused command writes nothing of its own; its audit record and exceptions are kept."""
        kept = kept or []
        try:
            payload_text, found = audit_payload(op, payload)
            result, more = redact(detail)
            with self.unit_of_work(actor=actor, source=source, correlation_id=correlation_id) as uow:
                uow.execute(
                    "INSERT INTO audit_log (at, business_date, actor, source, command, payload, outcome, result,"
                    " correlation_id) VALUES (?,?,?,?,?,?,?,?,?)",
                    (uow.now(), uow.today().isoformat(), actor, source, name, payload_text, outcome,
                     dumps(scrub(result, found + more)), correlation_id),
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
            self._record_refusal(name, dict(where or {}), actor, self.source, str(err.code), err.to_dict(), [], None,
                                 op=op)
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
        if self.services.allocate_ids is not None:
            self.services.allocate_ids.close()
        self.engine.dispose()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(url: str | None = None, **options: Any) -> App:  # noqa: A001 - the documented entry point
    """Open closeloop on a database URL (None: ``CLOSELOOP_DATABASE_URL`` or ``./closeloop.db``)."""
    return App(url, **options)
