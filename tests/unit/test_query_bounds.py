"""Every query's page size and offset are bounded at the boundary: a negative LIMIT means "no limit" to
SQLite and is an error to PostgreSQL, so it must never reach either."""

import pytest

from closeloop import areas
from closeloop.core import registry
from closeloop.core.errors import ValidationError


def _paged_queries() -> list[str]:
    areas.load()
    return sorted(name for name, op in registry.operations().items()
                  if op.kind == "query" and "limit" in op.fields)


def test_the_paged_queries_are_found():
    assert {"billing_runs", "customers", "exceptions", "audit", "general_ledger"} <= set(_paged_queries())


@pytest.mark.parametrize("name", _paged_queries())
@pytest.mark.parametrize("limit", [-414, 0, 1_000_001, 2**64])
def test_an_out_of_range_limit_is_refused_naming_the_field(name, limit):
    with pytest.raises(ValidationError) as err:
        registry.get(name, "query").parse({"limit": limit})
    assert "limit" in _fields_refused(err.value)
    assert "limit: Input should be " in err.value.message


@pytest.mark.parametrize("name", _paged_queries())
def test_a_limit_in_range_is_kept(name):
    try:
        assert registry.get(name, "query").parse({"limit": 1}).limit == 1
    except ValidationError as err:  # a query with required fields of its own: only they are refused
        assert "limit" not in _fields_refused(err)
        assert _fields_refused(err)


def _fields_refused(err: ValidationError) -> set[str]:
    return {problem["field"] for problem in err.details["errors"]}


def test_a_negative_offset_is_refused():
    with pytest.raises(ValidationError) as err:
        registry.get("customers", "query").parse({"offset": -1})
    assert err.value.details["field"] == "offset" and "greater than or equal to 0" in err.value.message
