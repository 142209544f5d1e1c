"""Known findings of the security review in areas still being built (docs/reliability.md lists them).

Each is shown by a strict xfail in test_findings.py. The fuzzers and the malformed-file cases recognise a
known crash by its signature (exception type and message) and report it as an expected failure instead
of failing again; any other crash fails them."""

from __future__ import annotations

import re

# (exception type, message pattern, finding): the message says where it was seen. Empty: every finding of
# the review is fixed and has its test (docs/reliability.md, "Findings"), so any crash fails the fuzzers.
KNOWN_CRASHES: list[tuple[str, re.Pattern[str], str]] = []


def known_crash(exc: BaseException) -> str | None:
    name, text = type(exc).__name__, str(exc)
    for kind, pattern, finding in KNOWN_CRASHES:
        if kind == name and pattern.search(text):
            return finding
    return None


def known_cli_crash(output: str) -> str | None:
    """The CLI prints ``internal error: <Type>: <message>``."""
    flat = " ".join(output.split())
    for kind, pattern, finding in KNOWN_CRASHES:
        if f"internal error: {kind}:" in flat and pattern.search(flat):
            return finding
    return None
