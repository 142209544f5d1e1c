"""Tables of opportunities, quotes (every version, every approval) and contracts (header + change log).

A contract's lines are not a table: they are the replay of its change log
(``contracts_change``), so the contract on any date is derived from the same records that
its events were built from. The header keeps what lists and the renewal run filter on.
"""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.core.db import BigId, metadata

contracts_opportunity = sa.Table(
    "contracts_opportunity",
    metadata,
    sa.Column("external_id", sa.String(128), primary_key=True),
    sa.Column("source", sa.String(32), nullable=False),  # the source that created it
    sa.Column("customer", sa.String(128), nullable=False),  # customer external id as the CRM gave it
    sa.Column("stage", sa.String(64), nullable=False),
    sa.Column("close_date", sa.String(10), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # JSON: the opportunity as last upserted
    sa.Column("status", sa.String(16), nullable=False),  # open, lost, converted, unconvertible
    sa.Column("quote_id", sa.String(64)),
    sa.Column("reason", sa.Text),  # why it could not convert
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.Index("ix_contracts_opportunity_status", "status"),
)

contracts_quote = sa.Table(
    "contracts_quote",
    metadata,
    sa.Column("quote_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),  # current version
    sa.Column("status", sa.String(24), nullable=False),  # pending_approval, approved, accepted
    sa.Column("customer", sa.String(128), nullable=False),  # external id
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("start", sa.String(10), nullable=False),
    sa.Column("term_months", sa.Integer, nullable=False),
    sa.Column("opportunity", sa.String(128)),
    sa.Column("contract_id", sa.String(64)),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.Index("ix_contracts_quote_customer_id", "customer_id"),
)

# Every version of every quote, whole: what was quoted, priced, and which rules it triggered.
contracts_quote_version = sa.Table(
    "contracts_quote_version",
    metadata,
    sa.Column("quote_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("payload", sa.Text, nullable=False),  # JSON: header fields and priced lines
    sa.Column("rules", sa.Text, nullable=False),  # JSON: ids of the approval rules it triggers
    sa.Column("changed", sa.Text),  # JSON: fields changed from the previous version
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("recorded_on", sa.String(10), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)

contracts_quote_approval = sa.Table(
    "contracts_quote_approval",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("quote_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # the version approved
    sa.Column("approver", sa.String(64), nullable=False),
    sa.Column("rules", sa.Text, nullable=False),  # JSON: rule ids this approval covers
    sa.Column("comment", sa.Text),
    sa.Column("recorded_on", sa.String(10), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Index("ix_contracts_quote_approval_quote_id", "quote_id", "version"),
)

contracts_contract = sa.Table(
    "contracts_contract",
    metadata,
    sa.Column("contract_id", sa.String(64), primary_key=True),
    sa.Column("quote_id", sa.String(64), nullable=False),
    sa.Column("quote_version", sa.Integer, nullable=False),
    sa.Column("customer", sa.String(128), nullable=False),  # external id (the survivor's after a merge)
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("entity", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("billing_day", sa.Integer, nullable=False),
    sa.Column("auto_renew", sa.Boolean, nullable=False),
    sa.Column("renewal_term_months", sa.Integer),
    sa.Column("renewal_uplift_pct", sa.String(20)),
    sa.Column("start", sa.String(10), nullable=False),
    sa.Column("service_end", sa.String(10), nullable=False),  # last day of service, all recorded changes applied
    sa.Column("cancelled_effective", sa.String(10)),
    sa.Column("opportunity", sa.String(128)),
    sa.Column("changes", sa.Integer, nullable=False),  # entries in the change log
    # recon_sides.due_schedule of the timeline with every change applied (JSON), and the latest effective date
    # of a change: "due by as_of" for any as_of on or after it reads the schedule instead of replaying the log
    # (NULL for a contract last changed before contracts_0002: it is replayed)
    sa.Column("due_schedule", sa.Text),
    sa.Column("changes_through", sa.String(10)),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.Index("ix_contracts_contract_customer_id", "customer_id"),
    sa.Index("ix_contracts_contract_renewal", "auto_renew", "service_end"),
)

# The change log: activation, amendments, renewals, cancellation, in the order recorded.
contracts_change = sa.Table(
    "contracts_change",
    metadata,
    sa.Column("contract_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("ref", sa.String(100), nullable=False),
    sa.Column("effective", sa.String(10), nullable=False),
    sa.Column("modification", sa.String(16)),
    sa.Column("payload", sa.Text, nullable=False),  # JSON: model.Change.to_dict()
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("recorded_on", sa.String(10), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("event_id", sa.BigInteger),
)
