"""The stored due schedule (contracts.recon_sides.due_schedule) against the replay it stands in for.

contracts_contract keeps, at each change, the charges of the contract's whole timeline and the latest
effective date of its changes; values_due reads that schedule for any ``as_of`` on or after that date
instead of replaying the change log. Property: for random contracts (billing days 1-31, monthly,
quarterly, yearly and one-time lines in advance or arrears, amendments, removals, added lines, renewals
with uplift, cancellations, a legacy billed-through date), the schedule summed through ``as_of`` is exactly
what contract_due gives by replaying the log through ``as_of``: amount and earliest due date."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from closeloop.catalog.model import PriceTerms
from closeloop.contracts.model import Change, ContractLine, LineUpdate, ProductRef, replay, term_end
from closeloop.contracts.recon_sides import contract_due, due_from_schedule, due_schedule
from closeloop.core.errors import CloseloopError

PERIODS = ("month", "quarter", "year", "one_time")


def _line(line_id: str, period: str, timing: str, amount_minor: int, quantity: int, start: date) -> ContractLine:
    terms = PriceTerms.from_dict({"price_id": f"p-{line_id}", "sku": "x", "currency": "USD", "model": "per_unit",
                                  "amount": str(Decimal(amount_minor).scaleb(-2)), "period": period,
                                  "timing": "advance" if period == "one_time" else timing})
    return ContractLine(line_id=line_id, product=ProductRef("x", "X", "ratable", "saas"), list_terms=terms,
                        quantity=Decimal(quantity), performing_entity="US01", start=start)


lines_st = st.lists(st.tuples(st.sampled_from(PERIODS), st.sampled_from(("advance", "arrears")),
                              st.integers(1, 500_000), st.integers(1, 20)), min_size=1, max_size=3)
change_st = st.tuples(st.sampled_from(("quantity", "remove", "add", "renew", "cancel")), st.integers(0, 800),
                      st.integers(1, 30), st.sampled_from(PERIODS), st.integers(0, 12))


@st.composite
def contracts(draw):
    start = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 400)))
    term = draw(st.integers(1, 24))
    specs = draw(lines_st)
    lines = tuple(_line(f"L{i}", p, t, a, q, start) for i, (p, t, a, q) in enumerate(specs))
    log = [Change(1, "activation", start, start, "C/activation", lines=lines, term_months=term)]
    end = term_end(start, term)
    for kind, offset, qty, period, uplift in draw(st.lists(change_st, max_size=4)):
        seq = len(log) + 1
        effective = start + timedelta(days=offset % max(1, (end - start).days + 1))
        target = f"L{offset % len(lines)}"
        if kind == "quantity":
            change = Change(seq, "amendment", effective, effective, f"C/{seq}",
                            updates=(LineUpdate(target, quantity=Decimal(qty)),))
        elif kind == "remove":
            change = Change(seq, "amendment", effective, effective, f"C/{seq}", updates=(LineUpdate(target, remove=True),))
        elif kind == "add":
            change = Change(seq, "amendment", effective, effective, f"C/{seq}",
                            lines=(_line(f"A{seq}", period, "advance" if qty % 2 else "arrears", qty * 1234, 1,
                                         effective),))
        elif kind == "renew":
            effective = end + timedelta(days=1)
            change = Change(seq, "renewal", effective, effective, f"C/{seq}", term_months=1 + qty % 12,
                            uplift_pct=Decimal(uplift))
        else:
            change = Change(seq, "cancellation", effective, effective, f"C/{seq}")
        try:
            tl = replay([*log, change])
        except CloseloopError:
            continue  # a change that does not fit the contract is refused by contract.amend as well
        log.append(change)
        end = tl.terms[-1].end
    billing_day = draw(st.integers(1, 31))
    billed_through = draw(st.none() | st.integers(0, 500).map(lambda d: start + timedelta(days=d)))
    return log, billing_day, billed_through


@settings(max_examples=300, deadline=None)
@given(contracts(), st.lists(st.integers(0, 1200), min_size=1, max_size=8))
def test_the_schedule_is_the_replay_on_or_after_the_last_change(contract, days):
    log, billing_day, billed_through = contract
    tl = replay(log)
    schedule = due_schedule(tl, billing_day)
    through = max(c.effective for c in log)
    assume(tl.segments)
    for d in days:
        as_of = through + timedelta(days=d)
        want = contract_due(log, billing_day, as_of, billed_through)
        got = due_from_schedule(schedule, as_of.isoformat(),
                                None if billed_through is None else billed_through.isoformat())
        assert got == (want.amount, None if want.first_due is None else want.first_due.isoformat())


def test_a_schedule_by_hand():
    # 10 seats at 31.00 a month in advance from 10 January 2026, billing day 1, three months; upgraded to 20 seats
    # from 16 February: January 10-31 is 22/31 of 310.00 = 220.00; February 1-15 at 10 seats 15/28 of 310.00
    # = 166.07; February 16-28 at 20 seats 13/28 of 620.00 = 287.86; March 620.00; April 1-9 9/30 of 620.00 = 186.00
    start = date(2026, 1, 10)
    line = _line("L0", "month", "advance", 3100, 10, start)
    log = [Change(1, "activation", start, start, "C/activation", lines=(line,), term_months=3),
           Change(2, "amendment", date(2026, 2, 16), date(2026, 2, 16), "C/2",
                  updates=(LineUpdate("L0", quantity=Decimal(20)),))]
    schedule = due_schedule(replay(log), 1)
    assert schedule == [["2026-01-10", 22000, "2026-01-31"], ["2026-02-01", 16607, "2026-02-15"],
                        ["2026-02-16", 28786, "2026-02-28"], ["2026-03-01", 62000, "2026-03-31"],
                        ["2026-04-01", 18600, "2026-04-09"]]
    assert due_from_schedule(schedule, "2026-02-16") == (22000 + 16607 + 28786, "2026-01-10")
    # a legacy system billed through February: March onwards
    assert due_from_schedule(schedule, "2026-04-30", "2026-02-28") == (62000 + 18600, "2026-03-01")
