"""The standard scenario library (scenarios/) passes on the test database."""

from __future__ import annotations

from pathlib import Path

import pytest

from closeloop.scenarios.runner import collect, run_paths
from tests.conftest import TEST_DATABASE

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.mark.parametrize("path", [str(p.relative_to(LIBRARY)) for p in collect([str(LIBRARY)])])
def test_scenario(path):
    [result] = run_paths([str(LIBRARY / path)], db_url=TEST_DATABASE)
    assert result.passed, [f.to_dict() for f in result.failures]
