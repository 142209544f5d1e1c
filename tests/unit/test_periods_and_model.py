from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop.core.errors import UnbalancedError, ValidationError
from closeloop.core.money import allocate, round_minor
from closeloop.core.periods import (
    add_months,
    check_period,
    next_period,
    parse_date,
    period_end,
    periods_between,
)
from closeloop.ledger.model import (
    GENESIS_HASH,
    EntryDraft,
    LineDraft,
    check_entry,
    convert_balanced,
    entry_hash,
)


def test_periods():
    assert period_end("2028-02") == date(2028, 2, 29)
    assert next_period("2026-12") == "2027-01"
    assert periods_between("2026-11", "2027-02") == ["2026-11", "2026-12", "2027-01", "2027-02"]
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 1, 15), -1) == date(2025, 12, 15)
    with pytest.raises(ValidationError):
        check_period("2026-13")
    with pytest.raises(ValidationError):
        parse_date("2026-02-30")
    with pytest.raises(ValidationError):
        parse_date("05/01/2026")


def draft(*amounts: int, memo: str = "m") -> EntryDraft:
    return EntryDraft("US01", "2026-01-05", memo, tuple(LineDraft(f"{1000 + i}", a) for i, a in enumerate(amounts)))


def test_check_entry_names_totals():
    check_entry(draft(100, -100), "USD", record="J1")
    with pytest.raises(UnbalancedError) as exc:
        check_entry(draft(1000, -999), "USD", record="J1")
    assert exc.value.details["debits"] == "10.00"
    assert exc.value.details["credits"] == "9.99"
    with pytest.raises(ValidationError):
        check_entry(draft(0), "USD", record="J1")
    with pytest.raises(ValidationError):
        check_entry(draft(1, -1, memo="a\x1eb"), "USD", record="J1")


def test_hash_depends_on_every_field_and_the_previous_hash():
    lines = [("1000", 100, "USD", 100), ("3000", -100, "USD", -100)]
    base = entry_hash(GENESIS_HASH, "US01", 1, "2026-01-05", "m", True, None, lines)
    assert base == entry_hash(GENESIS_HASH, "US01", 1, "2026-01-05", "m", True, None, lines)
    variants = [
        entry_hash("1" * 64, "US01", 1, "2026-01-05", "m", True, None, lines),
        entry_hash(GENESIS_HASH, "US02", 1, "2026-01-05", "m", True, None, lines),
        entry_hash(GENESIS_HASH, "US01", 2, "2026-01-05", "m", True, None, lines),
        entry_hash(GENESIS_HASH, "US01", 1, "2026-01-06", "m", True, None, lines),
        entry_hash(GENESIS_HASH, "US01", 1, "2026-01-05", "n", True, None, lines),
        entry_hash(GENESIS_HASH, "US01", 1, "2026-01-05", "m", False, None, lines),
        entry_hash(GENESIS_HASH, "US01", 1, "2026-01-05", "m", True, 7, lines),
        entry_hash(GENESIS_HASH, "US01", 1, "2026-01-05", "m", True, None, [("1000", 101, "USD", 101),
                                                                            ("3000", -101, "USD", -101)]),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_convert_balanced_converts_each_side_total_once_and_allocates_it():
    rate = lambda minor: int((minor * 10851 + 5000) // 10000)  # noqa: E731 - 1.0851, half up for positives
    # 79.32 = 33.33 + 33.33 + 12.66: the debit converts to 86.07, credits are allocated to sum to it
    assert convert_balanced([7932, -3333, -3333, -1266], rate) == [8607, -3617, -3616, -1374]
    assert convert_balanced([3, -1, -1, -1], lambda m: m * 2) == [6, -2, -2, -2]
    assert convert_balanced([5, -4], lambda m: m * 2) == [10, -8]  # unbalanced input: line by line


@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=6), st.lists(st.integers(1, 10**9), min_size=1,
                                                                           max_size=6),
       st.integers(1, 10**6))
def test_convert_balanced_always_balances(debits, credits, rate_millis):
    total = sum(debits)
    credits = allocate(total, credits)
    amounts = debits + [-c for c in credits]
    converted = convert_balanced(amounts, lambda m: round_minor(Decimal(m) * rate_millis / 1000))
    assert sum(converted) == 0
    for original, value in zip(amounts, converted, strict=True):
        exact = Decimal(original) * rate_millis / 1000
        assert abs(Decimal(value) - exact) <= len(amounts)
