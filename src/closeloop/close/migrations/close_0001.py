"""close: cycles, gate log, overrides, reopen requests, year-end

Revision ID: close_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'close_0001'
down_revision = None
branch_labels = ('close',)
depends_on = None


def upgrade() -> None:
    op.create_table('close_cycle',
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('first_action_at', sa.String(length=32), nullable=False),
    sa.Column('first_action_on', sa.String(length=10), nullable=False),
    sa.Column('locked_at', sa.String(length=32), nullable=True),
    sa.Column('locked_on', sa.String(length=10), nullable=True),
    sa.Column('locked_by', sa.String(length=64), nullable=True),
    sa.Column('cycle_days', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('entity', 'period', name=op.f('pk_close_cycle'))
    )
    op.create_table('close_gate_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('gate', sa.String(length=64), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('evidence', sa.Text(), nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_close_gate_log'))
    )
    op.create_index('ix_close_gate_log_entity_period', 'close_gate_log', ['entity', 'period', 'id'], unique=False)
    op.create_table('close_override',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('gate', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('approver', sa.String(length=64), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_close_override'))
    )
    op.create_table('period_reopen',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('requested_at', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('decided_by', sa.String(length=64), nullable=True),
    sa.Column('decided_at', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_period_reopen'))
    )
    op.create_table('year_end_close',
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('net_income', sa.BigInteger(), nullable=False),
    sa.Column('closed_at', sa.String(length=32), nullable=False),
    sa.Column('closed_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('entity', 'year', name=op.f('pk_year_end_close'))
    )


def downgrade() -> None:
    op.drop_table('year_end_close')
    op.drop_table('period_reopen')
    op.drop_table('close_override')
    op.drop_index('ix_close_gate_log_entity_period', table_name='close_gate_log')
    op.drop_table('close_gate_log')
    op.drop_table('close_cycle')

