"""A handful of `make soak`'s crash trials in CI: one per workload (CRM import, bill run, event delivery,
posting, revenue run, close), each SIGKILLed at a random point, restarted, completed and checked against an
uninterrupted run of the same seeded company. On SQLite by default, on PostgreSQL under `make test-postgres`."""

from __future__ import annotations

import pytest

from closeloop.bench import crash
from tests.conftest import TEST_DATABASE

pytestmark = [pytest.mark.soak, pytest.mark.slow]


def test_one_crash_trial_per_workload_loses_nothing_and_doubles_nothing():
    result = crash.suite(TEST_DATABASE, trials=len(crash.WORKLOADS), seeds=1, size=crash.Size(customers=8),
                         first_seed=5)
    assert set(result["workloads"]) == set(crash.WORKLOADS)
    assert result["kills"] >= len(crash.WORKLOADS) - 1  # a delay may outlast a short phase, rarely the run
    assert result["ok"], [(f["workload"], f["kills"], f["problems"]) for f in result["failed"]]


def test_the_checks_see_a_doubled_posting_and_a_gap_in_the_numbers(tmp_path):
    """The checks are not vacuous: tamper with a completed run and each is caught."""
    from closeloop.app import App
    from closeloop.scenarios.fresh import fresh_database

    size = crash.Size(customers=4, bad_rows=1)
    base = crash.baseline(TEST_DATABASE, 3, size, tmp_path)
    with fresh_database(TEST_DATABASE) as url:
        crash.prepare(url)
        assert crash.run_child(url, 3, size, tmp_path).returncode == 0
        assert crash.invariants(url) == []
        assert crash.compare(base.snapshot, crash.snapshot(url)) == []
        app = App(url, migrate=False)
        try:
            with app.unit_of_work() as uow:
                number = uow.scalar("SELECT MIN(number) FROM billing_invoice WHERE number LIKE 'INV-US01-%'")
                uow.execute("UPDATE billing_invoice SET number = ? WHERE number = ?", ("INV-US01-000099", number))
                # a payment posted twice from the same event, as a handler without its delivery record would
                from closeloop.ledger.model import EntryDraft, LineDraft
                from closeloop.ledger.service import post_entries

                event_id = uow.scalar("SELECT MAX(id) FROM event WHERE type = 'payment.received'")
                post_entries(uow, [EntryDraft("US01", "2026-03-10", "Payment received again", (
                    LineDraft("cash", 100), LineDraft("4000", -100)))], event_id=int(event_id))
        finally:
            app.close()
        problems = crash.invariants(url)
        assert any("not gapless" in p for p in problems), problems
        differences = crash.compare(base.snapshot, crash.snapshot(url))
        assert any(d.startswith("journal differs") for d in differences), differences
        assert any(d.startswith("trial_balance differs") for d in differences), differences
