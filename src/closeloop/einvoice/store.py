"""E-invoice tables: the e-invoice stored with each invoice or credit memo (one row per format,
immutable once stored), and each customer's preferred format."""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import metadata

# The e-invoice of an invoice or credit memo in one format. Written once (at issue for customers
# with a preferred format, else at the first export) and never changed: a correction is a credit
# memo with its own e-invoice. ``status`` 'failed' keeps the problems that stopped it (JSON list).
einvoice_document = sa.Table(
    "einvoice_document",
    metadata,
    sa.Column("invoice", sa.String(64), primary_key=True),  # invoice or credit memo number
    sa.Column("format", sa.String(16), primary_key=True),  # facturx, ubl
    sa.Column("kind", sa.String(16), nullable=False),  # invoice, credit_memo
    sa.Column("status", sa.String(16), nullable=False),  # stored, failed
    sa.Column("media_type", sa.String(64)),
    sa.Column("filename", sa.String(128)),
    sa.Column("content", sa.LargeBinary),
    sa.Column("sha256", sa.String(64)),
    sa.Column("problems", sa.Text),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("origin", sa.String(32), nullable=False),  # issue, export: when it was made
)

einvoice_preference = sa.Table(
    "einvoice_preference",
    metadata,
    sa.Column("customer_id", sa.BigInteger, primary_key=True),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
)
