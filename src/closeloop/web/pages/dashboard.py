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
from closeloop.web.kit import NavEntry, has_operation, page, render, run_query, today

nav = NavEntry("Dashboard", "/", order=0)
router = APIRouter()

# KPI names of SCENARIOS.md, shown with a trend when the `kpi` query exists.
KPI_NAMES = ("first_pass_invoice_accuracy", "manual_journal_share", "recon_exception_count",
             "recon_exception_mean_age_days", "dispute_cycle_days_median", "close_cycle_days",
             "straight_through_rate", "dso_days", "billing_leakage", "data_quality_score")
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
    kinds = Counter(i["kind"] for i in items)
    return [Tile("Open exceptions", data["count"], link="/exceptions?status=open",
                 chart=bar_chart(sorted(kinds.items(), key=lambda kv: -kv[1]), title="Open exceptions by kind")),
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


@tile(order=50)
def kpis(request: Request) -> list[Tile]:
    if not has_operation("kpi"):
        return []
    periods = _periods(today(request), TREND_PERIODS)
    tiles = []
    for name in KPI_NAMES:
        series = []
        for period in periods:
            try:
                value = run_query(request, "kpi", {"name": name, "period": period}).get("value")
            except CloseloopError:
                continue
            if value is not None:  # no data for the period: no point on the trend
                series.append((period, value))
        latest = series[-1] if series else (periods[-1], None)
        tiles.append(Tile(name.replace("_", " "), "—" if latest[1] is None else latest[1],
                          chart=trend(series) if len(series) > 1 else None, series=series,
                          note=latest[0] if latest[1] is not None else "no data yet"))
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
    return render(request, "dashboard.html", tiles=tiles, hidden=hidden, kpi_available=has_operation("kpi"))
