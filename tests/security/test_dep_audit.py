"""`make audit`: pip-audit's answers read correctly, and a network failure never fails the build."""

from __future__ import annotations

import json

from closeloop.devtools.depaudit import classify

CLEAN = {"dependencies": [{"name": "fastapi", "version": "0.115.0", "vulns": []},
                          {"name": "lxml", "version": "5.3.0", "vulns": []}], "fixes": []}
VULNERABLE = {"dependencies": [{"name": "jinja2", "version": "3.1.2", "vulns": [
    {"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"], "aliases": ["CVE-2024-22195"]}]},
    {"name": "lxml", "version": "5.3.0", "vulns": []}], "fixes": []}
NOTHING_AUDITED = {"dependencies": [{"name": "fastapi", "skip_reason": "Dependency not found on PyPI and could not be"
                                     " audited: fastapi (0.115.0)"}], "fixes": []}
DNS_FAILURE = ("Traceback (most recent call last):\n  ...\nrequests.exceptions.ConnectionError: HTTPSConnectionPool("
               "host='pypi.org', port=443): Max retries exceeded with url: /pypi/fastapi/0.115.0/json (Caused by"
               " NameResolutionError(\"Failed to resolve 'pypi.org'\"))\n")


def test_vulnerabilities_fail_the_audit():
    verdict = classify(1, json.dumps(VULNERABLE), "Found 1 known vulnerability in 1 package\n")
    assert verdict.status == "vulnerable" and verdict.exit_code() == 1
    assert verdict.vulnerabilities == [{"package": "jinja2", "version": "3.1.2", "id": "GHSA-h5c8-rqwp-cp95",
                                        "fix_versions": "3.1.3"}]


def test_a_clean_environment_passes():
    verdict = classify(0, json.dumps(CLEAN), "No known vulnerabilities found\n")
    assert verdict.status == "clean" and verdict.audited == 2 and verdict.exit_code() == 0


def test_network_errors_never_fail_the_build_but_say_nothing_was_audited():
    verdict = classify(1, "", DNS_FAILURE)
    assert verdict.status == "unreachable" and verdict.exit_code() == 0 and verdict.exit_code(strict=True) == 2
    assert "could not be reached" in verdict.message


def test_a_mirror_that_answers_for_no_package_is_not_a_clean_bill_of_health():
    """pip-audit says "No known vulnerabilities found" when every package was skipped: that is no audit."""
    verdict = classify(0, json.dumps(NOTHING_AUDITED), "No known vulnerabilities found\n")
    assert verdict.status == "unreachable" and verdict.audited == 0 and verdict.exit_code() == 0
    assert "nothing was audited" in verdict.message
