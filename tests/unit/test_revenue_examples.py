"""Published illustrative examples of IFRS 15 / ASC 606 and of Stripe Revenue Recognition, reproduced with
closeloop's pure revenue model. Each test cites its source and asserts the figures printed there exactly.

Where a guide prints whole currency units the example is computed in whole units (a currency without
minor units), so that the rounding the guide shows is the rounding asserted.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from fractions import Fraction

from closeloop.core.calendars import calendar_named
from closeloop.revenue import model
from closeloop.revenue.model import (
    Change,
    LineFacts,
    Piece,
    Position,
    Seg,
    Snapshot,
    Term,
    allocate_price,
    cumulative_catch_up,
    entries,
    move,
    plan_contract,
    split_piece,
)

D = date.fromisoformat
CALENDAR = calendar_named("calendar")


def by_period(pieces) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for e in entries(pieces, CALENDAR):
        out[e.period] += e.amount
    return dict(out)


def facts(line_id: str, start: str, treatment: str = "ratable") -> LineFacts:
    return LineFacts(line_id, treatment, "revenue", None, False, D(start))


def snapshot(start: str, end: str, segs, line_facts, billing_day: int | None = None) -> Snapshot:
    return Snapshot("C-1", "US01", "USD", "SF-1", billing_day or D(start).day, D(start), (Term(1, D(start), D(end)),),
                    tuple(segs), tuple(line_facts))


# --------------------------------------------------------------------------- allocation


def test_kpmg_handbook_bundle_discount_allocated_to_all_obligations():
    """KPMG, "Revenue – IFRS 15 handbook" (June 2019), 4.2.1 Example 5 "Allocating a discount: Bundle discount
    allocated to all performance obligations in a contract" (IFRS 15.82), reproduced at
    http://hozir.org/pars_docs/refs/564/563056/hozir.org/pdfview/revenue--ifrs-15-handbook.html?page=107 .

    Telco B sells phone, internet and television at 20, 30 and 40 a month; all three together carry a discount
    of 10. The handbook prints the price allocation phone 18, internet 27, television 35: 80 x 20/90 = 17.78,
    80 x 30/90 = 26.67 and 80 x 40/90 = 35.56 — rounding each alone would give 18 + 27 + 36 = 81; the largest
    remainder method gives the printed figures, which sum to the 80 charged."""
    assert allocate_price(80, [20, 30, 40]) == [18, 27, 35]


def test_ifrs15_example_34_case_a_discount_allocated_proportionately():
    """IFRS 15 Illustrative Examples (IASB, May 2014), Example 34 "Allocating a discount", Case A, IE164-IE166
    (booklet reproduced at https://documents.pub/document/illustrative-examples-international-financial-examples-international-financial.html).

    Products A, B and C have stand-alone selling prices of CU40, CU55 and CU45 (CU140) and are sold together
    for CU100. The example allocates Product A CU29, Product B CU39 and Product C CU32 (total CU100)."""
    assert allocate_price(100, [40, 55, 45]) == [29, 39, 32]


# --------------------------------------------------------------------------- contract assets and liabilities


def test_asc606_example_39_contract_asset_recognised_for_performance():
    """ASC 606-10-55-287 to 55-290, Example 39 "Contract Asset Recognized for the Entity's Performance"
    (reproduced in Deloitte's Roadmap, 14.4 Contract Assets,
    https://dart.deloitte.com/USDART/home/codification/revenue/asc606-10/roadmap-revenue-recognition/chapter-14-presentation/14-4-contract-assets).

    Products A and B for $1,000, payment due only once both are delivered; $400 is allocated to A and $600 to
    B. On delivering A: Dr contract asset $400, Cr revenue $400. On delivering B: Dr receivable $1,000,
    Cr contract asset $400, Cr revenue $600. closeloop books the receivable with the invoice against deferred
    revenue and relieves the contract asset at once; the balances after each step are the example's."""
    assert allocate_price(1000, [400, 600]) == [400, 600]
    pos = Position()
    a = move(pos, recognised=400)  # Product A delivered
    assert (a.amount, a.deferred, a.unbilled) == (400, 0, 400)  # Dr contract asset 400, Cr revenue 400
    assert (a.position.deferred, a.position.unbilled) == (0, 400)
    bill = move(a.position, billed=1000)  # the invoice: Dr receivable 1,000, Cr deferred revenue 1,000 (posting)
    assert (bill.amount, bill.deferred, bill.unbilled) == (0, 400, -400)  # relief: Dr deferred 400, Cr asset 400
    b = move(bill.position, recognised=600)  # Product B delivered
    assert (b.amount, b.deferred, b.unbilled) == (600, 600, 0)
    assert (b.position.deferred, b.position.unbilled) == (0, 0)
    # net over the three entries: receivable 1,000; contract asset 400 - 400 = 0; revenue 400 + 600 = 1,000
    assert a.unbilled + bill.unbilled + b.unbilled == 0
    assert a.amount + b.amount == 1000


# --------------------------------------------------------------------------- Stripe Revenue Recognition


def test_stripe_monthly_subscription_starting_mid_month():
    """Stripe docs, Revenue Recognition > Examples > Subscriptions, "Monthly subscription"
    (https://docs.stripe.com/revenue-recognition/examples/subscriptions).

    A 31 USD monthly subscription starts on 15 January 2019; the service period is 15 January to 14 February.
    The 31 USD is recognised across 17 days in January and 14 in February; after January: Revenue +17.00,
    DeferredRevenue +14.00."""
    snap = snapshot("2019-01-15", "2020-01-14", [Seg("pro", D("2019-01-15"), D("2020-01-14"), 1, 3100, 1, 37200, None)],
                    [facts("pro", "2019-01-15")])
    plan = plan_contract([Change(1, "activation", D("2019-01-15"), "prospective", snap)])
    first_period = [p for p in plan.pieces if p.first == D("2019-01-15")]
    assert [(p.first, p.last, p.amount) for p in first_period] == [(D("2019-01-15"), D("2019-02-14"), 3100)]
    split = by_period(first_period)
    assert split == {"2019-01": 1700, "2019-02": 1400}
    after_january = move(move(Position(), billed=3100).position, recognised=split["2019-01"])
    assert after_january.amount == 1700 and after_january.position.deferred == 1400


def test_stripe_annual_subscription_recognised_daily():
    """Stripe docs, Revenue Recognition > Examples > Subscriptions, "Annual subscription"
    (https://docs.stripe.com/revenue-recognition/examples/subscriptions).

    A 365 USD annual subscription from 1 January 2019, recognised daily: Revenue +31.00 (January), +28.00
    (February), +31.00 (March); DeferredRevenue +334.00, -28.00, -31.00."""
    snap = snapshot("2019-01-01", "2019-12-31", [Seg("annual", D("2019-01-01"), D("2019-12-31"), 1, 36500, 12, 36500,
                                                     None)], [facts("annual", "2019-01-01")])
    plan = plan_contract([Change(1, "activation", D("2019-01-01"), "prospective", snap)])
    months = by_period(plan.pieces)
    assert [months["2019-01"], months["2019-02"], months["2019-03"]] == [3100, 2800, 3100]
    pos = move(Position(), billed=36500).position
    deferred = []
    for m in ("2019-01", "2019-02", "2019-03"):
        mv = move(pos, recognised=months[m])
        deferred.append(mv.position.deferred - pos.deferred)
        pos = mv.position
    assert [36500 - months["2019-01"], *deferred[1:]] == [33400, -2800, -3100]


def test_stripe_upgrade_mid_month_prospective():
    """Stripe docs, Revenue Recognition > Examples > Subscriptions, "Upgrade"
    (https://docs.stripe.com/revenue-recognition/examples/subscriptions; the Japanese edition of "Revenue
    Recognition with subscriptions and invoicing" prints the same figures).

    A 90 USD monthly subscription from 1 April; on 21 April the customer upgrades to 120 USD a month. Stripe
    creates -30 USD for the unused time on the old price; the customer received 20 days of the 90 USD
    subscription, 60 USD, and 10 days of the 120 USD one (120 x 10/30 = 40 USD): April revenue 100 USD."""
    old = snapshot("2019-04-01", "2020-03-31", [Seg("plan", D("2019-04-01"), D("2020-03-31"), 1, 9000, 1, 108000, None)],
                   [facts("plan", "2019-04-01")])
    new = snapshot("2019-04-01", "2020-03-31", [
        Seg("plan", D("2019-04-01"), D("2019-04-20"), 1, 9000, 1, 6000, None),
        Seg("plan", D("2019-04-21"), D("2020-03-31"), 1, 12000, 1, 4000 + 11 * 12000, None)],
        [facts("plan", "2019-04-01")])
    april = Piece("plan", D("2019-04-01"), D("2019-04-30"), 9000, model.RATABLE)
    used, unused = split_piece(april, D("2019-04-21"))
    assert (used.amount, unused.amount) == (6000, 3000)  # 60 USD of service; the -30 USD unused-time credit
    plan = plan_contract([Change(1, "activation", D("2019-04-01"), "prospective", old),
                          Change(2, "amendment", D("2019-04-21"), "prospective", new)])
    months = by_period(plan.pieces)
    assert months["2019-04"] == 6000 + 4000
    assert months["2019-05"] == 12000
    assert sum(p.amount for p in plan.pieces) == plan.transaction_price == 6000 + 4000 + 11 * 12000


def test_stripe_amortization_by_day_four_month_subscription():
    """Stripe docs, Revenue Recognition settings > Examples, "Amortization granularity"
    (https://docs.stripe.com/revenue-recognition/revenue-settings/examples).

    A 120 USD four-month subscription from 15 June 2026, amortised by day ("cut off the last day"): June
    +16.00, July 31, August 31, September 30, October +12.00; DeferredRevenue +104.00 at the end of June."""
    piece = Piece("sub", D("2026-06-15"), D("2026-10-12"), 12000, model.RATABLE)
    assert by_period([piece]) == {"2026-06": 1600, "2026-07": 3100, "2026-08": 3100, "2026-09": 3000,
                                  "2026-10": 1200}
    june = move(move(Position(), billed=12000).position, recognised=1600)
    assert june.position.deferred == 10400


def test_stripe_credit_note_before_payment_lowers_revenue_over_the_service_period():
    """Stripe docs, Revenue Recognition > Examples > Credit notes, "Credit note before a payment"
    (https://docs.stripe.com/revenue-recognition/examples/credit-notes).

    A 3-month 120 USD subscription from 1 January; a 30 USD pre-payment credit note makes it 90 USD. Revenue
    31.00 (January), 28.00 (February), 31.00 (March); DeferredRevenue +59.00, -28.00, -31.00. closeloop takes
    a credit memo off the credited line's service period by days, as a negative piece."""
    charge = Piece("q", D("2026-01-01"), D("2026-03-31"), 12000, model.RATABLE)
    credit = Piece("q", D("2026-01-01"), D("2026-03-31"), -3000, model.CREDIT)
    months = by_period([charge, credit])
    assert months == {"2026-01": 3100, "2026-02": 2800, "2026-03": 3100}
    pos = move(move(Position(), billed=12000).position, billed=-3000).position
    jan = move(pos, recognised=months["2026-01"])
    feb = move(jan.position, recognised=months["2026-02"])
    mar = move(feb.position, recognised=months["2026-03"])
    assert [jan.position.deferred, feb.position.deferred - jan.position.deferred,
            mar.position.deferred - feb.position.deferred] == [5900, -2800, -3100]


# --------------------------------------------------------------------------- contract modifications


def test_ifrs15_example_7_services_contract_modified_prospectively():
    """IFRS 15 Illustrative Examples (IASB, May 2014), Example 7 "Modification of a services contract",
    IE33-IE36 (booklet reproduced at https://documents.pub/document/illustrative-examples-international-financial-examples-international-financial.html).

    A three-year cleaning contract for CU100,000 a year (its stand-alone selling price). At the end of year
    two the fee for year three drops to CU80,000 and the customer extends by three years for CU200,000; the
    stand-alone selling price is then CU80,000 a year. The remaining services are distinct, so the
    modification is a termination and a new contract: CU80,000 + CU200,000 = CU280,000 is recognised over the
    remaining four years, CU70,000 a year. (Computed in whole currency units, as printed.)"""
    old = Snapshot("C-7", "US01", "XXX", "C", 1, D("2020-01-01"), (Term(1, D("2020-01-01"), D("2022-12-31")),),
                   (Seg("clean", D("2020-01-01"), D("2022-12-31"), 1, 100000, 12, 300000, 300000),),
                   (facts("clean", "2020-01-01"),))
    new = Snapshot("C-7", "US01", "XXX", "C", 1, D("2020-01-01"), (Term(1, D("2020-01-01"), D("2025-12-31")),), (
        Seg("clean", D("2020-01-01"), D("2021-12-31"), 1, 100000, 12, 200000, 200000),
        Seg("clean", D("2022-01-01"), D("2022-12-31"), 1, 80000, 12, 80000, 80000),
        Seg("clean", D("2023-01-01"), D("2025-12-31"), 1, 66667, 12, 200000, 240000)), (facts("clean", "2020-01-01"),))
    plan = plan_contract([Change(1, "activation", D("2020-01-01"), "prospective", old),
                          Change(2, "amendment", D("2022-01-01"), "prospective", new)])
    per_year = defaultdict(int)
    for p in plan.pieces:
        per_year[p.first.year] += p.amount
    assert [per_year[y] for y in (2020, 2021)] == [100000, 100000]
    assert [per_year[y] for y in (2022, 2023, 2024, 2025)] == [70000, 70000, 70000, 70000]
    assert plan.transaction_price == 480000


def test_ifrs15_example_8_modification_with_cumulative_catch_up():
    """IFRS 15 Illustrative Examples (IASB, May 2014), Example 8 "Modification resulting in a cumulative
    catch-up adjustment to revenue", IE37-IE41 (booklet reproduced at
    https://documents.pub/document/illustrative-examples-international-financial-examples-international-financial.html).

    A building for CU1,000,000 plus a CU200,000 bonus; after year one 60 per cent is complete (CU420,000 of
    CU700,000 expected costs) and CU600,000 is recognised. The modification raises the fixed price by
    CU150,000 and the expected costs by CU120,000, and the bonus becomes includable: the transaction price is
    CU1,350,000 and progress 51.2 per cent (CU420,000 / CU820,000). The entity recognises additional revenue of
    CU91,200 [(51.2 per cent x CU1,350,000) - CU600,000] as a cumulative catch-up adjustment."""
    assert cumulative_catch_up(1_000_000, Fraction(420_000, 700_000), 0) == 600_000
    assert round(Fraction(420_000, 820_000) * 1000) == 512  # the 51.2 per cent the example prints
    assert cumulative_catch_up(1_350_000, Fraction(512, 1000), 600_000) == 91_200


def test_catch_up_of_a_ratable_line_follows_elapsed_time():
    """The textbook pattern of IFRS 15.21(b) for a service recognised over time: 100 a month for a year; from
    1 April the price becomes 200 a month and the change is part of the existing contract. The new
    transaction price 300 + 9 x 200 = 2,100 x 3/12 elapsed = 525 should have been recognised by 1 April:
    a catch-up of 225 in April, then 1,575 over the nine remaining months (175 a month)."""
    old = snapshot("2026-01-01", "2026-12-31", [Seg("s", D("2026-01-01"), D("2026-12-31"), 1, 10000, 1, 120000, None)],
                   [facts("s", "2026-01-01")])
    new = snapshot("2026-01-01", "2026-12-31", [Seg("s", D("2026-01-01"), D("2026-03-31"), 1, 10000, 1, 30000, None),
                                                Seg("s", D("2026-04-01"), D("2026-12-31"), 1, 20000, 1, 180000, None)],
                   [facts("s", "2026-01-01")])
    plan = plan_contract([Change(1, "activation", D("2026-01-01"), "prospective", old),
                          Change(2, "amendment", D("2026-04-01"), "catch_up", new)])
    catch = [p for p in plan.pieces if p.kind == model.CATCH_UP]
    assert [(p.first, p.amount) for p in catch] == [(D("2026-04-01"), 22500)]
    months = by_period(plan.pieces)
    assert [months[f"2026-{m:02d}"] for m in range(1, 4)] == [10000, 10000, 10000]
    assert months["2026-04"] == 22500 + 17500
    assert all(months[f"2026-{m:02d}"] == 17500 for m in range(5, 13))
    assert sum(months.values()) == 210000
