"""core: the dispatcher's index of open (pending, dead) events per aggregate

Revision ID: core_0002
Revises: core_0001
"""

import sqlalchemy as sa
from alembic import op

revision = 'core_0002'
down_revision = 'core_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_event_open_aggregate', 'event', ['aggregate_type', 'aggregate_id', 'id'], unique=False, sqlite_where=sa.text("status IN ('pending', 'dead')"), postgresql_where=sa.text("status IN ('pending', 'dead')"))


def downgrade() -> None:
    op.drop_index('ix_event_open_aggregate', table_name='event', sqlite_where=sa.text("status IN ('pending', 'dead')"), postgresql_where=sa.text("status IN ('pending', 'dead')"))

