"""billing: bill run partitions keep their customer range

Revision ID: billing_0002
Revises: billing_0001
"""

import sqlalchemy as sa
from alembic import op

revision = 'billing_0002'
down_revision = 'billing_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('billing_run_partition', sa.Column('first_customer', sa.BigInteger(), nullable=True))
    op.add_column('billing_run_partition', sa.Column('last_customer', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column('billing_run_partition', 'last_customer')
    op.drop_column('billing_run_partition', 'first_customer')

