"""rollout: migration runs and records, parallel-run registers and runs

Revision ID: rollout_0002
Revises: rollout_0001
"""

import sqlalchemy as sa
from alembic import op

revision = 'rollout_0002'
down_revision = 'rollout_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('migration_record',
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('digest', sa.String(length=40), nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('target', sa.String(length=128), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('kind', 'key', name=op.f('pk_migration_record'))
    )
    op.create_table('migration_run',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('system', sa.String(length=100), nullable=True),
    sa.Column('dataset', sa.String(length=64), nullable=False),
    sa.Column('cutover', sa.String(length=10), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('created', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('report', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_migration_run'))
    )
    op.create_table('parallel_register',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('system', sa.String(length=100), nullable=True),
    sa.Column('file', sa.String(length=200), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.Column('imported_at', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_parallel_register'))
    )
    op.create_index('ix_parallel_register_entity', 'parallel_register', ['entity', 'period', 'id'], unique=False)
    op.create_table('parallel_register_line',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('register_id', sa.BigInteger(), nullable=False),
    sa.Column('row', sa.Integer(), nullable=False),
    sa.Column('invoice', sa.String(length=64), nullable=False),
    sa.Column('customer', sa.String(length=128), nullable=False),
    sa.Column('date', sa.String(length=10), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('period_start', sa.String(length=10), nullable=True),
    sa.Column('period_end', sa.String(length=10), nullable=True),
    sa.Column('quantity', sa.String(length=40), nullable=True),
    sa.Column('unit_price', sa.String(length=40), nullable=True),
    sa.Column('net', sa.BigInteger(), nullable=False),
    sa.Column('tax', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_parallel_register_line'))
    )
    op.create_index('ix_parallel_register_line_register_id', 'parallel_register_line', ['register_id'], unique=False)
    op.create_table('parallel_run',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('register_id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('matched', sa.Integer(), nullable=False),
    sa.Column('difference', sa.String(length=40), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('result', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_parallel_run'))
    )
    op.create_index('ix_parallel_run_entity', 'parallel_run', ['entity', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_parallel_run_entity', table_name='parallel_run')
    op.drop_table('parallel_run')
    op.drop_index('ix_parallel_register_line_register_id', table_name='parallel_register_line')
    op.drop_table('parallel_register_line')
    op.drop_index('ix_parallel_register_entity', table_name='parallel_register')
    op.drop_table('parallel_register')
    op.drop_table('migration_run')
    op.drop_table('migration_record')

