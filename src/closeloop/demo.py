"""``make demo``: a small company built from scratch through the public vocabulary.

Two legal entities in different currencies (Acme Inc in USD, Acme GmbH in
EUR), a year of journals (capital, monthly sales, payroll, rent, hosting,
collections, supplier payments, an FX-denominated purchase), a closed
period, then the trial balance and P&L of each entity. Later areas extend it
until it runs the whole order-to-cash year.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from rich.console import Console
from rich.progress import Progress

from closeloop.app import App
from closeloop.core.clock import ScenarioClock
from closeloop.core.periods import add_months, period_of
from datetime import date

YEAR = 2026


def _amount(rng: random.Random, low: int, high: int) -> str:
    cents = rng.randint(low * 100, high * 100)
    return f"{cents // 100}.{cents % 100:02d}"


def build_company(app: App, clock: ScenarioClock, console: Console) -> dict[str, Any]:
    rng = random.Random(2026)
    app.do("entity.create", {"code": "US01", "name": "Acme Inc", "country": "US", "currency": "USD",
                             "region": "CA", "tax_id": "12-3456789"})
    app.do("entity.create", {"code": "DE01", "name": "Acme GmbH", "country": "DE", "currency": "EUR",
                             "tax_id": "DE136695976"})
    app.do("journal.post", {"entity": "US01", "date": f"{YEAR}-01-02", "memo": "Share capital paid in",
                            "lines": [{"account": "cash", "debit": "500000.00"},
                                      {"account": "3000", "credit": "500000.00"}]})
    app.do("journal.post", {"entity": "DE01", "date": f"{YEAR}-01-02", "memo": "Stammkapital eingezahlt",
                            "lines": [{"account": "cash", "debit": "250000.00"},
                                      {"account": "3000", "credit": "250000.00"}]})
    posted = 2
    with Progress(console=console, disable=not console.is_terminal, transient=True) as progress:
        task = progress.add_task("posting a year of journals", total=12)
        for month in range(1, 13):
            start = date(YEAR, month, 1)
            clock.set(start)
            for code, scale in (("US01", 1), ("DE01", 0.6)):
                for week in range(4):
                    day = start.replace(day=3 + week * 7)
                    sale = _amount(rng, int(18000 * scale), int(26000 * scale))
                    app.do("journal.post", {"entity": code, "date": day.isoformat(), "memo": f"Invoiced sales week {week + 1}",
                                            "lines": [{"account": "accounts_receivable", "debit": sale},
                                                      {"account": "revenue", "credit": sale}]})
                    cash = _amount(rng, int(15000 * scale), int(22000 * scale))
                    app.do("journal.post", {"entity": code, "date": (day.replace(day=day.day + 2)).isoformat(),
                                            "memo": "Customer receipts",
                                            "lines": [{"account": "cash", "debit": cash},
                                                      {"account": "accounts_receivable", "credit": cash}]})
                    posted += 2
                for account, memo, low, high in (("6200", "Payroll", 40000, 42000), ("6300", "Office rent", 6000, 6000),
                                                 ("6400", "Cloud hosting", 3000, 5200), ("6500", "Campaigns", 1500, 4000)):
                    value = _amount(rng, int(low * scale), int(high * scale))
                    app.do("journal.post", {"entity": code, "date": start.replace(day=25).isoformat(), "memo": memo,
                                            "lines": [{"account": account, "debit": value},
                                                      {"account": "cash", "credit": value}]})
                    posted += 1
            if month == 6:
                app.do("fx.rate", {"base": "USD", "quote": "EUR", "date": f"{YEAR}-06-01", "rate": "0.9150"})
                app.do("journal.post", {"entity": "DE01", "date": f"{YEAR}-06-15",
                                        "memo": "US software licence paid in USD",
                                        "lines": [{"account": "6400", "debit": "12000.00", "currency": "USD"},
                                                  {"account": "cash", "credit": "12000.00", "currency": "USD"}]})
                posted += 1
            if month > 1:
                previous = period_of(add_months(start, -1))
                for code in ("US01", "DE01"):
                    app.do("period.close", {"entity": code, "period": previous})
            progress.advance(task)
    return {"journals": posted}


def run_demo(path: str, console: Console | None = None, as_json: bool = False) -> dict[str, Any]:
    console = console or Console()
    if "://" not in path:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    started = time.perf_counter()
    clock = ScenarioClock(date(YEAR, 1, 1))
    app = App(path, clock=clock, actor="demo")
    try:
        facts = build_company(app, clock, console)
        reports = {}
        for code in ("US01", "DE01"):
            reports[code] = {
                "trial_balance": app.query("trial_balance", {"entity": code}),
                "profit_and_loss": app.query("profit_and_loss", {"entity": code, "period": f"{YEAR}-01..{YEAR}-12"}),
            }
        verify = app.query("ledger_verify", {})
    finally:
        app.close()
    elapsed = time.perf_counter() - started
    summary = {"database": path, "seconds": round(elapsed, 2), **facts, "ledger_verified": verify["ok"],
               "reports": reports}
    if as_json:
        print(json.dumps(summary, indent=2))
        return summary
    from closeloop.cli.main import _print_pnl, _print_trial_balance

    console.print(f"[bold]closeloop demo[/] — two entities, {facts['journals']} journals posted in {elapsed:.1f} s"
                  f" into {path}")
    for code in ("US01", "DE01"):
        _print_trial_balance(reports[code]["trial_balance"])
        _print_pnl(reports[code]["profit_and_loss"])
    console.print(f"audit chain: {'intact' if verify['ok'] else 'BROKEN'} ({verify['entries_checked']} entries)")
    console.print(f"Explore it: closeloop --db {path} ledger trial-balance | closeloop --db {path} ledger export")
    return summary
