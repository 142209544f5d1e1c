"""Cash application, references, aging and dunning schedules: pure functions, exact amounts, invariants."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from closeloop.collections.model import (
    DunningPolicy,
    DunningStep,
    InvoiceBook,
    MatchRules,
    OpenInvoice,
    Receipt,
    aging,
    apply_receipts,
    candidate_references,
    dso_days,
    find_combination,
    is_valid_qr,
    is_valid_rf,
    match_receipt,
    qr_reference,
    rf_reference,
    steps_due,
)

RULES = MatchRules()


def inv(number: str, balance: int, customer: str = "C1", due: str = "2026-02-01", currency: str = "USD",
        entity: str = "US01") -> OpenInvoice:
    return OpenInvoice(number, customer, entity, currency, balance, "2026-01-01", due, total=balance)


def book(*invoices: OpenInvoice) -> InvoiceBook:
    return InvoiceBook.of(invoices)


def test_references_rf_and_qr_round_trip():
    assert rf_reference("INV-US01-000123") == "RF41INVUS01000123"
    assert is_valid_rf("RF41INVUS01000123") and is_valid_rf("RF18539007547034") and not is_valid_rf("RF19539007547034")
    qr = qr_reference("INV-US01-000123")
    assert len(qr) == 27 and is_valid_qr(qr) and qr.startswith("0" * 19)
    assert is_valid_qr("210000000003139471430009017")  # the Swiss QR-bill specification's example
    refs = candidate_references(f"pay {qr} / RF41INVUS01000123, inv-us01-000124.", ())
    assert ("qr", "1000123") in refs and ("rf", "INVUS01000123") in refs and ("number", "INVUS01000124") in refs


def test_reference_full_partial_over_and_short_pay():
    b = book(inv("INV-1001", 10000), inv("INV-1002", 5000))
    full = match_receipt(Receipt("P1", 10000, "USD", "2026-02-01", "C1", "Invoice INV-1001"), b, RULES)
    assert (full.reason, full.confidence, full.unapplied) == ("reference", Decimal("0.99"), 0)
    assert [(a.invoice, a.amount) for a in full.allocations] == [("INV-1001", 10000)]
    partial = match_receipt(Receipt("P2", 2000, "USD", "2026-02-01", "C1", "inv-1002"), b, RULES)
    assert partial.reason == "reference_partial" and partial.allocations[0].amount == 2000
    assert b.balance["INV-1002"] == 3000
    over = match_receipt(Receipt("P3", 4000, "USD", "2026-02-01", "C1", "INV1002"), b, RULES)
    assert over.reason == "reference_over" and over.allocations[0].amount == 3000 and over.unapplied == 1000
    b2 = book(inv("INV-2001", 100000))
    short = match_receipt(Receipt("P4", 99700, "USD", "2026-02-01", "C1", "INV-2001"), b2, RULES)
    assert short.reason == "reference_short_pay"
    assert (short.allocations[0].amount, short.allocations[0].write_off) == (99700, 300)
    b3 = book(inv("INV-2002", 100000))
    too_short = match_receipt(Receipt("P5", 99000, "USD", "2026-02-01", "C1", "INV-2002"), b3, RULES)
    assert too_short.reason == "reference_partial" and too_short.allocations[0].write_off == 0


def test_reference_identifies_an_unknown_payer_and_refuses_other_customers_invoices():
    b = book(inv("INV-3001", 7000, customer="C7"))
    m = match_receipt(Receipt("P1", 7000, "USD", "2026-02-01", None, "INV-3001"), b, RULES)
    assert (m.customer, m.reason, m.confidence) == ("C7", "reference", Decimal("0.97"))
    b = book(inv("INV-3002", 7000, customer="C7"))
    m = match_receipt(Receipt("P2", 7000, "USD", "2026-02-01", "C8", "INV-3002"), b, RULES)
    assert m.reason == "reference_other_customer" and not m.allocations and m.unapplied == 7000


def test_exact_amount_ambiguity_and_combination():
    b = book(inv("A", 1234), inv("B", 5000, due="2026-01-15"), inv("C", 2500), inv("D", 700))
    m = match_receipt(Receipt("P1", 1234, "USD", "2026-02-01", "C1"), b, RULES)
    assert (m.reason, m.invoices, m.confidence) == ("exact_amount", ("A",), Decimal("0.90"))
    combo = match_receipt(Receipt("P2", 5700, "USD", "2026-02-01", "C1"), b, RULES)
    assert combo.reason == "combination" and combo.invoices == ("B", "D")
    twins = book(inv("E", 900), inv("F", 900, due="2026-01-01"))
    m = match_receipt(Receipt("P3", 900, "USD", "2026-02-01", "C1"), twins, RULES)
    assert m.reason == "exact_amount_ambiguous" and not m.allocations and m.proposal[0].invoice == "F"
    assert twins.balance == {"E": 900, "F": 900}  # a proposal consumes nothing


def test_unknown_payer_without_reference_is_never_applied():
    b = book(inv("G", 4242, customer="C9"))
    m = match_receipt(Receipt("P1", 4242, "USD", "2026-02-01", None, "thanks"), b, RULES)
    assert m.reason == "exact_amount_unknown_customer" and not m.allocations and m.proposal
    noise = match_receipt(Receipt("P2", 1111, "USD", "2026-02-01", None, "refund 7"), b, RULES)
    assert noise.reason == "unknown_customer" and noise.unapplied == 1111


def test_other_currency_through_the_converter():
    rate = {("EUR", "USD"): Decimal("1.10"), ("USD", "EUR"): 1 / Decimal("1.10")}

    def conv(minor: int, src: str, dst: str) -> int:
        return int((Decimal(minor) * rate[(src, dst)]).to_integral_value())

    b = book(inv("INV-9", 11000))
    m = match_receipt(Receipt("P1", 10000, "EUR", "2026-02-01", "C1", "INV-9"), b, RULES, conv)
    assert m.reason == "reference" and m.allocations[0].amount == 11000 and m.allocations[0].payment_amount == 10000


def test_find_combination_is_bounded():
    sols, complete = find_combination([5, 3, 2, 8], 10, max_size=3, max_nodes=1000)
    assert complete and sorted(sols) == [(0, 1, 2), (2, 3)]
    sols, complete = find_combination(list(range(1, 200)), 990, max_size=5, max_nodes=50)
    assert sols == [] and complete is False


amounts = st.integers(min_value=1, max_value=50_000)


@settings(max_examples=150, deadline=None)
@given(balances=st.lists(amounts, min_size=1, max_size=8),
       receipts=st.lists(st.tuples(amounts, st.integers(0, 7), st.booleans()), min_size=1, max_size=12))
def test_never_over_apply_a_payment_or_an_invoice(balances, receipts):
    invoices = [inv(f"INV-{i:04d}", b) for i, b in enumerate(balances)]
    b = book(*invoices)
    rs = []
    for n, (amount, target, by_ref) in enumerate(receipts):
        text = f"INV-{min(target, len(balances) - 1):04d}" if by_ref else ""
        rs.append(Receipt(f"P{n}", amount, "USD", "2026-02-01", "C1", text))
    matches = apply_receipts(rs, b, RULES)
    applied: dict[str, int] = {}
    for r, m in zip(rs, matches, strict=True):
        assert m.applied + m.unapplied == r.amount  # never more than the payment, nothing lost
        assert all(a.amount > 0 and a.payment_amount >= 0 and a.write_off >= 0 for a in m.allocations)
        for a in m.allocations:
            applied[a.invoice] = applied.get(a.invoice, 0) + a.amount + a.write_off
    for i in invoices:
        assert applied.get(i.number, 0) <= i.balance  # never over-apply an invoice
        assert b.balance[i.number] == i.balance - applied.get(i.number, 0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=2, max_size=12), st.data())
def test_combination_solutions_sum_to_the_target(values, data):
    picks = data.draw(st.lists(st.integers(0, len(values) - 1), min_size=2, max_size=4, unique=True))
    target = sum(values[i] for i in picks)
    sols, _ = find_combination(values, target, max_size=5, max_nodes=50_000)
    assert sols, "a combination that exists within the bounds is found"
    for sol in sols:
        assert sum(values[i] for i in sol) == target and len(set(sol)) == len(sol) >= 2


def test_aging_buckets_and_dso():
    as_of = date(2026, 5, 1)
    items = [(100, date(2026, 5, 1)), (200, date(2026, 4, 30)), (300, date(2026, 4, 1)), (400, date(2026, 3, 1)),
             (500, date(2026, 2, 1)), (600, date(2026, 1, 1)), (700, date(2026, 6, 1))]
    # days past due: 0, 1, 30, 61, 89, 120, -31
    assert aging(items, as_of) == {"current": 800, "d1_30": 500, "d31_60": 0, "d61_90": 900, "over_90": 600}
    assert aging([(5, date(2026, 3, 31))], as_of) == {"current": 0, "d1_30": 0, "d31_60": 5, "d61_90": 0,
                                                       "over_90": 0}
    assert dso_days(150_000, 450_000, 90) == Decimal("30.00")
    assert dso_days(1, 0, 90) == Decimal("0.00")


def test_dunning_steps_due():
    policy = DunningPolicy("card", (DunningStep("retry_1", "retry", 1), DunningStep("retry_2", "retry", 3),
                                    DunningStep("reminder_1", "reminder", 3, "reminder_1"),
                                    DunningStep("suspension", "suspension", 30)))
    due = steps_due(policy, failed_on=date(2026, 2, 2), due_on=date(2026, 1, 31), as_of=date(2026, 2, 3),
                    done=frozenset())
    assert [(s.name, d.isoformat()) for s, d in due] == [("retry_1", "2026-02-03"), ("reminder_1", "2026-02-03")]
    later = steps_due(policy, failed_on=date(2026, 2, 2), due_on=date(2026, 1, 31), as_of=date(2026, 3, 5),
                      done=frozenset({"retry_1", "reminder_1"}))
    assert [s.name for s, _ in later] == ["retry_2", "suspension"]
    no_failure = steps_due(policy, failed_on=None, due_on=date(2026, 1, 31), as_of=date(2026, 3, 5),
                           done=frozenset())
    assert [s.name for s, _ in no_failure] == ["reminder_1", "suspension"]
