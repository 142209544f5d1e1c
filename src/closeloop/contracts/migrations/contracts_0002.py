"""contracts: each contract keeps its due schedule and the latest effective date of its changes

Revision ID: contracts_0002
Revises: contracts_0001
"""

import sqlalchemy as sa
from alembic import op

revision = 'contracts_0002'
down_revision = 'contracts_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Left NULL on existing contracts: they are replayed from their change log until their next change.
    op.add_column('contracts_contract', sa.Column('due_schedule', sa.Text(), nullable=True))
    op.add_column('contracts_contract', sa.Column('changes_through', sa.String(length=10), nullable=True))


def downgrade() -> None:
    op.drop_column('contracts_contract', 'changes_through')
    op.drop_column('contracts_contract', 'due_schedule')
