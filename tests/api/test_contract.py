"""API contract: schemathesis generates requests (valid and invalid) from the live OpenAPI document of a
running server and checks that no response is a server error and every response matches the document."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = 6  # per operation; the whole contract run stays well under a minute
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


def test_the_document_is_valid_openapi(live):
    loaded = schemathesis.openapi.from_url(f"{live.url}/api/v1/openapi.json")
    operations = list(loaded.get_all_operations())
    assert len(operations) >= 20
    assert all(r.ok() for r in operations)


def test_no_server_error_and_every_response_matches_the_openapi_document(server, live):
    """Each operation in turn (schemathesis's pytest plugin does not load on this pytest; its engine does)."""
    loaded = schemathesis.openapi.from_url(f"{live.url}/api/v1/openapi.json")
    headers = {"X-API-Key": server.keys["tester"]}
    failures: list[str] = []
    for result in loaded.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS)

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collected and reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
