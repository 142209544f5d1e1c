"""The pure invoice generator: proration, amendments, cancellations, usage, milestones (exact amounts)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from closeloop.billing.generator import generate
from closeloop.billing.model import (
    Account,
    BilledItem,
    MilestoneCompletion,
    PartialBilling,
    Subscription,
    UsageBook,
    UsageDay,
    item_from_charge,
)
from closeloop.billing.proration import capped_credit, prorate
from closeloop.catalog.model import PriceTerms, Tier
from closeloop.contracts.model import Change, ContractLine, LineUpdate, Milestone, ProductRef

ACCOUNT = Account(1, "SF-1", "US01", "USD", 30)
D = date.fromisoformat


def flat(amount: str, timing: str = "advance", period: str = "month") -> PriceTerms:
    return PriceTerms(model="flat", currency="USD", period=period, timing=timing, amount=Decimal(amount),
                      price_id=f"flat-{amount}")


def line(line_id: str, terms: PriceTerms, start: str, qty: str = "1", name: str = "Pro plan",
         treatment: str = "ratable", milestones: tuple[Milestone, ...] = ()) -> ContractLine:
    return ContractLine(line_id=line_id, product=ProductRef("PRO", name, treatment, "saas"), list_terms=terms,
                        quantity=Decimal(qty), performing_entity="US01", start=D(start), milestones=milestones)


def activation(start: str, *lines: ContractLine, months: int = 12) -> Change:
    return Change(seq=1, kind="activation", effective=D(start), recorded_on=D(start), ref="q1", lines=lines,
                  term_months=months)


def sub(*changes: Change, billing_day: int = 1, **kw) -> Subscription:
    return Subscription("C-1", 1, "US01", "USD", billing_day, tuple(changes), **kw)


def run(subs, day, existing=(), usage=None):
    return generate(ACCOUNT, subs if isinstance(subs, list) else [subs], list(existing), usage or UsageBook(), D(day))


def billed(generation, start_id=1):
    out = []
    for inv in generation.invoices:
        for c in inv.charges:
            out.append(item_from_charge(start_id + len(out), c))
    return out


def amounts(generation):
    return [(inv.date.isoformat(), [c.amount for c in inv.charges]) for inv in generation.invoices]


def test_prorate_and_credit_rules():
    assert prorate(10000, 16, 31) == 5161  # 51.6129 -> 51.61
    assert prorate(20000, 16, 31) == 10323  # 103.2258 -> 103.23
    assert prorate(10000, 31, 31) == 10000
    assert capped_credit(10000, 16, 31, creditable=3000) == 3000
    assert capped_credit(10000, 20, 31, creditable=10000, already=5161) == 6452 - 5161


def test_monthly_in_advance_one_invoice_per_missed_date():
    s = sub(activation("2026-01-01", line("L1", flat("100.00"), "2026-01-01")))
    g = run(s, "2026-03-15")
    assert amounts(g) == [("2026-01-01", [10000]), ("2026-02-01", [10000]), ("2026-03-01", [10000])]
    again = run(s, "2026-03-15", billed(g))
    assert again.invoices == ()
    assert again.next_date == D("2026-04-01")


def test_partial_first_period_by_days_of_enclosing_period():
    s = sub(activation("2026-01-15", line("L1", flat("100.00"), "2026-01-15")), billing_day=1)
    g = run(s, "2026-02-01")
    # 17 days (15th..31st) of a 31-day January: 100 x 17 / 31 = 54.8387 -> 54.84
    assert amounts(g) == [("2026-01-15", [5484]), ("2026-02-01", [10000])]
    first = g.invoices[0].charges[0]
    assert (first.service_from, first.service_to) == (D("2026-01-15"), D("2026-02-01"))


def upgrade(effective: str, seq: int = 2, price: str = "200.00", recorded: str | None = None) -> Change:
    return Change(seq=seq, kind="amendment", effective=D(effective), recorded_on=D(recorded or effective),
                  ref=f"a{seq}", updates=(LineUpdate("L1", price=flat(price)),))


def test_upgrade_mid_cycle_credit_and_charge_on_the_run_on_its_date():
    act = activation("2026-01-01", line("L1", flat("100.00"), "2026-01-01"))
    first = run(sub(act), "2026-01-01")
    g = run(sub(act, upgrade("2026-01-16")), "2026-01-16", billed(first))
    # unused 16 days of 31: credit 100 x 16/31 = 51.61; charge 200 x 16/31 = 103.23
    assert amounts(g) == [("2026-01-16", [-5161, 10323])]
    credit, charge = g.invoices[0].charges
    assert credit.kind == "credit" and credit.credit_of == 1
    assert (charge.service_from, charge.service_to) == (D("2026-01-16"), D("2026-02-01"))


def test_upgrade_billed_on_the_next_scheduled_invoice_when_the_run_is_later():
    act = activation("2026-01-01", line("L1", flat("100.00"), "2026-01-01"))
    first = run(sub(act), "2026-01-01")
    g = run(sub(act, upgrade("2026-01-16")), "2026-02-01", billed(first))
    assert amounts(g) == [("2026-02-01", [-5161, 10323, 20000])]


def test_change_effective_after_a_date_is_not_applied_on_that_date():
    act = activation("2026-01-01", line("L1", flat("100.00"), "2026-01-01"))
    first = run(sub(act), "2026-01-01")
    g = run(sub(act, upgrade("2026-02-15", recorded="2026-01-20")), "2026-03-01", billed(first))
    # Feb 1 as if run that day (full old price); the change on the next invoice (Mar 1).
    # February has 28 days, 14 unused from the 15th: credit 100 x 14/28 = 50; charge 200 x 14/28 = 100
    assert amounts(g) == [("2026-02-01", [10000]), ("2026-03-01", [-5000, 10000, 20000])]


def test_cancellation_credit_is_an_invoice_of_its_own_and_capped():
    act = activation("2026-01-01", line("L1", flat("100.00"), "2026-01-01"))
    first = run(sub(act), "2026-01-01")
    cancel = Change(seq=2, kind="cancellation", effective=D("2026-01-21"), recorded_on=D("2026-01-21"), ref="x")
    g = run(sub(act, cancel), "2026-02-01", billed(first))
    # 11 unused days (21st..31st) of 31: 100 x 11/31 = 35.4839 -> 35.48
    assert amounts(g) == [("2026-02-01", [-3548])]
    # a credit memo already credited 90.00 of the original line: only 10.00 is still creditable
    orig = billed(first)[0]
    capped = BilledItem(orig.id, orig.contract_id, orig.line_id, orig.version, orig.kind, orig.amount,
                        orig.period_start, orig.period_end, orig.service_from, orig.service_to, orig.period_amount,
                        orig.quantity, memo_credited=9000)
    g2 = run(sub(act, cancel), "2026-02-01", [capped])
    assert amounts(g2) == [("2026-02-01", [-1000])]


def test_arrears_period_split_at_the_change():
    act = activation("2026-01-01", line("L1", flat("100.00", timing="arrears"), "2026-01-01"))
    change = Change(seq=2, kind="amendment", effective=D("2026-01-11"), recorded_on=D("2026-01-11"), ref="a",
                    updates=(LineUpdate("L1", price=flat("310.00", timing="arrears")),))
    g = run(sub(act, change), "2026-02-01")
    # 10 days at 100 x 10/31 = 32.26, 21 days at 310 x 21/31 = 210.00
    assert amounts(g) == [("2026-02-01", [3226, 21000])]


def usage_terms() -> PriceTerms:
    return PriceTerms(model="tiered", currency="USD", period="month", timing="arrears", metric="api_calls",
                      aggregation="sum", tiers=(Tier(Decimal(1000), Decimal("0.10")),
                                                Tier(None, Decimal("0.05"), Decimal("5.00"))))


def book(*days: tuple[str, int]) -> UsageBook:
    b = UsageBook()
    for day, qty in days:
        b.add("api_calls", UsageDay(D(day), qty * 1_000_000, 1, qty * 1_000_000))
    return b.seal()


def test_usage_in_arrears_with_tiers_and_late_usage():
    act = activation("2026-01-01", line("U1", usage_terms(), "2026-01-01", name="API", treatment="usage"))
    usage = book(("2026-01-05", 800), ("2026-01-20", 700))
    g = run(sub(act), "2026-02-01", usage=usage)
    # 1500 calls: 1000 x 0.10 + 500 x 0.05 + 5.00 = 130.00
    assert amounts(g) == [("2026-02-01", [13000])]
    late = book(("2026-01-05", 800), ("2026-01-20", 700), ("2026-01-31", 100))
    g2 = run(sub(act), "2026-03-01", billed(g), usage=late)
    # re-rated 1600 = 135.00, 5.00 more, shown with January; February: no usage
    assert amounts(g2) == [("2026-03-01", [500, 0])]
    late_line = g2.invoices[0].charges[0]
    assert late_line.description.startswith("Late usage") and late_line.service_from == D("2026-01-01")
    assert late_line.quantity == Decimal(100)


def test_milestones_partials_and_one_time():
    fee = PriceTerms(model="flat", currency="USD", period="one_time", timing="advance", amount=Decimal("10000.00"))
    impl = line("M1", fee, "2026-02-01", name="Implementation", treatment="milestone",
                milestones=(Milestone("design", 400000), Milestone("golive", 600000)))
    setup = line("S1", PriceTerms(model="flat", currency="USD", period="one_time", timing="advance",
                                  amount=Decimal("1000.00")), "2026-02-01", name="Setup", treatment="point_in_time")
    act = activation("2026-02-01", impl, setup)
    s = sub(act, milestones=(MilestoneCompletion("C-1", "M1", "design", D("2026-02-10")),),
            partials=(PartialBilling(1, "C-1", "S1", 30000, D("2026-01-25")),))
    g = run(s, "2026-02-15")
    # 30% of the setup fee before the start, the rest on the first day; the milestone on its date
    assert amounts(g) == [("2026-01-25", [30000]), ("2026-02-01", [70000]), ("2026-02-10", [400000])]
    assert run(s, "2026-02-15", billed(g)).invoices == ()


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=28), st.integers(min_value=1, max_value=99999),
       st.integers(min_value=100, max_value=10_000_000))
def test_a_change_never_credits_more_than_was_billed(start_day, eff_offset, price):
    start = f"2026-01-{start_day:02d}"
    act = activation(start, line("L1", flat(f"{price // 100}.{price % 100:02d}"), start))
    first = run(sub(act), "2026-03-31")
    effective = date.fromordinal(D(start).toordinal() + 1 + eff_offset % 80)
    cancel = Change(seq=2, kind="cancellation", effective=effective, recorded_on=effective, ref="x")
    g = run(sub(act, cancel), "2026-04-30", billed(first))
    billed_total = sum(c.amount for inv in first.invoices for c in inv.charges)
    credits = sum(c.amount for inv in g.invoices for c in inv.charges if c.kind == "credit")
    assert -credits <= billed_total
    charged = sum(c.amount for inv in g.invoices for c in inv.charges if c.kind != "credit")
    assert billed_total + charged + credits >= 0


def test_a_credit_in_the_same_generation_refers_to_the_provisional_item():
    act = activation("2026-01-01", line("L1", flat("100.00"), "2026-01-01"))
    cancel = Change(seq=2, kind="cancellation", effective=D("2026-01-21"), recorded_on=D("2026-01-20"), ref="x")
    g = run(sub(act, cancel), "2026-02-01")
    # 1 January as if run that day (the cancellation is not effective yet); its credit on 1 February
    assert amounts(g) == [("2026-01-01", [10000]), ("2026-02-01", [-3548])]
    jan, feb = g.invoices
    assert feb.charges[0].credit_of == jan.item_ids[0] < 0
