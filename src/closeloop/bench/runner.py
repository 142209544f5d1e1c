"""`closeloop bench`: each workload beside its peer, a table, and bench/results.json.

A workload is a function registered with ``@workload("area.action")`` in a
module listed in :data:`WORKLOAD_MODULES`. It receives a :class:`BenchContext`
(``quick`` runs a tenth of the size, ``workdir`` for generated data) and
returns one or more result dicts in the shape of BENCH.md (name, n, unit,
seconds, rate, peak_rss_mb, baseline, ratio, goal, met, notes). Each workload
runs in a process of its own, so its peak resident memory is its own.
Results are merged into bench/results.json by name, so running one workload
updates only its rows.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

WORKLOAD_MODULES: tuple[str, ...] = (
    "closeloop.bench.ledger",
    "closeloop.bench.customers",
    "closeloop.bench.api",
    "closeloop.bench.billing",
    "closeloop.bench.events",
    "closeloop.bench.collections",
    "closeloop.bench.revenue",
    "closeloop.bench.posting",
    "closeloop.bench.migration",
    "closeloop.bench.recon",
    "closeloop.bench.scale",
    "closeloop.bench.kpis",
)

_WORKLOADS: dict[str, Callable[[BenchContext], list[dict[str, Any]]]] = {}


@dataclass
class BenchContext:
    quick: bool
    workdir: Path
    notes: list[str] = field(default_factory=list)

    def size(self, full: int) -> int:
        return max(1, full // 10) if self.quick else full


def workload(name: str) -> Callable[[Callable[[BenchContext], list[dict[str, Any]]]],
                                    Callable[[BenchContext], list[dict[str, Any]]]]:
    def register(fn: Callable[[BenchContext], list[dict[str, Any]]]) -> Callable[[BenchContext], list[dict[str, Any]]]:
        _WORKLOADS[name] = fn
        return fn

    return register


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def result(name: str, *, n: int, unit: str, seconds: float, goal: str, met: bool | None,
           baseline: dict[str, Any] | None = None, ratio: float | None = None, notes: str = "",
           **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "n": n, "unit": unit, "seconds": round(seconds, 4),
                           "rate": round(n / seconds, 1) if seconds > 0 else None, "peak_rss_mb": peak_rss_mb()}
    if baseline is not None:
        out["baseline"] = baseline
    if ratio is not None:
        out["ratio"] = round(ratio, 4)
    out["goal"] = goal
    out["met"] = met
    if notes:
        out["notes"] = notes
    out.update(extra)
    return out


def load() -> dict[str, Callable[[BenchContext], list[dict[str, Any]]]]:
    for module in WORKLOAD_MODULES:
        importlib.import_module(module)
    return dict(_WORKLOADS)


def run_one(name: str, quick: bool) -> list[dict[str, Any]]:
    workloads = load()
    workdir = Path(os.environ.get("CLOSELOOP_BENCH_DATA", "bench/data"))
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = BenchContext(quick=quick, workdir=workdir)
    rows = workloads[name](ctx)
    for row in rows:
        row.setdefault("quick", quick)
    return rows


def run_bench(names: list[str], *, quick: bool, output: str, console: Any) -> int:
    from rich.table import Table

    workloads = load()
    selected = names or list(workloads)
    unknown = [n for n in selected if n not in workloads]
    if unknown:
        console.print(f"[bold red]unknown workloads[/]: {', '.join(unknown)}; known: {', '.join(workloads)}")
        return 2
    rows: list[dict[str, Any]] = []
    for name in selected:
        if any(r.get("name") == name for r in rows):  # billing.bill_run also measures billing.rerun
            console.print(f"{name}: measured with an earlier workload of this run")
            continue
        console.print(f"running {name}{' (quick)' if quick else ''} ...")
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            target = tmp.name
        cmd = [sys.executable, "-m", "closeloop.bench.runner", name, "--out", target] + (["--quick"] if quick else [])
        started = time.perf_counter()
        proc = subprocess.run(cmd, text=True)
        # the workload's whole wall time, data generation included: what keeps a full run under 30 minutes
        wall = round(time.perf_counter() - started, 1)
        console.print(f"{name}: {wall} s")
        if proc.returncode != 0:
            rows.append({"name": name, "error": f"workload exited with {proc.returncode}", "met": False,
                         "wall_seconds": wall})
            continue
        for row in json.loads(Path(target).read_text()):
            rows.append({**row, "wall_seconds": wall})
        os.unlink(target)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing: list[dict[str, Any]] = []
    if path.exists():
        try:
            existing = json.loads(path.read_text()).get("results", [])
        except (json.JSONDecodeError, AttributeError):
            existing = []
    fresh = {r["name"] for r in rows}
    merged = [r for r in existing if r.get("name") not in fresh] + rows
    doc = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "database": "sqlite",
                    "platform": platform.platform()},
        "results": merged,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    table = Table("workload", "n", "unit", "seconds", "rate", "baseline rate", "ratio", "peak MB", "goal", "met")
    for r in rows:
        base = r.get("baseline") or {}
        table.add_row(r["name"], str(r.get("n", "")), str(r.get("unit", "")), str(r.get("seconds", "")),
                      str(r.get("rate", "")), str(base.get("rate", "")), str(r.get("ratio", "")),
                      str(r.get("peak_rss_mb", "")), str(r.get("goal", "")),
                      {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}.get(r.get("met"), "?"))
    if console.is_terminal:
        console.print(table)
    else:
        from rich.console import Console

        Console(width=200, highlight=False).print(table)
    console.print(f"wrote {path}")
    return 0 if all("error" not in r for r in rows) else 4


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m closeloop.bench.runner")
    parser.add_argument("name")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    # Run through the importable module (not __main__), where the workload modules register.
    from closeloop.bench import runner

    rows = runner.run_one(args.name, args.quick)
    Path(args.out).write_text(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
