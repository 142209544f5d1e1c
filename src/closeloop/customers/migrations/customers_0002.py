"""customers: customer_source_stamp, the latest modification time each source gave for each field
of an account (a change dated earlier by the same source is stale and not applied)

Revision ID: customers_0002
Revises: customers_0001
"""

import sqlalchemy as sa
from alembic import op

revision = 'customers_0002'
down_revision = 'customers_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customer_source_stamp',
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('field', sa.String(length=40), nullable=False),
    sa.Column('modified_at', sa.String(length=32), nullable=False),
    sa.Column('recorded_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('customer_id', 'source', 'field', name=op.f('pk_customer_source_stamp'))
    )


def downgrade() -> None:
    op.drop_table('customer_source_stamp')

