"""KPIs computed from the data, never typed in: one formula each, per period, with drill-down.

Every KPI reads the shared core tables (events, exceptions, the ledger) or another area's
queries, never another area's tables. ``kpi {name, period?, entity?}`` returns
``value`` (a decimal string: ratios to four places, days to two, trailing zeros dropped;
None when there is nothing to measure), ``formula``, ``numerator``/``denominator`` where
they apply and ``records`` (the drill-down: the records behind the number). The formulas
are documented in docs/kpis.md.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from closeloop.core import registry
from closeloop.core.entities import get_entity, list_entities
from closeloop.core.errors import CloseloopError, ValidationError
from closeloop.core.money import format_minor
from closeloop.core.periods import check_period, iso, period_end, period_start
from closeloop.core.registry import payload, query
from closeloop.core.store import payload_date_sql

KPI_NAMES = (
    "first_pass_invoice_accuracy", "manual_journal_share", "recon_exception_count", "recon_exception_mean_age_days",
    "dispute_cycle_days_median", "dispute_cycle_days_p90", "close_cycle_days", "straight_through_rate", "dso_days",
    "billing_leakage", "data_quality_score",
)


@dataclass(frozen=True)
class Window:
    period: str | None
    start: date | None
    end: date  # the as-of day (period end, or today)
    entity: str | None
    # what several KPIs of one window read (the invoices issued in it): read once per window
    shared: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class KpiDef:
    name: str
    formula: str
    unit: str  # ratio, days, count, amount, score
    fn: Callable[[Any, Window], dict[str, Any]]


_KPIS: dict[str, KpiDef] = {}


def kpi(name: str, formula: str, unit: str) -> Callable[[Callable[[Any, Window], dict[str, Any]]],
                                                        Callable[[Any, Window], dict[str, Any]]]:
    def register(fn: Callable[[Any, Window], dict[str, Any]]) -> Callable[[Any, Window], dict[str, Any]]:
        _KPIS[name] = KpiDef(name, formula, unit, fn)
        return fn

    return register


def number(value: Decimal | float | int | None, places: int) -> str | None:
    if value is None:
        return None
    q = Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = format(q.normalize(), "f")
    return "0" if text in ("-0", "") else text


def ratio(numerator: int, denominator: int) -> dict[str, Any]:
    return {"value": number(Decimal(numerator) / denominator, 4) if denominator else None,
            "numerator": numerator, "denominator": denominator}


def run_query(uow: Any, name: str, where: dict[str, Any]) -> dict[str, Any] | None:
    try:
        op = registry.get(name, "query")
    except CloseloopError:
        return None
    return op.fn(uow, op.parse(where))


def _entity_clause(w: Window, column: str = "entity") -> tuple[str, list[Any]]:
    return (f" AND {column} = ?", [w.entity]) if w.entity else ("", [])


def _in_window(day: str, w: Window) -> bool:
    return (w.start is None or day >= iso(w.start)) and day <= iso(w.end)


# ----------------------------------------------------------------------------- ledger


@kpi("manual_journal_share", "manual journal entries / all journal entries dated in the period"
     " (also by amount: manual debits / all debits)", "ratio")
def manual_journal_share(uow: Any, w: Window) -> dict[str, Any]:
    clause, params = _entity_clause(w, "e.entity")
    lo = iso(w.start) if w.start else "0000-01-01"
    rows = uow.all("SELECT e.manual, COUNT(DISTINCT e.id), SUM(CASE WHEN l.amount > 0 THEN l.amount ELSE 0 END)"
                   " FROM journal_entry e JOIN journal_line l ON l.entry_id = e.id WHERE e.date >= ? AND e.date <= ?"
                   f"{clause} GROUP BY e.manual", [lo, iso(w.end), *params])
    counts = {bool(m): (int(n), int(a or 0)) for m, n, a in rows}
    manual_n, manual_amt = counts.get(True, (0, 0))
    total_n = manual_n + counts.get(False, (0, 0))[0]
    total_amt = manual_amt + counts.get(False, (0, 0))[1]
    out = ratio(manual_n, total_n)
    out["amount_share"] = number(Decimal(manual_amt) / total_amt, 4) if total_amt else None
    out["records"] = [r[0] for r in uow.all(
        "SELECT reference FROM journal_entry e WHERE manual = ? AND date >= ? AND date <= ?"
        f"{clause.replace('e.entity', 'entity')} ORDER BY id LIMIT 50", [True, lo, iso(w.end), *params])
        if r[0]]
    return out


@kpi("dso_days", "accounts receivable at period end / amounts invoiced in the period x days in the period"
     " (per entity in its functional currency; across entities the invoiced-weighted mean)", "days")
def dso_days(uow: Any, w: Window) -> dict[str, Any]:
    if w.start is None:
        raise ValidationError("dso_days needs a period", field="period")
    days = (w.end - w.start).days + 1
    weighted = Decimal(0)
    weights = 0
    parts = []
    for ent in ([get_entity(uow, w.entity)] if w.entity else list_entities(uow)):
        ar_id = uow.scalar("SELECT id FROM ledger_account WHERE entity = ? AND role = 'accounts_receivable'",
                           (ent.code,))
        balance = int(uow.scalar("SELECT COALESCE(SUM(amount), 0) FROM ledger_balance WHERE entity = ?"
                                 " AND account_id = ? AND period <= ?", (ent.code, ar_id, w.period)) or 0)
        invoiced = int(uow.scalar(
            "SELECT COALESCE(SUM(l.amount), 0) FROM journal_entry e JOIN journal_line l ON l.entry_id = e.id"
            " WHERE e.entity = ? AND l.account_id = ? AND l.amount > 0 AND e.reference LIKE 'invoice.issued:%'"
            " AND e.date >= ? AND e.date <= ?", (ent.code, ar_id, iso(w.start), iso(w.end))) or 0)
        if invoiced:
            dso = Decimal(balance) / invoiced * days
            weighted += dso * invoiced
            weights += invoiced
            parts.append({"entity": ent.code, "receivable": format_minor(balance, ent.currency),
                          "invoiced": format_minor(invoiced, ent.currency), "dso_days": number(dso, 2)})
    value = number(weighted / weights, 2) if weights else None
    return {"value": value, "days_in_period": days, "records": parts}


# ----------------------------------------------------------------------------- exceptions


@kpi("recon_exception_count", "reconciliation breaks opened in the period (without a period: open now)", "count")
def recon_exception_count(uow: Any, w: Window) -> dict[str, Any]:
    clause, params = _entity_clause(w)
    if w.start is None:
        rows = uow.all(f"SELECT id FROM exception_item WHERE kind = 'recon_break' AND status = 'open'{clause}"
                       " ORDER BY id", params)
    else:
        rows = uow.all("SELECT id FROM exception_item WHERE kind = 'recon_break' AND opened_on >= ? AND opened_on <= ?"
                       f"{clause} ORDER BY id", [iso(w.start), iso(w.end), *params])
    return {"value": str(len(rows)), "records": [int(r[0]) for r in rows]}


@kpi("recon_exception_mean_age_days", "mean age in days, at the period end, of reconciliation breaks open then",
     "days")
def recon_exception_mean_age(uow: Any, w: Window) -> dict[str, Any]:
    clause, params = _entity_clause(w)
    rows = uow.all("SELECT id, opened_on, resolved_on FROM exception_item WHERE kind = 'recon_break'"
                   f" AND opened_on <= ?{clause}", [iso(w.end), *params])
    ages = [(w.end - date.fromisoformat(opened)).days for _, opened, resolved in rows
            if resolved is None or resolved > iso(w.end)]
    return {"value": number(Decimal(sum(ages)) / len(ages), 2) if ages else None, "open_breaks": len(ages),
            "records": [int(r[0]) for r in rows]}


# ----------------------------------------------------------------------------- disputes


def _dispute_cycles(uow: Any, w: Window) -> list[tuple[str, int]]:
    listing = run_query(uow, "disputes", {})
    cycles: list[tuple[str, int]] = []
    if listing is not None and isinstance(listing.get("items"), list):
        for d in listing["items"]:
            resolved = d.get("resolved")
            if resolved and _in_window(str(resolved), w) and (not w.entity or d.get("entity") in (None, w.entity)):
                days = d.get("cycle_days")
                if days is None:
                    days = (date.fromisoformat(str(resolved)) - date.fromisoformat(str(d["opened"]))).days
                cycles.append((str(d.get("dispute_id")), int(days)))
        return cycles
    clause, params = _entity_clause(w)
    for exc_id, opened, resolved in uow.all(
            "SELECT id, opened_on, resolved_on FROM exception_item WHERE kind = 'dispute' AND resolved_on IS NOT NULL"
            f"{clause}", params):
        if _in_window(resolved, w):
            cycles.append((str(exc_id), (date.fromisoformat(resolved) - date.fromisoformat(opened)).days))
    return cycles


@kpi("dispute_cycle_days_median", "median of (resolved - opened) in days over disputes resolved in the period",
     "days")
def dispute_median(uow: Any, w: Window) -> dict[str, Any]:
    cycles = _dispute_cycles(uow, w)
    values = [d for _, d in cycles]
    return {"value": number(statistics.median(values), 2) if values else None, "disputes": len(values),
            "records": [r for r, _ in cycles]}


@kpi("dispute_cycle_days_p90", "90th percentile (nearest rank) of dispute cycle days resolved in the period",
     "days")
def dispute_p90(uow: Any, w: Window) -> dict[str, Any]:
    cycles = sorted(_dispute_cycles(uow, w), key=lambda c: c[1])
    if not cycles:
        return {"value": None, "disputes": 0, "records": []}
    rank = max(1, -(-90 * len(cycles) // 100))  # nearest rank: ceil(0.9 n)
    return {"value": number(cycles[rank - 1][1], 2), "disputes": len(cycles), "records": [r for r, _ in cycles]}


# ----------------------------------------------------------------------------- close


@kpi("close_cycle_days", "mean days from the first close action to the lock, over the period's locked closes",
     "days")
def close_cycle_days(uow: Any, w: Window) -> dict[str, Any]:
    clause, params = _entity_clause(w)
    if w.period:
        rows = uow.all(f"SELECT entity, period, cycle_days FROM close_cycle WHERE status = 'locked' AND period = ?"
                       f"{clause}", [w.period, *params])
    else:
        rows = uow.all(f"SELECT entity, period, cycle_days FROM close_cycle WHERE status = 'locked'{clause}", params)
    days = [int(r[2]) for r in rows]
    return {"value": number(Decimal(sum(days)) / len(days), 2) if days else None,
            "records": [f"{e}:{p}" for e, p, _ in rows]}


# ----------------------------------------------------------------------------- billing


def _payload_field(uow: Any, name: str, column: str = "payload") -> str:
    """SQL for a top-level field of an event payload, as text."""
    if name == "date":
        return payload_date_sql(uow.dialect.is_sqlite, column)  # the expression ix_event_payload_date indexes
    return f"json_extract({column}, '$.{name}')" if uow.dialect.is_sqlite else f"(CAST({column} AS json) ->> '{name}')"


def _dated_events_sql(uow: Any, w: Window, event_type: str, columns: str) -> tuple[str, list[Any]]:
    """Events of one of the dated types (core.store.DATED_EVENT_TYPES) whose payload date is in the window,
    found through the index on that date instead of reading every payload of all time."""
    clause, params = _entity_clause(w, "e.entity")
    day = _payload_field(uow, "date", "e.payload")
    lo = f" AND {day} >= ?" if w.start else ""
    bounds = [iso(w.start)] if w.start else []
    return (f"SELECT {columns} FROM event e WHERE e.type = '{event_type}'{lo} AND {day} <= ?{clause}",
            [*bounds, iso(w.end), *params])


def _issued_invoices(uow: Any, w: Window) -> list[tuple[str, str]]:
    """(invoice number, date) of every invoice.issued dated in the window, in event order."""
    found = w.shared.get("issued")
    if found is None:
        sql, params = _dated_events_sql(uow, w, "invoice.issued", f"e.id, {_payload_field(uow, 'invoice', 'e.payload')},"
                                                                  f" {_payload_field(uow, 'date', 'e.payload')}")
        found = w.shared["issued"] = [(number, day) for _, number, day in uow.all(sql + " ORDER BY e.id", params)]
    return found  # type: ignore[no-any-return]


# Events that touch an issued invoice after the fact (first_pass_invoice_accuracy, straight_through_rate).
TOUCH_TYPES = ("credit_memo.issued", "invoice.voided", "invoice.reissued")


def _touch_events(uow: Any, w: Window, types: tuple[str, ...]) -> list[tuple[Any, Any]]:
    """(invoice, date) from the payloads of every event of these types (credit memos, voids...), in event order.
    Read once per window for all TOUCH_TYPES, and sorted here: ``ORDER BY id`` in SQL makes SQLite walk the
    whole outbox in id order instead of using the type index."""
    found = w.shared.get("touch")
    if found is None:
        marks = ", ".join("?" * len(TOUCH_TYPES))
        found = w.shared["touch"] = sorted(uow.all(
            f"SELECT id, type, {_payload_field(uow, 'invoice')}, {_payload_field(uow, 'date')} FROM event"
            f" WHERE type IN ({marks})", list(TOUCH_TYPES)))
    return [(inv, day) for _, kind, inv, day in found if kind in types]


@kpi("first_pass_invoice_accuracy", "invoices issued in the period that were not credited, voided or re-issued"
     " within 60 days / invoices issued in the period", "ratio")
def first_pass_invoice_accuracy(uow: Any, w: Window) -> dict[str, Any]:
    issued = _issued_invoices(uow, w)
    touched: dict[str, str] = {}
    for invoice, day in _touch_events(uow, w, TOUCH_TYPES):
        touched.setdefault(str(invoice), str(day))
    defective = []
    window = timedelta(days=60)
    for invoice, day in issued:
        when = touched.get(invoice)
        if when and date.fromisoformat(when) <= date.fromisoformat(day) + window:
            defective.append(invoice)
    out = ratio(len(issued) - len(defective), len(issued))
    out["records"] = defective
    return out


@kpi("billing_leakage", "contract value due by the period end but not billed (sum of positive differences"
     " between billable-to-date and billed-to-date per contract), in each contract's currency", "amount")
def billing_leakage(uow: Any, w: Window) -> dict[str, Any]:
    found = run_query(uow, "billing_leakage", {"as_of": iso(w.end), "entity": w.entity})
    if found is not None:
        return found
    clause, params = _entity_clause(w)
    rows = uow.all("SELECT id, amount, currency, details FROM exception_item WHERE kind = 'recon_break'"
                   f" AND status = 'open' AND opened_on <= ?{clause}", [iso(w.end), *params])
    totals: dict[str, int] = {}
    records = []
    for exc_id, amount, currency, details in rows:
        d = json.loads(details) if details else {}
        if str(d.get("rule", "")).startswith("contract") and amount and currency:
            totals[currency] = totals.get(currency, 0) + abs(int(amount))
            records.append(int(exc_id))
    if not totals:
        return {"value": "0", "by_currency": {}, "records": []}
    by_currency = {c: format_minor(v, c) for c, v in sorted(totals.items())}
    value = next(iter(by_currency.values())) if len(by_currency) == 1 else None
    return {"value": value, "by_currency": by_currency, "records": records}


# Commands by which a person acts on one record (applying a payment, resolving an exception).
MANUAL_COMMANDS = ("payment.apply", "exception.resolve")


@kpi("straight_through_rate", "records with no manual touch / all records, over the period's journal entries"
     " (not manual), invoices (no exception, credit memo or void) and payments (applied automatically)", "ratio")
def straight_through_rate(uow: Any, w: Window) -> dict[str, Any]:
    clause, params = _entity_clause(w)
    lo = iso(w.start) if w.start else "0000-01-01"
    n_entries, n_manual = uow.one("SELECT COUNT(*), SUM(CASE WHEN manual = ? THEN 1 ELSE 0 END) FROM journal_entry"
                                  f" WHERE date >= ? AND date <= ?{clause}", [True, lo, iso(w.end), *params])
    entries = int(n_entries or 0)
    auto_entries = entries - int(n_manual or 0)
    invoices = _issued_invoices(uow, w)
    touched_invoices = {r[0] for r in uow.all("SELECT record_id FROM exception_item WHERE record_type = 'invoice'")}
    touched_invoices |= {inv for inv, _ in _touch_events(uow, w, ("credit_memo.issued", "invoice.voided"))}
    # A held invoice's exception names it by its id (it had no number yet); it is issued by the person
    # releasing it, so an invoice.issued caused by an exception command was touched by hand.
    # (CROSS JOIN: SQLite reads the few manual commands first and each one's events by ix_event_type)
    touched_invoices |= {r[0] for r in uow.all(
        f"SELECT {_payload_field(uow, 'invoice', 'e.payload')} FROM audit_log a CROSS JOIN event e"
        f" WHERE a.command IN ({', '.join('?' * len(MANUAL_COMMANDS))}) AND e.command_id = a.id"
        " AND e.type = 'invoice.issued'", list(MANUAL_COMMANDS))}
    auto_invoices = sum(1 for inv, _ in invoices if inv not in touched_invoices)
    # payment.applied carries no method: an application made by a person is one whose command is
    # payment.apply, or an exception resolution (a low-confidence match accepted)
    marks = ", ".join("?" * len(MANUAL_COMMANDS))
    sql, where = _dated_events_sql(
        uow, w, "payment.applied",
        f"COUNT(*), SUM(CASE WHEN COALESCE({_payload_field(uow, 'method', 'e.payload')}, 'auto') <> 'manual'"
        f" AND (a.command IS NULL OR a.command NOT IN ({marks})) THEN 1 ELSE 0 END)")
    n_payments, n_auto = uow.one(sql.replace(" FROM event e ", " FROM event e LEFT JOIN audit_log a ON a.id = e.command_id ",
                                             1), [*MANUAL_COMMANDS, *where])
    payments, auto_payments = int(n_payments or 0), int(n_auto or 0)
    out = ratio(auto_entries + auto_invoices + auto_payments, entries + len(invoices) + payments)
    out["parts"] = {"journal_entries": [auto_entries, entries], "invoices": [auto_invoices, len(invoices)],
                    "payments": [auto_payments, payments]}
    return out


# ----------------------------------------------------------------------------- customers


@kpi("data_quality_score", "the customer master's weighted score over completeness, validity, duplicates and"
     " hierarchy integrity (docs/customers.md)", "score")
def data_quality_score(uow: Any, w: Window) -> dict[str, Any]:
    found = run_query(uow, "customer_quality", {})
    if found is None:
        return {"value": None, "records": []}
    value = found.get("score")
    return {"value": number(Decimal(str(value)), 4) if value is not None else None, "components": found,
            "records": []}


# ----------------------------------------------------------------------------- queries


def window(uow: Any, period: str | None, entity: str | None) -> Window:
    if entity:
        get_entity(uow, entity)
    if period:
        check_period(period)
        return Window(period, period_start(period), period_end(period), entity)
    return Window(None, None, uow.today(), entity)


@payload
class KpiQuery:
    name: str
    period: str | None = None
    entity: str | None = None


@query("kpi", KpiQuery, summary="One KPI's value for a period, with its formula and the records behind it")
def kpi_query(uow: Any, q: KpiQuery) -> dict[str, Any]:
    definition = _KPIS.get(q.name)
    if definition is None:
        raise ValidationError(f"unknown KPI {q.name!r}; KPIs are {', '.join(KPI_NAMES)}", field="name")
    result = definition.fn(uow, window(uow, q.period, q.entity))
    return {"name": q.name, "period": q.period, "entity": q.entity, "unit": definition.unit,
            "formula": definition.formula, **result}


@payload
class KpisQuery:
    period: str | None = None
    periods: str | None = None  # YYYY-MM..YYYY-MM: one row per period (a trend)
    entity: str | None = None


@query("kpis", KpisQuery, summary="Every KPI for a period (or a trend over a range of periods)")
def kpis(uow: Any, q: KpisQuery) -> dict[str, Any]:
    from closeloop.core.periods import periods_between

    if q.periods:
        first, _, last = q.periods.partition("..")
        labels = periods_between(check_period(first), check_period(last or first))
    else:
        labels = [q.period] if q.period else [None]  # type: ignore[list-item]
    rows = []
    for label in labels:
        w = window(uow, label, q.entity)
        values = {}
        for name in KPI_NAMES:
            try:
                values[name] = _KPIS[name].fn(uow, w).get("value")
            except CloseloopError:
                values[name] = None
        rows.append({"period": label, **values})
    return {"entity": q.entity, "kpis": list(KPI_NAMES), "rows": rows,
            "formulas": {n: _KPIS[n].formula for n in KPI_NAMES}}
