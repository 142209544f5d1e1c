"""The demo company's catalogue, quotes and contracts (called by ``make demo``; see closeloop/demo.py).

:func:`create_demo_contracts` builds, through the public vocabulary only:

- a catalogue: seats (per unit, monthly), API calls (graduated tiers, metered, in arrears), premium
  support (yearly), onboarding (one-time) and an implementation project billed on milestones, each
  priced in USD, EUR and GBP;
- for each given customer, in turn, one of five deals: seats + API usage renewing itself with a 3%
  uplift and an upsell three months in; a 25% discount that needs approval, changed after approval
  and approved again, then renewed with a 5% uplift; an implementation project with milestones, support
  and seats upgraded to a higher price (catch-up) half-way; a small deal cancelled after four months;
  a deal in GBP.

Contracts start on the first day of the current month of the app's clock; amendments, renewals and
cancellations are effective-dated later in the term, so the bill runs that follow see them happen.
The FX rates a deal needs (the seat SSP is stated in USD; the GBP deal of a non-GBP entity) are
recorded when missing. A customer that cannot be quoted (no entity...) is skipped and
reported, never failing the demo.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from closeloop.core.errors import CloseloopError
from closeloop.core.periods import add_months

PRICES = {"USD": {"seat": "10.00", "seat_pro": "15.00", "support": "1200.00", "onboarding": "2500.00",
                  "impl": "24000.00", "tiers": ("0.010", "0.008", "0.005")},
          "EUR": {"seat": "9.00", "seat_pro": "13.50", "support": "1100.00", "onboarding": "2300.00",
                  "impl": "22000.00", "tiers": ("0.009", "0.007", "0.0045")},
          "GBP": {"seat": "8.00", "seat_pro": "12.00", "support": "950.00", "onboarding": "2000.00",
                  "impl": "19000.00", "tiers": ("0.008", "0.006", "0.004")}}


def create_catalogue(app: Any) -> dict[str, int]:
    products = [
        {"sku": "seat", "name": "Seat licence", "treatment": "ratable", "ssp": "12.00", "ssp_currency": "USD",
         "family": "platform"},
        {"sku": "seat-pro", "name": "Seat licence (Pro)", "treatment": "ratable", "family": "platform"},
        {"sku": "api", "name": "API calls", "treatment": "usage", "family": "usage", "revenue_role": "usage_revenue"},
        {"sku": "support", "name": "Premium support", "treatment": "ratable", "family": "services"},
        {"sku": "onboarding", "name": "Onboarding", "treatment": "point_in_time", "tax_code": "services",
         "family": "services", "revenue_role": "services_revenue"},
        {"sku": "impl", "name": "Implementation project", "treatment": "milestone", "tax_code": "services",
         "family": "services", "revenue_role": "services_revenue"},
    ]
    for p in products:
        app.do("product.create", p)
    n = 0
    for cur, p in PRICES.items():
        c = cur.lower()
        t1, t2, t3 = p["tiers"]
        for price in (
            {"price_id": f"seat-{c}", "sku": "seat", "model": "per_unit", "amount": p["seat"], "period": "month",
             "timing": "advance"},
            {"price_id": f"seat-pro-{c}", "sku": "seat-pro", "model": "per_unit", "amount": p["seat_pro"],
             "period": "month", "timing": "advance"},
            {"price_id": f"api-{c}", "sku": "api", "model": "tiered", "metric": "api_calls", "aggregation": "sum",
             "period": "month", "timing": "arrears",
             "tiers": [{"up_to": 100000, "unit_amount": t1}, {"up_to": 1000000, "unit_amount": t2},
                       {"up_to": None, "unit_amount": t3}]},
            {"price_id": f"support-{c}", "sku": "support", "model": "flat", "amount": p["support"], "period": "year",
             "timing": "advance"},
            {"price_id": f"onboarding-{c}", "sku": "onboarding", "model": "flat", "amount": p["onboarding"],
             "period": "one_time", "timing": "advance"},
            {"price_id": f"impl-{c}", "sku": "impl", "model": "flat", "amount": p["impl"], "period": "one_time",
             "timing": "arrears"},
        ):
            app.do("price.create", {**price, "currency": cur})
            n += 1
    return {"products": len(products), "prices": n}


def _currency_of(app: Any, customer: str) -> tuple[str, str | None]:
    """(currency, entity) a quote for the customer will use."""
    with app.unit_of_work(write=False) as uow:
        from closeloop.contracts.pricing import resolve_customer, selling_entity
        from closeloop.core.entities import get_entity

        c = resolve_customer(uow, customer)
        entity = selling_entity(uow, None, c)
        return (c.currency or get_entity(uow, entity).currency), entity


def _ensure_rate(app: Any, base: str, quote: str, day: date, rate: str) -> None:
    if base == quote:
        return
    with app.unit_of_work(write=False) as uow:
        from closeloop.core.fx import rate_on

        try:
            rate_on(uow, base, quote, day.isoformat())
            return
        except CloseloopError:
            pass
    app.do("fx.rate", {"base": base, "quote": quote, "date": day.isoformat(), "rate": rate})


FX_TO = {("GBP", "USD"): "1.2700", ("GBP", "EUR"): "1.1700", ("USD", "EUR"): "0.9200", ("USD", "GBP"): "0.7900"}


def _deal(app: Any, pattern: int, n: int, customer: str, start: date) -> dict[str, Any]:
    currency, entity = _currency_of(app, customer)
    if pattern == 4:
        functional = currency
        currency = "GBP"
        if functional != "GBP":
            _ensure_rate(app, "GBP", functional, start, FX_TO.get(("GBP", functional), "1.2000"))
    if currency not in PRICES:
        raise CloseloopError(f"no demo prices in {currency}")
    # the seat's standalone selling price is stated in USD: converting it needs a rate on the start date
    _ensure_rate(app, "USD", currency, start, FX_TO[("USD", currency)] if currency != "USD" else "1")
    c = currency.lower()
    qid, cid = f"DQ-{n:03d}", f"DC-{n:03d}"
    base = {"quote_id": qid, "customer": customer, "start": start.isoformat(), "term_months": 12,
            "currency": currency, "name": f"Demo deal {n}"}
    facts: dict[str, Any] = {"quote_id": qid, "contract_id": cid, "customer": customer, "currency": currency,
                             "pattern": pattern, "amendments": 0, "renewals": 0, "cancellations": 0,
                             "approvals": 0, "changed_after_approval": False}
    if pattern == 0:
        app.do("quote.create", {**base, "auto_renew": True, "renewal_uplift_pct": "3", "lines": [
            {"line_id": "seats", "price_id": f"seat-{c}", "quantity": 25, "discount_pct": "10"},
            {"line_id": "api", "price_id": f"api-{c}", "quantity": 0}]})
        app.do("quote.accept", {"quote_id": qid, "contract_id": cid})
        app.do("contract.amend", {"contract_id": cid, "effective": add_months(start, 3).isoformat(),
                                  "changes": [{"line_id": "seats", "quantity": 35}], "reason": "upsell"})
        facts["amendments"] = 1
    elif pattern == 1:
        lines = [{"line_id": "seats", "price_id": f"seat-{c}", "quantity": 40, "discount_pct": "25"},
                 {"line_id": "onboarding", "price_id": f"onboarding-{c}", "quantity": 1}]
        app.do("quote.create", {**base, "lines": lines})
        app.do("quote.approve", {"quote_id": qid, "approver": "sales.manager", "comment": "strategic account"})
        lines[0] = {**lines[0], "quantity": 45}
        app.do("quote.update", {"quote_id": qid, "lines": lines})
        app.do("quote.approve", {"quote_id": qid, "approver": "sales.manager", "comment": "five more seats"})
        app.do("quote.accept", {"quote_id": qid, "contract_id": cid})
        app.do("contract.renew", {"contract_id": cid, "term_months": 12, "uplift_pct": "5",
                                  "reason": "early renewal"})
        facts.update(approvals=2, changed_after_approval=True, renewals=1)
    elif pattern == 2:
        impl = Decimal(PRICES[currency]["impl"])
        first = (impl * Decimal("0.4")).quantize(Decimal("0.01"))
        second = impl - first
        app.do("quote.create", {**base, "lines": [
            {"line_id": "impl", "price_id": f"impl-{c}", "quantity": 1,
             "milestones": [{"milestone_id": "design", "amount": str(first)},
                            {"milestone_id": "go-live", "amount": str(second)}]},
            {"line_id": "support", "price_id": f"support-{c}", "quantity": 1},
            {"line_id": "seats", "price_id": f"seat-{c}", "quantity": 15}]})
        app.do("quote.accept", {"quote_id": qid, "contract_id": cid})
        app.do("contract.amend", {"contract_id": cid, "effective": add_months(start, 6).isoformat(),
                                  "modification": "catch_up", "reason": "upgrade to Pro",
                                  "changes": [{"line_id": "seats", "price_id": f"seat-pro-{c}"}]})
        facts["amendments"] = 1
    elif pattern == 3:
        app.do("quote.create", {**base, "lines": [{"line_id": "seats", "price_id": f"seat-{c}", "quantity": 5}]})
        app.do("quote.accept", {"quote_id": qid, "contract_id": cid})
        app.do("contract.cancel", {"contract_id": cid, "effective": add_months(start, 4).isoformat(),
                                   "reason": "customer churned"})
        facts["cancellations"] = 1
    else:
        app.do("quote.create", {**base, "entity": entity, "lines": [
            {"line_id": "seats", "price_id": f"seat-{c}", "quantity": 20},
            {"line_id": "support", "price_id": f"support-{c}", "quantity": 1}]})
        app.do("quote.accept", {"quote_id": qid, "contract_id": cid})
    view = app.query("contract", {"contract_id": cid, "as_of": start.isoformat()})
    facts.update(tcv=view["tcv"], mrr=view["mrr"], entity=view["entity"])
    return facts


def create_demo_contracts(app: Any, customers: list[str], console: Any = None) -> dict[str, Any]:
    """Create the demo catalogue and one deal per customer (five patterns in turn); returns what was made."""
    today = app.clock.today()
    start = date(today.year, today.month, 1)
    summary: dict[str, Any] = {"start": start.isoformat(), **create_catalogue(app), "contracts": [], "skipped": []}
    for n, customer in enumerate(customers, 1):
        try:
            summary["contracts"].append(_deal(app, (n - 1) % 5, n, customer, start))
        except CloseloopError as exc:
            summary["skipped"].append({"customer": customer, "reason": f"{exc.code}: {exc.message}"})
    deals = summary["contracts"]
    for key in ("amendments", "renewals", "cancellations", "approvals"):
        summary[key] = sum(d[key] for d in deals)
    summary["quotes_changed_after_approval"] = sum(1 for d in deals if d["changed_after_approval"])
    if console is not None:
        from rich.table import Table

        table = Table(title=f"Contracts from {start} ({len(deals)} deals)")
        for col in ("contract", "customer", "entity", "currency", "TCV", "MRR", "changes"):
            table.add_column(col, justify="right" if col in ("TCV", "MRR") else "left")
        for d in deals:
            changes = ", ".join(f"{d[k]} {k}" for k in ("amendments", "renewals", "cancellations") if d[k])
            table.add_row(d["contract_id"], d["customer"], d["entity"], d["currency"], d["tcv"], d["mrr"], changes)
        console.print(table)
        for s in summary["skipped"]:
            console.print(f"[yellow]skipped[/] {s['customer']}: {s['reason']}")
    return summary
