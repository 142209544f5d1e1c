"""Secrets closeloop must read back (outbound webhook signing secrets) are encrypted at rest.

A signing secret cannot be hashed like an API key: the sender needs it to sign every delivery. It is
stored as ``fernet:<token>`` (Fernet from the ``cryptography`` package: AES-128-CBC with an HMAC-SHA256
tag, so a changed or foreign value is refused, never misread) with a key kept **outside** the database,
found in this order:

1. ``app.services.config["secret_key"]`` (an embedding program, tests);
2. ``CLOSELOOP_SECRET_KEY``: one or more Fernet keys separated by commas or spaces;
3. ``CLOSELOOP_SECRET_KEY_FILE``: a file of keys, one per line (``#`` comments allowed); created with
   mode 0600 on first need when it does not exist;
4. on SQLite, the file ``<database>.key`` beside the database, created with mode 0600 on first need;
   an in-memory SQLite database uses a key that lives as long as the process (so does the database).

On PostgreSQL one of 1-3 is required (every process — servers and workers, on every machine — needs the
same key); without one ``webhook.subscribe`` is refused with a message saying so.

**Rotation.** The first key encrypts, every listed key decrypts: put a new key first, keep the old
one after it, run ``webhook.reseal`` (re-encrypts every stored secret with the first key), then drop
the old key. Rows written before encryption existed (plain text) are still read, and ``webhook.reseal``
or the ``integration_0002`` migration encrypts them.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from closeloop.core.errors import ValidationError

log = logging.getLogger("closeloop.secrets")

PREFIX = "fernet:"
ENV_KEY = "CLOSELOOP_SECRET_KEY"
ENV_KEY_FILE = "CLOSELOOP_SECRET_KEY_FILE"
CONFIG_KEY = "secret_key"

_lock = threading.Lock()
_process_key: str | None = None  # in-memory SQLite databases
_rings: dict[tuple[str, ...], MultiFernet] = {}
_warned: set[str] = set()


class SecretKeyError(ValidationError):
    """No usable key: not configured, unreadable, malformed, or not the key a value was encrypted with."""

    def __init__(self, message: str, **details: Any) -> None:
        details.setdefault("field", ENV_KEY)
        super().__init__(message, **details)


@dataclass(frozen=True)
class KeySource:
    """Where the keys come from: ``keys`` given directly, or a ``path`` to a key file."""

    description: str
    keys: tuple[str, ...] = ()
    path: str | None = None
    create: bool = False  # the file may be created (a key file closeloop owns)


def generate_key() -> str:
    """A new key for ``CLOSELOOP_SECRET_KEY`` (32 random bytes, URL-safe base64)."""
    return Fernet.generate_key().decode()


def is_sealed(stored: str | None) -> bool:
    return bool(stored) and str(stored).startswith(PREFIX)


def hint(secret: str) -> str:
    """What a listing shows of a secret: its last four characters."""
    return secret[-4:] if len(secret) >= 16 else ""


def masked(secret_hint: str | None) -> str:
    return "****" + secret_hint if secret_hint else "****"


# --------------------------------------------------------------------------- where the key is


def _split(text: str) -> tuple[str, ...]:
    keys = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        keys.extend(k for k in re.split(r"[\s,]+", line) if k)
    return tuple(keys)


def sqlite_file(connection: Any) -> str:
    """The file of a SQLite connection's main database ('' when in memory). ``connection`` is a DB-API
    connection, a cursor holder (unit of work) or a SQLAlchemy connection."""
    if hasattr(connection, "exec_driver_sql"):  # SQLAlchemy (migrations)
        rows = connection.exec_driver_sql("PRAGMA database_list").fetchall()
    elif hasattr(connection, "all"):  # a unit of work
        rows = connection.all("PRAGMA database_list")
    else:
        rows = connection.execute("PRAGMA database_list").fetchall()
    for _seq, name, file in rows:
        if name == "main":
            return str(file or "")
    return ""


def key_source(config: dict[str, Any] | None, *, is_sqlite: bool, database_file: str = "") -> KeySource | None:
    """Where the keys are for a database (None: PostgreSQL without a configured key)."""
    configured = (config or {}).get(CONFIG_KEY)
    if configured:
        keys = _split(configured) if isinstance(configured, str) else tuple(str(k) for k in configured)
        return KeySource("services.config['secret_key']", keys=keys)
    env = os.environ.get(ENV_KEY, "").strip()
    if env:
        return KeySource(ENV_KEY, keys=_split(env))
    path = os.environ.get(ENV_KEY_FILE, "").strip()
    if path:
        return KeySource(f"{ENV_KEY_FILE} ({path})", path=path, create=True)
    if is_sqlite:
        if not database_file:
            global _process_key
            with _lock:
                if _process_key is None:
                    _process_key = generate_key()
            return KeySource("a per-process key (in-memory SQLite database)", keys=(_process_key,))
        path = database_file + ".key"
        return KeySource(f"the key file beside the database ({path})", path=path, create=True)
    return None


def source_for(uow: Any) -> KeySource | None:
    is_sqlite = bool(uow.dialect.is_sqlite)
    return key_source(getattr(uow.services, "config", None), is_sqlite=is_sqlite,
                      database_file=sqlite_file(uow) if is_sqlite else "")


def _create_key_file(path: str) -> None:
    """Write a new key file with mode 0600, atomically; a concurrent creator's file wins."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".closeloop-key-", dir=folder)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("# closeloop secret key: encrypts outbound webhook signing secrets. Keep it secret,\n"
                         "# back it up with the database; the first key encrypts, every key decrypts.\n")
            handle.write(generate_key() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # fails if the file exists: never overwrite a key
            log.info("created the secret key file %s (mode 0600)", path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def _read_key_file(source: KeySource, *, create: bool) -> tuple[str, ...]:
    assert source.path is not None
    path = source.path
    if not os.path.exists(path):
        if not (create and source.create):
            raise SecretKeyError(f"the secret key file {path} does not exist; it holds the key the stored webhook"
                                 f" secrets were encrypted with (restore it, or set {ENV_KEY})", record=path)
        _create_key_file(path)
    try:
        mode = os.stat(path).st_mode
        text = Path(path).read_text()
    except OSError as exc:
        raise SecretKeyError(f"cannot read the secret key file {path}: {exc.strerror}", record=path) from None
    if mode & 0o077 and path not in _warned:
        _warned.add(path)
        log.warning("the secret key file %s can be read by other users (mode %o); chmod 600 it", path, mode & 0o777)
    return _split(text)


def keyring(source: KeySource | None, *, create: bool = False) -> MultiFernet:
    """The keys of a source: the first encrypts, all decrypt. ``create`` makes a missing key file."""
    if source is None:
        raise SecretKeyError(
            f"no secret key is configured: on PostgreSQL set {ENV_KEY} (generate one with `python -c \"from"
            f" cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\"`) or {ENV_KEY_FILE}"
            " to the same key on every closeloop process; it encrypts webhook signing secrets at rest"
            " (docs/operator-guide.md)")
    keys = source.keys if source.path is None else _read_key_file(source, create=create)
    if not keys:
        raise SecretKeyError(f"{source.description} holds no key")
    ring = _rings.get(keys)
    if ring is None:
        fernets = []
        for i, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise SecretKeyError(f"key {i} of {source.description} is not a Fernet key (32 bytes in URL-safe"
                                     " base64, 44 characters)") from None
        ring = _rings[keys] = MultiFernet(fernets)
    return ring


# --------------------------------------------------------------------------- sealing


def seal_with(ring: MultiFernet, secret: str) -> str:
    return PREFIX + ring.encrypt(secret.encode()).decode()


def unseal_with(ring: MultiFernet | None, stored: str, *, description: str = "the configured key") -> str:
    if not is_sealed(stored):
        return stored  # written before secrets were encrypted
    if ring is None:
        raise SecretKeyError("a stored secret is encrypted but no secret key is configured")
    try:
        return ring.decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken:
        raise SecretKeyError(f"a stored secret cannot be decrypted with {description}: it was encrypted with"
                             " another key (was the key changed or lost? keep old keys after the new one until"
                             " webhook.reseal has run)") from None


def seal(uow: Any, secret: str) -> str:
    """Encrypt a secret for storage (creating closeloop's key file on first need)."""
    return seal_with(keyring(source_for(uow), create=True), secret)


def unseal(uow: Any, stored: str) -> str:
    """The secret a stored value holds (plain text values of older rows are returned as they are)."""
    if not is_sealed(stored):
        return stored
    source = source_for(uow)
    return unseal_with(keyring(source), stored, description=source.description if source else "no key")


def reseal(ring: MultiFernet, stored: str) -> str:
    """The stored value encrypted with the first key (plain text values are encrypted)."""
    if not is_sealed(stored):
        return seal_with(ring, stored)
    try:
        return PREFIX + ring.rotate(stored[len(PREFIX):].encode()).decode()
    except InvalidToken:
        raise SecretKeyError("a stored secret cannot be decrypted with any configured key; add the key it was"
                             " encrypted with after the new one") from None
