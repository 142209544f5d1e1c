"""Lineage: explain any record back to its sources (and forward to what it caused).

Every event carries ``command_id`` (the audited command that emitted it, when
a command did), ``causation_id`` (the event whose handler emitted it) and
``correlation_id`` (the business flow). The walker starts from a record,
asks the record kind's **explainer** which events (and commands, and other
records) produced it, then follows ``causation_id`` from event to event and
``command_id`` to the audit log, until it reaches the commands that started
the flow and the source records they carried. Each step is
``{kind, id, event, at, actor}`` (plus ``source``, ``event_id``,
``command_id``, ``depth`` when known).

Explainers (``@explainer("invoice")``) are registered per record kind by the
area that owns it: ``fn(uow, record: dict) -> Origin`` (steps it can state
itself, events, commands and further records to follow). A kind without an
explainer falls back to the events whose aggregate is that record
(``aggregate_type = kind``), so any area that emits events about its records
gets lineage for free. ``@command_explainer("customer.import")`` lets an area
name the source records a command carried (e.g. a CRM export row).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from closeloop.core import registry
from closeloop.core.errors import CloseloopError, NotFoundError, ValidationError
from closeloop.core.registry import payload, query

QUALIFIERS = frozenset({"line", "seq", "customer"})


@dataclass
class Origin:
    """What an explainer knows about a record: steps it states, and where to continue."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    commands: list[int] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


_EXPLAINERS: dict[str, Callable[[Any, dict[str, Any]], Origin]] = {}
_COMMAND_EXPLAINERS: dict[str, Callable[[Any, dict[str, Any], dict[str, Any]], list[dict[str, Any]]]] = {}


def explainer(kind: str) -> Callable[[Callable[[Any, dict[str, Any]], Origin]], Callable[[Any, dict[str, Any]], Origin]]:
    def register(fn: Callable[[Any, dict[str, Any]], Origin]) -> Callable[[Any, dict[str, Any]], Origin]:
        _EXPLAINERS[kind] = fn
        return fn

    return register


def command_explainer(name: str) -> Callable[[Any], Any]:
    """``fn(uow, audit_row, payload) -> [source step dicts]`` for the source records a command carried."""

    def register(fn: Callable[[Any, dict[str, Any], dict[str, Any]], list[dict[str, Any]]]) -> Any:
        _COMMAND_EXPLAINERS[name] = fn
        return fn

    return register


def record_kind(record: dict[str, Any]) -> tuple[str, Any]:
    if not isinstance(record, dict) or not record:
        raise ValidationError("record must name a kind and id, e.g. {journal: JE-US01-0000001}", field="record")
    for kind, value in record.items():
        if kind not in QUALIFIERS or len(record) == 1:
            return kind, value
    kind, value = next(iter(record.items()))
    return kind, value


# --------------------------------------------------------------------------- rows -> steps

EVENT_COLS = ("id, type, aggregate_type, aggregate_id, recorded_at, actor, source, command_id, causation_id,"
              " correlation_id, status")


def _event_row(uow: Any, event_id: int) -> Any:
    return uow.one(f"SELECT {EVENT_COLS} FROM event WHERE id = ?", (event_id,))


def _event_step(row: Any, depth: int) -> dict[str, Any]:
    ev_id, type_, agg_type, agg_id, at, actor, source, command_id, causation_id, correlation_id, status = row
    step = {"kind": agg_type, "id": agg_id, "event": type_, "at": at, "actor": actor, "source": source,
            "event_id": int(ev_id), "depth": depth, "status": status}
    if command_id is not None:
        step["command_id"] = int(command_id)
    if causation_id is not None:
        step["caused_by"] = int(causation_id)
    if correlation_id:
        step["correlation_id"] = correlation_id
    return step


def _command_step(uow: Any, audit_id: int, depth: int) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    row = uow.one("SELECT id, at, actor, source, command, payload, outcome FROM audit_log WHERE id = ?", (audit_id,))
    if row is None:
        return None
    audit, at, actor, source, name, text, outcome = row
    step = {"kind": "command", "id": str(audit), "event": name, "at": at, "actor": actor, "source": source,
            "depth": depth, "outcome": outcome}
    extra: list[dict[str, Any]] = []
    try:
        data = json.loads(text)
    except ValueError:
        data = {}
    fn = _COMMAND_EXPLAINERS.get(name)
    if fn is not None:
        extra = [dict(s, depth=depth + 1) for s in fn(uow, {"id": audit, "command": name, "source": source}, data)]
    elif isinstance(data, dict) and data.get("external_id") and source not in (None, "closeloop", "system"):
        extra = [{"kind": "source_record", "id": f"{source}:{data['external_id']}", "event": None, "at": at,
                  "actor": actor, "source": source, "depth": depth + 1}]
    return step, extra


# --------------------------------------------------------------------------- explainers shipped today


def _aggregate_events(uow: Any, kind: str, ident: str) -> list[int]:
    return [int(r[0]) for r in uow.all("SELECT id FROM event WHERE aggregate_type = ? AND aggregate_id = ?"
                                       " ORDER BY id", (kind, str(ident)))]


def generic_origin(uow: Any, kind: str, ident: Any) -> Origin | None:
    events = _aggregate_events(uow, kind, str(ident))
    return Origin(events=events) if events else None


@explainer("event")
def explain_event(uow: Any, record: dict[str, Any]) -> Origin:
    try:
        event_id = int(record["event"])
    except (TypeError, ValueError):
        raise ValidationError("event must be an event id", field="record.event") from None
    if _event_row(uow, event_id) is None:
        raise NotFoundError(f"event {event_id} does not exist", field="record", record=str(event_id))
    return Origin(events=[event_id])


@explainer("command")
def explain_command(uow: Any, record: dict[str, Any]) -> Origin:
    return Origin(commands=[int(record["command"])])


@explainer("journal")
def explain_journal(uow: Any, record: dict[str, Any]) -> Origin:
    op = registry.get("journal", "query")
    entry = op.fn(uow, op.parse({"journal": str(record["journal"])}))
    origin = Origin(events=_aggregate_events(uow, "journal", entry["number"]))
    if entry.get("reference") and entry["reference"] != entry["number"]:
        origin.events = sorted(set(origin.events) | set(_aggregate_events(uow, "journal", entry["reference"])))
    if entry.get("reverses"):
        origin.records.append({"journal": _number_of(uow, int(entry["reverses"]), entry["entity"])})
    line = record.get("line")
    step = {"kind": "journal", "id": entry["number"], "event": "posted", "at": entry["posted_at"],
            "actor": entry["actor"], "source": entry["source"]}
    if line is not None:
        lines = entry["lines"]
        if not 1 <= int(line) <= len(lines):
            raise NotFoundError(f"journal {entry['number']} has no line {line}", field="record.line")
        chosen = lines[int(line) - 1]
        step = {"kind": "journal_line", "id": f"{entry['number']}#{line}", "event": "posted",
                "at": entry["posted_at"], "actor": entry["actor"], "source": entry["source"],
                "detail": f"{chosen['account']} {chosen['amount']}"}
    if entry.get("approved_by"):
        step["approved_by"] = entry["approved_by"]
    origin.steps.append(step)
    return origin


def _number_of(uow: Any, entry_id: int, entity: str) -> str:
    seq = uow.scalar("SELECT seq FROM journal_entry WHERE id = ?", (entry_id,))
    return f"JE-{entity}-{int(seq):07d}" if seq is not None else str(entry_id)


@explainer("exception")
def explain_exception(uow: Any, record: dict[str, Any]) -> Origin:
    row = uow.one("SELECT id, kind, record_type, record_id, opened_at, status, details FROM exception_item"
                  " WHERE id = ?", (int(record["exception"]),))
    if row is None:
        raise NotFoundError(f"exception {record['exception']} does not exist", field="record")
    exc_id, kind, rtype, rid, opened_at, status, details = row
    opener = uow.one("SELECT actor FROM exception_action WHERE exception_id = ? ORDER BY id LIMIT 1", (exc_id,))
    origin = Origin(steps=[{"kind": "exception", "id": str(exc_id), "event": f"{kind} opened", "at": opened_at,
                            "actor": opener[0] if opener else None, "status": status}],
                    events=_aggregate_events(uow, "exception", str(exc_id)))
    origin.records.append({rtype: int(rid) if rtype == "event" and str(rid).isdigit() else rid})
    return origin


@explainer("recon_break")
def explain_recon_break(uow: Any, record: dict[str, Any]) -> Origin:
    ident = str(record["recon_break"])
    row = uow.one("SELECT id, details, opened_at FROM exception_item WHERE record_type = 'recon_break'"
                  " AND record_id = ? ORDER BY id DESC LIMIT 1", (ident,))
    if row is None:
        raise NotFoundError(f"no reconciliation break {ident!r}", field="record", record=ident)
    details = json.loads(row[1] or "{}")
    origin = Origin(steps=[{"kind": "recon_break", "id": ident, "event": details.get("category"), "at": row[2],
                            "actor": None, "exception": int(row[0]), "rule": details.get("rule")}])
    if details.get("run") is not None:
        origin.records.append({"recon_run": str(details["run"])})
    for side in ("left_record", "right_record"):
        link = details.get(side)
        if isinstance(link, dict) and link and next(iter(link)) in _EXPLAINERS:
            origin.records.append(link)
        elif isinstance(link, dict) and link:
            origin.steps.append({"kind": next(iter(link)), "id": str(next(iter(link.values()))), "event": None,
                                 "at": None, "actor": None, "side": side[:-7]})
    return origin


# --------------------------------------------------------------------------- the walk


def explain(uow: Any, record: dict[str, Any], *, direction: str = "back", max_steps: int = 200) -> dict[str, Any]:
    if direction not in ("back", "forward", "both"):
        raise ValidationError("direction must be back, forward or both", field="direction")
    kind, ident = record_kind(record)
    fn = _EXPLAINERS.get(kind)
    origin = fn(uow, record) if fn is not None else generic_origin(uow, kind, ident)
    if origin is None:
        raise NotFoundError(f"nothing is known about {kind} {ident}: no explainer for {kind!r} and no event"
                            f" concerns it; explainable kinds: {', '.join(sorted(_EXPLAINERS))}",
                            field="record", record=f"{kind}:{ident}")
    steps: list[dict[str, Any]] = []
    seen_events: set[int] = set()
    seen_commands: set[int] = set()
    seen_records: set[str] = {json.dumps(record, sort_keys=True, default=str)}
    start_events = list(origin.events)
    if direction in ("back", "both"):
        _walk_back(uow, origin, 0, steps, seen_events, seen_commands, seen_records, max_steps)
    else:
        for s in origin.steps:
            steps.append(dict(s, depth=0))
    out: dict[str, Any] = {"record": record, "steps": steps}
    if direction in ("forward", "both"):
        out["forward"] = _walk_forward(uow, start_events, max_steps)
    # The flow's starting points: the commands reached (nothing caused them but a person or a system
    # calling closeloop) and the source records they carried.
    out["sources"] = [{k: s.get(k) for k in ("kind", "id", "event", "at", "actor", "source")}
                      for s in steps if s["kind"] in ("command", "source_record")]
    out["truncated"] = len(steps) >= max_steps
    return out


def _walk_back(uow: Any, origin: Origin, depth: int, steps: list[dict[str, Any]], seen_events: set[int],
               seen_commands: set[int], seen_records: set[str], max_steps: int) -> None:
    queue: list[tuple[str, Any, int]] = []
    for s in origin.steps:
        steps.append(dict(s, depth=depth))
    queue += [("event", e, depth) for e in origin.events]
    queue += [("command", c, depth) for c in origin.commands]
    queue += [("record", r, depth + 1) for r in origin.records]
    while queue and len(steps) < max_steps:
        what, item, d = queue.pop(0)
        if what == "event":
            if item in seen_events:
                continue
            seen_events.add(item)
            row = _event_row(uow, int(item))
            if row is None:
                continue
            steps.append(_event_step(row, d))
            if row[8] is not None:
                queue.append(("event", int(row[8]), d + 1))
            if row[7] is not None:
                queue.append(("command", int(row[7]), d + 1))
        elif what == "command":
            if item in seen_commands:
                continue
            seen_commands.add(item)
            found = _command_step(uow, int(item), d)
            if found is not None:
                steps.append(found[0])
                steps.extend(found[1])
        else:
            key = json.dumps(item, sort_keys=True, default=str)
            if key in seen_records:
                continue
            seen_records.add(key)
            kind, ident = record_kind(item)
            fn = _EXPLAINERS.get(kind)
            try:
                sub = fn(uow, item) if fn is not None else generic_origin(uow, kind, ident)
            except CloseloopError:
                sub = None
            if sub is None:
                steps.append({"kind": kind, "id": str(ident), "event": None, "at": None, "actor": None, "depth": d})
                continue
            steps.extend(dict(s, depth=d) for s in sub.steps)
            queue += [("event", e, d) for e in sub.events]
            queue += [("command", c, d) for c in sub.commands]
            queue += [("record", r, d + 1) for r in sub.records]


def _walk_forward(uow: Any, events: list[int], max_steps: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    frontier = list(events)
    seen = set(events)
    depth = 1
    while frontier and len(out) < max_steps:
        marks = ",".join("?" * len(frontier))
        rows = uow.all(f"SELECT {EVENT_COLS} FROM event WHERE causation_id IN ({marks}) ORDER BY id", frontier)
        frontier = []
        for row in rows:
            if int(row[0]) in seen:
                continue
            seen.add(int(row[0]))
            out.append(_event_step(row, depth))
            frontier.append(int(row[0]))
        depth += 1
    return out[:max_steps]


@payload
class LineageQuery:
    record: dict[str, Any]
    direction: str = "back"
    max_steps: int = 200


@query("lineage", LineageQuery, summary="Explain a record back to its sources (steps: kind, id, event, at, actor)")
def lineage(uow: Any, q: LineageQuery) -> dict[str, Any]:
    return explain(uow, q.record, direction=q.direction, max_steps=max(1, min(q.max_steps, 5000)))
