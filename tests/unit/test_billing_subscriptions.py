"""Contract events become the change log billing replays (pure)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from closeloop.billing.subscriptions import change_from_payload
from closeloop.catalog.model import PriceTerms
from closeloop.contracts.model import ContractLine, ProductRef, replay


def line(qty: str, frm: str) -> dict:
    terms = PriceTerms(model="per_unit", currency="USD", period="month", timing="advance", amount=Decimal("10.00"),
                       price_id="seat")
    ln = ContractLine("L1", ProductRef("seat", "Seat", "ratable", "saas"), terms, Decimal(qty), "US01",
                      date(2026, 1, 1))
    return {**ln.to_dict(), "from": frm, "to": "2026-12-31"}


def test_activation_and_amendment_from_their_payloads():
    act = {"change": {"seq": 1, "ref": "C-1", "kind": "activation", "effective": "2026-01-01",
                      "recorded_on": "2026-01-01", "term_months": 12},
           "term": {"months": 12}, "lines": [line("10", "2026-01-01")],
           "changed_lines": [{"line_id": "L1", "action": "added", "before": None, "after": line("10", "2026-01-01")}]}
    # an amendment whose changed_lines carry only what changed: the new version comes from `lines`
    amend = {"change": {"seq": 2, "ref": "C-1-A1", "kind": "amendment", "effective": "2026-04-15",
                        "recorded_on": "2026-04-10", "modification": "prospective"},
             "lines": [line("15", "2026-04-15")],
             "changed_lines": [{"line_id": "L1", "action": "changed", "before": {"quantity": "10"},
                                "after": {"quantity": "15"}}]}
    changes = [change_from_payload(act), change_from_payload(amend)]
    tl = replay(changes)
    assert [(s.start.isoformat(), s.end.isoformat(), str(s.line.quantity), s.line.period_amount)
            for s in tl.segments] == [("2026-01-01", "2026-04-14", "10", 10000), ("2026-04-15", "2026-12-31", "15",
                                                                                 15000)]
    renew = change_from_payload({"change": {"seq": 3, "ref": "C-1-R1", "kind": "renewal", "effective": "2027-01-01",
                                            "recorded_on": "2026-12-01", "term_months": 12, "uplift_pct": "5"}})
    cancel = change_from_payload({"change": {"seq": 4, "ref": "C-1-X", "kind": "cancellation",
                                             "effective": "2027-03-01", "recorded_on": "2027-02-01"}})
    tl = replay([*changes, renew, cancel])
    assert tl.segments[-1].line.period_amount == 15750 and tl.service_end == date(2027, 2, 28)
