"""Usage metering: idempotent recording, one event or a batch, and the usage book a bill run rates.

Each event names a customer (external id; a merged id acts on the survivor), a metric, a quantity
(zero or more, at most 6 decimals), a time ``at`` (a date or an ISO timestamp, not after today)
and an idempotency ``key``. The same key with the same payload is accepted once (later copies are
counted as duplicates and change nothing); the same key with a different payload is a
``conflict``. A metric no price meters is ``not_found``; an event outside every subscription that
meters its metric for that customer is a ``validation_error``. A batch is all or nothing: every
problem is reported at once and nothing is recorded.

Usage for a period already invoiced is *late*: it is kept, and the next bill run re-rates the
period and bills the difference on the next invoice with the original period shown.

Quantities are stored exactly (text) and in micro-units (BIGINT) so that the bill run aggregates
in SQL without floats.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from closeloop.billing.model import MICRO, UsageBook, UsageDay
from closeloop.core.errors import ConflictError, NotFoundError, ValidationError

MAX_KEY = 200
MAX_QUANTITY = Decimal(10) ** 12  # micro-units must fit a signed 64-bit integer
_CHUNK = 500


def _bad_text(value: str) -> str | None:
    """Why a text value cannot be stored (a NUL character, an unpaired surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (an unpaired surrogate)"
    return None


def _problem(problems: list[dict[str, Any]], index: int | None, field: str, reason: str, code: str,
             record: str | None = None) -> None:
    problems.append({"index": index, "field": field if index is None else f"events[{index}].{field}",
                     "reason": reason, "code": code, "record": record})


_CANONICAL = re.compile(r"(\d{4}-\d{2}-\d{2})T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ")


@lru_cache(maxsize=8192)
def _valid_day(day: str) -> bool:
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    return True


def normalise_at(value: Any) -> str | None:
    """An ISO date or timestamp as stored: ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` (UTC)."""
    if type(value) is str and len(value) == 20:
        m = _CANONICAL.fullmatch(value)
        if m is not None and _valid_day(m.group(1)):
            return value  # already canonical (the common case of a feed): no parsing
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        return value.isoformat()
    else:
        text = str(value).strip()
        if len(text) == 10:
            try:
                return date.fromisoformat(text).isoformat()
            except ValueError:
                return None
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.isoformat(timespec="microseconds" if dt.microsecond else "seconds") + "Z"


def _quantity(value: Any) -> Decimal | None:
    if type(value) is int:
        return Decimal(value)
    try:
        q = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return q if q.is_finite() else None


def _canonical_props(props: Any) -> str | None:
    if props is None or props == {}:
        return None
    return json.dumps(props, sort_keys=True, separators=(",", ":"), default=str)


class _Customers:
    def __init__(self, uow: Any) -> None:
        self.uow = uow
        self.found: dict[str, int | None] = {}

    def resolve(self, external_ids: Iterable[str]) -> None:
        from closeloop.customers.service import get_customer

        wanted = [e for e in dict.fromkeys(external_ids) if e not in self.found]
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.uow.all("SELECT DISTINCT customer, customer_id FROM billing_subscription"
                                f" WHERE customer IN ({marks})", chunk)
            direct = {r[0]: int(r[1]) for r in rows}
            for ext in chunk:
                hit = direct.get(ext)
                if hit is not None:
                    self.found[ext] = hit
                    continue
                try:
                    self.found[ext] = get_customer(self.uow, ext).id
                except NotFoundError:
                    self.found[ext] = None


def known_metrics(uow: Any, metrics: Iterable[Any]) -> set[str]:
    """The metrics among ``metrics`` that some price meters (the catalogue's word)."""
    from closeloop.catalog.service import prices_for_metric

    def load(metric: str) -> bool:
        return bool(prices_for_metric(uow, metric))

    wanted = {m for m in metrics if isinstance(m, str) and 0 < len(m) <= 64 and not _bad_text(m)}
    known = uow.services.cache("billing.metric") if uow.services is not None else {}
    out = set()
    for m in wanted:  # only known metrics are remembered: a price created meanwhile is always seen
        if known.get(m) or load(m):
            out.add(m)
            if not known.get(m):
                uow.after_commit(lambda m=m: known.__setitem__(m, True))
    return out


def meters_for(uow: Any, customer_ids: Sequence[int]) -> dict[tuple[int, str], list[tuple[str, str, str]]]:
    out: dict[tuple[int, str], list[tuple[str, str, str]]] = {}
    ids = sorted(set(customer_ids))
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for cid, metric, s, e, contract in uow.all(
                f"SELECT customer_id, metric, start, \"end\", contract_id FROM billing_meter WHERE customer_id IN ({marks})",
                chunk):
            out.setdefault((int(cid), metric), []).append((s, e, contract))
    return out


def record_batch(uow: Any, events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Record usage events atomically; returns ``{"accepted": n, "duplicates": n}``.

    The Python batch API (``usage.record`` with ``events``, ``closeloop usage import``, the bench)."""
    today = uow.today().isoformat()
    problems: list[dict[str, Any]] = []
    customers = _Customers(uow)
    customers.resolve(e["customer"] for e in events
                      if isinstance(e, Mapping) and isinstance(e.get("customer"), str) and not _bad_text(e["customer"]))
    metrics = known_metrics(uow, (e.get("metric") for e in events if isinstance(e, Mapping)))
    rows: list[tuple[Any, ...]] = []
    seen: dict[str, tuple[Any, ...]] = {}
    duplicates = 0
    single = len(events) == 1
    for i, ev in enumerate(events):
        idx = None if single else i
        if not isinstance(ev, Mapping):
            _problem(problems, idx, "event", "an event is a mapping of customer, metric, quantity, at, key",
                     "validation_error")
            continue
        key = ev.get("key")
        if not key or not isinstance(key, str) or len(key) > MAX_KEY:
            _problem(problems, idx, "key", f"an idempotency key of 1-{MAX_KEY} characters is required",
                     "validation_error")
            continue
        bad = _bad_text(key)
        if bad:
            _problem(problems, idx, "key", f"the key {bad}", "validation_error")
            continue
        raw_customer = ev.get("customer")
        if not isinstance(raw_customer, str) or _bad_text(raw_customer):
            _problem(problems, idx, "customer", "a customer external id (text) is required", "validation_error")
            continue
        ext = raw_customer
        cid = customers.found.get(ext)
        if cid is None:
            _problem(problems, idx, "customer", f"customer {ext!r} does not exist", "not_found", ext)
            continue
        metric = ev.get("metric")
        if not isinstance(metric, str) or metric not in metrics:
            _problem(problems, idx, "metric", f"metric {metric!r} is not metered by any price; create a price with"
                                              " this metric first", "not_found", str(metric))
            continue
        q = _quantity(ev.get("quantity"))
        if q is None:
            _problem(problems, idx, "quantity", f"{ev.get('quantity')!r} is not a number", "validation_error")
            continue
        if q < 0:
            _problem(problems, idx, "quantity", f"quantity {q} is negative: usage quantities are zero or more",
                     "validation_error")
            continue
        if q >= MAX_QUANTITY:
            _problem(problems, idx, "quantity", f"quantity {q} is too large (at most {MAX_QUANTITY - 1} per event)",
                     "validation_error")
            continue
        if type(ev.get("quantity")) is int:
            micro_int = int(q) * 1_000_000
            qtext = str(int(q))
        else:
            micro = q * MICRO
            if micro != micro.to_integral_value():
                _problem(problems, idx, "quantity", f"quantity {q} has more than 6 decimals", "validation_error")
                continue
            micro_int = int(micro)
            qtext = format(q.normalize(), "f") if q != q.to_integral_value() else str(int(q))
        at = normalise_at(ev.get("at"))
        if at is None:
            _problem(problems, idx, "at", f"{ev.get('at')!r} is not a date or ISO timestamp", "validation_error")
            continue
        day = at[:10]
        if day > today:
            _problem(problems, idx, "at", f"usage at {at} is after today ({today})", "validation_error")
            continue
        props = ev.get("properties")
        if props is not None and not isinstance(props, Mapping):
            _problem(problems, idx, "properties", "properties must be a mapping", "validation_error")
            continue
        try:
            props_text = _canonical_props(props)
        except (ValueError, TypeError, RecursionError):
            _problem(problems, idx, "properties", "properties must be plain JSON values", "validation_error")
            continue
        row = (key, cid, metric, at, day, qtext, micro_int, props_text)
        prior = seen.get(key)
        if prior is not None:
            if prior != row:
                _problem(problems, idx, "key", f"key {key!r} appears twice in the batch with different payloads",
                         "conflict", key)
            else:
                duplicates += 1
            continue
        seen[key] = row
        rows.append(row)
    if rows and not problems:
        _check_coverage(uow, rows, problems, single)
    if not problems and rows:
        existing = _existing(uow, [r[0] for r in rows])
        if existing:
            fresh = []
            for r in rows:
                old = existing.get(r[0])
                if old is None:
                    fresh.append(r)
                elif old == r:
                    duplicates += 1
                else:
                    _problem(problems, None if single else rows.index(r), "key",
                             f"usage key {r[0]!r} was already recorded with another payload", "conflict", r[0])
            rows = fresh
    if problems:
        _raise(problems)
    if rows:
        now = uow.now()
        uow.executemany(
            "INSERT INTO billing_usage (key, customer_id, metric, at, day, quantity, qty_micro, properties, recorded_at)"
            " VALUES (?,?,?,?,?,?,?,?,?)", [(*r, now) for r in rows])
        _mark_late(uow, rows)
    return {"accepted": len(rows), "duplicates": duplicates}


def _check_coverage(uow: Any, rows: list[tuple[Any, ...]], problems: list[dict[str, Any]], single: bool) -> None:
    meters = meters_for(uow, [r[1] for r in rows])
    for i, r in enumerate(rows):
        spans = meters.get((r[1], r[2]))
        day = r[4]
        if not spans or not any(s <= day <= e for s, e, _ in spans):
            _problem(problems, None if single else i, "at",
                     f"usage of {r[2]} at {r[3]} is outside every subscription of this customer that meters it",
                     "validation_error", r[0])


def _existing(uow: Any, keys: list[str]) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for row in uow.all("SELECT key, customer_id, metric, at, day, quantity, qty_micro, properties FROM billing_usage"
                           f" WHERE key IN ({marks})", chunk):
            out[row[0]] = (row[0], int(row[1]), row[2], row[3], row[4], row[5], int(row[6]), row[7])
    return out


def _mark_late(uow: Any, rows: list[tuple[Any, ...]]) -> None:
    """Usage dated before what its subscriptions have billed makes them due again (billed on the next run)."""
    earliest: dict[tuple[int, str], str] = {}
    for r in rows:
        k = (r[1], r[2])
        if k not in earliest or r[4] < earliest[k]:
            earliest[k] = r[4]
    meters = meters_for(uow, [k[0] for k in earliest])
    updates: dict[str, str] = {}
    for k, day in earliest.items():
        for s, e, contract in meters.get(k, ()):
            if s <= day <= e and (contract not in updates or day < updates[contract]):
                updates[contract] = day
    if updates:
        uow.executemany(
            "UPDATE billing_subscription SET scan_from = ?, next_date = CASE WHEN next_date IS NULL OR next_date > ?"
            " THEN ? ELSE next_date END WHERE contract_id = ? AND scan_from IS NOT NULL AND scan_from > ?",
            [(day, day, day, contract, day) for contract, day in updates.items()])


def _raise(problems: list[dict[str, Any]]) -> None:
    codes = {p["code"] for p in problems}
    first = problems[0]
    text = "; ".join(f"{p['field']}: {p['reason']}" for p in problems[:20])
    if len(problems) > 20:
        text += f"; and {len(problems) - 20} more"
    details = {"field": first["field"], "record": first["record"], "errors": problems}
    if codes == {"not_found"}:
        raise NotFoundError(f"usage: {text}", **details)
    if "conflict" in codes and codes <= {"conflict"}:
        raise ConflictError(f"usage: {text}", **details)
    if len(codes) == 1 or "validation_error" in codes:
        code = next(iter(codes)) if len(codes) == 1 else "validation_error"
        raise ValidationError(f"usage: {text}", code=code, **details)
    raise ValidationError(f"usage: {text}", **details)


# --------------------------------------------------------------------------- the book a bill run rates


def usage_books(uow: Any, customer_ids: Sequence[int], since: Mapping[int, str | None],
                unique: Mapping[str, str | None] | None = None) -> dict[int, UsageBook]:
    """Usage by customer, metric and day from each customer's ``since`` day (None: all).

    ``unique``: the metrics rated by ``unique_count`` and the property each counts (from the
    subscriptions' price terms); their distinct values are read per day as well."""
    books: dict[int, UsageBook] = {}
    ids = sorted(set(customer_ids))
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        floor = min((since.get(c) or "0000-00-00") for c in chunk)
        for cid, metric, day, total, count, peak in uow.all(
                "SELECT customer_id, metric, day, SUM(qty_micro), COUNT(*), MAX(qty_micro) FROM billing_usage"
                f" WHERE customer_id IN ({marks}) AND day >= ? GROUP BY customer_id, metric, day", [*chunk, floor]):
            cid = int(cid)
            books.setdefault(cid, UsageBook()).add(metric, UsageDay(date.fromisoformat(day), int(total), int(count),
                                                                    int(peak)))
    if unique and books:
        _unique_values(uow, books, unique)
    for book in books.values():
        book.seal()
    return books


def _unique_values(uow: Any, books: dict[int, UsageBook], unique: Mapping[str, str | None]) -> None:
    from closeloop.catalog.rating import UsageRecord, unique_value

    for cid, book in books.items():
        for metric in set(unique) & set(book.days):
            prop = unique[metric]
            values: dict[str, set[str]] = {}
            for day, qty, props in uow.all("SELECT day, quantity, properties FROM billing_usage WHERE customer_id = ?"
                                           " AND metric = ?", (cid, metric)):
                record = UsageRecord(Decimal(qty), json.loads(props) if props else None)
                if prop is not None and (record.properties or {}).get(prop) is None:
                    continue
                values.setdefault(day, set()).add(unique_value(record, prop))
            book.days[metric] = [UsageDay(d.day, d.total_micro, d.count, d.max_micro,
                                          tuple(sorted(values.get(d.day.isoformat(), ()))))
                                 for d in book.days[metric]]
