"""Legal entities (our companies): code, functional currency, country, tax id, address.

Every area needs them (customers contract with one, billing issues from one,
the ledger books per one), so they live in core; ``entity.create`` itself is
the ledger's command because creating an entity also opens its books.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from closeloop.core.errors import ConflictError, NotFoundError
from closeloop.core.money import check_currency
from closeloop.core.uow import dumps


@dataclass(frozen=True, slots=True)
class LegalEntity:
    code: str
    name: str
    country: str
    currency: str
    region: str | None
    tax_id: str | None
    address: dict[str, Any] | None
    maker_checker: bool
    fiscal_calendar: str


_COLUMNS = "code, name, country, currency, region, tax_id, address, maker_checker, fiscal_calendar"


def _from_row(row: Any) -> LegalEntity:
    return LegalEntity(
        code=row[0], name=row[1], country=row[2], currency=row[3], region=row[4], tax_id=row[5],
        address=json.loads(row[6]) if row[6] else None, maker_checker=bool(row[7]), fiscal_calendar=row[8],
    )


def get_entity(uow: Any, code: str) -> LegalEntity:
    def load() -> LegalEntity:
        row = uow.one(f"SELECT {_COLUMNS} FROM legal_entity WHERE code = ?", (code,))
        if row is None:
            raise NotFoundError(f"legal entity {code!r} does not exist; create it with entity.create",
                                field="entity", record=code)
        return _from_row(row)

    return uow.cached("entity", code, load)


def list_entities(uow: Any) -> list[LegalEntity]:
    return [_from_row(r) for r in uow.all(f"SELECT {_COLUMNS} FROM legal_entity ORDER BY code")]


def insert_entity(uow: Any, entity: LegalEntity) -> None:
    check_currency(entity.currency)
    if uow.one("SELECT 1 FROM legal_entity WHERE code = ?", (entity.code,)):
        raise ConflictError(f"legal entity {entity.code!r} already exists", field="code", record=entity.code)
    uow.execute(
        f"INSERT INTO legal_entity ({_COLUMNS}, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (entity.code, entity.name, entity.country, entity.currency, entity.region, entity.tax_id,
         dumps(entity.address) if entity.address else None, entity.maker_checker, entity.fiscal_calendar,
         uow.now()),
    )
