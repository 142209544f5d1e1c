"""customers: accounts, external ids, contacts, changes, match keys, duplicates, merges, imports, webhook events

Revision ID: customers_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'customers_0001'
down_revision = None
branch_labels = ('customers',)
depends_on = None


def upgrade() -> None:
    op.create_table('crm_webhook_event',
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('received_at', sa.String(length=32), nullable=False),
    sa.Column('payload_sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('result', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_crm_webhook_event'))
    )
    op.create_table('customer',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('name_key', sa.String(length=300), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('region', sa.String(length=64), nullable=True),
    sa.Column('postal_code', sa.String(length=32), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('phone', sa.String(length=64), nullable=True),
    sa.Column('website', sa.String(length=254), nullable=True),
    sa.Column('tax_id', sa.String(length=64), nullable=True),
    sa.Column('tax_id_valid', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('tax_id_check', sa.String(length=16), nullable=True),
    sa.Column('tax_exempt', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('exemption_ref', sa.String(length=128), nullable=True),
    sa.Column('parent_id', sa.BigInteger(), nullable=True),
    sa.Column('bill_to_id', sa.BigInteger(), nullable=True),
    sa.Column('entity', sa.String(length=16), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('payment_terms_days', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('merged_into', sa.BigInteger(), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer')),
    sa.UniqueConstraint('external_id', name=op.f('uq_customer_external_id'))
    )
    op.create_index('ix_customer_merged_into', 'customer', ['merged_into'], unique=False)
    op.create_index('ix_customer_name_key', 'customer', ['name_key'], unique=False)
    op.create_index('ix_customer_parent_id', 'customer', ['parent_id'], unique=False)
    op.create_table('customer_change',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('field', sa.String(length=40), nullable=False),
    sa.Column('old', sa.Text(), nullable=True),
    sa.Column('new', sa.Text(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('command_id', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_change'))
    )
    op.create_index('ix_customer_change_customer_field', 'customer_change', ['customer_id', 'field'], unique=False)
    op.create_table('customer_contact',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('first_name', sa.String(length=100), nullable=True),
    sa.Column('last_name', sa.String(length=100), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('phone', sa.String(length=64), nullable=True),
    sa.Column('title', sa.String(length=128), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_contact')),
    sa.UniqueConstraint('external_id', name=op.f('uq_customer_contact_external_id'))
    )
    op.create_index(op.f('ix_customer_contact_customer_id'), 'customer_contact', ['customer_id'], unique=False)
    op.create_table('customer_duplicate',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('a_id', sa.BigInteger(), nullable=False),
    sa.Column('b_id', sa.BigInteger(), nullable=False),
    sa.Column('score', sa.String(length=12), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('detected_at', sa.String(length=32), nullable=False),
    sa.Column('resolved_at', sa.String(length=32), nullable=True),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_duplicate')),
    sa.UniqueConstraint('a_id', 'b_id', name=op.f('uq_customer_duplicate_a_id_b_id'))
    )
    op.create_index('ix_customer_duplicate_status', 'customer_duplicate', ['status'], unique=False)
    op.create_table('customer_external_id',
    sa.Column('external_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('system', sa.String(length=32), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('external_id', name=op.f('pk_customer_external_id'))
    )
    op.create_index(op.f('ix_customer_external_id_customer_id'), 'customer_external_id', ['customer_id'], unique=False)
    op.create_table('customer_import',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('format', sa.String(length=32), nullable=False),
    sa.Column('files', sa.Text(), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('rows_read', sa.Integer(), nullable=False),
    sa.Column('created', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('quality_score', sa.String(length=8), nullable=False),
    sa.Column('report', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_import'))
    )
    op.create_table('customer_match_key',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key', 'customer_id', name=op.f('pk_customer_match_key'))
    )
    op.create_index('ix_customer_match_key_customer_id', 'customer_match_key', ['customer_id'], unique=False)
    op.create_table('customer_merge',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('survivor_id', sa.BigInteger(), nullable=False),
    sa.Column('merged_id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('survivor_before', sa.Text(), nullable=False),
    sa.Column('merged_before', sa.Text(), nullable=False),
    sa.Column('survivor_after', sa.Text(), nullable=False),
    sa.Column('moved', sa.Text(), nullable=False),
    sa.Column('repointed', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('undone_at', sa.String(length=32), nullable=True),
    sa.Column('undone_by', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_merge'))
    )
    op.create_index(op.f('ix_customer_merge_merged_id'), 'customer_merge', ['merged_id'], unique=False)
    op.create_index(op.f('ix_customer_merge_survivor_id'), 'customer_merge', ['survivor_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_customer_merge_survivor_id'), table_name='customer_merge')
    op.drop_index(op.f('ix_customer_merge_merged_id'), table_name='customer_merge')
    op.drop_table('customer_merge')
    op.drop_index('ix_customer_match_key_customer_id', table_name='customer_match_key')
    op.drop_table('customer_match_key')
    op.drop_table('customer_import')
    op.drop_index(op.f('ix_customer_external_id_customer_id'), table_name='customer_external_id')
    op.drop_table('customer_external_id')
    op.drop_index('ix_customer_duplicate_status', table_name='customer_duplicate')
    op.drop_table('customer_duplicate')
    op.drop_index(op.f('ix_customer_contact_customer_id'), table_name='customer_contact')
    op.drop_table('customer_contact')
    op.drop_index('ix_customer_change_customer_field', table_name='customer_change')
    op.drop_table('customer_change')
    op.drop_index('ix_customer_parent_id', table_name='customer')
    op.drop_index('ix_customer_name_key', table_name='customer')
    op.drop_index('ix_customer_merged_into', table_name='customer')
    op.drop_table('customer')
    op.drop_table('crm_webhook_event')

