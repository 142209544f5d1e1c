"""The opt-in fault points of closeloop.core.faults: ``CLOSELOOP_FAULT=<point>:<n>`` SIGKILLs a real
closeloop process at the n-th pass, and what it committed before stays consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from closeloop.app import App
from closeloop.core import faults
from closeloop.scenarios.fresh import fresh_database
from tests.conftest import TEST_DATABASE

pytestmark = pytest.mark.soak

SCRIPT = """
import sys
from closeloop.app import App
app = App(sys.argv[1], migrate=False)
app.dispatcher.configure(lease_seconds=1.0)  # on PostgreSQL a killed dispatcher's claims expire in a second
app.do("entity.create", {"code": "US01", "name": "Acme", "country": "US", "currency": "USD"})
for n in range(1, 6):
    app.do("journal.post", {"entity": "US01", "date": "2026-01-05", "memo": f"j{n}", "lines": [
        {"account": "cash", "debit": f"{n}.00"}, {"account": "4000", "credit": f"{n}.00"}]})
print("finished")
"""


@pytest.mark.parametrize("point, n", [("uow.commit", 7), ("uow.emit", 3), ("dispatch.after_handler", 1)])
def test_a_process_killed_at_a_fault_point_keeps_exactly_what_it_committed(point, n):
    with fresh_database(TEST_DATABASE) as url:
        env = {**os.environ, "CLOSELOOP_FAULT": f"{point}:{n}"}
        proc = subprocess.run([sys.executable, "-c", SCRIPT, url], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        assert "finished" not in proc.stdout
        app = App(url, migrate=False)
        try:
            with app.unit_of_work(write=False) as uow:
                memos = [r[0] for r in uow.all("SELECT memo FROM journal_entry ORDER BY seq")]
                audited = uow.scalar("SELECT COUNT(*) FROM audit_log WHERE command = 'journal.post' AND outcome = 'ok'")
            # the journals that survived are a prefix of those posted, and exactly those the audit log records
            assert memos == [f"j{k}" for k in range(1, len(memos) + 1)] and len(memos) < 5
            assert audited == len(memos)
            tb = app.query("trial_balance", {"entity": "US01"}) if memos else {"balanced": True, "accounts": {}}
            assert tb["balanced"]
            posted = sum(range(1, len(memos) + 1))
            assert tb["accounts"].get("4000", "0.00") == (f"-{posted}.00" if posted else "0.00")
            assert app.query("ledger_verify", {})["ok"]
            deadline = time.monotonic() + 30
            while True:  # a restart delivers whatever the killed process left in the outbox
                app.dispatch()
                with app.unit_of_work(write=False) as uow:
                    left = uow.scalar("SELECT COUNT(*) FROM event WHERE status <> 'done'")
                if left == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert left == 0
            with app.unit_of_work(write=False) as uow:
                assert uow.scalar("SELECT COUNT(*) FROM event WHERE type = 'journal.posted'") == len(memos)
        finally:
            app.close()


def test_fault_specs_and_matching():
    assert faults.parse("uow.commit:3") == ("uow.commit", 3)
    assert faults.parse("dispatch.*:1") == ("dispatch.*", 1)
    for bad in ("uow.commit", "uow.commit:0", ":3", "uow.commit:x"):
        with pytest.raises(ValueError):
            faults.parse(bad)
    assert faults.matches("*", "uow.emit") and faults.matches("dispatch.*", "dispatch.claimed")
    assert not faults.matches("uow.commit", "uow.committed")


def test_no_hook_is_installed_unless_asked():
    assert "CLOSELOOP_FAULT" not in os.environ
    assert faults.HOOK is None
