"""api: stored responses by Idempotency-Key

Revision ID: api_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'api_0001'
down_revision = None
branch_labels = ('api',)
depends_on = None


def upgrade() -> None:
    op.create_table('api_idempotency',
    sa.Column('principal', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('method_path', sa.String(length=300), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('response', sa.Text(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('principal', 'key', name=op.f('pk_api_idempotency'))
    )


def downgrade() -> None:
    op.drop_table('api_idempotency')

