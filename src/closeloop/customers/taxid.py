"""Tax-id validation with python-stdnum (pure).

:func:`check_tax_id` takes what a user or a CRM typed and the customer's
country and returns the normalised number, or raises :class:`TaxIdError`
with the reason. Rules:

- a number that starts with a VAT country prefix (``DE``, ``EL``, ``XI``,
  ``GB``, ``CHE``...) is validated as that country's VAT number, whatever the
  customer's country (foreign VAT registrations exist); EU numbers are kept
  with their prefix, as VIES and EN 16931 want them;
- otherwise the customer's country decides: its VAT validator (EU members get
  their prefix added), ``us.ein`` for the United States (a business customer's tax id; personal
  SSNs are not accepted), or
  any other ``vat`` validator stdnum has for the country;
- for a country without a validator the number is accepted on format alone
  (4 to 30 letters and digits after removing separators), ``check="format"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength, ValidationError
from stdnum.util import get_cc_module

# VAT prefixes of the EU member states (Greece uses EL) and Northern Ireland (XI).
EU_VAT_PREFIXES = frozenset(
    ["AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "EL", "ES", "FI", "FR", "HR", "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "XI"]
)
EU_COUNTRIES = frozenset(
    ["AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "GR", "ES", "FI", "FR", "HR", "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"]
)
_SEPARATORS = re.compile(r"[\s.\-/,]")


class TaxIdError(ValueError):
    """The tax id is not valid; ``reason`` says why (checksum, length, format)."""

    def __init__(self, reason: str, scheme: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.scheme = scheme


@dataclass(frozen=True, slots=True)
class TaxIdCheck:
    """A validated tax id.

    value: the normalised number (compact; EU VAT numbers with their country prefix)
    check: ``checksum`` when a stdnum validator verified it, ``format`` when none exists
    scheme: the validator used, e.g. ``eu.vat``, ``gb.vat``, ``us.ein``, or ``format``
    """

    value: str
    check: str
    scheme: str


def vat_prefix(country: str) -> str:
    return "EL" if country == "GR" else country


@lru_cache(maxsize=256)
def _module(country: str, kind: str) -> ModuleType | None:
    try:
        return get_cc_module(country.lower(), kind)  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - stdnum raises various errors for unknown countries
        return None


def _reason(exc: ValidationError) -> str:
    if isinstance(exc, InvalidChecksum):
        return "checksum does not match"
    if isinstance(exc, InvalidLength):
        return "wrong length"
    if isinstance(exc, InvalidFormat):
        return "wrong format"
    if isinstance(exc, InvalidComponent):
        return "a component of the number is invalid"
    return str(exc) or "not valid"


def _run(module: ModuleType, number: str, scheme: str) -> str:
    try:
        return str(module.validate(number))
    except ValidationError as exc:
        raise TaxIdError(f"{_reason(exc)} ({scheme})", scheme) from None


@lru_cache(maxsize=65536)
def check_tax_id(raw: str, country: str) -> TaxIdCheck:
    """Validate and normalise ``raw`` for a customer in ``country`` (ISO alpha-2)."""
    text = raw.strip()
    if not text:
        raise TaxIdError("empty")
    compact = _SEPARATORS.sub("", text).upper()
    prefix = compact[:2]
    if prefix in EU_VAT_PREFIXES and len(compact) > 2 and compact[2].isalnum():
        from stdnum.eu import vat as eu_vat

        value = _run(eu_vat, compact, "eu.vat")
        return TaxIdCheck(value if value[:2] in EU_VAT_PREFIXES else prefix + value, "checksum", "eu.vat")
    if prefix == "GB" and compact[2:3].isdigit():
        from stdnum.gb import vat as gb_vat

        return TaxIdCheck("GB" + _run(gb_vat, compact, "gb.vat").removeprefix("GB"), "checksum", "gb.vat")
    if compact.startswith("CHE") and country != "CH":
        from stdnum.ch import vat as ch_vat

        return TaxIdCheck(_run(ch_vat, compact, "ch.vat"), "checksum", "ch.vat")
    if country in EU_COUNTRIES:
        module = _module(country, "vat")
        if module is not None:
            value = _run(module, compact, f"{country.lower()}.vat")
            return TaxIdCheck(vat_prefix(country) + value, "checksum", "eu.vat")
    if country == "GB":
        from stdnum.gb import vat as gb_vat

        return TaxIdCheck("GB" + _run(gb_vat, compact, "gb.vat").removeprefix("GB"), "checksum", "gb.vat")
    if country == "US":
        from stdnum.us import ein

        value = _run(ein, compact, "us.ein")
        return TaxIdCheck(ein.format(value), "checksum", "us.ein")
    module = _module(country, "vat")
    if module is not None:
        scheme = f"{country.lower()}.vat"
        return TaxIdCheck(_run(module, compact, scheme), "checksum", scheme)
    if not re.fullmatch(r"[A-Z0-9]{4,30}", compact):
        raise TaxIdError("must be 4 to 30 letters and digits (no validator exists for this country)", "format")
    return TaxIdCheck(compact, "format", "format")
