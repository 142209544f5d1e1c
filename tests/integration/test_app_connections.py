"""Connections: the opening thread keeps one; other threads give theirs back after each unit of work."""

from __future__ import annotations

import threading


def test_worker_threads_do_not_keep_connections(app, us01):
    results = []

    def work():
        results.append(app.query("balance", {"role": "cash", "entity": "US01"})["amount"])

    threads = [threading.Thread(target=work) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["0.00"] * 20
    assert len(app._connections) <= 1  # only the home thread's
    pool = app.engine.pool
    if hasattr(pool, "checkedout"):
        assert pool.checkedout() <= 1
