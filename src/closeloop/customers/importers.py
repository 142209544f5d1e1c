"""CRM imports: Salesforce (Data Loader CSV, report CSV, tree JSON) and HubSpot company exports.

An import is planned first and persisted second (STYLE.md: generator / dispatcher):

1. **read**: bytes -> text (UTF-8 with or without BOM, UTF-16 with BOM, else Windows-1252),
   CSV dialect (``,`` ``;`` tab ``|`` when the header only makes sense that way) or tree JSON;
   each row keeps its line number (the header is line 1), so every rejection names it;
2. **map**: columns -> account (and contact) fields by the format's known API names and
   labels, then the mapping file's ``fields`` (custom fields such as a VAT number),
   ``defaults``, ``id_prefix``, ``external_id`` column and ``skip`` rules;
3. **plan** (:func:`plan_import`): validate every row with the same rules as
   customer.upsert, resolve parents inside the file and in the master (missing parents
   and cycles are rejected, and so are the children of rejected parents), compare with the
   stored accounts, split each change by the system-of-record registry, find suspected
   duplicates, and score the file's data quality;
4. **apply** (:func:`apply_plan`): in one unit of work, bulk inserts and updates, events,
   ``not_owner`` exceptions for refused fields and, with ``accept_valid``, one
   ``import_rejected`` exception per rejected row. Without ``accept_valid`` any rejected
   row refuses the whole import and nothing is written. A dry run stops after the plan.

Re-importing the same file finds every row unchanged and writes nothing but the import's
own history record.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from closeloop.core import governance
from closeloop.core.boundary import MAX_CSV_FIELD, parse_json
from closeloop.core.errors import ValidationError
from closeloop.core.exception_queue import open_exception
from closeloop.core.money import check_currency
from closeloop.core.registry import Limit, command, payload, query
from closeloop.core.uow import dumps
from closeloop.customers import matching
from closeloop.customers.model import (
    DEFAULT_PAYMENT_TERMS_DAYS,
    QualityInput,
    clean,
    fold,
    name_key,
    normalise_email,
    quality_score,
    source_time,
    stale_fields,
    validate_fields,
)
from closeloop.customers.service import (
    _COLUMNS,
    ENTITY_TYPE,
    Customer,
    _follow,
    _from_row,
    external_ids,
    field_values,
    keys_of,
    match_config,
    match_fields,
    quality_weights,
    settings,
    source_stamps,
)

FORMATS = ("salesforce", "hubspot")
ACCOUNT_FIELDS = ("external_id", "name", "parent", "street", "street2", "city", "region", "postal_code", "country",
                  "phone", "website", "email", "tax_id", "tax_exempt", "exemption_ref", "currency", "entity",
                  "payment_terms_days", "status", "bill_to", "deleted", "master_record", "domain",
                  "shipping_street", "shipping_city", "shipping_region", "shipping_postal_code", "shipping_country",
                  "last_modified", "system_modstamp")
CONTACT_FIELDS = ("contact_id", "account", "account_name", "first_name", "last_name", "email", "phone", "title")
MAPPING_KEYS = {"format", "object", "id_prefix", "external_id", "fields", "contact_fields", "defaults", "skip",
                "encoding", "delimiter", "source"}

# Known column names, folded (lower case, no spaces around), per format and object. Report-style
# Salesforce exports prefix labels with the object ("Account: Account Name"); the prefix is removed first.
SALESFORCE_ACCOUNT: dict[str, str] = {
    "id": "external_id", "account id": "external_id", "accountid18": "external_id",
    "name": "name", "account name": "name",
    "parentid": "parent", "parent account id": "parent", "parent id": "parent",
    "billingstreet": "street", "billing street": "street", "billing address line 1": "street",
    "billingcity": "city", "billing city": "city",
    "billingstate": "region", "billing state/province": "region", "billing state": "region",
    "billingstatecode": "region", "billing state/province code": "region",
    "billingpostalcode": "postal_code", "billing zip/postal code": "postal_code", "billing postal code": "postal_code",
    "billingcountry": "country", "billing country": "country", "billingcountrycode": "country",
    "billing country code": "country",
    "shippingstreet": "shipping_street", "shipping street": "shipping_street",
    "shippingcity": "shipping_city", "shipping city": "shipping_city",
    "shippingstate": "shipping_region", "shipping state/province": "shipping_region",
    "shippingpostalcode": "shipping_postal_code", "shipping zip/postal code": "shipping_postal_code",
    "shippingcountry": "shipping_country", "shipping country": "shipping_country",
    "phone": "phone", "account phone": "phone", "website": "website",
    "currencyisocode": "currency", "account currency": "currency",
    "isdeleted": "deleted", "deleted": "deleted", "masterrecordid": "master_record",
    "lastmodifieddate": "last_modified", "last modified date": "last_modified",
    "systemmodstamp": "system_modstamp", "system modstamp": "system_modstamp",
}
SALESFORCE_CONTACT: dict[str, str] = {
    "id": "contact_id", "contact id": "contact_id", "accountid": "account", "account id": "account",
    "account name": "account_name", "firstname": "first_name", "first name": "first_name",
    "lastname": "last_name", "last name": "last_name", "email": "email", "phone": "phone",
    "title": "title",
}
HUBSPOT_COMPANY: dict[str, str] = {
    "record id": "external_id", "company id": "external_id", "hs_object_id": "external_id",
    "company name": "name", "name": "name",
    "parent company id": "parent", "hs_parent_company_id": "parent", "parent company": "parent",
    "street address": "street", "address": "street", "street address 2": "street2", "address2": "street2",
    "city": "city", "state/region": "region", "state": "region", "postal code": "postal_code", "zip": "postal_code",
    "country/region": "country", "country": "country", "phone number": "phone", "phone": "phone",
    "website url": "website", "website": "website", "company domain name": "domain", "domain": "domain",
    "currency": "currency", "last modified date": "last_modified", "hs_lastmodifieddate": "last_modified",
}


class ImportFileError(ValidationError):
    """A file that cannot be read as a whole (encoding, header, JSON)."""


@dataclass
class Mapping_:
    """The mapping file: how a file's columns become account fields (docs/customers.md)."""

    format: str | None = None
    object: str = "auto"  # account, contact, auto
    id_prefix: str | None = None
    external_id: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    contact_fields: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    skip: dict[str, Any] = field(default_factory=dict)
    encoding: str | None = None
    delimiter: str | None = None
    source: str | None = None


def load_mapping(path: str | None) -> Mapping_:
    if not path:
        return Mapping_()
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ValidationError(f"mapping file {path} does not exist", field="mapping", record=path) from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"mapping file {path} is not valid YAML: {exc}", field="mapping", record=path) from None
    problems = []
    if not isinstance(doc, dict):
        raise ValidationError(f"mapping file {path} must be a mapping", field="mapping", record=path)
    for key in sorted(set(doc) - MAPPING_KEYS):
        problems.append(f"unknown key {key!r} (keys: {', '.join(sorted(MAPPING_KEYS))})")
    fields = doc.get("fields") or {}
    for target in fields:
        if target not in ACCOUNT_FIELDS:
            problems.append(f"fields.{target}: not an account field ({', '.join(ACCOUNT_FIELDS[:18])})")
    for target in doc.get("contact_fields") or {}:
        if target not in CONTACT_FIELDS:
            problems.append(f"contact_fields.{target}: not a contact field ({', '.join(CONTACT_FIELDS)})")
    for target in doc.get("defaults") or {}:
        if target not in ACCOUNT_FIELDS:
            problems.append(f"defaults.{target}: not an account field")
    if doc.get("object", "auto") not in ("account", "contact", "auto"):
        problems.append("object must be account, contact or auto")
    if doc.get("format") not in (None, *FORMATS):
        problems.append(f"format must be one of {', '.join(FORMATS)}")
    if doc.get("delimiter") is not None and (not isinstance(doc["delimiter"], str) or len(doc["delimiter"]) != 1):
        problems.append("delimiter must be one character")
    if problems:
        raise ValidationError(f"mapping file {path}: " + "; ".join(problems), field="mapping", record=path,
                              errors=problems)
    return Mapping_(format=doc.get("format"), object=doc.get("object", "auto"), id_prefix=doc.get("id_prefix"),
                    external_id=doc.get("external_id"), fields={k: str(v) for k, v in fields.items()},
                    contact_fields={k: str(v) for k, v in (doc.get("contact_fields") or {}).items()},
                    defaults=dict(doc.get("defaults") or {}), skip=dict(doc.get("skip") or {}),
                    encoding=doc.get("encoding"), delimiter=doc.get("delimiter"), source=doc.get("source"))


# --------------------------------------------------------------------------- reading


@dataclass
class SourceRow:
    """One record of a file: where it is, what kind, and its fields (canonical names)."""

    file: str
    row: int
    kind: str  # account or contact
    data: dict[str, str]
    ref: str | None = None  # tree-format referenceId
    problems: list[dict[str, str]] = field(default_factory=list)


@dataclass
class ReadFile:
    name: str
    sha256: str
    encoding: str
    layout: str  # dataloader_csv, report_csv, csv, tree_json
    objects: tuple[str, ...]
    rows: list[SourceRow]
    warnings: list[dict[str, Any]] = field(default_factory=list)


# Byte-order marks, longest first: a UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (b"\xff\xfe\x00\x00", "utf-32", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32", "utf-32"),
    (b"\xef\xbb\xbf", "utf-8-sig", "utf-8-sig"), (b"\xff\xfe", "utf-16", "utf-16"), (b"\xfe\xff", "utf-16", "utf-16"),
)


def _line_of(text: str, offset: int) -> int:
    """The line (1-based) of a character offset, counting CRLF, LF and a lone CR as one line end each."""
    head = text[:offset]
    return head.count("\n") + head.count("\r") - head.count("\r\n") + 1


def _excerpt(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _checked_text(text: str, name: str) -> str:
    """Decoded text that the database can store: no NUL, no unpaired surrogate (both named with their line)."""
    if "\x00" in text:
        line = _line_of(text, text.index("\x00"))
        raise ImportFileError(f"file {name} line {line}: contains a NUL character (not a text export?)",
                              field="file", record=name, line=line)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        line = _line_of(text, exc.start)
        raise ImportFileError(f"file {name} line {line}: contains an unpaired surrogate (not valid Unicode)",
                              field="file", record=name, line=line) from None
    return text


def _decode_as(raw: bytes, codec: str, label: str, name: str) -> tuple[str, str]:
    try:
        return _checked_text(raw.decode(codec), name), label
    except (UnicodeDecodeError, LookupError) as exc:
        offset = getattr(exc, "start", 0)
        line = raw[:offset].count(b"\n") + 1
        raise ImportFileError(f"file {name} is not {label}: {exc.__class__.__name__} at byte {offset}"
                              f" (line {line})", field="file", record=name, line=line) from None


def decode(raw: bytes, name: str, forced: str | None = None) -> tuple[str, str]:
    """(text, encoding). A byte-order mark decides (UTF-8, UTF-16, UTF-32); else UTF-8, else Windows-1252
    (Latin-1 for its 5 holes). A NUL byte without a mark (UTF-16/32 without BOM, binary files) is refused,
    and so is text the database cannot store (a NUL or an unpaired surrogate)."""
    if not raw.strip():
        raise ImportFileError(f"file {name} is empty", field="file", record=name)
    if forced:
        return _decode_as(raw, forced, forced, name)
    for bom, codec, label in _BOMS:
        if raw.startswith(bom):
            return _decode_as(raw, codec, label, name)
    if b"\x00" in raw[:4096]:
        offset = raw.index(b"\x00")
        line = raw[:offset].count(b"\n") + 1
        raise ImportFileError(f"file {name} is not text: a NUL byte at offset {offset} (line"
                              f" {line}); export it as CSV (UTF-8 or Windows-1252)",
                              field="file", record=name)
    try:
        return _checked_text(raw.decode("utf-8"), name), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return _checked_text(raw.decode("cp1252"), name), "cp1252"
    except UnicodeDecodeError:
        return _checked_text(raw.decode("latin-1"), name), "latin-1"


def _fold_header(text: str) -> str:
    return " ".join(text.replace("\ufeff", "").strip().strip('"').lower().split())


def _known(fmt: str) -> list[dict[str, str]]:
    return [HUBSPOT_COMPANY] if fmt == "hubspot" else [SALESFORCE_ACCOUNT, SALESFORCE_CONTACT]


def _header_score(cells: Sequence[str], fmt: str) -> int:
    names = set()
    for cell in cells:
        folded = _fold_header(cell)
        names.add(folded.split(": ", 1)[1] if ": " in folded else folded)
    return sum(1 for n in names if any(n in table for table in _known(fmt)))


def _dialect(first_line: str, fmt: str, forced: str | None) -> str:
    if forced:
        return forced
    first_line = first_line[:_SNIFF_CHARS]  # a header is short; a huge first line is not one (csv's cell limit)
    best, best_score = ",", -1
    for delim in (",", ";", "\t", "|"):
        cells = next(csv.reader([first_line], delimiter=delim), [])
        score = _header_score(cells, fmt) if len(cells) > 1 else -1
        if score > best_score:
            best, best_score = delim, score
    return best


def _column_map(headers: Sequence[str], fmt: str, mapping: Mapping_, name: str) -> tuple[dict[int, tuple[str, str]],
                                                                                         tuple[str, ...], str]:
    """Column index -> (object, field), the objects present, and the layout."""
    folded = [_fold_header(h) for h in headers]
    report = any(": " in h for h in folded)
    out: dict[int, tuple[str, str]] = {}
    custom = {_fold_header(col): target for target, col in mapping.fields.items()}
    custom_contact = {_fold_header(col): target for target, col in mapping.contact_fields.items()}
    ext_col = _fold_header(mapping.external_id) if mapping.external_id else None
    for n, h in enumerate(folded):
        prefix, _, bare = h.rpartition(": ") if ": " in h else ("", "", h)
        if ext_col and h == ext_col:
            out[n] = ("account", "external_id")
        elif h in custom:
            out[n] = ("account", custom[h])
        elif h in custom_contact:
            out[n] = ("contact", custom_contact[h])
        elif fmt == "hubspot":
            if bare in HUBSPOT_COMPANY:
                out[n] = ("account", HUBSPOT_COMPANY[bare])
        elif prefix == "contact" or (prefix == "" and mapping.object == "contact"):
            if bare in SALESFORCE_CONTACT:
                out[n] = ("contact", SALESFORCE_CONTACT[bare])
        elif prefix in ("account", "parent account") or prefix == "":
            if prefix == "parent account" and bare in ("account id", "id"):
                out[n] = ("account", "parent")
            elif bare in SALESFORCE_ACCOUNT and prefix != "parent account":
                out[n] = ("account", SALESFORCE_ACCOUNT[bare])
            elif prefix == "" and bare in SALESFORCE_CONTACT and bare not in SALESFORCE_ACCOUNT:
                out[n] = ("contact", SALESFORCE_CONTACT[bare])
    if ext_col and ext_col not in folded:
        raise ImportFileError(f"file {name}: the mapping's external_id column {mapping.external_id!r} is not in the"
                              f" header ({_excerpt(', '.join(headers[:12]), 200)})", field="mapping", record=name)
    missing = [col for col in mapping.fields.values() if _fold_header(col) not in folded]
    if missing:
        raise ImportFileError(f"file {name}: mapped column(s) {', '.join(missing)} not in the header", field="mapping",
                              record=name)
    account_fields = {f for o, f in out.values() if o == "account"}
    contact_fields = {f for o, f in out.values() if o == "contact"}
    objects: list[str] = []
    if mapping.object == "contact":
        objects = ["contact"]
        out = {n: (("contact", "account") if f == "external_id" else (o, f)) for n, (o, f) in out.items()}
    elif "name" in account_fields or (mapping.object == "account" and account_fields):
        objects.append("account")
        if report and contact_fields & {"first_name", "last_name", "email"}:
            objects.append("contact")
    elif contact_fields & {"first_name", "last_name"}:
        objects = ["contact"]
        # A contacts file's plain Id is the contact's own id.
        out = {n: (("contact", "contact_id") if (o, f) == ("account", "external_id") else (o, f))
               for n, (o, f) in out.items()}
    if not objects:
        raise ImportFileError(
            f"file {name}: no header row naming known {fmt} columns (expected e.g. "
            + ("Record ID, Company name, Country/Region" if fmt == "hubspot" else "Id, Name, BillingCountry")
            + f"); the first line reads {_excerpt(', '.join(headers[:6]))!r}", field="file", record=name)
    layout = "report_csv" if report else ("dataloader_csv" if all(h == h.upper() for h in headers if h.strip())
                                          else "csv")
    return out, tuple(objects), layout


def _split(cells_to_fields: dict[int, tuple[str, str]], cells: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    account: dict[str, str] = {}
    contact: dict[str, str] = {}
    for n, value in enumerate(cells):
        target = cells_to_fields.get(n)
        if target is None:
            continue
        obj, name = target
        (account if obj == "account" else contact)[name] = value
    return account, contact


_SNIFF_CHARS = 65_536


def read_csv_cells(text: str, name: str, **fmt: Any) -> tuple[list[tuple[int, list[str]]], tuple[int, str] | None]:
    """Every record of an untrusted CSV text as (the line it starts on, its cells), and where reading stopped.

    closeloop.core.boundary.csv_rows reads rows as dicts without their line numbers; the importers report
    each rejected row by its line and check its width, so they read cells here with the same guards: any
    line end (CRLF, LF or a lone CR), cells up to boundary.MAX_CSV_FIELD characters, no NUL. A NUL or a
    larger cell refuses the file (ImportFileError naming the line); a record the csv module cannot read
    (an unbalanced quote: a truncated file) ends the reading, returned as ``(line, reason)``. ``fmt`` are
    csv.reader's format parameters (delimiter, strict, dialect...)."""
    text = _checked_text(text, name)
    limit = csv.field_size_limit()
    csv.field_size_limit(MAX_CSV_FIELD)
    try:
        # newline=None turns CRLF and a lone CR into LF, inside quoted cells too.
        reader = csv.reader(io.StringIO(text, newline=None), **fmt)
        out: list[tuple[int, list[str]]] = []
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return out, None
            except csv.Error as exc:
                if "field larger than field limit" in str(exc):
                    raise ImportFileError(f"file {name} line {start}: a cell longer than {MAX_CSV_FIELD:,}"
                                          " characters", field="file", record=name, line=start) from None
                return out, (start, str(exc))
            out.append((start, cells))
    finally:
        csv.field_size_limit(limit)


def read_csv(text: str, name: str, fmt: str, mapping: Mapping_) -> tuple[list[SourceRow], tuple[str, ...], str]:
    first_line = re.split(r"\r\n|\r|\n", text[:_SNIFF_CHARS], maxsplit=1)[0]
    delimiter = _dialect(first_line, fmt, mapping.delimiter)
    records, broken = read_csv_cells(text, name, delimiter=delimiter, strict=True)
    if not records:
        reason = f": {broken[1]}" if broken else ""
        raise ImportFileError(f"file {name}: the header line cannot be read{reason}", field="file",
                              record=name) from None
    headers = records[0][1]
    columns, objects, layout = _column_map(headers, fmt, mapping, name)
    rows: list[SourceRow] = []
    width = len(headers)
    ends_open = not text.endswith(("\n", "\r"))
    for n, (start, cells) in enumerate(records[1:], 2):
        if not cells or not "".join(cells).strip():
            continue
        if len(cells) != width:
            last = ends_open and broken is None and n == len(records)
            problem = None
            if len(cells) > width:
                problem = f"has {len(cells)} fields where the header has {width} (an unquoted {delimiter!r} in a value?)"
            elif len(cells) == 1 and width > 2 and any(d in cells[0] for d in ",;\t|" if d != delimiter):
                problem = (f"has 1 field where the header has {width}: wrong delimiter (the header uses"
                           f" {delimiter!r})")
            elif last:
                problem = f"has {len(cells)} fields where the header has {width}: the file looks truncated"
            if problem:
                rows.append(SourceRow(name, start, objects[0], {}, problems=[{"field": "(row)", "reason": problem}]))
                continue
            cells = [*cells, *([""] * (width - len(cells)))]  # report exports drop trailing empty cells
        account, contact = _split(columns, cells)
        if "account" in objects:
            rows.append(SourceRow(name, start, "account", account))
        if "contact" in objects:
            if objects == ("contact",):
                rows.append(SourceRow(name, start, "contact", {**contact, **{k: v for k, v in account.items()
                                                                            if k == "account"}}))
            elif any(contact.get(k, "").strip() for k in ("first_name", "last_name", "email")):
                if "external_id" in account:
                    contact.setdefault("account", account["external_id"])
                contact.setdefault("account_name", account.get("name", ""))
                rows.append(SourceRow(name, start, "contact", contact))
    if broken is not None:
        rows.append(SourceRow(name, broken[0], objects[0], {}, problems=[{
            "field": "(row)", "reason": f"truncated or malformed: {broken[1]} (the file ends inside a quoted field?)"}]))
    return rows, objects, layout


def read_tree_json(text: str, name: str, fmt: str, mapping: Mapping_) -> tuple[list[SourceRow], tuple[str, ...], str]:
    try:
        doc = parse_json(text, record=name)  # depth, numbers beyond 64 bits, NUL and surrogates refused
    except ValidationError as err:
        raise ImportFileError(f"file {err.message}", **{"field": "file", **err.details}) from None
    records = doc.get("records") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise ImportFileError(f"file {name}: a Salesforce tree file is an object with a 'records' list",
                              field="file", record=name)
    rows: list[SourceRow] = []
    kinds: list[str] = []
    for n, rec in enumerate(records, 1):
        if not isinstance(rec, dict):
            rows.append(SourceRow(name, n, "account", {}, problems=[{"field": "(record)", "reason": "not an object"}]))
            continue
        attrs = rec.get("attributes") or {}
        guess = "contact" if "LastName" in rec or "lastName" in rec else "account"
        if not isinstance(attrs, dict):
            rows.append(SourceRow(name, n, guess, {}, problems=[{
                "field": "attributes", "reason": f"must be an object ({{\"type\": \"Account\", \"referenceId\": ...}}),"
                                                 f" not {_json_kind(attrs)}"}]))
            continue
        ref = attrs.get("referenceId")
        if ref is not None and not isinstance(ref, str):
            rows.append(SourceRow(name, n, guess, {}, problems=[{
                "field": "attributes.referenceId", "reason": f"must be text, not {_json_kind(ref)}"}]))
            continue
        sobject = str(attrs.get("type") or ("Contact" if guess == "contact" else "Account"))
        kind = "contact" if sobject.lower() == "contact" else "account"
        if sobject.lower() not in ("account", "contact"):
            rows.append(SourceRow(name, n, kind, {}, ref=ref, problems=[{
                "field": "attributes.type", "reason": f"{_excerpt(sobject)} records are not imported (Account, Contact)"}]))
            continue
        headers = [k for k in rec if k != "attributes"]
        columns, _objects, _layout = _column_map(headers, fmt, Mapping_(**{**mapping.__dict__, "object": kind}), name) \
            if headers else ({}, (kind,), "tree_json")
        nested = [headers[i] for i in columns if isinstance(rec[headers[i]], (dict, list))]
        if nested:
            rows.append(SourceRow(name, n, kind, {}, ref=ref, problems=[
                {"field": h, "reason": f"must be a value, not {_json_kind(rec[h])}"} for h in nested]))
            continue
        cells = ["" if i not in columns or rec[h] is None else str(rec[h]) for i, h in enumerate(headers)]
        account, contact = _split(columns, cells)
        data = account if kind == "account" else {**contact, **{k: v for k, v in account.items() if k == "account"}}
        if kind == "contact" and "contact_id" not in data and "external_id" in account:
            data["contact_id"] = account["external_id"]
        rows.append(SourceRow(name, n, kind, data, ref=ref))
        kinds.append(kind)
    return rows, tuple(dict.fromkeys(kinds)) or ("account",), "tree_json"


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true or false", int: "a number",
            float: "a number"}.get(type(value), "null")


def read_file(path: str, fmt: str, mapping: Mapping_) -> ReadFile:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ValidationError(f"file {path} does not exist", field="file", record=path) from None
    except IsADirectoryError:
        raise ValidationError(f"{path} is a folder, not a file", field="file", record=path) from None
    text, encoding = decode(raw, p.name, mapping.encoding)
    stripped = text.lstrip("\ufeff \r\n\t")
    if stripped.startswith(("{", "[")):
        rows, objects, layout = read_tree_json(stripped, p.name, fmt, mapping)
    else:
        rows, objects, layout = read_csv(text.lstrip("\ufeff"), p.name, fmt, mapping)
    return ReadFile(p.name, hashlib.sha256(raw).hexdigest(), encoding, layout, objects, rows)


# --------------------------------------------------------------------------- the plan


@dataclass
class AccountPlan:
    row: SourceRow
    ext: str
    given: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)
    tax_check: str | None = None
    current: Customer | None = None
    status: str = "created"  # created, updated, unchanged, rejected
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    refused: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    match: dict[str, str] | None = None  # the values the matcher compares, once computed
    keys: list[str] | None = None  # its blocking keys
    stamp: str | None = None  # the row's modification time in the source (LastModifiedDate, SystemModstamp)
    stored_stamps: dict[str, str] = field(default_factory=dict)  # what the source gave before, per field
    stale: dict[str, tuple[Any, Any, str]] = field(default_factory=dict)  # field: (kept, ignored, stored time)


@dataclass
class ContactPlan:
    row: SourceRow
    ext: str
    account_ext: str | None
    values: dict[str, Any]
    status: str = "created"
    problems: list[dict[str, str]] = field(default_factory=list)
    current_id: int | None = None


@dataclass
class ImportPlan:
    files: list[ReadFile]
    fmt: str
    source: str
    accept_valid: bool
    accounts: list[AccountPlan]
    contacts: list[ContactPlan]
    skipped: list[dict[str, Any]]
    duplicates: list[dict[str, Any]]
    duplicate_pairs: list[tuple[str, str, float, str, list[dict[str, Any]]]]
    quality: dict[str, str]
    registry_version: str

    def rejected(self) -> list[dict[str, Any]]:
        out = []
        for a in self.accounts:
            if a.status == "rejected":
                out.append({"file": a.row.file, "row": a.row.row, "object": "account", "external_id": a.ext or None,
                            "field": a.problems[0]["field"], "reason": a.problems[0]["reason"],
                            "problems": a.problems})
        for c in self.contacts:
            if c.status == "rejected":
                out.append({"file": c.row.file, "row": c.row.row, "object": "contact", "external_id": c.ext or None,
                            "field": c.problems[0]["field"], "reason": c.problems[0]["reason"],
                            "problems": c.problems})
        out.sort(key=lambda r: (r["file"], r["row"], r["object"]))
        return out

    def conflicts(self, reg: governance.Registry | None = None) -> list[dict[str, Any]]:
        return [{"file": a.row.file, "row": a.row.row, "external_id": a.ext, "field": f,
                 "owners": list(reg.owners(ENTITY_TYPE, f)) if reg else None, "source": self.source,
                 "old": old, "new": new}
                for a in self.accounts for f, (old, new) in a.refused.items()]

    def stale_fields(self) -> list[dict[str, Any]]:
        """Values not applied because the source had already given a later one (docs/customers.md)."""
        return [{"file": a.row.file, "row": a.row.row, "external_id": a.ext, "field": f, "kept": kept,
                 "ignored": ignored, "modified_at": a.stamp, "stored_modified_at": at}
                for a in self.accounts for f, (kept, ignored, at) in a.stale.items()]

    def report(self, *, reg: governance.Registry | None = None, dry_run: bool, committed: bool,
               limit: int | None = None) -> dict[str, Any]:
        def count(items: Iterable[Any], status: str) -> int:
            return sum(1 for x in items if x.status == status)

        rejected = self.rejected()
        conflicts = self.conflicts(reg)
        warnings = [{"file": a.row.file, "row": a.row.row, "external_id": a.ext, **w}
                    for a in self.accounts if a.status != "rejected" for w in a.warnings]
        cut = (lambda xs: xs[:limit]) if limit is not None else (lambda xs: xs)
        return {
            "format": self.fmt, "source": self.source,
            "files": [{"name": f.name, "sha256": f.sha256, "encoding": f.encoding, "layout": f.layout,
                       "objects": list(f.objects), "rows": len(f.rows)} for f in self.files],
            "mode": "accept_valid" if self.accept_valid else "all_or_nothing", "dry_run": dry_run,
            "committed": committed, "registry_version": self.registry_version,
            "rows_read": len(self.accounts) + len(self.contacts) + len(self.skipped),
            "accounts_read": len(self.accounts),
            "created": count(self.accounts, "created"), "updated": count(self.accounts, "updated"),
            "unchanged": count(self.accounts, "unchanged"), "rejected": len(rejected),
            "stale": count(self.accounts, "stale"), "skipped": len(self.skipped),
            "contacts": {s: count(self.contacts, s) for s in ("created", "updated", "unchanged", "rejected")},
            "governance_conflicts": len(conflicts), "suspected_duplicates": len(self.duplicates),
            "quality": self.quality,
            "rejections": cut(rejected), "conflicts": cut(conflicts), "duplicates": cut(self.duplicates),
            "skipped_rows": cut(self.skipped), "warnings": cut(warnings), "stale_fields": cut(self.stale_fields()),
        }


def _derived_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha1("|".join(fold(p) for p in parts).encode()).hexdigest()[:16]
    return f"{prefix}NK-{digest}"


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes", "y", "x")


def _account_given(data: Mapping[str, str], mapping: Mapping_, fmt: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Canonical account fields of one row (what validate_fields takes) and repair notes."""
    notes: list[dict[str, str]] = []
    values = {k: v for k, v in data.items() if v is not None and str(v).strip() != ""}
    for key, default in mapping.defaults.items():
        if key not in values and default is not None:
            values[key] = str(default)
    if "country" not in values and values.get("shipping_country"):
        for a, b in (("street", "shipping_street"), ("city", "shipping_city"), ("region", "shipping_region"),
                     ("postal_code", "shipping_postal_code"), ("country", "shipping_country")):
            if b in values:
                values[a] = values[b]
        notes.append({"field": "country", "reason": "billing address empty; the shipping address was used"})
    if "website" not in values and values.get("domain"):
        values["website"] = values["domain"]
    given: dict[str, Any] = {}
    for name in ("name", "country", "region", "postal_code", "phone", "website", "email", "tax_id", "exemption_ref",
                 "currency", "entity", "payment_terms_days", "status"):
        if name in values:
            given[name] = values[name]
    if "tax_exempt" in values:
        given["tax_exempt"] = values["tax_exempt"]
    street = values.get("street", "")
    lines = [ln.strip() for ln in street.replace("\r\n", "\n").split("\n") if ln.strip()]
    address = {"street": lines[0] if lines else None,
               "street2": " ".join(lines[1:]) or values.get("street2"), "city": values.get("city")}
    if any(address.values()):
        given["address"] = {k: v for k, v in address.items() if v}
    if isinstance(given.get("status"), str):
        given["status"] = given["status"].strip().lower()
    return given, notes


def _row_stamp(data: Mapping[str, str], warnings: list[dict[str, str]]) -> str | None:
    """The row's modification time in the source: the later of LastModifiedDate and SystemModstamp (the
    row's values were current then). One that cannot be read is a warning: the row is applied unchecked."""
    stamps = []
    for name in ("last_modified", "system_modstamp"):
        value = (data.get(name) or "").strip()
        if value:
            try:
                stamps.append(source_time(value))
            except ValueError as exc:
                warnings.append({"field": name, "reason": f"{exc}; the row is applied without the stale check"})
    return max(stamps, default=None)


def plan_import(uow: Any, paths: Sequence[str], fmt: str, *, mapping: Mapping_ | None = None,
                accept_valid: bool = False) -> ImportPlan:
    """Read the files and decide, row by row, what the import would do. Writes nothing."""
    if fmt not in FORMATS:
        raise ValidationError(f"format {fmt!r} must be one of {', '.join(FORMATS)}", field="format")
    mapping = mapping or Mapping_()
    if mapping.format and mapping.format != fmt:
        raise ValidationError(f"the mapping file is for {mapping.format}, not {fmt}", field="mapping")
    source = uow.source
    reg = governance.registry(uow)
    reg.check_source(source)
    prefix = mapping.id_prefix if mapping.id_prefix is not None else ("HS-" if fmt == "hubspot" else "")
    files = [read_file(p, fmt, mapping) for p in paths]
    accounts: list[AccountPlan] = []
    contact_rows: list[SourceRow] = []
    skipped: list[dict[str, Any]] = []
    by_ref: dict[tuple[str, str], str] = {}
    by_name: dict[str, str] = {}
    for f in files:
        for row in f.rows:
            if row.kind == "contact":
                contact_rows.append(row)
                continue
            data = row.data
            skip_reason = None
            if _true(data.get("deleted")):
                skip_reason = "deleted in the CRM (IsDeleted)"
            for col, value in mapping.skip.items():
                target = next((t for t, c in mapping.fields.items() if c == col), col)
                if str(data.get(target, "")).strip() == str(value):
                    skip_reason = f"skipped by the mapping ({col} = {value})"
            if skip_reason:
                skipped.append({"file": row.file, "row": row.row, "external_id": data.get("external_id"),
                                "reason": skip_reason})
                continue
            given, notes = _account_given(data, mapping, fmt)
            raw_id = clean(data.get("external_id", ""))
            if raw_id:
                ext = prefix + raw_id
            elif row.problems:
                ext = ""
            else:
                ext = _derived_id(prefix, given.get("name", ""), str(given.get("country", "")),
                                  str(given.get("postal_code", "")))
            plan = AccountPlan(row, ext, given, problems=list(row.problems), warnings=notes)
            plan.stamp = _row_stamp(data, plan.warnings)
            if data.get("parent"):
                raw_parent = clean(data["parent"])
                if fmt == "hubspot" and not raw_parent.isdigit():
                    plan.given["parent"] = ("@name", raw_parent)
                else:
                    plan.given["parent"] = prefix + raw_parent.lstrip("@") if not raw_parent.startswith("@") \
                        else ("@ref", raw_parent[1:])
            if data.get("bill_to"):
                plan.given["bill_to"] = prefix + clean(data["bill_to"])
            if data.get("master_record"):
                plan.warnings.append({"field": "master_record", "reason": f"merged in the CRM into"
                                      f" {prefix}{clean(data['master_record'])}"})
            accounts.append(plan)
            if row.ref:
                by_ref[(row.file, row.ref)] = ext
                by_ref[("*", row.ref)] = ext
            if given.get("name"):
                by_name.setdefault(fold(clean(given["name"])), ext)
    # Parents named by a tree reference or (HubSpot) by company name resolve inside the file.
    for a in accounts:
        p = a.given.get("parent")
        if isinstance(p, tuple):
            kind, value = p
            if kind == "@ref":
                target = by_ref.get((a.row.file, value)) or by_ref.get(("*", value))
            else:
                target = by_name.get(fold(value))
            if target is None:
                a.problems.append({"field": "parent", "reason": f"parent {value!r} is not in the file"})
                a.given.pop("parent")
            else:
                a.given["parent"] = target
    existing = _load_existing(uow, [a.ext for a in accounts if a.ext] +
                              [str(a.given[k]) for a in accounts for k in ("parent", "bill_to") if a.given.get(k)])
    refs = external_ids(uow, [x for c in existing.values() for x in (c.parent_id, c.bill_to_id) if x is not None])
    first_row: dict[str, AccountPlan] = {}
    for a in accounts:
        if a.problems:
            a.status = "rejected"
            continue
        if a.ext in first_row:
            other = first_row[a.ext]
            if other.given == a.given:
                a.status = "repeat"
                skipped.append({"file": a.row.file, "row": a.row.row, "external_id": a.ext,
                                "reason": f"repeats the account of {other.row.file} line {other.row.row}"})
                continue
            a.problems.append({"field": "external_id", "reason": f"{a.ext} appears again with other values (first"
                               f" at {other.row.file} line {other.row.row})"})
            a.status = "rejected"
            continue
        first_row[a.ext] = a
        current = existing.get(a.ext)
        if current is not None and current.status == "merged":
            current = _follow(uow, current)
        a.current = current
        checked = validate_fields(a.given, creating=current is None,
                                  current_country=current.country if current else None, currencies=check_currency)
        if checked.problems:
            a.problems.extend(p.to_dict() for p in checked.problems)
            a.status = "rejected"
            continue
        a.values = dict(checked.values)
        a.tax_check = checked.tax_check
        a.warnings.extend(w.to_dict() for w in checked.warnings)
    accounts = [a for a in accounts if a.status != "repeat"]
    _resolve_parents(uow, accounts, existing)
    stamps = source_stamps(uow, [a.current.id for a in accounts if a.current is not None and a.stamp is not None
                                 and a.status != "rejected"], source)
    for a in accounts:
        if a.status == "rejected":
            continue
        if a.current is None:
            a.status = "created"
            continue
        before = field_values(uow, a.current, refs)
        changes = {k: (before.get(k), v) for k, v in a.values.items() if before.get(k) != v}
        if a.stamp is not None:
            # A value the source already gave with a later time keeps it (a re-imported older export).
            a.stored_stamps = stamps.get(a.current.id, {})
            for name, at in stale_fields(changes, a.stamp, a.stored_stamps).items():
                a.stale[name] = (*changes.pop(name), at)
        allowed, refused = governance.decide(reg, ENTITY_TYPE, changes, source)
        a.changes, a.refused = allowed, refused
        a.status = "updated" if allowed else ("stale" if a.stale else "unchanged")
    contacts = _plan_contacts(uow, contact_rows, accounts, by_ref, by_name, prefix)
    duplicates, pairs, dup_rows = _find_duplicates(uow, accounts)
    quality = _quality(accounts, dup_rows)
    return ImportPlan(files, fmt, source, accept_valid, accounts, contacts, skipped, duplicates, pairs, quality,
                      reg.version)


def _load_existing(uow: Any, ids: Iterable[str]) -> dict[str, Customer]:
    wanted = sorted(set(ids))
    out: dict[str, Customer] = {}
    for start in range(0, len(wanted), 900):
        chunk = wanted[start:start + 900]
        marks = ",".join("?" * len(chunk))
        for row in uow.all(f"SELECT {_COLUMNS} FROM customer WHERE external_id IN ({marks})", chunk):
            c = _from_row(row)
            out[c.external_id] = c
        missing = [x for x in chunk if x not in out]
        if missing:
            marks = ",".join("?" * len(missing))
            aliases = uow.all(f"SELECT external_id, customer_id FROM customer_external_id WHERE external_id IN ({marks})",
                              missing)
            for alias, cid in aliases:
                row = uow.one(f"SELECT {_COLUMNS} FROM customer WHERE id = ?", (int(cid),))
                if row is not None:
                    out[alias] = _from_row(row)
    return out


def _resolve_parents(uow: Any, accounts: list[AccountPlan], existing: dict[str, Customer]) -> None:
    """Missing parents, rejected parents (cascading) and cycles reject the row that names them."""
    in_file = {a.ext: a for a in accounts if a.status != "rejected"}
    rejected_at = {a.ext: a for a in accounts if a.status == "rejected" and a.ext}
    changed = True
    while changed:
        changed = False
        for a in accounts:
            if a.status == "rejected":
                continue
            for ref in ("parent", "bill_to"):
                target = a.values.get(ref)
                if target is None:
                    continue
                if target == a.ext or (a.current is not None and existing.get(target) is not None
                                       and _follow(uow, existing[target]).id == a.current.id):
                    a.problems.append({"field": ref, "reason": f"{ref} cannot be the account itself"})
                elif target in in_file:
                    continue
                elif target in rejected_at:
                    bad = rejected_at[target]
                    a.problems.append({"field": ref, "reason": f"{ref} {target} was rejected ({bad.row.file} line"
                                       f" {bad.row.row})"})
                elif target not in existing:
                    a.problems.append({"field": ref, "reason": f"{ref} {target} does not exist in the file or the"
                                       " customer master"})
                else:
                    continue
                a.status = "rejected"
                in_file.pop(a.ext, None)
                rejected_at[a.ext] = a
                changed = True
                break
    # Cycles: follow parents through the file's new values, then the stored hierarchy.
    stored_parent: dict[int, int | None] = {}
    id_to_ext: dict[int, str] = {c.id: ext for ext, c in existing.items()}

    def parent_ext(ext: str) -> str | None:
        plan = in_file.get(ext)
        if plan is not None and "parent" in plan.values:
            return plan.values["parent"]  # type: ignore[no-any-return]
        c = plan.current if plan is not None else existing.get(ext)
        if c is None:
            return None
        if c.parent_id is None:
            return None
        if c.parent_id not in id_to_ext:
            row = uow.one("SELECT external_id, parent_id FROM customer WHERE id = ?", (c.parent_id,))
            if row is None:
                return None
            id_to_ext[c.parent_id] = row[0]
            stored_parent[c.parent_id] = row[1]
        return id_to_ext[c.parent_id]

    for a in accounts:
        if a.status == "rejected" or a.values.get("parent") is None:
            continue
        seen = [a.ext]
        node = a.values["parent"]
        steps = 0
        while node is not None and steps < 10_000:
            if node in seen:
                loop = " -> ".join([*seen, node])
                a.problems.append({"field": "parent", "reason": f"parent {a.values['parent']} would make a cycle"
                                   f" ({loop})"})
                a.status = "rejected"
                break
            seen.append(node)
            if node not in in_file and node not in existing:
                row = uow.one("SELECT external_id FROM customer WHERE external_id = ?", (node,))
                if row is None:
                    break
            node = parent_ext(node)
            steps += 1


def _plan_contacts(uow: Any, rows: list[SourceRow], accounts: list[AccountPlan], by_ref: dict[tuple[str, str], str],
                   by_name: dict[str, str], prefix: str) -> list[ContactPlan]:
    ok_accounts = {a.ext for a in accounts if a.status != "rejected"}
    rejected_accounts = {a.ext: a for a in accounts if a.status == "rejected"}
    plans: list[ContactPlan] = []
    seen: set[str] = set()
    wanted: list[str] = []
    for row in rows:
        d = row.data
        account_raw = clean(d.get("account", ""))
        if account_raw.startswith("@"):
            account = by_ref.get((row.file, account_raw[1:])) or by_ref.get(("*", account_raw[1:]))
        elif account_raw:
            account = prefix + account_raw
        else:
            account = by_name.get(fold(clean(d.get("account_name", "")))) if d.get("account_name") else None
        values = {k: clean(d[k]) for k in ("first_name", "last_name", "email", "phone", "title") if d.get(k)}
        ext = clean(d.get("contact_id", ""))
        ext = prefix + ext if ext else (f"{account or 'none'}:C-" + hashlib.sha1(
            "|".join(fold(values.get(k, "")) for k in ("first_name", "last_name", "email")).encode()).hexdigest()[:12])
        plan = ContactPlan(row, ext, account, values, problems=list(row.problems))
        if not plan.problems:
            if not account:
                plan.problems.append({"field": "account", "reason": f"account {account_raw or d.get('account_name')!r}"
                                      " is not in the file" if account_raw or d.get("account_name")
                                      else "no account given"})
            elif account in rejected_accounts:
                bad = rejected_accounts[account]
                plan.problems.append({"field": "account", "reason": f"account {account} was rejected ({bad.row.file}"
                                      f" line {bad.row.row})"})
            if values.get("email") and normalise_email(values["email"]) is None:
                plan.problems.append({"field": "email", "reason": f"{values['email']!r} is not an email address"})
            elif values.get("email"):
                values["email"] = normalise_email(values["email"])
            if not (values.get("last_name") or values.get("first_name") or values.get("email")):
                plan.problems.append({"field": "last_name", "reason": "a contact needs a name or an email"})
            if ext in seen:
                plan.problems.append({"field": "contact_id", "reason": f"{ext} appears again in the file"})
        seen.add(ext)
        if account and account not in ok_accounts:
            wanted.append(account)
        plans.append(plan)
    stored = _load_existing(uow, wanted)
    existing_contacts: dict[str, tuple[Any, ...]] = {}
    exts = [p.ext for p in plans]
    for start in range(0, len(exts), 900):
        chunk = exts[start:start + 900]
        marks = ",".join("?" * len(chunk))
        for r in uow.all("SELECT external_id, id, customer_id, first_name, last_name, email, phone, title"
                         f" FROM customer_contact WHERE external_id IN ({marks})", chunk):
            existing_contacts[r[0]] = tuple(r)
    for plan in plans:
        if plan.problems:
            plan.status = "rejected"
            continue
        if plan.account_ext not in ok_accounts and plan.account_ext not in stored:
            plan.problems.append({"field": "account", "reason": f"account {plan.account_ext} does not exist in the"
                                  " file or the customer master"})
            plan.status = "rejected"
            continue
        found = existing_contacts.get(plan.ext)
        if found is None:
            plan.status = "created"
            continue
        plan.current_id = int(found[1])
        current = dict(zip(("first_name", "last_name", "email", "phone", "title"), found[3:], strict=True))
        merged = {**current, **plan.values}
        owner = stored.get(plan.account_ext or "")
        same_owner = owner is not None and _follow(uow, owner).id == int(found[2])
        plan.status = "unchanged" if merged == current and same_owner else "updated"
    return plans


def _find_duplicates(uow: Any, accounts: list[AccountPlan]
                     ) -> tuple[list[dict[str, Any]], list[tuple[str, str, float, str, list[dict[str, Any]]]], set[int]]:
    """Suspected duplicates among the file's new and changed accounts and against the master."""
    cfg = match_config()
    rows = [a for a in accounts if a.status in ("created", "updated")]
    if not rows:
        return [], [], set()
    fields: list[dict[str, str]] = []
    for a in rows:
        v = {**(field_values(uow, a.current) if a.current is not None else {}),
             **{k: n for k, (_o, n) in a.changes.items()}} if a.current is not None else a.values
        a.match = match_fields(v["name"], v["country"], v.get("postal_code"), v.get("address"), v.get("tax_id"),
                               v.get("email"), v.get("website"), v.get("phone"))
        a.keys = keys_of(a.match)
        fields.append(a.match)
    keys = [a.keys or [] for a in rows]
    # Stored accounts sharing a key with the file, except the file's own accounts.
    own = {a.current.id for a in rows if a.current is not None}
    all_keys = sorted({k for ks in keys for k in ks})
    stored_ids: set[int] = set()
    big: set[str] = set()
    for start in range(0, len(all_keys), 900):
        chunk = all_keys[start:start + 900]
        marks = ",".join("?" * len(chunk))
        for key, n in uow.all(f"SELECT key, COUNT(*) FROM customer_match_key WHERE key IN ({marks}) GROUP BY key",
                              chunk):
            if int(n) > cfg.max_block:
                big.add(key)
        usable = [k for k in chunk if k not in big]
        if usable:
            marks = ",".join("?" * len(usable))
            stored_ids.update(int(r[0]) for r in uow.all(
                f"SELECT DISTINCT customer_id FROM customer_match_key WHERE key IN ({marks})", usable))
    stored_ids -= own
    stored: list[Customer] = []
    ids = sorted(stored_ids)
    for start in range(0, len(ids), 900):
        chunk = ids[start:start + 900]
        marks = ",".join("?" * len(chunk))
        stored.extend(_from_row(r) for r in uow.all(f"SELECT {_COLUMNS} FROM customer WHERE id IN ({marks})"
                                                    " AND status != 'merged'", chunk))
    for c in stored:
        f = match_fields(c.name, c.country, c.postal_code, c.address, c.tax_id, c.email, c.website, c.phone)
        fields.append(f)
        keys.append([k for k in keys_of(f) if k not in big])
    columns = {col: [f[col] for f in fields] for col in matching.CUSTOMER_COLUMNS}
    scored = matching.find_duplicates(columns, keys, cfg, first=len(rows))
    n_rows = len(rows)
    out: list[dict[str, Any]] = []
    pairs: list[tuple[str, str, float, str, list[dict[str, Any]]]] = []
    involved: set[int] = set()
    order = np.argsort(-scored.score, kind="stable")
    for n in order:
        i, j = int(scored.i[n]), int(scored.j[n])
        a = rows[i]
        other_ext = rows[j].ext if j < n_rows else stored[j - n_rows].external_id
        score = float(scored.score[n])
        decision = matching.classify(score, cfg)
        explanation = matching.explain(cfg, scored.sims[n], scored.points[n])
        item = {"file": a.row.file, "row": a.row.row, "external_id": a.ext, "other": other_ext,
                "other_row": rows[j].row.row if j < n_rows else None, "score": f"{score:.2f}", "decision": decision,
                "fields": explanation}
        out.append(item)
        pairs.append((a.ext, other_ext, score, decision, explanation))
        involved.add(id(a))
        if j < n_rows:
            involved.add(id(rows[j]))
    return out, pairs, involved


def _quality(accounts: list[AccountPlan], dup_rows: set[int]) -> dict[str, str]:
    key_fields = settings()["quality"]["key_fields"]
    filled = possible = checked = valid = parents = resolved = 0
    for a in accounts:
        g = a.given
        present = {"name": g.get("name"), "country": g.get("country"), "postal_code": g.get("postal_code"),
                   "address": g.get("address"), "email": g.get("email"), "website": g.get("website"),
                   "tax_id": g.get("tax_id")}
        for name in key_fields:
            possible += 1
            if name == "email_or_website":
                filled += bool(present["email"] or present["website"])
            else:
                filled += present.get(name) not in (None, "", {})
        bad = {p["field"] for p in a.problems} | {w["field"] for w in a.warnings
                                                   if w["field"] in ("postal_code", "region")}
        for name in ("country", "region", "tax_id", "email", "postal_code"):
            if g.get(name) not in (None, ""):
                checked += 1
                valid += name not in bad
        if g.get("parent"):
            parents += 1
            resolved += "parent" not in {p["field"] for p in a.problems}
    q = QualityInput(len(accounts), filled, possible, checked, valid, len(dup_rows), parents, resolved,
                     quality_weights())
    return quality_score(q)


# --------------------------------------------------------------------------- applying the plan

_INSERT_COLUMNS = ("external_id, name, name_key, country, region, postal_code, tax_id, tax_id_valid, tax_id_check,"
                   " tax_exempt, exemption_ref, entity, currency, payment_terms_days, email, phone, website, address,"
                   " parent_id, bill_to_id, status, source, created_at, updated_at, version")


def apply_plan(uow: Any, plan: ImportPlan) -> dict[str, Any]:
    """Persist the plan in this unit of work; returns {created, updated, ...} with the import id."""
    from closeloop.customers.service import _record_changes, record_duplicates, record_stamps

    reg = governance.registry(uow)
    now = uow.now()
    created = [a for a in plan.accounts if a.status == "created"]
    updated = [a for a in plan.accounts if a.status == "updated"]
    rows = []
    for a in created:
        v = a.values
        terms = v.get("payment_terms_days")
        rows.append((a.ext, v["name"], name_key(v["name"]), v["country"], v.get("region"), v.get("postal_code"),
                     v.get("tax_id"), v.get("tax_id") is not None, a.tax_check if v.get("tax_id") else None,
                     bool(v.get("tax_exempt", False)), v.get("exemption_ref"), v.get("entity"), v.get("currency"),
                     DEFAULT_PAYMENT_TERMS_DAYS if terms is None else terms, v.get("email"), v.get("phone"),
                     v.get("website"), dumps(v["address"]) if v.get("address") else None, None, None,
                     v.get("status") or "active", plan.source, now, now, 1))
    uow.executemany(f"INSERT INTO customer ({_INSERT_COLUMNS}) VALUES ({','.join('?' * 25)})", rows)
    ids = _ids_of(uow, [a.ext for a in plan.accounts if a.status != "rejected"] +
                  [str(a.values[k]) for a in plan.accounts if a.status != "rejected" for k in ("parent", "bill_to")
                   if a.values.get(k)])
    # Links to parents and bill-to accounts, now that every id is known.
    links = [(ids.get(a.values["parent"]) if a.values.get("parent") else None,
              ids.get(a.values["bill_to"]) if a.values.get("bill_to") else None, ids[a.ext])
             for a in created if a.values.get("parent") or a.values.get("bill_to")]
    uow.executemany("UPDATE customer SET parent_id = ?, bill_to_id = ? WHERE id = ?", links)
    for a in updated:
        sets: dict[str, Any] = {}
        for name, (_old, new) in a.changes.items():
            if name in ("parent", "bill_to"):
                sets["parent_id" if name == "parent" else "bill_to_id"] = ids.get(new) if new else None
            elif name == "address":
                sets["address"] = dumps(new) if new else None
            elif name == "tax_id":
                sets.update(tax_id=new, tax_id_valid=new is not None, tax_id_check=a.tax_check if new else None)
            elif name == "name":
                sets.update(name=new, name_key=name_key(new))
            elif name == "payment_terms_days":
                sets[name] = DEFAULT_PAYMENT_TERMS_DAYS if new is None else new
            elif name == "tax_exempt":
                sets[name] = bool(new)
            else:
                sets[name] = new
        sets["updated_at"] = now
        assert a.current is not None
        uow.execute(f"UPDATE customer SET {', '.join(f'{k} = ?' for k in sets)}, version = version + 1 WHERE id = ?",
                    (*sets.values(), a.current.id))
        _record_changes(uow, a.current.id, a.changes, "import")
    # Blocking keys of new and changed accounts.
    key_rows: list[tuple[str, int]] = []
    identity = {"name", "country", "postal_code", "address", "tax_id", "email", "website", "phone"}
    touched = [a for a in created] + [a for a in updated if identity & set(a.changes)]
    for a in touched:
        cid = ids[a.ext] if a.current is None else a.current.id
        if a.current is not None:
            uow.execute("DELETE FROM customer_match_key WHERE customer_id = ?", (cid,))
        keys = a.keys
        if keys is None:
            v = {**field_values(uow, a.current), **{k: n for k, (_o, n) in a.changes.items()}} \
                if a.current is not None else a.values
            keys = keys_of(match_fields(v["name"], v["country"], v.get("postal_code"), v.get("address"),
                                        v.get("tax_id"), v.get("email"), v.get("website"), v.get("phone")))
        key_rows.extend((k[:200], cid) for k in dict.fromkeys(keys))
    uow.executemany("INSERT INTO customer_match_key (key, customer_id) VALUES (?, ?)", key_rows)
    # The source's modification times of the values it gave (created, applied or unchanged; not the stale or
    # refused ones), so that an older export imported later does not overwrite them.
    record_stamps(uow, [(ids[a.ext] if a.current is None else a.current.id, name, a.stamp)
                        for a in plan.accounts if a.stamp is not None and a.status != "rejected"
                        for name in a.values if name not in a.stale and name not in a.refused
                        and a.stored_stamps.get(name, "") < a.stamp])
    # Events: one per account created or changed.
    # customer.created from an import carries the fields the file set (absent ones are empty).
    uow.emit_many("customer.created", "customer", [
        (str(ids[a.ext]), a.values.get("entity"), {
            "id": ids[a.ext], "external_id": a.ext, **a.values,
            "payment_terms_days": a.values.get("payment_terms_days") or DEFAULT_PAYMENT_TERMS_DAYS,
            "status": a.values.get("status") or "active", "import": True})
        for a in created])
    uow.emit_many("customer.updated", "customer", [
        (str(a.current.id), a.current.entity, {"id": a.current.id, "external_id": a.current.external_id,
                                               "changes": {f: [o, n] for f, (o, n) in a.changes.items()},
                                               "refused": sorted(a.refused), "import": True})
        for a in updated if a.current is not None])
    # Refused fields are governance exceptions; rejected rows are import exceptions (accept_valid).
    conflicts = 0
    for a in plan.accounts:
        if a.refused and a.current is not None:
            governance.open_refusals(uow, reg, ENTITY_TYPE, a.current.external_id, a.refused, plan.source,
                                     entity=a.current.entity)
            conflicts += len(a.refused)
    digest = hashlib.sha256("".join(f.sha256 for f in plan.files).encode()).hexdigest()[:16]
    for r in plan.rejected():
        text = "; ".join(f"{p['field']}: {p['reason']}" for p in r["problems"])
        open_exception(uow, "import_rejected", record_type="import_row", record_id=f"{r['file']}:{r['row']}",
                       message=f"{r['file']} line {r['row']} ({r['object']} {r['external_id'] or 'without id'}):"
                               f" {text}",
                       details={"file": r["file"], "row": r["row"], "object": r["object"],
                                "external_id": r["external_id"], "problems": r["problems"], "format": plan.fmt},
                       dedup_key=f"import_rejected:{digest}:{r['file']}:{r['row']}:{r['object']}")
    # Contacts.
    contact_new = [c for c in plan.contacts if c.status == "created"]
    contact_upd = [c for c in plan.contacts if c.status == "updated"]
    owner_ids = _ids_of(uow, [c.account_ext for c in contact_new + contact_upd if c.account_ext])
    cols = ("first_name", "last_name", "email", "phone", "title")
    uow.executemany(
        "INSERT INTO customer_contact (external_id, customer_id, first_name, last_name, email, phone, title, source,"
        " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [(c.ext, owner_ids[c.account_ext or ""], *[c.values.get(k) for k in cols], plan.source, now, now)
         for c in contact_new])
    for c in contact_upd:
        sets = {k: c.values[k] for k in cols if k in c.values}
        uow.execute(f"UPDATE customer_contact SET customer_id = ?, {', '.join(f'{k} = ?' for k in sets)},"
                    " updated_at = ? WHERE id = ?", (owner_ids[c.account_ext or ""], *sets.values(), now, c.current_id))
    if contact_new or contact_upd:
        uow.emit_many("contact.imported", "customer", [
            (str(owner_ids[c.account_ext or ""]), None, {"contact": c.ext, "customer": c.account_ext,
                                                        "status": c.status, **c.values})
            for c in contact_new + contact_upd])
    # The review list.
    dup_ids = _ids_of(uow, [x for p in plan.duplicate_pairs for x in p[:2]])
    record_duplicates(uow, [(dup_ids[a], dup_ids[b], s, d, e) for a, b, s, d, e in plan.duplicate_pairs
                            if a in dup_ids and b in dup_ids and dup_ids[a] != dup_ids[b]])
    summary = plan.report(reg=reg, dry_run=False, committed=True,
                          limit=int(settings()["imports"]["report_rows_stored"]))
    import_id = uow.scalar(
        "INSERT INTO customer_import (at, actor, source, format, files, mode, rows_read, created, updated, unchanged,"
        " rejected, quality_score, report) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
        (now, uow.actor, plan.source, plan.fmt, dumps(summary["files"]), summary["mode"], summary["rows_read"],
         summary["created"], summary["updated"], summary["unchanged"], summary["rejected"],
         summary["quality"]["score"], dumps(summary)))
    if created or updated or contact_new or contact_upd:
        uow.emit("customer.imported", "customer_import", str(import_id), {
            "import_id": int(import_id), "format": plan.fmt, "files": summary["files"],
            "created": len(created), "updated": len(updated), "rejected": summary["rejected"],
            "quality_score": summary["quality"]["score"]})
    return {"import_id": int(import_id), "governance_exceptions": conflicts}


def _ids_of(uow: Any, exts: Iterable[str]) -> dict[str, int]:
    wanted = sorted({e for e in exts if e})
    out: dict[str, int] = {}
    for start in range(0, len(wanted), 900):
        chunk = wanted[start:start + 900]
        marks = ",".join("?" * len(chunk))
        for ext, cid, status, into in uow.all(
                f"SELECT external_id, id, status, merged_into FROM customer WHERE external_id IN ({marks})", chunk):
            out[ext] = int(into) if status == "merged" and into is not None else int(cid)
        missing = [x for x in chunk if x not in out]
        if missing:
            marks = ",".join("?" * len(missing))
            for ext, cid in uow.all(f"SELECT external_id, customer_id FROM customer_external_id"
                                    f" WHERE external_id IN ({marks})", missing):
                out[ext] = int(cid)
    return out


def run_import(uow: Any, paths: Sequence[str], fmt: str, *, mapping: str | Mapping_ | None = None,
               accept_valid: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """Plan and (unless ``dry_run``) apply an import; the report of docs/customers.md.

    Without ``accept_valid`` a rejected row refuses the whole import with a
    ``validation_error`` whose ``details["report"]`` is the report (nothing is written).
    """
    mp = load_mapping(mapping) if isinstance(mapping, str) or mapping is None else mapping
    plan = plan_import(uow, paths, fmt, mapping=mp, accept_valid=accept_valid)
    reg = governance.registry(uow)
    rejected = plan.rejected()
    if dry_run:
        return plan.report(reg=reg, dry_run=True, committed=False)
    if rejected and not accept_valid:
        report = plan.report(reg=reg, dry_run=False, committed=False)
        first = rejected[0]
        raise ValidationError(
            f"import refused: {len(rejected)} of {report['rows_read']} rows rejected, nothing was imported"
            f" (first: {first['file']} line {first['row']}, {first['field']}: {first['reason']});"
            " fix the file, or import the valid rows with --accept-valid",
            field=first["field"], record=f"{first['file']}:{first['row']}", report=report)
    outcome = apply_plan(uow, plan)
    report = plan.report(reg=reg, dry_run=False, committed=True)
    report.update(outcome)
    return report


# --------------------------------------------------------------------------- command and query


@payload
class CustomerImport:
    file: str | list[str]
    format: str
    mapping: str | None = None
    accept_valid: bool = False
    source: str | None = None


def _import_source(uow: Any, given: str | None, mapping: str | None) -> None:
    """A CRM import speaks for the CRM: its source is the one given, else the mapping's, else crm."""
    if given:
        uow.source = given
    elif uow.source in ("closeloop", "system"):
        uow.source = (load_mapping(mapping).source if mapping else None) or "crm"


def _paths(value: str | list[str]) -> list[str]:
    paths = [value] if isinstance(value, str) else list(value)
    if not paths:
        raise ValidationError("give at least one file", field="file")
    return paths


@command("customer.import", CustomerImport, roles=("sales_ops", "implementation", "admin"),
         summary="Import CRM accounts and contacts (Salesforce, HubSpot) with a quality report")
def customer_import(uow: Any, cmd: CustomerImport) -> dict[str, Any]:
    _import_source(uow, cmd.source, cmd.mapping)
    return run_import(uow, _paths(cmd.file), cmd.format, mapping=cmd.mapping, accept_valid=cmd.accept_valid)


@payload
class CustomerImportPreview:
    file: str | list[str]
    format: str
    mapping: str | None = None
    accept_valid: bool = False
    source: str | None = None


@query("customer_import_preview", CustomerImportPreview,
       summary="What an import would do, with its quality report; writes nothing (dry run)")
def customer_import_preview(uow: Any, q: CustomerImportPreview) -> dict[str, Any]:
    _import_source(uow, q.source, q.mapping)
    return run_import(uow, _paths(q.file), q.format, mapping=q.mapping, accept_valid=q.accept_valid, dry_run=True)


@payload
class ImportsQuery:
    limit: Limit = 20


@query("customer_imports", ImportsQuery, summary="The history of CRM imports and their quality scores")
def customer_imports(uow: Any, q: ImportsQuery) -> dict[str, Any]:
    rows = uow.all("SELECT id, at, actor, source, format, files, mode, rows_read, created, updated, unchanged,"
                   " rejected, quality_score FROM customer_import ORDER BY id DESC LIMIT ?", (min(q.limit, 1000),))
    return {"items": [{"import_id": int(r[0]), "at": r[1], "actor": r[2], "source": r[3], "format": r[4],
                       "files": json.loads(r[5]), "mode": r[6], "rows_read": r[7], "created": r[8], "updated": r[9],
                       "unchanged": r[10], "rejected": r[11], "quality_score": r[12]} for r in rows]}
