"""The demo year's billing (called by ``make demo``; see closeloop/demo.py).

:func:`run_demo_billing` walks month by month from the app clock's month through ``through``:
each month it records the month's usage for every metered subscription (seeded, so every demo is
the same; sent in daily batches through ``usage.record``, with one replayed batch to show the
idempotency), completes the next open milestone of each project every third month, and runs the
bill run on the first day of the next month. It moves the app's scenario clock forward as it goes.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from typing import Any

from closeloop.core.periods import add_months


def _meters(app: Any) -> list[tuple[str, str, str, str, str]]:
    with app.unit_of_work(write=False) as uow:
        return [(r[0], r[1], r[2], r[3], r[4]) for r in uow.all(
            "SELECT m.contract_id, s.customer, m.metric, m.start, m.\"end\" FROM billing_meter m JOIN"
            " billing_subscription s ON s.contract_id = m.contract_id ORDER BY m.contract_id, m.start")]


def _open_milestones(app: Any) -> list[tuple[str, str, str]]:
    with app.unit_of_work(write=False) as uow:
        done = {(r[0], r[1], r[2]) for r in uow.all("SELECT contract_id, line_id, milestone_id FROM billing_milestone")}
        out = []
        for cid, payload in uow.all("SELECT contract_id, payload FROM billing_contract_change WHERE kind ="
                                    " 'activation' ORDER BY contract_id"):
            for line in json.loads(payload).get("lines") or ():
                for m in line.get("milestones") or ():
                    key = (cid, line["line_id"], m["milestone_id"])
                    if key not in done:
                        out.append(key)
        return out


def record_month_usage(app: Any, month: date, run_day: date, rng: random.Random, *,
                       skip_past: bool = False) -> tuple[int, int]:
    """Usage of every metered subscription every third day of ``month`` (in daily batches through
    ``usage.record``; the feed resends its first batch, counted once). Days already behind the clock
    are recorded with their own date, or left out with ``skip_past``; returns (accepted, duplicates)."""
    clock = app.clock
    meters = _meters(app)
    events = duplicates = 0
    for day_offset in range(0, (run_day - month).days, 3):
        day = month + timedelta(days=day_offset)
        if skip_past and day < clock.today():
            continue
        if day > clock.today():
            clock.set(day)
        batch = []
        for cid, customer, metric, start, end in meters:
            if not start <= day.isoformat() <= end:
                continue
            batch.append({"customer": customer, "metric": metric, "quantity": rng.randint(200, 4000),
                          "at": day.isoformat(), "key": f"demo-{cid}-{metric}-{day.isoformat()}"})
        if batch:
            result = app.do("usage.record", {"events": batch}, actor="usage-feed")
            events += result["accepted"]
            if day_offset == 0:  # the feed resends its first batch of the month: counted once
                duplicates += app.do("usage.record", {"events": batch}, actor="usage-feed")["duplicates"]
    return events, duplicates


def complete_milestones(app: Any, day: date) -> int:
    """Complete the next open milestone of each project on ``day`` (the clock moves there if behind)."""
    clock = app.clock
    if day > clock.today():
        clock.set(day)
    done: set[str] = set()
    for cid, line_id, mid in _open_milestones(app):
        if cid in done:
            continue
        app.do("milestone.complete", {"contract_id": cid, "line_id": line_id, "milestone_id": mid,
                                      "date": clock.today().isoformat()}, actor="pmo")
        done.add(cid)
    return len(done)


def run_demo_billing(app: Any, through: str, console: Any = None) -> dict[str, Any]:
    """Record a year of usage for the demo contracts and run the monthly bill runs up to ``through``."""
    rng = random.Random(2026)
    clock = app.clock
    last = date.fromisoformat(through)
    month = clock.today().replace(day=1)
    runs: list[dict[str, Any]] = []
    events = duplicates = milestones = 0
    n = 0
    while True:
        run_day = add_months(month, 1)
        if run_day > last:
            break
        n_usage, n_dup = record_month_usage(app, month, run_day, rng, skip_past=True)
        events += n_usage
        duplicates += n_dup
        n += 1
        if n % 3 == 0:
            milestones += complete_milestones(app, min(run_day - timedelta(days=5), last))
        clock.set(run_day)
        summary = app.do("billing.run", {"as_of": run_day.isoformat()}, actor="billing-ops")
        runs.append(summary)
        if console is not None:
            console.print(f"  bill run {run_day}: {summary['invoices']} invoice(s)"
                          f"{', ' + str(summary['held']) + ' held' if summary['held'] else ''}")
        month = run_day
    totals = app.query("invoices", {"limit": 1})
    return {"bill_runs": len(runs), "invoices": sum(r["invoices"] for r in runs),
            "held": sum(r["held"] for r in runs), "usage_events": events, "usage_duplicates": duplicates,
            "milestones_completed": milestones, "invoice_totals": totals.get("totals", {})}
