from closeloop.scenarios.runner import compare


def test_subset_of_dicts_and_exact_lists():
    actual = {"total": "100.00", "tax": "0.00", "lines": [{"amount": "60.00", "x": 1}, {"amount": "40.00"}]}
    assert compare({"total": "100.00"}, actual) == []
    assert compare({"lines": [{"amount": "60.00"}, {"amount": "40.00"}]}, actual) == []
    assert compare({"lines": {"count": 2}}, actual) == []
    assert compare({"lines": {"count": 3}}, actual) == [("lines.count", 3, 2)]
    assert compare({"lines": [{"amount": "60.00"}]}, actual) == [("lines.length", 1, 2)]
    assert compare({"total": "100.0"}, actual) == [("total", "100.0", "100.00")]  # strings compare exactly
    assert compare({"total": 100}, actual) == []  # a YAML number compares by value
    assert compare({"missing": 1}, actual) == [("missing", 1, "(missing)")]
    assert compare({"flag": True}, {"flag": 1}) == [("flag", True, 1)]
    assert compare({"n": None}, {"n": None}) == []
