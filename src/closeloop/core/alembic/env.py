"""Alembic environment: runs every area's revisions against the engine handed in by closeloop.

Each business area keeps its revisions in ``src/closeloop/<area>/migrations/``
as its own branch (``branch_labels = ("<area>",)``), so areas evolve their
schema independently; ``upgrade heads`` applies them all. SQLite runs in batch
mode so ALTERs work there too.
"""

from alembic import context

from closeloop.core.db import create_engine, load_all_stores, metadata

load_all_stores()
config = context.config
engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url"))

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
