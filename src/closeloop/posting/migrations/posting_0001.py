"""posting: rule versions

Revision ID: posting_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'posting_0001'
down_revision = None
branch_labels = ('posting',)
depends_on = None


def upgrade() -> None:
    op.create_table('posting_rule_version',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('effective_from', sa.String(length=10), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('proposed_by', sa.String(length=64), nullable=False),
    sa.Column('proposed_at', sa.String(length=32), nullable=False),
    sa.Column('decided_by', sa.String(length=64), nullable=True),
    sa.Column('decided_at', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_posting_rule_version')),
    sa.UniqueConstraint('version', name=op.f('uq_posting_rule_version_version'))
    )


def downgrade() -> None:
    op.drop_table('posting_rule_version')

