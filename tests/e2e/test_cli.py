"""The CLI end to end, as a script would use it: output and documented exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_DATABASE

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, db: str | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "closeloop.cli", *(["--db", db] if db else []), *args]
    env = dict(os.environ)
    env.pop("CLOSELOOP_DATABASE_URL", None)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=check)


@pytest.fixture
def db(db_url):
    return db_url


def test_exit_codes(db, tmp_path):
    assert cli("do", "entity.create", '{"code":"US01","name":"Acme","country":"US","currency":"USD"}',
               db=db).returncode == 0
    ok = cli("do", "journal.post", json.dumps({"entity": "US01", "date": "2026-01-05", "memo": "m", "lines": [
        {"account": "cash", "debit": "5.00"}, {"account": "3000", "credit": "5.00"}]}), "--json", db=db)
    assert ok.returncode == 0 and json.loads(ok.stdout)["number"] == "JE-US01-0000001"
    refused = cli("do", "journal.post", json.dumps({"entity": "US01", "date": "2026-01-05", "lines": [
        {"account": "cash", "debit": "5.00"}, {"account": "3000", "credit": "4.00"}]}), "--json", db=db)
    assert refused.returncode == 3
    assert json.loads(refused.stdout)["error"]["code"] == "unbalanced"
    assert cli("ledger", "no-such-command", db=db).returncode == 2
    assert cli("do", "journal.post", "{not json", db=db).returncode == 3
    tb = cli("ledger", "trial-balance", "--entity", "US01", "--json", db=db, check=True)
    assert json.loads(tb.stdout)["accounts"] == {"1000": "5.00", "3000": "-5.00"}
    verify = cli("ledger", "verify", "--json", db=db)
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True
    closed = cli("period", "close", "US01", "2026-01", "--json", db=db)
    assert closed.returncode == 0 and json.loads(closed.stdout)["status"] == "closed"
    out = tmp_path / "x.journal"
    assert cli("ledger", "export", "--format", "hledger", "-o", str(out), db=db).returncode == 0
    assert "assets:US01:1000  5.00 USD" in out.read_text()
    beancount = cli("ledger", "export", "--format", "beancount", db=db, check=True).stdout
    assert "Assets:US01:1000  5.00 USD" in beancount


def test_verify_exits_1_on_tampering(db):
    cli("do", "entity.create", '{"code":"US01","name":"Acme","country":"US","currency":"USD"}', db=db, check=True)
    cli("do", "journal.post", json.dumps({"entity": "US01", "date": "2026-01-05", "lines": [
        {"account": "cash", "debit": "5.00"}, {"account": "3000", "credit": "5.00"}]}), db=db, check=True)
    import closeloop

    app = closeloop.open(db, migrate=False)
    with app.unit_of_work() as uow:
        uow.execute("UPDATE journal_line SET amount = 600 WHERE line_no = 1")
    app.close()
    result = cli("ledger", "verify", db=db)
    assert result.returncode == 1
    assert "changed US01 JE-US01-0000001" in result.stdout


def test_scenario_run_json_report_and_exit_code(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("""
scenario: good
steps:
  - at: "2026-01-01"
    do: entity.create
    with: {code: US01, name: Acme, country: US, currency: USD}
  - expect: balance
    where: {role: cash, entity: US01}
    equals: {amount: "0.00"}
""")
    bad = tmp_path / "bad.yaml"
    bad.write_text("""
scenario: bad
steps:
  - at: "2026-01-01"
    do: entity.create
    with: {code: US01, name: Acme, country: US, currency: USD}
  - expect: balance
    where: {role: cash, entity: US01}
    equals: {amount: "1.00"}
  - do: billing.teleport
    with: {}
""")
    db = TEST_DATABASE
    result = cli("scenario", "run", str(good), str(bad), "--json", db=db)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert (report["passed"], report["failed"]) == (1, 1)
    failed = report["scenarios"][1]
    assert failed["name"] == "bad" and failed["passed"] is False
    assert failed["failures"] == [{"step": 2, "expected": {"amount": "1.00"}, "actual": {"amount": "0.00"},
                                   "message": "balance: amount: expected '1.00', got '0.00'"}]
    assert cli("scenario", "run", str(good), db=db).returncode == 0
    assert cli("scenario", "run", str(tmp_path / "nope.yaml"), db=db).returncode == 2
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("scenario: u\nsteps:\n  - do: billing.teleport\n    with: {}\n")
    res = cli("scenario", "run", str(unknown), "--json", db=db)
    assert res.returncode == 1
    assert "unknown command 'billing.teleport'" in json.loads(res.stdout)["scenarios"][0]["failures"][0]["message"]
