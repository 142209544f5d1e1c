"""The command and query registry: one vocabulary for Python, CLI, REST and scenarios.

Each area declares its operations next to their handlers::

    @payload
    class JournalPost:
        entity: str
        date: str
        ...

    @command("journal.post", JournalPost, roles=("controller",), summary="Post a manual journal")
    def journal_post(uow, cmd: JournalPost) -> dict: ...

A payload class is a frozen dataclass; the registry validates incoming dicts
into it (Pydantic, unknown fields refused) and turns every problem into one
``validation_error`` naming each field and reason. The names are exactly
those of SCENARIOS.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import ConfigDict, TypeAdapter

from closeloop.core.errors import UnknownCommandError, ValidationError

ROLES = ("sales_ops", "billing", "controller", "collections", "implementation", "admin", "read_only")
ALL_WRITERS = ("sales_ops", "billing", "controller", "collections", "implementation", "admin")

T = TypeVar("T")


# A page size: at least one row, and bounded, so a query never reaches the database with a negative or
# out-of-range LIMIT (SQLite reads -1 as "no limit", PostgreSQL refuses it).
Limit = Annotated[int, pydantic.Field(ge=1, le=1_000_000)]
Offset = Annotated[int, pydantic.Field(ge=0, le=2**53)]


def payload(cls: type[T]) -> type[T]:
    """Declare a command or query payload: a frozen dataclass that refuses unknown fields."""
    cls.__pydantic_config__ = ConfigDict(extra="forbid", str_strip_whitespace=True)  # type: ignore[attr-defined]
    return dataclass(frozen=True, slots=True)(cls)  # type: ignore[return-value]


@dataclass(frozen=True)
class Operation:
    name: str
    kind: Literal["command", "query"]
    fn: Callable[[Any, Any], dict[str, Any]]
    input: type
    roles: tuple[str, ...]
    summary: str
    adapter: TypeAdapter[Any]
    write: bool

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.input))

    def parse(self, data: dict[str, Any] | None) -> Any:
        data = dict(data or {})
        if "source" in data and "source" not in self.fields:
            data.pop("source")
        try:
            return self.adapter.validate_python(data)
        except pydantic.ValidationError as exc:
            raise payload_error(self.name, exc) from None


_OPERATIONS: dict[str, Operation] = {}


def _register(name: str, kind: Literal["command", "query"], input: type, roles: tuple[str, ...], summary: str,
              write: bool) -> Callable[[Callable[[Any, Any], dict[str, Any]]], Callable[[Any, Any], dict[str, Any]]]:
    def decorator(fn: Callable[[Any, Any], dict[str, Any]]) -> Callable[[Any, Any], dict[str, Any]]:
        existing = _OPERATIONS.get(name)
        if existing is not None and existing.fn is not fn and existing.fn.__qualname__ != fn.__qualname__:
            raise RuntimeError(f"operation {name} is registered twice ({existing.fn.__module__} and {fn.__module__})")
        _OPERATIONS[name] = Operation(
            name=name,
            kind=kind,
            fn=fn,
            input=input,
            roles=roles,
            summary=summary or (fn.__doc__ or "").strip().split("\n")[0],
            adapter=TypeAdapter(input),
            write=write,
        )
        return fn

    return decorator


def command(name: str, input: type, *, roles: tuple[str, ...] = ALL_WRITERS, summary: str = ""
            ) -> Callable[[Callable[[Any, Any], dict[str, Any]]], Callable[[Any, Any], dict[str, Any]]]:
    return _register(name, "command", input, roles, summary, write=True)


def query(name: str, input: type, *, roles: tuple[str, ...] = ROLES, summary: str = ""
          ) -> Callable[[Callable[[Any, Any], dict[str, Any]]], Callable[[Any, Any], dict[str, Any]]]:
    return _register(name, "query", input, roles, summary, write=False)


def get(name: str, kind: Literal["command", "query"]) -> Operation:
    op = _OPERATIONS.get(name)
    if op is None or op.kind != kind:
        known = sorted(n for n, o in _OPERATIONS.items() if o.kind == kind)
        raise UnknownCommandError(
            f"unknown {kind} {name!r}; known {kind}s: {', '.join(known)}", field=kind, value=name
        )
    return op


def operations() -> dict[str, Operation]:
    return dict(_OPERATIONS)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith("function-") or str(part) in ("tagged-union",):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(payload)"


def payload_error(operation: str, exc: pydantic.ValidationError) -> ValidationError:
    problems = []
    for err in exc.errors():
        field = _loc(tuple(err["loc"]))
        reason = err["msg"]
        if err["type"] == "unexpected_keyword_argument":
            reason = "unknown field"
        elif err["type"] == "missing_argument" or err["type"] == "missing":
            reason = "required field is missing"
        problems.append({"field": field, "reason": reason})
    text = "; ".join(f"{p['field']}: {p['reason']}" for p in problems)
    return ValidationError(f"{operation}: {text}", field=problems[0]["field"], errors=problems)
