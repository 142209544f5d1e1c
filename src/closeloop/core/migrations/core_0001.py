"""core: outbox, deliveries, audit log, id blocks, FX rates, legal entities, exception queue

Revision ID: core_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'core_0001'
down_revision = None
branch_labels = ('core',)
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('business_date', sa.String(length=10), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('command', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('result', sa.Text(), nullable=True),
    sa.Column('correlation_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_index('ix_audit_log_command', 'audit_log', ['command', 'id'], unique=False)
    op.create_table('event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('aggregate_type', sa.String(length=32), nullable=False),
    sa.Column('aggregate_id', sa.String(length=128), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', sa.String(length=32), nullable=False),
    sa.Column('recorded_at', sa.String(length=32), nullable=False),
    sa.Column('command_id', sa.BigInteger(), nullable=True),
    sa.Column('causation_id', sa.BigInteger(), nullable=True),
    sa.Column('correlation_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.String(length=32), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('lease_until', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event'))
    )
    op.create_index('ix_event_aggregate', 'event', ['aggregate_type', 'aggregate_id', 'id'], unique=False)
    op.create_index('ix_event_idempotency_key', 'event', ['idempotency_key'], unique=True, sqlite_where=sa.text('idempotency_key IS NOT NULL'), postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.create_index('ix_event_pending', 'event', ['id'], unique=False, sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))
    op.create_table('event_delivery',
    sa.Column('event_id', sa.BigInteger(), nullable=False),
    sa.Column('handler', sa.String(length=64), nullable=False),
    sa.Column('delivered_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('event_id', 'handler', name=op.f('pk_event_delivery'))
    )
    op.create_table('exception_action',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('exception_id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('details', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exception_action'))
    )
    op.create_index(op.f('ix_exception_action_exception_id'), 'exception_action', ['exception_id'], unique=False)
    op.create_table('exception_item',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('owner_role', sa.String(length=32), nullable=False),
    sa.Column('assignee', sa.String(length=64), nullable=True),
    sa.Column('entity', sa.String(length=16), nullable=True),
    sa.Column('record_type', sa.String(length=32), nullable=False),
    sa.Column('record_id', sa.String(length=200), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('details', sa.Text(), nullable=True),
    sa.Column('dedup_key', sa.String(length=300), nullable=True),
    sa.Column('opened_at', sa.String(length=32), nullable=False),
    sa.Column('opened_on', sa.String(length=10), nullable=False),
    sa.Column('due_at', sa.String(length=32), nullable=True),
    sa.Column('resolved_at', sa.String(length=32), nullable=True),
    sa.Column('resolved_on', sa.String(length=10), nullable=True),
    sa.Column('resolution', sa.String(length=32), nullable=True),
    sa.Column('correlation_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exception_item'))
    )
    op.create_index('ix_exception_item_dedup', 'exception_item', ['dedup_key'], unique=False)
    op.create_index('ix_exception_item_kind_status', 'exception_item', ['kind', 'status'], unique=False)
    op.create_index('ix_exception_item_record', 'exception_item', ['record_type', 'record_id'], unique=False)
    op.create_table('fx_rate',
    sa.Column('base', sa.String(length=3), nullable=False),
    sa.Column('quote', sa.String(length=3), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('rate', sa.String(length=40), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('base', 'quote', 'date', name=op.f('pk_fx_rate'))
    )
    op.create_table('id_block',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('next_value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_id_block'))
    )
    op.create_table('legal_entity',
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('region', sa.String(length=16), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('tax_id', sa.String(length=64), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('maker_checker', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('fiscal_calendar', sa.String(length=16), server_default='calendar', nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_legal_entity'))
    )


def downgrade() -> None:
    op.drop_table('legal_entity')
    op.drop_table('id_block')
    op.drop_table('fx_rate')
    op.drop_index('ix_exception_item_record', table_name='exception_item')
    op.drop_index('ix_exception_item_kind_status', table_name='exception_item')
    op.drop_index('ix_exception_item_dedup', table_name='exception_item')
    op.drop_table('exception_item')
    op.drop_index(op.f('ix_exception_action_exception_id'), table_name='exception_action')
    op.drop_table('exception_action')
    op.drop_table('event_delivery')
    op.drop_index('ix_event_pending', table_name='event', sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))
    op.drop_index('ix_event_idempotency_key', table_name='event', sqlite_where=sa.text('idempotency_key IS NOT NULL'), postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.drop_index('ix_event_aggregate', table_name='event')
    op.drop_table('event')
    op.drop_index('ix_audit_log_command', table_name='audit_log')
    op.drop_table('audit_log')

