"""Reconciliation side provided by contracts (see config/recon_rules.yaml, rule ``contract_vs_billed``).

``contracts.value_due_to_date``: per contract and currency, the contract value that has fallen due
for billing by the run's ``as_of`` — computed from the contract's own change log, independently of
billing. The contract is replayed through ``as_of`` (changes effective later are not applied yet),
and every version (segment) of every committed line is cut along the contract's billing-period
grid (:class:`~closeloop.contracts.schedule.Grid`, the billing day and the line's period length):

- a recurring piece in advance is due on its first day, in arrears at the end of its period; it is
  worth ``charge x days in the piece / days in the period`` (ROUND_HALF_UP once per piece; a whole
  period is the charge) — the proration contract values (TCV) use;
- a one-time line is due once, on its first day, at its charge;
- metered lines commit nothing (their value is what usage rates) and milestone lines are due on
  completions that billing records, so neither is counted (billing's side leaves them out too).

A migrated contract (``contract.migrated {contract_id, billed_through}``) counts only what falls
after the date the legacy system billed through.

Record: ``{contract, currency, amount (minor units), entity, customer, date (the earliest due date
counted), record: {contract}}``; contracts with nothing due are left out. Reads the contracts
area's own tables (and the migration events) read-only.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from itertools import takewhile
from typing import Any

from closeloop.contracts.model import Change, Segment, replay
from closeloop.contracts.schedule import Grid, prorated
from closeloop.control.recon import SideContext, recon_side

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Due:
    amount: int
    first_due: date | None


def segment_due(seg: Segment, contract_start: date, billing_day: int, as_of: date,
                billed_through: date | None = None) -> tuple[int, date | None]:
    """What a line version has made due by ``as_of`` (minor units) and its earliest due date."""
    line = seg.line
    amount = line.period_amount
    if amount is None or line.milestones:
        return 0, None
    months = line.list_terms.months
    if months is None:  # one-time: due once, on the line's first day (a renewal does not repeat it)
        if seg.start != line.start or seg.kind == "renewal" or line.start > as_of:
            return 0, None
        if billed_through is not None and line.start <= billed_through:
            return 0, None
        return amount, line.start
    grid = Grid.of(contract_start, billing_day, months)
    advance = line.list_terms.timing == "advance"
    total = 0
    first: date | None = None
    for p_start, p_end, o_start, o_end in _pieces_until(grid, seg.start, seg.end, as_of):
        due = o_start if advance else p_end
        if due > as_of:
            break
        if billed_through is not None and o_end <= billed_through + ONE_DAY:
            continue
        # a whole period is the charge (what prorated() gives it); only a partial one is prorated
        total += amount if o_start == p_start and o_end == p_end else prorated(amount, grid, o_start, o_end - ONE_DAY)
        first = due if first is None else min(first, due)
    return total, first


@lru_cache(maxsize=4096)
def _pieces_until(grid: Grid, first: date, last: date, as_of: date) -> tuple[tuple[date, date, date, date], ...]:
    """The pieces of ``grid.pieces(first, last)`` that start by ``as_of`` (the ones a segment can have made due
    by then). Contracts signed alike share a grid and a span: a hundred thousand of them cut it a few dozen times."""
    return tuple(takewhile(lambda piece: piece[2] <= as_of, grid.pieces(first, last)))


def contract_due(changes: list[Change], billing_day: int, as_of: date, billed_through: date | None = None) -> Due:
    """The value of one contract due for billing by ``as_of`` (its change log replayed through then)."""
    tl = replay(changes, as_of)
    if tl.start > as_of:
        return Due(0, None)
    total = 0
    first: date | None = None
    for seg in tl.segments:
        if seg.start > as_of:
            continue
        amount, day = segment_due(seg, tl.start, billing_day, as_of, billed_through)
        total += amount
        if day is not None:
            first = day if first is None else min(first, day)
    return Due(total, first)


def _billed_through(uow: Any) -> dict[str, date]:
    out: dict[str, date] = {}
    for (text,) in uow.all("SELECT payload FROM event WHERE type = 'contract.migrated' ORDER BY id"):
        p = json.loads(text)
        out[str(p["contract_id"])] = date.fromisoformat(str(p["billed_through"]))
    return out


def values_due(uow: Any, as_of: date, entity: str | None = None) -> Iterable[dict[str, Any]]:
    """Every contract's value due by ``as_of`` (see the module doc), as recon records."""
    sql = ("SELECT contract_id, entity, currency, customer, billing_day FROM contracts_contract WHERE start <= ?")
    params: list[Any] = [as_of.isoformat()]
    if entity:
        sql += " AND entity = ?"
        params.append(entity)
    headers = uow.all(sql + " ORDER BY contract_id", params)
    if not headers:
        return
    wanted = {h[0] for h in headers}
    logs: dict[str, list[Change]] = defaultdict(list)
    for cid, text in uow.all("SELECT contract_id, payload FROM contracts_change WHERE effective <= ? OR kind ="
                             " 'activation' ORDER BY contract_id, seq", (as_of.isoformat(),)):
        if cid in wanted:
            logs[cid].append(Change.from_dict(json.loads(text)))
    migrated = _billed_through(uow)
    for cid, ent, currency, customer, billing_day in headers:
        changes = logs.get(cid)
        if not changes:
            continue
        due = contract_due(changes, int(billing_day), as_of, migrated.get(cid))
        if due.amount:
            yield {"contract": cid, "currency": currency, "amount": due.amount, "entity": ent, "customer": customer,
                   "date": due.first_due.isoformat() if due.first_due else None, "record": {"contract": cid}}


@recon_side("contracts.value_due_to_date", area="contracts",
            description="Contract value due for billing by the run date, per contract (from the change log)")
def value_due_to_date(uow: Any, ctx: SideContext) -> Iterable[dict[str, Any]]:
    return values_due(uow, ctx.as_of, ctx.entity)
