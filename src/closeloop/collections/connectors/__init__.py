"""Payment intake connectors: bank statements (camt.053/054, MT940, CSV) and provider webhooks (Stripe).

Every bank format parses into the same frozen records, :class:`Statement` and
:class:`StatementLine` (one line per transaction: a batched camt entry gives one
line per ``TxDtls``), so cash application never sees the file format. Parsers
are pure: bytes in, records out; a file that cannot be read is a
``validation_error`` naming the file, the element or line, and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One transaction of a bank statement.

    amount: positive minor units; direction: ``credit`` (money in) or ``debit``;
    reversal: the bank reversed an earlier entry (camt RvslInd, MT940 RC/RD);
    remittance: unstructured texts; references: structured ones (creditor references,
    referred document numbers); end_to_end: the payer's end-to-end id;
    bank_reference: the bank's own reference (AcctSvcrRef, MT940 bank reference);
    entry / detail: position in the file (entry number, transaction within a batch).
    """

    entry: int
    detail: int
    booking_date: str
    value_date: str | None
    direction: str
    amount: int
    currency: str
    reversal: bool = False
    status: str = "BOOK"
    remittance: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    end_to_end: str | None = None
    bank_reference: str | None = None
    payer_name: str | None = None
    payer_account: str | None = None
    bank_code: str | None = None
    batch_size: int = 1
    original_amount: int | None = None
    original_currency: str | None = None

    @property
    def text(self) -> str:
        return " ".join(t for t in self.remittance if t)


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement (camt.053 Stmt, camt.054 Ntfctn, one MT940 message) of one account."""

    format: str
    statement_id: str
    account: str
    currency: str | None
    lines: tuple[StatementLine, ...]
    opening_balance: int | None = None
    closing_balance: int | None = None
    created: str | None = None
    message_id: str | None = None
    version: str | None = None
    servicer: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())
