"""Intercompany charges: a line sold by one entity and performed by another.

On ``invoice.issued``, each line whose ``performing_entity`` differs from the issuing
entity produces an ``intercompany.charged`` event priced by the transfer-pricing rule of
``config/intercompany.yaml`` and stated in the performing entity's currency. The posting
rules book it in both entities: the seller's intercompany cost and payable, the
performer's intercompany receivable and revenue. Consolidation eliminates both pairs.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from closeloop.core.entities import get_entity
from closeloop.core.events import Event, handles
from closeloop.core.fx import convert
from closeloop.core.money import format_minor, round_minor, to_minor


@lru_cache(maxsize=1)
def transfer_pricing() -> dict[str, Any]:
    doc = yaml.safe_load((resources.files("closeloop") / "config" / "intercompany.yaml").read_text())
    for rule in [doc["default"], *doc.get("pairs", [])]:
        if rule["method"] not in ("share", "cost_plus"):
            raise RuntimeError(f"config/intercompany.yaml: unknown method {rule['method']}")
    return dict(doc)


def charge_rule(seller: str, performer: str) -> dict[str, Any]:
    doc = transfer_pricing()
    for rule in doc.get("pairs", []):
        if rule["seller"] == seller and rule["performer"] == performer:
            return dict(rule)
    return dict(doc["default"])


def charge_for(net_minor: int, rule: dict[str, Any]) -> int:
    """The charge in the line's currency, rounded half-up once."""
    if rule["method"] == "share":
        factor = Decimal(str(rule["share"]))
    else:
        factor = Decimal(str(rule["cost_ratio"])) * (1 + Decimal(str(rule["margin"])))
    return round_minor(Decimal(net_minor) * factor)


@handles("invoice.issued", "intercompany")
def on_invoice_issued(uow: Any, ev: Event) -> None:
    p = ev.payload
    seller = p["entity"]
    for line in p.get("lines", []):
        performer = line.get("performing_entity")
        if not performer or performer == seller:
            continue
        rule = charge_rule(seller, performer)
        net = to_minor(line["net"], p["currency"])
        charge = charge_for(net, rule)
        performer_ccy = get_entity(uow, performer).currency
        amount = convert(uow, charge, p["currency"], performer_ccy, p["date"])
        uow.emit("intercompany.charged", "invoice", p["invoice"], {
            "invoice": p["invoice"], "line_no": line["line_no"], "seller_entity": seller,
            "performing_entity": performer, "currency": performer_ccy,
            "amount": format_minor(amount, performer_ccy), "line_net": line["net"], "line_currency": p["currency"],
            "date": p["date"], "basis": rule["method"], "contract_id": line.get("contract_id"),
            "line_id": line.get("line_id"),
        }, entity=seller)
