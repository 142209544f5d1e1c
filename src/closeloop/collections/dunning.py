"""Failed payments and dunning: ``payment.fail``, ``dunning.run``, the e-mail outbox.

A failed card payment (``payment.fail``, or a provider's payment_intent.payment_failed) starts the
card policy on its invoice: retries on day 1, 3 and 7 after the failure. Every overdue invoice
follows its policy's reminders (due + 3, + 10, + 20 days) and suspension (due + 30). A dated
``dunning.run as_of`` executes each step due on or before ``as_of`` exactly once (a rerun does
nothing new); when several steps of a kind are due at once only the latest is executed and the
others are recorded as skipped. Reminder e-mails are rendered from Jinja2 templates
(``collections/templates``) into ``collections_email``; SMTP delivery is off by default
(``config/dunning.yaml``). A suspension emits ``subscription.suspended``; every step emits
``dunning.stage_changed``. An invoice without an undisputed balance is not dunned: a payment that
settles it stops the policy, and amounts under an open dispute are excluded.
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from email.message import EmailMessage
from importlib import resources
from typing import Any

from jinja2 import Environment, StrictUndefined

from closeloop.billing import service as billing
from closeloop.collections.model import rf_reference, steps_due
from closeloop.collections.service import (
    OPEN_STATUSES,
    PAYMENT_ROLES,
    find_customer,
    fmt,
    resolve_invoice,
)
from closeloop.collections.settings import dunning as dunning_config
from closeloop.collections.settings import policy
from closeloop.core.entities import get_entity
from closeloop.core.errors import ValidationError
from closeloop.core.money import to_minor
from closeloop.core.periods import parse_date
from closeloop.core.registry import command, payload, query
from closeloop.core.uow import dumps

_env: Environment | None = None


def _templates() -> Environment:
    global _env
    if _env is None:
        from jinja2 import BaseLoader

        class Loader(BaseLoader):
            def get_source(self, environment: Environment, template: str) -> tuple[str, None, Any]:
                path = resources.files("closeloop") / "collections" / "templates" / template
                return path.read_text(encoding="utf-8"), None, lambda: True

        _env = Environment(loader=Loader(), undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    return _env


def render_email(template: str, context: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) of a reminder: the template's first line is ``Subject: ...``."""
    text = _templates().get_template(f"{template}.txt").render(**context)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError(f"template {template} must start with a Subject: line")
    return first[len("Subject:"):].strip(), body.lstrip("\n")


# --------------------------------------------------------------------------- cases


def _case(uow: Any, invoice: str) -> dict[str, Any] | None:
    row = uow.one("SELECT id, invoice, entity, customer, policy, status, started, failed_on, stage FROM"
                  " collections_dunning_case WHERE invoice = ? ORDER BY id DESC LIMIT 1", (invoice,))
    if row is None:
        return None
    return dict(zip(("id", "invoice", "entity", "customer", "policy", "status", "started", "failed_on", "stage"),
                    row, strict=True))


def _open_case(uow: Any, inv: dict[str, Any], policy_name: str, started: str, failed_on: str | None) -> int:
    return int(uow.scalar(
        "INSERT INTO collections_dunning_case (invoice, entity, customer, policy, status, started, failed_on, stage,"
        " created_at) VALUES (?,?,?,?,'active',?,?,NULL,?) RETURNING id",
        (inv["number"], inv["entity"], inv["customer"], policy_name, started, failed_on, uow.now())))


def stop_dunning(uow: Any, invoices: Sequence[str], reason: str) -> None:
    """Stop the active policy of these invoices (a payment settled them, a write-off, a credit)."""
    for start in range(0, len(invoices), 500):
        chunk = list(invoices[start:start + 500])
        marks = ",".join("?" * len(chunk))
        uow.execute(f"UPDATE collections_dunning_case SET status = 'stopped', stopped = ?, stop_reason = ?"
                    f" WHERE status = 'active' AND invoice IN ({marks})", [uow.today().isoformat(), reason, *chunk])


# --------------------------------------------------------------------------- payment.fail


def record_failure(uow: Any, inv: dict[str, Any], amount: int, reason: str, day: str,
                   provider_ref: str | None = None) -> dict[str, Any]:
    uow.execute("INSERT INTO collections_failure (entity, customer, invoice, currency, amount, reason, date,"
                " provider_ref, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (inv["entity"], inv["customer"], inv["number"], inv["currency"], amount, reason, day, provider_ref,
                 uow.now()))
    case = _case(uow, inv["number"])
    card = str(dunning_config()["card_policy"])
    if case is None or case["status"] != "active":
        case_id = _open_case(uow, inv, card, day, day)
        started = True
    elif case["failed_on"] is None:
        uow.execute("UPDATE collections_dunning_case SET policy = ?, failed_on = ? WHERE id = ?",
                    (card, day, case["id"]))
        case_id, started = int(case["id"]), True
    else:
        case_id, started = int(case["id"]), False
    cur = inv["currency"]
    uow.emit("payment.failed", "invoice", inv["number"], {
        "invoice": inv["number"], "customer": inv["customer"], "entity": inv["entity"], "currency": cur,
        "amount": fmt(amount, cur), "reason": reason, "date": day, "provider_ref": provider_ref},
        entity=inv["entity"])
    return {"invoice": inv["number"], "customer": inv["customer"], "amount": fmt(amount, cur), "reason": reason,
            "dunning_case": case_id, "policy": card, "policy_started": started}


@payload
class PaymentFail:
    customer: str
    invoice: Any
    amount: Decimal
    reason: str
    date: str | None = None
    provider_ref: str | None = None


@command("payment.fail", PaymentFail, roles=PAYMENT_ROLES,
         summary="Record a failed payment attempt; it starts the card dunning policy (retries day 1, 3, 7)")
def payment_fail(uow: Any, cmd: PaymentFail) -> dict[str, Any]:
    inv = resolve_invoice(uow, cmd.invoice)
    cust = find_customer(uow, cmd.customer)
    if cust is None or cust.external_id != inv["customer"]:
        raise ValidationError(f"invoice {inv['number']} belongs to {inv['customer']}, not {cmd.customer}",
                              field="customer", record=inv["number"])
    amount = to_minor(cmd.amount, inv["currency"])
    if amount <= 0:
        raise ValidationError("a failed payment has a positive amount", field="amount")
    if not cmd.reason.strip():
        raise ValidationError("say why the payment failed", field="reason")
    day = parse_date(cmd.date).isoformat() if cmd.date else uow.today().isoformat()
    return record_failure(uow, inv, amount, cmd.reason.strip(), day, cmd.provider_ref)


# --------------------------------------------------------------------------- dunning.run


def _candidates(uow: Any, as_of: str) -> list[str]:
    """Invoices that may need a step: overdue ones without a finished case, and active card cases."""
    first_reminder = min((s.days for p in dunning_config()["parsed"].values() for s in p.steps if s.kind != "retry"),
                         default=0)
    horizon = (date.fromisoformat(as_of) - timedelta(days=first_reminder)).isoformat()
    rows = uow.all(
        "SELECT i.number FROM collections_invoice i WHERE i.due_date <= ? AND NOT EXISTS (SELECT 1 FROM"
        " collections_dunning_case c WHERE c.invoice = i.number AND c.status IN ('stopped', 'completed'))"
        " UNION SELECT invoice FROM collections_dunning_case WHERE status = 'active'", (horizon,))
    return sorted({r[0] for r in rows})


def _disputed(uow: Any, invoice: str) -> int:
    return int(uow.scalar("SELECT COALESCE(SUM(amount), 0) FROM collections_dispute WHERE invoice = ? AND status IN"
                          " ('opened', 'under_review')", (invoice,)) or 0)


def _done(uow: Any, case_id: int) -> frozenset[str]:
    return frozenset(r[0] for r in uow.all("SELECT step FROM collections_dunning_action WHERE case_id = ?",
                                           (case_id,)))


def _remind(uow: Any, inv: dict[str, Any], step: Any, due_on: date, as_of: date, amount: int, disputed: int
            ) -> dict[str, Any]:
    cust = find_customer(uow, inv["customer"])
    ent = get_entity(uow, inv["entity"])
    cur = inv["currency"]
    suspension = next((s for s in policy(_case(uow, inv["number"])["policy"]).steps  # type: ignore[index]
                       if s.kind == "suspension"), None)
    days_overdue = (as_of - date.fromisoformat(inv["due_date"])).days
    try:
        rf = rf_reference(inv["number"])
    except ValueError:
        rf = None
    context = {"invoice": inv["number"], "invoice_date": inv["date"], "due_date": inv["due_date"],
               "amount": fmt(amount, cur), "currency": cur, "disputed": fmt(disputed, cur),
               "customer_name": cust.name if cust else inv["customer"], "entity_name": ent.name,
               "days_overdue": days_overdue, "rf_reference": rf,
               "suspension_in_days": max(0, (suspension.days - days_overdue)) if suspension else 0}
    subject, body = render_email(str(step.template), context)
    email_id = int(uow.scalar(
        "INSERT INTO collections_email (to_address, subject, body, template, customer, invoice, status, attempts,"
        " created_at) VALUES (?,?,?,?,?,?,?,0,?) RETURNING id",
        (cust.email if cust else None, subject, body, step.template, inv["customer"], inv["number"],
         "pending" if cust and cust.email else "no_address", uow.now())))
    return {"email": email_id, "subject": subject, "to": cust.email if cust else None}


def run_dunning(uow: Any, as_of: date) -> dict[str, Any]:
    cfg = dunning_config()
    report: dict[str, Any] = {"as_of": as_of.isoformat(), "retries": 0, "reminders": 0, "suspensions": 0,
                              "skipped": 0, "stopped": 0, "disputed_excluded": 0, "actions": []}
    for number in _candidates(uow, as_of.isoformat()):
        inv = billing.find_invoice(uow, number)
        case = _case(uow, number)
        if inv["status"] not in OPEN_STATUSES or int(inv["balance"]) <= 0:
            if case is not None and case["status"] == "active":
                uow.execute("UPDATE collections_dunning_case SET status = 'stopped', stopped = ?, stop_reason = ?"
                            " WHERE id = ?", (as_of.isoformat(), f"invoice {inv['status']}", case["id"]))
                report["stopped"] += 1
            elif case is None:
                cid = _open_case(uow, inv, str(cfg["default_policy"]), as_of.isoformat(), None)
                uow.execute("UPDATE collections_dunning_case SET status = 'stopped', stopped = ?, stop_reason = ?"
                            " WHERE id = ?", (as_of.isoformat(), f"invoice {inv['status']}", cid))
            continue
        disputed = _disputed(uow, number)
        amount = int(inv["balance"]) - disputed
        if amount <= 0:
            report["disputed_excluded"] += 1
            continue
        due_on = date.fromisoformat(inv["due_date"])
        if case is None:
            if due_on >= as_of:
                continue
            case_id = _open_case(uow, inv, str(cfg["default_policy"]), as_of.isoformat(), None)
            case = _case(uow, number)
        else:
            case_id = int(case["id"])
        assert case is not None
        pol = policy(case["policy"])
        failed_on = date.fromisoformat(case["failed_on"]) if case["failed_on"] else None
        due_steps = steps_due(pol, failed_on=failed_on, due_on=due_on, as_of=as_of, done=_done(uow, case_id))
        if not due_steps:
            continue
        latest: dict[str, Any] = {}
        for step, when in due_steps:
            latest[step.kind if step.kind != "suspension" else "suspension"] = (step, when)
        for step, when in due_steps:
            kind = step.kind
            execute = latest[kind][0].name == step.name
            details: dict[str, Any] = {}
            if execute and kind == "retry":
                attempt = [s.name for s in pol.steps if s.kind == "retry"].index(step.name) + 1
                uow.emit("payment.retry_requested", "invoice", number, {
                    "invoice": number, "customer": inv["customer"], "entity": inv["entity"],
                    "currency": inv["currency"], "amount": fmt(amount, inv["currency"]), "attempt": attempt,
                    "date": as_of.isoformat()}, entity=inv["entity"])
                details = {"attempt": attempt}
                report["retries"] += 1
            elif execute and kind == "reminder":
                details = _remind(uow, inv, step, due_on, as_of, amount, disputed)
                report["reminders"] += 1
            elif execute and kind == "suspension":
                uow.emit("subscription.suspended", "customer", inv["customer"], {
                    "customer": inv["customer"], "entity": inv["entity"], "invoice": number,
                    "date": as_of.isoformat(), "reason": "dunning", "days_past_due": (as_of - due_on).days,
                    "amount": fmt(amount, inv["currency"]), "currency": inv["currency"]}, entity=inv["entity"])
                report["suspensions"] += 1
            if not execute:
                details = {"skipped": f"superseded by {latest[kind][0].name}"}
                report["skipped"] += 1
            uow.execute("INSERT INTO collections_dunning_action (case_id, step, kind, due_on, done_on, amount, details)"
                        " VALUES (?,?,?,?,?,?,?)", (case_id, step.name, kind, when.isoformat(), as_of.isoformat(),
                                                    amount, dumps(details)))
            if execute:
                uow.execute("UPDATE collections_dunning_case SET stage = ? WHERE id = ?", (step.name, case_id))
                uow.emit("dunning.stage_changed", "invoice", number, {
                    "invoice": number, "customer": inv["customer"], "entity": inv["entity"], "stage": step.name,
                    "kind": kind, "date": as_of.isoformat(), "amount": fmt(amount, inv["currency"]),
                    "currency": inv["currency"]}, entity=inv["entity"])
                report["actions"].append({"invoice": number, "customer": inv["customer"], "step": step.name,
                                          "kind": kind, "due_on": when.isoformat(),
                                          "amount": fmt(amount, inv["currency"]), **details})
        if len(_done(uow, case_id)) >= len(pol.steps):
            uow.execute("UPDATE collections_dunning_case SET status = 'completed' WHERE id = ?", (case_id,))
    return report


@payload
class DunningRun:
    as_of: str


@command("dunning.run", DunningRun, roles=PAYMENT_ROLES,
         summary="Execute every dunning step due on or before a date (retries, reminders, suspensions), once")
def dunning_run(uow: Any, cmd: DunningRun) -> dict[str, Any]:
    as_of = parse_date(cmd.as_of, field="as_of")
    if as_of > uow.today():
        raise ValidationError(f"as_of {as_of} is in the future (today is {uow.today()})", field="as_of")
    return run_dunning(uow, as_of)


# --------------------------------------------------------------------------- queries


@payload
class DunningQuery:
    invoice: Any


@query("dunning", DunningQuery, summary="The dunning case of an invoice: policy, status, stage and its steps")
def dunning_query(uow: Any, q: DunningQuery) -> dict[str, Any]:
    inv = resolve_invoice(uow, q.invoice)
    case = _case(uow, inv["number"])
    if case is None:
        return {"invoice": inv["number"], "status": "none", "steps": [], "emails": 0}
    steps = uow.all("SELECT step, kind, due_on, done_on, details FROM collections_dunning_action WHERE case_id = ?"
                    " ORDER BY id", (case["id"],))
    emails = uow.scalar("SELECT COUNT(*) FROM collections_email WHERE invoice = ?", (inv["number"],))
    return {"invoice": inv["number"], "policy": case["policy"], "status": case["status"], "stage": case["stage"],
            "started": case["started"], "failed_on": case["failed_on"], "emails": int(emails or 0),
            "steps": [{"step": s[0], "kind": s[1], "due_on": s[2], "done_on": s[3],
                       "skipped": "skipped" in (s[4] or "")} for s in steps]}


@payload
class EmailsQuery:
    customer: str | None = None
    invoice: str | None = None
    status: str | None = None


@query("collection_emails", EmailsQuery, summary="The e-mail outbox of collections (reminders)")
def emails_query(uow: Any, q: EmailsQuery) -> dict[str, Any]:
    where, params = [], []
    for column, value in (("customer", q.customer), ("invoice", q.invoice), ("status", q.status)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    rows = uow.all("SELECT id, to_address, subject, body, template, customer, invoice, status, created_at, sent_at"
                   " FROM collections_email" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id",
                   params)
    return {"count": len(rows), "emails": [
        {"id": int(r[0]), "to": r[1], "subject": r[2], "body": r[3], "template": r[4], "customer": r[5],
         "invoice": r[6], "status": r[7], "created_at": r[8], "sent_at": r[9]} for r in rows]}


# --------------------------------------------------------------------------- SMTP (optional)


def send_pending_emails(app: Any, *, limit: int = 100, smtp_factory: Any = None) -> dict[str, Any]:
    """Send pending reminder e-mails over SMTP when it is enabled (config or CLOSELOOP_SMTP_HOST)."""
    import os

    cfg = dunning_config().get("email") or {}
    smtp = dict(cfg.get("smtp") or {})
    host = os.environ.get("CLOSELOOP_SMTP_HOST") or (smtp.get("host") if smtp.get("enabled") else None)
    if not host:
        return {"sent": 0, "failed": 0, "enabled": False}
    port = int(os.environ.get("CLOSELOOP_SMTP_PORT") or smtp.get("port") or 25)
    factory = smtp_factory or (lambda: smtplib.SMTP(host, port, timeout=30))
    sent = failed = 0
    with app.unit_of_work() as uow:
        rows = uow.all("SELECT id, to_address, subject, body FROM collections_email WHERE status = 'pending'"
                       " ORDER BY id LIMIT ?", (limit,))
    if not rows:
        return {"sent": 0, "failed": 0, "enabled": True}
    with factory() as client:
        if smtp.get("starttls"):
            client.starttls()
        for email_id, to, subject, body in rows:
            msg = EmailMessage()
            msg["From"] = str(cfg.get("from") or "collections@example.com")
            msg["To"] = to
            msg["Subject"] = subject
            msg.set_content(body)
            try:
                client.send_message(msg)
                status, error = "sent", None
                sent += 1
            except smtplib.SMTPException as exc:
                status, error = "failed", str(exc)[:500]
                failed += 1
            with app.unit_of_work() as uow:
                uow.execute("UPDATE collections_email SET status = ?, error = ?, attempts = attempts + 1, sent_at = ?"
                            " WHERE id = ?", (status, error, uow.now() if status == "sent" else None, email_id))
    return {"sent": sent, "failed": failed, "enabled": True}
