"""Ledger: trial balance, profit and loss, balance sheet; drill-down to GL detail and journal entries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from closeloop.web.kit import NavEntry, page, paginate, render, run_query, today

nav = NavEntry("Ledger", "/ledger", order=60, roles=("controller", "admin", "read_only", "billing", "collections"))
router = APIRouter()


def _context(request: Request) -> dict[str, Any]:
    entities = run_query(request, "entities")["entities"]
    q = request.query_params
    entity = q.get("entity") or (entities[0]["code"] if entities else None)
    return {"entities": entities, "entity": entity, "as_of": q.get("as_of", ""),
            "period": q.get("period", ""), "start": q.get("start", ""), "end": q.get("end", "")}


@router.get("/ledger")
@page
def trial_balance(request: Request) -> Response:
    ctx = _context(request)
    tb = run_query(request, "trial_balance", {"entity": ctx["entity"], "as_of": ctx["as_of"]}) if ctx["entity"] \
        else None
    return render(request, "ledger_trial_balance.html", tab="tb", tb=tb, **ctx)


@router.get("/ledger/pnl")
@page
def profit_and_loss(request: Request) -> Response:
    ctx = _context(request)
    if not ctx["period"] and not ctx["start"] and not ctx["end"]:
        ctx["period"] = today(request).isoformat()[:7]
    pnl = run_query(request, "profit_and_loss", {"entity": ctx["entity"], "period": ctx["period"],
                                                 "start": ctx["start"], "end": ctx["end"]}) if ctx["entity"] else None
    return render(request, "ledger_pnl.html", tab="pnl", pnl=pnl, **ctx)


@router.get("/ledger/balance-sheet")
@page
def balance_sheet(request: Request) -> Response:
    ctx = _context(request)
    bs = run_query(request, "balance_sheet", {"entity": ctx["entity"], "as_of": ctx["as_of"]}) if ctx["entity"] \
        else None
    return render(request, "ledger_balance_sheet.html", tab="bs", bs=bs, **ctx)


@router.get("/ledger/accounts/{account}")
@page
def account(request: Request, account: str) -> Response:
    ctx = _context(request)
    gl = run_query(request, "general_ledger", {"entity": ctx["entity"], "account": account, "start": ctx["start"],
                                               "end": ctx["end"] or ctx["as_of"], "limit": 100000})
    lines, pager = paginate(gl["lines"], request, size=50)
    return render(request, "ledger_account.html", tab="gl", gl=gl, lines=lines, pager=pager, **ctx)


@router.get("/ledger/journals/{journal}")
@page
def journal(request: Request, journal: str) -> Response:
    entry = run_query(request, "journal", {"journal": journal})
    return render(request, "ledger_journal.html", tab="je", entry=entry, entity=entry["entity"])
