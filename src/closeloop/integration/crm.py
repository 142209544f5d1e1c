"""The loop back to CRM: sales sees what finance sees, per account.

When an event that changes what finance knows about a customer account is
handled (an invoice issued or paid, a payment, a dunning step...), the
``crm.account_state`` handler recomputes the account's **CRM view** from the
registered *facts* and, if it differs from what was last sent, emits
``crm.account_updated`` (aggregate ``customer``/account). That event is
published, so a CRM webhook subscription (``event_types:
["crm.account_updated"]``) receives it signed, retried and in order per
account.

Extension points, filled by later areas without touching this module's code:

- **Facts**: :func:`query_fact` maps a fact to a query of the vocabulary
  (e.g. ``open_balance`` = the ``customer`` query's ``open_balance``); a fact
  whose query is not registered yet is simply left out. :func:`account_fact`
  registers a Python function ``(uow, account) -> value`` instead.
- **Triggers**: :func:`crm_trigger` names an event type and where its payload
  holds the account (a key, or a function of the event).

The shipped facts and triggers below name the queries and events that the
billing and collections areas will provide (invoice status, open balance,
dunning state); until they exist the mechanism runs with what is registered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from closeloop.core import registry
from closeloop.core.errors import CloseloopError, NotFoundError
from closeloop.core.events import Event, handles
from closeloop.core.uow import dumps


@dataclass(frozen=True, slots=True)
class AccountFact:
    name: str
    fn: Callable[[Any, str], Any]


class FactUnavailable(Exception):
    """A fact that cannot be computed (yet) for this account; it is left out of the view."""


_FACTS: dict[str, AccountFact] = {}
_TRIGGERS: dict[str, Callable[[Event], str | None]] = {}


def account_fact(name: str) -> Callable[[Callable[[Any, str], Any]], Callable[[Any, str], Any]]:
    def register(fn: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
        _FACTS[name] = AccountFact(name, fn)
        return fn

    return register


def query_fact(name: str, query_name: str, where: dict[str, Any], field: str | None = None) -> None:
    """A fact read from a query: ``where`` values ``"{account}"`` are replaced by the account id."""

    def fn(uow: Any, account: str) -> Any:
        try:
            op = registry.get(query_name, "query")
        except CloseloopError:
            raise FactUnavailable(f"query {query_name} is not registered") from None
        args = {k: (account if v == "{account}" else v) for k, v in where.items()}
        try:
            result = op.fn(uow, op.parse(args))
        except NotFoundError:
            raise FactUnavailable(f"{query_name} knows no {account}") from None
        except CloseloopError as exc:  # the mapping does not fit the query (yet): leave the fact out
            raise FactUnavailable(f"{query_name}: {exc}") from None
        if field is None:
            return result
        if field not in result:
            raise FactUnavailable(f"{query_name} has no field {field}")
        return result[field]

    _FACTS[name] = AccountFact(name, fn)


def crm_trigger(event_type: str, account: str | Callable[[Event], str | None] = "customer") -> None:
    """Recompute the CRM view of the account named by ``account`` (a payload key or a function) on this event."""
    if isinstance(account, str):
        key = account

        def extract(ev: Event) -> str | None:
            value = ev.payload.get(key)
            return None if value is None else str(value)

        _TRIGGERS[event_type] = extract
    else:
        _TRIGGERS[event_type] = account
    handles(event_type, "crm.account_state")(refresh_account)


def account_view(uow: Any, account: str) -> dict[str, Any]:
    view: dict[str, Any] = {}
    for fact in _FACTS.values():
        try:
            view[fact.name] = fact.fn(uow, account)
        except FactUnavailable:
            continue
    return view


def _crm_subscribed(uow: Any) -> bool:
    import json

    from closeloop.integration.webhooks import type_matches

    return any(any(type_matches(p, "crm.account_updated") for p in json.loads(types))
               for (types,) in uow.all("SELECT event_types FROM webhook_subscription WHERE active = ?", (True,)))


def refresh_account(uow: Any, ev: Event) -> None:
    extract = _TRIGGERS.get(ev.type)
    account = extract(ev) if extract else None
    if not account or not _crm_subscribed(uow):
        return
    view = account_view(uow, account)
    text = dumps(view)
    digest = hashlib.sha256(text.encode()).hexdigest()
    row = uow.one(f"SELECT digest FROM crm_account_state WHERE account = ?{uow.for_update()}", (account,))
    if row is not None and row[0] == digest:
        return
    uow.execute("INSERT INTO crm_account_state (account, digest, state, event_id, updated_at) VALUES (?,?,?,?,?)"
                " ON CONFLICT (account) DO UPDATE SET digest = excluded.digest, state = excluded.state,"
                " event_id = excluded.event_id, updated_at = excluded.updated_at",
                (account, digest, text, ev.id, uow.now()))
    uow.emit("crm.account_updated", "customer", account,
             {"account": account, "as_of": uow.today().isoformat(), "cause": {"event": ev.id, "type": ev.type},
              **view}, entity=ev.entity)


# What finance tells sales, by the queries the customer, billing and collections areas provide.
query_fact("open_balance", "customer", {"external_id": "{account}"}, "open_balance")
query_fact("credit_balance", "customer", {"external_id": "{account}"}, "credit_balance")
query_fact("open_invoices", "invoices", {"customer": "{account}", "status": "open"})
query_fact("invoice_status", "customer_invoice_status", {"customer": "{account}"}, "invoices")
query_fact("dunning_state", "dunning_status", {"customer": "{account}"}, "state")

for _type in ("invoice.issued", "invoice.paid", "invoice.partially_paid", "invoice.credited", "invoice.voided",
              "invoice.written_off", "credit_memo.issued", "payment.received", "payment.applied", "payment.failed",
              "dunning.stage_changed", "dispute.opened", "dispute.resolved"):
    crm_trigger(_type, "customer")
