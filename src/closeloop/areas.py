"""The modules that register closeloop's commands, queries and event handlers.

Each business area lists the modules that declare operations (``@command``,
``@query``) or subscribe to events (``@handles``). Importing them fills the
registry; interfaces (Python API, CLI, REST, scenarios) then share it.
"""

from __future__ import annotations

import importlib

MODULES: tuple[str, ...] = (
    "closeloop.core.fx",
    "closeloop.core.exception_queue",
    "closeloop.ledger.service",
    "closeloop.ledger.reports",
    "closeloop.ledger.queries",
    "closeloop.ledger.fx_revaluation",
    "closeloop.ledger.consolidation",
    "closeloop.core.governance",
    "closeloop.customers.service",
    "closeloop.customers.importers",
    "closeloop.customers.webhook",
    "closeloop.posting.service",
    "closeloop.posting.intercompany",
    "closeloop.posting.recon_sides",
    "closeloop.ledger.recon_sides",
    "closeloop.close.gates",
    "closeloop.close.service",
    "closeloop.kpis.service",
    "closeloop.rollout.waves",
    "closeloop.rollout.variations",
    "closeloop.catalog.service",
    "closeloop.contracts.service",
    "closeloop.contracts.opportunities",
    "closeloop.contracts.recon_sides",
    "closeloop.tax.service",
    "closeloop.billing.subscriptions",
    "closeloop.billing.service",
    "closeloop.billing.coupons",
    "closeloop.billing.wallets",
    "closeloop.billing.recon_sides",
    "closeloop.einvoice.service",
    "closeloop.revenue.service",
    "closeloop.collections.service",
    "closeloop.collections.dunning",
    "closeloop.collections.disputes",
    "closeloop.collections.provider",
    "closeloop.collections.views",
    "closeloop.integration.delivery",
    "closeloop.integration.webhooks",
    "closeloop.integration.crm",
    "closeloop.integration.probe",
    "closeloop.control.recon",
    "closeloop.control.recon_sides",
    "closeloop.control.lineage",
    "closeloop.control.audit",
    "closeloop.control.exceptions",
    "closeloop.billing.migration",
    "closeloop.rollout.migration",
    "closeloop.rollout.parallel",
)

_loaded = False


def load() -> None:
    global _loaded
    if _loaded:
        return
    for name in MODULES:
        importlib.import_module(name)
    from closeloop.core.db import load_all_stores

    load_all_stores()
    _loaded = True
