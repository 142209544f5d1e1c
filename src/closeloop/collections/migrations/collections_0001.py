"""Collections: payments, applications, invoice index, bank statements and lines, payers, provider events, refunds and payouts, failures, disputes, dunning, e-mail outbox, approval requests, collectors

Revision ID: collections_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'collections_0001'
down_revision = None
branch_labels = ('collections',)
depends_on = None


def upgrade() -> None:
    op.create_table('collections_application',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('payment_id', sa.BigInteger(), nullable=False),
    sa.Column('invoice', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('payment_amount', sa.BigInteger(), nullable=False),
    sa.Column('fx_difference', sa.BigInteger(), nullable=False),
    sa.Column('write_off', sa.BigInteger(), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('confidence', sa.String(length=8), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collections_application'))
    )
    op.create_index('ix_collections_application_invoice', 'collections_application', ['invoice'], unique=False)
    op.create_index('ix_collections_application_payment_id', 'collections_application', ['payment_id'], unique=False)
    op.create_table('collections_bank_line',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('statement_id', sa.BigInteger(), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('entry', sa.Integer(), nullable=False),
    sa.Column('detail', sa.Integer(), nullable=False),
    sa.Column('booking_date', sa.String(length=10), nullable=False),
    sa.Column('value_date', sa.String(length=10), nullable=True),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('reversal', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('remittance', sa.Text(), nullable=True),
    sa.Column('refs', sa.Text(), nullable=True),
    sa.Column('end_to_end', sa.String(length=128), nullable=True),
    sa.Column('bank_reference', sa.String(length=128), nullable=True),
    sa.Column('payer_name', sa.String(length=300), nullable=True),
    sa.Column('payer_account', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('payment_id', sa.BigInteger(), nullable=True),
    sa.Column('payout', sa.String(length=128), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collections_bank_line'))
    )
    op.create_index('ix_collections_bank_line_fingerprint', 'collections_bank_line', ['entity', 'fingerprint'], unique=False)
    op.create_index('ix_collections_bank_line_statement_id', 'collections_bank_line', ['statement_id'], unique=False)
    op.create_table('collections_collector',
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('collector', sa.String(length=64), nullable=False),
    sa.Column('assigned_at', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('customer', name=op.f('pk_collections_collector'))
    )
    op.create_table('collections_dispute',
    sa.Column('dispute_id', sa.String(length=128), nullable=False),
    sa.Column('invoice', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('reason_code', sa.String(length=32), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('opened', sa.String(length=10), nullable=False),
    sa.Column('review_started', sa.String(length=10), nullable=True),
    sa.Column('resolved', sa.String(length=10), nullable=True),
    sa.Column('sla_due', sa.String(length=10), nullable=False),
    sa.Column('cycle_days', sa.Integer(), nullable=True),
    sa.Column('credit_memo', sa.String(length=64), nullable=True),
    sa.Column('resolution_note', sa.Text(), nullable=True),
    sa.Column('provider_ref', sa.String(length=128), nullable=True),
    sa.Column('exception_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('dispute_id', name=op.f('pk_collections_dispute'))
    )
    op.create_index('ix_collections_dispute_invoice', 'collections_dispute', ['invoice'], unique=False)
    op.create_table('collections_dunning_action',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.BigInteger(), nullable=False),
    sa.Column('step', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('due_on', sa.String(length=10), nullable=False),
    sa.Column('done_on', sa.String(length=10), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('details', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collections_dunning_action')),
    sa.UniqueConstraint('case_id', 'step', name=op.f('uq_collections_dunning_action_case_id_step'))
    )
    op.create_table('collections_dunning_case',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('invoice', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('policy', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started', sa.String(length=10), nullable=False),
    sa.Column('failed_on', sa.String(length=10), nullable=True),
    sa.Column('stage', sa.String(length=32), nullable=True),
    sa.Column('stopped', sa.String(length=10), nullable=True),
    sa.Column('stop_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collections_dunning_case'))
    )
    op.create_index('ix_collections_dunning_case_invoice', 'collections_dunning_case', ['invoice'], unique=False)
    op.create_table('collections_email',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('to_address', sa.String(length=254), nullable=True),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('template', sa.String(length=64), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('invoice', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('sent_at', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collections_email'))
    )
    op.create_index('ix_collections_email_status', 'collections_email', ['status'], unique=False)
    op.create_table('collections_failure',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('invoice', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('provider_ref', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collections_failure'))
    )
    op.create_index('ix_collections_failure_invoice', 'collections_failure', ['invoice'], unique=False)
    op.create_table('collections_invoice',
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('norm', sa.String(length=64), nullable=False),
    sa.Column('digits', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('due_date', sa.String(length=10), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('number', name=op.f('pk_collections_invoice'))
    )
    op.create_index('ix_collections_invoice_customer', 'collections_invoice', ['customer'], unique=False)
    op.create_index('ix_collections_invoice_digits', 'collections_invoice', ['digits'], unique=False)
    op.create_index('ix_collections_invoice_norm', 'collections_invoice', ['norm'], unique=False)
    op.create_table('collections_payer',
    sa.Column('account', sa.String(length=64), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('account', name=op.f('pk_collections_payer'))
    )
    op.create_table('collections_payment',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('applied', sa.BigInteger(), nullable=False),
    sa.Column('refunded', sa.BigInteger(), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('reference', sa.Text(), nullable=True),
    sa.Column('remittance', sa.Text(), nullable=True),
    sa.Column('payer_name', sa.String(length=300), nullable=True),
    sa.Column('payer_account', sa.String(length=64), nullable=True),
    sa.Column('provider_ref', sa.String(length=128), nullable=True),
    sa.Column('fee', sa.BigInteger(), nullable=False),
    sa.Column('payout', sa.String(length=128), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('match_reason', sa.String(length=64), nullable=True),
    sa.Column('match_confidence', sa.String(length=8), nullable=True),
    sa.Column('match_detail', sa.Text(), nullable=True),
    sa.Column('proposal', sa.Text(), nullable=True),
    sa.Column('exception_id', sa.BigInteger(), nullable=True),
    sa.Column('bank_line_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collections_payment')),
    sa.UniqueConstraint('number', name=op.f('uq_collections_payment_number'))
    )
    op.create_index('ix_collections_payment_customer', 'collections_payment', ['customer'], unique=False)
    op.create_index('ix_collections_payment_provider_ref', 'collections_payment', ['provider_ref'], unique=False)
    op.create_table('collections_payout',
    sa.Column('payout', sa.String(length=128), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('gross', sa.BigInteger(), nullable=False),
    sa.Column('fees', sa.BigInteger(), nullable=False),
    sa.Column('net', sa.BigInteger(), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('bank_line_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('payout', name=op.f('pk_collections_payout'))
    )
    op.create_table('collections_provider_event',
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('object_id', sa.String(length=128), nullable=True),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('payload_sha256', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('result', sa.Text(), nullable=True),
    sa.Column('waiting_for', sa.String(length=128), nullable=True),
    sa.Column('received_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_collections_provider_event'))
    )
    op.create_index('ix_collections_provider_event_waiting_for', 'collections_provider_event', ['waiting_for'], unique=False)
    op.create_table('collections_provider_refund',
    sa.Column('refund_id', sa.String(length=128), nullable=False),
    sa.Column('payment_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('refund_id', name=op.f('pk_collections_provider_refund'))
    )
    op.create_table('collections_request',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('target', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('maker', sa.String(length=64), nullable=False),
    sa.Column('decided_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('decided_at', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collections_request'))
    )
    op.create_table('collections_statement',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('format', sa.String(length=24), nullable=False),
    sa.Column('file_name', sa.String(length=300), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('statement_id', sa.String(length=128), nullable=True),
    sa.Column('account', sa.String(length=64), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('opening_balance', sa.BigInteger(), nullable=True),
    sa.Column('closing_balance', sa.BigInteger(), nullable=True),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.Column('imported_at', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collections_statement')),
    sa.UniqueConstraint('entity', 'sha256', 'statement_id', name=op.f('uq_collections_statement_entity_sha256_statement_id'))
    )


def downgrade() -> None:
    op.drop_table('collections_statement')
    op.drop_table('collections_request')
    op.drop_table('collections_provider_refund')
    op.drop_index('ix_collections_provider_event_waiting_for', table_name='collections_provider_event')
    op.drop_table('collections_provider_event')
    op.drop_table('collections_payout')
    op.drop_index('ix_collections_payment_provider_ref', table_name='collections_payment')
    op.drop_index('ix_collections_payment_customer', table_name='collections_payment')
    op.drop_table('collections_payment')
    op.drop_table('collections_payer')
    op.drop_index('ix_collections_invoice_norm', table_name='collections_invoice')
    op.drop_index('ix_collections_invoice_digits', table_name='collections_invoice')
    op.drop_index('ix_collections_invoice_customer', table_name='collections_invoice')
    op.drop_table('collections_invoice')
    op.drop_index('ix_collections_failure_invoice', table_name='collections_failure')
    op.drop_table('collections_failure')
    op.drop_index('ix_collections_email_status', table_name='collections_email')
    op.drop_table('collections_email')
    op.drop_index('ix_collections_dunning_case_invoice', table_name='collections_dunning_case')
    op.drop_table('collections_dunning_case')
    op.drop_table('collections_dunning_action')
    op.drop_index('ix_collections_dispute_invoice', table_name='collections_dispute')
    op.drop_table('collections_dispute')
    op.drop_table('collections_collector')
    op.drop_index('ix_collections_bank_line_statement_id', table_name='collections_bank_line')
    op.drop_index('ix_collections_bank_line_fingerprint', table_name='collections_bank_line')
    op.drop_table('collections_bank_line')
    op.drop_index('ix_collections_application_payment_id', table_name='collections_application')
    op.drop_index('ix_collections_application_invoice', table_name='collections_application')
    op.drop_table('collections_application')

