"""Customer master, pure: field normalisation and validation, survivorship, hierarchy, quality score.

Nothing here touches the database, the clock or files. The service and the
importers call these functions, so a single upsert and a 100,000-row import
apply exactly the same rules.

Field values given to :func:`validate_fields` follow one convention: a field
that is absent (or ``None``) is *not given* and leaves the stored value alone;
an empty string clears an optional text field.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any

from closeloop.customers.taxid import TaxIdError, check_tax_id

# The governed attributes of an account, in display order. These are the field names of
# customer.upsert and of the system-of-record registry's ``customer`` entity.
FIELDS: tuple[str, ...] = (
    "name", "country", "region", "postal_code", "address", "email", "phone", "website",
    "tax_id", "tax_exempt", "exemption_ref", "parent", "bill_to", "entity", "currency",
    "payment_terms_days", "status",
)
_FIELD_SET = frozenset(FIELDS)
TEXT_FIELDS = frozenset({"region", "postal_code", "email", "phone", "website", "tax_id", "exemption_ref",
                         "parent", "bill_to", "entity", "currency"})
STATUSES = ("active", "inactive", "merged")
DEFAULT_PAYMENT_TERMS_DAYS = 30
MAX_PAYMENT_TERMS_DAYS = 365
ADDRESS_KEYS = ("street", "street2", "city", "region", "postal_code", "country")


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a value was refused: the field and why."""

    field: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of :func:`validate_fields`.

    values: the normalised values of the fields that were given (``None`` = clear)
    problems: every refused value (the record is refused when there is any)
    warnings: accepted values that were repaired or look doubtful (quality report)
    tax_check: ``checksum`` or ``format`` when a tax id was given and accepted
    """

    values: dict[str, Any]
    problems: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    tax_check: str | None = None


# --------------------------------------------------------------------------- text


_SPACES = re.compile(r"\s+")


def clean(value: Any) -> str:
    """Trim and collapse whitespace; remove control characters."""
    text = value if isinstance(value, str) else str(value)
    if not text.isprintable():
        text = "".join(c if ord(c) >= 32 else " " for c in text)
    return " ".join(text.split())


def fold(text: str) -> str:
    """Case-folded without accents: 'Société Générale' -> 'societe generale', 'Straße' -> 'strasse'."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# --------------------------------------------------------------------------- country and region

# Spellings CRMs hold that ISO 3166 names do not cover. Keys are folded and stripped of dots.
COUNTRY_ALIASES: dict[str, str] = {
    "usa": "US", "us": "US", "u s": "US", "u s a": "US", "united states of america": "US", "america": "US",
    "united states": "US", "the united states": "US",
    "uk": "GB", "u k": "GB", "great britain": "GB", "britain": "GB", "england": "GB", "scotland": "GB",
    "wales": "GB", "northern ireland": "GB", "united kingdom": "GB",
    "deutschland": "DE", "germany": "DE", "holland": "NL", "the netherlands": "NL", "españa": "ES",
    "espana": "ES", "россия": "RU", "russia": "RU", "south korea": "KR", "korea": "KR", "republic of korea": "KR",
    "north korea": "KP", "czech republic": "CZ", "czechia": "CZ", "vietnam": "VN", "viet nam": "VN",
    "taiwan": "TW", "iran": "IR", "uae": "AE", "u a e": "AE", "schweiz": "CH", "suisse": "CH",
    "österreich": "AT", "osterreich": "AT", "brasil": "BR", "méxico": "MX", "mexico": "MX",
    "turkey": "TR", "türkiye": "TR", "turkiye": "TR", "ivory coast": "CI", "bolivia": "BO", "venezuela": "VE",
    "tanzania": "TZ", "moldova": "MD", "laos": "LA", "syria": "SY", "macedonia": "MK", "hong kong": "HK",
    "macau": "MO", "palestine": "PS", "vatican": "VA", "kosovo": "XK",
}
_COUNTRY_PUNCT = re.compile(r"[.,']")


@lru_cache(maxsize=4096)
def normalise_country(value: str) -> str | None:
    """ISO 3166 alpha-2 code for a code, alpha-3 code, name or common alias; None when unknown."""
    text = clean(value)
    if not text:
        return None
    key = _SPACES.sub(" ", _COUNTRY_PUNCT.sub(" ", fold(text))).strip()
    if key in COUNTRY_ALIASES:
        return COUNTRY_ALIASES[key]
    import pycountry

    if len(text) == 2 and text.isalpha():
        found = pycountry.countries.get(alpha_2=text.upper())
        return found.alpha_2 if found else None
    if len(text) == 3 and text.isalpha():
        found = pycountry.countries.get(alpha_3=text.upper())
        if found:
            return str(found.alpha_2)
    try:
        return str(pycountry.countries.lookup(text).alpha_2)
    except LookupError:
        pass
    for country in pycountry.countries:
        names = {fold(getattr(country, a, "") or "") for a in ("name", "official_name", "common_name")}
        if key in names:
            return str(country.alpha_2)
    return None


@lru_cache(maxsize=256)
def _subdivisions(country: str) -> dict[str, str]:
    """Folded subdivision codes and names of a country -> the code without the country prefix."""
    import pycountry

    out: dict[str, str] = {}
    for sub in pycountry.subdivisions.get(country_code=country) or ():  # type: ignore[no-untyped-call]
        code = sub.code.split("-", 1)[1]
        out.setdefault(fold(code), code)
        out.setdefault(fold(sub.name), code)
    return out


# Countries whose regions drive tax: a region that is not one of theirs is reported (quality warning).
STRICT_REGION_COUNTRIES = frozenset({"US", "CA"})


def normalise_region(country: str | None, value: str) -> tuple[str | None, str | None]:
    """(region, problem): ISO 3166-2 subdivision code without the country prefix where one matches.

    'California' -> 'CA' for US; unknown regions are kept as given, except in the countries
    of :data:`STRICT_REGION_COUNTRIES`, where they are returned with a problem to report.
    """
    text = clean(value)
    if not text:
        return None, None
    if not country:
        return text, None
    subs = _subdivisions(country)
    code = subs.get(fold(text).replace(".", ""))
    if code is not None:
        return code, None
    if country in STRICT_REGION_COUNTRIES and subs:
        return text, f"{text!r} is not a region of {country}"
    return text, None


_POSTAL_FORMATS: dict[str, re.Pattern[str]] = {
    "US": re.compile(r"\d{5}(-\d{4})?"),
    "CA": re.compile(r"[A-Z]\d[A-Z] ?\d[A-Z]\d"),
    "GB": re.compile(r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}"),
    "DE": re.compile(r"\d{5}"),
    "FR": re.compile(r"\d{5}"),
    "NL": re.compile(r"\d{4} ?[A-Z]{2}"),
    "JP": re.compile(r"\d{3}-?\d{4}"),
    "AU": re.compile(r"\d{4}"),
    "IT": re.compile(r"\d{5}"),
    "ES": re.compile(r"\d{5}"),
}


def normalise_postal_code(country: str | None, value: str) -> tuple[str | None, str | None]:
    """(postal code, warning). Upper-cased; a US ZIP that lost its leading zeros is padded back."""
    text = clean(value).upper()
    if not text:
        return None, None
    if country == "CA" and re.fullmatch(r"[A-Z]\d[A-Z]-\d[A-Z]\d", text):
        text = text.replace("-", " ")
    if country == "US" and text.isdigit() and 3 <= len(text) < 5:
        return text.zfill(5), f"ZIP code {text!r} lost its leading zeros; read as {text.zfill(5)}"
    pattern = _POSTAL_FORMATS.get(country or "")
    if pattern is not None and not pattern.fullmatch(text):
        return text, f"{text!r} is not a {country} postal code"
    return text, None


# --------------------------------------------------------------------------- email, web, names

_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
FREE_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "hotmail.com", "outlook.com", "live.com",
    "msn.com", "aol.com", "icloud.com", "me.com", "mail.com", "gmx.de", "gmx.net", "web.de", "proton.me",
    "protonmail.com", "yandex.ru", "qq.com", "163.com", "orange.fr", "free.fr", "example.com",
})


def normalise_email(value: str) -> str | None:
    """Lower-cased address; None when it is not an address."""
    text = clean(value)
    if not _EMAIL.fullmatch(text):
        return None
    local, _, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}"


def domain_of(email: str | None = None, website: str | None = None) -> str | None:
    """The organisation's internet domain: the email's (unless free mail), else the website's host."""
    if email and "@" in email:
        domain = email.rpartition("@")[2].lower()
        if domain and domain not in FREE_MAIL_DOMAINS:
            return domain
    if website:
        host = website.strip().lower()
        host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", host)
        host = host.split("/", 1)[0].split("?", 1)[0].split(":", 1)[0].split("@")[-1]
        host = host.removeprefix("www.")
        if "." in host and host not in FREE_MAIL_DOMAINS:
            return host
    return None


def normalise_website(value: str) -> str | None:
    text = clean(value)
    return text or None


# Legal forms and filler words that do not identify a company.
LEGAL_FORMS = frozenset(["inc", "incorporated", "corp", "corporation", "co", "company", "ltd", "limited", "llc", "llp", "lp", "plc", "pllc", "gmbh", "ag", "kg", "ohg", "ug", "mbh", "sa", "sas", "sarl", "sàrl", "srl", "spa", "bv", "nv", "oy", "oyj", "ab", "as", "asa", "aps", "pty", "pte", "kk", "gk", "sl", "sau", "sc", "scs", "ltda", "eirl", "se", "cv", "sab", "de", "the", "and", "und", "et", "y", "of", "group", "holding", "holdings", "intl", "international"])
_NON_WORD = re.compile(r"[^0-9a-z]+")


@lru_cache(maxsize=262144)
def name_tokens(name: str) -> tuple[str, ...]:
    """Identifying words of a company or person name: folded, punctuation and legal forms removed.

    'The Globex Corporation, Inc.' -> ('globex',); '&' reads as 'and' (a filler word).
    """
    text = fold(name).replace("&", " and ").replace("'", "").replace(".", "")
    words = [w for w in _NON_WORD.split(text) if w]
    kept = tuple(w for w in words if w not in LEGAL_FORMS)
    return kept or tuple(words)


def name_key(name: str) -> str:
    """The normalised name used for matching and search: identifying words joined by spaces."""
    return " ".join(name_tokens(name))


ADDRESS_ABBREVIATIONS = {
    "street": "st", "str": "st", "strasse": "str", "straße": "str", "avenue": "ave", "av": "ave",
    "road": "rd", "boulevard": "blvd", "drive": "dr", "lane": "ln", "court": "ct", "place": "pl",
    "square": "sq", "suite": "ste", "floor": "fl", "building": "bldg", "highway": "hwy", "parkway": "pkwy",
    "north": "n", "south": "s", "east": "e", "west": "w", "apartment": "apt", "circle": "cir",
    "terrace": "tce", "crescent": "cres", "close": "cl",
}


@lru_cache(maxsize=262144)
def address_key(text: str) -> str:
    """Folded, punctuation-free address with the usual abbreviations: '150 Chestnut Street' -> '150 chestnut st'."""
    words = [w for w in _NON_WORD.split(fold(text)) if w]
    return " ".join(ADDRESS_ABBREVIATIONS.get(w, w) for w in words)


def address_line(address: Mapping[str, Any] | None) -> str:
    """One line of the street part of an address (what matching compares)."""
    if not address:
        return ""
    return " ".join(clean(address[k]) for k in ("street", "street2") if address.get(k))


# --------------------------------------------------------------------------- validation


def _text(values: dict[str, Any], problems: list[Problem], name: str, raw: Any, max_len: int) -> None:
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        problems.append(Problem(name, "must be text"))
        return
    text = clean(raw)
    if len(text) > max_len:
        problems.append(Problem(name, f"longer than {max_len} characters"))
        return
    values[name] = text or None


def _bool(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        low = raw.strip().lower()
        if low in ("true", "yes", "y", "1", "x"):
            return True
        if low in ("false", "no", "n", "0", ""):
            return False
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    return None


def validate_fields(raw: Mapping[str, Any], *, creating: bool, current_country: str | None = None,
                    currencies: Any = None) -> Checked:
    """Normalise and check the given fields of an account; every problem is returned at once.

    ``raw`` holds only the fields that were given (``None`` values are ignored). When
    ``creating``, name and country are required. ``current_country`` is the stored country,
    used to check a tax id or region given without a country. ``currencies`` is a callable
    that raises for an unknown ISO 4217 code (core.money.check_currency).
    """
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    warnings: list[Problem] = []
    given = {k: v for k, v in raw.items() if v is not None}
    if not _FIELD_SET.issuperset(given):
        for name in sorted(set(given) - _FIELD_SET):
            problems.append(Problem(name, "unknown field"))

    if "name" in given:
        _text(values, problems, "name", given["name"], 300)
        if "name" in values and not values["name"]:
            problems.append(Problem("name", "must not be empty"))
            del values["name"]
    elif creating:
        problems.append(Problem("name", "required to create an account"))

    country = current_country
    if "country" in given:
        text = clean(given["country"]) if isinstance(given["country"], str) else ""
        code = normalise_country(text) if text else None
        if code is None:
            problems.append(Problem("country", f"{given['country']!r} is not an ISO 3166 country"
                                    if text else "must not be empty"))
        else:
            values["country"] = code
            country = code
            if text.upper() != code:
                warnings.append(Problem("country", f"{text!r} read as {code}"))
    elif creating:
        problems.append(Problem("country", "required to create an account"))

    if "region" in given:
        if not isinstance(given["region"], str):
            problems.append(Problem("region", "must be text"))
        else:
            region, issue = normalise_region(country, given["region"])
            if issue:
                warnings.append(Problem("region", issue))
            values["region"] = region

    if "postal_code" in given:
        if not isinstance(given["postal_code"], (str, int)) or isinstance(given["postal_code"], bool):
            problems.append(Problem("postal_code", "must be text"))
        else:
            code, warning = normalise_postal_code(country, str(given["postal_code"]))
            if code is not None and len(code) > 32:
                problems.append(Problem("postal_code", "longer than 32 characters"))
            else:
                values["postal_code"] = code
                if warning:
                    warnings.append(Problem("postal_code", warning))

    if "address" in given:
        address = given["address"]
        if isinstance(address, str):
            address = {"street": address} if address.strip() else {}
        if not isinstance(address, Mapping):
            problems.append(Problem("address", "must be an object with street, street2, city, region,"
                                    " postal_code, country"))
        else:
            bad = sorted(set(address) - set(ADDRESS_KEYS))
            if bad:
                problems.append(Problem("address", f"unknown keys {', '.join(bad)}; allowed: {', '.join(ADDRESS_KEYS)}"))
            elif not all(v is None or isinstance(v, (str, int)) for v in address.values()):
                problems.append(Problem("address", "values must be text"))
            else:
                cleaned = {k: clean(address[k]) for k in ADDRESS_KEYS if address.get(k) not in (None, "")}
                values["address"] = {k: v for k, v in cleaned.items() if v} or None

    if "email" in given:
        if not isinstance(given["email"], str):
            problems.append(Problem("email", "must be text"))
        elif not given["email"].strip():
            values["email"] = None
        else:
            email = normalise_email(given["email"])
            if email is None:
                problems.append(Problem("email", f"{clean(given['email'])!r} is not an email address"))
            else:
                values["email"] = email

    for name, limit in (("phone", 64), ("website", 254), ("exemption_ref", 128)):
        if name in given:
            _text(values, problems, name, given[name], limit)

    tax_check: str | None = None
    if "tax_id" in given:
        if not isinstance(given["tax_id"], (str, int)) or isinstance(given["tax_id"], bool):
            problems.append(Problem("tax_id", "must be text"))
        elif not str(given["tax_id"]).strip():
            values["tax_id"] = None
        elif country is None:
            if "country" not in given or not any(p.field == "country" for p in problems):
                problems.append(Problem("tax_id", "cannot be checked without a country"))
        else:
            try:
                checked = check_tax_id(str(given["tax_id"]), country)
            except TaxIdError as exc:
                problems.append(Problem("tax_id", f"{clean(given['tax_id'])!r} is not a valid tax id for"
                                        f" {country}: {exc.reason}"))
            else:
                values["tax_id"] = checked.value
                tax_check = checked.check

    if "tax_exempt" in given:
        flag = _bool(given["tax_exempt"])
        if flag is None:
            problems.append(Problem("tax_exempt", "must be true or false"))
        else:
            values["tax_exempt"] = flag

    for name in ("parent", "bill_to", "entity"):
        if name in given:
            _text(values, problems, name, given[name], 128)

    if "currency" in given:
        if not isinstance(given["currency"], str):
            problems.append(Problem("currency", "must be an ISO 4217 code"))
        elif not given["currency"].strip():
            values["currency"] = None
        else:
            code = given["currency"].strip().upper()
            try:
                if currencies is not None:
                    currencies(code)
                values["currency"] = code
            except Exception:  # noqa: BLE001 - the checker raises the project's ValidationError
                problems.append(Problem("currency", f"{given['currency']!r} is not an ISO 4217 currency"))

    if "payment_terms_days" in given:
        raw_terms = given["payment_terms_days"]
        try:
            if isinstance(raw_terms, bool) or (isinstance(raw_terms, str) and not raw_terms.strip().isdigit()):
                raise ValueError
            terms = int(raw_terms)
            if isinstance(raw_terms, float) and raw_terms != terms:
                raise ValueError
        except (TypeError, ValueError):
            problems.append(Problem("payment_terms_days", f"{raw_terms!r} is not a whole number of days"))
        else:
            if not 0 <= terms <= MAX_PAYMENT_TERMS_DAYS:
                problems.append(Problem("payment_terms_days", f"{terms} must be between 0 and {MAX_PAYMENT_TERMS_DAYS}"))
            else:
                values["payment_terms_days"] = terms

    if "status" in given:
        if given["status"] not in ("active", "inactive"):
            problems.append(Problem("status", f"{given['status']!r} must be active or inactive"
                                    " (merged is set by customer.merge)"))
        else:
            values["status"] = given["status"]

    final_exempt = values.get("tax_exempt")
    if final_exempt and not values.get("exemption_ref") and "exemption_ref" not in given and creating:
        warnings.append(Problem("exemption_ref", "tax_exempt without an exemption certificate reference is not"
                                " applied by tax"))
    return Checked(values, tuple(problems), tuple(warnings), tax_check)


# --------------------------------------------------------------------------- hierarchy


# --------------------------------------------------------------------------- source modification times


def source_time(value: Any) -> str:
    """A source's modification time (Salesforce LastModifiedDate / SystemModstamp, HubSpot's last modified
    date, a webhook event's occurred_at) as UTC text that sorts in time order: ``2026-01-05T10:00:00.000000Z``.

    Read: ISO 8601 with ``Z``, ``+00:00`` or ``+0000`` (a time without offset is UTC; a date alone is its
    midnight), and Unix time in seconds or milliseconds. Raises ValueError naming what is wrong."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a timestamp")
    text = str(value).strip()
    if not text or len(text) > 40:
        raise ValueError(f"{text[:40]!r} is not a timestamp")
    try:
        if re.fullmatch(r"\d{9,13}(\.\d+)?", text):
            seconds = float(text)
            moment = datetime.fromtimestamp(seconds / 1000 if seconds >= 1e11 else seconds, tz=UTC)
        else:
            moment = datetime.fromisoformat(text)
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{text!r} is not a timestamp (ISO 8601 such as 2026-01-05T10:00:00Z, or Unix"
                         " time)") from None
    if moment.year < 1970:
        raise ValueError(f"{text!r} is before 1970, not a modification time")
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}Z"


def stale_fields(given: Iterable[str], modified_at: str, stored: Mapping[str, str]) -> dict[str, str]:
    """The fields whose stored modification time (from the same source) is later than ``modified_at``:
    {field: stored time}. A value dated the same instant is not stale."""
    return {f: stored[f] for f in given if f in stored and stored[f] > modified_at}


def creates_cycle(parent_of: Mapping[int, int | None], child: int, new_parent: int | None) -> bool:
    """Would making ``new_parent`` the parent of ``child`` close a loop? (``parent_of``: id -> parent id)."""
    seen = {child}
    node = new_parent
    while node is not None:
        if node in seen:
            return True
        seen.add(node)
        node = parent_of.get(node)
    return False


def ancestors(parent_of: Mapping[int, int | None], node: int) -> list[int]:
    """Nearest first, up to the top parent."""
    out: list[int] = []
    seen = {node}
    current = parent_of.get(node)
    while current is not None and current not in seen:
        out.append(current)
        seen.add(current)
        current = parent_of.get(current)
    return out


def descendants(children_of: Mapping[int, Iterable[int]], node: int) -> list[tuple[int, int]]:
    """(id, depth) of every account below ``node``, depth first in id order."""
    out: list[tuple[int, int]] = []
    stack = [(c, 1) for c in sorted(children_of.get(node, ()), reverse=True)]
    seen = {node}
    while stack:
        current, depth = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        out.append((current, depth))
        stack.extend((c, depth + 1) for c in sorted(children_of.get(current, ()), reverse=True))
    return out


# --------------------------------------------------------------------------- survivorship

SURVIVORSHIP_RULES = ("survivor", "most_recent", "most_complete", "source_priority")


@dataclass(frozen=True, slots=True)
class FieldOrigin:
    """When and by which source a field's value was last written."""

    at: str
    source: str


@dataclass(frozen=True, slots=True)
class Survived:
    """The value a merge keeps for one field, where it came from and by which rule."""

    field: str
    value: Any
    taken_from: str  # survivor or merged
    rule: str


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == []


def _completeness(value: Any) -> int:
    if _is_empty(value):
        return 0
    if isinstance(value, Mapping):
        return sum(1 for v in value.values() if not _is_empty(v)) * 1000 + len(str(value))
    return len(str(value))


def survive(rules: Mapping[str, str], default_rule: str, survivor: Mapping[str, Any], merged: Mapping[str, Any],
            survivor_origin: Mapping[str, FieldOrigin], merged_origin: Mapping[str, FieldOrigin],
            source_priority: tuple[str, ...], fields: Iterable[str] = FIELDS) -> list[Survived]:
    """Decide each field of the merged account by its survivorship rule.

    - ``survivor``: the survivor's value, unless it is empty;
    - ``most_recent``: the value written last (ties keep the survivor's);
    - ``most_complete``: the non-empty, fuller value (more address parts, longer text);
    - ``source_priority``: the value last written by the higher-ranked source.
    Whatever the rule, an empty value never replaces a filled one.
    """
    out: list[Survived] = []
    rank = {s: i for i, s in enumerate(source_priority)}
    for name in fields:
        rule = rules.get(name, default_rule)
        s_val, m_val = survivor.get(name), merged.get(name)
        take_merged = False
        if _is_empty(s_val) and not _is_empty(m_val):
            take_merged = True
        elif not _is_empty(m_val) and s_val != m_val:
            if rule == "most_recent":
                s_at = survivor_origin[name].at if name in survivor_origin else ""
                m_at = merged_origin[name].at if name in merged_origin else ""
                take_merged = m_at > s_at
            elif rule == "most_complete":
                take_merged = _completeness(m_val) > _completeness(s_val)
            elif rule == "source_priority":
                s_src = survivor_origin[name].source if name in survivor_origin else ""
                m_src = merged_origin[name].source if name in merged_origin else ""
                take_merged = rank.get(m_src, len(rank)) < rank.get(s_src, len(rank))
        out.append(Survived(name, m_val if take_merged else s_val, "merged" if take_merged else "survivor", rule))
    return out


# --------------------------------------------------------------------------- quality score


@dataclass(frozen=True, slots=True)
class QualityInput:
    """Counts an import (or the whole master) is scored on.

    records: rows read (or accounts); completeness_filled / completeness_possible: filled
    key fields over key fields expected; checked / valid: country, tax id, email and postal
    values present and how many of them were valid; duplicates: records in a suspected
    duplicate pair; parents / parents_resolved: parent references and how many resolve
    without a cycle.
    """

    records: int
    completeness_filled: int
    completeness_possible: int
    checked: int
    valid: int
    duplicates: int
    parents: int
    parents_resolved: int
    weights: tuple[tuple[str, Decimal], ...] = field(default=(
        ("completeness", Decimal("0.30")), ("validity", Decimal("0.30")),
        ("uniqueness", Decimal("0.20")), ("hierarchy", Decimal("0.20"))))


def _ratio(num: int, den: int) -> Decimal:
    return Decimal(1) if den == 0 else Decimal(num) / Decimal(den)


def quality_score(q: QualityInput) -> dict[str, str]:
    """Data-quality score 0-100 with its components (each 0-100, one decimal, ROUND_HALF_UP).

    score = 100 x (0.30 completeness + 0.30 validity + 0.20 uniqueness + 0.20 hierarchy)
    completeness = filled key fields / expected key fields
    validity     = valid values / checked values (country, tax id, email, postal code)
    uniqueness   = 1 - records in suspected duplicate pairs / records
    hierarchy    = parent references that resolve without a cycle / parent references
    An empty input scores 100 on every component.
    """
    parts = {
        "completeness": _ratio(q.completeness_filled, q.completeness_possible),
        "validity": _ratio(q.valid, q.checked),
        "uniqueness": Decimal(1) - _ratio(min(q.duplicates, q.records), q.records) if q.records else Decimal(1),
        "hierarchy": _ratio(q.parents_resolved, q.parents),
    }
    score = sum((w * parts[name] for name, w in q.weights), Decimal(0))
    q1 = Decimal("0.1")
    out = {"score": str((score * 100).quantize(q1, rounding=ROUND_HALF_UP))}
    for name, value in parts.items():
        out[name] = str((value * 100).quantize(q1, rounding=ROUND_HALF_UP))
    return out
