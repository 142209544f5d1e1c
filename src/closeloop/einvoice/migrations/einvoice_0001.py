"""einvoice: stored e-invoices and customer format preferences

Revision ID: einvoice_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'einvoice_0001'
down_revision = None
branch_labels = ('einvoice',)
depends_on = None


def upgrade() -> None:
    op.create_table('einvoice_document',
    sa.Column('invoice', sa.String(length=64), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('media_type', sa.String(length=64), nullable=True),
    sa.Column('filename', sa.String(length=128), nullable=True),
    sa.Column('content', sa.LargeBinary(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('problems', sa.Text(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('origin', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('invoice', 'format', name=op.f('pk_einvoice_document'))
    )
    op.create_table('einvoice_preference',
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.Column('updated_by', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_einvoice_preference'))
    )


def downgrade() -> None:
    op.drop_table('einvoice_preference')
    op.drop_table('einvoice_document')

