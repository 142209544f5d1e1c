"""Alembic migrations are the only way the schema changes: migrated schema == declared tables."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from closeloop import areas
from closeloop.core.db import create_engine, current_heads, expected_heads, metadata


def test_migrated_database_matches_the_declared_schema(db_url):
    areas.load()
    engine = create_engine(db_url)
    try:
        assert current_heads(engine) == expected_heads(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = [d for d in compare_metadata(ctx, metadata)
                    if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")]
        assert diff == []
    finally:
        engine.dispose()
