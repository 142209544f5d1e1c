"""`closeloop bench`: each workload beside its peer, a table, and bench/results.json (see docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any


def run_bench(names: list[str], *, quick: bool, output: str, console: Any) -> int:
    console.print("no benchmark workloads are registered yet")
    return 0
