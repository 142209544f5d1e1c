"""integration: event actions, webhooks (subscriptions, deliveries, attempts), CRM account state, probes

Revision ID: integration_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'integration_0001'
down_revision = None
branch_labels = ('integration',)
depends_on = None


def upgrade() -> None:
    op.create_table('crm_account_state',
    sa.Column('account', sa.String(length=128), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('account', name=op.f('pk_crm_account_state'))
    )
    op.create_table('event_action',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('details', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_action'))
    )
    op.create_index(op.f('ix_event_action_event_id'), 'event_action', ['event_id'], unique=False)
    op.create_table('probe',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('broken', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('delivered', sa.Integer(), server_default='0', nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_probe'))
    )
    op.create_table('webhook_attempt',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('delivery_id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('worker', sa.String(length=64), nullable=True),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempt'))
    )
    op.create_index(op.f('ix_webhook_attempt_delivery_id'), 'webhook_attempt', ['delivery_id'], unique=False)
    op.create_table('webhook_delivery',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('subscription_id', sa.BigInteger(), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('aggregate_type', sa.String(length=32), nullable=False),
    sa.Column('aggregate_id', sa.String(length=128), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.String(length=32), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('lease_until', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('delivered_at', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery')),
    sa.UniqueConstraint('subscription_id', 'event_id', name=op.f('uq_webhook_delivery_subscription_id_event_id'))
    )
    op.create_index('ix_webhook_delivery_aggregate', 'webhook_delivery', ['subscription_id', 'aggregate_type', 'aggregate_id', 'event_id'], unique=False)
    op.create_index('ix_webhook_delivery_open', 'webhook_delivery', ['id'], unique=False, sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))
    op.create_table('webhook_subscription',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('secret', sa.String(length=200), nullable=False),
    sa.Column('event_types', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('disabled_at', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_subscription')),
    sa.UniqueConstraint('name', name=op.f('uq_webhook_subscription_name'))
    )


def downgrade() -> None:
    op.drop_table('webhook_subscription')
    op.drop_index('ix_webhook_delivery_open', table_name='webhook_delivery', sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))
    op.drop_index('ix_webhook_delivery_aggregate', table_name='webhook_delivery')
    op.drop_table('webhook_delivery')
    op.drop_index(op.f('ix_webhook_attempt_delivery_id'), table_name='webhook_attempt')
    op.drop_table('webhook_attempt')
    op.drop_table('probe')
    op.drop_index(op.f('ix_event_action_event_id'), table_name='event_action')
    op.drop_table('event_action')
    op.drop_table('crm_account_state')

