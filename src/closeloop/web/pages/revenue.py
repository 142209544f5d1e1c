"""Revenue, in the ledger section: the waterfall by month (recognised where runs posted it, scheduled where
not yet), the deferred-revenue roll-forward tied to the ledger, and remaining performance obligations.

Queries: revenue_waterfall, deferred_revenue_rollforward, remaining_performance_obligations, entities.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from closeloop.core.periods import add_months
from closeloop.web.charts import stacked_bars
from closeloop.web.kit import page, paginate, parse_day, parse_period, render, run_query, today

nav: list[Any] = []  # tabs of the Ledger section
router = APIRouter()


def _range(request: Request, back: int, forward: int) -> tuple[str, str]:
    q = request.query_params
    start, end = parse_period(q.get("start"), "start"), parse_period(q.get("end"), "end")
    first = today(request).replace(day=1)
    start = start or add_months(first, -back).isoformat()[:7]
    end = end or add_months(first, forward).isoformat()[:7]
    if end < start:
        start, end = end, start
    return start, end


def _context(request: Request) -> dict[str, Any]:
    entities = run_query(request, "entities")["entities"]
    entity = request.query_params.get("entity") or (entities[0]["code"] if entities else None)
    return {"entities": entities, "entity": entity}


@router.get("/ledger/revenue")
@page
def waterfall(request: Request) -> Response:
    ctx = _context(request)
    start, end = _range(request, 2, 9)
    data = run_query(request, "revenue_waterfall", {"period": f"{start}..{end}", "entity": ctx["entity"]}) \
        if ctx["entity"] else {"periods": [], "rows": [], "totals": []}
    charts = [(t["currency"], stacked_bars(data["periods"], [("recognised", t["recognized"]),
                                                              ("scheduled", t["scheduled"])]))
              for t in data.get("totals", [])]
    rows, pager = paginate(data.get("rows", []), request, size=50)
    return render(request, "revenue_waterfall.html", tab="revenue", data=data, rows=rows, pager=pager, charts=charts,
                  start=start, end=end, **ctx)


@router.get("/ledger/deferred-revenue")
@page
def rollforward(request: Request) -> Response:
    ctx = _context(request)
    start, end = _range(request, 5, 0)
    data = run_query(request, "deferred_revenue_rollforward", {"period": f"{start}..{end}", "entity": ctx["entity"]}) \
        if ctx["entity"] else {"rows": [], "ties": True}
    return render(request, "revenue_rollforward.html", tab="deferred", data=data, start=start, end=end, **ctx)


@router.get("/ledger/rpo")
@page
def rpo(request: Request) -> Response:
    ctx = _context(request)
    as_of = parse_day(request.query_params.get("as_of"), "as_of") or today(request).isoformat()
    data = run_query(request, "remaining_performance_obligations", {"as_of": as_of, "entity": ctx["entity"]}) \
        if ctx["entity"] else {"totals": [], "contracts": []}
    rows, pager = paginate(data.get("contracts", []), request)
    return render(request, "revenue_rpo.html", tab="rpo", data=data, rows=rows, pager=pager, as_of=as_of, **ctx)
