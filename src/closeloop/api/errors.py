"""The one JSON error body of the REST API: ``{"code", "message", "details"}``.

Codes are the stable ones of ``core/errors.ErrorCode`` and the HTTP status
comes from ``core/errors.HTTP_STATUS``, with three transport-level statuses
that carry a stable code too: 401 (no or bad credentials; code
``forbidden``), 413 (body too large; code ``validation_error``) and 415
(not JSON; code ``validation_error``).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from closeloop.core.errors import HTTP_STATUS, CloseloopError, ErrorCode


class ApiError(CloseloopError):
    """A refusal at the HTTP boundary with an explicit status (401, 405, 413, 415)."""

    def __init__(self, status: int, code: ErrorCode | str, message: str, *, headers: dict[str, str] | None = None,
                 **details: Any) -> None:
        super().__init__(message, code=code, **details)
        self.status = status
        self.headers = headers or {}

    @property
    def http_status(self) -> int:
        return self.status


def status_of(err: CloseloopError) -> int:
    return err.status if isinstance(err, ApiError) else HTTP_STATUS.get(err.code, 500)


def error_response(err: CloseloopError, headers: dict[str, str] | None = None) -> JSONResponse:
    extra = dict(err.headers) if isinstance(err, ApiError) else {}
    extra.update(headers or {})
    return JSONResponse(body(err), status_code=status_of(err), headers=extra)


def body(err: CloseloopError) -> dict[str, Any]:
    return {"code": str(err.code), "message": err.message, "details": jsonable(err.details)}


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "description": "Every refusal: a stable code, a message naming the record, field and reason, and details.",
    "required": ["code", "message", "details"],
    "properties": {
        "code": {"type": "string", "enum": [str(c) for c in ErrorCode]},
        "message": {"type": "string"},
        "details": {"type": "object", "additionalProperties": True},
    },
}
