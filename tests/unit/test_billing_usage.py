"""Pure helpers of metering and proration: timestamps, the usage book, rounding bounds."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from closeloop.billing.model import UsageBook, UsageDay
from closeloop.billing.proration import prorate
from closeloop.billing.usage import normalise_at


def test_timestamps_are_stored_in_utc_canonical_form():
    assert normalise_at("2026-01-05") == "2026-01-05"
    assert normalise_at("2026-01-05T10:00:00Z") == "2026-01-05T10:00:00Z"
    assert normalise_at("2026-01-05T23:30:00-02:00") == "2026-01-06T01:30:00Z"
    assert normalise_at("2026-01-05T10:00:00.250000+00:00") == "2026-01-05T10:00:00.250000Z"
    assert normalise_at("2026-02-30T10:00:00Z") is None
    assert normalise_at("2026-02-30") is None
    assert normalise_at("yesterday") is None


def test_usage_book_aggregations_over_a_span_of_days():
    book = UsageBook()
    for day, micro, count, peak, values in (("2026-01-01", 5_000_000, 2, 3_000_000, ("a",)),
                                            ("2026-01-15", 2_500_000, 1, 2_500_000, ("a", "b")),
                                            ("2026-02-01", 9_000_000, 1, 9_000_000, ("c",))):
        book.add("m", UsageDay(date.fromisoformat(day), micro, count, peak, values))
    book.seal()
    jan = (date(2026, 1, 1), date(2026, 2, 1))
    assert book.aggregate("m", *jan, "sum") == (Decimal("7.5"), 3)
    assert book.aggregate("m", *jan, "count") == (Decimal(3), 3)
    assert book.aggregate("m", *jan, "max") == (Decimal(3), 3)
    assert book.aggregate("m", *jan, "unique_count") == (Decimal(2), 3)
    assert book.aggregate("other", *jan, "sum") == (Decimal(0), 0)


@given(st.integers(min_value=-10**9, max_value=10**9), st.integers(min_value=28, max_value=366), st.data())
def test_two_prorated_parts_of_a_period_are_within_a_minor_unit_of_the_whole(amount, full, data):
    days = data.draw(st.integers(min_value=0, max_value=full))
    assert abs(prorate(amount, days, full) + prorate(amount, full - days, full) - amount) <= 1
    assert prorate(amount, full, full) == amount
