"""Customer tables: accounts, extra external ids, contacts, field changes, match keys,
the duplicate review list, merges (for audit and unmerge), imports and CRM webhook events."""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import BigId, metadata

# One row per account. ``external_id`` is the id the creating source gave it (one namespace
# across sources); a merged account keeps its row, status 'merged' and ``merged_into``.
customer = sa.Table(
    "customer",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("external_id", sa.String(128), nullable=False, unique=True),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("name_key", sa.String(300), nullable=False),  # normalised name (matching, search)
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("region", sa.String(64)),
    sa.Column("postal_code", sa.String(32)),
    sa.Column("address", sa.Text),  # JSON object: street, street2, city, region, postal_code, country
    sa.Column("email", sa.String(254)),
    sa.Column("phone", sa.String(64)),
    sa.Column("website", sa.String(254)),
    sa.Column("tax_id", sa.String(64)),
    sa.Column("tax_id_valid", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("tax_id_check", sa.String(16)),  # checksum, format
    sa.Column("tax_exempt", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("exemption_ref", sa.String(128)),
    sa.Column("parent_id", sa.BigInteger),
    sa.Column("bill_to_id", sa.BigInteger),
    sa.Column("entity", sa.String(16)),
    sa.Column("currency", sa.String(3)),
    sa.Column("payment_terms_days", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active, inactive, merged
    sa.Column("merged_into", sa.BigInteger),
    sa.Column("source", sa.String(32), nullable=False),  # the source that created it
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ix_customer_parent_id", "parent_id"),
    sa.Index("ix_customer_merged_into", "merged_into"),
    sa.Index("ix_customer_name_key", "name_key"),
)

# Further external ids of an account (another CRM, the legacy billing system...).
customer_external_id = sa.Table(
    "customer_external_id",
    metadata,
    sa.Column("external_id", sa.String(128), primary_key=True),
    sa.Column("customer_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("system", sa.String(32)),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)

customer_contact = sa.Table(
    "customer_contact",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("external_id", sa.String(128), nullable=False, unique=True),
    sa.Column("customer_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("first_name", sa.String(100)),
    sa.Column("last_name", sa.String(100)),
    sa.Column("email", sa.String(254)),
    sa.Column("phone", sa.String(64)),
    sa.Column("title", sa.String(128)),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

# Every change of a field after creation (creation itself is the customer.created event):
# who, when, from which source, by which command, old and new (JSON). Survivorship's
# most_recent and source_priority rules read the last change of each field from here.
customer_change = sa.Table(
    "customer_change",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("field", sa.String(40), nullable=False),
    sa.Column("old", sa.Text),
    sa.Column("new", sa.Text),
    sa.Column("kind", sa.String(16), nullable=False),  # update, merge, unmerge, import, webhook
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("command_id", sa.BigInteger),
    sa.Index("ix_customer_change_customer_field", "customer_id", "field"),
)

# Blocking keys of active accounts: name tokens, tax id, domain, country+postcode.
customer_match_key = sa.Table(
    "customer_match_key",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("customer_id", sa.BigInteger, primary_key=True),
    sa.Index("ix_customer_match_key_customer_id", "customer_id"),
)

# The review list of suspected duplicates (a_id < b_id), with the explained score.
customer_duplicate = sa.Table(
    "customer_duplicate",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("a_id", sa.BigInteger, nullable=False),
    sa.Column("b_id", sa.BigInteger, nullable=False),
    sa.Column("score", sa.String(12), nullable=False),  # decimal text, points
    sa.Column("decision", sa.String(16), nullable=False),  # match, review
    sa.Column("explanation", sa.Text, nullable=False),  # JSON: per-field similarity and contribution
    sa.Column("status", sa.String(16), nullable=False),  # open, merged, dismissed
    sa.Column("detected_at", sa.String(32), nullable=False),
    sa.Column("resolved_at", sa.String(32)),
    sa.Column("resolved_by", sa.String(64)),
    sa.Column("note", sa.Text),
    sa.UniqueConstraint("a_id", "b_id"),
    sa.Index("ix_customer_duplicate_status", "status"),
)

# Each merge, with what it changed, so it is audited and can be undone.
customer_merge = sa.Table(
    "customer_merge",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("survivor_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("merged_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("survivor_before", sa.Text, nullable=False),  # JSON snapshots
    sa.Column("merged_before", sa.Text, nullable=False),
    sa.Column("survivor_after", sa.Text, nullable=False),
    sa.Column("moved", sa.Text, nullable=False),  # JSON: children, bill_to, contacts moved
    sa.Column("repointed", sa.Text, nullable=False),  # JSON: {holder: [record ids]}
    sa.Column("status", sa.String(16), nullable=False),  # active, undone
    sa.Column("undone_at", sa.String(32)),
    sa.Column("undone_by", sa.String(64)),
)

customer_import = sa.Table(
    "customer_import",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("format", sa.String(32), nullable=False),
    sa.Column("files", sa.Text, nullable=False),  # JSON: [{name, sha256, encoding}]
    sa.Column("mode", sa.String(16), nullable=False),  # all_or_nothing, accept_valid
    sa.Column("rows_read", sa.Integer, nullable=False),
    sa.Column("created", sa.Integer, nullable=False),
    sa.Column("updated", sa.Integer, nullable=False),
    sa.Column("unchanged", sa.Integer, nullable=False),
    sa.Column("rejected", sa.Integer, nullable=False),
    sa.Column("quality_score", sa.String(8), nullable=False),
    sa.Column("report", sa.Text, nullable=False),  # JSON: the summary (rows listed up to a limit)
)

# CRM change events received by webhook: idempotent by event id.
crm_webhook_event = sa.Table(
    "crm_webhook_event",
    metadata,
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("received_at", sa.String(32), nullable=False),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # applied, refused
    sa.Column("result", sa.Text),
)

# The latest modification time each source has given for each field of an account (Salesforce
# LastModifiedDate / SystemModstamp of an export row, a CRM webhook event's occurred_at). A value that
# the same source dates earlier than this is stale and does not overwrite (docs/customers.md).
customer_source_stamp = sa.Table(
    "customer_source_stamp",
    metadata,
    sa.Column("customer_id", sa.BigInteger, primary_key=True),
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("field", sa.String(40), primary_key=True),
    sa.Column("modified_at", sa.String(32), nullable=False),  # UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ (sorts as text)
    sa.Column("recorded_at", sa.String(32), nullable=False),  # when closeloop recorded it
)
