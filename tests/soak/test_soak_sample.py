"""A tenth of `make soak` in CI: dispatcher crashes at random points (simulated in-process) on the test
database, and on PostgreSQL a worker soak with one of four workers SIGKILLed mid-way."""

from __future__ import annotations

import pytest

from closeloop.bench import soak
from tests.conftest import TEST_DATABASE

pytestmark = pytest.mark.soak


def test_dispatcher_crash_trials_lose_nothing_and_double_nothing():
    result = soak.fault_injection(TEST_DATABASE, trials=4, sales=15, mode="inprocess", seed=7)
    assert result["kills"]["simulated"] >= 4
    assert result["ok"], result["failed"]


@pytest.mark.skipif(not (TEST_DATABASE or "").startswith("postgres"), reason="worker claims and leases need PostgreSQL")
def test_worker_soak_with_a_worker_killed_midway():
    result = soak.worker_soak(TEST_DATABASE, events=2000, workers=4, aggregates=200, lease_seconds=2.0)
    assert result["killed_after_done"] is not None
    assert result["ok"], result["problems"]
    assert sum(result["effects_per_worker"].values()) == 2000
