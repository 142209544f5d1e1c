"""Migration of a legacy order-to-cash data set: validate, rationalise, tie out, then import (or refuse).

``closeloop import migration DIR`` (command ``migration.import``, dry run: query ``migration_preview``)
reads a folder of CSV files from the legacy system (docs/migration.md has the columns):

    manifest.yaml        system name, cutover date, migration clearing account (all optional)
    entities.csv         legal entities to open (optional; the others must exist)
    customers.csv        accounts with their legacy ids, hierarchy (parent_id), tax ids
    contacts.csv         contact persons of the accounts
    products.csv, prices.csv
    contracts.csv, contract_lines.csv   active contracts with their billed-through dates
    open_invoices.csv    open invoices with their legacy numbers, balances and due dates
    opening_balances.csv the GL opening trial balance per entity at cutover

It is a pipeline (STYLE.md: compute a plan purely, then persist it in one unit of work):

1. **read** every file; a missing required column is a file-level problem;
2. **validate** every row with the owning area's own rules (customers through the CRM importer's
   plan, products and prices through the catalog's checks) and the cross-file references;
   every problem is collected with its file, row, field, code and reason (never the first only);
3. **rationalise** the hierarchy: duplicates found by the customer master's matcher (blocking +
   explained scores) with a ``match`` decision are merged into one survivor (children, contacts,
   contracts and invoices follow it); ``review`` pairs stay on the duplicates review list;
4. **tie out**: per entity and currency the open invoices must equal the GL opening
   accounts receivable, and every contract's billed-through date must end a billing period of each
   of its lines, so that the next bill run continues exactly where the legacy system stopped;
5. **apply** (unless refused): entities, customers (the importer's bulk path), merges, contacts,
   products, prices, contracts (quote.create / approve / accept, then ``contract.migrated`` so billing
   continues from the billed-through date and revenue recognition from the day after the cutover), open invoices (billing's subledger, keeping their
   numbers), their receivables and the opening balances (``post_entries`` with source ``migration``).

Nothing is imported unless every row is valid and everything ties out; ``accept_valid`` imports the
valid rows and opens an ``import_rejected`` exception for each rejected one (a difference in the
AR tie-out must then be explained by rejected invoices, else the migration is still refused).
Re-running a data set finds every record unchanged (``migration_record``) and writes nothing but the
run's own history row; a record changed since it was imported is reported, never overwritten.

Posting. The opening balance journal is posted as given except that the receivables lines go to the
migration clearing account; each open invoice is posted Dr accounts_receivable / Cr clearing with the
reference ``invoice.issued:<number>``, so the receivables subledger (AR open items, aging, DSO,
realised FX) sees every legacy invoice, and the clearing account nets to zero when the AR ties out.
Foreign-currency receivables keep the functional amount of the legacy GL: it is allocated over the
invoices by largest remainder, so nothing is revalued by the migration.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from closeloop.core import registry
from closeloop.core.boundary import nul_line
from closeloop.core.entities import list_entities
from closeloop.core.errors import CloseloopError, NotFoundError, ValidationError
from closeloop.core.events import register_schema
from closeloop.core.exception_queue import close_exception, open_exception
from closeloop.core.money import allocate, check_currency, format_minor, to_minor
from closeloop.core.periods import parse_date
from closeloop.core.registry import command, payload, query
from closeloop.core.uow import dumps
from closeloop.rollout.waves import UNGATED

ROLES = ("implementation", "admin")
SOURCE = "migration"
ONE_DAY = timedelta(days=1)
DEFAULT_CLEARING = {"code": "1190", "name": "Migration clearing (legacy receivables)", "type": "asset"}
REPORT_ROWS_STORED = 500
# A migration prepares a wave before it goes live: never refused by the live-scope guard (rollout.waves).
UNGATED.update({"migration.import"})

# Problem codes (the report counts each).
CODES = ("missing_column", "duplicate_id", "broken_reference", "bad_tax_id", "invalid_value", "unbalanced",
         "overlapping_contract", "billed_through_misaligned", "hierarchy_cycle", "depends_on_rejected",
         "changed_since_import", "conflict", "period_closed")


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file of the data set: its name, the columns it must have and those it may have."""

    kind: str
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()


SPECS: tuple[FileSpec, ...] = (
    FileSpec("entities", "entities.csv", ("code", "name", "country", "currency"), ("region", "tax_id")),
    FileSpec("customers", "customers.csv", ("legacy_id", "name", "country"),
             ("parent_id", "street", "city", "region", "postal_code", "email", "phone", "website", "tax_id",
              "tax_exempt", "exemption_ref", "currency", "entity", "payment_terms_days")),
    FileSpec("contacts", "contacts.csv", ("legacy_id", "customer_id"),
             ("first_name", "last_name", "email", "phone", "title")),
    FileSpec("products", "products.csv", ("sku", "name", "treatment"),
             ("tax_code", "ssp", "family", "revenue_role", "description")),
    FileSpec("prices", "prices.csv", ("price_id", "sku", "currency", "model", "period", "timing"),
             ("amount", "tiers", "package_size", "metric", "aggregation", "description")),
    FileSpec("contracts", "contracts.csv", ("contract_id", "customer_id", "start", "term_months", "billed_through"),
             ("entity", "currency", "billing_day", "auto_renew", "renewal_term_months", "name")),
    FileSpec("contract_lines", "contract_lines.csv", ("contract_id", "line_id", "price_id", "quantity"),
             ("discount_pct", "unit_amount")),
    FileSpec("open_invoices", "open_invoices.csv",
             ("number", "customer_id", "entity", "currency", "date", "due_date", "total", "balance"),
             ("tax", "description")),
    FileSpec("opening_balances", "opening_balances.csv", ("entity", "account"),
             ("debit", "credit", "currency", "txn_amount", "memo")),
)
SPEC = {s.kind: s for s in SPECS}
BY_NAME = {s.name: s for s in SPECS}
RECORD_KIND = {"customers": "customer", "contacts": "contact", "products": "product", "prices": "price",
               "contracts": "contract", "open_invoices": "invoice", "opening_balances": "opening_balance",
               "entities": "entity"}
CUSTOMER_FIELDS = {"name": "name", "parent": "parent_id", "street": "street", "city": "city", "region": "region",
                   "postal_code": "postal_code", "country": "country", "email": "email", "phone": "phone",
                   "website": "website", "tax_id": "tax_id", "tax_exempt": "tax_exempt",
                   "exemption_ref": "exemption_ref", "currency": "currency", "entity": "entity",
                   "payment_terms_days": "payment_terms_days"}


# =========================================================================== reading


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the data set: where (file, row, field), what (code) and why."""

    kind: str
    file: str
    row: int
    field: str
    code: str
    reason: str
    key: str | None = None
    amount: int | None = None
    currency: str | None = None
    entity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "row": self.row, "field": self.field, "code": self.code,
                               "reason": self.reason, "key": self.key}
        if self.amount is not None and self.currency:
            out["amount"] = format_minor(self.amount, self.currency)
            out["currency"] = self.currency
        if self.entity:
            out["entity"] = self.entity
        return out


@dataclass
class Table:
    spec: FileSpec
    header: tuple[str, ...]
    rows: list[tuple[int, dict[str, str]]]
    sha256: str
    path: str | None  # a file on disk (the CRM importer reads files), None for inline content


def decode(raw: bytes) -> str:
    """UTF-8 (with or without BOM), else Windows-1252."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def read_table(spec: FileSpec, raw: bytes, path: str | None) -> tuple[Table | None, list[Problem]]:
    """Parse one CSV file; the header is line 1 and every row keeps its line number."""
    text = decode(raw)
    line = nul_line(text)
    if line is not None:
        return None, [Problem(spec.kind, spec.name, line, "(file)", "invalid_value",
                              f"{spec.name} line {line} contains a NUL character: not a text CSV")]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = tuple(h.strip().lower() for h in next(reader))
    except (StopIteration, csv.Error):
        return None, [Problem(spec.kind, spec.name, 1, "(file)", "missing_column", f"{spec.name} is empty: it needs"
                              f" a header naming at least {', '.join(spec.required)}")]
    missing = [c for c in spec.required if c not in header]
    if missing:
        return None, [Problem(spec.kind, spec.name, 1, c, "missing_column",
                              f"{spec.name} has no column {c!r} (header: {', '.join(header)}); required:"
                              f" {', '.join(spec.required)}") for c in missing]
    rows: list[tuple[int, dict[str, str]]] = []
    problems: list[Problem] = []
    line = reader.line_num
    width = len(header)
    while True:
        start = line + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(Problem(spec.kind, spec.name, start, "(row)", "invalid_value",
                                    f"truncated or malformed row: {exc}"))
            break
        line = reader.line_num
        if not cells or not "".join(cells).strip():
            continue
        if len(cells) != width:
            problems.append(Problem(spec.kind, spec.name, start, "(row)", "invalid_value",
                                    f"has {len(cells)} fields where the header has {width}"))
            continue
        rows.append((start, {h: c.strip() for h, c in zip(header, cells, strict=True)}))
    return Table(spec, header, rows, hashlib.sha256(raw).hexdigest(), path), problems


@dataclass
class DataSet:
    tables: dict[str, Table]
    problems: list[Problem]
    manifest: dict[str, Any]
    digest: str
    source: str  # the folder, or "(inline)"
    temp: tempfile.TemporaryDirectory[str] | None = None


def read_dataset(directory: str | None, files: Mapping[str, str] | None) -> DataSet:
    """The data set from a folder, or from inline contents ``{"customers.csv": "...", ...}``."""
    raw: dict[str, bytes] = {}
    paths: dict[str, str | None] = {}
    manifest: dict[str, Any] = {}
    if (directory is None) == (files is None):
        raise ValidationError("give either dir (a folder of CSV files) or files (inline contents)", field="dir")
    if directory is not None:
        folder = Path(directory)
        if not folder.is_dir():
            raise ValidationError(f"{directory} is not a folder of legacy CSV files", field="dir", record=directory)
        for spec in SPECS:
            p = folder / spec.name
            if p.is_file():
                raw[spec.name] = p.read_bytes()
                paths[spec.name] = str(p)
        mf = folder / "manifest.yaml"
        if mf.is_file():
            manifest = _manifest(mf.read_text(encoding="utf-8"))
        unknown = sorted(p.name for p in folder.glob("*.csv") if p.name not in BY_NAME)
        source = str(folder)
    else:
        assert files is not None
        for name, content in files.items():
            key = name if name.endswith((".csv", ".yaml")) else f"{name}.csv"
            if key == "manifest.yaml" or name == "manifest":
                manifest = _manifest(content)
                continue
            raw[key] = content.encode("utf-8")
            paths[key] = None
        unknown = sorted(n for n in raw if n not in BY_NAME)
        source = "(inline)"
    if unknown:
        raise ValidationError(f"unknown file(s) {', '.join(unknown)}; a migration data set has"
                              f" {', '.join(s.name for s in SPECS)}", field="files")
    if not raw:
        raise ValidationError(f"{source}: no legacy files found (expected {', '.join(s.name for s in SPECS)})",
                              field="dir")
    tables: dict[str, Table] = {}
    problems: list[Problem] = []
    for spec in SPECS:
        if spec.name not in raw:
            continue
        table, found = read_table(spec, raw[spec.name], paths[spec.name])
        problems.extend(found)
        if table is not None:
            tables[spec.kind] = table
    digest = hashlib.sha256("".join(f"{n}:{hashlib.sha256(raw[n]).hexdigest()}" for n in sorted(raw)).encode()
                            ).hexdigest()
    return DataSet(tables, problems, manifest, digest, source)


def _manifest(text: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text) or {}
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an impossible date such as 2026-02-30
        raise ValidationError(f"manifest.yaml is not valid YAML: {exc}", field="manifest") from None
    if not isinstance(doc, dict):
        raise ValidationError("manifest.yaml must be a mapping (system, cutover, clearing_account)", field="manifest")
    unknown = set(doc) - {"system", "cutover", "clearing_account", "planted"}
    if unknown:
        raise ValidationError(f"manifest.yaml: unknown keys {sorted(unknown)} (system, cutover, clearing_account)",
                              field="manifest")
    for key in ("system", "cutover", "clearing_account"):
        # A value is a short text: a list or mapping (e.g. YAML aliases nested into a "billion laughs") would
        # be expanded into the report, the run's history and error messages.
        value = doc.get(key)
        if value is not None and (not isinstance(value, (str, int, date)) or len(str(value)) > 200):
            raise ValidationError(f"manifest.yaml: {key} must be a text of at most 200 characters",
                                  field=f"manifest.{key}")
    return doc


def digest_row(row: Mapping[str, Any]) -> str:
    """A row's fingerprint: its non-empty cells, in column-name order."""
    return hashlib.sha1("\x1f".join(f"{k}\x1e{v}" for k, v in sorted(row.items()) if v not in (None, "")
                                     ).encode()).hexdigest()


# =========================================================================== the plan


@dataclass
class ContractPlan:
    row: int
    contract_id: str
    customer: str
    start: date
    end: date
    term_months: int
    billed_through: date
    billing_day: int
    entity: str
    currency: str
    lines: list[dict[str, Any]]
    skus: list[str]
    next_bill_date: date | None
    auto_renew: bool
    renewal_term_months: int | None
    name: str | None
    digest: str


@dataclass
class InvoicePlan:
    row: int
    number: str
    customer: str
    entity: str
    currency: str
    date: str
    due_date: str
    total: int
    tax: int
    balance: int
    description: str
    digest: str
    functional: int = 0  # the receivable in the entity's functional currency (allocated from the legacy GL)
    duplicate: bool = False  # a later row with a number seen before (counted once in the tie-out)
    imported: bool = False  # migrated by an earlier run (unchanged)


@dataclass
class OpeningPlan:
    entity: str
    row: int
    lines: list[tuple[str, int, str | None, int | None, str | None, bool]]  # account, amount, cur, txn, memo, is_ar
    digest: str
    valid: bool = True


@dataclass
class Plan:
    data: DataSet
    cutover: date
    system: str
    clearing: str
    accept_valid: bool
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    records: dict[tuple[str, str], str] = field(default_factory=dict)
    entities: dict[str, str] = field(default_factory=dict)  # code -> functional currency (existing and new)
    new_entities: list[dict[str, Any]] = field(default_factory=list)
    customer_plan: Any = None
    customer_lines: dict[int, int] = field(default_factory=dict)
    customer_rows: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    merges: list[dict[str, Any]] = field(default_factory=list)
    review: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, Any] | None = None
    contacts: list[tuple[int, str, str, dict[str, Any], str]] = field(default_factory=list)
    products: list[tuple[int, dict[str, Any], str]] = field(default_factory=list)
    prices: list[tuple[int, dict[str, Any], str]] = field(default_factory=list)
    contracts: list[ContractPlan] = field(default_factory=list)
    invoices: list[InvoicePlan] = field(default_factory=list)
    opening: dict[str, OpeningPlan] = field(default_factory=dict)
    ar: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    tie_outs: dict[str, Any] = field(default_factory=dict)
    unknown_customers: dict[str, bool] = field(default_factory=dict)
    all_invoices: list[InvoicePlan] = field(default_factory=list)  # every readable invoice row (the AR tie-out)
    skus: dict[str, str] = field(default_factory=dict)  # valid products of the file: sku -> treatment
    price_terms: dict[str, Any] = field(default_factory=dict)  # valid prices of the file: id -> PriceTerms
    catalog_prices: dict[str, tuple[Any, str] | None] = field(default_factory=dict)
    accounts_by_ext: dict[str, list[Any]] | None = None
    price_skus: dict[str, str] | None = None
    closed: dict[str, bool] = field(default_factory=dict)

    def problem(self, p: Problem) -> None:
        self.problems.append(p)

    @property
    def file_level(self) -> list[Problem]:
        return [p for p in self.problems if p.code == "missing_column"]


def _dec(value: str, *, positive: bool = False) -> Decimal:
    d = Decimal(value)
    if not d.is_finite() or (positive and d <= 0):
        raise InvalidOperation(value)
    return d


MAX_MINOR = 10**15  # amounts beyond 10 trillion (in major units) are data errors, and beyond a BIGINT soon after


def _amount(value: str, currency: str, fieldname: str) -> int:
    minor = to_minor(value, currency, field=fieldname)
    if abs(minor) >= MAX_MINOR:
        raise ValidationError(f"{fieldname} {value} is out of range", field=fieldname)
    return minor


def _key_problem(key: str, limit: int) -> str | None:
    if not key:
        return "the id is empty"
    if len(key) > limit or any(c.isspace() for c in key):
        return f"{key[:40]!r} must be 1-{limit} characters without spaces"
    return None


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes", "y", "x")


def _date(value: str) -> date:
    return date.fromisoformat(value.strip())


def load_records(uow: Any) -> dict[tuple[str, str], str]:
    return {(k, key): d for k, key, d in uow.all("SELECT kind, key, digest FROM migration_record")}


def build_plan(uow: Any, data: DataSet, *, cutover: str | None, accept_valid: bool) -> Plan:
    """Validate the data set and decide what the migration would do. Reads only."""
    day = parse_date(cutover or data.manifest.get("cutover") or uow.today().isoformat(), field="cutover")
    plan = Plan(data, day, str(data.manifest.get("system") or "legacy")[:100],
                str(data.manifest.get("clearing_account") or DEFAULT_CLEARING["code"]), accept_valid)
    plan.problems.extend(data.problems)
    plan.records = load_records(uow)
    _plan_entities(uow, plan)
    _plan_customers(uow, plan)
    _plan_contacts(uow, plan)
    _plan_catalog(uow, plan)
    _plan_contracts(uow, plan)
    _plan_invoices(uow, plan)
    _plan_opening(uow, plan)
    _tie_out(plan)
    return plan


def _seen(plan: Plan, kind: str, key: str, digest: str, spec: FileSpec, row: int) -> bool | None:
    """True: imported before with the same content (unchanged); None: changed since (a problem); False: new."""
    found = plan.records.get((RECORD_KIND[kind], key))
    if found is None:
        return False
    if found == digest:
        plan.counts[kind]["unchanged"] += 1
        return True
    plan.problem(Problem(kind, spec.name, row, "(row)", "changed_since_import",
                         f"{key} was migrated before with other values; a migrated record is not overwritten:"
                         " change it in closeloop", key))
    return None


def _duplicate_ids(plan: Plan, table: Table, column: str) -> set[int]:
    """Rows whose id appeared earlier in the file (each a duplicate_id problem); returns their line numbers."""
    first: dict[str, int] = {}
    dup: set[int] = set()
    for line, row in table.rows:
        key = row.get(column, "")
        if not key:
            continue
        if key in first:
            plan.problem(Problem(table.spec.kind, table.spec.name, line, column, "duplicate_id",
                                 f"{column} {key} appears again (first at line {first[key]})", key))
            dup.add(line)
        else:
            first[key] = line
    return dup


# --------------------------------------------------------------------------- entities


def _plan_entities(uow: Any, plan: Plan) -> None:
    plan.entities = {e.code: e.currency for e in list_entities(uow)}
    table = plan.data.tables.get("entities")
    if table is None:
        return
    for line, row in table.rows:
        plan.counts["entities"]["read"] += 1
        code = row["code"]
        if code in plan.entities:
            plan.counts["entities"]["unchanged"] += 1
            continue
        try:
            check_currency(row["currency"])
        except CloseloopError as exc:
            plan.problem(Problem("entities", table.spec.name, line, "currency", "invalid_value", exc.message, code))
            continue
        if len(row["country"]) != 2 or not row["country"].isalpha():
            plan.problem(Problem("entities", table.spec.name, line, "country", "invalid_value",
                                 f"country {row['country']!r} must be an ISO 3166 alpha-2 code", code))
            continue
        plan.entities[code] = row["currency"]
        plan.new_entities.append({k: v for k, v in row.items() if v and k in ("code", "name", "country", "currency",
                                                                                "region", "tax_id")})
        plan.counts["entities"]["created"] += 1


# --------------------------------------------------------------------------- customers


def _classify_customer(p: Mapping[str, str]) -> str:
    fieldname, reason = p.get("field", ""), p.get("reason", "")
    if fieldname == "tax_id":
        return "bad_tax_id"
    if fieldname in ("parent", "bill_to"):
        if "cycle" in reason:
            return "hierarchy_cycle"
        if "was rejected" in reason:
            return "depends_on_rejected"
        return "broken_reference"
    if fieldname == "external_id" and "appears again" in reason:
        return "duplicate_id"
    return "invalid_value"


def _plan_customers(uow: Any, plan: Plan) -> None:
    from closeloop.customers.importers import Mapping_, plan_import

    table = plan.data.tables.get("customers")
    if table is None:
        return
    spec = table.spec
    dups = _duplicate_ids(plan, table, "legacy_id")
    keep: list[tuple[int, dict[str, str]]] = []
    for line, row in table.rows:
        plan.counts["customers"]["read"] += 1
        key = row["legacy_id"]
        if line in dups or not key:
            if not key:
                plan.problem(Problem("customers", spec.name, line, "legacy_id", "invalid_value", "no legacy id"))
            continue
        plan.customer_rows.setdefault(key, (line, row))
        ent = row.get("entity")
        if ent and ent not in plan.entities:
            plan.problem(Problem("customers", spec.name, line, "entity", "broken_reference",
                                 f"entity {ent} does not exist (create it, or list it in entities.csv)", key))
            continue
        seen = _seen(plan, "customers", key, digest_row(row), spec, line)
        if seen is False:
            keep.append((line, row))
    if not keep:
        return
    mapping = Mapping_(format="salesforce", object="account", external_id="legacy_id", id_prefix="",
                       fields={f: c for f, c in CUSTOMER_FIELDS.items() if c in table.header}, delimiter=",",
                       encoding="utf-8", source=SOURCE)
    if plan.data.temp is None:
        plan.data.temp = tempfile.TemporaryDirectory(prefix="closeloop-migration-")
    path = Path(plan.data.temp.name) / "customers.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(table.header)
        for n, (line, row) in enumerate(keep, 2):
            writer.writerow([row.get(h, "") for h in table.header])
            plan.customer_lines[n] = line
    cplan = plan_import(uow, [str(path)], "salesforce", mapping=mapping, accept_valid=True)
    for a in cplan.accounts:
        a.row.row = plan.customer_lines.get(a.row.row, a.row.row)
        a.row.file = spec.name
        if a.status == "rejected":
            for p in a.problems[:1]:
                plan.problem(Problem("customers", spec.name, a.row.row, p["field"], _classify_customer(p),
                                     "; ".join(f"{x['field']}: {x['reason']}" for x in a.problems), a.ext or None))
        else:
            plan.counts["customers"]["created" if a.status == "created" else a.status] += 1
    plan.customer_plan = cplan
    plan.quality = dict(cplan.quality)
    _plan_merges(plan, cplan)


def _plan_merges(plan: Plan, cplan: Any) -> None:
    """Hierarchy rationalisation: ``match`` pairs are merged (a chain into one survivor); ``review`` pairs stay."""
    line_of = {a.ext: a.row.row for a in cplan.accounts if a.status != "rejected"}
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    def rank(x: str) -> tuple[int, int]:  # stored accounts survive, then the earliest line
        return (0, 0) if x not in line_of else (1, line_of[x])

    pairs = []
    for a_ext, b_ext, score, decision, explanation in cplan.duplicate_pairs:
        item = {"a": a_ext, "b": b_ext, "score": f"{score:.2f}", "decision": decision,
                "why": ", ".join(f"{x['field']} {x['points']:+g}" for x in explanation if x.get("points"))}
        if decision != "match":
            plan.review.append(item)
            continue
        pairs.append(item)
        ra, rb = find(a_ext), find(b_ext)
        if ra != rb:
            survivor, merged = sorted((ra, rb), key=rank)
            parent[merged] = survivor
    members: dict[str, list[str]] = defaultdict(list)
    for x in list(parent):
        members[find(x)].append(x)
    for survivor, group in sorted(members.items()):
        for m in sorted(group, key=rank):
            pair = next((p for p in pairs if {p["a"], p["b"]} & {m} and {p["a"], p["b"]} - {m}), None)
            plan.merges.append({"survivor": survivor, "merged": m, "score": pair["score"] if pair else None,
                                "why": pair["why"] if pair else None, "row": line_of.get(m)})


def _customer_ok(uow: Any, plan: Plan, ext: str) -> tuple[str | None, str]:
    """(problem code or None, reason) for a reference to a customer."""
    if not ext:
        return "invalid_value", "no customer given"
    cplan = plan.customer_plan
    if cplan is not None:
        for a in _accounts_by_ext(plan).get(ext, ()):
            if a.status == "rejected":
                return "depends_on_rejected", f"customer {ext} was rejected (customers.csv line {a.row.row})"
            return None, ""
    if (RECORD_KIND["customers"], ext) in plan.records:
        return None, ""
    if ext in plan.customer_rows:  # rejected before the importer's plan (entity, duplicate id, changed)
        line = plan.customer_rows[ext][0]
        return "depends_on_rejected", f"customer {ext} was rejected (customers.csv line {line})"
    if ext not in plan.unknown_customers:
        from closeloop.customers.service import get_customer

        try:
            get_customer(uow, ext)
            plan.unknown_customers[ext] = True
        except NotFoundError:
            plan.unknown_customers[ext] = False
    if plan.unknown_customers[ext]:
        return None, ""
    return "broken_reference", f"customer {ext} is not in customers.csv nor in the customer master"


def _accounts_by_ext(plan: Plan) -> dict[str, list[Any]]:
    if plan.accounts_by_ext is None:
        plan.accounts_by_ext = defaultdict(list)
        for a in plan.customer_plan.accounts if plan.customer_plan is not None else ():
            if a.ext:
                plan.accounts_by_ext[a.ext].append(a)
    return plan.accounts_by_ext


def _customer_facts(uow: Any, plan: Plan, ext: str) -> tuple[str | None, str | None]:
    """(entity, currency) of a customer from its legacy row, else the master."""
    found = plan.customer_rows.get(ext)
    if found is not None:
        return found[1].get("entity") or None, found[1].get("currency") or None
    from closeloop.customers.service import get_customer

    try:
        c = get_customer(uow, ext)
    except NotFoundError:
        return None, None
    return c.entity, c.currency


# --------------------------------------------------------------------------- contacts


def _plan_contacts(uow: Any, plan: Plan) -> None:
    from closeloop.customers.model import normalise_email

    table = plan.data.tables.get("contacts")
    if table is None:
        return
    spec = table.spec
    dups = _duplicate_ids(plan, table, "legacy_id")
    for line, row in table.rows:
        plan.counts["contacts"]["read"] += 1
        key, cust = row["legacy_id"], row["customer_id"]
        if line in dups:
            continue
        bad_key = _key_problem(key, 128)
        if bad_key:
            plan.problem(Problem("contacts", spec.name, line, "legacy_id", "invalid_value", f"legacy_id {bad_key}",
                                 key[:128]))
            continue
        code, reason = _customer_ok(uow, plan, cust)
        if code:
            plan.problem(Problem("contacts", spec.name, line, "customer_id", code, reason, key))
            continue
        values = {k: row.get(k) or None for k in ("first_name", "last_name", "email", "phone", "title")}
        if values["email"] and normalise_email(values["email"]) is None:
            plan.problem(Problem("contacts", spec.name, line, "email", "invalid_value",
                                 f"{values['email']!r} is not an email address", key))
            continue
        if not (values["first_name"] or values["last_name"] or values["email"]):
            plan.problem(Problem("contacts", spec.name, line, "last_name", "invalid_value",
                                 "a contact needs a name or an email", key))
            continue
        digest = digest_row(row)
        if _seen(plan, "contacts", key, digest, spec, line) is not False:
            continue
        plan.contacts.append((line, key, cust, values, digest))
        plan.counts["contacts"]["created"] += 1


# --------------------------------------------------------------------------- products and prices


def _plan_catalog(uow: Any, plan: Plan) -> None:
    from closeloop.catalog.model import DEFAULT_TAX_CODE, Product, check_product
    from closeloop.catalog.service import PriceCreate, get_price, get_product, terms_from_command

    skus, prices = plan.skus, plan.price_terms
    table = plan.data.tables.get("products")
    if table is not None:
        spec = table.spec
        dups = _duplicate_ids(plan, table, "sku")
        for line, row in table.rows:
            plan.counts["products"]["read"] += 1
            sku = row["sku"]
            if line in dups:
                continue
            try:
                ssp = _dec(row["ssp"]) if row.get("ssp") else None
            except InvalidOperation:
                plan.problem(Problem("products", spec.name, line, "ssp", "invalid_value",
                                     f"ssp {row['ssp']!r} is not a number", sku))
                continue
            found = check_product(sku, row["name"], row["treatment"], ssp, None)
            if found:
                plan.problem(Problem("products", spec.name, line, found[0].field, "invalid_value",
                                     "; ".join(f"{p.field}: {p.reason}" for p in found), sku))
                continue
            body = {"sku": sku, "name": row["name"], "treatment": row["treatment"]}
            for k in ("tax_code", "family", "revenue_role", "description"):
                if row.get(k):
                    body[k] = row[k]
            if ssp is not None:
                body["ssp"] = str(ssp)
            digest = digest_row(row)
            seen = _seen(plan, "products", sku, digest, spec, line)
            if seen is None:
                continue
            skus[sku] = row["treatment"]
            if seen:
                continue
            try:
                existing = get_product(uow, sku)
            except NotFoundError:
                existing = None
            if existing is not None:
                wanted = Product(sku=sku, name=row["name"].strip(), treatment=row["treatment"],
                                 tax_code=row.get("tax_code") or DEFAULT_TAX_CODE, ssp=ssp, ssp_currency=None,
                                 revenue_role=row.get("revenue_role") or None, family=row.get("family") or None,
                                 active=True)
                if existing != wanted:
                    plan.problem(Problem("products", spec.name, line, "sku", "conflict",
                                         f"product {sku} already exists in closeloop with other fields", sku))
                    skus.pop(sku, None)
                    continue
            plan.products.append((line, body, digest))
            plan.counts["products"]["created"] += 1
    table = plan.data.tables.get("prices")
    if table is None:
        return
    spec = table.spec
    dups = _duplicate_ids(plan, table, "price_id")
    for line, row in table.rows:
        plan.counts["prices"]["read"] += 1
        pid = row["price_id"]
        if line in dups:
            continue
        bad_key = _key_problem(pid, 64)
        if bad_key:
            plan.problem(Problem("prices", spec.name, line, "price_id", "invalid_value", f"price_id {bad_key}",
                                 pid[:64]))
            continue
        sku = row["sku"]
        if sku not in skus:
            if (RECORD_KIND["products"], sku) in plan.records or _catalog_has(uow, sku):
                pass
            else:
                bad = next((p for p in plan.problems if p.kind == "products" and p.key == sku), None)
                plan.problem(Problem("prices", spec.name, line, "sku", "depends_on_rejected" if bad else
                                     "broken_reference", f"product {sku} was rejected (products.csv line {bad.row})"
                                     if bad else f"product {sku} is not in products.csv nor in the catalog", pid))
                continue
        pbody: dict[str, Any] = {"price_id": pid, "sku": sku, "currency": row["currency"], "model": row["model"],
                                "period": row["period"], "timing": row["timing"]}
        try:
            for k in ("amount",):
                if row.get(k):
                    pbody[k] = str(_dec(row[k]))
            if row.get("package_size"):
                pbody["package_size"] = str(int(row["package_size"]))
            if row.get("tiers"):
                pbody["tiers"] = json.loads(row["tiers"])
        except (InvalidOperation, ValueError) as exc:
            plan.problem(Problem("prices", spec.name, line, "amount", "invalid_value",
                                 f"cannot read the price's amounts: {exc}", pid))
            continue
        for k in ("metric", "aggregation", "description"):
            if row.get(k):
                pbody[k] = row[k]
        op = registry.get("price.create", "command")
        try:
            cmd = op.parse(pbody)
            terms, found = terms_from_command(cmd)
        except CloseloopError as exc:
            plan.problem(Problem("prices", spec.name, line, str(exc.details.get("field") or "(row)"), "invalid_value",
                                 exc.message, pid))
            continue
        if found:
            plan.problem(Problem("prices", spec.name, line, found[0].field, "invalid_value",
                                 "; ".join(f"{p.field}: {p.reason}" for p in found), pid))
            continue
        digest = digest_row(row)
        seen = _seen(plan, "prices", pid, digest, spec, line)
        if seen is None:
            continue
        prices[pid] = terms
        if seen:
            continue
        try:
            stored = get_price(uow, pid)
        except NotFoundError:
            stored = None
        if stored is not None and (stored.sku != sku or stored.terms.to_dict() != terms.to_dict()):
            plan.problem(Problem("prices", spec.name, line, "price_id", "conflict",
                                 f"price {pid} already exists in closeloop with other terms", pid))
            prices.pop(pid, None)
            continue
        assert isinstance(cmd, PriceCreate)
        plan.prices.append((line, pbody, digest))
        plan.counts["prices"]["created"] += 1


def _catalog_has(uow: Any, sku: str) -> bool:
    from closeloop.catalog.service import get_product

    try:
        get_product(uow, sku)
        return True
    except NotFoundError:
        return False


def _price_terms(uow: Any, plan: Plan, price_id: str) -> Any:
    from closeloop.catalog.service import get_price

    found = plan.price_terms.get(price_id)
    if found is not None:
        return found
    cache = plan.catalog_prices
    if price_id not in cache:
        try:
            price = get_price(uow, price_id)
            cache[price_id] = (price.terms, price.sku)
        except NotFoundError:
            cache[price_id] = None
    hit = cache[price_id]
    return None if hit is None else hit[0]


def _price_sku(plan: Plan, price_id: str) -> str | None:
    if plan.price_skus is None:
        table = plan.data.tables.get("prices")
        plan.price_skus = {row["price_id"]: row["sku"] for _line, row in reversed(table.rows)} if table else {}
    if price_id in plan.price_skus:
        return plan.price_skus[price_id]
    hit = plan.catalog_prices.get(price_id)
    return None if hit is None else hit[1]


# --------------------------------------------------------------------------- contracts


def _plan_contracts(uow: Any, plan: Plan) -> None:
    from closeloop.contracts.model import term_end
    from closeloop.contracts.schedule import Grid

    table = plan.data.tables.get("contracts")
    if table is None:
        return
    spec = table.spec
    lines_by: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    ltable = plan.data.tables.get("contract_lines")
    if ltable is not None:
        for line, row in ltable.rows:
            lines_by[row["contract_id"]].append((line, row))
            plan.counts["contract_lines"]["read"] += 1
    known_ids = {r["contract_id"] for _, r in table.rows}
    if ltable is not None:
        for line, row in ltable.rows:
            if row["contract_id"] not in known_ids:
                plan.problem(Problem("contract_lines", ltable.spec.name, line, "contract_id", "broken_reference",
                                     f"contract {row['contract_id']} is not in contracts.csv", row["contract_id"]))
    dups = _duplicate_ids(plan, table, "contract_id")
    existing_contracts = _existing_contracts(uow, [r["contract_id"] for _, r in table.rows])
    candidates: list[ContractPlan] = []
    for line, row in table.rows:
        plan.counts["contracts"]["read"] += 1
        cid = row["contract_id"]
        if line in dups:
            continue

        def bad(fieldname: str, code: str, reason: str, where: str = spec.name, at: int = line, key: str = cid) -> None:
            plan.problem(Problem("contracts", where, at, fieldname, code, reason, key))

        code, reason = _customer_ok(uow, plan, row["customer_id"])
        if code:
            bad("customer_id", code, reason)
            continue
        try:
            start = _date(row["start"])
        except ValueError:
            bad("start", "invalid_value", f"start {row['start']!r} is not a date (YYYY-MM-DD)")
            continue
        bad_key = _key_problem(cid, 64)
        if bad_key:
            bad("contract_id", "invalid_value", f"contract_id {bad_key}")
            continue
        try:
            term = int(row["term_months"])
            if not 1 <= term <= 600:
                raise ValueError
        except ValueError:
            bad("term_months", "invalid_value", f"term_months {row['term_months']!r} must be a whole number of months,"
                " 1-600")
            continue
        try:
            billed = _date(row["billed_through"]) if row["billed_through"] else start - ONE_DAY
        except ValueError:
            bad("billed_through", "invalid_value", f"billed_through {row['billed_through']!r} is not a date")
            continue
        try:
            bday = int(row.get("billing_day") or start.day)
            if not 1 <= bday <= 31:
                raise ValueError
        except ValueError:
            bad("billing_day", "invalid_value", f"billing_day {row.get('billing_day')!r} must be 1-31")
            continue
        end = term_end(start, term)
        c_entity, c_currency = _customer_facts(uow, plan, row["customer_id"])
        entity = row.get("entity") or c_entity or (next(iter(plan.entities)) if len(plan.entities) == 1 else None)
        if entity is None or entity not in plan.entities:
            bad("entity", "broken_reference", f"entity {entity or '(none)'} does not exist"
                if entity else "no entity: give one (the customer has none)")
            continue
        currency = row.get("currency") or c_currency or plan.entities[entity]
        if billed < start - ONE_DAY:
            bad("billed_through", "invalid_value", f"billed_through {billed} is before the contract starts ({start})")
            continue
        if billed > end:
            bad("billed_through", "invalid_value", f"billed_through {billed} is after the contract ends ({end})")
            continue
        rows = lines_by.get(cid, [])
        if not rows:
            bad("(lines)", "invalid_value", f"contract {cid} has no lines in contract_lines.csv")
            continue
        lines: list[dict[str, Any]] = []
        skus: list[str] = []
        months: list[tuple[str, int, str]] = []
        failed = False
        seen_lines: set[str] = set()
        lname = ltable.spec.name if ltable is not None else "contract_lines.csv"
        for lline, lrow in rows:
            lid, pid = lrow["line_id"], lrow["price_id"]
            if lid in seen_lines:
                bad("line_id", "duplicate_id", f"line {lid} of contract {cid} appears again", lname, lline)
                failed = True
                break
            seen_lines.add(lid)
            terms = _price_terms(uow, plan, pid)
            if terms is None:
                rejected = next((p for p in plan.problems if p.kind == "prices" and p.key == pid), None)
                bad("price_id", "depends_on_rejected" if rejected else "broken_reference",
                    f"price {pid} was rejected (prices.csv line {rejected.row})" if rejected else
                    f"price {pid} is not in prices.csv nor in the catalog", lname, lline)
                failed = True
                break
            if terms.currency != currency:
                bad("price_id", "invalid_value", f"price {pid} is in {terms.currency}, the contract in {currency}",
                    lname, lline)
                failed = True
                break
            if terms.months is None:
                bad("price_id", "invalid_value", f"price {pid} is one-time: a migrated contract carries recurring"
                    " and usage lines only (bill one-time charges as open invoices)", lname, lline)
                failed = True
                break
            try:
                qty = _dec(lrow["quantity"], positive=True)
                disc = _dec(lrow["discount_pct"]) if lrow.get("discount_pct") else None
                unit = _dec(lrow["unit_amount"]) if lrow.get("unit_amount") else None
                if qty > 10**9 or (disc is not None and not 0 <= disc <= 100) or (
                        unit is not None and not 0 <= unit < 10**12) or len(lid) > 64 or not lid:
                    raise InvalidOperation(lid)
            except InvalidOperation:
                bad("quantity", "invalid_value", f"line {lid[:64]}: quantity must be a positive number (at most"
                    " 1,000,000,000), discount_pct 0-100, unit_amount a number, line_id 1-64 characters", lname, lline)
                failed = True
                break
            item: dict[str, Any] = {"line_id": lid, "price_id": pid, "quantity": str(qty)}
            if disc is not None:
                item["discount_pct"] = str(disc)
            if unit is not None:
                item["unit_amount"] = str(unit)
            lines.append(item)
            skus.append(_price_sku(plan, pid) or pid)
            months.append((lid, int(terms.months), terms.timing if not terms.metered else "arrears"))
        if failed:
            continue
        first = billed + ONE_DAY
        misaligned = None
        nxt: date | None = None
        for lid, m, timing in months:
            grid = Grid.of(start, bday, m)
            p_start, p_end = grid.period_of(first)
            if first != start and p_start != first:
                misaligned = (lid, m, p_start, p_end)
                break
            if first <= end:
                natural = first if timing == "advance" else min(p_end, end + ONE_DAY)
                nxt = natural if nxt is None or natural < nxt else nxt
        if misaligned is not None:
            lid, m, p_start, p_end = misaligned
            bad("billed_through", "billed_through_misaligned",
                f"billed_through {billed} ends inside the billing period {p_start}..{p_end - ONE_DAY} of line {lid}"
                f" ({m}-month periods on billing day {bday}): the next bill run would bill {p_start}..{billed} again;"
                " the legacy billed-through date must end a billing period")
            continue
        if cid in existing_contracts and (RECORD_KIND["contracts"], cid) not in plan.records:
            bad("contract_id", "duplicate_id", f"contract {cid} already exists in closeloop")
            continue
        digest = digest_row({**row, "lines": json.dumps([r for _, r in rows], sort_keys=True)})
        seen = _seen(plan, "contracts", cid, digest, spec, line)
        if seen is None:
            continue
        cp = ContractPlan(line, cid, row["customer_id"], start, end, term, billed, bday, entity, currency, lines,
                          skus, nxt, _bool(row.get("auto_renew")),
                          int(row["renewal_term_months"]) if row.get("renewal_term_months") else None,
                          row.get("name") or None, digest)
        candidates.append(cp)
        if not seen:
            plan.contracts.append(cp)
    # Overlaps: the same customer billed twice for the same product on the same days.
    by_key: dict[tuple[str, str], list[ContractPlan]] = defaultdict(list)
    for c in candidates:
        for sku in dict.fromkeys(c.skus):
            by_key[(c.customer, sku)].append(c)
    overlapping: dict[str, tuple[ContractPlan, ContractPlan, str]] = {}
    for (_customer, sku), group in by_key.items():
        group.sort(key=lambda c: (c.start, c.row))
        for i, c in enumerate(group):
            for other in group[:i]:
                if c.start <= other.end and c.contract_id not in overlapping:
                    overlapping[c.contract_id] = (c, other, sku)
    for cid, (c, other, sku) in sorted(overlapping.items(), key=lambda x: x[1][0].row):
        plan.problem(Problem("contracts", spec.name, c.row, "start", "overlapping_contract",
                             f"contract {cid} ({c.start}..{c.end}) overlaps contract {other.contract_id}"
                             f" ({other.start}..{other.end}) of customer {c.customer} for product {sku}: the customer"
                             " would be billed twice for the same days", cid))
    if overlapping:
        plan.contracts = [c for c in plan.contracts if c.contract_id not in overlapping]
    for c in plan.contracts:
        plan.counts["contracts"]["created"] += 1
        plan.counts["contract_lines"]["created"] += len(c.lines)
    planned = {c.contract_id for c in plan.contracts}
    for c in candidates:
        if c.contract_id not in planned and c.contract_id not in overlapping:
            plan.counts["contract_lines"]["unchanged"] += len(c.lines)


def _existing_contracts(uow: Any, ids: Sequence[str]) -> set[str]:
    """Contract ids closeloop already knows, in bulk (billing holds a subscription for every activated contract;
    the contracts area's query per id would cost thousands of reads). quote.accept still refuses a duplicate."""
    from closeloop.billing.migration import continuation

    return set(continuation(uow, ids))


# --------------------------------------------------------------------------- open invoices


def _plan_invoices(uow: Any, plan: Plan) -> None:
    from closeloop.billing.migration import existing_numbers, number_clash

    table = plan.data.tables.get("open_invoices")
    if table is None:
        return
    spec = table.spec
    dups = _duplicate_ids(plan, table, "number")
    taken = existing_numbers(uow, [r["number"] for _, r in table.rows if r["number"]])
    all_rows: list[InvoicePlan] = []  # every parseable invoice (valid or not): the AR tie-out counts them
    for line, row in table.rows:
        plan.counts["open_invoices"]["read"] += 1
        number = row["number"]
        entity, currency = row["entity"], row["currency"]
        try:
            check_currency(currency)
            total = _amount(row["total"], currency, "total")
            balance = _amount(row["balance"], currency, "balance")
            tax = _amount(row.get("tax") or "0", currency, "tax")
            day, due = _date(row["date"]), _date(row["due_date"])
        except CloseloopError as exc:
            plan.problem(Problem("open_invoices", spec.name, line, str(exc.details.get("field") or "(row)"),
                                 "invalid_value", exc.message, number))
            continue
        except ValueError as exc:
            plan.problem(Problem("open_invoices", spec.name, line, "date", "invalid_value",
                                 f"date and due_date must be YYYY-MM-DD ({exc})", number))
            continue
        inv = InvoicePlan(line, number, row["customer_id"], entity, currency, day.isoformat(), due.isoformat(), total,
                          tax, balance, row.get("description") or "", digest_row(row))
        all_rows.append(inv)

        def bad(fieldname: str, code: str, reason: str, inv: InvoicePlan = inv) -> None:
            plan.problem(Problem("open_invoices", spec.name, inv.row, fieldname, code, reason, inv.number,
                                 amount=inv.balance, currency=inv.currency, entity=inv.entity))

        if line in dups:
            inv.duplicate = True
            continue
        clash = number_clash(number)
        if clash:
            bad("number", "invalid_value", clash)
            continue
        if entity not in plan.entities:
            bad("entity", "broken_reference", f"entity {entity} does not exist")
            continue
        if _closed_at_cutover(uow, plan, entity):
            bad("entity", "period_closed", f"the period of {entity} holding the cutover date {plan.cutover} is closed:"
                " migrated receivables are posted on the cutover date")
            continue
        code, reason = _customer_ok(uow, plan, row["customer_id"])
        if code:
            bad("customer_id", code, reason)
            continue
        problems = []
        if total <= 0:
            problems.append(("total", "an open invoice's total is positive (legacy credits are not migrated)"))
        if not 0 < balance <= total:
            problems.append(("balance", f"the open balance {row['balance']} must be above 0 and at most the total"
                                        f" {row['total']}"))
        if tax < 0 or tax > max(total, 0):
            problems.append(("tax", f"tax {row.get('tax')} must be between 0 and the total"))
        if day > plan.cutover:
            problems.append(("date", f"invoice date {day} is after the cutover {plan.cutover}"))
        if due < day:
            problems.append(("due_date", f"due date {due} is before the invoice date {day}"))
        if problems:
            bad(problems[0][0], "invalid_value", "; ".join(f"{f}: {r}" for f, r in problems))
            continue
        seen = _seen(plan, "open_invoices", number, inv.digest, spec, line)
        if seen is None:
            continue
        if seen:
            inv.imported = True
            continue
        if number in taken:
            bad("number", "duplicate_id", f"invoice {number} already exists in closeloop")
            continue
        plan.invoices.append(inv)
        plan.counts["open_invoices"]["created"] += 1
    plan.all_invoices = [i for i in all_rows if not i.duplicate]


# --------------------------------------------------------------------------- opening balances


def _closed_at_cutover(uow: Any, plan: Plan, entity: str) -> bool:
    """Whether the entity's accounting period holding the cutover date is closed (nothing can be posted in it)."""
    from closeloop.ledger.service import closed_periods, entity_calendar

    if entity not in plan.closed:
        try:
            period = entity_calendar(uow, entity).period_of(plan.cutover)
        except CloseloopError:  # an entity this migration opens: nothing is closed yet
            plan.closed[entity] = False
            return False
        plan.closed[entity] = bool(closed_periods(uow, entity, period, period))
    return plan.closed[entity]


def _plan_opening(uow: Any, plan: Plan) -> None:
    from closeloop.ledger.service import accounts, default_chart

    table = plan.data.tables.get("opening_balances")
    if table is None:
        return
    spec = table.spec
    by_entity: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    for line, row in table.rows:
        plan.counts["opening_balances"]["read"] += 1
        by_entity[row["entity"]].append((line, row))
    chart = {str(a["code"]): a.get("role") for a in default_chart()}
    chart.update({str(a["role"]): a.get("role") for a in default_chart() if a.get("role")})
    for entity, rows in by_entity.items():
        first = rows[0][0]
        if entity not in plan.entities:
            for line, _row in rows:
                plan.problem(Problem("opening_balances", spec.name, line, "entity", "broken_reference",
                                     f"entity {entity} does not exist", entity, entity=entity))
            continue
        functional = plan.entities[entity]
        try:
            known = accounts(uow, entity)
            roles = {name: (a.role, a.code) for name, a in known.items()}
        except CloseloopError:
            known = {}
        if not known:  # an entity this migration opens: the default chart
            roles = {name: (role, name if name not in [str(a.get("role")) for a in default_chart()] else
                            next(str(a["code"]) for a in default_chart() if a.get("role") == name))
                     for name, role in chart.items()}
        lines: list[tuple[str, int, str | None, int | None, str | None, bool]] = []
        ok = True
        debit = credit = 0
        for line, row in rows:
            acct = roles.get(row["account"])
            if acct is None:
                plan.problem(Problem("opening_balances", spec.name, line, "account", "broken_reference",
                                     f"account {row['account']} does not exist in entity {entity}", entity,
                                     entity=entity))
                ok = False
                continue
            role, code = acct
            try:
                d = _dec(row["debit"]) if row.get("debit") else None
                c = _dec(row["credit"]) if row.get("credit") else None
                if (d is None) == (c is None) or (d is not None and d < 0) or (c is not None and c < 0):
                    raise InvalidOperation("give exactly one of debit or credit, not negative")
                value = _amount(str(d if d is not None else c), functional, "debit")
                cur = row.get("currency") or functional
                check_currency(cur)
                txn = None
                if cur != functional:
                    if not row.get("txn_amount"):
                        raise InvalidOperation(f"a {cur} balance needs txn_amount (the amount in {cur})")
                    txn = _amount(str(_dec(row["txn_amount"])), cur, "txn_amount")
            except (InvalidOperation, CloseloopError) as exc:
                plan.problem(Problem("opening_balances", spec.name, line, "debit", "invalid_value",
                                     getattr(exc, "message", None) or str(exc.args[0] if exc.args else exc), entity,
                                     entity=entity))
                ok = False
                continue
            sign = 1 if d is not None else -1
            if sign > 0:
                debit += value
            else:
                credit += value
            is_ar = role == "accounts_receivable"
            lines.append((code, sign * value, cur if cur != functional else None,
                          None if txn is None else sign * txn, row.get("memo") or None, is_ar))
            if is_ar:
                bucket = plan.ar.setdefault((entity, cur), {"functional": 0, "txn": 0, "row": line})
                bucket["functional"] += sign * value
                bucket["txn"] += sign * (txn if txn is not None else value)
        if ok and debit != credit:
            plan.problem(Problem("opening_balances", spec.name, first, "debit", "unbalanced",
                                 f"the opening balances of {entity} do not balance: debits"
                                 f" {format_minor(debit, functional)} and credits {format_minor(credit, functional)}"
                                 f" {functional} (difference {format_minor(debit - credit, functional)})", entity,
                                 entity=entity))
            ok = False
        if ok and known and _closed_at_cutover(uow, plan, entity):
            plan.problem(Problem("opening_balances", spec.name, first, "entity", "period_closed",
                                 f"the period of {entity} holding the cutover date {plan.cutover} is closed: the"
                                 " opening balances (and the migrated receivables) are posted on the cutover date",
                                 entity, entity=entity))
            ok = False
        digest = hashlib.sha1("|".join(digest_row(r) for _, r in rows).encode()).hexdigest()
        seen = _seen(plan, "opening_balances", entity, digest, spec, first) if ok else False
        if seen:
            plan.counts["opening_balances"]["unchanged"] += len(rows) - 1
        if ok and seen is False:
            plan.opening[entity] = OpeningPlan(entity, first, lines, digest)
            plan.counts["opening_balances"]["created"] += len(rows)


# --------------------------------------------------------------------------- tie-outs


def _tie_out(plan: Plan) -> None:
    invoices = plan.all_invoices
    valid = {i.number for i in plan.invoices}
    rejected_keys = {p.key for p in plan.problems if p.kind == "open_invoices"}
    groups: dict[tuple[str, str], list[InvoicePlan]] = defaultdict(list)
    for inv in invoices:
        groups[(inv.entity, inv.currency)].append(inv)
    rows = []
    passed = True
    for key in sorted(set(groups) | set(plan.ar)):
        entity, cur = key
        items = sorted(groups.get(key, []), key=lambda i: i.number)
        gl = plan.ar.get(key, {"functional": 0, "txn": 0})
        subledger = sum(i.balance for i in items)
        imported = sum(i.balance for i in items if i.number in valid or i.imported)
        rejected = sum(i.balance for i in items if i.number in rejected_keys and i.number not in valid
                       and not i.imported)
        unexplained = gl["txn"] - subledger
        ties = unexplained == 0
        passed = passed and ties
        rows.append({"entity": entity, "currency": cur, "gl_opening_ar": format_minor(gl["txn"], cur),
                     "open_invoices": format_minor(subledger, cur), "migrated": format_minor(imported, cur),
                     "rejected": format_minor(rejected, cur), "difference": format_minor(unexplained, cur),
                     "ties": ties, "invoices": len(items)})
        if ties and items and gl["txn"]:
            weights = [i.balance for i in items]
            parts = allocate(gl["functional"], weights) if gl["functional"] != gl["txn"] else weights
            for inv, part in zip(items, parts, strict=True):
                inv.functional = part
    contracts = plan.contracts
    nexts: Counter[str] = Counter(c.next_bill_date.isoformat() if c.next_bill_date else "fully billed"
                                  for c in contracts)
    misaligned = sum(1 for p in plan.problems if p.code == "billed_through_misaligned")
    overlapping = sum(1 for p in plan.problems if p.code == "overlapping_contract")
    plan.tie_outs = {
        "passed": passed and misaligned == 0 and overlapping == 0,
        "ar": rows,
        "ar_passed": passed,
        "contracts": {"checked": len(contracts) + misaligned + overlapping, "continuing": len(contracts),
                      "misaligned": misaligned, "overlapping": overlapping,
                      "next_bill_dates": dict(sorted(nexts.items()))},
    }


# =========================================================================== the report


def report(plan: Plan, *, dry_run: bool, status: str, limit: int | None = None) -> dict[str, Any]:
    counts = Counter(p.code for p in plan.problems)
    kinds = [s.kind for s in SPECS if s.kind in plan.data.tables or plan.counts.get(s.kind)]
    problems = sorted(plan.problems, key=lambda p: ([s.name for s in SPECS].index(p.file)
                                                    if p.file in BY_NAME else 99, p.row, p.field))
    rejected_rows = len({(p.file, p.row) for p in plan.problems})
    def cut(items: list[Any]) -> list[Any]:
        return items[:limit] if limit is not None else items

    return {
        "dataset": {"source": plan.data.source, "system": plan.system, "cutover": plan.cutover.isoformat(),
                    "digest": plan.data.digest,
                    "files": [{"name": t.spec.name, "rows": len(t.rows), "sha256": t.sha256}
                              for t in plan.data.tables.values()]},
        "mode": "accept_valid" if plan.accept_valid else "all_or_nothing", "dry_run": dry_run, "status": status,
        "counts": {k: {"read": plan.counts[k]["read"], "created": plan.counts[k]["created"],
                       "unchanged": plan.counts[k]["unchanged"],
                       "rejected": plan.counts[k]["read"] - plan.counts[k]["created"] - plan.counts[k]["unchanged"]}
                   for k in kinds},
        "problems": cut([p.to_dict() for p in problems]),
        "problem_counts": {c: counts[c] for c in CODES if counts[c]},
        "rejected_rows": rejected_rows,
        "duplicates": {"found": len(plan.merges) + len(plan.review), "merged": len(plan.merges),
                       "review": len(plan.review), "merges": cut(plan.merges), "review_pairs": cut(plan.review)},
        "quality": plan.quality,
        "tie_outs": plan.tie_outs,
        "clearing_account": plan.clearing,
    }


# =========================================================================== applying the plan


def _run(uow: Any, op_name: str, body: dict[str, Any]) -> dict[str, Any]:
    op = registry.get(op_name, "command")
    return op.fn(uow, op.parse(body))


def apply_plan(uow: Any, plan: Plan) -> dict[str, Any]:
    """Persist the plan in this unit of work; returns what was created and the run id."""
    from closeloop.billing.migration import LegacyInvoice, record_open_invoices
    from closeloop.collections.service import record_invoices
    from closeloop.customers.importers import apply_plan as apply_customers
    from closeloop.customers.service import get_customer, upsert_contact
    from closeloop.ledger.model import EntryDraft, LineDraft
    from closeloop.ledger.service import accounts, post_entries

    created: Counter[str] = Counter()
    records: list[tuple[str, str, str, str | None, str | None]] = []
    late: list[Problem] = []
    for entity_body in plan.new_entities:
        _run(uow, "entity.create", entity_body)
        created["entities"] += 1
    # Customers: the CRM importer's bulk path, without its rejections (the migration reports them).
    cplan = plan.customer_plan
    if cplan is not None:
        cplan.accounts = [a for a in cplan.accounts if a.status != "rejected"]
        cplan.contacts = []
        if any(a.status in ("created", "updated") for a in cplan.accounts):
            apply_customers(uow, cplan)
        for a in cplan.accounts:
            row = plan.customer_rows[a.ext][1]
            records.append(("customer", a.ext, digest_row(row), a.ext, None))
            created["customers"] += a.status == "created"
    for m in plan.merges:
        _run(uow, "customer.merge", {"survivor": m["survivor"], "merged": m["merged"],
                                     "reason": f"migration: duplicate of {m['survivor']} (score {m['score']}:"
                                               f" {m['why']})"})
        created["merges"] += 1
    for _line, key, owner, values, digest in plan.contacts:
        upsert_contact(uow, key, owner, values)
        records.append(("contact", key, digest, key, None))
        created["contacts"] += 1
    for _line, product, digest in plan.products:
        _run(uow, "product.create", product)
        records.append(("product", product["sku"], digest, product["sku"], None))
        created["products"] += 1
    for _line, price, digest in plan.prices:
        _run(uow, "price.create", price)
        records.append(("price", price["price_id"], digest, price["price_id"], None))
        created["prices"] += 1
    # Contracts: quote, approval where rules ask for it, acceptance; then billing learns the billed-through date.
    for c in plan.contracts:
        try:
            with uow.savepoint():
                survivor = get_customer(uow, c.customer).external_id
                quote_id = f"MIG-{c.contract_id}"[:64]
                body: dict[str, Any] = {"quote_id": quote_id, "customer": survivor, "start": c.start.isoformat(),
                                        "term_months": c.term_months, "lines": c.lines, "entity": c.entity,
                                        "currency": c.currency, "billing_day": c.billing_day,
                                        "auto_renew": c.auto_renew,
                                        "name": c.name or f"Migrated from {plan.system}: {c.contract_id}"}
                if c.renewal_term_months:
                    body["renewal_term_months"] = c.renewal_term_months
                quote = _run(uow, "quote.create", body)
                if quote.get("status") == "pending_approval":
                    _run(uow, "quote.approve", {"quote_id": quote_id, "approver": uow.actor,
                                                "comment": f"signed in {plan.system}; migrated"})
                _run(uow, "quote.accept", {"quote_id": quote_id, "contract_id": c.contract_id})
                uow.emit("contract.migrated", "contract", c.contract_id, {
                    "contract_id": c.contract_id, "customer": survivor, "entity": c.entity,
                    "billed_through": c.billed_through.isoformat(), "cutover": plan.cutover.isoformat(),
                    "start": c.start.isoformat(),
                    "next_bill_date": c.next_bill_date.isoformat() if c.next_bill_date else None,
                    "system": plan.system}, entity=c.entity)
        except CloseloopError as exc:
            late.append(Problem("contracts", "contracts.csv", c.row, str(exc.details.get("field") or "(row)"),
                                "conflict" if exc.code == "conflict" else "invalid_value",
                                f"{exc.code}: {exc.message}", c.contract_id))
            continue
        records.append(("contract", c.contract_id, c.digest, c.contract_id,
                        dumps({"billed_through": c.billed_through.isoformat(),
                               "next_bill_date": c.next_bill_date.isoformat() if c.next_bill_date else None})))
        created["contracts"] += 1
    # Open invoices into billing's subledger, the collections index and the ledger.
    resolved: dict[str, Any] = {}
    legacy: list[LegacyInvoice] = []
    for inv in plan.invoices:
        cust = resolved.get(inv.customer)
        if cust is None:
            cust = resolved[inv.customer] = get_customer(uow, inv.customer)
        legacy.append(LegacyInvoice(inv.number, cust.id, cust.external_id, inv.entity, inv.currency, inv.date,
                                    inv.due_date, inv.total - inv.tax, inv.tax, inv.total, inv.balance,
                                    inv.description))
    record_open_invoices(uow, legacy, system=plan.system)
    record_invoices(uow, [{"invoice": i.number, "entity": i.entity, "customer": i.customer, "currency": i.currency,
                           "date": i.date, "due_date": i.due_date, "total": format_minor(i.total, i.currency)}
                          for i in legacy])
    entities_posting = {i.entity for i in plan.invoices} | set(plan.opening)
    for entity in sorted(entities_posting):
        if plan.clearing not in accounts(uow, entity):
            _run(uow, "account.create", {"entity": entity, "code": plan.clearing, "name": DEFAULT_CLEARING["name"],
                                         "type": DEFAULT_CLEARING["type"]})
    drafts: list[EntryDraft] = []
    day = plan.cutover.isoformat()
    for entity, ob in sorted(plan.opening.items()):
        lines = tuple(LineDraft(account=plan.clearing if is_ar else code, amount=amount, currency=cur,
                                txn_amount=txn, memo=("legacy receivables: carried by the migrated open invoices"
                                                      if is_ar else memo))
                      for code, amount, cur, txn, memo, is_ar in ob.lines)
        drafts.append(EntryDraft(entity=entity, date=day, memo=f"Opening balances migrated from {plan.system}",
                                 lines=lines, reference=f"migration:opening:{entity}"))
        records.append(("opening_balance", entity, ob.digest, f"migration:opening:{entity}", None))
        created["opening_balances"] += 1
    ar_code: dict[str, str] = {}
    functional_of = plan.entities
    for inv in plan.invoices:
        code = ar_code.get(inv.entity)
        if code is None:
            code = ar_code[inv.entity] = accounts(uow, inv.entity)["accounts_receivable"].code
        foreign = inv.currency != functional_of[inv.entity]
        cur, txn = (inv.currency, inv.balance) if foreign else (None, None)
        drafts.append(EntryDraft(
            entity=inv.entity, date=day, memo=f"Legacy invoice {inv.number} migrated from {plan.system}",
            reference=f"invoice.issued:{inv.number}",
            lines=(LineDraft(code, inv.functional, cur, txn),
                   LineDraft(plan.clearing, -inv.functional, cur, None if txn is None else -txn))))
        records.append(("invoice", inv.number, inv.digest, inv.number, None))
        created["open_invoices"] += 1
    prev_source = uow.source
    uow.source = SOURCE
    try:
        post_entries(uow, drafts)
    finally:
        uow.source = prev_source
    return {"created": dict(created), "records": records, "late": late}


def _exception_keys(uow: Any, keys: Iterable[str]) -> dict[str, int]:
    wanted = list(dict.fromkeys(keys))
    out: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for key, exc_id in uow.all(f"SELECT dedup_key, id FROM exception_item WHERE status = 'open' AND dedup_key IN"
                                   f" ({marks})", chunk):
            out[key] = int(exc_id)
    return out


def _dedup(p: Problem) -> str:
    """A rejected record's exception: one per legacy record (a fixed row that moved keeps it); a repeated id
    is its own row's exception (the first row of that id may well be imported)."""
    base = f"migration:{RECORD_KIND.get(p.kind, p.kind)}:{p.key or f'{p.file}:{p.row}'}"
    return f"{base}:duplicate:{p.file}:{p.row}" if p.code == "duplicate_id" else base


def run_migration(uow: Any, *, directory: str | None, files: Mapping[str, str] | None, cutover: str | None,
                  accept_valid: bool, dry_run: bool) -> dict[str, Any]:
    data = read_dataset(directory, files)
    try:
        uow.source = SOURCE
        plan = build_plan(uow, data, cutover=cutover, accept_valid=accept_valid)
        if dry_run:
            return report(plan, dry_run=True, status="dry_run")
        if plan.file_level:
            rep = report(plan, dry_run=False, status="refused")
            first = plan.file_level[0]
            raise ValidationError(f"migration refused: {first.file}: {first.reason}; nothing was imported",
                                  field=first.field, record=first.file, report=rep)
        if plan.problems and not accept_valid:
            rep = report(plan, dry_run=False, status="refused")
            first = sorted(plan.problems, key=lambda p: (p.file, p.row))[0]
            raise ValidationError(
                f"migration refused: {len(plan.problems)} problem(s) in {rep['rejected_rows']} row(s), nothing was"
                f" imported (first: {first.file} line {first.row}, {first.field}: {first.reason}); fix the data set,"
                " or import the valid rows with --accept-valid", field=first.field, record=f"{first.file}:{first.row}",
                report=rep)
        if not plan.tie_outs["ar_passed"]:
            rep = report(plan, dry_run=False, status="refused")
            bad = [r for r in plan.tie_outs["ar"] if not r["ties"]]
            text = "; ".join(f"{r['entity']} {r['currency']}: GL opening AR {r['gl_opening_ar']}, open invoices"
                             f" {r['open_invoices']} (difference {r['difference']})" for r in bad)
            raise ValidationError(f"migration refused: the AR tie-out fails ({text}); nothing was imported",
                                  field="accounts_receivable", record="opening_balances.csv", report=rep,
                                  tie_outs=bad)
        outcome = apply_plan(uow, plan)
        plan.counts["contracts"]["created"] = outcome["created"].get("contracts", 0)
        if outcome["late"]:
            plan.problems.extend(outcome["late"])
            if not accept_valid:
                rep = report(plan, dry_run=False, status="refused")
                first = outcome["late"][0]
                raise ValidationError(f"migration refused: {first.file} line {first.row}: {first.reason};"
                                      " nothing was imported", field=first.field, record=f"{first.file}:{first.row}",
                                      report=rep)
        rep = report(plan, dry_run=False, status="accepted")
        rep["created"] = outcome["created"]
        if outcome["created"].get("contracts"):
            rep["notes"] = ["revenue recognition takes migrated contracts over from the day after the cutover: what"
                            " the legacy system billed in advance (or recognised before billing) is carried as each"
                            " contract's opening deferred revenue (unbilled receivable); the opening balances must"
                            " hold their totals (query revenue_migrated), else deferred_revenue_vs_gl breaks"
                            " (docs/revenue.md, migrated contracts)"]
        quality = registry.get("customer_quality", "query")
        rep["data_quality_score"] = quality.fn(uow, quality.parse({})).get("score")
        # Rejected rows wait in the exception queue; rows now imported close theirs.
        keys = {_dedup(p): p for p in plan.problems}
        for key, p in keys.items():
            open_exception(uow, "import_rejected", record_type="migration_row", record_id=f"{p.file}:{p.row}",
                           message=f"migration {p.file} line {p.row} ({p.key or 'no id'}): {p.field}: {p.reason}"
                                   f" [{p.code}]", entity=p.entity, amount=p.amount, currency=p.currency,
                           details={**p.to_dict(), "kind": p.kind, "dataset": data.digest}, dedup_key=key)
        done = [f"migration:{kind}:{key}" for kind, key, *_ in outcome["records"]]
        for key, exc_id in _exception_keys(uow, done).items():
            close_exception(uow, exc_id, "accept", f"imported by a later migration run ({key.split(':', 2)[2]})")
        run_id = int(uow.scalar(
            "INSERT INTO migration_run (at, actor, system, dataset, cutover, mode, created, unchanged, rejected, report)"
            " VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (uow.now(), uow.actor, plan.system, data.digest, plan.cutover.isoformat(), rep["mode"],
             sum(v for k, v in outcome["created"].items() if k != "merges"),
             sum(c["unchanged"] for c in rep["counts"].values()), rep["rejected_rows"],
             dumps(report(plan, dry_run=False, status="accepted", limit=REPORT_ROWS_STORED)))))
        uow.executemany(
            "INSERT INTO migration_record (kind, key, digest, run_id, target, detail) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT (kind, key) DO UPDATE SET digest = excluded.digest, run_id = excluded.run_id,"
            " target = excluded.target, detail = excluded.detail",
            [(kind, key, digest, run_id, target, detail) for kind, key, digest, target, detail in outcome["records"]])
        if any(outcome["created"].values()):
            uow.emit("migration.imported", "migration", str(run_id), {
                "run": run_id, "system": plan.system, "cutover": plan.cutover.isoformat(), "dataset": data.digest,
                "created": outcome["created"], "rejected": rep["rejected_rows"]})
        rep["run"] = run_id
        return rep
    finally:
        if data.temp is not None:
            data.temp.cleanup()


# =========================================================================== commands and queries


@payload
class MigrationImport:
    dir: str | None = None
    files: dict[str, str] | None = None
    cutover: str | None = None
    accept_valid: bool = False


@command("migration.import", MigrationImport, roles=ROLES,
         summary="Migrate a legacy data set (customers, contracts, open invoices, opening balances) after validation"
                 " and tie-outs; all or nothing unless accept_valid")
def migration_import(uow: Any, cmd: MigrationImport) -> dict[str, Any]:
    return run_migration(uow, directory=cmd.dir, files=cmd.files, cutover=cmd.cutover, accept_valid=cmd.accept_valid,
                         dry_run=False)


@query("migration_preview", MigrationImport, roles=ROLES + ("read_only", "controller"),
       summary="What migration.import would do, with its full report (a dry run: nothing is written)")
def migration_preview(uow: Any, q: MigrationImport) -> dict[str, Any]:
    return run_migration(uow, directory=q.dir, files=q.files, cutover=q.cutover, accept_valid=q.accept_valid,
                         dry_run=True)


@payload
class MigrationsQuery:
    run: int | None = None


@query("migration", MigrationsQuery, summary="Migration runs (newest first), or one run's report")
def migration_query(uow: Any, q: MigrationsQuery) -> dict[str, Any]:
    if q.run is not None:
        row = uow.one("SELECT report FROM migration_run WHERE id = ?", (q.run,))
        if row is None:
            raise NotFoundError(f"migration run {q.run} does not exist", field="run")
        return {"run": q.run, **json.loads(row[0])}
    rows = uow.all("SELECT id, at, actor, system, dataset, cutover, mode, created, unchanged, rejected FROM"
                   " migration_run ORDER BY id DESC")
    keys = ("run", "at", "actor", "system", "dataset", "cutover", "mode", "created", "unchanged", "rejected")
    records = {k: int(n) for k, n in uow.all("SELECT kind, COUNT(*) FROM migration_record GROUP BY kind")}
    return {"count": len(rows), "runs": [dict(zip(keys, r, strict=True)) for r in rows], "records": records}


@payload
class MigrationVerify:
    entity: str | None = None


@query("migration_verify", MigrationVerify, roles=ROLES + ("read_only", "controller", "billing"),
       summary="After a migration: AR subledger = GL AR per entity and currency; each migrated contract continues"
               " billing the day after its billed-through date")
def migration_verify(uow: Any, q: MigrationVerify) -> dict[str, Any]:
    from closeloop.billing.migration import continuation, open_balances
    from closeloop.ledger.service import entities_for
    from closeloop.ledger.subledger import ar_balance, ar_open_items

    billing = open_balances(uow)
    rows = []
    passed = True
    for ent in entities_for(uow, q.entity):
        items = ar_open_items(uow, ent.code)
        by_cur: dict[str, int] = defaultdict(int)
        for _functional, txn, cur in items.values():
            by_cur[cur] += txn
        for cur in sorted(set(by_cur) | {c for (e, c) in billing if e == ent.code}):
            b = billing.get((ent.code, cur), 0)
            ties = b == by_cur.get(cur, 0)
            passed = passed and ties
            rows.append({"entity": ent.code, "currency": cur, "billing_open": format_minor(b, cur),
                         "ar_subledger": format_minor(by_cur.get(cur, 0), cur),
                         "difference": format_minor(b - by_cur.get(cur, 0), cur), "ties": ties})
        functional = sum(f for f, _t, _c in items.values())
        gl = ar_balance(uow, ent.code)
        ties = functional == gl
        passed = passed and ties
        rows.append({"entity": ent.code, "currency": ent.currency, "scope": "functional",
                     "ar_subledger": format_minor(functional, ent.currency), "gl_ar": format_minor(gl, ent.currency),
                     "difference": format_minor(functional - gl, ent.currency), "ties": ties})
    migrated = {key: json.loads(detail) for key, detail in uow.all(
        "SELECT key, detail FROM migration_record WHERE kind = 'contract'")}
    where = continuation(uow, sorted(migrated))
    wrong, pending = [], []
    for cid, d in sorted(migrated.items()):
        first = (date.fromisoformat(d["billed_through"]) + ONE_DAY).isoformat()
        found = where.get(cid)
        if found is None:
            pending.append(cid)
            continue
        expected = first if first > found["start"] else None
        if expected is not None and (found["scan_from"] or "") < expected and found["scan_from"] != expected:
            wrong.append({"contract_id": cid, "billed_through": d["billed_through"], "scan_from": found["scan_from"],
                          "next_date": found["next_date"]})
    passed = passed and not wrong and not pending
    return {"passed": passed, "ar": rows,
            "contracts": {"migrated": len(migrated), "continuing": len(migrated) - len(wrong) - len(pending),
                          "not_delivered_yet": pending[:50], "wrong": wrong[:50]}}


def _check_contract_migrated(p: dict[str, Any]) -> None:
    if not isinstance(p.get("contract_id"), str) or not isinstance(p.get("billed_through"), str):
        raise ValueError("contract.migrated needs contract_id and billed_through (strings)")
    date.fromisoformat(p["billed_through"])


register_schema("contract.migrated", _check_contract_migrated)
