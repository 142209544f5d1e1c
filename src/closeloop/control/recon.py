"""The reconciliation framework: rules as config, sides as registered queries or imported files.

A **rule** (``config/recon_rules.yaml``) compares two datasets:

- ``left`` and ``right`` sides, each either ``{query: NAME, params: {...}}``
  (a function registered with ``@recon_side(NAME)`` by the area that owns the
  data) or ``{file: {format: csv, columns: {...}, currency: USD}}`` (an
  imported file, e.g. a legacy invoice register; its path is given at run time
  or in the rule);
- a match ``key`` (fields present in both sides' records);
- ``compare``: the fields compared once matched, amounts with a
  ``tolerance`` (major units, per currency) and other fields exactly;
- ``timing_days``: a record present on one side only, dated within that many
  days before the run's ``as_of``, is a ``timing`` difference (expected to
  clear), not a missing record.

A rule whose side is not registered yet is *declared*: it is listed and
reported ``unavailable`` (naming the missing side and the area that provides
it) until that area registers the side; nothing else changes. A ``check`` rule
(``check: NAME``, registered with ``@recon_check``) produces breaks directly
(e.g. the ledger's audit-chain verification).

Break categories: ``missing_left`` (only on the right), ``missing_right``
(only on the left), ``amount_difference``, ``field_difference`` (a compared
non-amount field, or the currency, differs) and ``timing``. Every break except
``timing`` opens (or updates) one ``recon_break`` exception, deduplicated by
rule and key; when a later run no longer finds it, the exception closes itself
(``auto_closed``). A break a person resolved with ``accept`` is not reopened
while its amount stays the same.

Side records are dicts: the key fields, ``currency``, the amount fields as
integer minor units, optionally ``date`` (ISO) and ``record`` (a link such as
``{"journal": "JE-US01-0000001"}`` used by lineage). :func:`reconcile` is the
pure matching core; :func:`run_recon` persists a run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from operator import itemgetter
from pathlib import Path
from typing import Any

import yaml

from closeloop.core.errors import CloseloopError, NotFoundError, ValidationError
from closeloop.core.exception_queue import close_exception, open_exception
from closeloop.core.money import check_currency, format_minor, to_minor
from closeloop.core.periods import parse_date
from closeloop.core.registry import command, payload, query
from closeloop.core.uow import dumps

CATEGORIES = ("missing_left", "missing_right", "amount_difference", "field_difference", "timing")
EXCEPTION_CATEGORIES = frozenset(CATEGORIES) - {"timing"}

# --------------------------------------------------------------------------- side and check registries


@dataclass(frozen=True, slots=True)
class SideContext:
    rule: str
    as_of: date
    params: dict[str, Any]
    entity: str | None = None


@dataclass(frozen=True, slots=True)
class Side:
    name: str
    fn: Callable[[Any, SideContext], Iterable[dict[str, Any]]]
    description: str
    area: str


_SIDES: dict[str, Side] = {}
_CHECKS: dict[str, Side] = {}


def recon_side(name: str, *, description: str = "", area: str = "") -> Callable[[Any], Any]:
    """Register a reconciliation side: ``fn(uow, ctx: SideContext) -> iterable of record dicts``."""

    def register(fn: Callable[[Any, SideContext], Iterable[dict[str, Any]]]) -> Any:
        _SIDES[name] = Side(name, fn, description or (fn.__doc__ or "").strip().split("\n")[0],
                            area or fn.__module__.split(".")[1])
        return fn

    return register


def recon_check(name: str, *, description: str = "", area: str = "") -> Callable[[Any], Any]:
    """Register a check: ``fn(uow, ctx) -> iterable of break dicts`` {category, key: {...}, amount?,
    currency?, left?, right?, detail}."""

    def register(fn: Callable[[Any, SideContext], Iterable[dict[str, Any]]]) -> Any:
        _CHECKS[name] = Side(name, fn, description or (fn.__doc__ or "").strip().split("\n")[0],
                             area or fn.__module__.split(".")[1])
        return fn

    return register


def registered_sides() -> dict[str, Side]:
    return dict(_SIDES)


def registered_checks() -> dict[str, Side]:
    return dict(_CHECKS)


# --------------------------------------------------------------------------- rules (config)


@dataclass(frozen=True, slots=True)
class FileSpec:
    columns: tuple[tuple[str, str], ...]  # record field -> CSV column header
    amount_fields: tuple[str, ...]
    currency: str | None = None
    path: str | None = None
    delimiter: str = ","
    format: str = "csv"


@dataclass(frozen=True, slots=True)
class SideSpec:
    query: str | None = None
    file: FileSpec | None = None
    params: tuple[tuple[str, Any], ...] = ()
    negate: bool = False
    provided_by: str | None = None  # the area expected to register a declared side

    @property
    def label(self) -> str:
        return self.query or "file"


@dataclass(frozen=True, slots=True)
class Compare:
    field: str
    amount: bool
    tolerance: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    description: str
    key: tuple[str, ...] = ()
    left: SideSpec | None = None
    right: SideSpec | None = None
    check: str | None = None
    compare: tuple[Compare, ...] = ()
    timing_days: int = 0
    date_field: str = "date"
    enabled: bool = True
    provided_by: str | None = None

    @property
    def amount_field(self) -> str | None:
        return next((c.field for c in self.compare if c.amount), None)


def _side_spec(rule_id: str, name: str, raw: Any, problems: list[str]) -> SideSpec | None:
    where = f"rule {rule_id}: {name}"
    if not isinstance(raw, dict):
        problems.append(f"{where} must be a mapping with query or file")
        return None
    unknown = set(raw) - {"query", "file", "params", "negate", "provided_by"}
    if unknown:
        problems.append(f"{where} has unknown keys {sorted(unknown)}")
    if ("query" in raw) == ("file" in raw):
        problems.append(f"{where} needs exactly one of query or file")
        return None
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        problems.append(f"{where}.params must be a mapping")
        params = {}
    spec_file = None
    if "file" in raw:
        f = raw["file"] or {}
        columns = f.get("columns") or {}
        if not isinstance(columns, dict) or not columns:
            problems.append(f"{where}.file.columns must map record fields to CSV column headers")
            columns = {}
        if f.get("format", "csv") != "csv":
            problems.append(f"{where}.file.format {f.get('format')!r}: only csv is supported")
        if f.get("currency"):
            try:
                check_currency(str(f["currency"]))
            except CloseloopError as exc:
                problems.append(f"{where}.file.currency: {exc.message}")
        if "currency" not in columns and not f.get("currency"):
            problems.append(f"{where}.file needs a currency column or a currency")
        spec_file = FileSpec(columns=tuple((str(k), str(v)) for k, v in columns.items()),
                             amount_fields=tuple(f.get("amount_fields") or ("amount",)),
                             currency=f.get("currency"), path=f.get("path"), delimiter=str(f.get("delimiter", ",")))
    return SideSpec(query=raw.get("query"), file=spec_file, params=tuple(sorted(params.items())),
                    negate=bool(raw.get("negate", False)), provided_by=raw.get("provided_by"))


def parse_rules(data: Any) -> tuple[Rule, ...]:
    """Validate a rules document; every problem is reported at once (ValidationError)."""
    problems: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("rules"), dict):
        raise ValidationError("recon rules: the document needs a 'rules' mapping of rule id -> rule", field="rules")
    rules = []
    for rule_id, raw in data["rules"].items():
        rule_id = str(rule_id)
        if not isinstance(raw, dict):
            problems.append(f"rule {rule_id} must be a mapping")
            continue
        unknown = set(raw) - {"description", "left", "right", "key", "compare", "timing_days", "date_field",
                              "enabled", "check", "provided_by"}
        if unknown:
            problems.append(f"rule {rule_id} has unknown keys {sorted(unknown)}")
        if len(rule_id) > 64:
            problems.append(f"rule {rule_id}: ids are at most 64 characters")
        if "check" in raw:
            if "left" in raw or "right" in raw:
                problems.append(f"rule {rule_id}: a check rule has no sides")
            rules.append(Rule(id=rule_id, description=str(raw.get("description", "")), check=str(raw["check"]),
                              enabled=bool(raw.get("enabled", True)), provided_by=raw.get("provided_by")))
            continue
        left = _side_spec(rule_id, "left", raw.get("left"), problems)
        right = _side_spec(rule_id, "right", raw.get("right"), problems)
        key = raw.get("key")
        if isinstance(key, str):
            key = [key]
        if not key or not isinstance(key, list):
            problems.append(f"rule {rule_id}: key must name one or more fields")
            key = []
        compares = []
        for i, c in enumerate(raw.get("compare") or []):
            if isinstance(c, str):
                c = {"field": c}
            if not isinstance(c, dict) or "field" not in c:
                problems.append(f"rule {rule_id}: compare[{i}] needs a field")
                continue
            bad = set(c) - {"field", "tolerance", "exact"}
            if bad:
                problems.append(f"rule {rule_id}: compare[{i}] has unknown keys {sorted(bad)}")
            exact = bool(c.get("exact", False))
            try:
                tolerance = Decimal(str(c.get("tolerance", "0")))
                if tolerance < 0:
                    raise InvalidOperation
            except InvalidOperation:
                problems.append(f"rule {rule_id}: compare[{i}].tolerance must be a non-negative decimal string")
                tolerance = Decimal(0)
            compares.append(Compare(field=str(c["field"]), amount=not exact, tolerance=tolerance))
        try:
            timing = int(raw.get("timing_days", 0))
            if timing < 0:
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"rule {rule_id}: timing_days must be a whole number of days, 0 or more")
            timing = 0
        rules.append(Rule(id=rule_id, description=str(raw.get("description", "")), key=tuple(map(str, key)),
                          left=left, right=right, compare=tuple(compares), timing_days=timing,
                          date_field=str(raw.get("date_field", "date")), enabled=bool(raw.get("enabled", True)),
                          provided_by=raw.get("provided_by")))
    if problems:
        raise ValidationError("recon rules are invalid: " + "; ".join(problems), field="rules", errors=problems)
    return tuple(rules)


@lru_cache(maxsize=8)
def _load_text(text: str) -> tuple[Rule, ...]:
    return parse_rules(yaml.safe_load(text))


def shipped_rules_text() -> str:
    return (resources.files("closeloop") / "config" / "recon_rules.yaml").read_text()


def load_rules(uow: Any = None) -> tuple[Rule, ...]:
    """The rules in force: ``services.config['recon_rules']`` (a path, a YAML text or a dict) or the shipped file."""
    custom = None
    if uow is not None and getattr(uow, "services", None) is not None:
        custom = uow.services.config.get("recon_rules")
    if custom is None:
        return _load_text(shipped_rules_text())
    if isinstance(custom, dict):
        return parse_rules(custom)
    text = str(custom)
    if "\n" not in text and Path(text).exists():
        text = Path(text).read_text()
    return _load_text(text)


def availability(rule: Rule) -> str | None:
    """Why a rule cannot run now (a side or check not registered), or None."""
    if rule.check is not None:
        if rule.check not in _CHECKS:
            return f"check {rule.check} is not registered" + (f" (provided by {rule.provided_by})"
                                                               if rule.provided_by else "")
        return None
    missing = [s for s in (rule.left, rule.right) if s is not None and s.query is not None and s.query not in _SIDES]
    if missing:
        return "; ".join(f"side {s.query} is not registered" + (f" (provided by {s.provided_by})" if s.provided_by
                                                                 else "") for s in missing)
    return None


# --------------------------------------------------------------------------- the pure matching core


@dataclass(frozen=True, slots=True)
class BreakDraft:
    rule: str
    category: str
    key: tuple[str, ...]
    currency: str | None
    amount: int | None
    left_amount: int | None
    right_amount: int | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key_text(self) -> str:
        return "|".join(self.key)


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    left_count: int
    right_count: int
    matched: int
    breaks: tuple[BreakDraft, ...]


def _key_function(key: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[str, ...]]:
    """Keys compare as text, so a file's "42" matches a query's 42."""
    getter = itemgetter(*key)
    if len(key) == 1:
        return lambda rec: (str(getter(rec)),)
    return lambda rec: tuple(map(str, getter(rec)))


def _index(records: Iterable[dict[str, Any]], key: tuple[str, ...], amounts: tuple[str, ...], negate: bool,
           side: str) -> dict[tuple[str, ...], dict[str, Any]]:
    rows = records if isinstance(records, list) else list(records)
    keyf = _key_function(key)
    try:
        out = {keyf(rec): rec for rec in rows}
    except KeyError as exc:
        raise ValidationError(f"a {side} record lacks the key field {exc.args[0]}", field="key") from None
    if len(out) != len(rows):  # several records share a key: their amounts add up
        out = {}
        for rec in rows:
            k = keyf(rec)
            found = out.get(k)
            if found is None:
                out[k] = rec
            else:
                merged = dict(found)
                for f in amounts:
                    merged[f] = int(found.get(f) or 0) + int(rec.get(f) or 0)
                merged["_duplicates"] = int(found.get("_duplicates", 1)) + 1
                out[k] = merged
    if negate:
        out = {k: {**rec, **{f: -int(rec[f]) for f in amounts if rec.get(f) is not None}} for k, rec in out.items()}
    return out


def _tolerance_minor(tolerance: Decimal, currency: str | None, cache: dict[tuple[Decimal, str | None], int]) -> int:
    found = cache.get((tolerance, currency))
    if found is None:
        found = to_minor(tolerance, currency) if currency else int(tolerance)
        cache[(tolerance, currency)] = found
    return found


def _plain(rec: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if rec is None else {k: v for k, v in rec.items() if not k.startswith("_")}


def reconcile(rule: Rule, left: Iterable[dict[str, Any]], right: Iterable[dict[str, Any]],
              as_of: date) -> RuleResult:
    """Match two sides by the rule's key and classify every difference (no database, no clock)."""
    assert rule.left is not None and rule.right is not None
    amounts = tuple(c.field for c in rule.compare if c.amount)
    tolerances = tuple((c.field, c.tolerance) for c in rule.compare if c.amount)
    exact = tuple(c.field for c in rule.compare if not c.amount)
    lmap = _index(left, rule.key, amounts, rule.left.negate, "left")
    rmap = _index(right, rule.key, amounts, rule.right.negate, "right")
    primary = rule.amount_field
    tol_cache: dict[tuple[Decimal, str | None], int] = {}
    breaks: list[BreakDraft] = []
    matched = 0
    for k, lrec in lmap.items():
        rrec = rmap.get(k)
        if rrec is None:
            breaks.append(_one_sided(rule, k, lrec, None, primary, as_of))
            continue
        lcur, rcur = lrec.get("currency"), rrec.get("currency")
        agree = lcur == rcur or not lcur or not rcur
        if agree:
            for f, tol in tolerances:
                diff = (lrec.get(f) or 0) - (rrec.get(f) or 0)
                if diff and abs(diff) > _tolerance_minor(tol, lcur or rcur, tol_cache):
                    agree = False
                    break
        if agree:
            for f in exact:
                lv, rv = lrec.get(f), rrec.get(f)
                if lv != rv and (None if lv is None else str(lv)) != (None if rv is None else str(rv)):
                    agree = False
                    break
        if agree:
            matched += 1
            continue
        breaks.append(_difference(rule, k, lrec, rrec, primary, tol_cache))
    for k, rrec in rmap.items():
        if k not in lmap:
            breaks.append(_one_sided(rule, k, None, rrec, primary, as_of))
    return RuleResult(rule.id, len(lmap), len(rmap), matched, tuple(breaks))


def _difference(rule: Rule, k: tuple[str, ...], lrec: dict[str, Any], rrec: dict[str, Any], primary: str | None,
                tol_cache: dict[tuple[Decimal, str | None], int]) -> BreakDraft:
    """The break for two matched records that disagree: every differing field, the category, the amount."""
    currency = lrec.get("currency") or rrec.get("currency")
    differing: list[dict[str, Any]] = []
    category = None
    if lrec.get("currency") and rrec.get("currency") and lrec["currency"] != rrec["currency"]:
        differing.append({"field": "currency", "left": lrec["currency"], "right": rrec["currency"]})
        category = "field_difference"
    else:
        for c in rule.compare:
            lv, rv = lrec.get(c.field), rrec.get(c.field)
            if c.amount:
                diff = int(lv or 0) - int(rv or 0)
                if abs(diff) > _tolerance_minor(c.tolerance, currency, tol_cache):
                    differing.append({"field": c.field, "left": lv, "right": rv, "difference": diff})
                    category = "amount_difference"
            elif (None if lv is None else str(lv)) != (None if rv is None else str(rv)):
                differing.append({"field": c.field, "left": lv, "right": rv})
                category = category or "field_difference"
    la = None if primary is None else int(lrec.get(primary) or 0)
    ra = None if primary is None else int(rrec.get(primary) or 0)
    amount = abs(la - ra) if la is not None and ra is not None else None
    if category == "amount_difference" and not amount:
        amount = max(abs(int(d.get("difference", 0))) for d in differing)
    return BreakDraft(rule.id, category or "field_difference", k, currency, amount, la, ra,
                      {"key": dict(zip(rule.key, k, strict=True)), "fields": differing,
                       "left": _plain(lrec), "right": _plain(rrec)})


def _one_sided(rule: Rule, k: tuple[str, ...], lrec: dict[str, Any] | None, rrec: dict[str, Any] | None,
               primary: str | None, as_of: date) -> BreakDraft:
    rec = lrec if lrec is not None else rrec
    assert rec is not None
    category = "missing_right" if lrec is not None else "missing_left"
    day = rec.get(rule.date_field)
    if rule.timing_days and day:
        try:
            age = (as_of - date.fromisoformat(str(day)[:10])).days
        except ValueError:
            age = None
        if age is not None and 0 <= age <= rule.timing_days:
            category = "timing"
    amount = None if primary is None else int(rec.get(primary) or 0)
    return BreakDraft(rule.id, category, k, rec.get("currency"), None if amount is None else abs(amount),
                      amount if lrec is not None else None, amount if rrec is not None else None,
                      {"key": dict(zip(rule.key, k, strict=True)), "left": _plain(lrec), "right": _plain(rrec)})


# --------------------------------------------------------------------------- reading sides


def read_file_side(spec: FileSpec, path: str) -> list[dict[str, Any]]:
    """Records of an imported CSV: columns mapped to fields, amounts (decimal strings) to minor units."""
    text = Path(path).read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text), delimiter=spec.delimiter)
    headers = set(reader.fieldnames or ())
    missing = [col for _, col in spec.columns if col not in headers]
    if missing:
        raise ValidationError(f"{path}: missing column(s) {', '.join(missing)}; the file has"
                              f" {', '.join(sorted(headers))}", field="file", record=path)
    out = []
    problems = []
    for n, row in enumerate(reader, 2):
        rec: dict[str, Any] = {f: (row.get(col) or "").strip() for f, col in spec.columns}
        currency = rec.get("currency") or spec.currency
        rec["currency"] = currency
        for f in spec.amount_fields:
            if f not in rec:
                continue
            try:
                rec[f] = to_minor(Decimal(rec[f].replace(",", "")) if rec[f] else Decimal(0), currency, field=f)
            except (InvalidOperation, CloseloopError):
                problems.append(f"line {n}: {f} {row.get(dict(spec.columns)[f])!r} is not an amount")
        rec["record"] = {"file": f"{Path(path).name}:{n}"}
        out.append(rec)
    if problems:
        raise ValidationError(f"{path}: " + "; ".join(problems[:20]), field="file", record=path, errors=problems)
    return out


def side_records(uow: Any, rule: Rule, spec: SideSpec, ctx: SideContext, files: dict[str, str],
                 which: str) -> list[dict[str, Any]]:
    if spec.query is not None:
        return list(_SIDES[spec.query].fn(uow, ctx))
    assert spec.file is not None
    path = files.get(f"{rule.id}.{which}") or files.get(rule.id) or spec.file.path
    if not path:
        raise ValidationError(f"rule {rule.id}: the {which} side is a file; give its path with"
                              f" files: {{{rule.id}: PATH}}", field="files", record=rule.id)
    return read_file_side(spec.file, path)


# --------------------------------------------------------------------------- running and persisting


def _dedup_key(rule: str, key_text: str) -> str:
    raw = f"recon:{rule}:{key_text}"
    return raw if len(raw) <= 250 else f"recon:{rule}:#" + hashlib.sha256(key_text.encode()).hexdigest()


def _fmt(minor: int | None, currency: str | None) -> str | None:
    if minor is None:
        return None
    if currency:
        try:
            return format_minor(int(minor), currency)
        except CloseloopError:
            pass
    return str(minor)


def _message(b: BreakDraft) -> str:
    what = {"missing_left": "missing on the left side", "missing_right": "missing on the right side",
            "amount_difference": "amounts differ", "field_difference": "fields differ",
            "timing": "timing difference"}[b.category]
    text = f"{b.rule}: {b.key_text or '(all)'}: {what}"
    if b.left_amount is not None or b.right_amount is not None:
        text += f" (left {_fmt(b.left_amount, b.currency) or '-'}, right {_fmt(b.right_amount, b.currency) or '-'}"
        text += f", at stake {_fmt(b.amount, b.currency)} {b.currency or ''})".replace(" )", ")")
    elif b.details.get("detail"):
        text += f": {b.details['detail']}"
    return text


def _check_breaks(uow: Any, rule: Rule, ctx: SideContext) -> RuleResult:
    """A check returns break dicts, or ``{"checked": N, "breaks": [...]}`` (N items examined)."""
    assert rule.check is not None
    produced = _CHECKS[rule.check].fn(uow, ctx)
    checked = None
    if isinstance(produced, dict):
        checked = int(produced.get("checked", 0))
        produced = produced.get("breaks", ())
    breaks = []
    for item in produced:
        if item["category"] not in CATEGORIES:
            raise ValidationError(f"check {rule.check} returned an unknown category {item['category']!r}")
        key = item.get("key") or {}
        k = tuple(str(v) for v in key.values())
        breaks.append(BreakDraft(rule.id, item["category"], k, item.get("currency"), item.get("amount"),
                                 item.get("left"), item.get("right"),
                                 {"key": key, "detail": item.get("detail"), "record": item.get("record")}))
    examined = max(checked if checked is not None else len(breaks), len(breaks))
    return RuleResult(rule.id, examined, examined, examined - len(breaks), tuple(breaks))


def run_recon(uow: Any, rule_ids: tuple[str, ...] = (), *, as_of: date | None = None, entity: str | None = None,
              files: dict[str, str] | None = None) -> dict[str, Any]:
    rules = load_rules(uow)
    by_id = {r.id: r for r in rules}
    unknown = [r for r in rule_ids if r not in by_id]
    if unknown:
        raise ValidationError(f"unknown recon rule(s) {', '.join(unknown)}; rules are {', '.join(by_id)}",
                              field="rules")
    selected = [by_id[r] for r in rule_ids] if rule_ids else [r for r in rules if r.enabled]
    as_of = as_of or uow.today()
    now = uow.now()
    run_id = int(uow.scalar(
        "INSERT INTO recon_run (started_at, business_date, as_of, actor, rules, matched, breaks)"
        " VALUES (?,?,?,?,?,0,0) RETURNING id",
        (now, uow.today().isoformat(), as_of.isoformat(), uow.actor, json.dumps([r.id for r in selected]))))
    open_rows = uow.all("SELECT id, dedup_key, amount, details FROM exception_item"
                        " WHERE kind = 'recon_break' AND status = 'open'")
    accepted = {(k, a) for k, a in uow.all(
        "SELECT dedup_key, amount FROM exception_item WHERE kind = 'recon_break' AND status = 'resolved'"
        " AND resolution = 'accept'")}
    total_matched = total_breaks = 0
    for rule in selected:
        reason = availability(rule)
        counts = {"opened": 0, "updated": 0, "closed": 0}
        if reason is not None:
            _record_rule(uow, run_id, rule.id, "unavailable", reason, None, counts)
            continue
        ctx = SideContext(rule=rule.id, as_of=as_of, params=dict(rule.left.params if rule.left else ()), entity=entity)
        try:
            if rule.check is not None:
                result = _check_breaks(uow, rule, ctx)
            else:
                assert rule.left is not None and rule.right is not None
                left = side_records(uow, rule, rule.left, ctx, files or {}, "left")
                rctx = SideContext(rule=rule.id, as_of=as_of, params=dict(rule.right.params), entity=entity)
                right = side_records(uow, rule, rule.right, rctx, files or {}, "right")
                result = reconcile(rule, left, right, as_of)
        except CloseloopError as exc:
            _record_rule(uow, run_id, rule.id, "error", exc.message, None, counts)
            continue
        prefix = f"recon:{rule.id}:"
        existing = {k: (int(i), a) for i, k, a, _ in open_rows if k and k.startswith(prefix)}
        seen: set[str] = set()
        rows = []
        for seq, b in enumerate(result.breaks, 1):
            exc_id = None
            if b.category in EXCEPTION_CATEGORIES:
                dedup = _dedup_key(rule.id, b.key_text)
                seen.add(dedup)
                found = existing.get(dedup)
                if found is not None:
                    exc_id = found[0]
                    if found[1] != b.amount:
                        uow.execute("UPDATE exception_item SET message = ?, amount = ?, currency = ?, details = ?"
                                    " WHERE id = ?", (_message(b), b.amount, b.currency,
                                                     dumps(_exception_details(b, run_id)), exc_id))
                        counts["updated"] += 1
                elif (dedup, b.amount) not in accepted:
                    exc_id = open_exception(
                        uow, "recon_break", record_type="recon_break", record_id=f"{rule.id}:{b.key_text}"[:200],
                        message=_message(b), entity=_entity_of(b), amount=b.amount,
                        currency=b.currency if b.currency and len(b.currency) == 3 else None,
                        details=_exception_details(b, run_id), dedup_key=dedup)
                    counts["opened"] += 1
            rows.append((run_id, rule.id, seq, b.category, b.key_text[:400], b.currency, b.amount, b.left_amount,
                         b.right_amount, dumps(b.details), exc_id))
        uow.executemany("INSERT INTO recon_break (run_id, rule, seq, category, match_key, currency, amount,"
                        " left_amount, right_amount, details, exception_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        for dedup, (exc_id, _) in existing.items():
            if dedup not in seen:
                close_exception(uow, exc_id, "auto_closed", f"recon run {run_id}: rule {rule.id} no longer finds"
                                " this break")
                counts["closed"] += 1
        _record_rule(uow, run_id, rule.id, "ok", None, result, counts)
        total_matched += result.matched
        total_breaks += len(result.breaks)
    uow.execute("UPDATE recon_run SET matched = ?, breaks = ? WHERE id = ?", (total_matched, total_breaks, run_id))
    uow.emit("recon.completed", "recon_run", str(run_id), {"run": run_id, "as_of": as_of.isoformat(),
             "rules": [r.id for r in selected], "matched": total_matched, "breaks": total_breaks})
    return recon_results(uow, None, run_id=run_id)


def _entity_of(b: BreakDraft) -> str | None:
    value = b.details.get("key", {}).get("entity")
    return None if value is None else str(value)[:16]


def _exception_details(b: BreakDraft, run_id: int) -> dict[str, Any]:
    return {"rule": b.rule, "category": b.category, "run": run_id, "key": b.details.get("key"),
            "left": _fmt(b.left_amount, b.currency), "right": _fmt(b.right_amount, b.currency),
            "fields": b.details.get("fields"), "left_record": (b.details.get("left") or {}).get("record"),
            "right_record": (b.details.get("right") or {}).get("record"), "detail": b.details.get("detail")}


def _record_rule(uow: Any, run_id: int, rule: str, status: str, message: str | None, result: RuleResult | None,
                 counts: dict[str, int]) -> None:
    uow.execute(
        "INSERT INTO recon_rule_run (run_id, rule, status, message, left_count, right_count, matched, breaks,"
        " opened, updated, closed) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (run_id, rule, status, message, result.left_count if result else 0, result.right_count if result else 0,
         result.matched if result else 0, len(result.breaks) if result else 0, counts["opened"],
         counts["updated"], counts["closed"]))


def recon_results(uow: Any, rule: str | None, *, run_id: int | None = None) -> dict[str, Any]:
    """Each rule's latest outcome (or one run's) with its breaks, as the ``recon`` query returns them."""
    if run_id is not None:
        latest = uow.all("SELECT rule, run_id FROM recon_rule_run WHERE run_id = ?", (run_id,))
    else:
        latest = uow.all("SELECT rule, MAX(run_id) FROM recon_rule_run GROUP BY rule")
    if rule is not None:
        latest = [r for r in latest if r[0] == rule]
    order = {r.id: i for i, r in enumerate(load_rules(uow))}
    latest = sorted(latest, key=lambda r: (order.get(r[0], len(order)), r[0]))
    rules_out = []
    breaks_out = []
    matched = 0
    for rule_id, rid in latest:
        status, message, lc, rc, m, nb, opened, updated, closed, at = uow.one(
            "SELECT rr.status, rr.message, rr.left_count, rr.right_count, rr.matched, rr.breaks, rr.opened,"
            " rr.updated, rr.closed, r.started_at FROM recon_rule_run rr JOIN recon_run r ON r.id = rr.run_id"
            " WHERE rr.run_id = ? AND rr.rule = ?", (rid, rule_id))
        matched += int(m)
        rules_out.append({"rule": rule_id, "status": status, "message": message, "run": int(rid), "at": at,
                          "left": int(lc), "right": int(rc), "matched": int(m), "breaks": int(nb),
                          "exceptions": {"opened": int(opened), "updated": int(updated), "closed": int(closed)}})
        for (category, key, currency, amount, la, ra, details, exc_id) in uow.all(
                "SELECT category, match_key, currency, amount, left_amount, right_amount, details, exception_id"
                " FROM recon_break WHERE run_id = ? AND rule = ? ORDER BY seq", (rid, rule_id)):
            d = json.loads(details) if details else {}
            item: dict[str, Any] = {"rule": rule_id, "category": category, "key": d.get("key") or key,
                                    "amount": _fmt(amount, currency), "currency": currency}
            if la is not None:
                item["left"] = _fmt(la, currency)
            if ra is not None:
                item["right"] = _fmt(ra, currency)
            if d.get("fields"):
                item["fields"] = d["fields"]
            if d.get("detail"):
                item["detail"] = d["detail"]
            if exc_id is not None:
                item["exception"] = int(exc_id)
            breaks_out.append(item)
    return {"matched": matched, "breaks": breaks_out, "rules": rules_out,
            "run": run_id if run_id is not None else (max((int(r[1]) for r in latest), default=None))}


# --------------------------------------------------------------------------- vocabulary


@payload
class ReconRun:
    rules: tuple[str, ...] = ()
    as_of: str | None = None
    entity: str | None = None
    files: dict[str, str] | None = None


@command("recon.run", ReconRun, roles=("controller", "admin"),
         summary="Run reconciliation rules; breaks open, update or auto-close recon_break exceptions")
def recon_run(uow: Any, cmd: ReconRun) -> dict[str, Any]:
    as_of = parse_date(cmd.as_of, field="as_of") if cmd.as_of else None
    return run_recon(uow, tuple(cmd.rules), as_of=as_of, entity=cmd.entity, files=dict(cmd.files or {}))


@payload
class ReconQuery:
    rule: str | None = None


@query("recon", ReconQuery, summary="Latest reconciliation outcome per rule: matched and breaks by category")
def recon(uow: Any, q: ReconQuery) -> dict[str, Any]:
    if q.rule is not None and q.rule not in {r.id for r in load_rules(uow)}:
        raise NotFoundError(f"unknown recon rule {q.rule!r}", field="rule", record=q.rule)
    return recon_results(uow, q.rule)


@payload
class ReconRulesQuery:
    pass


@query("recon_rules", ReconRulesQuery, summary="The reconciliation rules in force and whether each can run")
def recon_rules(uow: Any, q: ReconRulesQuery) -> dict[str, Any]:
    items = []
    for r in load_rules(uow):
        reason = availability(r)
        item: dict[str, Any] = {"rule": r.id, "description": r.description, "enabled": r.enabled,
                                "status": "available" if reason is None else "declared"}
        if reason:
            item["missing"] = reason
        if r.check:
            item["check"] = r.check
        else:
            assert r.left is not None and r.right is not None
            item.update({"left": r.left.label, "right": r.right.label, "key": list(r.key),
                         "compare": [{"field": c.field, "tolerance": str(c.tolerance)} if c.amount
                                     else {"field": c.field, "exact": True} for c in r.compare],
                         "timing_days": r.timing_days})
        items.append(item)
    return {"rules": items, "sides": sorted(_SIDES), "checks": sorted(_CHECKS)}
