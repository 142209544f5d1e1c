"""Customer commands, queries and the hooks other areas use.

Public service functions (other areas import only these, never the tables):

- :func:`get_customer` (by external id; a merged id resolves to its survivor) and
  :func:`customer_by_id` return the frozen :class:`Customer`;
- :func:`register_balance_provider` lets billing and collections supply open and credit
  balances (the ``customer`` query and the hierarchy roll-up read them);
- :func:`register_reference_holder` lets an area that keeps customer references
  (contracts, invoices, payments) re-point them to the survivor inside the merge's
  transaction, put them back on unmerge, and say whether new ones exist since a merge.
  The ``customer.merged`` / ``customer.unmerged`` events carry the same facts for areas
  that prefer to react asynchronously.

Commands: ``customer.upsert``, ``customer.merge``, ``customer.unmerge``, ``customer.link``,
``contact.upsert``, ``customer.find_duplicates``, ``customer.dismiss_duplicate``.
Queries: ``customer``, ``customers``, ``customer_hierarchy``, ``customer_duplicates``,
``customer_history``, ``customer_quality``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from closeloop.core import governance
from closeloop.core.entities import get_entity
from closeloop.core.errors import ConflictError, NotFoundError, ValidationError
from closeloop.core.money import check_currency, format_minor
from closeloop.core.registry import Limit, Offset, command, payload, query
from closeloop.core.uow import dumps
from closeloop.customers import matching
from closeloop.customers.model import (
    DEFAULT_PAYMENT_TERMS_DAYS,
    FIELDS,
    SURVIVORSHIP_RULES,
    Checked,
    FieldOrigin,
    QualityInput,
    address_key,
    address_line,
    domain_of,
    name_key,
    quality_score,
    source_time,
    stale_fields,
    survive,
    validate_fields,
)
from closeloop.customers.model import ancestors as ancestors_of
from closeloop.customers.model import descendants as descendants_of

ENTITY_TYPE = "customer"

# --------------------------------------------------------------------------- the record


@dataclass(frozen=True, slots=True)
class Customer:
    """An account of the customer master.

    external_id: the id its creating source gave it (one namespace across sources)
    country: ISO 3166 alpha-2; region: ISO 3166-2 subdivision code where one matches
    tax_id: normalised (EU VAT with its country prefix); tax_id_valid: it passed its
        checksum (or, for a country without a validator, its format)
    tax_exempt / exemption_ref: exemption flag and its certificate reference
    entity: our legal entity that contracts with it; currency: its billing currency
    parent_id: the parent account (hierarchy); bill_to_id: the account invoices go to
        (None: itself)
    status: active, inactive or merged; merged_into: the survivor's id when merged
    """

    id: int
    external_id: str
    name: str
    country: str
    region: str | None
    postal_code: str | None
    tax_id: str | None
    tax_id_valid: bool
    tax_exempt: bool
    exemption_ref: str | None
    entity: str | None
    currency: str | None
    payment_terms_days: int
    email: str | None
    address: dict[str, Any] | None
    parent_id: int | None
    status: str
    merged_into: int | None
    phone: str | None = None
    website: str | None = None
    bill_to_id: int | None = None
    tax_id_check: str | None = None
    source: str = ""
    created_at: str = ""
    updated_at: str = ""
    version: int = 1


_COLUMNS = ("id, external_id, name, country, region, postal_code, tax_id, tax_id_valid, tax_exempt, exemption_ref,"
            " entity, currency, payment_terms_days, email, address, parent_id, status, merged_into, phone, website,"
            " bill_to_id, tax_id_check, source, created_at, updated_at, version")


def _from_row(row: Sequence[Any]) -> Customer:
    return Customer(
        id=int(row[0]), external_id=row[1], name=row[2], country=row[3], region=row[4], postal_code=row[5],
        tax_id=row[6], tax_id_valid=bool(row[7]), tax_exempt=bool(row[8]), exemption_ref=row[9], entity=row[10],
        currency=row[11], payment_terms_days=int(row[12]), email=row[13],
        address=json.loads(row[14]) if row[14] else None, parent_id=None if row[15] is None else int(row[15]),
        status=row[16], merged_into=None if row[17] is None else int(row[17]), phone=row[18], website=row[19],
        bill_to_id=None if row[20] is None else int(row[20]), tax_id_check=row[21], source=row[22],
        created_at=row[23], updated_at=row[24], version=int(row[25]),
    )


def _row_by_external_id(uow: Any, external_id: str) -> Customer | None:
    row = uow.one(f"SELECT {_COLUMNS} FROM customer WHERE external_id = ?", (external_id,))
    if row is None:
        alias = uow.one("SELECT customer_id FROM customer_external_id WHERE external_id = ?", (external_id,))
        if alias is None:
            return None
        row = uow.one(f"SELECT {_COLUMNS} FROM customer WHERE id = ?", (int(alias[0]),))
    return None if row is None else _from_row(row)


def _row_by_id(uow: Any, customer_id: int) -> Customer | None:
    row = uow.one(f"SELECT {_COLUMNS} FROM customer WHERE id = ?", (customer_id,))
    return None if row is None else _from_row(row)


def _follow(uow: Any, found: Customer) -> Customer:
    seen = {found.id}
    while found.status == "merged" and found.merged_into is not None:
        nxt = _row_by_id(uow, found.merged_into)
        if nxt is None or nxt.id in seen:
            break
        seen.add(nxt.id)
        found = nxt
    return found


def get_customer(uow: Any, external_id: str, *, follow_merge: bool = True, field: str = "customer") -> Customer:
    """The account with this external id (or alias). A merged id resolves to its survivor unless
    ``follow_merge`` is false. Raises :class:`NotFoundError` naming the id."""
    found = _row_by_external_id(uow, str(external_id))
    if found is None:
        raise NotFoundError(f"customer {external_id!r} does not exist", field=field, record=str(external_id))
    return _follow(uow, found) if follow_merge else found


def customer_by_id(uow: Any, customer_id: int) -> Customer:
    found = _row_by_id(uow, int(customer_id))
    if found is None:
        raise NotFoundError(f"customer id {customer_id} does not exist", field="customer", record=str(customer_id))
    return found


def external_ids(uow: Any, customer_ids: Iterable[int]) -> dict[int, str]:
    ids = sorted(set(customer_ids))
    out: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for cid, ext in uow.all(f"SELECT id, external_id FROM customer WHERE id IN ({marks})", chunk):
            out[int(cid)] = ext
    return out


def field_values(uow: Any, c: Customer, refs: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The governed fields of an account as customer.upsert names them (parent/bill_to as external ids)."""
    wanted = [x for x in (c.parent_id, c.bill_to_id) if x is not None]
    refs = refs if refs is not None else (external_ids(uow, wanted) if wanted else {})
    return {
        "name": c.name, "country": c.country, "region": c.region, "postal_code": c.postal_code,
        "address": c.address, "email": c.email, "phone": c.phone, "website": c.website, "tax_id": c.tax_id,
        "tax_exempt": c.tax_exempt, "exemption_ref": c.exemption_ref,
        "parent": refs.get(c.parent_id) if c.parent_id is not None else None,
        "bill_to": refs.get(c.bill_to_id) if c.bill_to_id is not None else None,
        "entity": c.entity, "currency": c.currency, "payment_terms_days": c.payment_terms_days, "status": c.status,
    }


# --------------------------------------------------------------------------- configuration


@lru_cache(maxsize=1)
def settings() -> dict[str, Any]:
    doc = yaml.safe_load((resources.files("closeloop") / "config" / "customers.yaml").read_text(encoding="utf-8"))
    try:
        doc["match_config"] = matching.MatchConfig.from_dict(doc["matching"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RuntimeError(f"config/customers.yaml: matching: {exc}") from None
    return doc  # type: ignore[no-any-return]


def match_config() -> matching.MatchConfig:
    return settings()["match_config"]  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def survivorship() -> dict[str, Any]:
    doc = yaml.safe_load((resources.files("closeloop") / "config" / "survivorship.yaml").read_text(encoding="utf-8"))
    problems = [f"{f}: unknown rule {r!r}" for f, r in (doc.get("fields") or {}).items() if r not in SURVIVORSHIP_RULES]
    problems += [f"{f}: not a customer field" for f in (doc.get("fields") or {}) if f not in FIELDS]
    if doc.get("default") not in SURVIVORSHIP_RULES:
        problems.append(f"default: unknown rule {doc.get('default')!r}")
    if problems:
        raise RuntimeError("config/survivorship.yaml: " + "; ".join(problems))
    return doc  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- hooks for other areas

BalanceRow = tuple[int, int, str]
BalanceProvider = Callable[[Any, Sequence[int]], Mapping[int, "BalanceRow | Sequence[BalanceRow]"]]
_BALANCE_PROVIDERS: dict[str, BalanceProvider] = {}


def register_balance_provider(fn: BalanceProvider, name: str | None = None) -> BalanceProvider:
    """Register ``fn(uow, customer_ids) -> {customer_id: (open_minor, credit_minor, currency)}``.

    A provider may return a list of such tuples for a customer with balances in several
    currencies. Balances of every provider are added per currency. Usable as a decorator.
    """
    _BALANCE_PROVIDERS[name or f"{fn.__module__}.{fn.__qualname__}"] = fn
    return fn


def balances(uow: Any, customer_ids: Sequence[int]) -> dict[int, dict[str, list[int]]]:
    """{customer_id: {currency: [open_minor, credit_minor]}} from every registered provider."""
    out: dict[int, dict[str, list[int]]] = {}
    if not customer_ids:
        return out
    for provider in _BALANCE_PROVIDERS.values():
        for cid, value in (provider(uow, list(customer_ids)) or {}).items():
            rows = [value] if isinstance(value, tuple) and len(value) == 3 and isinstance(value[2], str) else value
            for open_minor, credit_minor, currency in rows:  # type: ignore[misc]
                slot = out.setdefault(int(cid), {}).setdefault(currency, [0, 0])
                slot[0] += int(open_minor)
                slot[1] += int(credit_minor)
    return out


@dataclass(frozen=True, slots=True)
class ReferenceHolder:
    """An area that keeps customer references (contracts, invoices, payments...).

    repoint(uow, merged_id, survivor_id) -> ids of the records it re-pointed to the survivor
    restore(uow, merged_id, survivor_id, ids) puts exactly those back (unmerge)
    new_references(uow, survivor_id, since) -> how many of its records reference the survivor
        and were created at or after ``since`` (an ISO timestamp); any blocks an unmerge
    """

    name: str
    repoint: Callable[[Any, int, int], Sequence[Any]]
    restore: Callable[[Any, int, int, Sequence[Any]], None] | None = None
    new_references: Callable[[Any, int, str], int] | None = None


_REFERENCE_HOLDERS: dict[str, ReferenceHolder] = {}


def register_reference_holder(name: str, repoint: Callable[[Any, int, int], Sequence[Any]], *,
                              restore: Callable[[Any, int, int, Sequence[Any]], None] | None = None,
                              new_references: Callable[[Any, int, str], int] | None = None) -> ReferenceHolder:
    holder = ReferenceHolder(name, repoint, restore, new_references)
    _REFERENCE_HOLDERS[name] = holder
    return holder


def reference_holders() -> dict[str, ReferenceHolder]:
    return dict(_REFERENCE_HOLDERS)


# --------------------------------------------------------------------------- helpers


def _refuse(record: str, checked: Checked, what: str = "customer") -> ValidationError:
    problems = [p.to_dict() for p in checked.problems]
    text = "; ".join(f"{p['field']}: {p['reason']}" for p in problems)
    return ValidationError(f"{what} {record}: {text}", field=problems[0]["field"], record=record, errors=problems)


def _check_external_id(value: str, field: str = "external_id") -> str:
    text = str(value).strip()
    if not text:
        raise ValidationError(f"{field} must not be empty", field=field)
    if len(text) > 128 or any(ch.isspace() and ch != " " for ch in text):
        raise ValidationError(f"{field} {text[:40]!r} must be at most 128 characters on one line", field=field,
                              record=text[:128])
    return text


def match_fields(name: str, country: str, postal_code: str | None, address: Mapping[str, Any] | None,
                 tax_id: str | None, email: str | None, website: str | None, phone: str | None) -> dict[str, str]:
    """The normalised values the matcher compares (see matching.CUSTOMER_COLUMNS)."""
    return {
        "name": name_key(name), "street": address_key(address_line(address)),
        "city": address_key(str((address or {}).get("city") or "")), "postal_code": (postal_code or "").replace(" ", ""),
        "country": country, "tax_id": tax_id or "", "domain": domain_of(email, website) or "",
        "phone": matching.phone_digits(phone),
    }


def keys_of(fields: Mapping[str, str]) -> list[str]:
    return matching.customer_keys(fields["name"], fields["country"], fields["postal_code"], fields["tax_id"],
                                  fields["domain"], fields["phone"])


def _customer_match_fields(c: Customer) -> dict[str, str]:
    return match_fields(c.name, c.country, c.postal_code, c.address, c.tax_id, c.email, c.website, c.phone)


def _write_keys(uow: Any, customer_id: int, keys: Iterable[str] | None) -> None:
    uow.execute("DELETE FROM customer_match_key WHERE customer_id = ?", (customer_id,))
    if keys:
        uow.executemany("INSERT INTO customer_match_key (key, customer_id) VALUES (?, ?)",
                        [(k[:200], customer_id) for k in dict.fromkeys(keys)])


def _record_changes(uow: Any, customer_id: int, changes: Mapping[str, tuple[Any, Any]], kind: str) -> None:
    uow.executemany(
        "INSERT INTO customer_change (customer_id, field, old, new, kind, at, actor, source, command_id)"
        " VALUES (?,?,?,?,?,?,?,?,?)",
        [(customer_id, f, dumps(old), dumps(new), kind, uow.now(), uow.actor, uow.source, uow.command_id)
         for f, (old, new) in changes.items()])


def source_stamps(uow: Any, customer_ids: Iterable[int], source: str) -> dict[int, dict[str, str]]:
    """{customer id: {field: the latest modification time ``source`` gave for it}} (customer_source_stamp)."""
    ids = sorted(set(customer_ids))
    out: dict[int, dict[str, str]] = {}
    for start in range(0, len(ids), 900):
        chunk = ids[start:start + 900]
        marks = ",".join("?" * len(chunk))
        for cid, name, at in uow.all(f"SELECT customer_id, field, modified_at FROM customer_source_stamp"
                                     f" WHERE source = ? AND customer_id IN ({marks})", (source, *chunk)):
            out.setdefault(int(cid), {})[name] = at
    return out


def record_stamps(uow: Any, rows: Iterable[tuple[int, str, str]]) -> None:
    """Remember (customer id, field, modification time) for the unit of work's source; an earlier time
    never replaces a later one."""
    uow.executemany(
        "INSERT INTO customer_source_stamp (customer_id, source, field, modified_at, recorded_at)"
        " VALUES (?,?,?,?,?) ON CONFLICT (customer_id, source, field) DO UPDATE SET"
        " modified_at = excluded.modified_at, recorded_at = excluded.recorded_at"
        " WHERE customer_source_stamp.modified_at < excluded.modified_at",
        [(cid, uow.source, name, at, uow.now()) for cid, name, at in rows])


def _parent_chain_has(uow: Any, start: int | None, target: int) -> list[int] | None:
    """The chain from ``start`` up to ``target`` if ``target`` is ``start`` or one of its ancestors."""
    chain: list[int] = []
    node = start
    seen: set[int] = set()
    while node is not None and node not in seen:
        chain.append(node)
        if node == target:
            return chain
        seen.add(node)
        row = uow.one("SELECT parent_id FROM customer WHERE id = ?", (node,))
        node = None if row is None or row[0] is None else int(row[0])
    return None


def _resolve_ref(uow: Any, ext: str | None, field: str, record: str) -> Customer | None:
    if ext is None:
        return None
    found = _row_by_external_id(uow, ext)
    if found is None:
        raise NotFoundError(f"customer {record}: {field} {ext!r} does not exist", field=field, record=record,
                            value=ext)
    return _follow(uow, found)


# --------------------------------------------------------------------------- customer.upsert


@payload
class CustomerUpsert:
    external_id: str
    name: str | None = None
    country: str | None = None
    source: str | None = None
    region: str | None = None
    postal_code: str | None = None
    tax_id: str | None = None
    tax_exempt: bool | None = None
    exemption_ref: str | None = None
    parent: str | None = None
    email: str | None = None
    address: dict[str, Any] | str | None = None
    currency: str | None = None
    entity: str | None = None
    payment_terms_days: int | None = None
    phone: str | None = None
    website: str | None = None
    bill_to: str | None = None
    status: str | None = None
    system: str | None = None  # the system the external id comes from (salesforce, hubspot...)
    modified_at: str | None = None  # when the source changed the record (stale changes are not applied)


@dataclass
class UpsertOutcome:
    customer: Customer
    status: str  # created, updated, unchanged, stale (every change was older than the stored value)
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    refused: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    stale: dict[str, tuple[Any, Any, str]] = field(default_factory=dict)  # field: (kept, ignored, stored time)
    modified_at: str | None = None
    acted_on: str | None = None
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self, reg: governance.Registry | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.customer.id, "external_id": self.customer.external_id,
                               "status": self.status, "changed": sorted(self.changed)}
        if self.refused:
            out["refused"] = [{"field": f, "owners": list(reg.owners(ENTITY_TYPE, f)) if reg else None}
                              for f in self.refused]
        if self.stale:
            out["stale"] = [{"field": f, "modified_at": self.modified_at, "stored_modified_at": at}
                            for f, (_kept, _ignored, at) in self.stale.items()]
        if self.acted_on:
            out["acted_on"] = self.acted_on
        if self.duplicates:
            out["suspected_duplicates"] = self.duplicates
        if self.warnings:
            out["warnings"] = self.warnings
        return out


def upsert_customer(uow: Any, external_id: str, given: Mapping[str, Any], *, kind: str = "update",
                    system: str | None = None, detect: bool = True, modified_at: Any = None) -> UpsertOutcome:
    """Create the account, or apply the given fields the source owns (SCENARIOS.md customer.upsert).

    ``modified_at``: when the source changed the record (its own clock). A field that the same source has
    already given with a later time is stale: it is not changed and the outcome lists it."""
    ext = _check_external_id(external_id)
    stamp = None
    if modified_at is not None:
        try:
            stamp = source_time(modified_at)
        except ValueError as exc:
            raise ValidationError(f"customer {ext}: modified_at {exc}", field="modified_at", record=ext) from None
    source = uow.source
    reg = governance.registry(uow)
    reg.check_source(source)
    given = {k: v for k, v in given.items() if v is not None}
    found = _row_by_external_id(uow, ext)
    current = _follow(uow, found) if found is not None else None
    checked = validate_fields(given, creating=current is None,
                              current_country=current.country if current else None, currencies=check_currency)
    if checked.problems:
        raise _refuse(ext, checked)
    values = dict(checked.values)
    warnings = [w.to_dict() for w in checked.warnings]
    if "entity" in values and values["entity"] is not None:
        try:
            get_entity(uow, values["entity"])
        except NotFoundError:
            raise NotFoundError(f"customer {ext}: entity {values['entity']!r} does not exist", field="entity",
                                record=ext) from None
    if current is None:
        outcome = _create(uow, ext, values, checked, warnings, system=system, detect=detect)
        if stamp is not None:
            record_stamps(uow, [(outcome.customer.id, name, stamp) for name in values])
        return outcome
    return _update(uow, current, ext if found is not None and found.id != current.id else None, values, checked,
                   warnings, reg, kind=kind, detect=detect, stamp=stamp)


def _create(uow: Any, ext: str, values: dict[str, Any], checked: Checked, warnings: list[dict[str, str]], *,
            system: str | None, detect: bool) -> UpsertOutcome:
    if uow.one("SELECT 1 FROM customer_external_id WHERE external_id = ?", (ext,)):
        raise ConflictError(f"external id {ext!r} is already an alias of another customer", field="external_id",
                            record=ext)
    for ref in ("parent", "bill_to"):
        if values.get(ref) == ext:
            raise ValidationError(f"customer {ext}: {ref} cannot be the account itself", field=ref, record=ext)
    parent = _resolve_ref(uow, values.get("parent"), "parent", ext)
    bill_to = _resolve_ref(uow, values.get("bill_to"), "bill_to", ext)
    now = uow.now()
    terms = values.get("payment_terms_days")
    row = uow.one(
        f"INSERT INTO customer ({_COLUMNS.replace('id, ', '', 1)}, name_key) VALUES"
        " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
        (ext, values["name"], values["country"], values.get("region"), values.get("postal_code"),
         values.get("tax_id"), values.get("tax_id") is not None, bool(values.get("tax_exempt", False)),
         values.get("exemption_ref"), values.get("entity"), values.get("currency"),
         DEFAULT_PAYMENT_TERMS_DAYS if terms is None else terms, values.get("email"),
         dumps(values["address"]) if values.get("address") else None, parent.id if parent else None,
         values.get("status") or "active", None, values.get("phone"), values.get("website"),
         bill_to.id if bill_to else None, checked.tax_check if values.get("tax_id") else None, uow.source, now, now,
         1, name_key(values["name"])),
    )
    c = customer_by_id(uow, int(row[0]))
    _write_keys(uow, c.id, keys_of(_customer_match_fields(c)))
    snapshot = field_values(uow, c)
    uow.emit("customer.created", "customer", str(c.id), {"id": c.id, "external_id": ext, "system": system,
             **snapshot}, entity=c.entity)
    outcome = UpsertOutcome(c, "created", warnings=warnings)
    if detect:
        outcome.duplicates = detect_duplicates(uow, [c.id])
    return outcome


def _update(uow: Any, current: Customer, given_merged: str | None, values: dict[str, Any], checked: Checked,
            warnings: list[dict[str, str]], reg: governance.Registry, *, kind: str, detect: bool,
            stamp: str | None = None) -> UpsertOutcome:
    ext = current.external_id
    before = field_values(uow, current)
    changes: dict[str, tuple[Any, Any]] = {}
    for name, new in values.items():
        if before.get(name) != new:
            changes[name] = (before.get(name), new)
    outcome = UpsertOutcome(current, "unchanged", acted_on=ext if given_merged else None, warnings=warnings,
                            modified_at=stamp)
    if stamp is not None:
        # The source dated these values; a field it already gave with a later time keeps its value.
        stored = source_stamps(uow, [current.id], uow.source).get(current.id, {})
        for name, at in stale_fields(values, stamp, stored).items():
            if name in changes:
                outcome.stale[name] = (*changes.pop(name), at)
        if outcome.stale and not changes:
            outcome.status = "stale"
    if not changes:
        if stamp is not None:
            record_stamps(uow, [(current.id, name, stamp) for name in values if name not in outcome.stale])
        return outcome
    if current.status == "merged":
        raise ValidationError(f"customer {ext} is merged into another account", field="external_id", record=ext)
    allowed, refused = governance.check_ownership(uow, ENTITY_TYPE, ext, changes, uow.source, entity=current.entity)
    outcome.refused = refused
    if stamp is not None:
        record_stamps(uow, [(current.id, name, stamp) for name in values
                            if name not in outcome.stale and name not in refused])
    sets: dict[str, Any] = {}
    for name, (_old, new) in allowed.items():
        if name in ("parent", "bill_to"):
            if new == ext:
                raise ValidationError(f"customer {ext}: {name} cannot be the account itself", field=name, record=ext)
            ref = _resolve_ref(uow, new, name, ext)
            if ref is not None and ref.id == current.id:
                raise ValidationError(f"customer {ext}: {name} cannot be the account itself", field=name, record=ext)
            if name == "parent" and ref is not None:
                chain = _parent_chain_has(uow, ref.id, current.id)
                if chain is not None:
                    names = external_ids(uow, chain)
                    loop = " -> ".join([ext, *[names[x] for x in chain]])
                    raise ValidationError(f"customer {ext}: parent {new} would make a cycle ({loop})",
                                          field="parent", record=ext)
            sets["parent_id" if name == "parent" else "bill_to_id"] = ref.id if ref else None
        elif name == "address":
            sets["address"] = dumps(new) if new else None
        elif name == "tax_id":
            sets["tax_id"] = new
            sets["tax_id_valid"] = new is not None
            sets["tax_id_check"] = checked.tax_check if new is not None else None
        elif name == "name":
            sets["name"] = new
            sets["name_key"] = name_key(new)
        elif name == "payment_terms_days":
            sets[name] = DEFAULT_PAYMENT_TERMS_DAYS if new is None else new
        elif name == "tax_exempt":
            sets[name] = bool(new)
        elif name == "status":
            sets[name] = new or "active"
        else:
            sets[name] = new
    if not sets:
        return outcome
    sets["updated_at"] = uow.now()
    assignments = ", ".join(f"{k} = ?" for k in sets)
    uow.execute(f"UPDATE customer SET {assignments}, version = version + 1 WHERE id = ?", (*sets.values(), current.id))
    _record_changes(uow, current.id, allowed, kind)
    updated = customer_by_id(uow, current.id)
    identity = {"name", "country", "postal_code", "address", "tax_id", "email", "website", "phone"}
    if identity & set(allowed):
        _write_keys(uow, updated.id, keys_of(_customer_match_fields(updated)) if updated.status != "merged" else None)
    uow.emit("customer.updated", "customer", str(updated.id), {
        "id": updated.id, "external_id": ext, "changes": {f: [o, n] for f, (o, n) in allowed.items()},
        "refused": sorted(refused)}, entity=updated.entity)
    outcome.customer = updated
    outcome.status = "updated"
    outcome.changed = allowed
    if detect and identity & set(allowed):
        outcome.duplicates = detect_duplicates(uow, [updated.id])
    return outcome


@command("customer.upsert", CustomerUpsert, roles=("sales_ops", "billing", "admin", "implementation"),
         summary="Create an account, or change the fields its source owns")
def customer_upsert(uow: Any, cmd: CustomerUpsert) -> dict[str, Any]:
    given = {name: getattr(cmd, name) for name in FIELDS if getattr(cmd, name) is not None}
    outcome = upsert_customer(uow, cmd.external_id, given, system=cmd.system, modified_at=cmd.modified_at)
    return outcome.to_dict(governance.registry(uow))


@payload
class CustomerLink:
    external_id: str
    alias: str
    system: str | None = None
    source: str | None = None


@command("customer.link", CustomerLink, roles=("sales_ops", "billing", "admin", "implementation"),
         summary="Give an account a further external id (another system's id for it)")
def customer_link(uow: Any, cmd: CustomerLink) -> dict[str, Any]:
    alias = _check_external_id(cmd.alias, "alias")
    c = get_customer(uow, cmd.external_id, field="external_id")
    other = _row_by_external_id(uow, alias)
    if other is not None:
        if other.id == c.id:
            return {"external_id": c.external_id, "alias": alias, "status": "unchanged"}
        raise ConflictError(f"external id {alias!r} already belongs to customer {other.external_id}", field="alias",
                            record=alias)
    uow.execute("INSERT INTO customer_external_id (external_id, customer_id, system, source, created_at)"
                " VALUES (?,?,?,?,?)", (alias, c.id, cmd.system, uow.source, uow.now()))
    uow.emit("customer.linked", "customer", str(c.id), {"id": c.id, "external_id": c.external_id, "alias": alias,
             "system": cmd.system}, entity=c.entity)
    return {"external_id": c.external_id, "alias": alias, "status": "linked"}


# --------------------------------------------------------------------------- contacts


@payload
class ContactUpsert:
    external_id: str
    customer: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    title: str | None = None
    source: str | None = None


def upsert_contact(uow: Any, ext: str, customer_ext: str, data: Mapping[str, Any]) -> str:
    from closeloop.customers.model import clean, normalise_email

    ext = _check_external_id(ext)
    owner = get_customer(uow, customer_ext, field="customer")
    values = {k: (clean(v) or None) for k, v in data.items() if v is not None}
    if values.get("email"):
        email = normalise_email(values["email"])
        if email is None:
            raise ValidationError(f"contact {ext}: email {values['email']!r} is not an email address", field="email",
                                  record=ext)
        values["email"] = email
    row = uow.one("SELECT id, customer_id, first_name, last_name, email, phone, title FROM customer_contact"
                  " WHERE external_id = ?", (ext,))
    cols = ("first_name", "last_name", "email", "phone", "title")
    if row is None:
        uow.execute("INSERT INTO customer_contact (external_id, customer_id, first_name, last_name, email, phone,"
                    " title, source, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (ext, owner.id, *[values.get(c) for c in cols], uow.source, uow.now(), uow.now()))
        uow.emit("contact.created", "customer", str(owner.id), {"contact": ext, "customer": owner.external_id,
                 **{c: values.get(c) for c in cols}}, entity=owner.entity)
        return "created"
    current = dict(zip(cols, row[2:], strict=True))
    new = {**current, **{c: values[c] for c in cols if c in values}}
    if new == current and int(row[1]) == owner.id:
        return "unchanged"
    uow.execute("UPDATE customer_contact SET customer_id = ?, first_name = ?, last_name = ?, email = ?, phone = ?,"
                " title = ?, updated_at = ? WHERE id = ?", (owner.id, *[new[c] for c in cols], uow.now(), row[0]))
    uow.emit("contact.updated", "customer", str(owner.id), {"contact": ext, "customer": owner.external_id,
             **{c: new[c] for c in cols}}, entity=owner.entity)
    return "updated"


@command("contact.upsert", ContactUpsert, roles=("sales_ops", "billing", "admin", "implementation"),
         summary="Create or update a contact person of an account")
def contact_upsert(uow: Any, cmd: ContactUpsert) -> dict[str, Any]:
    status = upsert_contact(uow, cmd.external_id, cmd.customer, {
        "first_name": cmd.first_name, "last_name": cmd.last_name, "email": cmd.email, "phone": cmd.phone,
        "title": cmd.title})
    return {"external_id": cmd.external_id, "customer": cmd.customer, "status": status}


# --------------------------------------------------------------------------- duplicates


def _candidates(uow: Any, keys: Sequence[str], exclude: int, max_block: int) -> set[int]:
    if not keys:
        return set()
    marks = ",".join("?" * len(keys))
    sizes = uow.all(f"SELECT key, COUNT(*) FROM customer_match_key WHERE key IN ({marks}) GROUP BY key", list(keys))
    usable = [k for k, n in sizes if int(n) <= max_block + 1]
    if not usable:
        return set()
    marks = ",".join("?" * len(usable))
    rows = uow.all(f"SELECT DISTINCT customer_id FROM customer_match_key WHERE key IN ({marks})", usable)
    return {int(r[0]) for r in rows} - {exclude}


def _customers(uow: Any, ids: Iterable[int]) -> dict[int, Customer]:
    ids = sorted(set(ids))
    out: dict[int, Customer] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for row in uow.all(f"SELECT {_COLUMNS} FROM customer WHERE id IN ({marks})", chunk):
            c = _from_row(row)
            out[c.id] = c
    return out


def record_duplicates(uow: Any, pairs: Iterable[tuple[int, int, float, str, list[dict[str, Any]]]]) -> int:
    """Add pairs (a, b, score, decision, explanation) to the review list; a pair already listed
    (open, dismissed or merged) is left alone. Returns how many were added."""
    added = 0
    now = uow.now()
    for a, b, score, decision, explanation in pairs:
        lo, hi = (a, b) if a < b else (b, a)
        if uow.one("SELECT 1 FROM customer_duplicate WHERE a_id = ? AND b_id = ?", (lo, hi)):
            continue
        uow.execute("INSERT INTO customer_duplicate (a_id, b_id, score, decision, explanation, status, detected_at)"
                    " VALUES (?,?,?,?,?,'open',?)", (lo, hi, f"{score:.2f}", decision, dumps(explanation), now))
        added += 1
    return added


def detect_duplicates(uow: Any, customer_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Score each account against the accounts sharing a blocking key; list the suspects for review."""
    cfg = match_config()
    found: list[dict[str, Any]] = []
    targets = _customers(uow, customer_ids)
    for cid, c in targets.items():
        if c.status == "merged":
            continue
        mine = _customer_match_fields(c)
        others = _customers(uow, _candidates(uow, keys_of(mine), cid, cfg.max_block))
        others = {k: v for k, v in others.items() if v.status != "merged"}
        if not others:
            continue
        order = list(others.values())
        columns = {col: [mine[col]] + [_customer_match_fields(o)[col] for o in order]
                   for col in matching.CUSTOMER_COLUMNS}
        import numpy as np

        i = np.zeros(len(order), dtype=np.int64)
        j = np.arange(1, len(order) + 1, dtype=np.int64)
        scored = matching.score_pairs(columns, i, j, cfg)
        pairs = []
        for n in range(len(order)):
            score = float(scored.score[n])
            decision = matching.classify(score, cfg)
            if decision == "distinct":
                continue
            other = order[n]
            explanation = matching.explain(cfg, scored.sims[n], scored.points[n])
            pairs.append((cid, other.id, score, decision, explanation))
            found.append({"external_id": other.external_id, "score": f"{score:.2f}", "decision": decision})
        record_duplicates(uow, pairs)
    found.sort(key=lambda d: (-float(d["score"]), d["external_id"]))
    return found


@payload
class FindDuplicates:
    status: str = "active"  # which accounts to scan: active, or all (active and inactive)


@command("customer.find_duplicates", FindDuplicates, roles=("sales_ops", "admin", "implementation"),
         summary="Scan the whole customer master for duplicates; add new suspects to the review list")
def customer_find_duplicates(uow: Any, cmd: FindDuplicates) -> dict[str, Any]:
    if cmd.status not in ("active", "all"):
        raise ValidationError("status must be active or all", field="status")
    where = "status = 'active'" if cmd.status == "active" else "status != 'merged'"
    rows = [_from_row(r) for r in uow.all(f"SELECT {_COLUMNS} FROM customer WHERE {where} ORDER BY id")]
    cfg = match_config()
    fields = [_customer_match_fields(c) for c in rows]
    columns = {col: [f[col] for f in fields] for col in matching.CUSTOMER_COLUMNS}
    scored = matching.find_duplicates(columns, [keys_of(f) for f in fields], cfg)
    pairs = []
    for n in range(len(scored)):
        a, b = rows[int(scored.i[n])], rows[int(scored.j[n])]
        score = float(scored.score[n])
        pairs.append((a.id, b.id, score, matching.classify(score, cfg),
                      matching.explain(cfg, scored.sims[n], scored.points[n])))
    added = record_duplicates(uow, pairs)
    if added:
        uow.emit("customer.duplicates_found", "customer_master", "duplicates",
                 {"scanned": len(rows), "suspects": len(pairs), "added": added})
    return {"scanned": len(rows), "candidate_pairs": scored.candidates, "blocks_skipped": scored.blocks_skipped,
            "suspects": len(pairs), "added": added}


@payload
class DismissDuplicate:
    a: str
    b: str
    reason: str


@command("customer.dismiss_duplicate", DismissDuplicate, roles=("sales_ops", "admin"),
         summary="Mark a suspected duplicate pair as distinct accounts")
def customer_dismiss_duplicate(uow: Any, cmd: DismissDuplicate) -> dict[str, Any]:
    if not cmd.reason.strip():
        raise ValidationError("a reason is required to dismiss a suspected duplicate", field="reason")
    a = get_customer(uow, cmd.a, follow_merge=False, field="a")
    b = get_customer(uow, cmd.b, follow_merge=False, field="b")
    lo, hi = sorted((a.id, b.id))
    row = uow.one("SELECT id, status FROM customer_duplicate WHERE a_id = ? AND b_id = ?", (lo, hi))
    if row is None:
        raise NotFoundError(f"{cmd.a} and {cmd.b} are not on the duplicate review list", field="b", record=cmd.b)
    if row[1] != "open":
        raise ConflictError(f"the pair {cmd.a} / {cmd.b} is already {row[1]}", field="b", record=cmd.b)
    uow.execute("UPDATE customer_duplicate SET status = 'dismissed', resolved_at = ?, resolved_by = ?, note = ?"
                " WHERE id = ?", (uow.now(), uow.actor, cmd.reason, row[0]))
    uow.emit("customer.duplicate_dismissed", "customer", str(lo), {"a": a.external_id, "b": b.external_id,
             "reason": cmd.reason})
    return {"a": a.external_id, "b": b.external_id, "status": "dismissed"}


@payload
class DuplicatesQuery:
    status: str = "open"
    customer: str | None = None
    limit: Limit = 200


@query("customer_duplicates", DuplicatesQuery, summary="The review list of suspected duplicates, with explained scores")
def customer_duplicates(uow: Any, q: DuplicatesQuery) -> dict[str, Any]:
    if q.status not in ("open", "merged", "dismissed", "all"):
        raise ValidationError("status must be open, merged, dismissed or all", field="status")
    where, params = [], []
    if q.status != "all":
        where.append("status = ?")
        params.append(q.status)
    if q.customer:
        c = get_customer(uow, q.customer, follow_merge=False)
        where.append("(a_id = ? OR b_id = ?)")
        params += [c.id, c.id]
    sql = "SELECT id, a_id, b_id, score, decision, explanation, status, detected_at, note FROM customer_duplicate"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = uow.all(sql, params)
    rows.sort(key=lambda r: (-float(r[3]), int(r[0])))
    rows = rows[: min(q.limit, 10_000)]
    names = _customers(uow, [x for r in rows for x in (int(r[1]), int(r[2]))])
    items = []
    for r in rows:
        a, b = names[int(r[1])], names[int(r[2])]
        items.append({"id": int(r[0]), "a": a.external_id, "a_name": a.name, "b": b.external_id, "b_name": b.name,
                      "score": r[3], "decision": r[4], "status": r[6], "detected_at": r[7], "note": r[8],
                      "fields": json.loads(r[5])})
    return {"count": len(items), "items": items}


# --------------------------------------------------------------------------- merge and unmerge


@payload
class CustomerMerge:
    survivor: str
    merged: str
    reason: str | None = None
    source: str | None = None


def _origins(uow: Any, c: Customer) -> dict[str, FieldOrigin]:
    out = {f: FieldOrigin(c.created_at, c.source) for f in FIELDS}
    for fname, at, src in uow.all("SELECT field, at, source FROM customer_change WHERE customer_id = ? ORDER BY id",
                                  (c.id,)):
        out[fname] = FieldOrigin(at, src)
    return out


@command("customer.merge", CustomerMerge, roles=("sales_ops", "admin"),
         summary="Merge a duplicate account into a survivor (survivorship, re-pointing, audit)")
def customer_merge(uow: Any, cmd: CustomerMerge) -> dict[str, Any]:
    reg = governance.registry(uow)
    reg.check_source(uow.source)
    survivor = get_customer(uow, cmd.survivor, follow_merge=False, field="survivor")
    merged = get_customer(uow, cmd.merged, follow_merge=False, field="merged")
    if survivor.id == merged.id:
        raise ValidationError(f"cannot merge customer {cmd.merged} into itself", field="merged", record=cmd.merged)
    if survivor.status == "merged":
        into = customer_by_id(uow, survivor.merged_into) if survivor.merged_into else None
        raise ValidationError(f"survivor {cmd.survivor} is itself merged into {into.external_id if into else '?'};"
                              " merge into an active account", field="survivor", record=cmd.survivor)
    if merged.status == "merged":
        into = customer_by_id(uow, merged.merged_into) if merged.merged_into else None
        raise ValidationError(f"customer {cmd.merged} is already merged into {into.external_id if into else '?'}",
                              field="merged", record=cmd.merged)
    refs = external_ids(uow, [x for x in (survivor.parent_id, survivor.bill_to_id, merged.parent_id,
                                          merged.bill_to_id) if x is not None])
    s_vals, m_vals = field_values(uow, survivor, refs), field_values(uow, merged, refs)
    rules = survivorship()
    decided = survive(rules.get("fields") or {}, rules["default"], s_vals, m_vals, _origins(uow, survivor),
                      _origins(uow, merged), tuple(rules.get("source_priority") or ()),
                      fields=[f for f in FIELDS if f != "status"])
    taken: dict[str, tuple[Any, Any]] = {}
    kept_by_ownership: list[str] = []
    fields_out: dict[str, dict[str, Any]] = {}
    for d in decided:
        value = d.value
        if d.taken_from == "merged" and d.field in ("parent", "bill_to") and value is not None:
            ref = _row_by_external_id(uow, value)
            if ref is None or ref.id in (survivor.id, merged.id) or (
                    d.field == "parent" and _parent_chain_has(uow, ref.id, survivor.id) is not None):
                value = s_vals[d.field]
        if value != s_vals[d.field] and not reg.may_change(ENTITY_TYPE, d.field, uow.source, s_vals[d.field]):
            kept_by_ownership.append(d.field)
            value = s_vals[d.field]
        fields_out[d.field] = {"value": value, "from": "merged" if value != s_vals[d.field] else "survivor",
                               "rule": d.rule}
        if value != s_vals[d.field]:
            taken[d.field] = (s_vals[d.field], value)
    # The merged account's place in the hierarchy passes to the survivor.
    if survivor.parent_id == merged.id and "parent" not in taken:
        new_parent = m_vals["parent"]
        if new_parent is not None and _parent_chain_has(uow, merged.parent_id, survivor.id) is None:
            taken["parent"] = (s_vals["parent"], new_parent)
        else:
            taken["parent"] = (s_vals["parent"], None)
        fields_out["parent"] = {"value": taken["parent"][1], "from": "merged", "rule": "hierarchy"}
    sets: dict[str, Any] = {}
    for name, (_old, new) in taken.items():
        if name in ("parent", "bill_to"):
            ref = _row_by_external_id(uow, new) if new is not None else None
            sets["parent_id" if name == "parent" else "bill_to_id"] = ref.id if ref else None
        elif name == "address":
            sets["address"] = dumps(new) if new else None
        elif name == "tax_id":
            sets.update(tax_id=new, tax_id_valid=new is not None,
                        tax_id_check=merged.tax_id_check if new == merged.tax_id else survivor.tax_id_check)
        elif name == "name":
            sets.update(name=new, name_key=name_key(new))
        else:
            sets[name] = new
    now = uow.now()
    if sets:
        assignments = ", ".join(f"{k} = ?" for k in sets)
        uow.execute(f"UPDATE customer SET {assignments}, updated_at = ?, version = version + 1 WHERE id = ?",
                    (*sets.values(), now, survivor.id))
        _record_changes(uow, survivor.id, taken, "merge")
    uow.execute("UPDATE customer SET status = 'merged', merged_into = ?, updated_at = ?, version = version + 1"
                " WHERE id = ?", (survivor.id, now, merged.id))
    _record_changes(uow, merged.id, {"status": (merged.status, "merged")}, "merge")
    # Customers' own references move to the survivor: child accounts, bill-to, contacts.
    children = [int(r[0]) for r in uow.all("SELECT id FROM customer WHERE parent_id = ? AND id != ?",
                                           (merged.id, survivor.id))]
    bill_tos = [int(r[0]) for r in uow.all("SELECT id FROM customer WHERE bill_to_id = ? AND id != ?",
                                           (merged.id, survivor.id))]
    contacts = [int(r[0]) for r in uow.all("SELECT id FROM customer_contact WHERE customer_id = ?", (merged.id,))]
    if children:
        uow.execute("UPDATE customer SET parent_id = ?, updated_at = ? WHERE parent_id = ? AND id != ?",
                    (survivor.id, now, merged.id, survivor.id))
    if bill_tos:
        uow.execute("UPDATE customer SET bill_to_id = ?, updated_at = ? WHERE bill_to_id = ? AND id != ?",
                    (survivor.id, now, merged.id, survivor.id))
    if contacts:
        uow.execute("UPDATE customer_contact SET customer_id = ?, updated_at = ? WHERE customer_id = ?",
                    (survivor.id, now, merged.id))
    repointed: dict[str, list[Any]] = {}
    for name, holder in _REFERENCE_HOLDERS.items():
        repointed[name] = list(holder.repoint(uow, merged.id, survivor.id) or ())
    after = customer_by_id(uow, survivor.id)
    _write_keys(uow, merged.id, None)
    _write_keys(uow, survivor.id, keys_of(_customer_match_fields(after)))
    lo, hi = sorted((survivor.id, merged.id))
    uow.execute("UPDATE customer_duplicate SET status = 'merged', resolved_at = ?, resolved_by = ?, note = ?"
                " WHERE a_id = ? AND b_id = ? AND status = 'open'", (now, uow.actor, cmd.reason, lo, hi))
    uow.execute("UPDATE customer_duplicate SET status = 'dismissed', resolved_at = ?, resolved_by = ?, note = ?"
                " WHERE (a_id = ? OR b_id = ?) AND status = 'open'",
                (now, uow.actor, f"{merged.external_id} was merged into {survivor.external_id}", merged.id, merged.id))
    merge_id = uow.scalar(
        "INSERT INTO customer_merge (survivor_id, merged_id, at, actor, source, reason, survivor_before, merged_before,"
        " survivor_after, moved, repointed, status) VALUES (?,?,?,?,?,?,?,?,?,?,?,'active') RETURNING id",
        (survivor.id, merged.id, now, uow.actor, uow.source, cmd.reason, dumps(s_vals), dumps(m_vals),
         dumps(field_values(uow, after)), dumps({"children": children, "bill_to": bill_tos, "contacts": contacts}),
         dumps(repointed)))
    counts = {name: len(ids) for name, ids in repointed.items()}
    uow.emit("customer.merged", "customer", str(survivor.id), {
        "merge_id": int(merge_id), "survivor": survivor.external_id, "survivor_id": survivor.id,
        "merged": merged.external_id, "merged_id": merged.id, "reason": cmd.reason,
        "changes": {f: [o, n] for f, (o, n) in taken.items()}, "children_moved": len(children),
        "contacts_moved": len(contacts), "repointed": counts}, entity=after.entity)
    return {"merge_id": int(merge_id), "survivor": survivor.external_id, "merged": merged.external_id,
            "status": "merged", "fields": fields_out, "changed": sorted(taken), "kept_by_ownership": kept_by_ownership,
            "children_moved": len(children), "contacts_moved": len(contacts), "repointed": counts}


@payload
class CustomerUnmerge:
    merged: str
    reason: str
    source: str | None = None


@command("customer.unmerge", CustomerUnmerge, roles=("sales_ops", "admin"),
         summary="Undo a merge while nothing new references the survivor")
def customer_unmerge(uow: Any, cmd: CustomerUnmerge) -> dict[str, Any]:
    if not cmd.reason.strip():
        raise ValidationError("a reason is required to undo a merge", field="reason")
    merged = get_customer(uow, cmd.merged, follow_merge=False, field="merged")
    if merged.status != "merged":
        raise ValidationError(f"customer {cmd.merged} is not merged", field="merged", record=cmd.merged)
    row = uow.one("SELECT id, survivor_id, at, survivor_before, merged_before, survivor_after, moved, repointed"
                  f" FROM customer_merge WHERE merged_id = ? AND status = 'active' ORDER BY id DESC{uow.for_update()}",
                  (merged.id,))
    if row is None:
        raise NotFoundError(f"no active merge of {cmd.merged} to undo", field="merged", record=cmd.merged)
    merge_id, survivor_id, merged_at = int(row[0]), int(row[1]), row[2]
    s_before, m_before, s_after = json.loads(row[3]), json.loads(row[4]), json.loads(row[5])
    moved, repointed = json.loads(row[6]), json.loads(row[7])
    survivor = customer_by_id(uow, survivor_id)
    if survivor.status == "merged":
        into = customer_by_id(uow, survivor.merged_into) if survivor.merged_into else None
        raise ConflictError(f"survivor {survivor.external_id} has since been merged into"
                            f" {into.external_id if into else '?'}; undo that merge first", field="merged",
                            record=cmd.merged)
    blockers: dict[str, int] = {}
    new_children = uow.scalar(
        "SELECT COUNT(*) FROM customer_change WHERE field = 'parent' AND new = ? AND at > ?",
        (dumps(survivor.external_id), merged_at))
    if int(new_children or 0):
        blockers["child accounts"] = int(new_children)
    for name, holder in _REFERENCE_HOLDERS.items():
        if holder.new_references is not None:
            n = int(holder.new_references(uow, survivor.id, merged_at) or 0)
            if n:
                blockers[name] = n
    if blockers:
        text = ", ".join(f"{n} {name}" for name, n in blockers.items())
        raise ConflictError(f"cannot unmerge {cmd.merged}: {text} reference survivor {survivor.external_id} since"
                            " the merge", field="merged", record=cmd.merged, references=blockers)
    current = field_values(uow, survivor)
    restore: dict[str, tuple[Any, Any]] = {}
    kept: list[str] = []
    for name, before in s_before.items():
        if name == "status" or before == s_after.get(name):
            continue
        if current.get(name) == s_after.get(name):
            restore[name] = (current.get(name), before)
        else:
            kept.append(name)
    now = uow.now()
    sets: dict[str, Any] = {}
    for name, (_old, new) in restore.items():
        if name in ("parent", "bill_to"):
            ref = _row_by_external_id(uow, new) if new is not None else None
            sets["parent_id" if name == "parent" else "bill_to_id"] = ref.id if ref else None
        elif name == "address":
            sets["address"] = dumps(new) if new else None
        elif name == "tax_id":
            sets.update(tax_id=new, tax_id_valid=new is not None)
        elif name == "name":
            sets.update(name=new, name_key=name_key(new))
        else:
            sets[name] = new
    if sets:
        assignments = ", ".join(f"{k} = ?" for k in sets)
        uow.execute(f"UPDATE customer SET {assignments}, updated_at = ?, version = version + 1 WHERE id = ?",
                    (*sets.values(), now, survivor.id))
        _record_changes(uow, survivor.id, restore, "unmerge")
    status = m_before.get("status") or "active"
    uow.execute("UPDATE customer SET status = ?, merged_into = NULL, updated_at = ?, version = version + 1"
                " WHERE id = ?", (status, now, merged.id))
    _record_changes(uow, merged.id, {"status": ("merged", status)}, "unmerge")
    for key, column, table in (("children", "parent_id", "customer"), ("bill_to", "bill_to_id", "customer"),
                               ("contacts", "customer_id", "customer_contact")):
        ids = moved.get(key) or []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            uow.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ? AND id IN ({marks})",
                        (merged.id, survivor.id, *chunk))
    for name, ids in repointed.items():
        holder = _REFERENCE_HOLDERS.get(name)
        if holder is not None and holder.restore is not None and ids:
            holder.restore(uow, merged.id, survivor.id, ids)
    uow.execute("UPDATE customer_merge SET status = 'undone', undone_at = ?, undone_by = ? WHERE id = ?",
                (now, uow.actor, merge_id))
    lo, hi = sorted((survivor.id, merged.id))
    uow.execute("UPDATE customer_duplicate SET status = 'dismissed', resolved_at = ?, resolved_by = ?, note = ?"
                " WHERE a_id = ? AND b_id = ?", (now, uow.actor, f"unmerged: {cmd.reason}", lo, hi))
    restored_merged = customer_by_id(uow, merged.id)
    _write_keys(uow, merged.id, keys_of(_customer_match_fields(restored_merged)))
    _write_keys(uow, survivor.id, keys_of(_customer_match_fields(customer_by_id(uow, survivor.id))))
    uow.emit("customer.unmerged", "customer", str(survivor.id), {
        "merge_id": merge_id, "survivor": survivor.external_id, "survivor_id": survivor.id,
        "merged": merged.external_id, "merged_id": merged.id, "reason": cmd.reason,
        "restored": {f: [o, n] for f, (o, n) in restore.items()}, "kept": kept}, entity=survivor.entity)
    return {"merge_id": merge_id, "survivor": survivor.external_id, "merged": merged.external_id, "status": status,
            "restored": sorted(restore), "kept_changed_since_merge": sorted(kept)}


# --------------------------------------------------------------------------- queries


def _money(minor: int, currency: str | None) -> str:
    return format_minor(minor, currency) if currency else "0.00"


def _balance_fields(bal: Mapping[str, list[int]], currency: str | None) -> dict[str, Any]:
    if not bal:
        return {"open_balance": _money(0, currency), "credit_balance": _money(0, currency), "balances": []}
    items = [{"currency": cur, "open_balance": format_minor(v[0], cur), "credit_balance": format_minor(v[1], cur)}
             for cur, v in sorted(bal.items())]
    if len(bal) == 1:
        cur, (open_minor, credit_minor) = next(iter(bal.items()))
        return {"open_balance": format_minor(open_minor, cur), "credit_balance": format_minor(credit_minor, cur),
                "balance_currency": cur, "balances": items}
    main = bal.get(currency or "")
    return {"open_balance": format_minor(main[0], currency) if main and currency else None,
            "credit_balance": format_minor(main[1], currency) if main and currency else None,
            "balance_currency": currency if main else None, "balances": items}


def customer_dict(uow: Any, c: Customer, *, with_balances: bool = True) -> dict[str, Any]:
    refs = external_ids(uow, [x for x in (c.parent_id, c.bill_to_id, c.merged_into) if x is not None])
    values = field_values(uow, c, refs)
    out: dict[str, Any] = {"id": c.id, "external_id": c.external_id, **values,
                           "tax_id_valid": c.tax_id_valid, "tax_id_check": c.tax_id_check,
                           "merged_into": refs.get(c.merged_into) if c.merged_into is not None else None,
                           "source": c.source, "created_at": c.created_at, "updated_at": c.updated_at,
                           "version": c.version}
    aliases = uow.all("SELECT external_id, system FROM customer_external_id WHERE customer_id = ? ORDER BY external_id",
                      (c.id,))
    out["aliases"] = [{"external_id": a, "system": s} for a, s in aliases]
    if with_balances:
        out.update(_balance_fields(balances(uow, [c.id]).get(c.id, {}), c.currency))
    return out


@payload
class CustomerQuery:
    external_id: str | None = None
    id: int | None = None


@query("customer", CustomerQuery, summary="One account as stored (a merged one with status merged and merged_into)")
def customer_query(uow: Any, q: CustomerQuery) -> dict[str, Any]:
    if q.external_id is None and q.id is None:
        raise ValidationError("give external_id (or id)", field="external_id")
    c = customer_by_id(uow, q.id) if q.id is not None else get_customer(uow, q.external_id or "", follow_merge=False,
                                                                         field="external_id")
    out = customer_dict(uow, c)
    out["contacts"] = [
        {"external_id": r[0], "first_name": r[1], "last_name": r[2], "email": r[3], "phone": r[4], "title": r[5]}
        for r in uow.all("SELECT external_id, first_name, last_name, email, phone, title FROM customer_contact"
                         " WHERE customer_id = ? ORDER BY id", (c.id,))]
    out["children"] = [r[0] for r in uow.all("SELECT external_id FROM customer WHERE parent_id = ? AND status != 'merged'"
                                             " ORDER BY external_id", (c.id,))]
    return out


@payload
class CustomersQuery:
    status: str | None = None
    search: str | None = None
    country: str | None = None
    parent: str | None = None
    limit: Limit = 100
    offset: Offset = 0


@query("customers", CustomersQuery, summary="Accounts, filtered by status, country, parent or a name search")
def customers_query(uow: Any, q: CustomersQuery) -> dict[str, Any]:
    where, params = [], []
    if q.status:
        where.append("status = ?")
        params.append(q.status)
    if q.country:
        where.append("country = ?")
        params.append(q.country.upper())
    if q.parent:
        where.append("parent_id = ?")
        params.append(get_customer(uow, q.parent, field="parent").id)
    if q.search:
        where.append("(name_key LIKE ? OR external_id = ?)")
        params += [f"%{name_key(q.search)}%", q.search]
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = int(uow.scalar(f"SELECT COUNT(*) FROM customer{clause}", params))
    rows = uow.all(f"SELECT {_COLUMNS} FROM customer{clause} ORDER BY external_id LIMIT ? OFFSET ?",
                   [*params, min(q.limit, 10_000), q.offset])
    items = [_from_row(r) for r in rows]
    refs = external_ids(uow, [x for c in items for x in (c.parent_id, c.merged_into) if x is not None])
    return {"count": total, "items": [
        {"id": c.id, "external_id": c.external_id, "name": c.name, "country": c.country, "status": c.status,
         "tax_id": c.tax_id, "entity": c.entity, "parent": refs.get(c.parent_id) if c.parent_id else None,
         "merged_into": refs.get(c.merged_into) if c.merged_into else None} for c in items]}


def hierarchy(uow: Any, c: Customer) -> tuple[dict[int, int | None], dict[int, list[int]], int]:
    """(parent_of for the chain, children_of for the whole tree, top id) around account ``c``."""
    parent_of: dict[int, int | None] = {c.id: c.parent_id}
    node = c.parent_id
    while node is not None and node not in parent_of:
        row = uow.one("SELECT parent_id FROM customer WHERE id = ?", (node,))
        parent_of[node] = None if row is None or row[0] is None else int(row[0])
        node = parent_of[node]
    chain = ancestors_of(parent_of, c.id)
    top = chain[-1] if chain else c.id
    children_of: dict[int, list[int]] = {}
    frontier = [top]
    seen = {top}
    while frontier:
        nxt: list[int] = []
        for start in range(0, len(frontier), 500):
            chunk = frontier[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = uow.all(f"SELECT id, parent_id FROM customer WHERE parent_id IN ({marks}) AND status != 'merged'",
                           chunk)
            for cid, pid in rows:
                cid = int(cid)
                if cid in seen:
                    continue
                seen.add(cid)
                children_of.setdefault(int(pid), []).append(cid)
                nxt.append(cid)
        frontier = nxt
    return parent_of, children_of, top


def ancestors(uow: Any, external_id: str) -> list[Customer]:
    c = get_customer(uow, external_id)
    parent_of, _children, _top = hierarchy(uow, c)
    found = _customers(uow, ancestors_of(parent_of, c.id))
    return [found[x] for x in ancestors_of(parent_of, c.id)]


def descendants(uow: Any, external_id: str) -> list[tuple[Customer, int]]:
    c = get_customer(uow, external_id)
    _parent_of, children_of, _top = hierarchy(uow, c)
    below = descendants_of(children_of, c.id)
    found = _customers(uow, [x for x, _ in below])
    return [(found[x], depth) for x, depth in below]


def _rollup(nodes: Iterable[int], bal: Mapping[int, Mapping[str, list[int]]], currency: str | None) -> dict[str, Any]:
    total: dict[str, list[int]] = {}
    for n in nodes:
        for cur, (o, cr) in bal.get(n, {}).items():
            slot = total.setdefault(cur, [0, 0])
            slot[0] += o
            slot[1] += cr
    return _balance_fields(total, currency)


@payload
class HierarchyQuery:
    external_id: str


@query("customer_hierarchy", HierarchyQuery,
       summary="Ancestors, descendants and open balances rolled up to each level and to the top parent")
def customer_hierarchy(uow: Any, q: HierarchyQuery) -> dict[str, Any]:
    c = get_customer(uow, q.external_id, field="external_id")
    parent_of, children_of, top = hierarchy(uow, c)
    up = ancestors_of(parent_of, c.id)
    whole = [top, *[x for x, _ in descendants_of(children_of, top)]]
    found = _customers(uow, set(whole) | set(up))
    bal = balances(uow, whole)
    below = descendants_of(children_of, c.id)

    def subtree(node: int) -> list[int]:
        return [node, *[x for x, _ in descendants_of(children_of, node)]]

    names = {x: found[x].external_id for x in found}
    return {
        "external_id": c.external_id, "name": c.name, "acted_on": c.external_id if c.external_id != q.external_id
        else None,
        "top": names[top], "ancestors": [names[x] for x in up],
        **_balance_fields(bal.get(c.id, {}), c.currency),
        "descendants": [{"external_id": names[x], "name": found[x].name, "depth": depth,
                         "parent": names.get(found[x].parent_id) if found[x].parent_id else None,
                         **{k: v for k, v in _balance_fields(bal.get(x, {}), found[x].currency).items()
                            if k in ("open_balance", "credit_balance")},
                         "rollup_open_balance": _rollup(subtree(x), bal, found[x].currency)["open_balance"]}
                        for x, depth in below],
        "rollup": _rollup(subtree(c.id), bal, c.currency),
        "top_rollup": _rollup(whole, bal, found[top].currency),
    }


@payload
class HistoryQuery:
    external_id: str
    limit: Limit = 500


@query("customer_history", HistoryQuery, summary="Every recorded change of an account: who, when, source, old and new")
def customer_history(uow: Any, q: HistoryQuery) -> dict[str, Any]:
    c = get_customer(uow, q.external_id, follow_merge=False, field="external_id")
    rows = uow.all("SELECT at, actor, source, kind, field, old, new FROM customer_change WHERE customer_id = ?"
                   " ORDER BY id LIMIT ?", (c.id, min(q.limit, 10_000)))
    merges = uow.all("SELECT m.id, m.at, m.actor, m.status, s.external_id, d.external_id FROM customer_merge m"
                     " JOIN customer s ON s.id = m.survivor_id JOIN customer d ON d.id = m.merged_id"
                     " WHERE m.survivor_id = ? OR m.merged_id = ? ORDER BY m.id", (c.id, c.id))
    return {"external_id": c.external_id, "created_at": c.created_at, "created_by_source": c.source,
            "changes": [{"at": r[0], "actor": r[1], "source": r[2], "kind": r[3], "field": r[4],
                         "old": json.loads(r[5]) if r[5] else None, "new": json.loads(r[6]) if r[6] else None}
                        for r in rows],
            "merges": [{"merge_id": int(r[0]), "at": r[1], "actor": r[2], "status": r[3], "survivor": r[4],
                        "merged": r[5]} for r in merges]}


# --------------------------------------------------------------------------- quality of the whole master


def key_field_counts(values: Mapping[str, Any], key_fields: Sequence[str]) -> tuple[int, int]:
    filled = 0
    for name in key_fields:
        if name == "email_or_website":
            filled += bool(values.get("email") or values.get("website"))
        else:
            filled += values.get(name) not in (None, "", {})
    return filled, len(key_fields)


def quality_weights() -> tuple[tuple[str, Any], ...]:
    from decimal import Decimal

    weights = settings()["quality"]["weights"]
    return tuple((k, Decimal(str(weights[k]))) for k in ("completeness", "validity", "uniqueness", "hierarchy"))


@payload
class QualityQuery:
    status: str = "active"


@query("customer_quality", QualityQuery, summary="Data-quality score of the customer master and its components")
def customer_quality(uow: Any, q: QualityQuery) -> dict[str, Any]:
    """The score of docs/customers.md over the stored accounts (stored values already passed
    validation, so validity counts tax ids verified by checksum and well-formed postcodes)."""
    from closeloop.customers.model import normalise_postal_code

    key_fields = settings()["quality"]["key_fields"]
    # only the columns the score reads (the whole master is read: no Customer objects for it)
    rows = uow.all("SELECT id, name, country, postal_code, address, email, website, tax_id, tax_id_check, parent_id"
                   " FROM customer WHERE status = ?", (q.status,))
    filled = possible = checked = valid = parents = resolved = 0
    for _, name, country, postal_code, address, email, website, tax_id, tax_id_check, parent_id in rows:
        f, p = key_field_counts({"name": name, "country": country, "postal_code": postal_code,
                                 "address": json.loads(address) if address else None, "email": email,
                                 "website": website, "tax_id": tax_id}, key_fields)
        filled += f
        possible += p
        checked += 1
        valid += 1  # country: stored values are ISO codes
        if tax_id:
            checked += 1
            valid += tax_id_check == "checksum"
        if postal_code:
            checked += 1
            valid += normalise_postal_code(country, postal_code)[1] is None
        if parent_id is not None:
            parents += 1
            resolved += 1
    ids = [int(r[0]) for r in rows]
    dup_ids: set[int] = set()
    for a, b in uow.all("SELECT a_id, b_id FROM customer_duplicate WHERE status = 'open'"):
        dup_ids.update((int(a), int(b)))
    duplicates = len(dup_ids & set(ids))
    score = quality_score(QualityInput(len(rows), filled, possible, checked, valid, duplicates, parents, resolved,
                                       quality_weights()))
    return {"accounts": len(rows), "suspected_duplicates": duplicates, **score}
