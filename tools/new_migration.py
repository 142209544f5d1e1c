"""Draft an Alembic revision for one area from the difference between its tables and a database.

    python tools/new_migration.py AREA REVISION_ID "message"

Renders the operations that bring a database migrated to the current heads in
line with the area's ``store.py`` tables, into ``src/closeloop/<AREA>/migrations/``.
Review the file before committing: Alembic migrations are the only way the schema changes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import produce_migrations, render_python_code
from alembic.runtime.migration import MigrationContext

from closeloop import areas
from closeloop.core import db

TEMPLATE = '''"""{message}

Revision ID: {rev}
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = {rev!r}
down_revision = {down!r}
branch_labels = {labels!r}
depends_on = None


{code}
'''


def main() -> None:
    area, rev, message = sys.argv[1], sys.argv[2], sys.argv[3]
    areas.load()
    folder = Path(db.__file__).parent.parent / area / "migrations"
    folder.mkdir(exist_ok=True)
    existing = sorted(p for p in folder.glob("*.py") if p.name != "__init__.py")
    down = None
    if existing:
        down = existing[-1].stem.split("_", 1)[1] if existing[-1].stem.count("_") else existing[-1].stem
        text = existing[-1].read_text()
        down = text.split("revision = ", 1)[1].split("\n", 1)[0].strip().strip("'\"")
    store = __import__(f"closeloop.{area}.store", fromlist=["store"])
    subset = sa.MetaData(naming_convention=db.metadata.naming_convention)
    for table in db.metadata.sorted_tables:
        if any(table is value for value in vars(store).values()):
            table.to_metadata(subset)
    with tempfile.TemporaryDirectory() as tmp:
        engine = db.create_engine(f"sqlite:///{tmp}/m.db")
        if down is not None:
            command.upgrade(db.alembic_config(engine), f"{area}@head")
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"include_name": lambda name, type_, parent:
                                                          type_ != "table" or name in subset.tables})
            script = produce_migrations(ctx, subset)
            code = render_python_code(script.upgrade_ops)
            down_code = render_python_code(script.downgrade_ops)
    body = "def upgrade() -> None:\n" + _indent(code) + "\n\ndef downgrade() -> None:\n" + _indent(down_code)
    labels = (area,) if down is None else None
    target = folder / f"{rev}.py"
    target.write_text(TEMPLATE.format(message=message, rev=rev, down=down, labels=labels, code=body))
    print(f"wrote {target}")


def _indent(code: str) -> str:
    lines = [ln for ln in code.splitlines() if not ln.strip().startswith("# ###")]
    return "\n".join(("    " + ln.strip() if not ln.startswith("    ") else ln) for ln in lines if ln.strip()) + "\n"


if __name__ == "__main__":
    main()
