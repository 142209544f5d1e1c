"""Fresh, fully migrated databases on demand, for scenarios and tests.

SQLite: the migrations run once per process into a template file, and each
fresh database is an online-backup copy of it (milliseconds, not a migration
run). PostgreSQL: the template is a database on the given server and each
fresh one is ``CREATE DATABASE ... TEMPLATE``, dropped afterwards.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import sqlalchemy as sa

from closeloop import areas
from closeloop.core.db import create_engine, resolve_url, upgrade

_lock = threading.Lock()
_templates: dict[str, str] = {}
_tmpdir: str | None = None
_counter = itertools.count(1)


def _workdir() -> str:
    global _tmpdir
    if _tmpdir is None or not os.path.isdir(_tmpdir):
        _tmpdir = tempfile.mkdtemp(prefix="closeloop-fresh-")
    return _tmpdir


def is_postgres(url: str | None) -> bool:
    return resolve_url(url).startswith("postgresql")


def _sqlite_template() -> str:
    with _lock:
        path = _templates.get("sqlite")
        if path and os.path.exists(path):
            return path
        areas.load()
        path = os.path.join(_workdir(), "template.db")
        if os.path.exists(path):
            os.remove(path)
        engine = create_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()
        con = sqlite3.connect(path)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        _templates["sqlite"] = path
        return path


def _pg_admin_url(url: str) -> sa.engine.URL:
    return sa.engine.make_url(resolve_url(url))


def _pg_template(url: str) -> str:
    with _lock:
        key = f"pg:{url}"
        name = _templates.get(key)
        if name:
            return name
        areas.load()
        base = _pg_admin_url(url)
        name = f"closeloop_tpl_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        engine = create_engine(base.set(database=name).render_as_string(hide_password=False))
        upgrade(engine)
        engine.dispose()
        _templates[key] = name
        return name


@contextmanager
def fresh_database(base_url: str | None = None, *, keep: bool = False) -> Iterator[str]:
    """Yield the URL of a new, migrated, empty database; remove it afterwards unless ``keep``."""
    if base_url and is_postgres(base_url):
        template = _pg_template(base_url)
        base = _pg_admin_url(base_url)
        name = f"closeloop_t{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            if not keep:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
        return
    template = _sqlite_template()
    path = os.path.join(_workdir(), f"db{os.getpid()}_{next(_counter)}.db")
    src = sqlite3.connect(template)
    dst = sqlite3.connect(path)
    src.backup(dst)
    dst.close()
    src.close()
    try:
        yield f"sqlite:///{path}"
    finally:
        if not keep:
            for suffix in ("", "-wal", "-shm"):
                with suppress(FileNotFoundError):
                    os.remove(path + suffix)


def drop_templates() -> None:
    """Remove the process's template databases (tests call this at the end of a session)."""
    global _tmpdir
    with _lock:
        for key, name in list(_templates.items()):
            if key.startswith("pg:"):
                base = _pg_admin_url(key[3:])
                admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
                try:
                    with admin.connect() as conn:
                        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                finally:
                    admin.dispose()
        _templates.clear()
        if _tmpdir and os.path.isdir(_tmpdir):
            shutil.rmtree(_tmpdir, ignore_errors=True)
        _tmpdir = None
