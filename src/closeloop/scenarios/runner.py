"""The scenario runner: YAML files that drive closeloop through its command vocabulary.

The format is SCENARIOS.md's: ``scenario``, optional ``description``,
``defaults`` and ``users``, and ``steps``; each step may move the clock
(``at``), run a command (``do`` + ``with``, optionally ``error``) or check a
query (``expect`` + ``where`` + ``equals``, optionally ``error``), and may
name the acting user (``as``). Each scenario runs on a fresh database.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from closeloop.app import App
from closeloop.core import registry
from closeloop.core.clock import ScenarioClock
from closeloop.core.errors import CloseloopError, ValidationError
from closeloop.core.periods import parse_date
from closeloop.scenarios.fresh import fresh_database

STEP_KEYS = {"at", "do", "with", "expect", "where", "equals", "error", "as", "note"}
TOP_KEYS = {"scenario", "description", "defaults", "steps", "users", "source", "cites", "tags"}


@dataclass
class Failure:
    step: int
    expected: Any
    actual: Any
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "expected": self.expected, "actual": self.actual, "message": self.message}


@dataclass
class ScenarioResult:
    name: str
    file: str
    passed: bool
    steps: int
    failures: list[Failure] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "passed": self.passed, "steps": self.steps,
                "failures": [f.to_dict() for f in self.failures]}


def _plain(value: Any) -> Any:
    """YAML dates become ISO strings, so a scenario may write them quoted or not."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def load_file(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValidationError(f"{path}: not valid YAML: {exc}", record=str(path)) from None
    if not isinstance(doc, dict):
        raise ValidationError(f"{path}: a scenario file is a mapping with 'scenario' and 'steps'", record=str(path))
    doc = _plain(doc)
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise ValidationError(f"{path}: unknown top-level keys {sorted(unknown)}", record=str(path))
    if not isinstance(doc.get("scenario"), str) or not isinstance(doc.get("steps"), list):
        raise ValidationError(f"{path}: needs 'scenario' (a name) and 'steps' (a list)", record=str(path))
    for i, step in enumerate(doc["steps"], 1):
        if not isinstance(step, dict):
            raise ValidationError(f"{path}: step {i} is not a mapping", record=str(path), field=f"steps[{i}]")
        bad = set(step) - STEP_KEYS
        if bad:
            raise ValidationError(f"{path}: step {i} has unknown keys {sorted(bad)}", record=str(path),
                                  field=f"steps[{i}]")
        if "do" in step and "expect" in step:
            raise ValidationError(f"{path}: step {i} has both 'do' and 'expect'", record=str(path))
        if not ({"do", "expect", "at"} & set(step)):
            raise ValidationError(f"{path}: step {i} needs 'do', 'expect' or 'at'", record=str(path))
    return doc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _scalar_equal(expected: Any, actual: Any) -> bool:
    if expected is None or actual is None:
        return expected is actual
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual if isinstance(expected, bool) and isinstance(actual, bool) else False
    if _is_number(expected) and (isinstance(actual, str) or _is_number(actual)):
        try:
            return Decimal(str(expected)) == Decimal(str(actual))
        except InvalidOperation:
            return False
    if isinstance(expected, str) and _is_number(actual):
        try:
            return Decimal(expected) == Decimal(str(actual))
        except InvalidOperation:
            return False
    return bool(expected == actual)


def compare(expected: Any, actual: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Subset comparison of SCENARIOS.md: dict keys given are compared, lists item by item."""
    where = path or "(result)"
    if isinstance(expected, dict):
        if isinstance(actual, list) and set(expected) == {"count"}:
            return [] if len(actual) == expected["count"] else [(f"{where}.count", expected["count"], len(actual))]
        if not isinstance(actual, dict):
            return [(where, expected, actual)]
        out = []
        for key, value in expected.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in actual:
                if key == "count" and isinstance(value, int):
                    candidates = [v for v in actual.values() if isinstance(v, list)]
                    if len(candidates) == 1:
                        if len(candidates[0]) != value:
                            out.append((sub, value, len(candidates[0])))
                        continue
                out.append((sub, value, "(missing)"))
                continue
            out.extend(compare(value, actual[key], sub))
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [(where, expected, actual)]
        if len(expected) != len(actual):
            return [(f"{where}.length", len(expected), len(actual))]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out.extend(compare(e, a, f"{path}[{i}]"))
        return out
    return [] if _scalar_equal(expected, actual) else [(where, expected, actual)]


def _fill(op_name: str, kind: str, data: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    try:
        op = registry.get(op_name, kind)  # type: ignore[arg-type]
    except CloseloopError:
        return data
    out = dict(data)
    for key, value in defaults.items():
        if key in op.fields and key not in out:
            out[key] = value
    return out


def run_document(doc: dict[str, Any], file: str, db_url: str | None = None) -> ScenarioResult:
    name = doc["scenario"]
    steps = doc["steps"]
    defaults = doc.get("defaults") or {}
    result = ScenarioResult(name=name, file=file, passed=True, steps=len(steps))
    clock = ScenarioClock()
    first_at = next((s["at"] for s in steps if "at" in s), None)
    if first_at:
        clock = ScenarioClock(parse_date(str(first_at), field="at"))
    with fresh_database(db_url) as url:
        app = App(url, clock=clock, actor="scenario", migrate=False)
        app.services.config["users"] = doc.get("users")
        try:
            for number, step in enumerate(steps, 1):
                failure = _run_step(app, clock, step, number, defaults)
                if failure is not None:
                    result.failures.append(failure)
                    result.passed = False
                    break
        finally:
            app.close()
    return result


def _run_step(app: App, clock: ScenarioClock, step: dict[str, Any], number: int,
              defaults: dict[str, Any]) -> Failure | None:
    try:
        return _step(app, clock, step, number, defaults)
    except CloseloopError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported against the step that raised it
        return Failure(number, "no internal error", f"{type(exc).__name__}: {exc}",
                       f"internal error in step {number}: {type(exc).__name__}: {exc}")


def _step(app: App, clock: ScenarioClock, step: dict[str, Any], number: int,
          defaults: dict[str, Any]) -> Failure | None:
    if "at" in step:
        try:
            clock.set(parse_date(str(step["at"]), field="at"))
        except CloseloopError as err:
            return Failure(number, step["at"], str(clock.today()), err.message)
    expected_error = step.get("error")
    actor = step.get("as")
    if "do" in step:
        name = step["do"]
        data = _fill(name, "command", dict(step.get("with") or {}), defaults)
        try:
            outcome = app.do(name, data, actor=actor)
        except CloseloopError as err:
            if expected_error == str(err.code):
                return None
            return Failure(number, {"error": expected_error} if expected_error else "success",
                           err.to_dict(), f"{name} failed: {err.message}")
        if expected_error:
            return Failure(number, {"error": expected_error}, outcome, f"{name} succeeded but should fail")
        if "equals" in step:
            diffs = compare(step["equals"], outcome)
            if diffs:
                return _diff_failure(number, name, diffs)
        return None
    if "expect" in step:
        name = step["expect"]
        where = _fill(name, "query", dict(step.get("where") or {}), defaults)
        try:
            outcome = app.query(name, where, actor=actor)
        except CloseloopError as err:
            if expected_error == str(err.code):
                return None
            return Failure(number, step.get("equals") if not expected_error else {"error": expected_error},
                           err.to_dict(), f"query {name} failed: {err.message}")
        if expected_error:
            return Failure(number, {"error": expected_error}, outcome, f"query {name} succeeded but should fail")
        diffs = compare(step.get("equals") or {}, outcome)
        if diffs:
            return _diff_failure(number, name, diffs)
    return None


def _diff_failure(number: int, name: str, diffs: list[tuple[str, Any, Any]]) -> Failure:
    expected = {path: e for path, e, _ in diffs}
    actual = {path: a for path, _, a in diffs}
    text = "; ".join(f"{path}: expected {e!r}, got {a!r}" for path, e, a in diffs[:10])
    return Failure(number, expected, actual, f"{name}: {text}")


def collect(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files.extend(sorted(x for x in path.rglob("*") if x.suffix in (".yaml", ".yml")))
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(p)
    return files


def run_paths(paths: list[str], db_url: str | None = None) -> list[ScenarioResult]:
    results = []
    for path in collect(paths):
        try:
            doc = load_file(path)
        except CloseloopError as err:
            results.append(ScenarioResult(name=path.stem, file=str(path), passed=False, steps=0,
                                          failures=[Failure(0, "a valid scenario file", None, err.message)]))
            continue
        try:
            results.append(run_document(doc, str(path), db_url))
        except Exception as exc:  # noqa: BLE001 - an internal error fails the scenario, with its reason
            results.append(ScenarioResult(name=doc["scenario"], file=str(path), passed=False,
                                          steps=len(doc["steps"]),
                                          failures=[Failure(0, "no internal error", None,
                                                            f"{type(exc).__name__}: {exc}")]))
    return results


def report_json(results: list[ScenarioResult]) -> dict[str, Any]:
    passed = sum(1 for r in results if r.passed)
    return {"scenarios": [dataclasses.asdict(r) | {"failures": [f.to_dict() for f in r.failures]} for r in results],
            "passed": passed, "failed": len(results) - passed}
