"""Exception queue: filter by kind, owner, status, entity and age; the playbook beside each; resolve; history."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from closeloop.core.errors import ValidationError
from closeloop.core.exception_queue import ACTIONS, KINDS
from closeloop.core.registry import ROLES
from closeloop.web.kit import (
    NavEntry,
    form_action,
    page,
    paginate,
    render,
    run_command,
    run_query,
    today,
)
from closeloop.web.playbooks import playbook

nav = NavEntry("Exceptions", "/exceptions", order=10)
router = APIRouter()


def _age(item: dict[str, Any], on: date) -> int:
    try:
        return max(0, (on - date.fromisoformat(item["opened_on"])).days)
    except (KeyError, TypeError, ValueError):
        return 0


def _int(value: str | None, field: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValidationError(f"{field} must be a whole number of days", field=field) from None


@router.get("/exceptions")
@page
def queue(request: Request) -> Response:
    q = request.query_params
    filters = {"kind": q.get("kind") or None, "owner_role": q.get("owner") or None,
               "status": q.get("status", "open") or None, "entity": q.get("entity") or None}
    min_age, max_age = _int(q.get("min_age"), "min_age"), _int(q.get("max_age"), "max_age")
    data = run_query(request, "exceptions", {**filters, "limit": 10000})
    on = today(request)
    items = []
    for item in data["items"]:
        item = dict(item, age=_age(item, on))
        item["overdue"] = bool(item["status"] == "open" and item.get("due_at") and item["due_at"][:10] < on.isoformat())
        if min_age is not None and item["age"] < min_age or max_age is not None and item["age"] > max_age:
            continue
        if q.get("overdue") and not item["overdue"]:
            continue
        items.append(item)
    items.sort(key=lambda i: (-i["age"], i["id"]))
    shown, pager = paginate(items, request)
    return render(request, "exceptions.html", items=shown, pager=pager, kinds=KINDS, roles=ROLES,
                  filters={**filters, "min_age": q.get("min_age", ""), "max_age": q.get("max_age", ""),
                           "overdue": q.get("overdue", "")})


@router.get("/exceptions/{exception_id}")
@page
def detail(request: Request, exception_id: int) -> Response:
    item = dict(run_query(request, "exception", {"exception": exception_id}))  # with history and playbook
    item["age"] = _age(item, today(request))
    return render(request, "exception.html", item=item, playbook=playbook(item["kind"], item.get("playbook")),
                  actions=ACTIONS, history=item.get("history") or [])


@router.post("/exceptions/{exception_id}/resolve")
@form_action
def resolve(request: Request, form: dict[str, str], exception_id: int) -> Response:
    payload: dict[str, Any] = {"exception": exception_id, "action": form.get("action", ""),
                               "reason": form.get("reason", "")}
    if form.get("assignee"):
        payload["assignee"] = form["assignee"]
    result = run_command(request, "exception.resolve", payload)
    return RedirectResponse(f"/exceptions/{exception_id}?" + urlencode({"flash": f"{result['action']}:"
                                                                        f" {result['status']}"}), status_code=303)
