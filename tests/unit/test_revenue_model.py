"""The pure revenue model: invariants over generated contracts (hypothesis) and exact schedules.

Contracts are generated with the contracts area's own pure model and turned into the exact event payloads
it emits (``_contract_payload``), so recognition is tested on what it really receives."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from closeloop.catalog.model import PriceTerms
from closeloop.contracts.model import Change as ContractChange
from closeloop.contracts.model import ContractLine, LineUpdate, ProductRef, replay
from closeloop.contracts.service import _contract_payload
from closeloop.core.calendars import calendar_named
from closeloop.core.periods import add_months
from closeloop.revenue import model
from closeloop.revenue.model import (
    Position,
    allocate_price,
    change_from_payload,
    due,
    entries,
    move,
    plan_contract,
)

D = date.fromisoformat
CALENDARS = [calendar_named("calendar"), calendar_named("4-4-5")]
HEADER = {"contract_id": "C-1", "quote_id": "Q-1", "quote_version": 1, "opportunity": None, "customer": "SF-1",
          "customer_id": 1, "entity": "US01", "currency": "USD", "auto_renew": False, "renewal_term_months": None,
          "renewal_uplift_pct": None}


def line(line_id: str, period: str, amount: int, qty: int, start: date, treatment: str = "ratable",
         ssp_unit: Decimal | None = None) -> ContractLine:
    terms = PriceTerms(model="per_unit", currency="USD", period=period, timing="advance",
                       amount=Decimal(amount) / 100, price_id=f"{line_id}-{period}")
    return ContractLine(line_id=line_id, product=ProductRef(line_id.upper(), line_id, treatment, "saas"),
                        list_terms=terms, quantity=Decimal(qty), performing_entity="US01", start=start,
                        ssp_unit=ssp_unit)


def payloads(changes: list[ContractChange], billing_day: int) -> list[dict[str, Any]]:
    """The contract.* payloads the contracts area emits for this change log."""
    out = []
    header = {**HEADER, "billing_day": billing_day}
    for i in range(len(changes)):
        before = replay(changes[:i]) if i else None
        tl = replay(changes[: i + 1])
        out.append(_contract_payload(header, before, tl, changes[i]))
    return out


def fold(ps: list[dict[str, Any]], completions=None) -> list[model.ContractPlan]:
    known: dict[str, model.LineFacts] = {}
    changes, plans = [], []
    for p in ps:
        ch = change_from_payload(p, known)
        known = {f.line_id: f for f in ch.snapshot.facts}
        changes.append(ch)
        plans.append(plan_contract(changes, completions))
    return plans


@st.composite
def contracts(draw: Any) -> tuple[list[ContractChange], int]:
    start = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 364)))
    months = draw(st.integers(1, 24))
    billing_day = draw(st.integers(1, 31))
    n = draw(st.integers(1, 4))
    lines = []
    for i in range(n):
        period = draw(st.sampled_from(["month", "month", "quarter", "year", "one_time"]))
        treatment = "point_in_time" if period == "one_time" and draw(st.booleans()) else "ratable"
        ssp = draw(st.one_of(st.none(), st.integers(1, 5000).map(lambda v: Decimal(v) / 100)))
        lines.append(line(f"l{i}", period, draw(st.integers(0, 250_000)), draw(st.integers(1, 20)), start, treatment,
                          ssp))
    end = add_months(start, months) - timedelta(days=1)
    changes = [ContractChange(1, "activation", start, start, "act", lines=tuple(lines), term_months=months)]
    for k in range(draw(st.integers(0, 2))):
        eff = start + timedelta(days=draw(st.integers(1, max(1, (end - start).days))))
        if eff > end:
            continue
        mod = draw(st.sampled_from(["prospective", "catch_up"]))
        target = draw(st.sampled_from([ln.line_id for ln in lines]))
        if draw(st.booleans()):
            updates = (LineUpdate(target, quantity=Decimal(draw(st.integers(1, 30)))),)
            added: tuple[ContractLine, ...] = ()
        else:
            updates = ()
            added = (line(f"a{k}", "month", draw(st.integers(1, 90_000)), 1, eff),)
        changes.append(ContractChange(len(changes) + 1, "amendment", eff, eff, f"am{k}", modification=mod,
                                      updates=updates, lines=added))
    if draw(st.booleans()) and (end - start).days > 2:
        eff = start + timedelta(days=draw(st.integers(1, (end - start).days)))
        changes.append(ContractChange(len(changes) + 1, "cancellation", eff, eff, "cancel"))
    try:
        replay(changes)
    except Exception:  # noqa: BLE001 - a generated change that does not fit the contract
        assume(False)
    return changes, billing_day


def check_plan(plan: model.ContractPlan, snap: model.Snapshot) -> None:
    for term in plan.terms:
        assert sum(a.allocated for a in term.allocations) == term.transaction_price
        values = sum(s.value for s in snap.segs(term.term) if snap.facts_of(s.line_id).allocatable)
        assert term.transaction_price == values
        per_line: dict[str, int] = defaultdict(int)
        for p in term.pieces:
            per_line[p.line_id] += p.amount
            if p.first is not None:
                assert p.first <= p.last  # type: ignore[operator]
        for a in term.allocations:
            assert per_line.get(a.line_id, 0) == a.allocated, (a, per_line)
        assert sum(per_line.values()) == term.transaction_price


@settings(max_examples=150, deadline=None)
@given(contracts())
def test_every_schedule_sums_to_its_allocation_and_allocation_to_the_price(generated):
    changes, billing_day = generated
    ps = payloads(changes, billing_day)
    plans = fold(ps)
    for p, plan in zip(ps, plans, strict=True):
        check_plan(plan, change_from_payload(p, {f.line_id: f for f in plan.facts}).snapshot)


@settings(max_examples=100, deadline=None)
@given(contracts(), st.sampled_from(CALENDARS))
def test_entries_split_each_piece_over_accounting_periods_exactly(generated, calendar):
    changes, billing_day = generated
    plan = fold(payloads(changes, billing_day))[-1]
    rows = entries(plan.pieces, calendar)
    assert sum(e.amount for e in rows) == sum(p.amount for p in plan.pieces)
    for e in rows:
        if e.first is not None:
            assert calendar.period_of(e.first) == calendar.period_of(e.last) == e.period


@settings(max_examples=100, deadline=None)
@given(contracts())
def test_a_prospective_modification_keeps_what_was_scheduled_before_it(generated):
    changes, billing_day = generated
    ps = payloads(changes, billing_day)
    plans = fold(ps)
    for i in range(1, len(changes)):
        c = changes[i]
        if c.kind == "amendment" and c.modification == "catch_up":
            continue
        before = plans[i - 1].pieces
        after = plans[i].pieces
        cut = c.effective
        old = defaultdict(int)
        new = defaultdict(int)
        # keyed by kind too: a piece that straddled the cut is split there, and its part before the cut
        # may cover the same days as an earlier catch-up piece without being the same revenue
        for p in before:
            if p.first is not None and p.last < cut:  # type: ignore[operator]
                old[(p.line_id, p.first, p.last, p.kind)] += p.amount
        for p in after:  # (a remainder with no service left after the cut is dated the day before it)
            if p.first is not None and p.last < cut and p.kind != model.REMAINDER:  # type: ignore[operator]
                new[(p.line_id, p.first, p.last, p.kind)] += p.amount
        for key, amount in old.items():
            assert new.get(key) == amount


@settings(max_examples=300, deadline=None)
@given(st.integers(-10**9, 10**9), st.integers(0, 400), st.integers(0, 400), st.integers(-5, 410))
def test_due_is_cumulative_bounded_and_complete(amount, offset, length, t):
    first = date(2026, 1, 1) + timedelta(days=offset)
    last = first + timedelta(days=length)
    through = first + timedelta(days=t)
    value = due(amount, first, last, through)
    later = due(amount, first, last, through + timedelta(days=1))
    assert abs(value) <= abs(amount) and abs(later) >= abs(value)
    assert due(amount, first, last, last) == amount and due(amount, first, last, first - timedelta(days=1)) == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-10**7, 10**7)), max_size=30))
def test_position_books_liability_and_asset_so_that_revenue_always_balances(moves):
    pos = Position()
    gl_deferred = gl_unbilled = 0
    for is_bill, amount in moves:
        mv = move(pos, billed=amount) if is_bill else move(pos, recognised=amount)
        if is_bill:
            gl_deferred += amount  # the invoice's own posting: Cr deferred revenue
            assert mv.amount == 0
        assert mv.amount == mv.deferred + mv.unbilled
        gl_deferred -= mv.deferred
        gl_unbilled += mv.unbilled
        pos = mv.position
        assert pos.deferred - pos.unbilled == pos.billed - pos.recognised
        assert min(pos.deferred, pos.unbilled) == 0 <= pos.deferred
        assert (gl_deferred, gl_unbilled) == (pos.deferred, pos.unbilled)


@given(st.integers(0, 10**9), st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
def test_allocation_sums_to_the_transaction_price(price, ssps):
    parts = allocate_price(price, ssps)
    assert sum(parts) == price and all(p >= 0 for p in parts)


def test_point_in_time_and_milestones_are_dated_by_delivery_and_completion():
    start = D("2026-03-10")
    lines = (line("setup", "one_time", 200_000, 1, start, "point_in_time"),
             ContractLine(line_id="impl", product=ProductRef("IMPL", "impl", "milestone", "services"),
                          list_terms=PriceTerms(model="flat", currency="USD", period="one_time", timing="arrears",
                                                amount=Decimal("300.00"), price_id="impl"),
                          quantity=Decimal(1), performing_entity="US01", start=start,
                          milestones=(model_milestone("M1", 10_000), model_milestone("M2", 20_000))))
    ps = payloads([ContractChange(1, "activation", start, start, "act", lines=lines, term_months=12)], 10)
    plan = fold(ps, {("impl", "M1"): D("2026-05-02")})[-1]
    got = sorted((p.line_id, p.kind, p.ref, p.first, p.amount) for p in plan.pieces)
    assert got == [("impl", "milestone", "M1", D("2026-05-02"), 10_000), ("impl", "milestone", "M2", None, 20_000),
                   ("setup", "point", "", start, 200_000)]


def model_milestone(mid: str, amount: int):
    from closeloop.contracts.model import Milestone

    return Milestone(mid, amount)


def test_ratable_year_starting_mid_month_follows_the_billing_periods():
    """12,000.00 a year billed up front from 15 January: recognised by days over the year (365 days)."""
    start = D("2026-01-15")
    ps = payloads([ContractChange(1, "activation", start, start, "act",
                                  lines=(line("sub", "year", 1_200_000, 1, start),), term_months=12)], 15)
    plan = fold(ps)[-1]
    months: dict[str, int] = defaultdict(int)
    for e in entries(plan.pieces, CALENDARS[0]):
        months[e.period] += e.amount
    assert months["2026-01"] == 55890 and months["2027-01"] == 46027  # 17/365 and 14/365 of 12,000.00
    assert sum(months.values()) == 1_200_000 and len(months) == 13
