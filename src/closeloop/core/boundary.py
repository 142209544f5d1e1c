"""Reading untrusted text at the boundary: JSON documents and CSV rows, refused with a specific error.

Every importer and webhook reads bytes somebody else wrote. The standard library's readers fail on
hostile input with exceptions that say nothing to the user (RecursionError on deeply nested JSON,
ValueError on a 5,000-digit number, csv.Error on a huge cell or a lone carriage return) or let
through what the database refuses later (a lone surrogate, a NUL byte, an integer beyond 64 bits).
These readers turn each of those into a :class:`ValidationError` that names the document and the
reason, before anything is written.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from closeloop.core.errors import ValidationError

MAX_JSON_DEPTH = 64
MAX_INTEGER = 2**63 - 1  # what both databases store in a BIGINT
MAX_CSV_FIELD = 1_000_000  # characters in one cell


def _check_text(value: str, where: str, record: str | None) -> None:
    if "\x00" in value:
        raise ValidationError(f"{where}: text contains a NUL character", field=where, record=record)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{where}: text contains an unpaired surrogate (not valid Unicode)", field=where,
                              record=record) from None


def check_tree(value: Any, *, record: str | None = None, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Walk a parsed document without recursion: depth, integers that fit 64 bits, clean text."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while stack:
        node, depth, path = stack.pop()
        if depth > max_depth:
            raise ValidationError(f"{path}: nested deeper than {max_depth} levels", field=path, record=record)
        if isinstance(node, dict):
            for key, item in node.items():
                _check_text(str(key), path, record)
                stack.append((item, depth + 1, f"{path}.{key}"))
        elif isinstance(node, list):
            for i, item in enumerate(node):
                stack.append((item, depth + 1, f"{path}[{i}]"))
        elif isinstance(node, str):
            _check_text(node, path, record)
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > MAX_INTEGER:
            raise ValidationError(f"{path}: the number {str(node)[:20]}... is out of range", field=path,
                                  record=record)
    return value


def parse_json(data: str | bytes, *, record: str | None = None, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted input: malformed, too deep, huge numbers or bad text are a
    ValidationError naming ``record`` (the file, the request, the event)."""
    what = record or "document"
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{what}: not UTF-8 ({exc.reason} at byte {exc.start})", record=record) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                              record=record) from None
    except RecursionError:  # the C parser stops cleanly at the interpreter's recursion limit
        raise ValidationError(f"{what}: nested deeper than {max_depth} levels", record=record) from None
    except ValueError as exc:  # a number too long to convert
        raise ValidationError(f"{what}: not acceptable JSON ({exc})", record=record) from None
    return check_tree(value, record=record, max_depth=max_depth)


def nul_line(text: str) -> int | None:
    """The line of the first NUL character in ``text``, None without one. A NUL in a text file means a binary
    file or UTF-16 read without its byte-order mark, and PostgreSQL cannot store it in text."""
    at = text.find("\x00")
    return None if at < 0 else text.count("\n", 0, at) + 1


def csv_rows(text: str, *, record: str | None = None, delimiter: str | None = None,
             max_field: int = MAX_CSV_FIELD) -> Iterator[dict[str, str]]:
    """Rows of a CSV text as dicts (header from the first line), for untrusted files: any line end
    (CRLF, LF or a lone CR), cells bounded in size, NUL refused; errors name the file and the line."""
    what = record or "file"
    line = nul_line(text)
    if line is not None:
        raise ValidationError(f"{what} line {line}: contains a NUL character", record=record, line=line)
    # io.StringIO with newline=None turns CR and CRLF into LF, but not inside quoted cells
    stream = io.StringIO(text, newline=None)
    if delimiter is None:
        # the header line decides: amounts like "1,000,000.00" in quoted data cells must not outvote it
        header = text.lstrip("\ufeff").splitlines()[0][:4096] if text.strip() else ""
        delimiter = max(",;\t|", key=header.count) if header else ","
    limit = csv.field_size_limit()
    csv.field_size_limit(max_field)
    try:
        reader = csv.DictReader(stream, delimiter=delimiter)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line = reader.line_num + 1  # the line being read when the reader gave up
                reason = (f"a cell longer than {max_field} characters" if "field larger" in str(exc)
                          else f"not readable as CSV ({exc})")
                raise ValidationError(f"{what} line {line}: {reason}", record=record, line=line) from None
            yield row
    finally:
        csv.field_size_limit(limit)
