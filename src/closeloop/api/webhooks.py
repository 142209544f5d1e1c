"""Inbound webhooks: payment-provider and CRM deliveries, authenticated by their signatures.

A provider or CRM cannot hold an API key; each delivery is signed over its exact body
instead (Stripe's ``Stripe-Signature``; closeloop's ``X-Closeloop-Signature`` or HubSpot's
v3 signature for the CRM). The route hands the raw bytes to the area's verifier and acts as a
system principal limited to that one command, so an unsigned or forged request changes
nothing (the refusal is audited) and a replayed one is recognised by its event id.

- ``POST /api/v1/webhooks/payments``: Stripe-shaped events (secret
  ``CLOSELOOP_STRIPE_WEBHOOK_SECRET``), applied by ``provider.webhook``.
- ``POST /api/v1/webhooks/crm``: CRM change events (secret ``CLOSELOOP_CRM_WEBHOOK_SECRET``),
  verified, then each applied by ``crm.event``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from closeloop.api.errors import body as error_body
from closeloop.api.errors import status_of
from closeloop.api.guard import read_body
from closeloop.auth.users import Principal
from closeloop.core import registry
from closeloop.core.errors import CloseloopError

PREFIX = "/api/v1/webhooks"
MAX_WEBHOOK = 1 << 20

PAYMENTS = Principal(name="webhook:payments", roles=frozenset({"collections"}), via="system")
CRM = Principal(name="webhook:crm", roles=frozenset({"sales_ops"}), via="system")


def _payments(api: Any, raw: bytes, headers: dict[str, str]) -> dict[str, Any]:
    signature = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)
    op = registry.get("provider.webhook", "command")
    result: dict[str, Any] = api.run(PAYMENTS, op, {"body": raw.decode("utf-8", errors="replace"),
                                                    "signature": signature})
    return result


def _crm(api: Any, raw: bytes, headers: dict[str, str], method: str, uri: str) -> dict[str, Any]:
    from closeloop.customers.webhook import parse, verify

    secret = str(api.cl.services.config.get("crm_webhook_secret") or os.environ.get("CLOSELOOP_CRM_WEBHOOK_SECRET")
                 or "")
    verify(secret, raw, headers, now=time.time(), method=method, uri=uri)
    op = registry.get("crm.event", "command")
    results = []
    for event in parse(raw):
        try:
            results.append(api.run(CRM, op, {"event": event, "source": str(event.get("source") or "crm")}))
        except CloseloopError as err:  # each event of a batch stands alone
            results.append({"id": event.get("id"), "status": "refused", **error_body(err)})
    return {"results": results}


def add_webhook_routes(app: FastAPI, api: Any) -> None:
    async def payments(request: Request) -> JSONResponse:
        raw = await read_body(request, MAX_WEBHOOK)
        try:
            result = await run_in_threadpool(_payments, api, raw, dict(request.headers))
        except CloseloopError as err:
            return JSONResponse(error_body(err), status_code=status_of(err))
        return JSONResponse(result)

    async def crm(request: Request) -> JSONResponse:
        raw = await read_body(request, MAX_WEBHOOK)
        try:
            result = await run_in_threadpool(_crm, api, raw, dict(request.headers), request.method,
                                             str(request.url))
        except CloseloopError as err:
            return JSONResponse(error_body(err), status_code=status_of(err))
        return JSONResponse(result)

    raw_body = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "additionalProperties": True}}}}}
    ok = {"200": {"description": "applied (or recognised as a replay)",
                  "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}}},
          "403": {"description": "missing or invalid signature"}, "422": {"description": "malformed delivery"},
          "409": {"description": "event id reused with a different payload"}}
    app.add_api_route(f"{PREFIX}/payments", payments, methods=["POST"], tags=["webhooks"],
                      operation_id="webhook_payments", summary="Payment-provider webhook (Stripe-Signature)",
                      openapi_extra={**raw_body, "responses": ok})
    app.add_api_route(f"{PREFIX}/crm", crm, methods=["POST"], tags=["webhooks"], operation_id="webhook_crm",
                      summary="CRM change events (X-Closeloop-Signature or X-HubSpot-Signature-v3)",
                      openapi_extra={**raw_body, "responses": ok})
