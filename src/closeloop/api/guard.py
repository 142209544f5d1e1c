"""Input guards at the HTTP boundary: body size, JSON parsing, values the storage cannot hold, file names.

They run before anything reaches a command, so bad input is a specific 4xx
and nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
import re
from decimal import Decimal
from typing import Any

from starlette.requests import Request

from closeloop.api.errors import ApiError
from closeloop.core.boundary import MAX_JSON_DEPTH, check_tree
from closeloop.core.errors import ErrorCode, ValidationError

MAX_BODY = 1_048_576  # bytes; commands and queries
MAX_UPLOAD = 10 * 1_048_576  # bytes; POST /api/v1/files
INT64 = 2**63 - 1
MAX_DECIMAL = Decimal("1e15")
# Payload fields that name files on the server (imports, bank statements): over HTTP they take names of
# files uploaded with POST /api/v1/files, never paths. Fields ending in "_file"/"_files" count too.
FILE_FIELDS = ("file", "files", "line_items", "path")


def is_file_field(name: str) -> bool:
    return name in FILE_FIELDS or name.endswith(("_file", "_files", "_path"))
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, ErrorCode.VALIDATION_ERROR, "Content-Length is not a number",
                           field="Content-Length") from None
        if size > limit:
            raise too_large(limit, size)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large(limit, total)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int, size: int) -> ApiError:
    return ApiError(413, ErrorCode.VALIDATION_ERROR, f"request body is {size} bytes or more; the limit is {limit}"
                    " bytes (send a smaller batch)", field="body", limit=limit)


def parse_json_object(raw: bytes, content_type: str | None, *, allow_empty: bool = True) -> dict[str, Any]:
    if content_type and "json" not in content_type.split(";")[0].lower():
        raise ApiError(415, ErrorCode.VALIDATION_ERROR, f"Content-Type {content_type!r} is not supported; send"
                       " application/json", field="Content-Type")
    if not raw.strip():
        if allow_empty:
            return {}
        raise ValidationError("the request body is empty; send a JSON object", field="body")
    # core.boundary's checks (depth, 64-bit integers, clean text) on a parse that keeps decimals exact: amounts
    # in a request are Decimals, never floats (boundary.parse_json has no parse_float)
    try:
        data = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
    except RecursionError:  # the C parser stops at the interpreter's recursion limit
        raise ValidationError(f"the request body is nested deeper than {MAX_JSON_DEPTH} levels", field="body",
                              record="request body") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"the request body is not valid JSON: {exc}", field="body") from None
    try:
        check_tree(data, record="request body")
    except ValidationError as err:  # name the field as the API does everywhere ("lines[0].memo", not "$.lines...")
        raise _api_path(err) from None
    if not isinstance(data, dict):
        raise ValidationError(f"the request body must be a JSON object, not {type(data).__name__}", field="body")
    check_values(data)
    return data


def _api_path(err: ValidationError) -> ValidationError:
    path = str(err.details.get("field") or "$")
    field = path[2:] if path.startswith("$.") else path[1:] if path.startswith("$[") else "body"
    message = err.message[len(path) + 2:] if err.message.startswith(f"{path}: ") else err.message
    return ValidationError(f"{field if field != 'body' else 'the request body'}: {message}", field=field,
                           record="request body")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check_values(value: Any, path: str = "") -> None:
    """Refuse values no database column can hold: NUL and unpaired surrogates, integers beyond 64 bits,
    non-finite or absurdly large decimals."""
    where = path or "(payload)"
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(f"{where}: text must not contain NUL characters", field=where)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(f"{where}: text is not valid Unicode", field=where) from None
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if abs(value) > INT64:
            raise ValidationError(f"{where}: {value} is out of range (64-bit integers)", field=where)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or abs(value) >= float(MAX_DECIMAL):
            raise ValidationError(f"{where}: {value} is out of range", field=where)
    elif isinstance(value, Decimal):
        if not value.is_finite() or abs(value) >= MAX_DECIMAL:
            raise ValidationError(f"{where}: {value} is out of range (below 10^15)", field=where)
    elif isinstance(value, dict):
        for k, v in value.items():
            check_values(str(k), f"{path}.{k}" if path else str(k))
            check_values(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_values(v, f"{path}[{i}]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            check_values(getattr(value, f.name), f"{path}.{f.name}" if path else f.name)


def check_file_name(name: Any, field: str = "file") -> str:
    """A file name from a client: a plain name, never a path (no '/', '\\', '..', absolute, NUL)."""
    if not isinstance(name, str) or not FILE_NAME.match(name) or ".." in name:
        raise ValidationError(f"{field} {name!r} must be a plain file name (letters, digits, '.', '_', '-'; no"
                              " directories): upload the file with POST /api/v1/files first", field=field,
                              reason="path_traversal" if isinstance(name, str) and ("/" in name or "\\" in name
                                                                                  or ".." in name) else "invalid")
    return name
