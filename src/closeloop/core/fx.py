"""FX rates and conversion at a date: the latest rate on or before the date; none is ``not_found``."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from closeloop.core.errors import NotFoundError, ValidationError
from closeloop.core.money import check_currency, exponent, round_half_up
from closeloop.core.periods import iso, parse_date
from closeloop.core.registry import command, payload


@payload
class FxRate:
    base: str
    quote: str
    date: str
    rate: str


def parse_rate(value: str) -> Decimal:
    try:
        rate = Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(f"rate {value!r} is not a decimal number", field="rate") from None
    if not rate.is_finite() or rate <= 0:
        raise ValidationError(f"rate {value!r} must be a positive number", field="rate")
    return rate


@command("fx.rate", FxRate, roles=("controller", "admin"), summary="Record an FX rate: 1 base = rate quote")
def fx_rate(uow: Any, cmd: FxRate) -> dict[str, Any]:
    check_currency(cmd.base)
    check_currency(cmd.quote)
    if cmd.base == cmd.quote:
        raise ValidationError("an FX rate needs two different currencies", field="quote")
    day = iso(parse_date(cmd.date))
    rate = parse_rate(cmd.rate)
    uow.execute(
        "INSERT INTO fx_rate (base, quote, date, rate, source) VALUES (?,?,?,?,?)"
        " ON CONFLICT (base, quote, date) DO UPDATE SET rate = excluded.rate, source = excluded.source",
        (cmd.base, cmd.quote, day, str(rate), uow.source),
    )
    uow.cache.pop(("fx", cmd.base, cmd.quote), None)
    uow.emit("fx.rate_recorded", "fx", f"{cmd.base}/{cmd.quote}", {"base": cmd.base, "quote": cmd.quote,
             "date": day, "rate": str(rate)})
    return {"base": cmd.base, "quote": cmd.quote, "date": day, "rate": str(rate)}


def rate_on(uow: Any, base: str, quote: str, day: str) -> Decimal:
    """1 ``base`` = result ``quote`` on ``day``: the latest direct rate on or before it, else the inverse."""
    if base == quote:
        return Decimal(1)
    row = uow.one(
        "SELECT rate FROM fx_rate WHERE base = ? AND quote = ? AND date <= ? ORDER BY date DESC LIMIT 1",
        (base, quote, day),
    )
    if row is not None:
        return Decimal(row[0])
    row = uow.one(
        "SELECT rate FROM fx_rate WHERE base = ? AND quote = ? AND date <= ? ORDER BY date DESC LIMIT 1",
        (quote, base, day),
    )
    if row is not None:
        return Decimal(1) / Decimal(row[0])
    raise NotFoundError(
        f"no FX rate {base}->{quote} on or before {day}; record one with fx.rate",
        field="fx_rate", base=base, quote=quote, date=day,
    )


def convert(uow: Any, minor: int, from_currency: str, to_currency: str, day: str) -> int:
    """Convert minor units at the day's rate, rounding half-up once at the target currency's exponent."""
    if from_currency == to_currency:
        return minor
    rate = rate_on(uow, from_currency, to_currency, day)
    major = Decimal(minor).scaleb(-exponent(from_currency)) * rate
    return round_half_up(major, to_currency)
