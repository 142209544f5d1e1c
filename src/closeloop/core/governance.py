"""The system-of-record registry: which source owns each field of each entity, and the check every area uses.

The registry is data (DESIGN.md, STYLE.md #4), built in three layers:

1. the shipped ``config/system_of_record.yaml`` (versioned, validated on load);
2. an optional user override file, read over it field by field: the path in
   ``CLOSELOOP_SYSTEM_OF_RECORD`` or in the App's ``services.config["system_of_record_file"]``;
3. effective-dated changes made with the ``governance.set_owner`` command. Each change is a
   ``governance.owner_changed`` business event on the aggregate
   ``governance/system_of_record``: it carries who, when, why, the owners before and after
   and the first day it applies, so the registry's history is audited and replayable
   "as of" any date without a table of its own.

Every command carries a source (crm, billing, finance, migration; SCENARIOS.md). A
*trusted* source (``closeloop``: a person acting in closeloop's own CLI, UI or API; and
``system``: closeloop's own event handlers) may change any field; such changes are
audited with that source like any other. A record's creating command may set every
field; ownership governs changes to existing values only. With ``fill_empty`` a
non-owner may fill a field that is still empty, since that overwrites nothing.

Areas call :func:`check_ownership` with the changes a command would make. It returns the
allowed and the refused changes, opens one ``not_owner`` exception per refused field, and
raises :class:`NotOwnerError` when every change is refused (the exceptions then survive
the rollback through ``uow.keep_on_failure``). Entity types: customer, opportunity, quote,
contract, invoice, payment, journal.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from closeloop.core.errors import NotOwnerError, ValidationError
from closeloop.core.exception_queue import open_exception
from closeloop.core.registry import command, payload, query

ENTITY_TYPES: tuple[str, ...] = ("customer", "opportunity", "quote", "contract", "invoice", "payment", "journal")
AGGREGATE = ("governance", "system_of_record")
CHANGE_EVENT = "governance.owner_changed"
ENV_OVERRIDE = "CLOSELOOP_SYSTEM_OF_RECORD"
_IDENT = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True, slots=True)
class EntityRules:
    """Ownership of one entity type: the default owners and the owners of named fields."""

    entity_type: str
    default: tuple[str, ...]
    fields: Mapping[str, tuple[str, ...]]
    fill_empty: bool

    def owners(self, name: str) -> tuple[str, ...]:
        return self.fields.get(name, self.default)


@dataclass(frozen=True, slots=True)
class Registry:
    """The registry in force on a date.

    version: ``<shipped version>[+<override version>].<changes applied>``
    effective: the date the base configuration took effect
    sources: the sources commands may name; trusted_sources may change anything
    layers: where it came from (shipped file, override file, number of recorded changes)
    """

    version: str
    effective: str
    sources: tuple[str, ...]
    trusted_sources: tuple[str, ...]
    entities: Mapping[str, EntityRules]
    layers: tuple[str, ...] = field(default=())

    def rules(self, entity_type: str) -> EntityRules:
        rules = self.entities.get(entity_type)
        if rules is None:
            raise ValidationError(f"unknown entity type {entity_type!r} in the system-of-record registry;"
                                  f" known: {', '.join(sorted(self.entities))}", field="entity_type")
        return rules

    def owners(self, entity_type: str, name: str) -> tuple[str, ...]:
        return self.rules(entity_type).owners(name)

    def is_trusted(self, source: str) -> bool:
        return source in self.trusted_sources

    def check_source(self, source: str) -> None:
        if source not in self.sources and source not in self.trusted_sources:
            raise ValidationError(
                f"unknown source {source!r}: sources are {', '.join(self.sources)}"
                f" (trusted: {', '.join(self.trusted_sources)})", field="source", value=source)

    def may_change(self, entity_type: str, name: str, source: str, old: Any = None) -> bool:
        """May ``source`` change field ``name`` whose current value is ``old``?"""
        if source in self.trusted_sources:
            return True
        rules = self.rules(entity_type)
        if source in rules.owners(name):
            return True
        return rules.fill_empty and _empty(old)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "effective": self.effective, "sources": list(self.sources),
            "trusted_sources": list(self.trusted_sources), "layers": list(self.layers),
            "entities": {name: {"default": list(r.default), "fill_empty": r.fill_empty,
                                "fields": {f: list(o) for f, o in sorted(r.fields.items())}}
                         for name, r in sorted(self.entities.items())},
        }


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == []


# --------------------------------------------------------------------------- loading and validation


def _owners(value: Any, where: str, sources: set[str], errors: list[str]) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(s, str) for s in items):
        errors.append(f"{where}: owners must be a source or a non-empty list of sources")
        return ()
    unknown = [s for s in items if s not in sources]
    if unknown:
        errors.append(f"{where}: unknown source(s) {', '.join(unknown)}; sources are {', '.join(sorted(sources))}")
    return tuple(dict.fromkeys(items))


def validate_document(doc: Any, name: str, *, base: dict[str, Any] | None = None) -> list[str]:
    """Every problem of a registry document (shipped or override), all at once."""
    errors: list[str] = []
    if not isinstance(doc, dict):
        return [f"{name}: a registry file is a mapping with version and entities"]
    allowed = {"version", "effective", "sources", "trusted_sources", "entities"}
    for key in sorted(set(doc) - allowed):
        errors.append(f"{name}: unknown key {key!r}")
    if "version" not in doc or not isinstance(doc["version"], (int, str)):
        errors.append(f"{name}: version is required (a number or text)")
    if "effective" in doc:
        try:
            date.fromisoformat(str(doc["effective"]))
        except ValueError:
            errors.append(f"{name}: effective {doc['effective']!r} is not a date (YYYY-MM-DD)")
    sources = set(doc.get("sources") or (base or {}).get("sources") or ())
    if base is None and not sources:
        errors.append(f"{name}: sources is required")
    trusted = doc.get("trusted_sources", (base or {}).get("trusted_sources", []))
    if not isinstance(trusted, list) or not all(isinstance(s, str) for s in trusted):
        errors.append(f"{name}: trusted_sources must be a list of names")
        trusted = []
    all_sources = sources | set(trusted)
    entities = doc.get("entities") or {}
    if not isinstance(entities, dict):
        return [*errors, f"{name}: entities must be a mapping of entity type to rules"]
    known = set(ENTITY_TYPES) | set((base or {}).get("entities", {}))
    for etype, rules in entities.items():
        where = f"{name}: entities.{etype}"
        if base is not None and etype not in known:
            errors.append(f"{where}: unknown entity type; known: {', '.join(sorted(known))}")
            continue
        if not isinstance(rules, dict):
            errors.append(f"{where}: must be a mapping with default and fields")
            continue
        for key in sorted(set(rules) - {"default", "fields", "fill_empty"}):
            errors.append(f"{where}: unknown key {key!r}")
        if "default" in rules:
            _owners(rules["default"], f"{where}.default", all_sources, errors)
        elif base is None:
            errors.append(f"{where}: default owner is required")
        if "fill_empty" in rules and not isinstance(rules["fill_empty"], bool):
            errors.append(f"{where}.fill_empty: must be true or false")
        fields = rules.get("fields") or {}
        if not isinstance(fields, dict):
            errors.append(f"{where}.fields: must be a mapping of field to owners")
            continue
        for fname, owners in fields.items():
            if not isinstance(fname, str) or not _IDENT.fullmatch(fname):
                errors.append(f"{where}.fields: {fname!r} is not a field name")
                continue
            _owners(owners, f"{where}.fields.{fname}", all_sources, errors)
    if base is None:
        missing = [e for e in ENTITY_TYPES if e not in entities]
        if missing:
            errors.append(f"{name}: entity types without rules: {', '.join(missing)}")
    return errors


@lru_cache(maxsize=1)
def shipped_document() -> dict[str, Any]:
    text = (resources.files("closeloop") / "config" / "system_of_record.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    errors = validate_document(doc, "config/system_of_record.yaml")
    if errors:
        raise RuntimeError("invalid system-of-record registry: " + "; ".join(errors))
    return doc  # type: ignore[no-any-return]


@lru_cache(maxsize=16)
def _override_document(path: str, mtime: float) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValidationError(f"system-of-record override {path}: cannot be read: {exc}", field="file",
                              record=path) from None
    errors = validate_document(doc, path, base=shipped_document())
    if errors:
        raise ValidationError(f"system-of-record override {path}: " + "; ".join(errors), field="file",
                              record=path, errors=errors)
    return doc  # type: ignore[no-any-return]


def override_path(services: Any = None) -> str | None:
    config = getattr(services, "config", None) or {}
    return config.get("system_of_record_file") or os.environ.get(ENV_OVERRIDE) or None


def override_document(path: str) -> dict[str, Any]:
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        raise ValidationError(f"system-of-record override file {path} does not exist (set by {ENV_OVERRIDE})",
                              field="file", record=path) from None
    return _override_document(path, mtime)


def _merge(base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    out = json.loads(json.dumps(base, default=str))
    if not override:
        return out
    for key in ("sources", "trusted_sources", "effective"):
        if key in override:
            out[key] = override[key]
    for etype, rules in (override.get("entities") or {}).items():
        target = out["entities"].setdefault(etype, {"default": rules.get("default"), "fields": {}})
        if "default" in rules:
            target["default"] = rules["default"]
        if "fill_empty" in rules:
            target["fill_empty"] = rules["fill_empty"]
        target.setdefault("fields", {}).update(rules.get("fields") or {})
    return out


def _build(doc: dict[str, Any], version: str, layers: tuple[str, ...]) -> Registry:
    def tup(v: Any) -> tuple[str, ...]:
        return (v,) if isinstance(v, str) else tuple(v)

    entities = {
        etype: EntityRules(etype, tup(rules["default"]),
                           MappingProxyType({f: tup(o) for f, o in (rules.get("fields") or {}).items()}),
                           bool(rules.get("fill_empty", False)))
        for etype, rules in doc["entities"].items()
    }
    return Registry(version=version, effective=str(doc.get("effective", "")), sources=tuple(doc["sources"]),
                    trusted_sources=tuple(doc.get("trusted_sources") or ()),
                    entities=MappingProxyType(entities), layers=layers)


def recorded_changes(uow: Any) -> list[dict[str, Any]]:
    """Every ``governance.set_owner`` change in the order it was made (the audit trail)."""
    key = ("governance", "changes")
    cached = uow.cache.get(key)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    rows = uow.all(
        "SELECT id, payload, recorded_at, actor, source FROM event WHERE aggregate_type = ? AND aggregate_id = ?"
        " AND type = ? ORDER BY id", (AGGREGATE[0], AGGREGATE[1], CHANGE_EVENT))
    out = [{"change": n, "event": int(r[0]), **json.loads(r[1]), "at": r[2], "actor": r[3], "source": r[4]}
           for n, r in enumerate(rows, 1)]
    uow.cache[key] = out
    return out


def registry(uow: Any, as_of: date | str | None = None) -> Registry:
    """The registry in force on ``as_of`` (default: the unit of work's business date)."""
    day = as_of.isoformat() if isinstance(as_of, date) else (as_of or uow.today().isoformat())
    key = ("governance", "registry", day)
    found = uow.cache.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return]
    base = shipped_document()
    layers = ["config/system_of_record.yaml"]
    version = str(base["version"])
    path = override_path(getattr(uow, "services", None))
    override = None
    if path:
        override = override_document(path)
        layers.append(path)
        version += f"+{override['version']}"
    doc = _merge(base, override)
    applied = 0
    for change in recorded_changes(uow):
        if change["effective"] > day:
            continue
        rules = doc["entities"].setdefault(change["entity_type"], {"default": change["owners"], "fields": {}})
        if change["field"] == "*":
            rules["default"] = change["owners"]
        else:
            rules.setdefault("fields", {})[change["field"]] = change["owners"]
        applied += 1
    if applied:
        layers.append(f"{applied} recorded change(s)")
    result = _build(doc, f"{version}.{applied}", tuple(layers))
    uow.cache[key] = result
    return result


# --------------------------------------------------------------------------- the check


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def refusal_message(entity_type: str, record_id: str, name: str, owners: tuple[str, ...], source: str,
                    old: Any, new: Any) -> str:
    return (f"{entity_type} {record_id}: field {name} is owned by {' or '.join(owners)}; source {source}"
            f" may not change it ({json.dumps(old, default=str)} -> {json.dumps(new, default=str)})")


def decide(reg: Registry, entity_type: str, changes: Mapping[str, tuple[Any, Any]], source: str
           ) -> tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]]:
    """Split changes {field: (old, new)} into (allowed, refused) without side effects."""
    allowed: dict[str, tuple[Any, Any]] = {}
    refused: dict[str, tuple[Any, Any]] = {}
    for name, (old, new) in changes.items():
        (allowed if reg.may_change(entity_type, name, source, old) else refused)[name] = (old, new)
    return allowed, refused


def open_refusals(uow: Any, reg: Registry, entity_type: str, record_id: str,
                  refused: Mapping[str, tuple[Any, Any]], source: str, *, entity: str | None = None) -> list[int]:
    """One ``not_owner`` exception per refused field (re-detection updates the open one)."""
    ids = []
    for name, (old, new) in refused.items():
        owners = reg.owners(entity_type, name)
        ids.append(open_exception(
            uow, "not_owner", record_type=entity_type, record_id=str(record_id), entity=entity,
            message=refusal_message(entity_type, str(record_id), name, owners, source, old, new),
            details={"field": name, "owners": list(owners), "source": source, "old": old, "new": new,
                     "registry_version": reg.version},
            dedup_key=f"not_owner:{entity_type}:{record_id}:{name}:{source}:{_digest(new)}",
        ))
    return ids


def check_ownership(uow: Any, entity_type: str, record_id: str, changes: Mapping[str, tuple[Any, Any]],
                    source: str | None = None, *, entity: str | None = None, raise_when_all_refused: bool = True,
                    as_of: date | str | None = None
                    ) -> tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]]:
    """Which of ``changes`` ({field: (old, new)}) may ``source`` make to an existing record?

    Returns (allowed, refused). Each refused field becomes a ``not_owner`` exception. When
    every change is refused (and ``raise_when_all_refused``), raises :class:`NotOwnerError`
    naming the fields and their owners; the exceptions are then written through
    ``uow.keep_on_failure`` so they survive the rollback of the refused command.
    """
    source = source or uow.source
    reg = registry(uow, as_of)
    reg.rules(entity_type)
    reg.check_source(source)
    allowed, refused = decide(reg, entity_type, changes, source)
    if not refused:
        return allowed, refused
    if raise_when_all_refused and not allowed:
        refused_copy = dict(refused)
        uow.keep_on_failure(lambda u: open_refusals(u, reg, entity_type, record_id, refused_copy, source,
                                                    entity=entity))
        parts = [f"{name} (owned by {' or '.join(reg.owners(entity_type, name))})" for name in refused]
        first = next(iter(refused))
        raise NotOwnerError(
            f"{entity_type} {record_id}: source {source} does not own {', '.join(parts)}; nothing was changed",
            field=first, record=str(record_id), source=source,
            refused=[{"field": n, "owners": list(reg.owners(entity_type, n)), "old": o, "new": v}
                     for n, (o, v) in refused.items()])
    open_refusals(uow, reg, entity_type, record_id, refused, source, entity=entity)
    return allowed, refused


# --------------------------------------------------------------------------- commands and queries


@payload
class GovernanceSetOwner:
    entity_type: str
    field: str  # a field name, or "*" for the entity's default owner
    owners: list[str]
    reason: str
    effective: str | None = None  # first day the change applies (default: today)


@command("governance.set_owner", GovernanceSetOwner, roles=("admin",),
         summary="Change which source owns a field (effective-dated, audited)")
def governance_set_owner(uow: Any, cmd: GovernanceSetOwner) -> dict[str, Any]:
    if not cmd.reason.strip():
        raise ValidationError("a reason is required to change the system-of-record registry", field="reason")
    if cmd.field != "*" and not _IDENT.fullmatch(cmd.field):
        raise ValidationError(f"{cmd.field!r} is not a field name (or * for the default owner)", field="field")
    effective = cmd.effective or uow.today().isoformat()
    try:
        date.fromisoformat(effective)
    except ValueError:
        raise ValidationError(f"effective {effective!r} is not a date (YYYY-MM-DD)", field="effective") from None
    reg = registry(uow, effective)
    rules = reg.rules(cmd.entity_type)
    errors: list[str] = []
    owners = _owners(cmd.owners, "owners", set(reg.sources) | set(reg.trusted_sources), errors)
    if errors:
        raise ValidationError(errors[0], field="owners")
    previous = list(rules.default if cmd.field == "*" else rules.owners(cmd.field))
    change = {"entity_type": cmd.entity_type, "field": cmd.field, "owners": list(owners), "previous": previous,
              "effective": effective, "reason": cmd.reason}
    event_id = uow.emit(CHANGE_EVENT, AGGREGATE[0], AGGREGATE[1], change)
    uow.cache.pop(("governance", "changes"), None)
    for key in [k for k in uow.cache if isinstance(k, tuple) and k[:2] == ("governance", "registry")]:
        uow.cache.pop(key, None)
    return {**change, "event": event_id, "version": registry(uow, effective).version}


@payload
class SystemOfRecordQuery:
    entity_type: str | None = None
    as_of: str | None = None
    history: bool = False


@query("system_of_record", SystemOfRecordQuery, summary="The system-of-record registry in force, and its history")
def system_of_record(uow: Any, q: SystemOfRecordQuery) -> dict[str, Any]:
    if q.as_of is not None:
        try:
            date.fromisoformat(q.as_of)
        except ValueError:
            raise ValidationError(f"as_of {q.as_of!r} is not a date (YYYY-MM-DD)", field="as_of") from None
    reg = registry(uow, q.as_of)
    out = reg.to_dict()
    out["as_of"] = q.as_of or uow.today().isoformat()
    if q.entity_type is not None:
        reg.rules(q.entity_type)
        out["entities"] = {q.entity_type: out["entities"][q.entity_type]}
    if q.history:
        out["changes"] = [c for c in recorded_changes(uow)
                          if q.entity_type is None or c["entity_type"] == q.entity_type]
    return out
