"""integration: webhook signing secrets encrypted at rest (secret as text, secret_hint); existing plain-text secrets encrypted

Revision ID: integration_0002
Revises: integration_0001

Existing plain-text secrets are encrypted when the secret key can be found (CLOSELOOP_SECRET_KEY,
CLOSELOOP_SECRET_KEY_FILE, or on SQLite the key file beside the database, created here); otherwise
(PostgreSQL without a configured key) they are left as they are, still read, and a warning says to run
``webhook.reseal`` once the key is configured.
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = 'integration_0002'
down_revision = 'integration_0001'
branch_labels = None
depends_on = None

log = logging.getLogger("closeloop.migrations")


def _ring(bind, *, create: bool):
    from closeloop.integration import secret_box

    is_sqlite = bind.dialect.name == "sqlite"
    source = secret_box.key_source(None, is_sqlite=is_sqlite,
                                   database_file=secret_box.sqlite_file(bind) if is_sqlite else "")
    try:
        return secret_box.keyring(source, create=create)
    except secret_box.SecretKeyError as err:
        log.warning("webhook signing secrets are left as they are: %s; run webhook.reseal once the key is"
                    " configured", err.message)
        return None


def upgrade() -> None:
    with op.batch_alter_table('webhook_subscription') as batch:
        batch.add_column(sa.Column('secret_hint', sa.String(length=8), nullable=True))
        batch.alter_column('secret', existing_type=sa.VARCHAR(length=200), type_=sa.Text(), existing_nullable=False)
    from closeloop.integration import secret_box

    bind = op.get_bind()
    rows = [(i, s) for i, s in bind.execute(sa.text("SELECT id, secret FROM webhook_subscription")).fetchall()
            if not secret_box.is_sealed(s)]
    if not rows:
        return
    ring = _ring(bind, create=True)
    if ring is None:
        return
    for sub_id, secret in rows:
        bind.execute(sa.text("UPDATE webhook_subscription SET secret = :secret, secret_hint = :hint WHERE id = :id"),
                     {"secret": secret_box.seal_with(ring, secret), "hint": secret_box.hint(secret), "id": sub_id})


def downgrade() -> None:
    from closeloop.integration import secret_box

    bind = op.get_bind()
    rows = [(i, s) for i, s in bind.execute(sa.text("SELECT id, secret FROM webhook_subscription")).fetchall()
            if secret_box.is_sealed(s)]
    if rows:
        ring = _ring(bind, create=False)
        if ring is None:
            raise RuntimeError("integration_0002 downgrade: the secret key is needed to decrypt webhook secrets")
        for sub_id, sealed in rows:
            bind.execute(sa.text("UPDATE webhook_subscription SET secret = :secret WHERE id = :id"),
                         {"secret": secret_box.unseal_with(ring, sealed), "id": sub_id})
    with op.batch_alter_table('webhook_subscription') as batch:
        batch.alter_column('secret', existing_type=sa.Text(), type_=sa.VARCHAR(length=200), existing_nullable=False)
        batch.drop_column('secret_hint')
