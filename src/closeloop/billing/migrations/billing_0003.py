"""billing: coupons and redemptions, prepaid-credit wallets, prepaid credits applied to invoices

Revision ID: billing_0003
Revises: billing_0002
"""

import sqlalchemy as sa
from alembic import op

revision = 'billing_0003'
down_revision = 'billing_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('billing_invoice') as batch:
        batch.add_column(sa.Column('wallet_applied', sa.BigInteger(), nullable=False, server_default=sa.text('0')))
    op.create_table('billing_coupon',
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('percent_off', sa.String(length=20), nullable=True),
    sa.Column('amount_off', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('duration', sa.String(length=16), nullable=False),
    sa.Column('duration_months', sa.Integer(), nullable=True),
    sa.Column('redeem_by', sa.String(length=10), nullable=True),
    sa.Column('max_redemptions', sa.Integer(), nullable=True),
    sa.Column('redeemed', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_billing_coupon'))
    )
    op.create_table('billing_coupon_redemption',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('coupon', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('contract_id', sa.String(length=64), nullable=True),
    sa.Column('line_id', sa.String(length=64), nullable=True),
    sa.Column('scope', sa.String(length=140), nullable=False),
    sa.Column('start', sa.String(length=10), nullable=False),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=True),
    sa.Column('discounted', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_coupon_redemption')),
    sa.UniqueConstraint('coupon', 'customer_id', 'scope', name=op.f('uq_billing_coupon_redemption_coupon_customer_id_scope'))
    )
    op.create_index('ix_billing_coupon_redemption_customer_id', 'billing_coupon_redemption', ['customer_id', 'status'],
                    unique=False)
    op.create_table('billing_wallet',
    sa.Column('wallet_id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('rate', sa.String(length=40), nullable=False),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.Column('applies_to', sa.String(length=8), nullable=False),
    sa.Column('expires', sa.String(length=10), nullable=True),
    sa.Column('threshold', sa.BigInteger(), nullable=True),
    sa.Column('topup_credits', sa.String(length=40), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('wallet_id', name=op.f('pk_billing_wallet'))
    )
    op.create_index('ix_billing_wallet_customer_id', 'billing_wallet', ['customer_id'], unique=False)
    op.create_table('billing_wallet_txn',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('wallet_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('credits', sa.String(length=40), nullable=False),
    sa.Column('invoice_id', sa.BigInteger(), nullable=True),
    sa.Column('invoice', sa.String(length=40), nullable=True),
    sa.Column('balance_after', sa.BigInteger(), nullable=False),
    sa.Column('auto', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_wallet_txn'))
    )
    op.create_index('ix_billing_wallet_txn_wallet_id', 'billing_wallet_txn', ['wallet_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_billing_wallet_txn_wallet_id', table_name='billing_wallet_txn')
    op.drop_table('billing_wallet_txn')
    op.drop_index('ix_billing_wallet_customer_id', table_name='billing_wallet')
    op.drop_table('billing_wallet')
    op.drop_index('ix_billing_coupon_redemption_customer_id', table_name='billing_coupon_redemption')
    op.drop_table('billing_coupon_redemption')
    op.drop_table('billing_coupon')
    with op.batch_alter_table('billing_invoice') as batch:
        batch.drop_column('wallet_applied')
