"""core: events by type (and command), and the payload date of invoices issued and payments applied (KPIs by period)

Revision ID: core_0003
Revises: core_0002

``ix_event_payload_date`` indexes an expression (the payload's ``date``), which autogenerate cannot
compare on SQLite: it is written here by hand, in each database's JSON syntax (see
``closeloop.core.store.payload_date_sql``).
"""

import sqlalchemy as sa
from alembic import op

revision = 'core_0003'
down_revision = 'core_0002'
branch_labels = None
depends_on = None

DATED = "type = 'invoice.issued' OR type = 'payment.applied'"


def upgrade() -> None:
    op.create_index('ix_event_type', 'event', ['type', 'command_id'], unique=False)
    if op.get_bind().dialect.name == "sqlite":
        op.create_index('ix_event_payload_date', 'event', ['type', sa.text("json_extract(payload, '$.date')")],
                        unique=False, sqlite_where=sa.text(DATED))
    else:
        op.create_index('ix_event_payload_date', 'event', ['type', sa.text("(CAST(payload AS json) ->> 'date')")],
                        unique=False, postgresql_where=sa.text(DATED))


def downgrade() -> None:
    op.drop_index('ix_event_payload_date', table_name='event')
    op.drop_index('ix_event_type', table_name='event')
