"""Rollout waves: scope, readiness gates from live measures, go/no-go, and the live-scope guard.

A wave plan (YAML, loaded with ``waves.plan``) lists waves in order, each with a scope
(entities × product families × capabilities) and readiness gates with thresholds::

    waves:
      - wave: W1
        name: US billing
        scope: {entities: [US01], capabilities: [subscription_billing]}
        gates:
          - {measure: data_quality_score, min: "0.90"}
          - {measure: open_exceptions, kind: tax_undetermined, max: 0}
          - {measure: scenarios_passing}
          - {measure: parallel_run_difference, max: "0.00"}
    capabilities:                 # which commands belong to which capability
      usage_billing: [usage.record]
      revenue_automation: [revrec.run]

Without a plan everything is live. With one, a command whose entity, product family or
capability belongs only to waves that are not live yet is refused with ``not_live``,
naming the first wave that will bring it. ``wave.golive`` makes a wave live when every
gate passes (its go/no-go); ``waves_status`` shows each gate's live measure.
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from closeloop.core import registry
from closeloop.core.errors import CloseloopError, ConflictError, NotFoundError, NotLiveError, ValidationError
from closeloop.core.guards import command_guard
from closeloop.core.registry import command, payload, query

MEASURES = ("data_quality_score", "open_exceptions", "scenarios_passing", "parallel_run_difference")
# Commands that only manage the rollout itself are never gated.
UNGATED = {"waves.plan", "wave.golive", "waves.record_scenarios", "variation.register", "variation.approve",
           "variation.reject", "variations.review", "entity.create"}


def parse_plan(doc: Any) -> tuple[dict[str, Any] | None, list[str]]:
    problems: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("waves"), list) or not doc["waves"]:
        return None, ["a wave plan is a mapping with a non-empty list 'waves'"]
    seen = set()
    for i, wave in enumerate(doc["waves"]):
        where = f"waves[{i}]"
        if not isinstance(wave, dict) or not wave.get("wave"):
            problems.append(f"{where}: needs a 'wave' id")
            continue
        if wave["wave"] in seen:
            problems.append(f"{where}: wave {wave['wave']} is listed twice")
        seen.add(wave["wave"])
        scope = wave.get("scope") or {}
        if not isinstance(scope, dict) or set(scope) - {"entities", "product_families", "capabilities"}:
            problems.append(f"{where}.scope: only entities, product_families and capabilities")
        for j, gate in enumerate(wave.get("gates") or []):
            if not isinstance(gate, dict) or gate.get("measure") not in MEASURES:
                problems.append(f"{where}.gates[{j}]: measure must be one of {', '.join(MEASURES)}")
                continue
            for bound in ("min", "max"):
                if bound in gate:
                    try:
                        Decimal(str(gate[bound]))
                    except InvalidOperation:
                        problems.append(f"{where}.gates[{j}].{bound}: not a number")
    caps = doc.get("capabilities") or {}
    if not isinstance(caps, dict):
        problems.append("capabilities: map capability names to lists of commands")
    else:
        ops = registry.operations()
        for cap, commands in caps.items():
            for name in commands or []:
                if name not in ops:
                    problems.append(f"capabilities.{cap}: unknown command {name}")
    return (None, problems) if problems else (doc, [])


def active_plan(uow: Any) -> dict[str, Any] | None:
    def load() -> dict[str, Any] | None:
        row = uow.one("SELECT body FROM rollout_plan ORDER BY id DESC LIMIT 1")
        return yaml.safe_load(row[0]) if row else None

    return uow.cached("rollout", "plan", load)  # type: ignore[no-any-return]


def live_waves(uow: Any) -> set[str]:
    return {w for w, in uow.all("SELECT wave FROM wave_state WHERE status = 'live'")}


@payload
class WavesPlan:
    body: str


@command("waves.plan", WavesPlan, roles=("implementation", "admin"), summary="Load a rollout wave plan (YAML)")
def waves_plan(uow: Any, cmd: WavesPlan) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(cmd.body)
    except yaml.YAMLError as exc:
        raise ValidationError(f"the wave plan is not valid YAML: {exc}", field="body") from None
    plan, problems = parse_plan(doc)
    if plan is None:
        raise ValidationError("wave plan refused: " + "; ".join(problems), field="body", errors=problems)
    uow.execute("INSERT INTO rollout_plan (body, loaded_at, loaded_by) VALUES (?,?,?)",
                (cmd.body, uow.now(), uow.actor))
    for wave in plan["waves"]:
        uow.execute("INSERT INTO wave_state (wave, status) VALUES (?, 'planned') ON CONFLICT (wave) DO NOTHING",
                    (wave["wave"],))
    uow.invalidate("rollout", "plan")
    uow.emit("waves.planned", "rollout", "plan", {"waves": [w["wave"] for w in plan["waves"]]})
    return {"waves": [w["wave"] for w in plan["waves"]]}


# ----------------------------------------------------------------------------- measures


def _measure(uow: Any, gate: dict[str, Any], scope: dict[str, Any]) -> tuple[Any, bool, str]:
    measure = gate["measure"]
    if measure == "data_quality_score":
        found = _query(uow, "kpi", {"name": "data_quality_score"})
        value = None if found is None else found.get("value")
        threshold = Decimal(str(gate.get("min", "0")))
        passed = value is not None and Decimal(str(value)) >= threshold
        return value, passed, f"data-quality score {value} (minimum {threshold})"
    if measure == "open_exceptions":
        sql = "SELECT COUNT(*) FROM exception_item WHERE status = 'open'"
        params: list[Any] = []
        if gate.get("kind"):
            sql += " AND kind = ?"
            params.append(gate["kind"])
        entities = scope.get("entities") or []
        if entities:
            sql += f" AND (entity IS NULL OR entity IN ({','.join('?' * len(entities))}))"
            params.extend(entities)
        count = int(uow.scalar(sql, params))
        limit = int(gate.get("max", 0))
        return count, count <= limit, f"{count} open {gate.get('kind') or ''} exception(s) (maximum {limit})".replace(
            "  ", " ")
    if measure == "scenarios_passing":
        row = uow.one("SELECT passed, failed, at FROM scenario_suite_run ORDER BY id DESC LIMIT 1")
        if row is None:
            return None, False, "the scenario suite has not been run (closeloop waves check --scenarios DIR)"
        passed, failed, at = int(row[0]), int(row[1]), row[2]
        return {"passed": passed, "failed": failed}, failed == 0 and passed > 0, \
            f"{passed} passed, {failed} failed at {at}"
    # parallel_run_difference
    found = _query(uow, "parallel_run", {"entity": (scope.get("entities") or [None])[0]})
    if found is None or not found.get("runs"):
        return None, False, "no parallel run recorded"
    latest = found["runs"][-1]
    difference = Decimal(str(latest.get("difference", "0")))
    limit = Decimal(str(gate.get("max", "0")))
    return str(difference), abs(difference) <= limit, \
        f"parallel run {latest.get('period')}: difference {difference} (maximum {limit})"


def _query(uow: Any, name: str, where: dict[str, Any]) -> dict[str, Any] | None:
    try:
        op = registry.get(name, "query")
    except CloseloopError:
        return None
    return op.fn(uow, op.parse({k: v for k, v in where.items() if v is not None}))


def wave_readiness(uow: Any, wave: dict[str, Any]) -> dict[str, Any]:
    gates = []
    for gate in wave.get("gates") or []:
        value, passed, evidence = _measure(uow, gate, wave.get("scope") or {})
        gates.append({"measure": gate["measure"], **{k: v for k, v in gate.items() if k != "measure"},
                      "value": value, "passed": passed, "evidence": evidence})
    return {"wave": wave["wave"], "name": wave.get("name"), "scope": wave.get("scope") or {},
            "gates": gates, "go": all(g["passed"] for g in gates)}


@payload
class WavesStatusQuery:
    wave: str | None = None


@query("waves_status", WavesStatusQuery, summary="Each wave's readiness gates (live measure vs threshold), go/no-go")
def waves_status(uow: Any, q: WavesStatusQuery) -> dict[str, Any]:
    plan = active_plan(uow)
    if plan is None:
        return {"planned": False, "waves": []}
    live = live_waves(uow)
    out = []
    for wave in plan["waves"]:
        if q.wave and wave["wave"] != q.wave:
            continue
        item = wave_readiness(uow, wave)
        item["status"] = "live" if wave["wave"] in live else "planned"
        out.append(item)
    if q.wave and not out:
        raise NotFoundError(f"no wave {q.wave} in the plan", field="wave")
    return {"planned": True, "waves": out}


@payload
class WaveGoLive:
    wave: str


@command("wave.golive", WaveGoLive, roles=("implementation", "admin"),
         summary="Take a wave live when every readiness gate passes")
def wave_golive(uow: Any, cmd: WaveGoLive) -> dict[str, Any]:
    plan = active_plan(uow)
    wave = next((w for w in (plan or {}).get("waves", []) if w["wave"] == cmd.wave), None)
    if wave is None:
        raise NotFoundError(f"no wave {cmd.wave} in the plan", field="wave")
    readiness = wave_readiness(uow, wave)
    if not readiness["go"]:
        failing = [f"{g['measure']}: {g['evidence']}" for g in readiness["gates"] if not g["passed"]]
        raise ConflictError(f"wave {cmd.wave} is not ready: " + "; ".join(failing), field="wave", gates=failing)
    uow.execute("UPDATE wave_state SET status = 'live', live_on = ?, decided_by = ?, evidence = ? WHERE wave = ?",
                (uow.today().isoformat(), uow.actor, json.dumps(readiness["gates"], default=str), cmd.wave))
    uow.emit("wave.live", "rollout", cmd.wave, {"wave": cmd.wave})
    return {"wave": cmd.wave, "status": "live", "gates": readiness["gates"]}


@payload
class RecordScenarios:
    passed: int
    failed: int
    failures: tuple[str, ...] = ()


@command("waves.record_scenarios", RecordScenarios, roles=("implementation", "admin"),
         summary="Record a scenario-suite result for the readiness gate (closeloop waves check does it)")
def record_scenarios(uow: Any, cmd: RecordScenarios) -> dict[str, Any]:
    for name, value in (("passed", cmd.passed), ("failed", cmd.failed)):
        if not 0 <= value <= 1_000_000:
            raise ValidationError(f"{name} must be a count between 0 and 1,000,000 (got {value})", field=name)
    uow.execute("INSERT INTO scenario_suite_run (at, passed, failed, failures) VALUES (?,?,?,?)",
                (uow.now(), cmd.passed, cmd.failed, json.dumps(list(cmd.failures))))
    return {"passed": cmd.passed, "failed": cmd.failed}


# ----------------------------------------------------------------------------- the live-scope guard


@command_guard
def live_scope_guard(uow: Any, op: Any, cmd: Any) -> None:
    if op.name in UNGATED:
        return
    plan = active_plan(uow)
    if plan is None:
        return
    live = live_waves(uow)
    fields = {f.name: getattr(cmd, f.name) for f in dataclasses.fields(cmd)}
    capability = next((cap for cap, names in (plan.get("capabilities") or {}).items() if op.name in (names or [])),
                      None)
    wanted = {"entities": fields.get("entity"), "capabilities": capability,
              "product_families": fields.get("product_family") or fields.get("family")}
    for dimension, value in wanted.items():
        if not value:
            continue
        waves_with = [w for w in plan["waves"] if value in ((w.get("scope") or {}).get(dimension) or [])]
        if not waves_with:
            continue  # not part of the rollout programme
        if any(w["wave"] in live for w in waves_with):
            continue
        first = waves_with[0]
        raise NotLiveError(
            f"{op.name}: {dimension[:-1] if dimension != 'entities' else 'entity'} {value} is not live yet;"
            f" wave {first['wave']}{' (' + first['name'] + ')' if first.get('name') else ''} will bring it",
            field=dimension, wave=first["wave"], value=value)
