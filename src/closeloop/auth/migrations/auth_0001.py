"""auth: users, hashed API keys, browser sessions, auth events

Revision ID: auth_0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = 'auth_0001'
down_revision = None
branch_labels = ('auth',)
depends_on = None


def upgrade() -> None:
    op.create_table('auth_api_key',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('revoked_at', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_api_key')),
    sa.UniqueConstraint('key_id', name=op.f('uq_auth_api_key_key_id'))
    )
    op.create_index(op.f('ix_auth_api_key_user_id'), 'auth_api_key', ['user_id'], unique=False)
    op.create_table('auth_event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('client', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_event'))
    )
    op.create_index('ix_auth_event_kind', 'auth_event', ['kind', 'id'], unique=False)
    op.create_table('auth_session',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('expires_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_auth_session'))
    )
    op.create_index(op.f('ix_auth_session_user_id'), 'auth_session', ['user_id'], unique=False)
    op.create_table('auth_user',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=True),
    sa.Column('roles', sa.String(length=200), nullable=False),
    sa.Column('entities', sa.String(length=400), server_default='', nullable=False),
    sa.Column('locale', sa.String(length=16), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_user')),
    sa.UniqueConstraint('name', name=op.f('uq_auth_user_name'))
    )


def downgrade() -> None:
    op.drop_table('auth_user')
    op.drop_index(op.f('ix_auth_session_user_id'), table_name='auth_session')
    op.drop_table('auth_session')
    op.drop_index('ix_auth_event_kind', table_name='auth_event')
    op.drop_table('auth_event')
    op.drop_index(op.f('ix_auth_api_key_user_id'), table_name='auth_api_key')
    op.drop_table('auth_api_key')

