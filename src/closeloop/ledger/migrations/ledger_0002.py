"""ledger: FX revaluation register

Revision ID: ledger_0002
Revises: ledger_0001
"""

import sqlalchemy as sa
from alembic import op

revision = 'ledger_0002'
down_revision = 'ledger_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_fx_revaluation',
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.Column('revalued_at', sa.String(length=32), nullable=False),
    sa.Column('revalued_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('entity', 'period', name=op.f('pk_ledger_fx_revaluation'))
    )


def downgrade() -> None:
    op.drop_table('ledger_fx_revaluation')

