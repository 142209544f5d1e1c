"""Operations: every command and query of the registry, with roles and fields, runnable as the signed-in user.

The list is generated from ``closeloop.core.registry``, so operations added by any area appear here.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from closeloop.api.errors import status_of
from closeloop.core import registry
from closeloop.core.errors import CloseloopError, ValidationError
from closeloop.web.kit import NavEntry, form_action, page, render, run_command, run_query

nav = NavEntry("Operations", "/operations", order=90)
router = APIRouter()


def _ops(request: Request) -> list[dict[str, Any]]:
    user = request.state.user
    return [{"name": o.name, "kind": o.kind, "summary": o.summary, "roles": o.roles, "fields": o.fields,
             "allowed": bool(user.roles & set(o.roles))}
            for o in sorted(registry.operations().values(), key=lambda o: (o.kind, o.name))]


@router.get("/operations")
@page
def operations(request: Request) -> Response:
    selected = request.query_params.get("op")
    return render(request, "operations.html", ops=_ops(request), selected=selected,
                  payload=request.query_params.get("payload", "{}"), result=None, error=None)


@router.post("/operations/run")
@form_action
def run(request: Request, form: dict[str, str]) -> Response:
    name = form.get("op", "")
    text = form.get("payload", "") or "{}"
    result: Any = None
    error: dict[str, Any] | None = None
    status = 200
    try:
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise ValidationError(f"the payload is not valid JSON: {exc}", field="payload") from None
        if not isinstance(payload, dict):
            raise ValidationError("the payload must be a JSON object", field="payload")
        op = registry.operations().get(name)
        if op is None:
            raise ValidationError(f"unknown operation {name!r}", field="op")
        api = getattr(request.app.state, "api", None)
        if api is not None:  # the API's boundary checks: storable values, file names never paths
            payload = api.prepare(op, payload, request.state.user)
        result = run_command(request, name, payload) if op.kind == "command" else run_query(request, name, payload)
    except CloseloopError as err:
        error, status = err.to_dict(), status_of(err)
    return render(request, "operations.html", status=status, ops=_ops(request),
                  selected=name, payload=text, result=result, error=error)
