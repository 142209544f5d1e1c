"""Subscriptions from contract events (never from contract tables).

The contracts area emits ``contract.activated``, ``contract.amended``, ``contract.renewed`` and
``contract.cancelled`` with the whole contract after the change (docs/events.md). Billing rebuilds
the change itself from the payload — the activation's lines, an amendment's changed, added and
removed lines (each changed line as its full new version), a renewal's term and uplift, a
cancellation's effective date — and keeps the change log, which the generator replays with the
contracts area's own pure :func:`~closeloop.contracts.model.replay`, so what billing invoices and
what the contract says it is worth follow the same rules.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from closeloop.contracts.model import Change, ContractLine, LineUpdate, extensions_of, replay
from closeloop.core.events import Event, handles
from closeloop.core.uow import dumps


def change_from_payload(p: Mapping[str, Any]) -> Change:
    """The contract change an event describes, as a :class:`Change` (pure)."""
    ch = p["change"]
    kind = ch["kind"]
    common = {"seq": int(ch["seq"]), "kind": kind, "effective": date.fromisoformat(ch["effective"]),
              "recorded_on": date.fromisoformat(ch.get("recorded_on") or ch["effective"]), "ref": str(ch.get("ref") or ""),
              "modification": ch.get("modification") or p.get("modification")}
    in_force = {x["line_id"]: x for x in p.get("lines") or () if isinstance(x, Mapping) and "price" in x}

    def full(x: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The new version of a changed line: ``after`` when it is a whole line, else the line in force."""
        after = x.get("after")
        if isinstance(after, Mapping) and "price" in after:
            return after
        return in_force.get(x.get("line_id", ""))

    changed = p.get("changed_lines") or []
    if kind == "activation":
        found = [full(x) for x in changed]
        lines = tuple(ContractLine.from_dict(f) for f in found if f is not None)
        if not lines:
            lines = tuple(ContractLine.from_dict(x) for x in p.get("lines") or ())
        months = ch.get("term_months") or (p.get("term") or {}).get("months")
        return Change(lines=lines, term_months=int(months), extensions=extensions_of(p.get("extensions")), **common)
    if kind == "amendment":
        added: list[ContractLine] = []
        updates: list[LineUpdate] = []
        for x in changed:
            action = x.get("action")
            version = full(x)
            if action == "added" and version is not None:
                added.append(ContractLine.from_dict(version))
            elif action == "removed":
                updates.append(LineUpdate(x["line_id"], remove=True))
            elif action == "changed" and version is not None:
                new = ContractLine.from_dict(version)
                updates.append(LineUpdate(new.line_id, quantity=new.quantity, price=new.terms, product=new.product,
                                          unit_amount=None, discount_pct=new.discount_pct))
        return Change(lines=tuple(added), updates=tuple(updates), **common)
    if kind == "renewal":
        uplift = ch.get("uplift_pct")
        return Change(term_months=int(ch["term_months"]), uplift_pct=None if uplift is None else Decimal(str(uplift)),
                      **common)
    if kind == "cancellation":
        return Change(**common)
    raise ValueError(f"unknown contract change kind {kind!r}")


def _min_date(a: str | None, b: str) -> str:
    return b if a is None or b < a else a


def on_contract_event(uow: Any, ev: Event) -> None:
    p = ev.payload
    change = change_from_payload(p)
    cid = p["contract_id"]
    uow.execute("INSERT INTO billing_contract_change (contract_id, seq, kind, effective, payload, event_id, recorded_at)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT (contract_id, seq) DO NOTHING",
                (cid, change.seq, change.kind, change.effective.isoformat(), dumps(change.to_dict()), ev.id,
                 uow.now()))
    changes = load_changes(uow, cid)
    tl = replay(changes)
    status = "cancelled" if tl.cancelled is not None else "active"
    row = uow.one(f"SELECT scan_from, next_date FROM billing_subscription WHERE contract_id = ?{uow.for_update()}",
                  (cid,))
    effective = change.effective.isoformat()
    if row is None:
        uow.execute(
            "INSERT INTO billing_subscription (contract_id, customer_id, customer, entity, currency, billing_day, start,"
            " status, scan_from, next_date, changes, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (cid, int(p["customer_id"]), p["customer"], p["entity"], p["currency"], int(p["billing_day"]),
             tl.start.isoformat(), status, None, tl.start.isoformat(), len(changes), uow.now()))
    else:
        scan_from = row[0] if row[0] is None else _min_date(row[0], effective)
        uow.execute("UPDATE billing_subscription SET customer_id = ?, customer = ?, status = ?, scan_from = ?,"
                    " next_date = ?, changes = ?, updated_at = ? WHERE contract_id = ?",
                    (int(p["customer_id"]), p["customer"], status, scan_from, _min_date(row[1], effective),
                     len(changes), uow.now(), cid))
    if change.extensions or any(ln.extensions for ln in change.lines):
        from closeloop.billing.coupons import redeem_from_contract

        redeem_from_contract(uow, p, change, change.lines)
    uow.execute("DELETE FROM billing_meter WHERE contract_id = ?", (cid,))
    meters = [(cid, s.line.line_id, s.start.isoformat(), s.end.isoformat(), int(p["customer_id"]),
               s.line.list_terms.metric) for s in tl.segments if s.line.metered]
    uow.executemany("INSERT INTO billing_meter (contract_id, line_id, start, \"end\", customer_id, metric)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT (contract_id, line_id, start) DO NOTHING", meters)
    uow.invalidate("billing.changes", cid)


def load_changes(uow: Any, contract_id: str) -> list[Change]:
    rows = uow.all("SELECT payload FROM billing_contract_change WHERE contract_id = ? ORDER BY seq", (contract_id,))
    return [Change.from_dict(json.loads(r[0])) for r in rows]


for _type in ("contract.activated", "contract.amended", "contract.renewed", "contract.cancelled"):
    handles(_type, "billing")(on_contract_event)
