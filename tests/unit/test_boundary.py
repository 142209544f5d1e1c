"""The boundary readers refuse hostile JSON and CSV with a specific error, and read good input unchanged."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop.core.boundary import csv_rows, parse_json
from closeloop.core.errors import ValidationError


def test_good_json_is_read_as_json_reads_it():
    doc = {"id": "evt_1", "amount": 1999, "lines": [{"net": "10.00"}], "ok": True, "x": None}
    assert parse_json(json.dumps(doc), record="evt_1") == doc
    assert parse_json(json.dumps(doc).encode()) == doc


@pytest.mark.parametrize(("text", "reason"), [
    ("[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels"),
    ('{"a": ' + "9" * 5000 + "}", "not acceptable JSON"),
    ('{"n": 9223372036854775808}', "out of range"),
    ('{"name": "\\ud800"}', "unpaired surrogate"),
    ('{"name": "a\\u0000b"}', "NUL character"),
    ('{"a": 1', "not valid JSON"),
])
def test_hostile_json_is_a_validation_error_naming_the_record(text, reason):
    with pytest.raises(ValidationError) as err:
        parse_json(text, record="webhook body")
    assert reason in err.value.message and err.value.details["record"] == "webhook body"


def test_brackets_inside_strings_do_not_count_as_depth():
    assert parse_json(json.dumps({"memo": "[" * 1000})) == {"memo": "[" * 1000}


def test_invalid_utf8_bytes_are_refused():
    with pytest.raises(ValidationError, match="not UTF-8"):
        parse_json(b'{"a": "\xff"}', record="f.json")


@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63 + 1, 2**63 - 1) | st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5).filter(
        lambda k: "\x00" not in k), kids, max_size=4), max_leaves=20))
def test_any_ordinary_document_round_trips(doc):
    assert parse_json(json.dumps(doc)) == doc


def test_csv_reads_every_line_end():
    for text in ("a,b\r\n1,2\r\n3,4\r\n", "a,b\n1,2\n3,4\n", "a,b\r1,2\r3,4\r"):
        assert list(csv_rows(text)) == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]


def test_csv_keeps_line_breaks_inside_quoted_cells():
    assert list(csv_rows('a,b\n"x\ny",2\n')) == [{"a": "x\ny", "b": "2"}]


def test_csv_huge_cell_and_nul_are_refused_with_the_line():
    with pytest.raises(ValidationError) as err:
        list(csv_rows("a,b\n1,2\n3," + "x" * 2_000_000 + "\n", record="bank.csv"))
    assert err.value.message == "bank.csv line 3: a cell longer than 1000000 characters"
    with pytest.raises(ValidationError) as err:
        list(csv_rows("a,b\n1,2\n3,\x004\n", record="bank.csv"))
    assert err.value.message == "bank.csv line 3: contains a NUL character"


def test_csv_delimiter_is_sniffed_or_given():
    assert list(csv_rows("a;b\n1,5;2\n")) == [{"a": "1,5", "b": "2"}]
    assert list(csv_rows("a|b\n1|2\n", delimiter="|")) == [{"a": "1", "b": "2"}]
