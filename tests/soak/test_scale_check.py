"""The correctness side of scaling out, a small sample of `make soak`: a seeded company billed and recognised
by one worker, by three, and by three of which one is SIGKILLed mid-way gives the same books (PostgreSQL)."""

from __future__ import annotations

import pytest

from closeloop.bench import scale_check
from tests.conftest import TEST_DATABASE

pytestmark = [pytest.mark.soak, pytest.mark.slow,
              pytest.mark.skipif(not (TEST_DATABASE or "").startswith("postgres"),
                                 reason="workers share bill runs and the outbox through PostgreSQL row locks")]


def test_one_worker_three_workers_and_a_killed_worker_give_the_same_books():
    result = scale_check.scale_check(TEST_DATABASE, customers=8, workers=(1, 3), kill=True, seed=5)
    configs = {c["config"]: c for c in result["configs"]}
    assert set(configs) == {"1_workers", "3_workers", "3_workers_one_killed"}
    assert configs["3_workers_one_killed"]["workers_killed"] >= 1
    assert result["ok"], [(c["config"], c["problems"]) for c in result["configs"] if c["problems"]]
