"""The close, KPI, waves and FX commands of the CLI."""

from __future__ import annotations

import json

from tests.e2e.test_cli import cli


def test_close_status_run_and_kpis(db_url):
    cli("do", "entity.create", '{"code":"US01","name":"Acme","country":"US","currency":"USD"}', db=db_url, check=True)
    status = cli("close", "status", "US01", "2026-01", "--json", db=db_url, check=True)
    gates = {g["gate"]: g["passed"] for g in json.loads(status.stdout)["gates"]}
    assert set(gates) >= {"bill_run_complete", "events_delivered", "manual_journals_approved"}
    # the system clock is past January 2026 plus the late-usage window: every gate passes
    run = cli("close", "run", "US01", "2026-01", "--json", db=db_url)
    assert run.returncode == 0 and json.loads(run.stdout)["locked"] is True
    kpis = cli("kpis", "--period", "2026-01", "--json", db=db_url, check=True)
    assert json.loads(kpis.stdout)["rows"][0]["close_cycle_days"] == "0"
    waves = cli("waves", "status", db=db_url, check=True)
    assert "no wave plan loaded" in waves.stdout
    assert cli("fx", "rate", "EUR", "USD", "2026-01-01", "1.1", db=db_url).returncode == 0
