"""Ledger workloads: ledger.post, ledger.post_single, ledger.end_to_end, ledger.trial_balance.

Data: a seeded generator of entries of 2-4 lines over ~200 accounts and two
years of dates, in one entity. Every workload runs beside its peer on the same
data: raw ``sqlite3`` executemany of exactly the journal entry and journal
line rows into equivalent tables (same columns and primary keys, same
pragmas), and ``ledger``/``hledger`` on the exported journal.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from closeloop.app import App
from closeloop.bench.runner import BenchContext, median, peak_rss_mb, result, workload
from closeloop.core.clock import ScenarioClock
from closeloop.ledger.model import EntryDraft, LineDraft
from closeloop.ledger.service import post_entries

ENTITY = "BENCH"
START = date(2025, 1, 1)
DAYS = 730
BATCH = 5000  # entries per unit of work in the batch API


def account_codes() -> list[str]:
    base = ["1000", "1010", "1100", "1150", "1200", "1500", "2000", "2010", "2100", "2200", "2300", "2400", "2500",
            "3000", "3100", "4000", "4100", "4200", "4900", "5000", "6000", "6100", "6200", "6300", "6400", "6500",
            "7000"]
    return base + [f"8{i:03d}" for i in range(200 - len(base))]


def generate(lines_target: int, seed: int = 42) -> Iterator[list[EntryDraft]]:
    """Batches of balanced entries (2-4 lines) whose line count sums to about ``lines_target``."""
    rng = random.Random(seed)
    codes = account_codes()
    produced = 0
    batch: list[EntryDraft] = []
    while produced < lines_target:
        n = rng.randint(2, 4)
        amounts = [rng.randint(1, 5_000_000) * rng.choice((1, -1)) for _ in range(n - 1)]
        amounts.append(-sum(amounts))
        day = (START + timedelta(days=rng.randrange(DAYS))).isoformat()
        batch.append(EntryDraft(ENTITY, day, f"bench entry {produced}",
                                tuple(LineDraft(rng.choice(codes), a) for a in amounts)))
        produced += n
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def setup_app(path: str) -> App:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    app = App(path, clock=ScenarioClock(START), actor="bench")
    app.do("entity.create", {"code": ENTITY, "name": "Bench Co", "country": "US", "currency": "USD"})
    existing = {r["code"] for r in app.query("trial_balance", {"entity": ENTITY})["rows"]}
    for code in account_codes():
        if code.startswith("8") and code not in existing:
            app.do("account.create", {"entity": ENTITY, "code": code, "name": f"Bench {code}", "type": "expense"})
    return app


def post_batches(app: App, lines_target: int) -> tuple[float, int, int]:
    """Post through the public service API in batches; returns (seconds spent posting, entries, lines)."""
    seconds = 0.0
    entries = lines = 0
    for batch in generate(lines_target):
        start = time.perf_counter()
        with app.unit_of_work() as uow:
            post_entries(uow, batch)
        seconds += time.perf_counter() - start
        entries += len(batch)
        lines += sum(len(d.lines) for d in batch)
    return seconds, entries, lines


# ----------------------------------------------------------------------------- the raw sqlite3 baseline

BASELINE_SCHEMA = """
CREATE TABLE journal_entry (id INTEGER PRIMARY KEY, entity TEXT NOT NULL, seq INTEGER NOT NULL, date TEXT NOT NULL,
  period TEXT NOT NULL, memo TEXT NOT NULL, manual INTEGER NOT NULL, reference TEXT, reverses_id INTEGER,
  source TEXT NOT NULL, actor TEXT NOT NULL, approved_by TEXT, event_id INTEGER, posted_at TEXT NOT NULL,
  hash TEXT NOT NULL);
CREATE TABLE journal_line (entry_id INTEGER NOT NULL, line_no INTEGER NOT NULL, account_id INTEGER NOT NULL,
  amount INTEGER NOT NULL, currency TEXT NOT NULL, txn_amount INTEGER NOT NULL, memo TEXT, dimensions TEXT,
  PRIMARY KEY (entry_id, line_no));
"""


def baseline_connect(path: str) -> sqlite3.Connection:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(BASELINE_SCHEMA)
    return con


def baseline_rows(batch: list[EntryDraft], first_id: int, code_ids: dict[str, int]) -> tuple[list[tuple[Any, ...]],
                                                                                              list[tuple[Any, ...]]]:
    entries, lines = [], []
    for i, d in enumerate(batch):
        entry_id = first_id + i
        entries.append((entry_id, d.entity, entry_id, d.date, d.date[:7], d.memo, 0, None, None, "bench", "bench",
                        None, None, "2025-01-01T00:00:00Z", "0" * 64))
        for n, line in enumerate(d.lines, 1):
            lines.append((entry_id, n, code_ids[line.account], line.amount, "USD", line.amount, None, None))
    return entries, lines


def baseline_batches(path: str, lines_target: int) -> tuple[float, int]:
    con = baseline_connect(path)
    code_ids = {c: i for i, c in enumerate(account_codes(), 1)}
    seconds = 0.0
    next_id = 1
    rows = 0
    for batch in generate(lines_target):
        entries, lines = baseline_rows(batch, next_id, code_ids)
        next_id += len(batch)
        start = time.perf_counter()
        con.execute("BEGIN")
        con.executemany("INSERT INTO journal_entry VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", entries)
        con.executemany("INSERT INTO journal_line VALUES (?,?,?,?,?,?,?,?)", lines)
        con.execute("COMMIT")
        seconds += time.perf_counter() - start
        rows += len(entries) + len(lines)
    con.close()
    return seconds, rows


@workload("ledger.post")
def ledger_post(ctx: BenchContext) -> list[dict[str, Any]]:
    n = ctx.size(1_000_000)
    runs = []
    base_runs = []
    lines = entries = 0
    rounds = 1 if n >= 1_000_000 else 3
    for _ in range(rounds):
        app = setup_app(str(ctx.workdir / "post.db"))
        seconds, entries, lines = post_batches(app, n)
        app.close()
        runs.append(seconds)
        base_seconds, base_rows = baseline_batches(str(ctx.workdir / "post_baseline.db"), n)
        base_runs.append(base_seconds)
    ours, theirs = median(runs), median(base_runs)
    ratio = (lines / ours) / (lines / theirs)
    return [result("ledger.post", n=lines, unit="journal lines", seconds=ours, goal="ratio >= 0.25",
                   met=ratio >= 0.25, ratio=ratio,
                   baseline={"name": "sqlite.executemany", "seconds": round(theirs, 4),
                             "rate": round(lines / theirs, 1),
                             "wrote": f"{entries} journal_entry + {lines} journal_line rows, same pragmas, "
                                      f"batches of {BATCH} entries"},
                   entries=entries, runs=len(runs),
                   notes="closeloop also checks every entry, maintains period balances, extends the hash chain "
                         "and appends one journal.posted outbox event per entry")]


@workload("ledger.post_single")
def ledger_post_single(ctx: BenchContext) -> list[dict[str, Any]]:
    count = ctx.size(20_000)
    rng = random.Random(7)
    codes = account_codes()[:27]
    payloads = []
    for i in range(count):
        amount = rng.randint(1, 100_000)
        payloads.append({"entity": ENTITY, "date": (START + timedelta(days=rng.randrange(DAYS))).isoformat(),
                         "memo": f"single {i}", "manual": True,
                         "lines": [{"account": rng.choice(codes), "debit": f"{amount // 100}.{amount % 100:02d}"},
                                   {"account": rng.choice(codes), "credit": f"{amount // 100}.{amount % 100:02d}"}]})
    ours_runs, base_runs = [], []
    for _ in range(3):
        app = setup_app(str(ctx.workdir / "single.db"))
        start = time.perf_counter()
        for p in payloads:
            app.do("journal.post", p)
        ours_runs.append(time.perf_counter() - start)
        app.close()
        con = baseline_connect(str(ctx.workdir / "single_baseline.db"))
        rows = []
        for i, p in enumerate(payloads, 1):
            minor = int(p["lines"][0]["debit"].replace(".", ""))
            rows.append(((i, ENTITY, i, p["date"], p["date"][:7], p["memo"], 1, None, None, "closeloop", "bench",
                          None, None, "2025-01-01T00:00:00Z", "0" * 64),
                         [(i, 1, 1, minor, "USD", minor, None, None), (i, 2, 2, -minor, "USD", -minor, None, None)]))
        start = time.perf_counter()
        for entry, lines in rows:
            con.execute("BEGIN")
            con.execute("INSERT INTO journal_entry VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", entry)
            con.executemany("INSERT INTO journal_line VALUES (?,?,?,?,?,?,?,?)", lines)
            con.execute("COMMIT")
        base_runs.append(time.perf_counter() - start)
        con.close()
    ours, theirs = median(ours_runs), median(base_runs)
    ratio = theirs / ours
    return [result("ledger.post_single", n=count, unit="journal entries (one command, one commit each)",
                   seconds=ours, goal="ratio >= 0.5", met=ratio >= 0.5, ratio=ratio,
                   baseline={"name": "sqlite.one_commit_per_entry", "seconds": round(theirs, 4),
                             "rate": round(count / theirs, 1),
                             "wrote": "1 journal_entry + 2 journal_line rows per commit, synchronous=NORMAL"},
                   notes="app.do('journal.post', payload): validation, audit record, balances, hash chain, outbox")]


def _parse_tool_balances(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "\t" in line:
            account, amount = line.split("\t", 1)
            out[account.strip()] = amount.strip()
    return out


@workload("ledger.end_to_end")
def ledger_end_to_end(ctx: BenchContext) -> list[dict[str, Any]]:
    from closeloop.core.money import format_minor
    from closeloop.ledger.export import export_journal

    n = ctx.size(1_000_000)
    path = str(ctx.workdir / "e2e.db")
    app = setup_app(path)  # the entity and its 200 accounts (ledger and hledger need no declarations)
    start = time.perf_counter()
    post_seconds, entries, lines = post_batches(app, n)
    with app.unit_of_work(write=False) as uow:
        from closeloop.ledger.reports import trial_balance_data

        tb = trial_balance_data(uow, ENTITY, None)
    ours = time.perf_counter() - start
    journal = ctx.workdir / "e2e.journal"
    with app.unit_of_work(write=False) as uow, open(journal, "w") as fh:
        export_journal(uow, fh, "hledger")
    app.close()
    ours_balances = {f"{row['type']}:{row['code']}": tb["accounts"][row["code"]] for row in tb["rows"]}
    roots = {"asset": "assets", "liability": "liabilities", "equity": "equity", "revenue": "revenues",
             "expense": "expenses"}
    ours_named = {f"{roots[k.split(':')[0]]}:{ENTITY}:{k.split(':')[1]}": f"{v} USD" for k, v in ours_balances.items()}
    rows: list[dict[str, Any]] = []
    peers: dict[str, dict[str, Any]] = {}
    for tool, args in (("ledger", ["balance", "--flat", "--no-total", "--format", "%(account)\t%(display_total)\n"]),
                       ("hledger", ["balance", "--flat", "--no-total", "-O", "csv"])):
        exe = shutil.which(tool)
        if exe is None:
            peers[tool] = {"name": tool, "error": "not installed"}
            continue
        start = time.perf_counter()
        proc = subprocess.run([exe, "-f", str(journal), *args], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if tool == "ledger":
            balances = _parse_tool_balances(proc.stdout)
        else:
            import csv
            import io

            balances = {row["account"]: row["balance"] for row in csv.DictReader(io.StringIO(proc.stdout))}
        balances = {k: v for k, v in balances.items() if not v.startswith("0 ")}
        peers[tool] = {"name": f"{tool} -f FILE balance", "seconds": round(seconds, 3), "rate": round(lines / seconds, 1),
                       "balances_identical": balances == ours_named, "returncode": proc.returncode}
    ledger_peer, hledger_peer = peers.get("ledger", {}), peers.get("hledger", {})
    vs_ledger = (ledger_peer.get("seconds") or 0) / ours if ours else 0
    vs_hledger = (hledger_peer.get("seconds") or 0) / ours if ours else 0
    met = bool(vs_ledger > 1 and vs_hledger >= 3 and ledger_peer.get("balances_identical")
               and hledger_peer.get("balances_identical"))
    rows.append(result("ledger.end_to_end", n=lines, unit="journal lines", seconds=ours,
                       goal="faster than ledger-cli and >= 3x faster than hledger, balances identical",
                       met=met, ratio=vs_ledger, baseline=ledger_peer, hledger=hledger_peer,
                       ratio_vs_hledger=round(vs_hledger, 3), posting_seconds=round(post_seconds, 3),
                       notes="closeloop: post from scratch through the service API, then trial balance; peers parse "
                             "and balance the exported journal of the same ledger"))
    _ = format_minor
    return rows


@workload("ledger.trial_balance")
def ledger_trial_balance(ctx: BenchContext) -> list[dict[str, Any]]:
    from closeloop.ledger.reports import trial_balance_data

    rows: list[dict[str, Any]] = []
    for size in (ctx.size(1_000_000), ctx.size(10_000_000)):
        path = str(ctx.workdir / f"tb_{size}.db")
        app = setup_app(path)
        post_batches(app, size)
        timings: dict[str, float] = {}
        for label, as_of in (("current", None), ("period_end", date(2025, 6, 30)),
                             ("inside_period", date(2025, 6, 15))):
            samples = []
            for _ in range(30):
                with app.unit_of_work(write=False) as uow:
                    start = time.perf_counter()
                    tb = trial_balance_data(uow, ENTITY, as_of)
                    samples.append(time.perf_counter() - start)
                assert tb["balanced"]
            timings[label] = median(samples)
        app.close()
        met = timings["current"] < 0.010 and timings["period_end"] < 0.010
        rows.append(result("ledger.trial_balance", n=size, unit="journal lines in the ledger",
                           seconds=timings["current"], goal="< 10 ms for current and any period end",
                           met=met, current_ms=round(timings["current"] * 1000, 3),
                           period_end_ms=round(timings["period_end"] * 1000, 3),
                           inside_period_ms=round(timings["inside_period"] * 1000, 3),
                           notes="median of 30 queries; an as-of date inside a period adds that period's lines"))
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    _ = peak_rss_mb
    return rows


_ = Path
