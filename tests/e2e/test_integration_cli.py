"""The integration and control CLI end to end: events, exceptions, recon (exit code 1 on breaks), explain,
audit, webhooks; and the worker process (drains and exits, and stops gracefully on SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import closeloop
from closeloop.cli.main import app as cli_app
from tests.integration.test_webhooks_delivery import secret_key_on_postgresql  # noqa: F401 - autouse

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def run(db, *args):
    """The CLI in-process (fast); exit codes and output as a script sees them."""
    return runner.invoke(cli_app, ["--db", db, "--user", "ops", *args], catch_exceptions=False)


def jrun(db, *args):
    result = run(db, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(autouse=True)
def wide_console():
    from closeloop.cli.main import out

    before = out.width
    out.width = 240  # tables unwrapped, as on a wide terminal
    yield
    out.width = before


@pytest.fixture
def db(db_url):
    run(db_url, "do", "entity.create", '{"code":"US01","name":"Acme","country":"US","currency":"USD"}')
    run(db_url, "do", "journal.post", json.dumps({"entity": "US01", "date": "2026-01-05", "memo": "m", "lines": [
        {"account": "cash", "debit": "5.00"}, {"account": "3000", "credit": "5.00"}]}))
    return db_url


def test_a_dead_event_through_the_events_and_exceptions_commands(db):
    run(db, "do", "probe.configure", '{"probe":"erp","broken":true}')
    event_id = jrun(db, "do", "probe.emit", '{"probe":"erp"}')["event"]
    for _ in range(4):  # each retry makes the backing-off event due now; the fifth failure dead-letters it
        assert run(db, "events", "retry", str(event_id), "--reason", "try").exit_code == 0
    shown = jrun(db, "events", "show", str(event_id))
    assert (shown["status"], shown["attempts"]) == ("dead", 5) and len(shown["actions"]) == 4
    listed = jrun(db, "events", "list", "--status", "dead")
    assert [e["id"] for e in listed["items"]] == [event_id]
    text = run(db, "events", "list", "--type", "probe.pinged").output
    assert "dead" in text and "1 of 1" in text
    queue = jrun(db, "exceptions", "list", "--kind", "sync_failed")
    [item] = queue["items"]
    assert item["record"] == {"event": str(event_id)} and item["owner_role"] == "implementation"
    shown_text = run(db, "exceptions", "show", str(item["id"])).output
    assert "sync_failed" in shown_text and "How to resolve" in shown_text  # the playbook, rendered
    assert run(db, "exceptions", "assign", str(item["id"]), "bob").exit_code == 0
    assert jrun(db, "exceptions", "show", str(item["id"]))["assignee"] == "bob"
    refused = run(db, "exceptions", "resolve", str(item["id"]), "release", "--reason", "x")
    assert refused.exit_code == 3
    assert run(db, "exceptions", "resolve", str(item["id"]), "accept", "--reason", "obsolete feed").exit_code == 0
    assert jrun(db, "events", "show", str(event_id))["status"] == "skipped"
    assert jrun(db, "exceptions", "list", "--status", "all")["count"] == 1
    audit = jrun(db, "audit", "--command", "event.retry")
    assert audit["count"] == 4 and {i["actor"] for i in audit["items"]} == {"ops"}
    assert "event.retry" in run(db, "audit", "--actor", "ops").output
    assert jrun(db, "events", "backlog")["dead"] == 0


def test_recon_run_exits_1_on_breaks_and_explain_shows_lineage(db):
    rules = ["--rule", "ledger_balances_vs_lines", "--rule", "ledger_audit_chain"]
    clean = run(db, "recon", "run", *rules, "--json")
    assert clean.exit_code == 0 and json.loads(clean.output)["breaks"] == []
    app = closeloop.open(db, migrate=False)
    with app.unit_of_work() as uow:
        uow.execute("UPDATE journal_line SET amount = 700 WHERE line_no = 1")
    app.close()
    found = run(db, "recon", "run", *rules)
    assert found.exit_code == 1
    assert "amount_difference" in found.output and "ledger_balances_vs_lines" in found.output
    shown = jrun(db, "recon", "show", "--rule", "ledger_balances_vs_lines")
    assert shown["breaks"][0]["left"] == "5.00" and shown["breaks"][0]["right"] == "7.00"
    rules_text = run(db, "recon", "rules").output
    assert "contract_vs_billed" in rules_text and "ledger_audit_chain" in rules_text
    explained = run(db, "explain", "journal:JE-US01-0000001#1")
    assert explained.exit_code == 0
    assert "journal_line JE-US01-0000001#1" in explained.output and "journal.post" in explained.output
    lineage = jrun(db, "explain", "journal:JE-US01-0000001", "--forward")
    assert lineage["sources"][0]["event"] == "journal.post"
    assert run(db, "explain", "nonsense").exit_code == 2


def test_webhooks_commands_with_a_local_receiver(db):
    from closeloop.integration.webhooks import verify_signature
    from tests.integration.test_webhooks_delivery import Receiver

    receiver = Receiver()
    try:
        added = jrun(db, "webhooks", "add", "crm", receiver.url, "--event", "probe.pinged")
        secret = added["secret"]
        assert len(secret) == 64
        run(db, "do", "probe.emit", '{"probe":"p"}')
        assert jrun(db, "webhooks", "send")["sent"] == 1
        assert len(receiver.requests) == 1
        req = receiver.requests[0]
        assert verify_signature(secret, req["body"], req["headers"]["X-Closeloop-Signature"])
        [d] = jrun(db, "webhooks", "deliveries")["items"]
        assert d["status"] == "delivered"
        listed = run(db, "webhooks", "list")
        assert "crm" in listed.output and secret not in listed.output
        assert jrun(db, "webhooks", "list")["items"][0]["secret"] == "****" + secret[-4:]  # shown once, then masked
        audit = run(db, "audit", "--json")
        assert "webhook.subscribe" in audit.output and secret not in audit.output
        # a lost secret is replaced, not shown again
        rotated = jrun(db, "do", "webhook.rotate_secret", '{"name":"crm"}')["secret"]
        assert rotated != secret and rotated not in run(db, "audit", "--json").output
        run(db, "do", "probe.emit", '{"probe":"p"}')
        assert jrun(db, "webhooks", "send")["sent"] == 1
        req = receiver.requests[1]
        assert verify_signature(rotated, req["body"], req["headers"]["X-Closeloop-Signature"])
        assert not verify_signature(secret, req["body"], req["headers"]["X-Closeloop-Signature"])
        assert jrun(db, "webhooks", "remove", "crm")["active"] is False
    finally:
        receiver.close()


def _worker(db, *extra):
    env = dict(os.environ)
    env.pop("CLOSELOOP_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "closeloop.cli", "--db", db, "worker", "--poll", "0.1", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_worker_drains_the_outbox_and_stops_gracefully_on_sigterm(db):
    app = closeloop.open(db, migrate=False, dispatch="worker")  # commands leave delivery to workers
    for i in range(5):
        app.do("probe.emit", {"probe": f"p{i}"})
    with app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM event WHERE status = 'pending'") == 5
    drained = _worker(db, "--exit-when-idle")
    _, stderr = drained.communicate(timeout=120)
    assert drained.returncode == 0, stderr
    with app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM event WHERE status = 'pending'") == 0
        assert uow.scalar("SELECT SUM(delivered) FROM probe") == 5
    assert "'delivered': 5" in stderr

    running = _worker(db)
    deadline = time.time() + 60
    app.do("probe.emit", {"probe": "late"})
    while time.time() < deadline:  # the running worker picks up a new event by itself
        if app.query("probe", {"probe": "late"})["delivered"] == 1:
            break
        time.sleep(0.2)
    assert app.query("probe", {"probe": "late"})["delivered"] == 1
    running.send_signal(signal.SIGTERM)
    _, stderr = running.communicate(timeout=30)
    assert running.returncode == 0, stderr
    assert "stopped" in stderr
    app.close()
