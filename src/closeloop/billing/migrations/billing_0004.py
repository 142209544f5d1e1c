"""billing: a repeating coupon may last a number of billing periods (invoices) instead of months

Revision ID: billing_0004
Revises: billing_0003
"""

import sqlalchemy as sa
from alembic import op

revision = 'billing_0004'
down_revision = 'billing_0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('billing_coupon') as batch:
        batch.add_column(sa.Column('duration_periods', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('billing_coupon') as batch:
        batch.drop_column('duration_periods')
