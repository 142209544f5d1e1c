"""Diagnostics: the probe (a synthetic event and handler) and fault injection on simulated clocks.

**Probe.** ``probe.emit {probe, fail_times?}`` appends a ``probe.pinged``
event; the built-in ``integration.probe`` handler counts it as delivered
unless the probe is *broken* (``probe.configure {probe, broken: true}``) or
the event asked to fail its first ``fail_times`` attempts. It exercises the
real delivery path (outbox, dispatcher, retries, dead letter, the
``sync_failed`` exception, retry/replay/skip, webhooks) with nothing else
involved, so an operator can check a live installation end to end, and
scenarios (which cannot register code) can drive a handler that fails and
then succeeds, or one that is dead-lettered and replayed after a "fix"
(``broken: false``). The ``probe`` query reports what the handler saw.

**Fault injection.** ``fault.inject`` changes rows *behind closeloop's back*,
exactly as an out-of-band edit of the database would: a journal line's
amount (``journal_line``), an event's stored payload (``event_payload``), an
issued invoice's total (``invoice``: the billing row only, nothing posted) or a
payment row deleted (``payment_deleted``: its bank line stays).
It exists to prove that the controls catch such edits (reconciliation, the
audit chain, payload schemas). It is refused with ``forbidden`` unless the
application runs on a simulated clock (the scenario runner, tests): a
production process, on the system clock, can never use it. Every use is in
the audit log like any command.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import TypedDict

from closeloop.core.clock import ScenarioClock
from closeloop.core.errors import ForbiddenError, NotFoundError, ValidationError
from closeloop.core.events import Event, event_schema, handles
from closeloop.core.money import to_minor
from closeloop.core.registry import command, payload, query


class ProbeFailure(RuntimeError):
    """The probe handler's simulated failure."""


@event_schema("probe.pinged")
class ProbePinged(TypedDict):
    probe: str
    fail_times: int


def _ensure(uow: Any, name: str) -> None:
    uow.execute("INSERT INTO probe (name, broken, delivered, updated_at) VALUES (?,?,0,?)"
                " ON CONFLICT (name) DO NOTHING", (name, False, uow.now()))


@payload
class ProbeConfigure:
    probe: str
    broken: bool


@command("probe.configure", ProbeConfigure, roles=("implementation", "admin"),
         summary="Break or repair a diagnostic probe handler")
def probe_configure(uow: Any, cmd: ProbeConfigure) -> dict[str, Any]:
    _ensure(uow, cmd.probe)
    uow.execute("UPDATE probe SET broken = ?, updated_at = ? WHERE name = ?", (cmd.broken, uow.now(), cmd.probe))
    return {"probe": cmd.probe, "broken": cmd.broken}


@payload
class ProbeEmit:
    probe: str
    fail_times: int = 0
    note: str | None = None


@command("probe.emit", ProbeEmit, roles=("implementation", "admin"),
         summary="Append a probe.pinged event (optionally failing its first N delivery attempts)")
def probe_emit(uow: Any, cmd: ProbeEmit) -> dict[str, Any]:
    if cmd.fail_times < 0:
        raise ValidationError("fail_times must not be negative", field="fail_times")
    _ensure(uow, cmd.probe)
    body: dict[str, Any] = {"probe": cmd.probe, "fail_times": cmd.fail_times}
    if cmd.note:
        body["note"] = cmd.note
    event_id = uow.emit("probe.pinged", "probe", cmd.probe, body)
    return {"probe": cmd.probe, "event": event_id}


@handles("probe.pinged", "integration.probe")
def probe_handler(uow: Any, ev: Event) -> None:
    name = ev.payload["probe"]
    if ev.attempts < int(ev.payload.get("fail_times") or 0):
        raise ProbeFailure(f"probe {name}: simulated failure {ev.attempts + 1} of {ev.payload['fail_times']}")
    row = uow.one("SELECT broken FROM probe WHERE name = ?", (name,))
    if row is not None and bool(row[0]):
        raise ProbeFailure(f"probe {name} is broken (repair it with probe.configure broken: false)")
    uow.execute("UPDATE probe SET delivered = delivered + 1, updated_at = ? WHERE name = ?", (uow.now(), name))


@payload
class ProbeQuery:
    probe: str


@query("probe", ProbeQuery, summary="A diagnostic probe: broken or not, events its handler delivered")
def probe(uow: Any, q: ProbeQuery) -> dict[str, Any]:
    row = uow.one("SELECT broken, delivered, updated_at FROM probe WHERE name = ?", (q.probe,))
    if row is None:
        raise NotFoundError(f"probe {q.probe!r} does not exist", field="probe", record=q.probe)
    return {"probe": q.probe, "broken": bool(row[0]), "delivered": int(row[1]), "updated_at": row[2]}


# --------------------------------------------------------------------------- fault injection

FAULTS = ("journal_line", "event_payload", "invoice", "payment_deleted")


@payload
class FaultInject:
    fault: str
    journal: str | None = None
    line: int | None = None
    amount: str | None = None
    event: int | dict[str, Any] | None = None
    payload_text: str | None = None
    invoice: Any = None  # a number or {customer, seq}
    payment: str | None = None


@command("fault.inject", FaultInject, roles=("admin",),
         summary="Simulate an out-of-band database edit (simulated clocks only): journal_line, event_payload,"
                 " invoice, payment_deleted")
def fault_inject(uow: Any, cmd: FaultInject) -> dict[str, Any]:
    if not isinstance(uow.clock, ScenarioClock):
        raise ForbiddenError("fault.inject only runs on a simulated clock (scenarios and tests); it edits rows"
                             " behind closeloop's back to prove the controls catch it", field="fault")
    if cmd.fault == "journal_line":
        if not cmd.journal or cmd.line is None or cmd.amount is None:
            raise ValidationError("journal_line needs journal, line and amount (debit positive)", field="fault")
        entity, _, seq = cmd.journal[3:].rpartition("-") if cmd.journal.startswith("JE-") else ("", "", "")
        row = uow.one("SELECT e.id, l.currency FROM journal_entry e JOIN journal_line l ON l.entry_id = e.id"
                      " WHERE e.entity = ? AND e.seq = ? AND l.line_no = ?",
                      (entity, int(seq) if seq.isdigit() else -1, cmd.line))
        if row is None:
            raise NotFoundError(f"journal {cmd.journal} has no line {cmd.line}", field="line", record=cmd.journal)
        currency = uow.scalar("SELECT currency FROM legal_entity WHERE code = ?", (entity,))
        minor = to_minor(cmd.amount, currency, field="amount")
        uow.execute("UPDATE journal_line SET amount = ?, txn_amount = ? WHERE entry_id = ? AND line_no = ?",
                    (minor, minor, row[0], cmd.line))
        return {"fault": cmd.fault, "journal": cmd.journal, "line": cmd.line, "amount": cmd.amount}
    if cmd.fault == "event_payload":
        if cmd.event is None or cmd.payload_text is None:
            raise ValidationError("event_payload needs event and payload_text", field="fault")
        from closeloop.integration.delivery import resolve_event

        event_id = resolve_event(uow, cmd.event)
        uow.execute("UPDATE event SET payload = ? WHERE id = ?", (cmd.payload_text, event_id))
        return {"fault": cmd.fault, "event": event_id}
    if cmd.fault == "invoice":
        if cmd.invoice is None or cmd.amount is None:
            raise ValidationError("invoice needs invoice (a number or {customer, seq}) and amount (the new total)",
                                  field="fault")
        from closeloop.core import registry

        lookup = registry.get("invoice", "query")
        found = lookup.fn(uow, lookup.parse({"invoice": cmd.invoice}))
        minor = to_minor(cmd.amount, found["currency"], field="amount")
        uow.execute("UPDATE billing_invoice SET total = ? WHERE number = ?", (minor, found["number"]))
        return {"fault": cmd.fault, "invoice": found["number"], "amount": cmd.amount}
    if cmd.fault == "payment_deleted":
        if not cmd.payment:
            raise ValidationError("payment_deleted needs payment (its number)", field="fault")
        if uow.one("SELECT 1 FROM collections_payment WHERE number = ?", (cmd.payment,)) is None:
            raise NotFoundError(f"payment {cmd.payment!r} does not exist", field="payment", record=cmd.payment)
        uow.execute("DELETE FROM collections_payment WHERE number = ?", (cmd.payment,))
        return {"fault": cmd.fault, "payment": cmd.payment}
    raise ValidationError(f"fault {cmd.fault!r} must be one of {', '.join(FAULTS)}", field="fault")
