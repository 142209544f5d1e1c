"""catalog: products and prices

Revision ID: catalog_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'catalog_0001'
down_revision = None
branch_labels = ('catalog',)
depends_on = None


def upgrade() -> None:
    op.create_table('catalog_price',
    sa.Column('price_id', sa.String(length=64), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('model', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.String(length=40), nullable=True),
    sa.Column('tiers', sa.Text(), nullable=True),
    sa.Column('package_size', sa.Integer(), nullable=True),
    sa.Column('period', sa.String(length=16), nullable=False),
    sa.Column('timing', sa.String(length=16), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=True),
    sa.Column('aggregation', sa.String(length=16), nullable=True),
    sa.Column('aggregation_property', sa.String(length=64), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('price_id', name=op.f('pk_catalog_price'))
    )
    op.create_index('ix_catalog_price_metric', 'catalog_price', ['metric'], unique=False)
    op.create_index('ix_catalog_price_sku_currency', 'catalog_price', ['sku', 'currency'], unique=False)
    op.create_table('catalog_product',
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('treatment', sa.String(length=16), nullable=False),
    sa.Column('tax_code', sa.String(length=32), nullable=False),
    sa.Column('ssp', sa.String(length=40), nullable=True),
    sa.Column('ssp_currency', sa.String(length=3), nullable=True),
    sa.Column('revenue_role', sa.String(length=40), nullable=True),
    sa.Column('family', sa.String(length=64), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('sku', name=op.f('pk_catalog_product'))
    )


def downgrade() -> None:
    op.drop_table('catalog_product')
    op.drop_index('ix_catalog_price_sku_currency', table_name='catalog_price')
    op.drop_index('ix_catalog_price_metric', table_name='catalog_price')
    op.drop_table('catalog_price')

