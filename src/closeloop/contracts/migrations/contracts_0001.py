"""contracts: opportunities, quotes (versions, approvals), contracts and their change log

Revision ID: contracts_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'contracts_0001'
down_revision = None
branch_labels = ('contracts',)
depends_on = None


def upgrade() -> None:
    op.create_table('contracts_change',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ref', sa.String(length=100), nullable=False),
    sa.Column('effective', sa.String(length=10), nullable=False),
    sa.Column('modification', sa.String(length=16), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('recorded_on', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('contract_id', 'seq', name=op.f('pk_contracts_change'))
    )
    op.create_table('contracts_contract',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('quote_id', sa.String(length=64), nullable=False),
    sa.Column('quote_version', sa.Integer(), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('billing_day', sa.Integer(), nullable=False),
    sa.Column('auto_renew', sa.Boolean(), nullable=False),
    sa.Column('renewal_term_months', sa.Integer(), nullable=True),
    sa.Column('renewal_uplift_pct', sa.String(length=20), nullable=True),
    sa.Column('start', sa.String(length=10), nullable=False),
    sa.Column('service_end', sa.String(length=10), nullable=False),
    sa.Column('cancelled_effective', sa.String(length=10), nullable=True),
    sa.Column('opportunity', sa.String(length=128), nullable=True),
    sa.Column('changes', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', name=op.f('pk_contracts_contract'))
    )
    op.create_index('ix_contracts_contract_customer_id', 'contracts_contract', ['customer_id'], unique=False)
    op.create_index('ix_contracts_contract_renewal', 'contracts_contract', ['auto_renew', 'service_end'], unique=False)
    op.create_table('contracts_opportunity',
    sa.Column('external_id', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('stage', sa.String(length=64), nullable=False),
    sa.Column('close_date', sa.String(length=10), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('quote_id', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('external_id', name=op.f('pk_contracts_opportunity'))
    )
    op.create_index('ix_contracts_opportunity_status', 'contracts_opportunity', ['status'], unique=False)
    op.create_table('contracts_quote',
    sa.Column('quote_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('start', sa.String(length=10), nullable=False),
    sa.Column('term_months', sa.Integer(), nullable=False),
    sa.Column('opportunity', sa.String(length=128), nullable=True),
    sa.Column('contract_id', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('quote_id', name=op.f('pk_contracts_quote'))
    )
    op.create_index('ix_contracts_quote_customer_id', 'contracts_quote', ['customer_id'], unique=False)
    op.create_table('contracts_quote_approval',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('quote_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('approver', sa.String(length=64), nullable=False),
    sa.Column('rules', sa.Text(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('recorded_on', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contracts_quote_approval'))
    )
    op.create_index('ix_contracts_quote_approval_quote_id', 'contracts_quote_approval', ['quote_id', 'version'], unique=False)
    op.create_table('contracts_quote_version',
    sa.Column('quote_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('rules', sa.Text(), nullable=False),
    sa.Column('changed', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('recorded_on', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('quote_id', 'version', name=op.f('pk_contracts_quote_version'))
    )


def downgrade() -> None:
    op.drop_table('contracts_quote_version')
    op.drop_index('ix_contracts_quote_approval_quote_id', table_name='contracts_quote_approval')
    op.drop_table('contracts_quote_approval')
    op.drop_index('ix_contracts_quote_customer_id', table_name='contracts_quote')
    op.drop_table('contracts_quote')
    op.drop_index('ix_contracts_opportunity_status', table_name='contracts_opportunity')
    op.drop_table('contracts_opportunity')
    op.drop_index('ix_contracts_contract_renewal', table_name='contracts_contract')
    op.drop_index('ix_contracts_contract_customer_id', table_name='contracts_contract')
    op.drop_table('contracts_contract')
    op.drop_table('contracts_change')

