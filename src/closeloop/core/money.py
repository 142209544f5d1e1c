"""Money: integer minor units with an ISO 4217 currency, and the one allocator.

Rules (DESIGN.md): no floats in money paths; ROUND_HALF_UP at the currency's
exponent, once, at the line level; every split goes through :func:`allocate`,
which uses the largest-remainder method and always sums exactly.
Outside the process amounts are decimal strings in major units ("123.45").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

from babel.numbers import get_currency_precision, is_currency

from closeloop.core.errors import ValidationError


@lru_cache(maxsize=512)
def exponent(currency: str) -> int:
    """Number of minor-unit digits of an ISO 4217 currency (JPY 0, USD 2, BHD 3)."""
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper() or not is_currency(currency):
        raise ValidationError(
            f"unknown currency {currency!r}: expected an ISO 4217 code such as USD, EUR, JPY",
            field="currency",
            value=currency,
        )
    return int(get_currency_precision(currency))


def check_currency(currency: str) -> str:
    exponent(currency)
    return currency


@lru_cache(maxsize=512)
def _quantum(exp: int) -> Decimal:
    return Decimal(1).scaleb(-exp)


def round_half_up(value: Decimal, currency: str) -> int:
    """Round a major-unit Decimal to the currency's exponent (ROUND_HALF_UP) and return minor units."""
    exp = exponent(currency)
    return int(value.scaleb(exp).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def round_minor(value: Decimal) -> int:
    """Round a Decimal number of minor units half-up to an integer number of minor units."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_minor(amount: Decimal | str | int, currency: str, *, field: str = "amount", record: str | None = None) -> int:
    """Exact conversion of a major-unit amount to minor units; more decimals than the currency allows is an error."""
    exp = exponent(currency)
    if type(amount) is str:
        # fast path for the plain decimal strings amounts travel as ("-123.45"); anything else goes through Decimal
        whole, dot, frac = amount.partition(".")
        digits = whole[1:] if whole[:1] == "-" else whole
        if digits.isdigit() and digits.isascii() and (not dot or (frac.isdigit() and frac.isascii() and len(frac) <= exp)):
            minor = int(digits) * int(10**exp) + (int(frac.ljust(exp, "0")) if dot else 0)
            return -minor if whole[:1] == "-" else minor
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except InvalidOperation:
        raise ValidationError(
            f"{record + ': ' if record else ''}{field} {amount!r} is not a decimal amount",
            field=field,
            record=record,
            value=str(amount),
        ) from None
    if not value.is_finite():
        raise ValidationError(f"{field} {amount!r} is not a finite amount", field=field, record=record)
    scaled = value.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise ValidationError(
            f"{record + ': ' if record else ''}{field} {amount} has more decimals than {currency} allows ({exp})",
            field=field,
            record=record,
            value=str(amount),
            currency=currency,
        )
    return int(scaled)


def format_minor(minor: int, currency: str) -> str:
    """Minor units to a plain decimal string in major units: 12345 USD -> "123.45", -5 USD -> "-0.05"."""
    exp = exponent(currency)
    if exp == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}"


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An amount in minor units of a currency. Arithmetic refuses to mix currencies."""

    minor: int
    currency: str

    @classmethod
    def parse(cls, amount: str | Decimal | int, currency: str) -> Money:
        return cls(to_minor(amount, currency), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValidationError(
                f"cannot combine {self.currency} and {other.currency} amounts without an FX conversion",
                field="currency",
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __bool__(self) -> bool:
        return self.minor != 0

    def times(self, factor: Decimal | int) -> Money:
        """Multiply and round half-up once at the currency's exponent."""
        return Money(round_minor(Decimal(self.minor) * Decimal(factor)), self.currency)

    def allocate(self, weights: Sequence[int | Decimal]) -> list[Money]:
        return [Money(m, self.currency) for m in allocate(self.minor, weights)]

    @property
    def decimal(self) -> Decimal:
        return Decimal(self.minor).scaleb(-exponent(self.currency))

    def __str__(self) -> str:
        return f"{format_minor(self.minor, self.currency)} {self.currency}"


def allocate(total: int, weights: Sequence[int | Decimal]) -> list[int]:
    """Split ``total`` minor units in proportion to ``weights`` by the largest-remainder method.

    The parts always sum to ``total``. Ties in the remainders go to the earlier
    weight, so the result is deterministic. Weights must be non-negative with a
    positive sum; a negative total is split as its absolute value and negated,
    so every part keeps the total's sign. A total that cannot be split
    (all-zero weights) raises instead of leaving a remainder.
    """
    if not weights:
        raise ValidationError("cannot allocate over an empty list of weights", field="weights")
    ints = _integer_weights(weights)
    if any(w < 0 for w in ints):
        raise ValidationError("allocation weights must not be negative", field="weights")
    weight_sum = sum(ints)
    if weight_sum == 0:
        if total == 0:
            return [0] * len(ints)
        raise ValidationError("cannot allocate a non-zero amount over weights that sum to zero", field="weights")
    sign = -1 if total < 0 else 1
    magnitude = abs(total)
    # Exact integer arithmetic: part_i = floor(m * w_i / W), remainder r_i = m * w_i mod W.
    parts = []
    remainders = []
    for w in ints:
        q, r = divmod(magnitude * w, weight_sum)
        parts.append(q)
        remainders.append(r)
    left = magnitude - sum(parts)
    order = sorted(range(len(ints)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        parts[i] += 1
    return [sign * part for part in parts]


def _integer_weights(weights: Sequence[int | Decimal]) -> list[int]:
    """Scale weights to integers (same ratios) so the allocation is exact integer arithmetic."""
    if all(isinstance(w, int) for w in weights):
        return [int(w) for w in weights]
    decs = [Decimal(w) for w in weights]
    if not all(d.is_finite() for d in decs):
        raise ValidationError("allocation weights must be finite numbers", field="weights")
    places = max(0, max(-int(d.as_tuple().exponent) for d in decs))
    return [int(d.scaleb(places)) for d in decs]


def allocate_by_ratios(total: int, ratios: Sequence[Decimal | str]) -> list[int]:
    """Split by ratios (e.g. "0.5", "0.3", "0.2"); the ratios need not sum to one."""
    return allocate(total, [Decimal(r) for r in ratios])
