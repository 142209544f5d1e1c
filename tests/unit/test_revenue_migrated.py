"""Contracts migrated from a legacy system, in the pure revenue model: the schedule split at the cutover (what
the legacy system recognised and what closeloop recognises) and what the legacy system billed through its
billed-through date (docs/revenue.md, "Migrated contracts")."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from closeloop.revenue import model
from closeloop.revenue.model import (
    Piece,
    billed_through,
    change_from_payload,
    plan_contract,
    split_at_cutover,
)
from tests.unit.test_revenue_model import contracts, line, payloads

D = date.fromisoformat


def snapshot_and_plan(lines, start: date, months: int, billing_day: int):
    from closeloop.contracts.model import Change as ContractChange

    changes = [ContractChange(1, "activation", start, start, "act", lines=tuple(lines), term_months=months)]
    p = payloads(changes, billing_day)[0]
    change = change_from_payload(p)
    return change.snapshot, plan_contract([change])


def test_monthly_billed_on_the_fifteenth_carries_the_days_after_the_cutover():
    """100.00 a month from 15 June 2025 (billing day 15), billed through 14 February 2026, cutover 31 January:
    the legacy system billed 8 periods (800.00) and recognised 754.84 (the period 15 January - 14 February cut
    by days: 17 of 31 days recognised, 14 carried = 45.16, rounded half-up as billing rounds a credit)."""
    snap, plan = snapshot_and_plan([line("l1", "month", 10000, 1, D("2025-06-15"))], D("2025-06-15"), 24, 15)
    kept, legacy = split_at_cutover(plan.pieces, D("2026-01-31"))
    assert billed_through(snap, D("2026-02-14")) == {"l1": 80000}
    assert legacy == {"l1": 75484}
    assert kept[0] == Piece("l1", D("2026-02-01"), D("2026-02-14"), 4516, model.RATABLE)
    assert all(p.first is not None and p.first > D("2026-01-31") for p in kept)
    assert sum(p.amount for p in kept) == 240000 - 75484


def test_annual_billed_in_advance_and_monthly_billed_in_arrears():
    """An annual 1,200.00 from 1 July 2025 billed through 30 June 2026: 150 of 365 days after the cutover of
    31 January are carried (493.15). A line billed in arrears through 31 December: the legacy system
    recognised January without billing it (a contract asset of 100.00)."""
    snap, plan = snapshot_and_plan([line("s", "year", 120000, 1, D("2025-07-01"))], D("2025-07-01"), 36, 1)
    _, legacy = split_at_cutover(plan.pieces, D("2026-01-31"))
    assert billed_through(snap, D("2026-06-30"))["s"] - legacy["s"] == 49315
    snap, plan = snapshot_and_plan([line("m", "month", 10000, 1, D("2025-06-01"))], D("2025-06-01"), 24, 1)
    _, legacy = split_at_cutover(plan.pieces, D("2026-01-31"))
    assert billed_through(snap, D("2025-12-31"))["m"] - legacy["m"] == -10000
    assert billed_through(snap, D("2025-05-31")) == {}  # nothing billed yet


@settings(max_examples=120, deadline=None)
@given(contracts(), st.integers(-30, 800))
def test_the_split_keeps_every_amount_and_nothing_before_the_cutover(generated, offset):
    changes, billing_day = generated
    ps = payloads(changes, billing_day)
    known: dict[str, model.LineFacts] = {}
    folded = []
    for p in ps:
        ch = change_from_payload(p, known)
        known = {f.line_id: f for f in ch.snapshot.facts}
        folded.append(ch)
    plan = plan_contract(folded)
    cutover = folded[0].snapshot.start + timedelta(days=offset)
    kept, legacy = split_at_cutover(plan.pieces, cutover)
    total: dict[str, int] = {}
    for p in plan.pieces:
        total[p.line_id] = total.get(p.line_id, 0) + p.amount
    after: dict[str, int] = {}
    for p in kept:
        assert p.first is None or p.first > cutover
        after[p.line_id] = after.get(p.line_id, 0) + p.amount
    for line_id, amount in total.items():
        assert after.get(line_id, 0) + legacy.get(line_id, 0) == amount
    # what a contract billed through its last day is its whole value (every allocatable segment billed)
    snap = folded[-1].snapshot
    last = max(s.end for s in snap.segments)
    billed = billed_through(snap, last)
    assert sum(billed.values()) == sum(s.value for s in snap.segments if snap.facts_of(s.line_id).allocatable)
