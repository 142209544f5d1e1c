"""Database engine, schema metadata and migrations (SQLite embedded default, PostgreSQL for production).

The schema is declared with SQLAlchemy 2 ``Table`` objects in each area's
``store.py`` on the shared :data:`metadata`, and changed only through Alembic
migrations (one version folder per area, merged as branches; see
``core/alembic/env.py``). At run time the unit of work talks to the driver
connection directly with portable SQL (``?`` placeholders, rewritten once per
statement for psycopg): the hot paths (posting, usage, bill runs) cannot
afford an ORM, and one way of talking to the database is simpler than two.

Storage conventions, relied on everywhere:
- money in BIGINT minor units; rates and quantities as decimal TEXT;
- dates as ISO ``YYYY-MM-DD`` text, periods ``YYYY-MM``, timestamps ISO UTC
  text: they sort in time order and read back identically on both engines;
- JSON payloads as TEXT.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

DEFAULT_URL = "sqlite:///closeloop.db"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Primary keys that autoincrement on both engines (SQLite only aliases rowid for INTEGER).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The business areas, in dependency order. Each may have a store.py (tables) and migrations/.
AREAS: tuple[str, ...] = (
    "core",
    "ledger",
    "customers",
    "catalog",
    "contracts",
    "billing",
    "tax",
    "posting",
    "revenue",
    "collections",
    "integration",
    "control",
    "einvoice",
    "api",
    "auth",
    "close",
    "kpis",
    "rollout",
)


def resolve_url(url: str | None = None) -> str:
    """``--db`` value, else ``CLOSELOOP_DATABASE_URL``, else ``./closeloop.db``. A bare path means SQLite."""
    url = url or os.environ.get("CLOSELOOP_DATABASE_URL") or DEFAULT_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def create_engine(url: str | None = None) -> Engine:
    url = resolve_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, poolclass=NullPool if ":memory:" not in url else None)
        _configure_sqlite(engine)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Transactions are begun explicitly by the unit of work (BEGIN IMMEDIATE for writers).
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA temp_store=MEMORY")
        # Checkpoint less often: hot pages (chain heads, balances, index tails) rewritten by many
        # small commits are then copied back to the database once per checkpoint, not once each.
        cur.execute("PRAGMA wal_autocheckpoint=10000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:  # used by Alembic's own connection
        conn.exec_driver_sql("BEGIN")


@dataclass(frozen=True)
class Dialect:
    name: str  # "sqlite" or "postgresql"

    @property
    def is_sqlite(self) -> bool:
        return self.name == "sqlite"

    def sql(self, statement: str) -> str:
        return _translate(statement, self.name)


@lru_cache(maxsize=4096)
def _translate(statement: str, dialect: str) -> str:
    if dialect == "sqlite":
        return statement
    return statement.replace("%", "%%").replace("?", "%s")


def quote_ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


# --------------------------------------------------------------------------- migrations


def load_all_stores() -> None:
    """Import every area's store module so :data:`metadata` holds the whole schema."""
    import importlib

    for area in AREAS:
        try:
            importlib.import_module(f"closeloop.{area}.store")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"closeloop.{area}", f"closeloop.{area}.store"):
                raise


def migration_locations() -> list[str]:
    """Each area keeps its revisions in ``<area>/migrations/``, as its own Alembic branch."""
    root = Path(str(resources.files("closeloop")))
    locations = []
    for area in AREAS:
        folder = root / area / "migrations"
        if folder.is_dir() and any(p.suffix == ".py" and p.name != "__init__.py" for p in folder.iterdir()):
            locations.append(str(folder))
    return locations


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(str(resources.files("closeloop"))) / "core" / "alembic"))
    cfg.set_main_option("version_locations", " ".join(migration_locations()))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision of every area (``alembic upgrade heads``)."""
    from alembic import command

    command.upgrade(alembic_config(engine), "heads")


def current_heads(engine: Engine) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def expected_heads(engine: Engine) -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())


def table_names() -> Iterable[str]:
    load_all_stores()
    return [t.name for t in metadata.sorted_tables]
