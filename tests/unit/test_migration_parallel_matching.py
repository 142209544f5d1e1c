"""Parallel-run matching (pure): pairing lines, the cause of each difference, and its invariants."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from closeloop.rollout.parallel import Line, cause_of, pair_lines, reconcile


def line(side: str, customer: str = "A", product: str = "PLAT", net: int = 10000, tax: int = 0,
         start: str | None = "2026-02-01", end: str | None = "2026-02-28", unit: str | None = "100.00",
         invoice: str = "I-1") -> Line:
    return Line(side, invoice, customer, product, product, start, end, net, tax, "USD", None, "1", unit)


def test_causes():
    legacy = line("legacy")
    assert cause_of(legacy, line("closeloop")) is None
    assert cause_of(legacy, line("closeloop", net=9000, unit="90.00")) == "price"
    assert cause_of(line("legacy", net=7000, start="2026-02-10"), line("closeloop", net=6786, start="2026-02-10")) \
        == "proration"  # same days, same unit price: the proration differs
    assert cause_of(line("legacy", net=10000), line("closeloop", net=6786, start="2026-02-10")) == "proration"
    assert cause_of(legacy, line("closeloop", tax=800)) == "tax"
    assert cause_of(legacy, None) == "missing" and cause_of(None, legacy) == "extra"
    assert cause_of(line("legacy", unit=None, net=1), line("closeloop", unit=None, net=2)) == "price"


def test_pairs_prefer_the_same_service_period_then_the_overlap():
    jan = line("legacy", start="2026-01-01", end="2026-01-31", invoice="L-1")
    feb = line("legacy", invoice="L-2")
    c_feb = line("closeloop", net=9999, invoice="C-2")
    c_mid = line("closeloop", start="2026-01-15", end="2026-02-14", invoice="C-1")
    pairs = pair_lines([jan, feb], [c_feb, c_mid])
    assert [(a.invoice if a else None, b.invoice if b else None) for a, b in pairs] == [("L-2", "C-2"),
                                                                                         ("L-1", "C-1")]


def test_reconcile_groups_by_customer_and_cause():
    result = reconcile([line("legacy", net=11000, unit="110.00"), line("legacy", customer="B"),
                        line("legacy", customer="B", product="SUPP", net=3000)],
                       [line("closeloop"), line("closeloop", customer="B"), line("closeloop", customer="C")])
    assert result["matched"] == 1
    assert [(d["customer"], d["cause"], d["legacy"], d["closeloop"], d["difference"])
            for d in result["differences"]] == [("A", "price", "110.00", "100.00", "-10.00"),
                                                ("B", "missing", "30.00", "0.00", "-30.00"),
                                                ("C", "extra", "0.00", "100.00", "100.00")]
    assert sum(d["absolute"] for d in result["differences"]) == 14000


lines = st.builds(
    lambda customer, product, net, tax, day, unit: (customer, product, net, tax, day, unit),
    st.sampled_from("ABC"), st.sampled_from(("PLAT", "SEAT")), st.integers(0, 50_000), st.integers(0, 5_000),
    st.sampled_from(("2026-02-01", "2026-02-10", "2026-02-15")), st.sampled_from(("100.00", "110.00")))


def _mk(side: str, spec: tuple, n: int) -> Line:
    customer, product, net, tax, day, unit = spec
    return Line(side, f"{side}-{n}", customer, product, product, day, "2026-02-28", net, tax, "USD", None, "1", unit)


@settings(max_examples=200, deadline=None)
@given(st.lists(lines, max_size=12), st.lists(lines, max_size=12))
def test_every_line_is_paired_once_and_the_difference_adds_up(left_specs, right_specs):
    left = [_mk("legacy", s, n) for n, s in enumerate(left_specs)]
    right = [_mk("closeloop", s, n) for n, s in enumerate(right_specs)]
    result = reconcile(left, right)
    listed = result["matched"] * 2 + sum(
        (1 if x["legacy"] else 0) + (1 if x["closeloop"] else 0) for d in result["differences"] for x in d["lines"])
    assert listed == len(left) + len(right)
    swapped = reconcile(right, left)
    assert swapped["matched"] == result["matched"]  # identical lines pair first: the most matches, either way
    missing = sum(len(d["lines"]) for d in result["differences"] if d["cause"] == "missing")
    assert missing == sum(len(d["lines"]) for d in swapped["differences"] if d["cause"] == "extra")
