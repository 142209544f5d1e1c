"""Exception queue: filter by kind, owner, status, entity and age; the playbook beside each; resolve; history."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from closeloop.core.errors import NotFoundError, ValidationError
from closeloop.core.exception_queue import ACTIONS, KINDS
from closeloop.core.registry import ROLES
from closeloop.web.kit import (
    NavEntry,
    closeloop,
    form_action,
    has_operation,
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


def _history(request: Request, exception_id: int) -> list[dict[str, Any]]:
    if has_operation("exception"):
        return list(run_query(request, "exception", {"exception": exception_id}).get("history", []))
    # Until the exception queue has a query with the history, read its action log directly (read only).
    with closeloop(request).unit_of_work(write=False) as uow:
        return list(uow.dicts("SELECT at, actor, action, reason, details FROM exception_action WHERE"
                              " exception_id = ? ORDER BY id", (exception_id,)))


def _find(request: Request, exception_id: int) -> dict[str, Any]:
    if has_operation("exception"):  # one exception with its history and playbook (control area)
        return dict(run_query(request, "exception", {"exception": exception_id}))
    # Otherwise scan the queue with the user's scope: an exception of another entity is not found.
    for item in run_query(request, "exceptions", {"limit": 10000})["items"]:
        if item["id"] == exception_id:
            return dict(item)
    raise NotFoundError(f"exception {exception_id} does not exist (or is outside your entities)", field="exception",
                        record=str(exception_id))


@router.get("/exceptions/{exception_id}")
@page
def detail(request: Request, exception_id: int) -> Response:
    item = _find(request, exception_id)
    item["age"] = _age(item, today(request))
    history = item["history"] if isinstance(item.get("history"), list) else _history(request, exception_id)
    return render(request, "exception.html", item=item, playbook=playbook(item["kind"], item.get("playbook")),
                  actions=ACTIONS, history=history)


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
