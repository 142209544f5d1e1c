"""rollout: wave plan, wave states, scenario-suite results, variations register

Revision ID: rollout_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'rollout_0001'
down_revision = None
branch_labels = ('rollout',)
depends_on = None


def upgrade() -> None:
    op.create_table('rollout_plan',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('loaded_at', sa.String(length=32), nullable=False),
    sa.Column('loaded_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rollout_plan'))
    )
    op.create_table('scenario_suite_run',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('passed', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('failures', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scenario_suite_run'))
    )
    op.create_table('variation',
    sa.Column('variation_id', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('area', sa.String(length=32), nullable=False),
    sa.Column('scope', sa.String(length=200), nullable=False),
    sa.Column('classification', sa.String(length=16), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('review_date', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('proposed_by', sa.String(length=64), nullable=False),
    sa.Column('approved_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('variation_id', name=op.f('pk_variation'))
    )
    op.create_table('wave_state',
    sa.Column('wave', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('live_on', sa.String(length=10), nullable=True),
    sa.Column('decided_by', sa.String(length=64), nullable=True),
    sa.Column('evidence', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('wave', name=op.f('pk_wave_state'))
    )


def downgrade() -> None:
    op.drop_table('wave_state')
    op.drop_table('variation')
    op.drop_table('scenario_suite_run')
    op.drop_table('rollout_plan')

