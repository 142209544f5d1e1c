"""Stable error codes (SCENARIOS.md) and the one exception type that carries them.

Every refusal in closeloop is a :class:`CloseloopError` with a stable ``code``,
a human message naming the record, the field and the reason, and ``details``
(machine-readable: ``field``, ``record``, totals...). The REST API maps the
code to an HTTP status and the CLI to an exit code, both from the tables here,
so the mapping is written once.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "validation_error"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    NOT_OWNER = "not_owner"
    APPROVAL_REQUIRED = "approval_required"
    PERIOD_CLOSED = "period_closed"
    UNBALANCED = "unbalanced"
    TAX_UNDETERMINED = "tax_undetermined"
    FORBIDDEN = "forbidden"
    INSUFFICIENT_AMOUNT = "insufficient_amount"
    NOT_LIVE = "not_live"
    UNKNOWN_COMMAND = "unknown_command"
    INTERNAL_ERROR = "internal_error"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.NOT_OWNER: 409,
    ErrorCode.APPROVAL_REQUIRED: 409,
    ErrorCode.PERIOD_CLOSED: 409,
    ErrorCode.UNBALANCED: 422,
    ErrorCode.TAX_UNDETERMINED: 422,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.INSUFFICIENT_AMOUNT: 409,
    ErrorCode.NOT_LIVE: 409,
    ErrorCode.UNKNOWN_COMMAND: 404,
    ErrorCode.INTERNAL_ERROR: 500,
}

# CLI exit codes (README documents them): 0 ok, 1 a check failed, 2 usage, 3 business refusal, 4 internal.
EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_INTERNAL = 4


class CloseloopError(Exception):
    """A refusal with a stable code. ``details`` names the record and the field."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, *, code: ErrorCode | str | None = None, **details: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = ErrorCode(code)
        self.message = message
        self.details: dict[str, Any] = {k: v for k, v in details.items() if v is not None}

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    @property
    def exit_code(self) -> int:
        if self.code in (ErrorCode.INTERNAL_ERROR,):
            return EXIT_INTERNAL
        if self.code is ErrorCode.UNKNOWN_COMMAND:
            return EXIT_USAGE
        return EXIT_REFUSED

    def to_dict(self) -> dict[str, Any]:
        return {"code": str(self.code), "message": self.message, "details": self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}: {self.message})"


class ValidationError(CloseloopError):
    code = ErrorCode.VALIDATION_ERROR


class NotFoundError(CloseloopError):
    code = ErrorCode.NOT_FOUND


class ConflictError(CloseloopError):
    code = ErrorCode.CONFLICT


class NotOwnerError(CloseloopError):
    code = ErrorCode.NOT_OWNER


class ApprovalRequiredError(CloseloopError):
    code = ErrorCode.APPROVAL_REQUIRED


class PeriodClosedError(CloseloopError):
    code = ErrorCode.PERIOD_CLOSED


class UnbalancedError(CloseloopError):
    code = ErrorCode.UNBALANCED


class TaxUndeterminedError(CloseloopError):
    code = ErrorCode.TAX_UNDETERMINED


class ForbiddenError(CloseloopError):
    code = ErrorCode.FORBIDDEN


class InsufficientAmountError(CloseloopError):
    code = ErrorCode.INSUFFICIENT_AMOUNT


class NotLiveError(CloseloopError):
    code = ErrorCode.NOT_LIVE


class UnknownCommandError(CloseloopError):
    code = ErrorCode.UNKNOWN_COMMAND
