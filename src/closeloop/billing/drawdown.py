"""Prepaid credits (wallets): balances and draw-downs, pure (no database, no clock).

A wallet holds credits a customer bought, in one currency, at a rate (the value of one credit; 1
for a wallet counted in money). Its balance is kept in minor units of the currency; credits are
shown as ``balance / rate``. A wallet pays invoices **after tax**, like a prepayment (Lago applies
prepaid credits after tax; the purchase itself is an advance payment and is not taxed): at issue,
each invoice's eligible amount — its usage lines with their tax (``applies_to: usage``, default) or
its whole total (``all``) — is drawn from the customer's wallets, those expiring first first, never
more than a wallet holds, never more than the invoice still owes. What is not covered stays due.

:func:`draw` is that rule; it never takes a balance below zero (a property test holds it to that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

APPLIES_TO = ("usage", "all")


@dataclass(frozen=True, slots=True)
class Wallet:
    """A customer's prepaid credits. ``threshold``/``topup_credits``: an automatic top-up of that many
    credits whenever a draw-down leaves the balance at or below the threshold (minor units)."""

    wallet_id: str
    customer_id: int
    entity: str
    currency: str
    rate: Decimal
    balance: int
    applies_to: str = "usage"
    expires: date | None = None
    threshold: int | None = None
    topup_credits: Decimal | None = None
    status: str = "active"
    created: date | None = None

    def usable_on(self, day: date) -> bool:
        return self.status == "active" and self.balance > 0 and (self.expires is None or day < self.expires)

    def credits(self) -> Decimal:
        return credits_of(self.balance, self.rate, self.currency)


def credits_of(minor: int, rate: Decimal, currency: str) -> Decimal:
    from closeloop.core.money import exponent

    value = Decimal(minor).scaleb(-exponent(currency)) / rate
    return value.quantize(Decimal("0.00001"), rounding=ROUND_HALF_UP).normalize()


def amount_of(credits: Decimal, rate: Decimal, currency: str) -> int:
    """The money value of ``credits`` in minor units, rounded half-up to the currency (Lago rounds paid top-ups
    to the cent)."""
    from closeloop.core.money import exponent

    return int((credits * rate).scaleb(exponent(currency)).to_integral_value(rounding=ROUND_HALF_UP))


def order(wallets: Sequence[Wallet]) -> list[Wallet]:
    """The order wallets pay in: those expiring first, then the oldest, then by id."""
    return sorted(wallets, key=lambda w: (w.expires or date.max, w.created or date.min, w.wallet_id))


def draw(wallets: Sequence[Wallet], eligible: int, due: int, day: date) -> tuple[list[Wallet], list[tuple[str, int]]]:
    """Draw up to ``min(eligible, due)`` from the wallets usable on ``day``: (the wallets after, [(wallet id,
    amount drawn)]). Never more than a wallet holds; nothing when there is nothing eligible or due."""
    want = max(0, min(eligible, due))
    out: list[Wallet] = []
    taken: list[tuple[str, int]] = []
    for w in order(wallets):
        if want > 0 and w.usable_on(day):
            use = min(w.balance, want)
            want -= use
            out.append(replace(w, balance=w.balance - use))
            taken.append((w.wallet_id, use))
        else:
            out.append(w)
    return out, taken
