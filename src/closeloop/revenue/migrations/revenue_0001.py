"""revenue: contract changes received, positions, obligations, schedules, adjustments, milestones, billing seen, recognition lines, runs

Revision ID: revenue_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'revenue_0001'
down_revision = None
branch_labels = ('revenue',)
depends_on = None


def upgrade() -> None:
    op.create_table('revenue_adjustment',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('line_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('first', sa.String(length=10), nullable=False),
    sa.Column('last', sa.String(length=10), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('document', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_revenue_adjustment'))
    )
    op.create_index('ix_revenue_adjustment_contract', 'revenue_adjustment', ['contract_id'], unique=False)
    op.create_table('revenue_billing',
    sa.Column('document', sa.String(length=64), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('invoice', sa.String(length=64), nullable=False),
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('line_id', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('net', sa.BigInteger(), nullable=False),
    sa.Column('treatment', sa.String(length=16), nullable=False),
    sa.Column('revenue_role', sa.String(length=40), nullable=False),
    sa.Column('period_start', sa.String(length=10), nullable=True),
    sa.Column('period_end', sa.String(length=10), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('document', 'line_no', name=op.f('pk_revenue_billing'))
    )
    op.create_index('ix_revenue_billing_contract', 'revenue_billing', ['contract_id'], unique=False)
    op.create_index('ix_revenue_billing_entity_date', 'revenue_billing', ['entity', 'date'], unique=False)
    op.create_table('revenue_contract',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('billed', sa.BigInteger(), nullable=False),
    sa.Column('recognised', sa.BigInteger(), nullable=False),
    sa.Column('deferred', sa.BigInteger(), nullable=False),
    sa.Column('unbilled', sa.BigInteger(), nullable=False),
    sa.Column('transaction_price', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', name=op.f('pk_revenue_contract'))
    )
    op.create_index('ix_revenue_contract_customer', 'revenue_contract', ['customer'], unique=False)
    op.create_index('ix_revenue_contract_entity', 'revenue_contract', ['entity', 'currency'], unique=False)
    op.create_table('revenue_contract_change',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('effective', sa.String(length=10), nullable=False),
    sa.Column('modification', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=True),
    sa.Column('recorded_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', 'seq', name=op.f('pk_revenue_contract_change'))
    )
    op.create_table('revenue_milestone',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('line_id', sa.String(length=64), nullable=False),
    sa.Column('milestone_id', sa.String(length=64), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', 'line_id', 'milestone_id', name=op.f('pk_revenue_milestone'))
    )
    op.create_table('revenue_obligation',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('line_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('treatment', sa.String(length=16), nullable=False),
    sa.Column('revenue_role', sa.String(length=40), nullable=False),
    sa.Column('product_family', sa.String(length=64), nullable=True),
    sa.Column('ssp', sa.BigInteger(), nullable=True),
    sa.Column('allocated', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', 'line_id', name=op.f('pk_revenue_obligation'))
    )
    op.create_table('revenue_recognition',
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('run', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('line_id', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('deferred', sa.BigInteger(), nullable=False),
    sa.Column('unbilled', sa.BigInteger(), nullable=False),
    sa.Column('revenue_role', sa.String(length=40), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('entity', 'period', 'id', name=op.f('pk_revenue_recognition')),
    sqlite_with_rowid=False
    )
    op.create_index('ix_revenue_recognition_contract', 'revenue_recognition', ['contract_id', 'line_id'], unique=False)
    op.create_table('revenue_run',
    sa.Column('run', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=True),
    sa.Column('through', sa.String(length=10), nullable=False),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('run', name=op.f('pk_revenue_run'))
    )
    op.create_table('revenue_schedule',
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('bucket', sa.String(length=7), nullable=False),
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('line_id', sa.String(length=64), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=True),
    sa.Column('first', sa.String(length=10), nullable=True),
    sa.Column('last', sa.String(length=10), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('recognised', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('entity', 'bucket', 'id', name=op.f('pk_revenue_schedule')),
    sqlite_with_rowid=False
    )
    op.create_index('ix_revenue_schedule_active', 'revenue_schedule', ['entity', 'first'], unique=False, sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))
    op.create_index('ix_revenue_schedule_contract', 'revenue_schedule', ['contract_id', 'line_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_revenue_schedule_contract', table_name='revenue_schedule')
    op.drop_index('ix_revenue_schedule_active', table_name='revenue_schedule', sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))
    op.drop_table('revenue_schedule')
    op.drop_table('revenue_run')
    op.drop_index('ix_revenue_recognition_contract', table_name='revenue_recognition')
    op.drop_table('revenue_recognition')
    op.drop_table('revenue_obligation')
    op.drop_table('revenue_milestone')
    op.drop_table('revenue_contract_change')
    op.drop_index('ix_revenue_contract_entity', table_name='revenue_contract')
    op.drop_index('ix_revenue_contract_customer', table_name='revenue_contract')
    op.drop_table('revenue_contract')
    op.drop_index('ix_revenue_billing_entity_date', table_name='revenue_billing')
    op.drop_index('ix_revenue_billing_contract', table_name='revenue_billing')
    op.drop_table('revenue_billing')
    op.drop_index('ix_revenue_adjustment_contract', table_name='revenue_adjustment')
    op.drop_table('revenue_adjustment')

