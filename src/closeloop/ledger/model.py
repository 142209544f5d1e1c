"""The general ledger's pure core: journal drafts, their validation, and the audit-chain hash.

No database, no clock: dates come in as ISO strings. Amounts are integer minor
units of the entity's functional currency, debit positive and credit negative;
a line in another currency also carries its transaction amount.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from closeloop.core.errors import UnbalancedError, ValidationError
from closeloop.core.money import allocate, format_minor

ACCOUNT_TYPES = ("asset", "liability", "equity", "revenue", "expense")
# Debit-normal types; the others are credit-normal.
DEBIT_NORMAL = frozenset({"asset", "expense"})
PROFIT_AND_LOSS = frozenset({"revenue", "expense"})

ACCOUNT_ROLES = (
    "cash",
    "accounts_receivable",
    "unbilled_receivable",
    "unapplied_cash",
    "customer_credit",
    "payment_clearing",
    "payment_fees",
    "tax_payable",
    "deferred_revenue",
    "revenue",
    "usage_revenue",
    "services_revenue",
    "intercompany_receivable",
    "intercompany_payable",
    "bad_debt_expense",
    "fx_gain_loss",
    "retained_earnings",
    # beyond SCENARIOS.md: the two sides of an intercompany charge
    "intercompany_cost",
    "intercompany_revenue",
)

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    entity: str
    code: str
    name: str
    type: str
    role: str | None


@dataclass(frozen=True, slots=True)
class LineDraft:
    """One journal line. ``amount`` is in the functional currency (debit positive).

    ``currency``/``txn_amount`` give the transaction currency and amount when it
    differs from the functional currency; otherwise they are left None.
    """

    account: str
    amount: int
    currency: str | None = None
    txn_amount: int | None = None
    memo: str | None = None
    dimensions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """A journal entry ready to post. ``date`` is ISO ``YYYY-MM-DD``."""

    entity: str
    date: str
    memo: str
    lines: tuple[LineDraft, ...]
    manual: bool = False
    reference: str | None = None
    reverses: int | None = None


def check_entry(draft: EntryDraft, currency: str, *, record: str) -> None:
    """Every problem of a draft that needs no database: lines, control characters, balance."""
    lines = draft.lines
    if len(lines) < 2:
        raise ValidationError(f"{record}: a journal entry needs at least two lines", record=record, field="lines")
    if _has_control(draft.memo):
        raise ValidationError(f"{record}: memo contains control characters", record=record, field="memo")
    total = 0
    debit = 0
    for line in lines:
        amount = line.amount
        total += amount
        if amount > 0:
            debit += amount
    if total != 0:
        credit = debit - total
        raise UnbalancedError(
            f"{record}: debits {format_minor(debit, currency)} and credits {format_minor(credit, currency)}"
            f" {currency} do not balance (difference {format_minor(total, currency)})",
            record=record,
            debits=format_minor(debit, currency),
            credits=format_minor(credit, currency),
            currency=currency,
        )


def _has_control(text: str | None) -> bool:
    return bool(text) and not text.replace("\t", " ").isprintable()  # type: ignore[union-attr]


def entry_number(entity: str, seq: int) -> str:
    return f"JE-{entity}-{seq:07d}"


def entry_hash(
    prev_hash: str,
    entity: str,
    seq: int,
    date: str,
    memo: str,
    manual: bool,
    reverses: int | None,
    lines: Sequence[tuple[str, int, str, int]],
) -> str:
    """SHA-256 over the entry's content and the previous entry's hash (per entity).

    ``lines`` are (account code, amount, currency, transaction amount). Fields are
    joined with ASCII separators, which a memo cannot contain (see check_entry).
    """
    parts = [prev_hash, entity, str(seq), date, memo, "1" if manual else "0", "" if reverses is None else str(reverses)]
    for code, amount, currency, txn in lines:
        parts.append(f"{code}\x1f{amount}\x1f{currency}\x1f{txn}")
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()


def normal_balance(account_type: str, amount: int) -> int:
    """A debit-positive balance shown on the account's normal side (credit-normal accounts flip sign)."""
    return amount if account_type in DEBIT_NORMAL else -amount


def convert_balanced(amounts: list[int], convert: Callable[[int], int]) -> list[int]:
    """Convert a balanced set of lines (debit positive) to another currency so it stays balanced.

    Each side's total is converted once (ROUND_HALF_UP) and allocated back to that side's
    lines in proportion to their amounts by the largest-remainder method; both sides have
    the same total, so the converted lines balance exactly and each line is within one
    minor unit of its own conversion. Unbalanced input is converted line by line.
    """
    if sum(amounts) != 0:
        return [convert(a) for a in amounts]
    debit_total = sum(a for a in amounts if a > 0)
    if debit_total == 0:
        return [0] * len(amounts)
    converted_total = convert(debit_total)
    out = [0] * len(amounts)
    for sign in (1, -1):
        index = [i for i, a in enumerate(amounts) if a * sign > 0]
        parts = allocate(converted_total, [abs(amounts[i]) for i in index])
        for i, part in zip(index, parts, strict=True):
            out[i] = sign * part
    return out
