"""HTTP workloads: ``api.read`` and ``api.usage_write``.

The server is ``closeloop serve``'s application (uvicorn, one process) on
127.0.0.1 over a seeded SQLite database; the load generator is a bounded
asyncio httpx client in this process (both share the machine's cores, which
the figures include). Each workload reports:

- the latency at a fixed offered rate (open loop: requests are sent on a
  schedule whatever the responses do, so a slow server shows as latency, not
  as a lower rate): p50/p99, and whether p99 stays under the goal;
- the throughput with a fixed number of requests in flight (closed loop);
- the peer: the same server's ``GET /api/v1/health`` (no authentication, no
  database), i.e. the HTTP stack's own limit on this machine; ``ratio`` is
  closeloop's throughput over it.

``api.read`` reads ``GET /api/v1/invoices/{number}`` when the ``invoice`` query
exists, and ``GET /api/v1/journals/{number}`` (a journal entry with its lines)
until then. ``api.usage_write`` posts ``POST /api/v1/usage`` batches of 100
events and is skipped until ``usage.record`` exists.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from closeloop.bench.runner import BenchContext, median, result, workload

READ_GOAL_MS = 50.0
READ_RATE = 200  # requests/s offered in the latency phase
CONCURRENCY = 16


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed(db: str, journals: int) -> tuple[str, list[str]]:
    from closeloop.app import App
    from closeloop.auth.users import add_user, create_key
    from closeloop.core.clock import ScenarioClock

    app = App(db, clock=ScenarioClock(date(2026, 1, 1)), actor="bench")
    app.do("entity.create", {"code": "US01", "name": "Bench Inc", "country": "US", "currency": "USD"})
    numbers = []
    for i in range(journals):
        out = app.do("journal.post", {"entity": "US01", "date": f"2026-01-{1 + i % 28:02d}", "memo": f"bench {i}",
                                      "lines": [{"account": "cash", "debit": f"{100 + i}.00"},
                                                {"account": "4000", "credit": f"{100 + i}.00"}]})
        numbers.append(out["number"])
    with app.unit_of_work() as uow:
        add_user(uow, "bench", ["admin", "billing", "controller"])
        key = create_key(uow, "bench")
    app.close()
    return key, numbers


class Server:
    def __init__(self, db: str) -> None:
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "CLOSELOOP_DATABASE_URL": f"sqlite:///{db}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "closeloop.api.server:from_environment", "--factory", "--host",
             "127.0.0.1", "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def __enter__(self) -> Server:
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API server exited: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the API server did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


Request = Callable[[Any, int], Any]  # (client, i) -> awaitable response


async def _closed_loop(url: str, make: Request, seconds: float, concurrency: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                start = time.perf_counter()
                response = await make(client, next(counter))
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return _stats(latencies, elapsed, errors)


async def _open_loop(url: str, make: Request, seconds: float, rate: float) -> dict[str, Any]:
    """Send at a fixed rate; latency counts from the scheduled send time (no coordinated omission)."""
    import httpx

    latencies: list[float] = []
    errors = 0
    total = max(1, int(seconds * rate))
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        began = time.perf_counter()

        async def one(i: int) -> None:
            nonlocal errors
            scheduled = began + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            response = await make(client, i)
            latencies.append(time.perf_counter() - scheduled)
            if response.status_code != 200:
                errors += 1

        await asyncio.gather(*(one(i) for i in range(total)))
        elapsed = time.perf_counter() - began
    return _stats(latencies, elapsed, errors)


def _stats(latencies: list[float], elapsed: float, errors: int) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2) if ordered else 0.0

    return {"requests": len(ordered), "seconds": elapsed, "rps": len(ordered) / elapsed if elapsed else 0.0,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "errors": errors}


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    value = median([r[key] for r in runs])
    return min(runs, key=lambda r: abs(r[key] - value))


@workload("api.read")
def api_read(ctx: BenchContext) -> list[dict[str, Any]]:
    from closeloop import areas
    from closeloop.core import registry

    areas.load()
    db = str(Path(ctx.workdir) / "api_read.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    key, numbers = _seed(db, ctx.size(2000))
    headers = {"X-API-Key": key}
    seconds = 3.0 if ctx.quick else 10.0
    repeats = 1 if ctx.quick else 3
    path, what = "/api/v1/journals/{}", "GET /api/v1/journals/{number} (the invoice query does not exist yet)"
    if "invoice" in registry.operations():
        from closeloop.core.errors import CloseloopError

        try:
            invoices = _seed_billing(db, ctx.size(200))
        except CloseloopError as err:
            invoices = []
            what = f"GET /api/v1/journals/{{number}} (seeding invoices failed: {err.code}: {err.message[:120]})"
        if invoices:
            numbers = invoices
            path, what = "/api/v1/invoices/{}", f"GET /api/v1/invoices/{{number}} over {len(invoices)} invoices"

    async def read(client: Any, i: int) -> Any:
        return await client.get(path.format(numbers[i % len(numbers)]), headers=headers)

    async def health(client: Any, i: int) -> Any:
        return await client.get("/api/v1/health")

    with Server(db) as server:
        asyncio.run(_closed_loop(server.url, read, 1.0, 4))  # warm up
        latency_runs, read_runs, peer_runs = [], [], []
        for _ in range(repeats):  # alternate closeloop and the peer
            latency_runs.append(asyncio.run(_open_loop(server.url, read, seconds, READ_RATE)))
            read_runs.append(asyncio.run(_closed_loop(server.url, read, seconds, CONCURRENCY)))
            peer_runs.append(asyncio.run(_closed_loop(server.url, health, seconds, CONCURRENCY)))
    latency = _median_run(latency_runs, "p99_ms")
    throughput = _median_run(read_runs, "rps")
    peer = _median_run(peer_runs, "rps")
    met = latency["p99_ms"] < READ_GOAL_MS and latency["errors"] == 0 and latency["rps"] >= READ_RATE * 0.95
    return [result(
        "api.read", n=throughput["requests"], unit="requests", seconds=throughput["seconds"],
        goal=f"p99 < {READ_GOAL_MS:.0f} ms at {READ_RATE} requests/s on SQLite", met=met,
        baseline={"name": "GET /api/v1/health (same server, no auth, no database)",
                  "seconds": round(peer["seconds"], 4), "rate": round(peer["rps"], 1)},
        ratio=throughput["rps"] / peer["rps"] if peer["rps"] else None,
        requests_per_s=round(throughput["rps"], 1), p50_ms=throughput["p50_ms"], p99_ms=throughput["p99_ms"],
        at_rate={"offered_rps": READ_RATE, "achieved_rps": round(latency["rps"], 1), "p50_ms": latency["p50_ms"],
                 "p99_ms": latency["p99_ms"], "errors": latency["errors"]},
        notes=f"{what}; uvicorn 1 process; httpx asyncio client with"
              f" {CONCURRENCY} in flight for throughput, open loop at {READ_RATE}/s for latency; client and server"
              f" share the machine; median of {repeats} run(s) of {seconds:.0f} s")]


@workload("api.usage_write")
def api_usage_write(ctx: BenchContext) -> list[dict[str, Any]]:
    from closeloop import areas
    from closeloop.core import registry

    areas.load()
    if "usage.record" not in registry.operations():
        return [result("api.usage_write", n=0, unit="events", seconds=0.0, goal="report requests/s and p99",
                       met=None, notes="skipped: usage.record does not exist yet (billing); POST /api/v1/usage"
                                       " registers itself when it does")]
    db = str(Path(ctx.workdir) / "api_usage.db")  # pragma: no cover - switches on with usage.record
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    key, _ = _seed(db, 1)
    _seed_billing(db, 1, months=1)  # BENCH-1 with a subscription that meters api_calls
    seconds = 3.0 if ctx.quick else 10.0
    repeats = 1 if ctx.quick else 3
    headers = {"X-API-Key": key}
    counter = iter(range(10**9))

    async def write(client: Any, i: int) -> Any:
        batch = next(counter)
        events = [{"customer": "BENCH-1", "metric": "api_calls", "quantity": "1", "at": "2026-01-01",
                   "key": f"u-{batch}-{j}"} for j in range(100)]
        return await client.post("/api/v1/usage", json={"events": events}, headers=headers)

    async def health(client: Any, i: int) -> Any:
        return await client.get("/api/v1/health")

    with Server(db) as server:
        runs, peers = [], []
        for _ in range(repeats):
            runs.append(asyncio.run(_closed_loop(server.url, write, seconds, 4)))
            peers.append(asyncio.run(_closed_loop(server.url, health, seconds, 4)))
    run = _median_run(runs, "rps")
    peer = _median_run(peers, "rps")
    return [result("api.usage_write", n=run["requests"] * 100, unit="events", seconds=run["seconds"],
                   goal="report requests/s and p99", met=None, requests_per_s=round(run["rps"], 1),
                   p50_ms=run["p50_ms"], p99_ms=run["p99_ms"], errors=run["errors"],
                   baseline={"name": "GET /api/v1/health (same server, 4 in flight)", "seconds": round(peer["seconds"], 4),
                             "rate": round(peer["rps"], 1)},
                   ratio=run["rps"] / peer["rps"] if peer["rps"] else None,
                   notes=f"POST /api/v1/usage batches of 100 events (one usage.record command per batch), 4 in"
                         f" flight, median of {repeats} run(s) of {seconds:.0f} s; rate is events/s, ratio compares"
                         " requests/s with the peer; errors counts refused batches")]


def _seed_billing(db: str, customers: int, months: int = 6) -> list[str]:
    """Customers with a seat and a metered API line on a contract, billed monthly: invoice numbers.

    Goes through the public vocabulary only (customer.upsert, product/price.create, quote.create/accept,
    billing.run), so it follows the billing area as it grows."""
    from closeloop.app import App
    from closeloop.core.clock import ScenarioClock

    clock = ScenarioClock(date(2026, 1, 1))
    app = App(db, clock=clock, actor="bench")
    try:
        app.do("product.create", {"sku": "seat", "name": "Seat", "treatment": "ratable"})
        app.do("price.create", {"price_id": "seat-usd", "sku": "seat", "currency": "USD", "model": "per_unit",
                                "amount": "10.00", "period": "month", "timing": "advance"})
        app.do("product.create", {"sku": "api", "name": "API calls", "treatment": "usage"})
        app.do("price.create", {"price_id": "api-usd", "sku": "api", "currency": "USD", "model": "usage",
                                "amount": "0.01", "period": "month", "timing": "arrears", "metric": "api_calls",
                                "aggregation": "sum"})
        for i in range(1, customers + 1):
            app.do("customer.upsert", {"source": "crm", "external_id": f"BENCH-{i}", "name": f"Bench Customer {i}",
                                       "country": "US", "region": "CA", "entity": "US01", "currency": "USD"})
            app.do("quote.create", {"quote_id": f"Q-{i}", "customer": f"BENCH-{i}", "start": "2026-01-01",
                                    "term_months": 12, "lines": [{"line_id": "L1", "price_id": "seat-usd",
                                                                  "quantity": 1 + i % 9},
                                                                 {"line_id": "L2", "price_id": "api-usd",
                                                                  "quantity": 1}]})
            app.do("quote.accept", {"quote_id": f"Q-{i}", "contract_id": f"C-{i}"})
        clock.set(date(2026, months, 1))
        app.do("billing.run", {"as_of": f"2026-{months:02d}-01"})
        numbers = [item["number"] for item in app.query("invoices", {}).get("items", []) if item.get("number")]
    finally:
        app.close()
    return numbers
