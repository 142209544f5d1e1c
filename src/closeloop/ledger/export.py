"""Export the ledger as a plain-text journal that hledger, ledger-cli or beancount read unchanged.

Amounts are written in each entity's functional currency (the currency the
ledger balances in); a line booked in another currency carries its
transaction amount as a comment. Account names are ``<type>:<entity>:<code>``
so that one file can hold several entities and the tools classify accounts
by their top-level name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TextIO

from closeloop.core.errors import ValidationError
from closeloop.core.money import format_minor
from closeloop.ledger.reports import _by_id
from closeloop.ledger.service import entities_for

_HLEDGER_ROOT = {"asset": "assets", "liability": "liabilities", "equity": "equity", "revenue": "revenues",
                 "expense": "expenses"}
_BEAN_ROOT = {"asset": "Assets", "liability": "Liabilities", "equity": "Equity", "revenue": "Income",
              "expense": "Expenses"}
FORMATS = ("hledger", "ledger", "beancount")


def _clean(text: str) -> str:
    return " ".join((text or "").replace(";", ",").split())


def _bean_string(text: str) -> str:
    return '"' + " ".join((text or "").split()).replace("\\", "\\\\").replace('"', '\\"') + '"'


def export_journal(uow: Any, out: TextIO, fmt: str = "hledger", entity: str | None = None) -> int:
    """Write the journal; returns the number of entries written."""
    if fmt not in FORMATS:
        raise ValidationError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}", field="format")
    count = 0
    for ent in entities_for(uow, entity):
        by_id = _by_id(uow, ent.code)
        ccy = ent.currency
        if fmt == "beancount":
            roots = _BEAN_ROOT
            first = uow.scalar("SELECT MIN(date) FROM journal_entry WHERE entity = ?", (ent.code,))
            out.write(f'; closeloop export: entity {ent.code} ({ent.name}), functional currency {ccy}\n')
            if first:
                for acct in sorted(by_id.values(), key=lambda a: a.code):
                    name = f"{roots[acct.type]}:{ent.code}:{acct.code}"
                    out.write(f"{first} open {name} {ccy}\n")
            out.write("\n")
        else:
            roots = _HLEDGER_ROOT
            out.write(f"; closeloop export: entity {ent.code} ({_clean(ent.name)}), functional currency {ccy}\n\n")
        names = {aid: f"{roots[a.type]}:{ent.code}:{a.code}" for aid, a in by_id.items()}
        for block in _entries(uow, ent.code):
            count += 1
            number, day, memo, lines = block
            if fmt == "beancount":
                out.write(f"{day} * {_bean_string(number)} {_bean_string(memo)}\n")
            else:
                out.write(f"{day} * {number} | {_clean(memo)}\n")
            for account_id, amount, cur, txn in lines:
                text = f"    {names[account_id]}  {format_minor(amount, ccy)} {ccy}"
                if cur != ccy:
                    text += f"  ; {format_minor(txn, cur)} {cur}"
                out.write(text + "\n")
            out.write("\n")
    return count


def _entries(uow: Any, entity: str, chunk: int = 20000) -> Iterator[tuple[str, str, str, list[tuple[int, int, str, int]]]]:
    """Entries in chain order with their lines, read in chunks to keep memory flat."""
    last_seq = 0
    while True:
        rows = uow.all(
            "SELECT e.seq, e.date, e.memo, l.account_id, l.amount, l.currency, l.txn_amount"
            " FROM journal_entry e JOIN journal_line l ON l.entry_id = e.id"
            " WHERE e.entity = ? AND e.seq > ? AND e.seq <= ? ORDER BY e.seq, l.line_no",
            (entity, last_seq, last_seq + chunk),
        )
        if not rows:
            more = uow.scalar("SELECT 1 FROM journal_entry WHERE entity = ? AND seq > ? LIMIT 1", (entity, last_seq))
            if not more:
                return
            last_seq += chunk
            continue
        current: int | None = None
        lines: list[tuple[int, int, str, int]] = []
        head: tuple[str, str] = ("", "")
        for seq, day, memo, account_id, amount, cur, txn in rows:
            if seq != current:
                if current is not None:
                    yield (f"JE-{entity}-{current:07d}", head[0], head[1], lines)
                current, lines, head = seq, [], (day, memo)
            lines.append((int(account_id), int(amount), cur, int(txn)))
        if current is not None:
            yield (f"JE-{entity}-{current:07d}", head[0], head[1], lines)
        last_seq += chunk
