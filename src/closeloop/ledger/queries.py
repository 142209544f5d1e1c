"""Ledger control queries: the audit-chain verification as a query of the vocabulary."""

from __future__ import annotations

from typing import Any

from closeloop.core.registry import payload, query
from closeloop.ledger.audit import verify_ledger


@payload
class LedgerVerifyQuery:
    entity: str | None = None


@query("ledger_verify", LedgerVerifyQuery, roles=("controller", "admin", "read_only"),
       summary="Replay the ledger's hash chain and report every changed, removed or inserted row")
def ledger_verify(uow: Any, q: LedgerVerifyQuery) -> dict[str, Any]:
    return verify_ledger(uow, q.entity)


@payload
class EntitiesQuery:
    pass


@query("entities", EntitiesQuery, summary="The legal entities with their functional currencies")
def entities(uow: Any, q: EntitiesQuery) -> dict[str, Any]:
    from closeloop.core.entities import list_entities

    return {"entities": [{"code": e.code, "name": e.name, "country": e.country, "currency": e.currency,
                          "region": e.region, "tax_id": e.tax_id, "maker_checker": e.maker_checker,
                          "fiscal_calendar": e.fiscal_calendar} for e in list_entities(uow)]}
