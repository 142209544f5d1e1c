"""The demo's collections: payments for the demo's invoices from a provider webhook stream and bank
statements, with failures, retries, refunds, disputes, payouts and dunning (called by ``make demo``).

:func:`run_demo_collections` takes every invoice collections knows of (issued up to ``through``),
in date order, and gives each a seeded fate: paid by card through signed Stripe-shaped webhooks
(with the provider fee in the balance transaction), a card that fails first (dunning retries it,
the retry succeeds or the invoice goes to dunning), paid by bank transfer in a monthly camt.053
statement (by invoice number, ISO 11649 reference or exact amount from a known IBAN, sometimes in
two parts), disputed (credited or rejected), or left unpaid for the aging. Provider payouts settle
weekly and appear in the next bank statement; the bank statements also carry noise that stays
unapplied with an exception. Every action goes through the public vocabulary; an action the system
refuses is counted, never fatal.
"""

from __future__ import annotations

import json
import random
import zlib
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from closeloop.collections.connectors.camt import write_camt053
from closeloop.collections.connectors.stripe import sign
from closeloop.collections.model import rf_reference
from closeloop.core.errors import CloseloopError
from closeloop.core.money import exponent, to_minor

DEMO_SECRET = "whsec_closeloop_demo"


def _advance(app: Any, day: date) -> None:
    clock = app.clock
    if hasattr(clock, "set") and clock.today() < day:
        clock.set(day)


def _unix(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp())


class _Demo:
    def __init__(self, app: Any, console: Any) -> None:
        self.app = app
        self.console = console
        self.stats: dict[str, int] = defaultdict(int, dict.fromkeys((
            "webhooks", "card_payments", "card_failures", "refunds", "chargebacks", "payouts", "statements",
            "bank_receipts", "bank_applied", "disputes", "disputes_credit", "disputes_rejected", "dunning_reminders",
            "dunning_retries", "suspensions", "refused"), 0))
        self.errors: list[str] = []
        self.n = 0

    def do(self, name: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.app.do(name, payload)  # type: ignore[no-any-return]
        except CloseloopError as exc:
            self.stats["refused"] += 1
            if len(self.errors) < 20:
                self.errors.append(f"{name}: {exc.code}: {exc.message}")
            return None

    def webhook(self, kind: str, obj: dict[str, Any], day: date) -> dict[str, Any] | None:
        self.n += 1
        event = {"id": f"evt_demo_{self.n:06d}", "object": "event", "api_version": "2024-06-20",
                 "created": _unix(day), "livemode": False, "type": kind, "data": {"object": obj}}
        body = json.dumps(event)
        stamp = int(self.app.clock.now().timestamp())
        self.stats["webhooks"] += 1
        return self.do("provider.webhook", {"body": body, "signature": sign(DEMO_SECRET, body.encode(), stamp)})

    def balance(self, number: str) -> tuple[int, str, str]:
        inv = self.app.query("invoice", {"number": number})
        return to_minor(inv["balance"], inv["currency"]), inv["currency"], inv["status"]


_CARRIED: dict[int, dict[str, Any]] = {}  # per app: bank lines and flags carried between windows


def run_demo_collections(app: Any, through: str, console: Any, since: str | None = None) -> dict[str, Any]:
    """Payments, failures, disputes and statements for the demo's invoices issued up to ``through``.

    With ``since``, only the actions dated after it run (the plan is the same seeded plan, so a year
    can be walked in windows: bank lines not yet on a statement are carried to the next window)."""
    end = date.fromisoformat(through)
    start = date.fromisoformat(since) if since else None
    app.services.config.setdefault("stripe_webhook_secret", DEMO_SECRET)
    with app.unit_of_work(write=False) as uow:
        invoices = [dict(zip(("number", "entity", "customer", "currency", "date", "due_date", "total"), r, strict=True))
                    for r in uow.all("SELECT number, entity, customer, currency, date, due_date, total FROM"
                                     " collections_invoice WHERE date <= ? AND total > 0 ORDER BY date, number",
                                     (end.isoformat(),))]
    demo = _Demo(app, console)
    if start is not None:  # walking in windows: webhook event ids continue from the previous window
        demo.n = _CARRIED.get(id(app), {}).get("n", demo.n)
    rng = random.Random(2026)
    actions: list[tuple[date, int, str, dict[str, Any]]] = []
    seq = 0

    def plan(day: date, kind: str, **data: Any) -> None:
        nonlocal seq
        seq += 1
        if day <= end:
            actions.append((day, seq, kind, data))

    for inv in invoices:
        issued = date.fromisoformat(inv["date"])
        due = date.fromisoformat(inv["due_date"])
        fate = rng.random()
        if fate < 0.40:
            plan(issued + timedelta(days=rng.randint(0, 3)), "card", inv=inv)
        elif fate < 0.47:
            plan(issued + timedelta(days=rng.randint(0, 2)), "card_fail", inv=inv)
            if rng.random() < 0.6:
                plan(issued + timedelta(days=rng.randint(4, 8)), "card", inv=inv)
        elif fate < 0.80:
            style = rng.choice(("number", "number", "rf", "amount"))
            pay_day = due - timedelta(days=rng.randint(-12, 10))
            if rng.random() < 0.12:
                plan(pay_day - timedelta(days=10), "bank", inv=inv, style=style, part=Decimal("0.4"))
            plan(max(pay_day, issued + timedelta(days=1)), "bank", inv=inv, style=style, part=None)
        elif fate < 0.85:
            opened = due - timedelta(days=rng.randint(0, 10))
            plan(opened, "dispute", inv=inv)
            plan(opened + timedelta(days=rng.randint(3, 20)), "resolve", inv=inv,
                 outcome="credit" if rng.random() < 0.5 else "rejected")
        # else: unpaid, for the aging and dunning
    first = min((a[0] for a in actions), default=end)
    day = first
    while day <= end:  # weekly payouts on Fridays, month-end statements and dunning runs
        if day.weekday() == 4:
            plan(day, "payout")
        if (day + timedelta(days=1)).day == 1:
            plan(day, "statement")
            plan(day, "dunning")
        day += timedelta(days=1)
    actions.sort(key=lambda a: (a[0], 0 if a[2] not in ("statement", "dunning", "payout") else 1, a[1]))

    carried = _CARRIED.setdefault(id(app), {"bank_lines": defaultdict(list), "refunded": False,
                                            "disputed_card": False})
    bank_lines: dict[str, list[dict[str, Any]]] = carried["bank_lines"]
    pending_payouts: list[tuple[str, str, int]] = []
    provider: dict[str, dict[str, Any]] = {}
    refunded, disputed_card = carried["refunded"], carried["disputed_card"]
    if start is not None:
        actions = [a for a in actions if a[0] > start]
    for day, _, kind, data in actions:
        _advance(app, day)
        if kind in ("card", "card_fail"):
            inv = data["inv"]
            balance, cur, status = demo.balance(inv["number"])
            if balance <= 0 or status not in ("open", "partially_paid"):
                continue
            pi = f"pi_demo_{inv['number'].replace('-', '').lower()}_{demo.n + 1}"
            obj: dict[str, Any] = {"id": pi, "object": "payment_intent", "amount": balance, "currency": cur.lower(),
                                   "customer": None, "description": f"Invoice {inv['number']}",
                                   "metadata": {"customer": inv["customer"], "invoice": inv["number"]},
                                   "created": _unix(day)}
            if kind == "card_fail":
                obj.update(status="requires_payment_method", last_payment_error={
                    "code": "card_declined", "message": rng.choice(("Your card was declined.",
                                                                    "Your card has insufficient funds."))})
                if demo.webhook("payment_intent.payment_failed", obj, day):
                    demo.stats["card_failures"] += 1
                continue
            fee = int((Decimal(balance) * Decimal("0.029")).to_integral_value()) + 30 * 10 ** max(
                0, exponent(cur) - 2)
            charge = f"ch_demo_{demo.n + 1:06d}"
            obj.update(status="succeeded", amount_received=balance,
                       latest_charge={"id": charge, "balance_transaction": {"fee": fee, "net": balance - fee}})
            if demo.webhook("payment_intent.succeeded", obj, day):
                demo.stats["card_payments"] += 1
                provider[pi] = {"charge": charge, "amount": balance, "currency": cur, "inv": inv}
                if not refunded and balance > 2000 and rng.random() < 0.2:
                    refunded = True
                    part = balance // 4
                    if demo.webhook("charge.refunded", {"id": charge, "object": "charge", "amount": balance,
                                                        "amount_refunded": part, "currency": cur.lower(),
                                                        "payment_intent": pi, "refunds": {"data": [
                                                            {"id": f"re_demo_{demo.n}", "amount": part,
                                                             "status": "succeeded"}]}}, day):
                        demo.stats["refunds"] += 1
                elif not disputed_card and rng.random() < 0.1:
                    disputed_card = True
                    dp = {"id": f"dp_demo_{demo.n}", "object": "dispute", "amount": balance, "currency": cur.lower(),
                          "charge": charge, "payment_intent": pi, "reason": "fraudulent", "status": "needs_response"}
                    demo.webhook("charge.dispute.created", dp, day)
                    demo.webhook("charge.dispute.closed", {**dp, "status": "lost"}, day)
                    demo.stats["chargebacks"] += 1
        elif kind == "bank":
            inv = data["inv"]
            balance, cur, status = demo.balance(inv["number"])
            if balance <= 0 or status not in ("open", "partially_paid"):
                continue
            amount = balance if data["part"] is None else int(balance * data["part"])
            key = zlib.crc32(inv["customer"].encode())
            iban = f"DE{10 + key % 89:02d}DEMO{key % 10**12:012d}"
            entry: dict[str, Any] = {"amount": amount, "date": day.isoformat(), "currency": cur,
                                     "payer": f"Customer {inv['customer']}", "iban": iban}
            if data["style"] == "number" or data["part"] is not None:
                entry["remittance"] = f"Invoice {inv['number']}"
            elif data["style"] == "rf":
                entry["reference"] = rf_reference(inv["number"])
            else:
                demo.do("payer.link", {"account": iban, "customer": inv["customer"]})
                entry["remittance"] = "monthly payment"
            bank_lines[inv["entity"]].append(entry)
            # a statement books the cash when it is imported (month end); the balance check above may
            # see an invoice that a pending line will pay: the statement's matching handles that
        elif kind == "dispute":
            inv = data["inv"]
            balance, _cur, status = demo.balance(inv["number"])
            if status not in ("open", "partially_paid"):
                continue
            amount = max(1, balance // rng.choice((2, 3, 4)))
            if demo.do("dispute.open", {"dispute_id": f"DSP-{inv['number']}", "invoice": inv["number"],
                                        "amount": str(Decimal(amount).scaleb(-exponent(inv["currency"]))),
                                        "reason": rng.choice(("seats not used", "price not as quoted",
                                                              "service outage")),
                                        "reason_code": rng.choice(("billing_error", "pricing", "service_issue")),
                                        "date": day.isoformat()}):
                demo.stats["disputes"] += 1
        elif kind == "resolve":
            if demo.do("dispute.resolve", {"dispute_id": f"DSP-{data['inv']['number']}", "outcome": data["outcome"],
                                           "date": day.isoformat()}):
                demo.stats[f"disputes_{data['outcome']}"] += 1
        elif kind == "payout":
            with app.unit_of_work(write=False) as uow:
                rows = uow.all("SELECT entity, currency, SUM(amount - refunded - fee) FROM collections_payment WHERE"
                               " channel = 'provider' AND payout IS NULL AND date <= ? GROUP BY entity, currency",
                               (day.isoformat(),))
            for entity, cur, net in rows:
                if int(net or 0) <= 0:
                    continue
                po = f"po_demo_{day.strftime('%Y%m%d')}_{entity.lower()}_{cur.lower()}"
                if demo.webhook("payout.paid", {"id": po, "object": "payout", "amount": int(net), "currency": cur.lower(),
                                                "arrival_date": _unix(day), "status": "paid"}, day):
                    demo.stats["payouts"] += 1
                    pending_payouts.append((entity, po, int(net)))
                    bank_lines[entity].append({"amount": int(net), "date": day.isoformat(), "currency": cur,
                                               "remittance": f"STRIPE PAYOUT {po}", "payer": "Stripe Payments"})
        elif kind == "statement":
            for entity, lines in sorted(bank_lines.items()):
                noise = [{"amount": rng.randint(1_000, 90_000), "date": day.isoformat(),
                          "remittance": rng.choice(("transfer", "refund supplier 7781", "interest")),
                          "payer": "Unknown payer", "iban": f"NL00NOISE{rng.randrange(10**10):010d}"}
                         for _ in range(2)]
                fees = [{"amount": 1_500, "date": day.isoformat(), "direction": "debit", "remittance": "account fee"}]
                content = write_camt053(f"DE89DEMO{entity}0000000000", lines[0].get("currency", "USD") if lines
                                        else "USD", lines + noise + fees,
                                        statement_id=f"DEMO-{entity}-{day.strftime('%Y%m')}",
                                        created=f"{day.isoformat()}T18:00:00")
                report = demo.do("bank.import", {"format": "camt053", "content": content.decode(), "entity": entity,
                                                 "file": f"demo-{entity}-{day.strftime('%Y-%m')}.xml"})
                if report:
                    demo.stats["statements"] += 1
                    demo.stats["bank_receipts"] += report["receipts"]
                    demo.stats["bank_applied"] += report["applied"] + report["partially_applied"]
            bank_lines.clear()
        elif kind == "dunning" and app.clock.today() >= day:
            report = demo.do("dunning.run", {"as_of": day.isoformat()})
            if report:
                demo.stats["dunning_reminders"] += report["reminders"]
                demo.stats["dunning_retries"] += report["retries"]
                demo.stats["suspensions"] += report["suspensions"]
    carried["refunded"], carried["disputed_card"], carried["n"] = refunded, disputed_card, demo.n
    aging = {}
    for entity in sorted({i["entity"] for i in invoices}):
        try:
            a = app.query("ar_aging", {"as_of": min(end, app.clock.today()).isoformat(), "entity": entity})
            aging[entity] = {k: a[k] for k in ("currency", "current", "d1_30", "d31_60", "d61_90", "over_90", "total")}
        except CloseloopError:
            pass
    disputes = app.query("disputes", {})
    summary = {"invoices": len(invoices), **dict(sorted(demo.stats.items())), "aging": aging,
               "dispute_cycle_days_median": disputes["cycle_days_median"],
               "open_exceptions": app.query("exceptions", {"kind": "low_confidence_match", "status": "open"})["count"],
               "errors": demo.errors}
    if console is not None and getattr(console, "print", None):
        console.print(f"collections: {demo.stats['card_payments']} card payments ({demo.stats['card_failures']} failures),"
                      f" {demo.stats['bank_applied']}/{demo.stats['bank_receipts']} bank receipts applied,"
                      f" {demo.stats['disputes']} disputes, {demo.stats['payouts']} payouts,"
                      f" {demo.stats['dunning_reminders']} reminders, {demo.stats['refused']} refused")
    return summary
