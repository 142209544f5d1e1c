"""ledger: accounts, journals, balances, chain, periods, requests

Revision ID: ledger_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'ledger_0001'
down_revision = None
branch_labels = ('ledger',)
depends_on = None


def upgrade() -> None:
    op.create_table('journal_entry',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('memo', sa.Text(), nullable=False),
    sa.Column('manual', sa.Boolean(), nullable=False),
    sa.Column('reference', sa.String(length=128), nullable=True),
    sa.Column('reverses_id', sa.BigInteger(), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('approved_by', sa.String(length=64), nullable=True),
    sa.Column('event_id', sa.BigInteger(), nullable=True),
    sa.Column('posted_at', sa.String(length=32), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journal_entry')),
    sa.UniqueConstraint('entity', 'seq', name=op.f('uq_journal_entry_entity_seq'))
    )
    op.create_index('ix_journal_entry_entity_date', 'journal_entry', ['entity', 'date'], unique=False)
    op.create_index('ix_journal_entry_reference', 'journal_entry', ['reference'], unique=False, sqlite_where=sa.text('reference IS NOT NULL'), postgresql_where=sa.text('reference IS NOT NULL'))
    op.create_table('journal_line',
    sa.Column('entry_id', sa.BigInteger(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('txn_amount', sa.BigInteger(), nullable=False),
    sa.Column('memo', sa.Text(), nullable=True),
    sa.Column('dimensions', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('entry_id', 'line_no', name=op.f('pk_journal_line')),
    sqlite_with_rowid=False
    )
    op.create_table('journal_request',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('reference', sa.String(length=128), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('maker', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('decided_by', sa.String(length=64), nullable=True),
    sa.Column('decided_at', sa.String(length=32), nullable=True),
    sa.Column('entry_id', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journal_request')),
    sa.UniqueConstraint('reference', name=op.f('uq_journal_request_reference'))
    )
    op.create_table('journal_reversal',
    sa.Column('original_id', sa.BigInteger(), nullable=False),
    sa.Column('reversal_id', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('original_id', name=op.f('pk_journal_reversal'))
    )
    op.create_table('ledger_account',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('role', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_account')),
    sa.UniqueConstraint('entity', 'code', name=op.f('uq_ledger_account_entity_code')),
    sa.UniqueConstraint('entity', 'role', name=op.f('uq_ledger_account_entity_role'))
    )
    op.create_table('ledger_balance',
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('txn_amount', sa.BigInteger(), nullable=False),
    sa.Column('line_count', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('entity', 'period', 'account_id', 'currency', name=op.f('pk_ledger_balance')),
    sqlite_with_rowid=False
    )
    op.create_table('ledger_chain',
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('entity', name=op.f('pk_ledger_chain'))
    )
    op.create_table('ledger_period',
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('changed_at', sa.String(length=32), nullable=False),
    sa.Column('changed_by', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('entity', 'period', name=op.f('pk_ledger_period'))
    )


def downgrade() -> None:
    op.drop_table('ledger_period')
    op.drop_table('ledger_chain')
    op.drop_table('ledger_balance')
    op.drop_table('ledger_account')
    op.drop_table('journal_reversal')
    op.drop_table('journal_request')
    op.drop_table('journal_line')
    op.drop_index('ix_journal_entry_reference', table_name='journal_entry', sqlite_where=sa.text('reference IS NOT NULL'), postgresql_where=sa.text('reference IS NOT NULL'))
    op.drop_index('ix_journal_entry_entity_date', table_name='journal_entry')
    op.drop_table('journal_entry')

