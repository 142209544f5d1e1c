"""Catalogue commands and queries, and the read functions other areas use.

Commands: ``product.create``, ``product.update``, ``price.create``, ``price.deactivate``.
Queries: ``product``, ``products``, ``price``, ``prices``, ``rate``.
Read API for other areas: :func:`get_product`, :func:`get_price`, :func:`find_prices`,
:func:`prices_for_metric`.

Creating the same product or price twice with the same fields is accepted and changes nothing
(imports can be replayed); with different fields it is a ``conflict``: prices never change once
created, because quotes and contracts refer to them (they keep a snapshot all the same).
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

from closeloop.catalog.model import (
    DEFAULT_TAX_CODE,
    Price,
    PriceTerms,
    Problem,
    Product,
    check_product,
    check_terms,
    dec_str,
    raise_problems,
    tiers_from,
)
from closeloop.catalog.rating import breakdown, check_discount, rate
from closeloop.core.errors import ConflictError, NotFoundError, ValidationError
from closeloop.core.money import format_minor
from closeloop.core.registry import command, payload, query
from closeloop.core.uow import dumps

CATALOG_ROLES = ("billing", "sales_ops", "admin")

_PRODUCT_COLS = "sku, name, treatment, tax_code, ssp, ssp_currency, revenue_role, family, active"
_PRICE_COLS = ("price_id, sku, currency, model, amount, tiers, package_size, period, timing, metric, aggregation,"
               " aggregation_property, active, description")


def _product(row: Any) -> Product:
    return Product(sku=row[0], name=row[1], treatment=row[2], tax_code=row[3],
                   ssp=None if row[4] is None else Decimal(row[4]), ssp_currency=row[5], revenue_role=row[6],
                   family=row[7], active=bool(row[8]))


def _price(row: Any) -> Price:
    terms = PriceTerms.from_dict({
        "price_id": row[0], "currency": row[2], "model": row[3], "amount": row[4],
        "tiers": json.loads(row[5]) if row[5] else [], "package_size": row[6], "period": row[7], "timing": row[8],
        "metric": row[9], "aggregation": row[10], "aggregation_property": row[11],
    })
    return Price(price_id=row[0], sku=row[1], terms=terms, active=bool(row[12]), description=row[13])


def get_product(uow: Any, sku: str, *, field: str = "sku", record: str | None = None) -> Product:
    """The product with this sku, or ``not_found``."""

    def load() -> Product:
        row = uow.one(f"SELECT {_PRODUCT_COLS} FROM catalog_product WHERE sku = ?", (sku,))
        if row is None:
            raise NotFoundError(f"{record + ': ' if record else ''}product {sku!r} does not exist;"
                                " create it with product.create", field=field, record=record or sku, sku=sku)
        return _product(row)

    return uow.cached("catalog.product", sku, load)  # type: ignore[no-any-return]


def get_price(uow: Any, price_id: str, *, field: str = "price_id", record: str | None = None) -> Price:
    """The price with this id, or ``not_found``."""

    def load() -> Price:
        row = uow.one(f"SELECT {_PRICE_COLS} FROM catalog_price WHERE price_id = ?", (price_id,))
        if row is None:
            raise NotFoundError(f"{record + ': ' if record else ''}price {price_id!r} does not exist;"
                                " create it with price.create", field=field, record=record or price_id,
                                price_id=price_id)
        return _price(row)

    return uow.cached("catalog.price", price_id, load)  # type: ignore[no-any-return]


def find_prices(uow: Any, sku: str, currency: str | None = None, *, active_only: bool = True) -> list[Price]:
    """The prices of a product, optionally in one currency, ordered by price id."""
    sql = f"SELECT {_PRICE_COLS} FROM catalog_price WHERE sku = ?"
    params: list[Any] = [sku]
    if currency:
        sql += " AND currency = ?"
        params.append(currency)
    if active_only:
        sql += " AND active = ?"
        params.append(True)
    return [_price(r) for r in uow.all(sql + " ORDER BY price_id", params)]


def prices_for_metric(uow: Any, metric: str) -> list[Price]:
    """Every price (active or not) that meters ``metric``: how billing tells a known metric from an unknown one."""
    return [_price(r) for r in uow.all(f"SELECT {_PRICE_COLS} FROM catalog_price WHERE metric = ? ORDER BY price_id",
                                       (metric,))]


# --------------------------------------------------------------------------- products


@payload
class ProductCreate:
    sku: str
    name: str
    treatment: str
    tax_code: str | None = None
    ssp: Decimal | None = None
    revenue_role: str | None = None
    ssp_currency: str | None = None
    family: str | None = None
    description: str | None = None
    active: bool = True


def _product_row(p: Product, description: str | None) -> tuple[Any, ...]:
    return (p.sku, p.name, p.treatment, p.tax_code, None if p.ssp is None else dec_str(p.ssp), p.ssp_currency,
            p.revenue_role, p.family, description, p.active)


@command("product.create", ProductCreate, roles=CATALOG_ROLES, summary="Create a product (revenue treatment, tax code, SSP)")
def product_create(uow: Any, cmd: ProductCreate) -> dict[str, Any]:
    problems = check_product(cmd.sku, cmd.name, cmd.treatment, cmd.ssp, cmd.ssp_currency)
    raise_problems(problems, f"product {cmd.sku}")
    product = Product(sku=cmd.sku, name=cmd.name.strip(), treatment=cmd.treatment, tax_code=cmd.tax_code or DEFAULT_TAX_CODE,
                      ssp=cmd.ssp, ssp_currency=cmd.ssp_currency, revenue_role=cmd.revenue_role, family=cmd.family,
                      active=cmd.active)
    existing = uow.one(f"SELECT {_PRODUCT_COLS} FROM catalog_product WHERE sku = ?", (cmd.sku,))
    if existing is not None:
        if _product(existing) == product:
            return {"sku": cmd.sku, "created": False, **product.to_dict()}
        raise ConflictError(f"product {cmd.sku!r} already exists with other fields; change it with product.update",
                            field="sku", record=cmd.sku)
    now = uow.now()
    uow.execute(
        "INSERT INTO catalog_product (sku, name, treatment, tax_code, ssp, ssp_currency, revenue_role, family,"
        " description, active, source, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (*_product_row(product, cmd.description), uow.source, now, now),
    )
    uow.invalidate("catalog.product", cmd.sku)
    uow.emit("product.created", "product", cmd.sku, product.to_dict())
    return {"sku": cmd.sku, "created": True, **product.to_dict()}


@payload
class ProductUpdate:
    sku: str
    name: str | None = None
    treatment: str | None = None
    tax_code: str | None = None
    ssp: Decimal | None = None
    revenue_role: str | None = None
    ssp_currency: str | None = None
    family: str | None = None
    description: str | None = None
    active: bool | None = None


@command("product.update", ProductUpdate, roles=CATALOG_ROLES,
         summary="Change a product (name, tax code, SSP, active...); contracts keep what they were sold with")
def product_update(uow: Any, cmd: ProductUpdate) -> dict[str, Any]:
    old = get_product(uow, cmd.sku)
    changes = {k: getattr(cmd, k) for k in ("name", "treatment", "tax_code", "ssp", "revenue_role", "ssp_currency",
                                             "family", "active") if getattr(cmd, k) is not None}
    new = replace(old, **changes)
    raise_problems(check_product(new.sku, new.name, new.treatment, new.ssp, new.ssp_currency), f"product {cmd.sku}")
    if new == old and cmd.description is None:
        return {"sku": cmd.sku, "changed": False, **new.to_dict()}
    uow.execute(
        "UPDATE catalog_product SET name = ?, treatment = ?, tax_code = ?, ssp = ?, ssp_currency = ?,"
        " revenue_role = ?, family = ?, active = ?, updated_at = ?"
        + (", description = ?" if cmd.description is not None else "") + " WHERE sku = ?",
        (new.name, new.treatment, new.tax_code, None if new.ssp is None else dec_str(new.ssp), new.ssp_currency,
         new.revenue_role, new.family, new.active, uow.now(),
         *((cmd.description,) if cmd.description is not None else ()), cmd.sku),
    )
    uow.invalidate("catalog.product", cmd.sku)
    before = old.to_dict()
    after = new.to_dict()
    uow.emit("product.updated", "product", cmd.sku,
             {**after, "changed": {k: {"before": before[k], "after": after[k]} for k in after if before[k] != after[k]}})
    return {"sku": cmd.sku, "changed": True, **after}


# --------------------------------------------------------------------------- prices


@payload
class TierIn:
    unit_amount: Decimal
    up_to: Decimal | None = None
    flat_amount: Decimal | None = None


@payload
class PriceCreate:
    price_id: str
    sku: str
    currency: str
    model: str
    period: str
    timing: str
    amount: Decimal | None = None
    tiers: tuple[TierIn, ...] | None = None
    package_size: int | None = None
    metric: str | None = None
    aggregation: str | None = None
    aggregation_property: str | None = None
    description: str | None = None
    active: bool = True


def terms_from_command(cmd: PriceCreate) -> tuple[PriceTerms, list[Problem]]:
    problems: list[Problem] = []
    tiers = tiers_from([{"up_to": t.up_to, "unit_amount": t.unit_amount, "flat_amount": t.flat_amount}
                        for t in cmd.tiers or ()], problems)
    aggregation = cmd.aggregation
    if cmd.metric is not None and aggregation is None:
        aggregation = "sum"
    terms = PriceTerms(model=cmd.model, currency=cmd.currency, period=cmd.period, timing=cmd.timing,
                       amount=cmd.amount, tiers=tiers, package_size=cmd.package_size, metric=cmd.metric,
                       aggregation=aggregation, aggregation_property=cmd.aggregation_property,
                       price_id=cmd.price_id)
    return terms, problems + check_terms(terms)


@command("price.create", PriceCreate, roles=CATALOG_ROLES,
         summary="Create a price of a product in one currency (flat, per_unit, tiered, volume, package, usage)")
def price_create(uow: Any, cmd: PriceCreate) -> dict[str, Any]:
    record = f"price {cmd.price_id}"
    if not cmd.price_id or len(cmd.price_id) > 64 or any(c.isspace() for c in cmd.price_id):
        raise ValidationError(f"{record}: price_id must be 1-64 characters without spaces", field="price_id")
    terms, problems = terms_from_command(cmd)
    raise_problems(problems, record)
    product = get_product(uow, cmd.sku, record=record)
    if not product.active:
        raise ValidationError(f"{record}: product {cmd.sku} is inactive; reactivate it with product.update first",
                              field="sku", record=cmd.price_id, sku=cmd.sku)
    price = Price(price_id=cmd.price_id, sku=cmd.sku, terms=terms, active=cmd.active, description=cmd.description)
    existing = uow.one(f"SELECT {_PRICE_COLS} FROM catalog_price WHERE price_id = ?", (cmd.price_id,))
    if existing is not None:
        found = _price(existing)
        if found.sku == price.sku and found.terms.to_dict() == price.terms.to_dict():
            return {"created": False, **found.to_dict()}
        raise ConflictError(f"{record} already exists with other terms; prices do not change once created:"
                            " create a new price_id", field="price_id", record=cmd.price_id)
    now = uow.now()
    uow.execute(
        f"INSERT INTO catalog_price ({_PRICE_COLS}, source, created_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (cmd.price_id, cmd.sku, terms.currency, terms.model, None if terms.amount is None else dec_str(terms.amount),
         dumps([t.to_dict() for t in terms.tiers]) if terms.tiers else None, terms.package_size, terms.period,
         terms.timing, terms.metric, terms.aggregation, terms.aggregation_property, cmd.active, cmd.description,
         uow.source, now, now),
    )
    uow.invalidate("catalog.price", cmd.price_id)
    uow.emit("price.created", "price", cmd.price_id, {**price.to_dict(), "treatment": product.treatment})
    return {"created": True, **price.to_dict()}


@payload
class PriceDeactivate:
    price_id: str


@command("price.deactivate", PriceDeactivate, roles=CATALOG_ROLES,
         summary="Retire a price: no new quote may use it; existing contracts keep it")
def price_deactivate(uow: Any, cmd: PriceDeactivate) -> dict[str, Any]:
    price = get_price(uow, cmd.price_id)
    if not price.active:
        return {"price_id": cmd.price_id, "active": False, "changed": False}
    uow.execute("UPDATE catalog_price SET active = ?, updated_at = ? WHERE price_id = ?", (False, uow.now(), cmd.price_id))
    uow.invalidate("catalog.price", cmd.price_id)
    uow.emit("price.deactivated", "price", cmd.price_id, {"price_id": cmd.price_id, "sku": price.sku})
    return {"price_id": cmd.price_id, "active": False, "changed": True}


# --------------------------------------------------------------------------- queries


@payload
class ProductQuery:
    sku: str


@query("product", ProductQuery, summary="A product with its prices")
def product_query(uow: Any, q: ProductQuery) -> dict[str, Any]:
    product = get_product(uow, q.sku)
    return {**product.to_dict(), "prices": [p.to_dict() for p in find_prices(uow, q.sku, active_only=False)]}


@payload
class ProductsQuery:
    active: bool | None = None
    treatment: str | None = None


@query("products", ProductsQuery, summary="The product catalogue")
def products_query(uow: Any, q: ProductsQuery) -> dict[str, Any]:
    rows = [_product(r) for r in uow.all(f"SELECT {_PRODUCT_COLS} FROM catalog_product ORDER BY sku")]
    items = [p.to_dict() for p in rows if (q.active is None or p.active == q.active)
             and (q.treatment is None or p.treatment == q.treatment)]
    return {"count": len(items), "items": items}


@payload
class PriceQuery:
    price_id: str


@query("price", PriceQuery, summary="A price")
def price_query(uow: Any, q: PriceQuery) -> dict[str, Any]:
    return get_price(uow, q.price_id).to_dict()


@payload
class PricesQuery:
    sku: str | None = None
    currency: str | None = None
    active: bool | None = None
    metric: str | None = None


@query("prices", PricesQuery, summary="Prices, by product, currency, metric")
def prices_query(uow: Any, q: PricesQuery) -> dict[str, Any]:
    sql = f"SELECT {_PRICE_COLS} FROM catalog_price WHERE 1 = 1"
    params: list[Any] = []
    for column, value in (("sku", q.sku), ("currency", q.currency), ("metric", q.metric)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    if q.active is not None:
        sql += " AND active = ?"
        params.append(q.active)
    items = [_price(r).to_dict() for r in uow.all(sql + " ORDER BY price_id", params)]
    return {"count": len(items), "items": items}


@payload
class RateQuery:
    price_id: str
    quantity: Decimal
    discount_pct: Decimal | None = None


@query("rate", RateQuery, summary="Rate a quantity with a price: the amount and how it is made up")
def rate_query(uow: Any, q: RateQuery) -> dict[str, Any]:
    price = get_price(uow, q.price_id)
    d = check_discount(q.discount_pct)
    amount = rate(price.terms, q.quantity, discount_pct=d)
    return {
        "price_id": q.price_id, "currency": price.terms.currency, "quantity": dec_str(Decimal(q.quantity)),
        "discount_pct": dec_str(d), "amount": format_minor(amount, price.terms.currency),
        "parts": [{"description": p.description, "quantity": dec_str(p.quantity), "unit_amount": dec_str(p.unit_amount),
                   "flat_amount": dec_str(p.flat_amount), "amount": dec_str(p.amount)}
                  for p in breakdown(price.terms, q.quantity)],
    }
