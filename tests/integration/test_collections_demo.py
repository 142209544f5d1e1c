"""The demo's collections on a small billed company: every kind of payment event, and the books agree."""

from __future__ import annotations

from datetime import date

from closeloop.collections.demo import run_demo_collections
from tests.integration.collections_helpers import balance, company


def test_demo_collections_runs_every_path_and_the_books_agree(app, clock):
    company(app, clock, {f"DM-{i:02d}": f"{100 + 37 * i}.00" for i in range(24)})
    for month in (2, 3, 4):
        clock.set(date(2026, month, 1))
        app.do("billing.run", {"as_of": f"2026-{month:02d}-01"})
    summary = run_demo_collections(app, "2026-04-30", None)
    assert summary["invoices"] == 96
    assert summary["card_payments"] > 0 and summary["card_failures"] > 0 and summary["payouts"] > 0
    assert summary["statements"] >= 3 and summary["bank_applied"] > 0 and summary["disputes"] > 0
    assert summary["dunning_reminders"] > 0
    assert summary["refused"] == 0, summary["errors"]
    tb = app.query("trial_balance", {"entity": "US01"})
    assert tb["balanced"] is True
    aging = app.query("ar_aging", {"as_of": "2026-04-30", "entity": "US01"})
    assert aging["total"] == balance(app, "accounts_receivable")
    again = run_demo_collections(app, "2026-04-30", None)  # nothing is paid twice
    assert again["card_payments"] == 0 and again["bank_applied"] == 0
