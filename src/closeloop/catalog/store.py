"""Catalogue tables: products and prices. Amounts inside prices are decimal TEXT (unit amounts may be
finer than the currency); tiers are a JSON list. Prices are immutable once created (contracts keep a
snapshot anyway); a price is retired with ``price.deactivate``."""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import metadata

catalog_product = sa.Table(
    "catalog_product",
    metadata,
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("treatment", sa.String(16), nullable=False),  # ratable, point_in_time, usage, milestone
    sa.Column("tax_code", sa.String(32), nullable=False),
    sa.Column("ssp", sa.String(40)),  # per unit per month (per unit for one-time products), decimal text
    sa.Column("ssp_currency", sa.String(3)),
    sa.Column("revenue_role", sa.String(40)),
    sa.Column("family", sa.String(64)),  # product family: a reporting dimension
    sa.Column("description", sa.Text),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

catalog_price = sa.Table(
    "catalog_price",
    metadata,
    sa.Column("price_id", sa.String(64), primary_key=True),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("model", sa.String(16), nullable=False),
    sa.Column("amount", sa.String(40)),
    sa.Column("tiers", sa.Text),  # JSON [{up_to, unit_amount, flat_amount}]
    sa.Column("package_size", sa.Integer),
    sa.Column("period", sa.String(16), nullable=False),
    sa.Column("timing", sa.String(16), nullable=False),
    sa.Column("metric", sa.String(64)),
    sa.Column("aggregation", sa.String(16)),
    sa.Column("aggregation_property", sa.String(64)),
    sa.Column("description", sa.Text),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.Index("ix_catalog_price_sku_currency", "sku", "currency"),
    sa.Index("ix_catalog_price_metric", "metric"),
)
