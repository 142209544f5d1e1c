"""Duplicate matching, pure: blocking, scoring, explanations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from closeloop.customers import matching
from closeloop.customers.service import keys_of, match_config, match_fields


def _fields(name, country="US", postal="94105", street="500 Howard Street", city="San Francisco", tax=None,
            email=None, website=None, phone=None):
    return match_fields(name, country, postal, {"street": street, "city": city}, tax, email, website, phone)


def _score(a, b):
    cfg = match_config()
    cols = {c: [a[c], b[c]] for c in matching.CUSTOMER_COLUMNS}
    scored = matching.score_pairs(cols, np.array([0]), np.array([1]), cfg)
    return float(scored.score[0]), matching.explain(cfg, scored.sims[0], scored.points[0])


def test_same_company_different_legal_form_and_abbreviations_is_a_match():
    score, why = _score(_fields("Initech Inc.", street="500 Howard Street"),
                        _fields("INITECH", street="500 Howard St"))
    assert matching.classify(score, match_config()) == "match"
    assert {w["field"]: w["points"] for w in why} == {
        "name": 5.0, "street": 2.0, "city": 1.0, "postal_code": 1.5, "country": 0.5, "tax_id": 0.0,
        "domain": 0.0, "phone": 0.0}
    assert score == 10.0


def test_names_with_different_numbers_do_not_agree():
    score, why = _score(_fields("Quire 203"), _fields("Quire 204"))
    assert next(w for w in why if w["field"] == "name") == {"field": "name", "method": "name", "similarity": 0.0,
                                                             "points": -4.0}
    assert matching.classify(score, match_config()) == "distinct"


def test_different_tax_ids_and_countries_pull_apart():
    score, _ = _score(_fields("Globex", tax="DE136695976", country="DE", postal="10115"),
                      _fields("Globex", tax="FR40303265045", country="FR", postal="75002"))
    assert score < 0
    assert matching.classify(score, match_config()) == "distinct"


def test_empty_fields_contribute_nothing():
    _score_value, why = _score(_fields("Globex", street="", city="", postal=""), _fields("Globex", street="",
                                                                                         city="", postal=""))
    assert {w["field"]: w["similarity"] for w in why}["street"] is None
    assert {w["field"]: w["points"] for w in why}["postal_code"] == 0.0


def test_blocking_keys_of_an_account():
    keys = keys_of(_fields("Globex", tax="04-2103594", email="ap@globex.com", phone="+1 (415) 555-0134"))
    assert keys == ["n:globex", "q:US:glob", "x:04-2103594", "d:globex.com", "p:US:94105", "t:155550134"]  # the last 9 digits


def test_candidate_pairs_dedup_first_and_cross():
    keys = [["a"], ["a", "b"], ["b"], ["a"]]
    i, j, skipped = matching.candidate_pairs(keys, max_block=10)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1), (0, 3), (1, 2), (1, 3)]
    assert skipped == 0
    i, j, _ = matching.candidate_pairs(keys, max_block=10, first=1)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1), (0, 3)]
    i, j, _ = matching.candidate_pairs(keys, max_block=10, cross=2)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 3), (1, 2), (1, 3)]
    i, j, skipped = matching.candidate_pairs(keys, max_block=2)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(1, 2)] and skipped == 1


def test_clusters():
    assert matching.clusters([(1, 2), (3, 4), (2, 5)]) == [[1, 2, 5], [3, 4]]


names = st.text(alphabet="abcdefghij klm0123", min_size=1, max_size=20)


@settings(max_examples=60)
@given(names, names, names, names)
def test_scores_are_symmetric_and_bounded(n1, n2, s1, s2):
    a, b = _fields(n1, street=s1), _fields(n2, street=s2)
    ab, _ = _score(a, b)
    ba, _ = _score(b, a)
    assert abs(ab - ba) < 1e-9
    cfg = match_config()
    top = sum(c.agree for c in cfg.comparators)
    bottom = sum(c.disagree for c in cfg.comparators)
    assert bottom - 1e-9 <= ab <= top + 1e-9
    same, _ = _score(a, a)
    assert same >= ab - 1e-9
