"""control: reconciliation runs, rule outcomes and breaks

Revision ID: control_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'control_0001'
down_revision = None
branch_labels = ('control',)
depends_on = None


def upgrade() -> None:
    op.create_table('recon_break',
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=24), nullable=False),
    sa.Column('match_key', sa.String(length=400), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=True),
    sa.Column('left_amount', sa.BigInteger(), nullable=True),
    sa.Column('right_amount', sa.BigInteger(), nullable=True),
    sa.Column('details', sa.Text(), nullable=True),
    sa.Column('exception_id', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('run_id', 'rule', 'seq', name=op.f('pk_recon_break'))
    )
    op.create_table('recon_rule_run',
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('left_count', sa.BigInteger(), nullable=False),
    sa.Column('right_count', sa.BigInteger(), nullable=False),
    sa.Column('matched', sa.BigInteger(), nullable=False),
    sa.Column('breaks', sa.BigInteger(), nullable=False),
    sa.Column('opened', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('closed', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('run_id', 'rule', name=op.f('pk_recon_rule_run'))
    )
    op.create_index('ix_recon_rule_run_rule', 'recon_rule_run', ['rule', 'run_id'], unique=False)
    op.create_table('recon_run',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('started_at', sa.String(length=32), nullable=False),
    sa.Column('business_date', sa.String(length=10), nullable=False),
    sa.Column('as_of', sa.String(length=10), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('rules', sa.Text(), nullable=False),
    sa.Column('matched', sa.BigInteger(), nullable=False),
    sa.Column('breaks', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recon_run'))
    )


def downgrade() -> None:
    op.drop_table('recon_run')
    op.drop_index('ix_recon_rule_run_rule', table_name='recon_rule_run')
    op.drop_table('recon_rule_run')
    op.drop_table('recon_break')

