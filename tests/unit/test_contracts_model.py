"""The contract's pure core: billing periods, proration, the change-log replay, values, approval rules."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from closeloop.catalog.model import PriceTerms
from closeloop.contracts import approvals, salesforce
from closeloop.contracts.model import (
    Change,
    ContractLine,
    LineUpdate,
    ProductRef,
    monthly_amount,
    replay,
    segment_value,
    status_on,
    term_end,
    values,
)
from closeloop.contracts.schedule import Grid, anchor_date, months_in, prorated, round_fraction
from closeloop.core.errors import CloseloopError

D = Decimal
SEAT = PriceTerms("per_unit", "USD", "month", "advance", amount=D("10.00"), price_id="seat")
PRODUCT = ProductRef("seat", "Seat", "ratable", "saas")


def line(line_id="L1", q=10, terms=SEAT, start=date(2026, 1, 1), **kw) -> ContractLine:
    return ContractLine(line_id, PRODUCT, terms, D(q), "US01", start, **kw)


def activation(*lines, start=date(2026, 1, 1), months=12) -> Change:
    return Change(1, "activation", start, start, "C1", lines=tuple(lines) or (line(start=start),), term_months=months)


def amend(seq, eff, *updates, added=()) -> Change:
    return Change(seq, "amendment", eff, eff, f"A{seq}", modification="prospective", updates=tuple(updates),
                  lines=tuple(added))


# --------------------------------------------------------------------------- schedule


def test_anchor_and_periods_follow_the_billing_day_clamped_to_the_month():
    assert anchor_date(date(2026, 1, 15), 1) == date(2026, 2, 1)
    assert anchor_date(date(2026, 1, 15), 15) == date(2026, 1, 15)
    assert anchor_date(date(2026, 2, 15), 30) == date(2026, 2, 28)
    g = Grid.of(date(2026, 1, 31), 31, 1)
    assert [g.boundary(k) for k in range(4)] == [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31),
                                                date(2026, 4, 30)]
    # 7 May with anchor day 1: the enclosing period is 1 May - 1 June, 31 days (DESIGN.md's example)
    assert Grid.of(date(2026, 1, 1), 1, 1).period_of(date(2026, 5, 7)) == (date(2026, 5, 1), date(2026, 6, 1))
    assert Grid.of(date(2026, 1, 15), 1, 1).period_of(date(2026, 1, 20)) == (date(2026, 1, 1), date(2026, 2, 1))
    assert Grid.of(date(2026, 1, 1), 1, 3).period_of(date(2026, 5, 7)) == (date(2026, 4, 1), date(2026, 7, 1))


def test_proration_by_days_in_the_enclosing_period():
    g = Grid.of(date(2026, 1, 1), 1, 1)
    assert prorated(100_00, g, date(2026, 5, 7), date(2026, 5, 31)) == 80_65  # 25/31 x 100 = 80.645 -> 80.65
    assert prorated(100_00, g, date(2026, 1, 1), date(2026, 12, 31)) == 1200_00
    assert prorated(100_00, g, date(2026, 2, 10), date(2026, 2, 9)) == 0
    assert round_fraction(Fraction(5, 2)) == 3 and round_fraction(Fraction(-5, 2)) == -3
    assert months_in(g, date(2026, 1, 15), date(2027, 1, 14)) == 12


starts = st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 31))


@given(starts, st.sampled_from([1, 3, 12]), st.integers(min_value=1, max_value=4),
       st.integers(min_value=0, max_value=10_000_000))
@settings(max_examples=300)
def test_a_whole_term_on_the_start_day_is_exactly_the_periods_charge(start, months, n, amount):
    g = Grid.of(start, start.day, months)
    assert prorated(amount, g, start, term_end(start, months * n)) == amount * n


@given(starts, st.integers(min_value=1, max_value=31), st.integers(min_value=0, max_value=400),
       st.integers(min_value=1, max_value=400), st.integers(min_value=0, max_value=1_000_000))
@settings(max_examples=300)
def test_splitting_a_span_changes_its_value_by_rounding_only(start, bday, a, b, amount):
    g = Grid.of(start, bday, 1)
    first, last = start + timedelta(days=a), start + timedelta(days=a + b)
    whole = prorated(amount, g, first, last)
    cut = first + timedelta(days=b // 2 + 1)
    assume(cut <= last)
    parts = prorated(amount, g, first, cut - timedelta(days=1)) + prorated(amount, g, cut, last)
    assert abs(parts - whole) <= 1
    # each period's share is rounded once: the total is within one minor unit per period of the exact value
    pieces = len(list(g.pieces(first, last)))
    assert abs(whole - Fraction(amount) * months_in(g, first, last)) <= Fraction(pieces, 2)


# --------------------------------------------------------------------------- replay and values


def test_replay_segments_and_values():
    tl = replay([activation(), amend(2, date(2026, 4, 15), LineUpdate("L1", quantity=D(15)))])
    assert [(s.start, s.end, s.line.quantity) for s in tl.segments] == [
        (date(2026, 1, 1), date(2026, 4, 14), 10), (date(2026, 4, 15), date(2026, 12, 31), 15)]
    v = values(tl, date(2026, 5, 1), 1)
    assert (v.tcv, v.acv, v.mrr) == (1626_67, 1626_67, 150_00)
    assert values(replay([activation(), amend(2, date(2026, 4, 15), LineUpdate("L1", quantity=D(15)))]),
                  date(2027, 1, 1), 1).mrr == 0
    assert status_on(tl, date(2027, 1, 1)) == "expired"
    earlier = replay([activation(), amend(2, date(2026, 4, 15), LineUpdate("L1", quantity=D(15)))], date(2026, 4, 14))
    assert [s.line.quantity for s in earlier.segments] == [10]


def test_an_amendment_on_the_first_day_replaces_the_line():
    tl = replay([activation(), amend(2, date(2026, 1, 1), LineUpdate("L1", quantity=D(3)))])
    assert [(s.start, s.line.quantity) for s in tl.segments] == [(date(2026, 1, 1), 3)]


def test_renewal_uplift_compounds_and_one_time_lines_do_not_renew():
    setup = line("S", 1, PriceTerms("flat", "USD", "one_time", "advance", amount=D("2000")))
    changes = [activation(line(), setup),
               Change(2, "renewal", date(2027, 1, 1), date(2026, 12, 1), "R1", term_months=12, uplift_pct=D(5)),
               Change(3, "renewal", date(2028, 1, 1), date(2027, 12, 1), "R2", term_months=12, uplift_pct=D(5))]
    tl = replay(changes)
    assert [t.end for t in tl.terms] == [date(2026, 12, 31), date(2027, 12, 31), date(2028, 12, 31)]
    last = tl.segments_on(date(2028, 6, 1))
    assert [s.line.line_id for s in last] == ["L1"] and last[0].line.factor == D("1.1025")
    assert last[0].line.period_amount == 110_25
    assert values(tl, date(2026, 6, 1), 1).tcv == 1200_00 + 2000_00
    assert values(tl, date(2028, 6, 1), 1).tcv == 12 * 110_25
    with pytest.raises(CloseloopError):
        replay([activation(), Change(2, "renewal", date(2027, 2, 1), date(2026, 12, 1), "R", term_months=12)])


def test_cancellation_voids_later_changes_and_bad_changes_are_refused():
    changes = [activation(), Change(2, "cancellation", date(2026, 7, 1), date(2026, 6, 1), "X"),
               amend(3, date(2026, 8, 1), LineUpdate("L1", quantity=D(2)))]
    tl = replay(changes)
    assert tl.service_end == date(2026, 6, 30) and [c.ref for c in tl.voided] == ["A3"]
    assert values(tl, date(2026, 6, 1), 1).tcv == 600_00
    with pytest.raises(CloseloopError) as exc:
        replay([activation(), amend(2, date(2026, 3, 1), LineUpdate("L9", quantity=D(2)))])
    assert exc.value.code == "not_found"
    with pytest.raises(CloseloopError) as exc:
        replay([activation(), amend(2, date(2026, 3, 1), added=[line("L1")])])
    assert exc.value.code == "conflict"
    with pytest.raises(CloseloopError):
        replay([activation(), amend(2, date(2027, 3, 1), LineUpdate("L1", quantity=D(2)))])


def test_monthly_amounts_and_metered_lines():
    assert monthly_amount(line(terms=PriceTerms("flat", "USD", "quarter", "advance", amount=D("100")), q=1)) == 33_33
    assert monthly_amount(line(terms=PriceTerms("flat", "USD", "year", "advance", amount=D("1200")), q=1)) == 100_00
    usage = line(terms=PriceTerms("usage", "USD", "month", "arrears", amount=D("0.01"), metric="m", aggregation="sum"))
    assert usage.period_amount is None and monthly_amount(usage) == 0
    tl = replay([activation(usage)])
    assert segment_value(tl.segments[0], tl.start, 1) == 0


def test_lines_survive_the_round_trip_through_events():
    ln = line(discount_pct=D("12.5"), unit_amount=D("8.40"), factor=D("1.03"), ssp=1440_00, ssp_unit=D("12"),
              ssp_source="quote")
    assert ContractLine.from_dict(ln.to_dict()) == ln
    change = amend(2, date(2026, 2, 1), LineUpdate("L1", quantity=D(3), price=SEAT, product=PRODUCT), added=[ln])
    assert Change.from_dict(change.to_dict()) == change


@st.composite
def amendment_logs(draw):
    n = draw(st.integers(min_value=0, max_value=6))
    changes = [activation()]
    for i in range(n):
        eff = date(2026, 1, 1) + timedelta(days=draw(st.integers(min_value=0, max_value=364)))
        changes.append(amend(i + 2, eff, LineUpdate("L1", quantity=D(draw(st.integers(min_value=1, max_value=50))))))
    return changes


@given(amendment_logs(), st.integers(min_value=1, max_value=28))
@settings(max_examples=200)
def test_a_line_versions_tile_the_term_and_tcv_is_their_sum(changes, bday):
    tl = replay(changes)
    segs = [s for s in tl.segments if s.line.line_id == "L1"]
    assert segs[0].start == tl.start and segs[-1].end == tl.service_end
    for a, b in zip(segs, segs[1:], strict=False):
        assert b.start == a.end + timedelta(days=1)
    assert values(tl, tl.start, bday).tcv == sum(segment_value(s, tl.start, bday) for s in segs)
    # the quantity in force on any day is the one of the last change effective by then
    day = date(2026, 7, 1)
    effective = [c for c in sorted(changes[1:], key=lambda c: (c.effective, c.seq)) if c.effective <= day]
    expected = effective[-1].updates[0].quantity if effective else D(10)
    assert tl.segments_on(day)[0].line.quantity == expected


# --------------------------------------------------------------------------- approval rules


def facts(**kw) -> approvals.QuoteFacts:
    base = dict(max_discount_pct=D(0), term_months=12, billing_day_differs=False, currency="USD", tcv=D("1000"),
                renewal_uplift_pct=None, performing_entity_differs=False, has_milestones=False, custom_price=False,
                auto_renew=False)
    return approvals.QuoteFacts(**{**base, **kw})


def test_shipped_rules_and_their_conditions():
    rules = approvals.shipped_rules()
    ids = lambda f: [r.id for r in approvals.triggered(rules, f)]  # noqa: E731
    assert ids(facts()) == []
    assert ids(facts(max_discount_pct=D("20"))) == []
    assert ids(facts(max_discount_pct=D("20.01"))) == ["discount_over_20"]
    assert ids(facts(max_discount_pct=D("41"))) == ["discount_over_20", "discount_over_40"]
    assert ids(facts(term_months=48)) == ["non_standard_terms"]
    assert ids(facts(renewal_uplift_pct=D("-1"))) == ["non_standard_terms"]
    assert ids(facts(tcv=D("1000000.01"))) == ["large_deal"]
    assert ids(facts(tcv=D("1000000.01"), currency="CHF")) == []
    finance = next(r for r in rules if r.id == "discount_over_40")
    assert approvals.covering(finance, frozenset({"controller"})) and not approvals.covering(finance, frozenset({"sales_ops"}))
    assert approvals.covering(finance, None)


def test_bad_rule_files_are_refused_with_every_problem():
    doc = {"version": 1, "colour": "x", "rules": [
        {"id": "a", "roles": ["x"], "when": {"discount_pct_above": "ten"}},
        {"id": "a", "roles": [], "when_any": [{"nonsense": 1}]},
        {"id": "b", "roles": ["x"], "when": {"term_months_not_in": "12"}, "when_any": []},
        {"roles": ["x"], "when": {"tcv_above": {"USD": "lots"}}}]}
    _, errors = approvals.parse_rules(doc, "f")
    text = "\n".join(errors)
    for fragment in ("unknown key 'colour'", "'ten' is not a number", "duplicate id 'a'", "roles (who may approve)",
                     "unknown condition 'nonsense'", "must be a list of numbers", "exactly one of when",
                     "id is required", "must map currencies"):
        assert fragment in text, fragment
    rules, errors = approvals.parse_rules({"rules": [{"id": "m", "roles": ["legal"], "when": {"has_milestones": True,
                                                                                           "auto_renew": False}}]})
    assert errors == [] and [r.id for r in approvals.triggered(rules, facts(has_milestones=True))] == ["m"]


def test_user_roles_shapes():
    assert approvals.user_roles(None, "x") is None
    assert approvals.user_roles({"a": ["finance"]}, "a") == frozenset({"finance"})
    assert approvals.user_roles({"a": "legal"}, "a") == frozenset({"legal"})
    assert approvals.user_roles({"a": {"roles": ["x", "y"]}}, "a") == frozenset({"x", "y"})
    assert approvals.user_roles({"a": {"entity": "US01"}}, "a") is None
    assert approvals.user_roles([{"name": "a", "roles": ["z"]}], "a") == frozenset({"z"})
    assert approvals.user_roles({"a": ["x"]}, "b") == frozenset()


# --------------------------------------------------------------------------- Salesforce records


MAPPING = {"customer_prefix": "", "salesforce": {
    "opportunity": {"external_id": ["Id"], "customer": ["AccountId", "Account.Id"], "stage": ["StageName"],
                    "close_date": ["CloseDate"], "currency": ["CurrencyIsoCode"], "term_months": ["Term__c"],
                    "auto_renew": ["Auto_Renew__c"]},
    "line_item": {"opportunity": ["OpportunityId"], "product_code": ["ProductCode", "Product2.ProductCode"],
                  "quantity": ["Quantity"], "unit_price": ["UnitPrice"], "discount": ["Discount"]}}}


def test_salesforce_records_to_opportunity_payloads():
    assert salesforce.parse_day("3/31/2026") == "2026-03-31"
    assert salesforce.parse_day("2026-03-31T00:00:00.000Z") == "2026-03-31"
    assert salesforce.parse_day("31.03.2026") is None and salesforce.parse_day("2/30/2026") is None
    opp = {"ID": "006A", "Account": {"Id": "001X"}, "STAGENAME": "Closed Won", "closedate": "2026-03-31",
           "CurrencyIsoCode": "usd", "Term__c": "24.0", "Auto_Renew__c": "TRUE"}
    items = [{"Product2": {"ProductCode": "SEAT"}, "Quantity": "5.00", "UnitPrice": "9", "Discount": ""}]
    data, problems = salesforce.opportunity_payload(opp, items, MAPPING)
    assert problems == []
    assert data == {"external_id": "006A", "customer": "001X", "stage": "Closed Won", "close_date": "2026-03-31",
                    "currency": "USD", "term_months": 24, "auto_renew": True,
                    "lines": [{"sku": "SEAT", "quantity": "5.00", "unit_amount": "9"}]}
    _, problems = salesforce.opportunity_payload({"Id": "1", "Term__c": "1.5"}, [{"Quantity": "x"}], MAPPING)
    assert [p["field"] for p in problems] == ["customer", "stage", "close_date", "currency", "term_months",
                                              "lines[0].sku", "lines[0].quantity"]
    body = {"Opportunity": {"Id": "1"}, "OpportunityLineItems": {"records": [{"Quantity": 1}]}}
    assert salesforce.webhook_records(body)[1] == [{"Quantity": 1}]
    rows = salesforce.read_csv_records('"ID";"NAME"\r\n"1";"a"\r\n\r\n"2";"b"\r\n', "f.csv")
    assert [(r.fields["ID"], r.line) for r in rows] == [("1", 2), ("2", 4)]
