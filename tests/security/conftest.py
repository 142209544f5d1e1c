"""Fixtures and the refusal guard shared by the security review.

Every fuzzed input goes through :func:`attempt`: the command either succeeds or is refused with a
:class:`CloseloopError` carrying a stable code and naming the field or record; anything else is a crash.
A refusal leaves every table as it was, except the records that describe the refusal (the audit row,
the exception and its ``exception.*`` event, authentication events)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from closeloop.core.errors import CloseloopError, ErrorCode
from tests.conftest import app, clock, db_url, de01, us01  # noqa: F401 - fixtures shared with the suite

# The fuzzers' budget: small in CI, more with CLOSELOOP_FUZZ_EXAMPLES=500.
EXAMPLES = int(os.environ.get("CLOSELOOP_FUZZ_EXAMPLES", "40"))
settings.register_profile("security", max_examples=EXAMPLES, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
FUZZ = settings.get_profile("security")

STABLE_CODES = {c.value for c in ErrorCode} - {"internal_error", "unknown_command"}
# What a refused command may leave behind (SCENARIOS.md: "the exception and audit records that describe
# the refusal are kept").
KEPT_ON_REFUSAL = {"audit_log", "exception_item", "exception_action", "event", "event_delivery", "auth_event",
                   "id_block"}


def table_counts(app: Any) -> dict[str, int]:  # noqa: F811
    from closeloop.core.db import metadata

    with app.unit_of_work(write=False) as uow:
        return {t.name: int(uow.scalar(f'SELECT COUNT(*) FROM "{t.name}"')) for t in metadata.sorted_tables}


def max_event_id(app: Any) -> int:  # noqa: F811
    with app.unit_of_work(write=False) as uow:
        return int(uow.scalar("SELECT COALESCE(MAX(id), 0) FROM event"))


@dataclass
class Outcome:
    result: dict[str, Any] | None = None
    error: CloseloopError | None = None
    known: str | None = None  # a crash already recorded as a finding (tests/security/findings.py)

    @property
    def refused(self) -> bool:
        return self.error is not None


def check_refusal(err: CloseloopError, what: str) -> None:
    """A refusal that a person can act on: a stable code, a message, and the field or record it concerns."""
    assert str(err.code) in STABLE_CODES, f"{what}: refused with code {err.code}: {err.message}"
    assert err.message and err.message.strip(), f"{what}: refused without a message"
    assert err.details.get("field") or err.details.get("record"), (
        f"{what}: the refusal names neither field nor record: {err.message} {err.details}")


def attempt(app: Any, command: str, payload: dict[str, Any], *, what: str | None = None,  # noqa: F811
            tolerate_known: bool = False, **kw: Any) -> Outcome:
    """Run a command with hostile input: success, or a clean refusal that wrote nothing of its own.

    With ``tolerate_known`` (the fuzzers) a crash whose signature is a known finding is returned as such."""
    what = what or command
    before = table_counts(app)
    last_event = max_event_id(app)
    try:
        result = app.do(command, payload, **kw)
    except CloseloopError as err:
        check_refusal(err, what)
        after = table_counts(app)
        changed = {t: (before[t], after[t]) for t in before if before[t] != after[t] and t not in KEPT_ON_REFUSAL}
        assert not changed, f"{what}: refused ({err.code}: {err.message}) but wrote rows: {changed}"
        with app.unit_of_work(write=False) as uow:
            new = [r[0] for r in uow.all("SELECT type FROM event WHERE id > ?", (last_event,))]
        assert all(t.startswith("exception.") for t in new), f"{what}: a refused command emitted {new}"
        return Outcome(error=err)
    except Exception as exc:  # noqa: BLE001 - this is what the review looks for
        from tests.security.findings import known_crash

        finding = known_crash(exc) if tolerate_known else None
        if finding:
            return Outcome(known=finding)
        pytest.fail(f"{what}: crashed with {type(exc).__name__}: {str(exc)[:500]}")
    return Outcome(result=result)


@pytest.fixture
def files(tmp_path: Any) -> Any:
    """Write bytes to a fresh file and return its path."""
    counter = {"n": 0}

    def write(data: bytes, suffix: str = ".csv") -> str:
        counter["n"] += 1
        path = tmp_path / f"input{counter['n']}{suffix}"
        path.write_bytes(data)
        return str(path)

    return write


def run_corpus(cases: list[tuple[Any, ...]], run: Any) -> dict[str, list[str]]:
    """Run every malformed case (one database: a refusal writes nothing) and fail with every problem at once.

    ``run(name, *args)`` returns an :class:`Outcome` (or None); a known crash is collected by finding (each
    has its strict xfail in test_findings.py), anything else that goes wrong is a problem."""
    problems: list[str] = []
    known: dict[str, list[str]] = {}
    for name, *args in cases:
        try:
            out = run(name, *args)
        except (pytest.fail.Exception, AssertionError) as failure:
            problems.append(f"{name}: {str(failure)[:600]}")
            continue
        if out is not None and out.known:
            known.setdefault(out.known, []).append(name)
    for finding, names in known.items():
        print(f"known finding ({len(names)} cases: {', '.join(names[:6])}): {finding}")
    assert not problems, f"{len(problems)} of {len(cases)} cases went wrong:\n" + "\n".join(problems)
    return known
