"""Dashboard: KPI tiles fed by queries, with trend charts where a query gives periods.

Extension point: areas add tiles with :func:`tile`. A tile function receives
the request and returns a :class:`Tile` (or None to hide it); it reads only
through :func:`closeloop.web.kit.run_query`, so roles and entity scope apply.
A refused or missing query hides the tile instead of breaking the page::

    from closeloop.web.pages.dashboard import Tile, tile

    @tile(order=30)
    def open_invoices(request):
        data = run_query(request, "invoices", {"status": "open"})
        return Tile("Open invoices", data["count"], link="/invoices?status=open")
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from closeloop.core.errors import CloseloopError
from closeloop.web.charts import bar_chart, trend
from closeloop.web.kit import NavEntry, has_operation, page, paginate, parse_period, render, run_query, today

nav = NavEntry("Dashboard", "/", order=0, also=("/kpis/",))
router = APIRouter()

# KPI names of SCENARIOS.md (the `kpis` query gives the list; this is the order of the tiles).
KPI_NAMES = ("first_pass_invoice_accuracy", "manual_journal_share", "recon_exception_count",
             "recon_exception_mean_age_days", "dispute_cycle_days_median", "dispute_cycle_days_p90",
             "close_cycle_days", "straight_through_rate", "dso_days", "billing_leakage", "data_quality_score")
RATIOS = {"first_pass_invoice_accuracy", "manual_journal_share", "straight_through_rate"}
DAYS = {"recon_exception_mean_age_days", "dispute_cycle_days_median", "dispute_cycle_days_p90", "close_cycle_days",
        "dso_days"}
TREND_PERIODS = 6


@dataclass
class Tile:
    title: str
    value: Any
    link: str | None = None
    note: str = ""
    currency: str | None = None  # the value is an amount in this currency (formatted for the reader's locale)
    chart: Any = None
    series: list[tuple[str, Any]] = field(default_factory=list)
    unit: str = ""  # "ratio" (shown as a percentage), "days" or "" (a number)


_TILES: list[tuple[int, Callable[[Request], Tile | list[Tile] | None]]] = []


def tile(order: int = 100) -> Callable[[Callable[[Request], Any]], Callable[[Request], Any]]:
    def register(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        _TILES.append((order, fn))
        _TILES.sort(key=lambda t: t[0])
        return fn

    return register


def _periods(end: date, count: int) -> list[str]:
    out = []
    year, month = end.year, end.month
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return list(reversed(out))


@tile(order=10)
def open_exceptions(request: Request) -> list[Tile]:
    data = run_query(request, "exceptions", {"status": "open", "limit": 10000})
    items = data["items"]
    now = today(request).isoformat()
    overdue = sum(1 for i in items if i.get("due_at") and i["due_at"][:10] < now)
    kinds: Counter[str] = Counter(str(i["kind"]) for i in items)
    return [Tile("Open exceptions", data["count"], link="/exceptions?status=open",
                 chart=bar_chart(kinds.most_common(), title="Open exceptions by kind")),
            Tile("Past their SLA", overdue, link="/exceptions?status=open&overdue=1",
                 note="open exceptions past their due time")]


@tile(order=20)
def ledgers(request: Request) -> list[Tile]:
    tiles = []
    for ent in run_query(request, "entities")["entities"]:
        tb = run_query(request, "trial_balance", {"entity": ent["code"]})
        tiles.append(Tile(f"Trial balance {ent['code']}", tb["debits"], link=f"/ledger?entity={ent['code']}",
                          currency=tb["currency"], note=("balanced" if tb["balanced"] else "NOT BALANCED")
                          + " · total debits"))
    return tiles


def kpi_entity(request: Request) -> str | None:
    """The entity the KPIs are for: ``?entity=``, else the first of a user scoped to several, else all."""
    chosen = request.query_params.get("entity") or None
    user = request.state.user
    if chosen is None and user.scoped and len(user.entities) > 1:
        return str(sorted(user.entities)[0])
    return None if chosen is None else str(chosen)


def kpi_unit(name: str) -> str:
    return "ratio" if name in RATIOS else "days" if name in DAYS else ""


@tile(order=50)
def kpis(request: Request) -> list[Tile]:
    """Every KPI with its trend over the last periods: one `kpis` query for all of them."""
    if not has_operation("kpis"):
        return []
    periods = _periods(today(request), TREND_PERIODS)
    entity = kpi_entity(request)
    data = run_query(request, "kpis", {"periods": f"{periods[0]}..{periods[-1]}", "entity": entity})
    names = [n for n in KPI_NAMES if n in data["kpis"]] + [n for n in data["kpis"] if n not in KPI_NAMES]
    tiles = []
    for name in names:
        series = [(row["period"], row.get(name)) for row in data["rows"] if row.get(name) is not None]
        latest = series[-1] if series else (periods[-1], None)
        link = f"/kpis/{name}?period={latest[0]}" + (f"&entity={entity}" if entity else "")
        tiles.append(Tile(name.replace("_", " "), "—" if latest[1] is None else latest[1], link=link,
                          chart=trend(series) if len(series) > 1 else None, series=series, unit=kpi_unit(name),
                          note=(latest[0] if latest[1] is not None else "no data yet")))
    return tiles


@router.get("/")
@page
def dashboard(request: Request) -> Response:
    tiles: list[Tile] = []
    hidden: list[str] = []
    for _, fn in _TILES:
        try:
            found = fn(request)
        except CloseloopError as err:
            hidden.append(f"{fn.__name__}: {err.code}")
            continue
        if found is None:
            continue
        tiles.extend(found if isinstance(found, list) else [found])
    return render(request, "dashboard.html", tiles=tiles, hidden=hidden, kpi_available=has_operation("kpis"))


@router.get("/kpis/{name}")
@page
def kpi(request: Request, name: str) -> Response:
    """One KPI for a period: value, formula, the records behind it, and its trend over twelve periods."""
    period = parse_period(request.query_params.get("period")) or today(request).isoformat()[:7]
    entity = kpi_entity(request)
    data = run_query(request, "kpi", {"name": name, "period": period, "entity": entity})
    end = date.fromisoformat(period + "-01")
    periods = _periods(end, 12)
    rows = run_query(request, "kpis", {"periods": f"{periods[0]}..{periods[-1]}", "entity": entity})["rows"]
    series = [(r["period"], r.get(name)) for r in rows if r.get(name) is not None]
    records = [r if isinstance(r, dict) else {"record": r} for r in data.get("records") or []]
    columns: list[str] = []
    for r in records:
        columns += [k for k in r if k not in columns]
    shown, pager = paginate(records, request, size=50)
    entities = run_query(request, "entities")["entities"]
    return render(request, "kpi.html", kpi=data, name=name, period=period, entity=entity, entities=entities,
                  unit=kpi_unit(name), series=series, chart=trend(series, width=640, height=160) if len(series) > 1
                  else None, records=shown, columns=columns, pager=pager,
                  links={"invoice": "/invoices/", "number": "/invoices/", "journal": "/ledger/journals/",
                         "dispute": "/collections/disputes#", "contract_id": "/contracts/", "contract": "/contracts/",
                         "customer": "/customers/", "external_id": "/customers/", "exception": "/exceptions/",
                         "payment": "/collections/payments/"})
