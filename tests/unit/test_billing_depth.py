"""Billing depth, pure: coupons on drafts, wallet draw-downs, ramp steps and trial phases.

Invariants (hypothesis): a fixed coupon's parts sum exactly and never take a line below zero, the
unused part is what is left of the coupon; a wallet never goes below zero and never pays more than
is eligible or due; ramp steps that tile the term are accepted and any overlap or gap is named; a
line's phases tile its days. Published figures: Stripe's amount_off 200 on subtotals of 100 and 300,
Lago's wallet of 20 credits at 1.5, Lago's once coupon carried over.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from closeloop.billing.discounts import Coupon, Redemption, apply_coupons, percent_of, spread
from closeloop.billing.drawdown import Wallet, amount_of, credits_of, draw
from closeloop.billing.model import Account, Charge, DraftInvoice
from closeloop.catalog.model import PriceTerms
from closeloop.contracts.model import ContractLine, ProductRef, canonical, phases
from closeloop.contracts.pricing import phase_segments, ramp_problems

DAY = date(2026, 1, 1)
ACCOUNT = Account(1, "C-1", "US01", "USD")


def charge(line_id: str, amount: int, kind: str = "recurring", contract: str = "K-1") -> Charge:
    return Charge(contract_id=contract, line_id=line_id, version=1, kind=kind, description=f"Line {line_id}",
                  amount=amount, natural=DAY, scheduled=True)


def draft(*charges: Charge) -> DraftInvoice:
    return DraftInvoice(ACCOUNT, DAY, tuple(charges), tuple(-(i + 1) for i in range(len(charges))))


def fixed(code: str, amount: int, duration: str = "forever") -> Coupon:
    return Coupon(code=code, name=code, duration=duration, amount_off=amount, currency="USD")


def redemption(coupon: Coupon, rid: int = 1, **kw) -> Redemption:
    remaining = coupon.amount_off if coupon.duration == "once" and coupon.amount_off is not None else None
    return Redemption(id=rid, coupon=coupon, customer_id=1, start=DAY, remaining=remaining, **kw)


# --------------------------------------------------------------------------- coupons


@given(st.integers(0, 10**9), st.lists(st.integers(0, 10**8), min_size=1, max_size=12))
def test_a_fixed_coupon_spreads_exactly_and_never_below_zero(value, amounts):
    parts, unused = spread(value, amounts)
    assert sum(parts) == min(value, sum(amounts))
    assert unused == value - sum(parts)
    assert all(0 <= p <= a for p, a in zip(parts, amounts, strict=True))


@given(st.integers(1, 10**7), st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=10))
@settings(max_examples=200)
def test_discount_lines_never_take_a_charge_below_zero(amount_off, amounts):
    d = draft(*(charge(f"L{i}", a, "recurring" if a >= 0 else "credit") for i, a in enumerate(amounts)))
    new, _, uses, _ = apply_coupons(d, [redemption(fixed("F", amount_off))], {})
    discounts = [c for c in new.charges if c.kind == "discount"]
    positive = sum(a for a in amounts if a > 0)
    assert -sum(c.amount for c in discounts) == min(amount_off, positive)
    for c in new.charges:
        if c.kind != "discount":
            own = [x.amount for x in discounts if x.line_id == c.line_id]
            assert c.amount + sum(own) >= 0 or c.kind == "credit"
    if uses:
        assert uses[0].amount + uses[0].unused == amount_off


def test_stripe_amount_off_200_on_subtotals_of_100_and_300():
    coupon = fixed("SAVE200", 20000)
    small, _, uses, _ = apply_coupons(draft(charge("P", 10000)), [redemption(coupon)], {})
    assert sum(c.amount for c in small.charges) == 0 and uses[0].unused == 10000
    big, _, _, _ = apply_coupons(draft(charge("P", 10000), charge("S", 20000)), [redemption(coupon)], {})
    assert [c.amount for c in big.charges] == [10000, -6667, 20000, -13333]
    assert sum(c.amount for c in big.charges) == 10000
    # each discount line follows the charge it discounts and names it
    assert big.charges[1].line_id == "P" and big.charges[1].credit_of == -1


def test_a_percentage_is_rounded_once_per_line_and_coupons_stack_in_order():
    pct = Coupon(code="P20", name="P20", duration="forever", percent_off=Decimal(20))
    assert percent_of(4999, Decimal(20)) == 1000  # 999.8 -> 1000
    d = draft(charge("A", 4999), charge("B", 1))
    new, _, _, _ = apply_coupons(d, [redemption(pct, 1), redemption(fixed("F", 10**6), 2)], {})
    assert [c.amount for c in new.charges] == [4999, -1000, -3999, 1, -1]
    by_line: dict[str, int] = {}
    for c in new.charges:
        by_line[c.line_id] = by_line.get(c.line_id, 0) + c.amount
    assert by_line == {"A": 0, "B": 0}  # the fixed coupon takes what the percentage left, no more


def test_lagos_once_coupon_carries_its_remainder_then_is_exhausted():
    once = fixed("ONCE50", 5000, "once")
    red = redemption(once)
    _, (red,), uses, _ = apply_coupons(draft(charge("P", 3000)), [red], {})
    assert (uses[0].amount, red.remaining, red.status) == (3000, 2000, "active")
    new, (red,), uses, _ = apply_coupons(draft(charge("P", 3000)), [red], {})
    assert (uses[0].amount, red.remaining, red.status) == (2000, 0, "exhausted")
    new, _, uses, _ = apply_coupons(draft(charge("P", 3000)), [red], {})
    assert uses == [] and [c.amount for c in new.charges] == [3000]


def test_repeating_coupons_end_and_scopes_hold():
    rep = Coupon(code="R", name="R", duration="repeating", duration_months=3, percent_off=Decimal(10))
    red = redemption(rep, contract_id="K-1", line_id="A")
    assert red.in_force(date(2026, 3, 31)) and not red.in_force(date(2026, 4, 1))
    d = draft(charge("A", 1000), charge("B", 1000), charge("A", 1000, contract="K-2"))
    new, _, _, _ = apply_coupons(d, [red], {})
    assert [(c.contract_id, c.line_id, c.amount) for c in new.charges if c.kind == "discount"] == [("K-1", "A", -100)]
    periods = Coupon(code="N", name="N", duration="repeating", duration_periods=2, amount_off=500, currency="USD")
    red2 = redemption(periods)
    for expected in (500, 500, None):  # Lago's frequency_duration: a number of billing periods
        new, (red2,), uses, _ = apply_coupons(draft(charge("A", 3000)), [red2], {})
        assert (uses[0].amount if uses else None) == expected
    expired = Coupon(code="X", name="X", duration="once", percent_off=Decimal(5), redeem_by=date(2025, 12, 31))
    assert "expired" in (expired.problem("USD", DAY, 0) or "")
    assert "does not apply to EUR" in (fixed("F", 100).problem("EUR", DAY, 0) or "")
    limited = Coupon(code="L", name="L", duration="once", percent_off=Decimal(5), max_redemptions=1)
    assert "exhausted" in (limited.problem("USD", DAY, 1) or "")


def test_a_credit_gives_back_the_discount_of_what_it_credits():
    pct = Coupon(code="W20", name="W20", duration="once", percent_off=Decimal(20))
    first, _, _, found = apply_coupons(draft(charge("P", 4900)), [redemption(pct)], {})
    assert [c.amount for c in first.charges] == [4900, -980]
    credit = Charge(contract_id="K-1", line_id="P", version=1, kind="credit", description="Credit", amount=-2529,
                    natural=DAY, scheduled=False, credit_of=-1)
    later, _, _, _ = apply_coupons(DraftInvoice(ACCOUNT, DAY, (credit,), (-5,)), [], found)
    assert [c.amount for c in later.charges] == [-2529, 506]  # 25.29 x 9.80 / 49.00 = 5.058


# --------------------------------------------------------------------------- wallets


def wallet(wid: str, balance: int, expires: date | None = None) -> Wallet:
    return Wallet(wid, 1, "US01", "USD", Decimal(1), balance, expires=expires, created=DAY)


@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=5), st.integers(-10**6, 10**8), st.integers(-10**6, 10**8))
def test_a_wallet_never_goes_below_zero(balances, eligible, due):
    wallets = [wallet(f"W{i}", b) for i, b in enumerate(balances)]
    after, taken = draw(wallets, eligible, due, DAY)
    assert all(w.balance >= 0 for w in after)
    drawn = sum(a for _, a in taken)
    assert drawn == min(max(0, min(eligible, due)), sum(balances))
    assert sum(w.balance for w in after) == sum(balances) - drawn


def test_wallets_pay_those_expiring_first_and_expired_ones_do_not_pay():
    wallets = [wallet("LATE", 1000), wallet("SOON", 500, date(2026, 2, 1)), wallet("GONE", 900, DAY)]
    _, taken = draw(wallets, 1200, 1200, DAY)
    assert taken == [("SOON", 500), ("LATE", 700)]


def test_lagos_credit_value():
    assert amount_of(Decimal(20), Decimal("1.5"), "USD") == 3000
    assert credits_of(500, Decimal("1.5"), "USD") == Decimal("3.33333")
    assert credits_of(7000, Decimal(1), "USD") == Decimal(70)


# --------------------------------------------------------------------------- ramps and trials


def _tiling(start: date, lengths: list[int]) -> list[dict[str, str]]:
    steps, day = [], start
    for i, n in enumerate(lengths):
        end = day + timedelta(days=n - 1)
        steps.append({"start": day.isoformat(), "end": end.isoformat(), "unit_amount": str(100 + i)})
        day = end + timedelta(days=1)
    return steps


@given(st.lists(st.integers(1, 400), min_size=1, max_size=6), st.data())
def test_ramp_steps_that_tile_the_term_are_accepted_and_any_overlap_or_gap_is_named(lengths, data):
    start = date(2026, 1, 1)
    steps = _tiling(start, lengths)
    end = date.fromisoformat(steps[-1]["end"])
    problems, normalised = ramp_problems(steps, start=start, end=end)
    assert problems == [] and len(normalised) == len(steps)
    if len(steps) > 1:
        i = data.draw(st.integers(1, len(steps) - 1))
        shift = data.draw(st.sampled_from([-1, 1]))
        broken = [dict(s) for s in steps]
        first = date.fromisoformat(broken[i]["start"]) + timedelta(days=shift)
        if first <= date.fromisoformat(broken[i]["end"]):
            broken[i]["start"] = first.isoformat()
            found, _ = ramp_problems(broken, start=start, end=end)
            word = "overlap" if shift < 0 else "gap"
            assert any(word in p.reason for p in found), found
    short, _ = ramp_problems(steps, start=start, end=end + timedelta(days=1))
    assert any("last step must end" in p.reason for p in short)


def _line(**ext) -> ContractLine:
    terms = PriceTerms(model="flat", currency="USD", period="month", timing="advance", amount=Decimal(100))
    return ContractLine("P", ProductRef("pro", "Pro", "ratable", "saas"), terms, Decimal(1), "US01", date(2026, 1, 1),
                        extensions=tuple(sorted((k, canonical(v)) for k, v in ext.items())))


@given(st.lists(st.integers(1, 200), min_size=1, max_size=5), st.integers(0, 60))
def test_a_lines_phases_tile_its_days(lengths, trial):
    steps = _tiling(date(2026, 1, 1), lengths)
    last = date.fromisoformat(steps[-1]["end"])
    ext = {"ramp": steps}
    if trial and date(2026, 1, 1) + timedelta(days=trial) <= last:
        ext["trial_days"] = trial
    segs = phase_segments(_line(**ext), last)
    assert segs[0].start == date(2026, 1, 1) and segs[-1].end == last
    assert all(b.start == a.end + timedelta(days=1) for a, b in zip(segs, segs[1:], strict=False))
    if "trial_days" in ext:
        assert segs[0].line.phase == "trial" and segs[0].line.period_amount == 0


def test_a_trial_then_the_line():
    line = _line(trial_days=7)
    (d0, trial), (d1, paid) = phases(line)
    assert (d0, d1) == (date(2026, 1, 1), date(2026, 1, 8))
    assert trial.period_amount == 0 and trial.base is line and trial.to_dict() == line.to_dict()
    assert paid is line and paid.period_amount == 10000
