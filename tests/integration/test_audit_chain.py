"""`ledger verify` detects any changed, removed or inserted row and names it."""

from __future__ import annotations

from tests.conftest import post


def build(app):
    for i in range(1, 6):
        post(app, "US01", f"2026-01-{i + 1:02d}", ("cash", "debit", f"{i}.00"), ("4900", "credit", f"{i}.00"))


def test_intact_ledger_verifies(app, us01):
    build(app)
    assert app.query("ledger_verify", {}) == {"ok": True, "entries_checked": 5, "problems": []}


def test_changed_line_is_named(app, us01):
    build(app)
    with app.unit_of_work() as uow:
        entry_id = uow.scalar("SELECT id FROM journal_entry WHERE seq = 3")
        uow.execute("UPDATE journal_line SET amount = amount + 100 WHERE entry_id = ? AND line_no = 1", (entry_id,))
    result = app.query("ledger_verify", {})
    kinds = {(p["record"], p["kind"]) for p in result["problems"]}
    assert ("JE-US01-0000003", "changed") in kinds
    assert any(p["kind"] == "balance_mismatch" for p in result["problems"])  # the lines no longer match balances
    assert result["ok"] is False


def test_changed_memo_is_named(app, us01):
    build(app)
    with app.unit_of_work() as uow:
        uow.execute("UPDATE journal_entry SET memo = 'edited' WHERE seq = 2")
    problems = app.query("ledger_verify", {})["problems"]
    assert problems == [{"entity": "US01", "record": "JE-US01-0000002", "kind": "changed",
                         "detail": "content or lines differ from what was posted (hash mismatch)"}]


def test_removed_entry_is_named(app, us01):
    build(app)
    with app.unit_of_work() as uow:
        entry_id = uow.scalar("SELECT id FROM journal_entry WHERE seq = 4")
        uow.execute("DELETE FROM journal_line WHERE entry_id = ?", (entry_id,))
        uow.execute("DELETE FROM journal_entry WHERE id = ?", (entry_id,))
    problems = app.query("ledger_verify", {})["problems"]
    assert {"entity": "US01", "record": "JE-US01-0000004", "kind": "removed",
            "detail": "entry 4 of the chain is missing"} in problems


def test_inserted_entry_is_named(app, us01):
    build(app)
    with app.unit_of_work() as uow:
        uow.execute(
            "INSERT INTO journal_entry (id, entity, seq, date, period, memo, manual, source, actor, posted_at, hash)"
            " VALUES (999, 'US01', 6, '2026-01-09', '2026-01', 'forged', ?, 'x', 'x', 'x', ?)", (True, "f" * 64))
    problems = app.query("ledger_verify", {})["problems"]
    assert {(p["record"], p["kind"]) for p in problems} >= {("JE-US01-0000006", "inserted"),
                                                             ("JE-US01-0000006", "changed")}


def test_tampered_balance_row_is_named(app, us01):
    build(app)
    with app.unit_of_work() as uow:
        uow.execute("UPDATE ledger_balance SET amount = amount - 1 WHERE currency = 'USD' AND amount > 0")
    problems = app.query("ledger_verify", {})["problems"]
    assert problems == [{"entity": "US01", "record": "balance 2026-01 1000 USD", "kind": "balance_mismatch",
                         "detail": "stored 1499, lines sum to 1500"}]
