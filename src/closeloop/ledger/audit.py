"""Verify the ledger's hash chain: find every changed, removed or inserted row and name it.

Each posted entry's hash covers its content, its lines and the previous
entry's hash (per entity). Verification replays the chain from the first
entry: a changed entry or line breaks that entry's hash, a removed entry
leaves a gap in the sequence, an inserted entry or line either breaks a hash
or lies beyond the chain head. The maintained balances are checked against
the lines too, since reports read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from closeloop.ledger.model import GENESIS_HASH, entry_hash, entry_number
from closeloop.ledger.service import entities_for


@dataclass(frozen=True, slots=True)
class Problem:
    entity: str
    record: str
    kind: str  # changed, removed, inserted, orphan_line, balance_mismatch
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"entity": self.entity, "record": self.record, "kind": self.kind, "detail": self.detail}


def verify_ledger(uow: Any, entity: str | None = None, chunk: int = 20000) -> dict[str, Any]:
    problems: list[Problem] = []
    checked = 0
    for ent in entities_for(uow, entity):
        code = ent.code
        codes = {int(r[0]): r[1] for r in uow.all("SELECT id, code FROM ledger_account WHERE entity = ?", (code,))}
        head = uow.one("SELECT seq, hash FROM ledger_chain WHERE entity = ?", (code,))
        head_seq, head_hash = (int(head[0]), head[1]) if head else (0, GENESIS_HASH)
        prev = GENESIS_HASH
        expected_seq = 1
        last = 0
        while True:
            entries = uow.all(
                "SELECT id, seq, date, memo, manual, reverses_id, hash FROM journal_entry"
                " WHERE entity = ? AND seq > ? ORDER BY seq LIMIT ?", (code, last, chunk))
            if not entries:
                break
            ids = [int(e[0]) for e in entries]
            lines: dict[int, list[tuple[str, int, str, int]]] = {}
            for entry_id, account_id, amount, cur, txn in uow.all(
                "SELECT entry_id, account_id, amount, currency, txn_amount FROM journal_line"
                " WHERE entry_id >= ? AND entry_id <= ? ORDER BY entry_id, line_no", (min(ids), max(ids))):
                lines.setdefault(int(entry_id), []).append(
                    (codes.get(int(account_id), f"?{account_id}"), int(amount), cur, int(txn)))
            for entry_id, seq, day, memo, manual, reverses, stored in entries:
                seq = int(seq)
                number = entry_number(code, seq)
                checked += 1
                while expected_seq < seq:
                    problems.append(Problem(code, entry_number(code, expected_seq), "removed",
                                            f"entry {expected_seq} of the chain is missing"))
                    expected_seq += 1
                if seq > head_seq:
                    problems.append(Problem(code, number, "inserted",
                                            f"entry lies beyond the chain head (seq {head_seq})"))
                recomputed = entry_hash(prev, code, seq, day, memo, bool(manual),
                                        None if reverses is None else int(reverses), lines.get(int(entry_id), []))
                if recomputed != stored:
                    problems.append(Problem(code, number, "changed",
                                            "content or lines differ from what was posted (hash mismatch)"))
                prev = stored
                expected_seq = seq + 1
                last = seq
        while expected_seq <= head_seq:
            problems.append(Problem(code, entry_number(code, expected_seq), "removed",
                                    f"entry {expected_seq} of the chain is missing"))
            expected_seq += 1
        if head_seq and prev != head_hash and not any(p.entity == code for p in problems):
            problems.append(Problem(code, entry_number(code, head_seq), "changed", "chain head hash differs"))
        for entry_id, n in uow.all(
            "SELECT l.entry_id, COUNT(*) FROM journal_line l LEFT JOIN journal_entry e ON e.id = l.entry_id"
            " WHERE e.id IS NULL AND l.account_id IN (SELECT id FROM ledger_account WHERE entity = ?)"
            " GROUP BY l.entry_id", (code,)):
            problems.append(Problem(code, f"entry id {entry_id}", "orphan_line",
                                    f"{n} journal line(s) without their entry"))
        stored_rows = {(p, int(a), c): int(v) for p, a, c, v in uow.all(
            "SELECT period, account_id, currency, amount FROM ledger_balance WHERE entity = ?", (code,))}
        actual_rows = {(p, int(a), c): int(v) for p, a, c, v in uow.all(
            "SELECT e.period, l.account_id, l.currency, SUM(l.amount) FROM journal_line l"
            " JOIN journal_entry e ON e.id = l.entry_id WHERE e.entity = ?"
            " GROUP BY e.period, l.account_id, l.currency", (code,))}
        for key in sorted(set(stored_rows) | set(actual_rows)):
            stored_amount, actual_amount = stored_rows.get(key, 0), actual_rows.get(key, 0)
            if stored_amount != actual_amount:
                period, account_id, cur = key
                problems.append(Problem(code, f"balance {period} {codes.get(account_id, account_id)} {cur}",
                                        "balance_mismatch",
                                        f"stored {stored_amount}, lines sum to {actual_amount}"))
    return {"ok": not problems, "entries_checked": checked, "problems": [p.to_dict() for p in problems]}
