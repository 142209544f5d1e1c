"""billing: an index on the invoice a credit memo credits

Revision ID: billing_0005
Revises: billing_0004
"""

import sqlalchemy as sa
from alembic import op

revision = 'billing_0005'
down_revision = 'billing_0004'
branch_labels = None
depends_on = None

WHERE = sa.text("original_id IS NOT NULL")


def upgrade() -> None:
    op.create_index('ix_billing_invoice_original_id', 'billing_invoice', ['original_id'], unique=False,
                    sqlite_where=WHERE, postgresql_where=WHERE)


def downgrade() -> None:
    op.drop_index('ix_billing_invoice_original_id', table_name='billing_invoice')
