"""revenue: contracts migrated from a legacy system (cutover, billed-through date, what the legacy system billed and recognised per obligation)

Revision ID: revenue_0002
Revises: revenue_0001
"""

import sqlalchemy as sa
from alembic import op

revision = 'revenue_0002'
down_revision = 'revenue_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('revenue_migration',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('cutover', sa.String(length=10), nullable=False),
    sa.Column('billed_through', sa.String(length=10), nullable=False),
    sa.Column('system', sa.String(length=200), nullable=False),
    sa.Column('lines', sa.Text(), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=True),
    sa.Column('recorded_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', name=op.f('pk_revenue_migration'))
    )


def downgrade() -> None:
    op.drop_table('revenue_migration')

