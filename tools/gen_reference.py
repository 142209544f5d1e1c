"""Generate docs/reference.md from the command/query registry and the error codes.

    .venv/bin/python tools/gen_reference.py        # rewrites docs/reference.md

The vocabulary is declared once (payload dataclasses registered with @command/@query);
this page is derived from it, so it cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

from closeloop import areas
from closeloop.core import registry
from closeloop.core.errors import HTTP_STATUS, ErrorCode


def type_name(tp: object) -> str:
    text = str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")
    text = re.sub(r"closeloop\.[a-z_.]+\.", "", text)
    return text.replace("NoneType", "None").replace("decimal.Decimal", "decimal")


def field_rows(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        default = "" if required else ("" if f.default is dataclasses.MISSING else f" (default `{f.default!r}`)")
        rows.append(f"`{f.name}`{'' if required else '?'}: {type_name(hints.get(f.name, f.type))}{default}")
    return rows


def nested(cls: type, seen: set[type]) -> list[type]:
    out = []
    for tp in typing.get_type_hints(cls).values():
        for arg in typing.get_args(tp) or (tp,):
            for inner in typing.get_args(arg) or (arg,):
                if dataclasses.is_dataclass(inner) and inner not in seen:
                    seen.add(inner)  # type: ignore[arg-type]
                    out.append(inner)  # type: ignore[arg-type]
                    out.extend(nested(inner, seen))  # type: ignore[arg-type]
    return out


def main() -> None:
    areas.load()
    ops = sorted(registry.operations().values(), key=lambda o: (o.kind, o.name))
    lines = ["# Reference: commands, queries and error codes", "",
             "Generated from the registry by `tools/gen_reference.py`; the same names and fields serve the",
             "Python API (`app.do` / `app.query`), the CLI (`closeloop do|query`), the REST API",
             "(`/api/v1/commands/{name}`, `/api/v1/queries/{name}`, see the OpenAPI document at `/openapi.json`)",
             "and scenarios. Every command also accepts `source`. `?` marks an optional field.", "",
             "## Error codes", "", "| code | HTTP | CLI exit |", "|---|---|---|"]
    for code in ErrorCode:
        exit_code = 4 if code is ErrorCode.INTERNAL_ERROR else 2 if code is ErrorCode.UNKNOWN_COMMAND else 3
        lines.append(f"| `{code}` | {HTTP_STATUS[code]} | {exit_code} |")
    for kind in ("command", "query"):
        lines += ["", f"## {kind.capitalize()}s", ""]
        for op in (o for o in ops if o.kind == kind):
            lines += [f"### `{op.name}`", "", op.summary or "", "", f"Roles: {', '.join(op.roles)}", ""]
            lines += [f"- {row}" for row in field_rows(op.input)] or ["- (no fields)"]
            for inner in nested(op.input, set()):
                lines += [f"- {inner.__name__} items:"] + [f"  - {row}" for row in field_rows(inner)]
            lines.append("")
    target = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
    target.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {target} ({len(ops)} operations)")


if __name__ == "__main__":
    main()
