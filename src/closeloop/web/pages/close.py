"""Close cockpit, reconciliation, waves and readiness, variations register.

- Close cockpit (per entity and period): each gate with its evidence, the lock and the close cycle; run the
  close (with overrides: gate, reason and the second person who approved it), request a reopening and
  approve one (not by its requester), the close-cycle KPI over recent periods.
- Reconciliation: the latest outcome per rule; a run in the background with a progress page.
- Waves and readiness: each wave's gates with live measure against threshold, go/no-go, go-live.
- Variations: the register by classification; register, approve (a second person), review expiries.

Queries: close_status, entities, audit (reopen requests), kpis, recon, recon_rules, waves_status,
variations. Commands: close.run, period.reopen, period.reopen_approve, recon.run, wave.golive,
variation.register, variation.approve, variations.review.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from closeloop.core.errors import CloseloopError, ValidationError
from closeloop.core.periods import add_months
from closeloop.web.charts import trend
from closeloop.web.kit import (
    NavEntry,
    can,
    form_action,
    page,
    parse_day,
    parse_period,
    redirect,
    render,
    run_command,
    run_query,
    today,
)
from closeloop.web.pages.jobs import start_job

nav = NavEntry("Close", "/close", order=70, also=("/waves", "/variations", "/recon"))
router = APIRouter()
CLASSIFICATIONS = ("strategic", "regulatory", "legacy")


def _last_month(request: Request) -> str:
    return add_months(today(request).replace(day=1), -1).isoformat()[:7]


def _reopen_requests(request: Request, entity: str, period: str) -> list[dict[str, Any]]:
    """Reopen requests and approvals of the period from the audit log (who asked, why, who approved)."""
    if not can(request, "period.reopen") or not can(request, "audit"):
        return []
    out = []
    for command in ("period.reopen", "period.reopen_approve"):
        try:
            items = run_query(request, "audit", {"command": command, "outcome": "ok", "payloads": True,
                                                 "limit": 200})["items"]
        except CloseloopError:
            return []
        out += [{**i, "command": command} for i in items
                if (i.get("payload") or {}).get("entity") == entity and (i.get("payload") or {}).get("period") == period]
    return sorted(out, key=lambda i: i["id"])


@router.get("/close")
@page
def cockpit(request: Request) -> Response:
    entities = run_query(request, "entities")["entities"]
    q = request.query_params
    entity = q.get("entity") or (entities[0]["code"] if entities else None)
    period = parse_period(q.get("period")) or _last_month(request)
    status = run_query(request, "close_status", {"entity": entity, "period": period}) if entity else None
    requests = _reopen_requests(request, entity, period) if entity else []
    pending = bool(requests) and requests[-1]["command"] == "period.reopen"
    periods = f"{add_months(today(request).replace(day=1), -6).isoformat()[:7]}..{period}"
    series: list[tuple[str, Any]] = []
    try:
        rows = run_query(request, "kpis", {"periods": periods, "entity": entity})["rows"]
        series = [(r["period"], r["close_cycle_days"]) for r in rows if r.get("close_cycle_days") is not None]
    except CloseloopError:
        series = []
    return render(request, "close.html", tab="close", entities=entities, entity=entity, period=period, close=status,
                  requests=requests, reopen_pending=pending, cycle_series=series,
                  cycle_chart=trend(series) if len(series) > 1 else None,
                  can_close=can(request, "close.run"), can_reopen=can(request, "period.reopen"),
                  can_approve=can(request, "period.reopen_approve"))


@router.post("/close/run")
@form_action
def run_close(request: Request, form: dict[str, Any]) -> Response:
    entity, period = form.get("entity", ""), parse_period(form.get("period")) or ""
    overrides = []
    for gate in [k[len("override_"):] for k in form if k.startswith("override_") and form[k] == "1"]:
        reason, approver = form.get(f"reason_{gate}", "").strip(), form.get(f"approver_{gate}", "").strip()
        if not reason or not approver:
            raise ValidationError(f"the override of {gate} needs a reason and the person who approved it",
                                  field=f"overrides.{gate}")
        overrides.append({"gate": gate, "reason": reason, "approver": approver})
    result = run_command(request, "close.run", {"entity": entity, "period": period, "overrides": overrides})
    back = f"/close?entity={entity}&period={period}"
    if result.get("locked"):
        return redirect(back.split("?")[0], entity=entity, period=period,
                        flash=f"{entity} {period} is closed (cycle {result.get('cycle_days')} day(s))")
    return redirect(back.split("?")[0], entity=entity, period=period,
                    error=f"not closed: blocked by {', '.join(result.get('blocking') or [])}")


@router.post("/close/reopen")
@form_action
def reopen(request: Request, form: dict[str, Any]) -> Response:
    entity, period = form.get("entity", ""), parse_period(form.get("period")) or ""
    result = run_command(request, "period.reopen", {"entity": entity, "period": period,
                                                    "reason": form.get("reason", "")})
    return redirect("/close", entity=entity, period=period,
                    flash=f"reopening of {entity} {period} requested ({result.get('status', '').replace('_', ' ')});"
                          " a second person approves it")


@router.post("/close/reopen/approve")
@form_action
def reopen_approve(request: Request, form: dict[str, Any]) -> Response:
    entity, period = form.get("entity", ""), parse_period(form.get("period")) or ""
    run_command(request, "period.reopen_approve", {"entity": entity, "period": period,
                                                   "approver": request.state.user.name})
    return redirect("/close", entity=entity, period=period, flash=f"{entity} {period} is open again")


@router.get("/recon")
@page
def recon(request: Request) -> Response:
    latest = run_query(request, "recon")
    rules = run_query(request, "recon_rules")
    return render(request, "recon.html", tab="recon", latest=latest, rules=rules,
                  entities=run_query(request, "entities")["entities"], can_run=can(request, "recon.run"),
                  as_of=today(request).isoformat())


@router.post("/recon/run")
@form_action
def recon_run(request: Request, form: dict[str, Any]) -> Response:
    payload: dict[str, Any] = {"as_of": parse_day(form.get("as_of"), "as_of")}
    if form.get("entity"):
        payload["entity"] = form["entity"]
    payload = {k: v for k, v in payload.items() if v is not None}
    expected = ""
    try:
        rules = run_query(request, "recon_rules")
        items = rules.get("rules") or rules.get("items") or []
        expected = f"{len(items)} rule(s) to run"
    except CloseloopError:
        pass
    return start_job(request, "Reconciliation run", "recon.run", payload, back="/recon", expected=expected)


@router.get("/waves")
@page
def waves(request: Request) -> Response:
    data = run_query(request, "waves_status")
    return render(request, "waves.html", tab="waves", data=data, can_golive=can(request, "wave.golive"))


@router.post("/waves/{wave}/golive")
@form_action
def golive(request: Request, form: dict[str, Any], wave: str) -> Response:
    result = run_command(request, "wave.golive", {"wave": wave})
    return redirect("/waves", flash=f"wave {wave} is {result.get('status')}")


@router.get("/variations")
@page
def variations(request: Request) -> Response:
    status = request.query_params.get("status", "")
    data = run_query(request, "variations", {"status": status or None})
    return render(request, "variations.html", tab="variations", data=data, state=status,
                  classifications=CLASSIFICATIONS, can_register=can(request, "variation.register"),
                  can_approve=can(request, "variation.approve"), can_review=can(request, "variations.review"),
                  today=today(request).isoformat())


@router.post("/variations/register")
@form_action
def variation_register(request: Request, form: dict[str, Any]) -> Response:
    fields = ("variation_id", "title", "area", "scope", "classification", "owner", "reason", "review_date")
    payload = {k: str(form.get(k, "")).strip() for k in fields}
    result = run_command(request, "variation.register", payload)
    return redirect("/variations", flash=f"variation {result['variation_id']} {result['status']}:"
                    " a second person approves it")


@router.post("/variations/{variation_id}/approve")
@form_action
def variation_approve(request: Request, form: dict[str, Any], variation_id: str) -> Response:
    result = run_command(request, "variation.approve", {"variation_id": variation_id,
                                                        "approver": request.state.user.name})
    return redirect("/variations", flash=f"variation {variation_id} {result.get('status', 'approved')}")


@router.post("/variations/review")
@form_action
def variations_review(request: Request, form: dict[str, Any]) -> Response:
    as_of = parse_day(form.get("as_of"), "as_of") or today(request).isoformat()
    result = run_command(request, "variations.review", {"as_of": as_of})
    return redirect("/variations", flash=f"review as of {as_of}: {len(result.get('expired') or [])} expired")
