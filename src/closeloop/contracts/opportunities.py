"""CRM opportunities into quotes: ``opportunity.upsert``, the CRM webhook and Salesforce CSV/JSON imports.

A closed-won opportunity becomes a quote through the mapping (config/opportunity_mapping.yaml:
won stages, product codes, price books, quote id pattern, quote defaults). One that cannot
convert (unknown customer or product, no price in its currency, an inactive product, no lines,
a currency its entity cannot bill...) is stored with status ``unconvertible`` and opens one
``opportunity_unconvertible`` exception naming every reason; nothing is dropped. Upserting it again
once the data is fixed, or resolving the exception with ``retry``, converts it and closes the
exception. A won opportunity whose quote exists (not accepted yet) updates that quote: a new
version, back to pending approval where rules apply.

Commands: ``opportunity.upsert``, ``opportunity.webhook``, ``opportunity.import``.
Queries: ``opportunity``, ``opportunities``, ``opportunity_import_preview``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from closeloop.catalog.service import find_prices, get_price, get_product
from closeloop.contracts import salesforce
from closeloop.contracts.pricing import LineSpec, QuoteSpec
from closeloop.contracts.service import create_quote, require_owner, update_quote
from closeloop.core import governance
from closeloop.core.boundary import check_tree
from closeloop.core.errors import CloseloopError, NotFoundError, NotOwnerError, ValidationError
from closeloop.core.exception_queue import close_exception, on_resolve, open_exception
from closeloop.core.money import check_currency
from closeloop.core.periods import parse_date
from closeloop.core.registry import command, payload, query
from closeloop.core.uow import dumps

OPPORTUNITY_ROLES = ("sales_ops", "implementation", "admin")
MAPPING_KEYS = {"version", "won_stages", "lost_stages", "quote_id", "defaults", "products", "price_books",
                "customer_prefix", "salesforce"}


def validate_mapping(doc: Any, name: str) -> list[str]:
    errors: list[str] = []
    if not isinstance(doc, dict):
        return [f"{name}: a mapping"]
    for key in sorted(set(doc) - MAPPING_KEYS):
        errors.append(f"{name}: unknown key {key!r}")
    for key in ("won_stages", "lost_stages"):
        if not isinstance(doc.get(key), list) or not all(isinstance(s, str) for s in doc[key]):
            errors.append(f"{name}: {key} must be a list of stage names")
    if not isinstance(doc.get("quote_id"), str) or "{external_id}" not in doc["quote_id"]:
        errors.append(f"{name}: quote_id must be a pattern containing {{external_id}}")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults.get("term_months"), int) or defaults["term_months"] < 1:
        errors.append(f"{name}: defaults.term_months must be a whole number of months")
    if defaults.get("start", "close_date") not in ("close_date", "day_after_close"):
        errors.append(f"{name}: defaults.start must be close_date or day_after_close")
    if not isinstance(doc.get("products") or {}, dict):
        errors.append(f"{name}: products maps CRM product codes to skus")
    books = doc.get("price_books") or {}
    if not isinstance(books, dict) or not all(isinstance(v, dict) and all(isinstance(c, dict) for c in v.values())
                                              for v in books.values()):
        errors.append(f"{name}: price_books maps a price book to {{sku: {{currency: price_id}}}}")
    sf = doc.get("salesforce") or {}
    for section, keys in (("opportunity", ("external_id", "customer", "stage", "close_date", "currency")),
                          ("line_item", ("opportunity", "product_code", "quantity"))):
        found = sf.get(section) or {}
        for k in keys:
            if not isinstance(found.get(k), list) or not found[k]:
                errors.append(f"{name}: salesforce.{section}.{k} must list the field names to read")
    return errors


@lru_cache(maxsize=1)
def shipped_mapping() -> dict[str, Any]:
    doc = yaml.safe_load((resources.files("closeloop") / "config" / "opportunity_mapping.yaml").read_text("utf-8"))
    errors = validate_mapping(doc, "config/opportunity_mapping.yaml")
    if errors:
        raise RuntimeError("invalid opportunity mapping: " + "; ".join(errors))
    return doc  # type: ignore[no-any-return]


def mapping_for(services: Any, override: str | None = None) -> dict[str, Any]:
    """The shipped mapping, overlaid key by key with ``services.config["opportunity_mapping"]`` (a
    document) or the YAML file ``override``."""
    doc = json.loads(json.dumps(shipped_mapping()))
    extra: Any = None
    if override:
        try:
            extra = yaml.safe_load(Path(override).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValidationError(f"mapping file {override}: {exc}", field="mapping") from None
    else:
        extra = (getattr(services, "config", None) or {}).get("opportunity_mapping")
    if extra:
        if not isinstance(extra, dict):
            raise ValidationError("an opportunity mapping is a YAML mapping", field="mapping")
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(doc.get(key), dict):
                doc[key] = {**doc[key], **value}
            else:
                doc[key] = value
        errors = validate_mapping(doc, override or "opportunity_mapping")
        if errors:
            raise ValidationError("invalid opportunity mapping: " + "; ".join(errors), field="mapping")
    return doc


# --------------------------------------------------------------------------- payloads


@payload
class OpportunityLineIn:
    sku: str
    quantity: Decimal
    price_id: str | None = None
    unit_amount: Decimal | None = None
    discount_pct: Decimal | None = None
    line_id: str | None = None
    list_amount: Decimal | None = None


@payload
class OpportunityUpsert:
    external_id: str
    customer: str
    stage: str
    close_date: str
    currency: str
    lines: tuple[OpportunityLineIn, ...] = ()
    name: str | None = None
    amount: Decimal | None = None
    price_book: str | None = None
    term_months: int | None = None
    start: str | None = None
    billing_day: int | None = None
    auto_renew: bool | None = None
    entity: str | None = None


def _as_dict(cmd: OpportunityUpsert) -> dict[str, Any]:
    """The opportunity as stored: plain JSON, optional fields left out when not given."""
    out: dict[str, Any] = {"external_id": cmd.external_id, "customer": cmd.customer, "stage": cmd.stage,
                           "close_date": cmd.close_date, "currency": cmd.currency, "lines": []}
    for name in ("name", "price_book", "term_months", "start", "billing_day", "auto_renew", "entity"):
        if getattr(cmd, name) is not None:
            out[name] = getattr(cmd, name)
    if cmd.amount is not None:
        out["amount"] = str(cmd.amount)
    for ln in cmd.lines:
        item: dict[str, Any] = {"sku": ln.sku, "quantity": str(ln.quantity)}
        for name in ("price_id", "line_id"):
            if getattr(ln, name) is not None:
                item[name] = getattr(ln, name)
        for name in ("unit_amount", "discount_pct", "list_amount"):
            if getattr(ln, name) is not None:
                item[name] = str(getattr(ln, name))
        out["lines"].append(item)
    return out


def _from_dict(data: Mapping[str, Any]) -> OpportunityUpsert:
    from pydantic import TypeAdapter

    return TypeAdapter(OpportunityUpsert).validate_python(dict(data))


# --------------------------------------------------------------------------- conversion


@dataclass(frozen=True, slots=True)
class Conversion:
    spec: QuoteSpec | None
    reasons: tuple[str, ...]


def _price_for(uow: Any, sku: str, currency: str, book: str | None, mapping: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(price_id, reason it cannot be found)."""
    books = mapping.get("price_books") or {}
    if book is not None and book in books:
        chosen = (books[book].get(sku) or {}).get(currency)
        if chosen:
            return chosen, None
    candidates = find_prices(uow, sku, currency)
    in_book = f"price book {book} has no {currency} price for {sku} and " if book in books else ""
    if not candidates:
        return None, f"{in_book}product {sku} has no active price in {currency}"
    if len(candidates) > 1:
        fixed = [p for p in candidates if not p.terms.metered]
        if len(fixed) == 1:
            return fixed[0].price_id, None
        return None, (f"{in_book}product {sku} has {len(candidates)} prices in {currency} "
                      f"({', '.join(p.price_id for p in candidates)}); name one (price_id) or map a price book")
    return candidates[0].price_id, None


def plan_conversion(uow: Any, opp: Mapping[str, Any], mapping: Mapping[str, Any]) -> Conversion:
    """The quote an opportunity maps to, or every reason it cannot. Reads only."""
    reasons: list[str] = []
    customer = f"{opp['customer']}"
    try:
        from closeloop.customers.service import get_customer

        c = get_customer(uow, customer)
        if c.status == "inactive":
            reasons.append(f"customer {customer} is inactive")
    except NotFoundError:
        reasons.append(f"unknown customer {customer}")
    if not opp.get("lines"):
        reasons.append("the opportunity has no line items")
    currency = opp["currency"]
    specs = []
    products = mapping.get("products") or {}
    for i, ln in enumerate(opp.get("lines") or ()):
        sku = products.get(ln["sku"], ln["sku"])
        try:
            product = get_product(uow, sku)
        except NotFoundError:
            reasons.append(f"line {i + 1}: unknown product {ln['sku']}"
                           + (f" (mapped to {sku})" if sku != ln["sku"] else ""))
            continue
        if not product.active:
            reasons.append(f"line {i + 1}: product {sku} is inactive")
            continue
        price_id = ln.get("price_id")
        if price_id is not None:
            try:
                price = get_price(uow, price_id)
            except NotFoundError:
                reasons.append(f"line {i + 1}: unknown price {price_id}")
                continue
            if price.sku != sku:
                reasons.append(f"line {i + 1}: price {price_id} is a price of {price.sku}, not {sku}")
                continue
        else:
            price_id, why = _price_for(uow, sku, currency, opp.get("price_book"), mapping)
            if why:
                reasons.append(f"line {i + 1}: {why}")
                continue
            price = get_price(uow, str(price_id))
        if price.terms.currency != currency:
            reasons.append(f"line {i + 1}: price {price_id} is in {price.terms.currency}, the opportunity in {currency}")
            continue
        unit = Decimal(ln["unit_amount"]) if ln.get("unit_amount") is not None else None
        list_amount = price.terms.amount
        if unit is not None and (not price.terms.has_unit_amount or unit == list_amount
                                 or (ln.get("list_amount") is not None and Decimal(ln["list_amount"]) == unit)):
            unit = None  # the CRM's sales price is the list price (or the model has no unit price)
        specs.append(LineSpec(line_id=ln.get("line_id") or f"L{i + 1}", price_id=str(price_id),
                              quantity=Decimal(ln["quantity"]),
                              discount_pct=Decimal(ln["discount_pct"]) if ln.get("discount_pct") else None,
                              unit_amount=unit))
    if reasons:
        return Conversion(None, tuple(reasons))
    defaults = mapping.get("defaults") or {}
    close = parse_date(opp["close_date"], field="close_date")
    start = opp.get("start") or (close + timedelta(days=1) if defaults.get("start") == "day_after_close"
                                 else close).isoformat()
    spec = QuoteSpec(
        quote_id=mapping["quote_id"].format(external_id=opp["external_id"]), customer=customer, start=start,
        term_months=int(opp.get("term_months") or defaults.get("term_months") or 12), lines=tuple(specs),
        entity=opp.get("entity"), currency=currency, billing_day=opp.get("billing_day"),
        auto_renew=bool(opp.get("auto_renew", defaults.get("auto_renew", False))), opportunity=opp["external_id"],
        name=opp.get("name"))
    return Conversion(spec, ())


def _entity_of(uow: Any, opp: Mapping[str, Any]) -> str | None:
    """The selling entity an opportunity belongs to, as far as it can be told (for the exception queue)."""
    if opp.get("entity"):
        return str(opp["entity"])
    try:
        from closeloop.customers.service import get_customer

        entity = get_customer(uow, str(opp["customer"])).entity
        if entity:
            return str(entity)
    except NotFoundError:
        pass
    from closeloop.core.entities import list_entities

    found = list_entities(uow)
    return found[0].code if len(found) == 1 else None


def _dedup(external_id: str) -> str:
    return f"opportunity_unconvertible:{external_id}"


def convert(uow: Any, opp: Mapping[str, Any], mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a won opportunity into its quote (create or update); on failure open the exception."""
    ext = opp["external_id"]
    plan = plan_conversion(uow, opp, mapping)
    reasons = list(plan.reasons)
    result: dict[str, Any] = {}
    if plan.spec is not None:
        spec = plan.spec
        try:
            row = uow.one("SELECT status, contract_id, opportunity FROM contracts_quote WHERE quote_id = ?",
                          (spec.quote_id,))
            if row is None:
                result = create_quote(uow, spec)
                result = {"quote_id": spec.quote_id, "quote_status": result["status"], "quote_version": 1}
            elif row[2] != ext:
                reasons.append(f"quote {spec.quote_id} already exists for another opportunity ({row[2]})")
            elif row[0] == "accepted":
                result = {"quote_id": spec.quote_id, "quote_status": "accepted", "contract_id": row[1],
                          "warning": f"quote {spec.quote_id} is already accepted as contract {row[1]}: the"
                                     " opportunity's changes are not applied; amend the contract"}
            else:
                fields = {k: getattr(spec, k) for k in ("customer", "start", "term_months", "lines", "entity",
                                                        "currency", "billing_day", "auto_renew", "name")}
                updated = update_quote(uow, spec.quote_id, fields)
                result = {"quote_id": spec.quote_id, "quote_status": updated["status"],
                          "quote_version": updated["version"]}
        except NotOwnerError:
            raise
        except CloseloopError as exc:
            reasons.append(exc.message)
    if reasons:
        text = f"opportunity {ext} cannot become a quote: " + "; ".join(reasons)
        exc_id = open_exception(uow, "opportunity_unconvertible", record_type="opportunity", record_id=ext,
                                message=text, entity=_entity_of(uow, opp),
                                details={"reasons": reasons, "customer": opp["customer"],
                                         "currency": opp["currency"]},
                                dedup_key=_dedup(ext))
        uow.execute("UPDATE contracts_opportunity SET status = 'unconvertible', reason = ?, updated_at = ?"
                    " WHERE external_id = ?", (text, uow.now(), ext))
        uow.emit("opportunity.unconvertible", "opportunity", ext, {"external_id": ext, "reasons": reasons,
                 "exception": exc_id})
        return {"status": "unconvertible", "reasons": reasons, "exception": exc_id}
    uow.execute("UPDATE contracts_opportunity SET status = 'converted', quote_id = ?, reason = NULL, updated_at = ?"
                " WHERE external_id = ?", (result["quote_id"], uow.now(), ext))
    open_row = uow.one("SELECT id FROM exception_item WHERE dedup_key = ? AND status = 'open'", (_dedup(ext),))
    if open_row is not None:
        close_exception(uow, int(open_row[0]), "converted", f"opportunity {ext} converted into quote"
                                                            f" {result['quote_id']}")
    uow.emit("opportunity.converted", "opportunity", ext, {"external_id": ext, **result})
    return {"status": "converted", **result}


# --------------------------------------------------------------------------- upsert


GOVERNED = ("customer", "stage", "close_date", "currency", "lines", "amount", "name", "price_book", "term_months",
            "start", "billing_day", "auto_renew", "entity")


def _check(cmd: OpportunityUpsert) -> None:
    problems = []
    if not cmd.external_id.strip() or len(cmd.external_id) > 128:
        problems.append("external_id must be 1-128 characters")
    if not cmd.stage.strip():
        problems.append("stage must not be empty")
    texts = [("customer", cmd.customer, 128), ("stage", cmd.stage, 64), ("name", cmd.name, 255),
             ("price_book", cmd.price_book, 128), ("entity", cmd.entity, 16)]
    texts += [(f"lines[{i}].{k}", getattr(ln, k), 128) for i, ln in enumerate(cmd.lines)
              for k in ("sku", "price_id", "line_id")]
    for what, value, most in texts:
        if value is not None and len(value) > most:
            problems.append(f"{what} is longer than {most} characters ({len(value):,})")
    try:
        parse_date(cmd.close_date, field="close_date")
    except ValidationError:
        problems.append(f"close_date {cmd.close_date!r} is not a date (YYYY-MM-DD)")
    try:
        check_currency(cmd.currency)
    except ValidationError:
        problems.append(f"currency {cmd.currency!r} is not an ISO 4217 code")
    if cmd.start is not None:
        try:
            parse_date(cmd.start, field="start")
        except ValidationError:
            problems.append(f"start {cmd.start!r} is not a date")
    for i, ln in enumerate(cmd.lines):
        if ln.quantity < 0:
            problems.append(f"lines[{i}].quantity must not be negative")
    if problems:
        raise ValidationError(f"opportunity {cmd.external_id}: " + "; ".join(problems), field="opportunity",
                              record=cmd.external_id, problems=problems)


def upsert_opportunity(uow: Any, cmd: OpportunityUpsert, mapping: Mapping[str, Any]) -> dict[str, Any]:
    _check(cmd)
    data = _as_dict(cmd)
    ext = cmd.external_id
    row = uow.one(f"SELECT payload, status, quote_id, version FROM contracts_opportunity WHERE external_id = ?"
                  f"{uow.for_update()}", (ext,))
    now = uow.now()
    won = cmd.stage in mapping["won_stages"]
    lost = cmd.stage in mapping["lost_stages"]
    if row is None:
        status = "lost" if lost else "open"
        uow.execute(
            "INSERT INTO contracts_opportunity (external_id, source, customer, stage, close_date, currency, payload,"
            " status, quote_id, reason, version, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,NULL,NULL,1,?,?)",
            (ext, uow.source, cmd.customer, cmd.stage, cmd.close_date, cmd.currency, dumps(data), status, now, now))
        uow.emit("opportunity.created", "opportunity", ext, {**data, "status": status})
        outcome = "created"
    else:
        old = json.loads(row[0])
        changes = {k: (old.get(k), data.get(k)) for k in GOVERNED if old.get(k) != data.get(k)}
        status = row[1]
        if not changes:
            if won and status in ("unconvertible", "open"):
                return {"external_id": ext, "outcome": "unchanged", "stage": cmd.stage,
                        **convert(uow, data, mapping)}
            return {"external_id": ext, "outcome": "unchanged", "stage": cmd.stage, "status": status,
                    "quote_id": row[2]}
        require_owner(uow, "opportunity", ext, changes)
        if lost and status != "converted":
            status = "lost"
        elif not won and status in ("unconvertible", "lost"):
            status = "open"
        uow.execute("UPDATE contracts_opportunity SET customer = ?, stage = ?, close_date = ?, currency = ?,"
                    " payload = ?, status = ?, version = version + 1, updated_at = ? WHERE external_id = ?",
                    (cmd.customer, cmd.stage, cmd.close_date, cmd.currency, dumps(data), status, now, ext))
        uow.emit("opportunity.updated", "opportunity", ext, {**data, "status": status,
                 "changed": sorted(changes)})
        outcome = "updated"
    if won:
        return {"external_id": ext, "outcome": outcome, "stage": cmd.stage, **convert(uow, data, mapping)}
    if status in ("open", "lost"):
        open_row = uow.one("SELECT id FROM exception_item WHERE dedup_key = ? AND status = 'open'", (_dedup(ext),))
        if open_row is not None:
            close_exception(uow, int(open_row[0]), "accept", f"opportunity {ext} is no longer closed-won ({cmd.stage})")
    return {"external_id": ext, "outcome": outcome, "stage": cmd.stage, "status": status,
            "quote_id": None if row is None else row[2]}


@command("opportunity.upsert", OpportunityUpsert, roles=OPPORTUNITY_ROLES,
         summary="Create or update a CRM opportunity; a closed-won one becomes a quote through the mapping")
def opportunity_upsert(uow: Any, cmd: OpportunityUpsert) -> dict[str, Any]:
    return upsert_opportunity(uow, cmd, mapping_for(uow.services))


@on_resolve("opportunity_unconvertible", "retry")
def _retry(uow: Any, item: dict[str, Any], cmd: Any) -> dict[str, Any]:
    ext = next(iter(item["record"].values()))
    row = uow.one("SELECT payload FROM contracts_opportunity WHERE external_id = ?", (ext,))
    if row is None:
        raise NotFoundError(f"opportunity {ext} no longer exists", field="exception", record=ext)
    data = json.loads(row[0])
    plan = plan_conversion(uow, data, mapping_for(uow.services))
    if plan.reasons:
        raise ValidationError(f"opportunity {ext} still cannot become a quote: " + "; ".join(plan.reasons),
                              field="exception", record=ext, reasons=list(plan.reasons))
    out = convert(uow, data, mapping_for(uow.services))
    if out["status"] != "converted":
        raise ValidationError(f"opportunity {ext} still cannot become a quote: " + "; ".join(out["reasons"]),
                              field="exception", record=ext)
    return {"quote_id": out["quote_id"]}


# --------------------------------------------------------------------------- webhook


@payload
class OpportunityWebhook:
    body: dict[str, Any]
    format: str = "salesforce"


def _reject(uow: Any, where: str, message: str, details: dict[str, Any]) -> None:
    uow.keep_on_failure(lambda u: open_exception(
        u, "import_rejected", record_type="import_row", record_id=where, message=message, details=details,
        dedup_key=f"import_rejected:{where}"))


@command("opportunity.webhook", OpportunityWebhook, roles=OPPORTUNITY_ROLES,
         summary="Receive a CRM opportunity (Salesforce sObject JSON with its line items) and upsert it")
def opportunity_webhook(uow: Any, cmd: OpportunityWebhook) -> dict[str, Any]:
    if cmd.format != "salesforce":
        raise ValidationError(f"webhook format {cmd.format!r} is not supported (salesforce)", field="format")
    if uow.source in ("closeloop", "system"):
        uow.source = "crm"
    mapping = mapping_for(uow.services)
    check_tree(cmd.body, record="opportunity webhook body")  # depth, numbers beyond 64 bits, NUL, surrogates
    opp, items, item_problems = salesforce.webhook_records(cmd.body)
    data, problems = salesforce.opportunity_payload(opp, items, mapping)
    problems = item_problems + problems
    if problems:
        text = "; ".join(f"{p['field']}: {p['reason']}" for p in problems)
        where = f"webhook:{data.get('external_id') or 'unknown'}"
        _reject(uow, where, f"CRM webhook for opportunity {data.get('external_id') or '?'} rejected: {text}",
                {"problems": problems})
        raise ValidationError(f"opportunity webhook rejected: {text}", field=problems[0]["field"], errors=problems)
    try:
        upsert = _from_dict(data)
    except Exception as exc:  # noqa: BLE001 - pydantic validation: report it as the webhook's problem
        raise ValidationError(f"opportunity webhook rejected: {exc}", field="body") from None
    return upsert_opportunity(uow, upsert, mapping)


# --------------------------------------------------------------------------- file import


def _read(path: str) -> list[salesforce.Record]:
    from closeloop.customers.importers import decode

    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ValidationError(f"file {path} does not exist", field="file", record=path) from None
    except IsADirectoryError:
        raise ValidationError(f"{path} is a folder, not a file", field="file", record=path) from None
    text, _encoding = decode(raw, Path(path).name)
    if text.lstrip().startswith(("{", "[")):
        return salesforce.read_json_records(text, Path(path).name)
    return salesforce.read_csv_records(text, Path(path).name)


def plan_import(uow: Any, file: str, line_items: str | None, mapping: Mapping[str, Any]
                ) -> tuple[list[tuple[salesforce.Record, dict[str, Any]]], list[dict[str, Any]]]:
    """(valid opportunities with their source record, rejected rows with their problems)."""
    opps = _read(file)
    items_by_opp: dict[str, list[Mapping[str, Any]]] = {}
    names = mapping["salesforce"]["line_item"]["opportunity"]
    rejected: list[dict[str, Any]] = []
    if line_items:
        for rec in _read(line_items):
            key = salesforce.lookup(rec.fields, names)
            if key is None:
                rejected.append({"file": rec.file, "row": rec.line, "external_id": None,
                                 "problems": [{"field": "opportunity", "reason": "line item without OpportunityId"}]})
                continue
            items_by_opp.setdefault(str(key), []).append(rec.fields)
    valid = []
    seen: set[str] = set()
    for rec in opps:
        ext = salesforce.lookup(rec.fields, mapping["salesforce"]["opportunity"]["external_id"])
        own = items_by_opp.pop(str(ext), []) if ext is not None else []
        _, nested, item_problems = salesforce.webhook_records(rec.fields)
        data, problems = salesforce.opportunity_payload(rec.fields, own + nested, mapping)
        problems = item_problems + problems
        if not problems:
            try:
                _check(_from_dict(data))
            except ValidationError as exc:
                problems = [{"field": "opportunity", "reason": p} for p in exc.details.get("problems", [exc.message])]
            except Exception as exc:  # noqa: BLE001
                problems = [{"field": "opportunity", "reason": str(exc).splitlines()[0]}]
        if not problems and data["external_id"] in seen:
            problems = [{"field": "external_id", "reason": f"opportunity {data['external_id']} appears twice"}]
        if problems:
            rejected.append({"file": rec.file, "row": rec.line, "external_id": data.get("external_id") or None,
                             "problems": problems})
            continue
        seen.add(data["external_id"])
        valid.append((rec, data))
    for key, orphans in items_by_opp.items():
        rejected.append({"file": Path(line_items or "").name, "row": None, "external_id": key,
                         "problems": [{"field": "opportunity",
                                       "reason": f"{len(orphans)} line item(s) of opportunity {key}, which is not in"
                                                 " the opportunities file"}]})
    return valid, rejected


@payload
class OpportunityImport:
    file: str
    line_items: str | None = None
    mapping: str | None = None
    accept_valid: bool = False
    source: str | None = None


def run_import(uow: Any, cmd: OpportunityImport, *, dry_run: bool) -> dict[str, Any]:
    if cmd.source:
        uow.source = cmd.source
    elif uow.source in ("closeloop", "system"):
        uow.source = "crm"
    mapping = mapping_for(uow.services, cmd.mapping)
    valid, rejected = plan_import(uow, cmd.file, cmd.line_items, mapping)
    report: dict[str, Any] = {"file": cmd.file, "line_items": cmd.line_items, "source": uow.source,
                              "opportunities": len(valid) + len([r for r in rejected if r["row"] is not None]),
                              "valid": len(valid), "rejected": rejected, "dry_run": dry_run}
    if dry_run:
        report["items"] = [{"external_id": d["external_id"], "stage": d["stage"], "lines": len(d["lines"]),
                            "won": d["stage"] in mapping["won_stages"]} for _, d in valid]
        return report
    if rejected and not cmd.accept_valid:
        first = rejected[0]
        p = first["problems"][0]
        raise ValidationError(
            f"import refused: {len(rejected)} row(s) rejected, nothing was imported (first: {first['file']} line"
            f" {first['row']}, {p['field']}: {p['reason']}); fix the file, or import the valid rows with"
            " accept_valid", field=p["field"], record=f"{first['file']}:{first['row']}", report=report)
    counts = {"created": 0, "updated": 0, "unchanged": 0, "converted": 0, "unconvertible": 0, "not_owner": 0}
    items = []
    reg = governance.registry(uow)
    for rec, data in valid:
        cmd_row = _from_dict(data)
        old = uow.one("SELECT payload FROM contracts_opportunity WHERE external_id = ?", (data["external_id"],))
        if old is not None:
            before = json.loads(old[0])
            changes = {k: (before.get(k), _as_dict(cmd_row).get(k)) for k in GOVERNED
                       if before.get(k) != _as_dict(cmd_row).get(k)}
            _allowed, refused = governance.decide(reg, "opportunity", changes, uow.source)
            if refused:
                governance.open_refusals(uow, reg, "opportunity", data["external_id"], refused, uow.source)
                counts["not_owner"] += 1
                items.append({"external_id": data["external_id"], "row": rec.line, "outcome": "not_owner",
                              "fields": sorted(refused)})
                continue
        out = upsert_opportunity(uow, cmd_row, mapping)
        counts[out["outcome"]] += 1
        if out.get("status") in ("converted", "unconvertible"):
            counts[out["status"]] += 1
        items.append({"row": rec.line, **{k: out.get(k) for k in ("external_id", "outcome", "status", "quote_id",
                                                                   "reasons")}})
    for r in rejected:
        text = "; ".join(f"{p['field']}: {p['reason']}" for p in r["problems"])
        open_exception(uow, "import_rejected", record_type="import_row", record_id=f"{r['file']}:{r['row']}",
                       message=f"{r['file']} line {r['row']} (opportunity {r['external_id'] or 'without id'}): {text}",
                       details={**r, "object": "opportunity"},
                       dedup_key=f"import_rejected:opportunity:{r['file']}:{r['row']}:{r['external_id']}")
    uow.emit("opportunity.imported", "opportunity_import", Path(cmd.file).name,
             {"file": Path(cmd.file).name, **counts, "rejected": len(rejected)})
    return {**report, **counts, "items": items}


@command("opportunity.import", OpportunityImport, roles=OPPORTUNITY_ROLES,
         summary="Import Salesforce Opportunity (+ OpportunityLineItem) exports; closed-won ones become quotes")
def opportunity_import(uow: Any, cmd: OpportunityImport) -> dict[str, Any]:
    return run_import(uow, cmd, dry_run=False)


@query("opportunity_import_preview", OpportunityImport,
       summary="What an opportunity import would do; writes nothing")
def opportunity_import_preview(uow: Any, q: OpportunityImport) -> dict[str, Any]:
    return run_import(uow, q, dry_run=True)


# --------------------------------------------------------------------------- queries


@payload
class OpportunityQuery:
    external_id: str


@query("opportunity", OpportunityQuery, summary="A CRM opportunity: stage, status, its quote or why it cannot convert")
def opportunity_query(uow: Any, q: OpportunityQuery) -> dict[str, Any]:
    row = uow.one("SELECT payload, status, quote_id, reason, version, source, updated_at FROM contracts_opportunity"
                  " WHERE external_id = ?", (q.external_id,))
    if row is None:
        raise NotFoundError(f"opportunity {q.external_id!r} does not exist", field="external_id",
                            record=q.external_id)
    data = json.loads(row[0])
    return {**data, "status": row[1], "quote_id": row[2], "reason": row[3], "version": int(row[4]),
            "source": row[5], "updated_at": row[6]}


@payload
class OpportunitiesQuery:
    status: str | None = None
    customer: str | None = None


@query("opportunities", OpportunitiesQuery, summary="CRM opportunities by status (open, lost, converted, unconvertible)")
def opportunities_query(uow: Any, q: OpportunitiesQuery) -> dict[str, Any]:
    sql = "SELECT external_id, customer, stage, close_date, currency, status, quote_id, reason FROM contracts_opportunity"
    where, params = [], []
    if q.status:
        where.append("status = ?")
        params.append(q.status)
    if q.customer:
        where.append("customer = ?")
        params.append(q.customer)
    rows = uow.all(sql + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY external_id", params)
    items = [{"external_id": r[0], "customer": r[1], "stage": r[2], "close_date": r[3], "currency": r[4],
              "status": r[5], "quote_id": r[6], "reason": r[7]} for r in rows]
    return {"count": len(items), "items": items}

