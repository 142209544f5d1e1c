"""billing: subscriptions, usage, bill runs, invoices, credits, sequences

Revision ID: billing_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'billing_0001'
down_revision = None
branch_labels = ('billing',)
depends_on = None


def upgrade() -> None:
    op.create_table('billing_contract_change',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('effective', sa.String(length=10), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=True),
    sa.Column('recorded_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', 'seq', name=op.f('pk_billing_contract_change'))
    )
    op.create_table('billing_credit',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('source_id', sa.BigInteger(), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_credit'))
    )
    op.create_index('ix_billing_credit_customer_id', 'billing_credit', ['customer_id', 'remaining'], unique=False)
    op.create_table('billing_credit_use',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('credit_id', sa.BigInteger(), nullable=False),
    sa.Column('invoice_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('auto', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_credit_use'))
    )
    op.create_table('billing_invoice',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('number', sa.String(length=40), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=True),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('due_date', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('subtotal', sa.BigInteger(), nullable=False),
    sa.Column('tax', sa.BigInteger(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('credit_created', sa.BigInteger(), nullable=False),
    sa.Column('credit_applied', sa.BigInteger(), nullable=False),
    sa.Column('paid', sa.BigInteger(), nullable=False),
    sa.Column('credited', sa.BigInteger(), nullable=False),
    sa.Column('written_off', sa.BigInteger(), nullable=False),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.Column('original_id', sa.BigInteger(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('tax_breakdown', sa.Text(), nullable=True),
    sa.Column('mentions', sa.Text(), nullable=True),
    sa.Column('held_reason', sa.Text(), nullable=True),
    sa.Column('run_id', sa.BigInteger(), nullable=True),
    sa.Column('payment_terms_days', sa.Integer(), nullable=False),
    sa.Column('issued_at', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_invoice')),
    sa.UniqueConstraint('number', name=op.f('uq_billing_invoice_number'))
    )
    op.create_index('ix_billing_invoice_customer_id', 'billing_invoice', ['customer_id', 'seq'], unique=False)
    op.create_index('ix_billing_invoice_status', 'billing_invoice', ['status'], unique=False)
    op.create_table('billing_line',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('invoice_id', sa.BigInteger(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=True),
    sa.Column('contract_id', sa.String(length=64), nullable=True),
    sa.Column('line_id', sa.String(length=64), nullable=True),
    sa.Column('version', sa.Integer(), nullable=True),
    sa.Column('quantity', sa.String(length=40), nullable=False),
    sa.Column('unit_price', sa.String(length=40), nullable=True),
    sa.Column('net', sa.BigInteger(), nullable=False),
    sa.Column('tax', sa.BigInteger(), nullable=False),
    sa.Column('tax_treatment', sa.String(length=16), nullable=True),
    sa.Column('tax_rate', sa.String(length=16), nullable=True),
    sa.Column('tax_category', sa.String(length=8), nullable=True),
    sa.Column('tax_code', sa.String(length=32), nullable=True),
    sa.Column('jurisdiction', sa.String(length=32), nullable=True),
    sa.Column('revenue_role', sa.String(length=40), nullable=False),
    sa.Column('treatment', sa.String(length=16), nullable=False),
    sa.Column('product_family', sa.String(length=64), nullable=True),
    sa.Column('performing_entity', sa.String(length=16), nullable=True),
    sa.Column('period_start', sa.String(length=10), nullable=True),
    sa.Column('period_end', sa.String(length=10), nullable=True),
    sa.Column('service_from', sa.String(length=10), nullable=True),
    sa.Column('service_to', sa.String(length=10), nullable=True),
    sa.Column('period_amount', sa.BigInteger(), nullable=True),
    sa.Column('usage_count', sa.Integer(), nullable=False),
    sa.Column('credited', sa.BigInteger(), nullable=False),
    sa.Column('memo_credited', sa.BigInteger(), nullable=False),
    sa.Column('memo_tax_credited', sa.BigInteger(), nullable=False),
    sa.Column('ref', sa.String(length=80), nullable=True),
    sa.Column('credit_of', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_line')),
    sa.UniqueConstraint('invoice_id', 'line_no', name=op.f('uq_billing_line_invoice_id_line_no'))
    )
    op.create_index('ix_billing_line_contract_id', 'billing_line', ['contract_id', 'period_end'], unique=False)
    op.create_table('billing_meter',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('line_id', sa.String(length=64), nullable=False),
    sa.Column('start', sa.String(length=10), nullable=False),
    sa.Column('end', sa.String(length=10), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', 'line_id', 'start', name=op.f('pk_billing_meter'))
    )
    op.create_index('ix_billing_meter_customer_id', 'billing_meter', ['customer_id', 'metric'], unique=False)
    op.create_table('billing_milestone',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('line_id', sa.String(length=64), nullable=False),
    sa.Column('milestone_id', sa.String(length=64), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('recorded_at', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', 'line_id', 'milestone_id', name=op.f('pk_billing_milestone'))
    )
    op.create_table('billing_partial',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('line_id', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('recorded_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_partial'))
    )
    op.create_index('ix_billing_partial_contract_id', 'billing_partial', ['contract_id'], unique=False)
    op.create_table('billing_run',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('as_of', sa.String(length=10), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('partitions', sa.Integer(), nullable=False),
    sa.Column('invoices', sa.Integer(), nullable=False),
    sa.Column('held', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.String(length=32), nullable=False),
    sa.Column('completed_at', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_run'))
    )
    op.create_table('billing_run_partition',
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('invoices', sa.Integer(), nullable=False),
    sa.Column('done_at', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('run_id', 'partition', name=op.f('pk_billing_run_partition'))
    )
    op.create_table('billing_sequence',
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('next_value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('entity', 'kind', name=op.f('pk_billing_sequence'))
    )
    op.create_table('billing_subscription',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('billing_day', sa.Integer(), nullable=False),
    sa.Column('start', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('scan_from', sa.String(length=10), nullable=True),
    sa.Column('next_date', sa.String(length=10), nullable=True),
    sa.Column('changes', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', name=op.f('pk_billing_subscription'))
    )
    op.create_index('ix_billing_subscription_customer_id', 'billing_subscription', ['customer_id'], unique=False)
    op.create_index('ix_billing_subscription_next_date', 'billing_subscription', ['next_date'], unique=False)
    op.create_table('billing_usage',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('quantity', sa.String(length=40), nullable=False),
    sa.Column('qty_micro', sa.BigInteger(), nullable=False),
    sa.Column('properties', sa.Text(), nullable=True),
    sa.Column('recorded_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_usage')),
    sa.UniqueConstraint('key', name=op.f('uq_billing_usage_key'))
    )
    op.create_index('ix_billing_usage_customer_id', 'billing_usage', ['customer_id', 'metric', 'day'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_billing_usage_customer_id', table_name='billing_usage')
    op.drop_table('billing_usage')
    op.drop_index('ix_billing_subscription_next_date', table_name='billing_subscription')
    op.drop_index('ix_billing_subscription_customer_id', table_name='billing_subscription')
    op.drop_table('billing_subscription')
    op.drop_table('billing_sequence')
    op.drop_table('billing_run_partition')
    op.drop_table('billing_run')
    op.drop_index('ix_billing_partial_contract_id', table_name='billing_partial')
    op.drop_table('billing_partial')
    op.drop_table('billing_milestone')
    op.drop_index('ix_billing_meter_customer_id', table_name='billing_meter')
    op.drop_table('billing_meter')
    op.drop_index('ix_billing_line_contract_id', table_name='billing_line')
    op.drop_table('billing_line')
    op.drop_index('ix_billing_invoice_status', table_name='billing_invoice')
    op.drop_index('ix_billing_invoice_customer_id', table_name='billing_invoice')
    op.drop_table('billing_invoice')
    op.drop_table('billing_credit_use')
    op.drop_index('ix_billing_credit_customer_id', table_name='billing_credit')
    op.drop_table('billing_credit')
    op.drop_table('billing_contract_change')

