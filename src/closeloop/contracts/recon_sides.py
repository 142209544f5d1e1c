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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from itertools import takewhile
from typing import Any

from closeloop.contracts.model import Change, Segment, Timeline, replay
from closeloop.contracts.schedule import Grid, prorated
from closeloop.control.recon import SideContext, recon_side

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Due:
    amount: int
    first_due: date | None


def segment_pieces(seg: Segment, contract_start: date, billing_day: int, until: date = date.max
                   ) -> Iterator[tuple[date, int, date]]:
    """The charges a line version falls due for by ``until``, in date order: ``(due date, amount in minor
    units, the last day of service the charge pays for)`` (a one-time charge: its day)."""
    line = seg.line
    amount = line.period_amount
    if amount is None or line.milestones:
        return
    months = line.list_terms.months
    if months is None:  # one-time: due once, on the line's first day (a renewal does not repeat it)
        if seg.start == line.start and seg.kind != "renewal" and line.start <= until:
            yield line.start, amount, line.start
        return
    grid = Grid.of(contract_start, billing_day, months)
    advance = line.list_terms.timing == "advance"
    for p_start, p_end, o_start, o_end in _pieces_until(grid, seg.start, seg.end, until):
        due = o_start if advance else p_end
        if due > until:
            return
        # a whole period is the charge (what prorated() gives it); only a partial one is prorated
        yield due, (amount if o_start == p_start and o_end == p_end
                    else prorated(amount, grid, o_start, o_end - ONE_DAY)), o_end - ONE_DAY


def segment_due(seg: Segment, contract_start: date, billing_day: int, as_of: date,
                billed_through: date | None = None) -> tuple[int, date | None]:
    """What a line version has made due by ``as_of`` (minor units) and its earliest due date; a migrated
    contract's charges for service the legacy system billed (through ``billed_through``) are not counted."""
    total = 0
    first: date | None = None
    for due, amount, last in segment_pieces(seg, contract_start, billing_day, as_of):
        if billed_through is not None and last <= billed_through:
            continue
        total += amount
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


def due_schedule(tl: Timeline, billing_day: int) -> list[list[Any]]:
    """Every charge of a contract's timeline (all its changes applied), merged by due date and last day of
    service paid for, in order: ``[[due, amount (minor units), last day], ...]`` (dates ISO). Stored with the
    contract at each change, it answers "due by ``as_of``" without a replay for any ``as_of`` on or after the
    latest change's effective date (before it, the change log is replayed through ``as_of``)."""
    merged: dict[tuple[date, date], int] = {}
    for seg in tl.segments:
        for due, amount, last in segment_pieces(seg, tl.start, billing_day):
            merged[due, last] = merged.get((due, last), 0) + amount
    return [[due.isoformat(), amount, last.isoformat()] for (due, last), amount in sorted(merged.items())]


def due_from_schedule(schedule: Sequence[Sequence[Any]], as_of: str, billed_through: str | None = None
                      ) -> tuple[int, str | None]:
    """A stored :func:`due_schedule` summed through ``as_of`` (ISO dates compare as text): what
    :func:`contract_due` gives when no change is effective after ``as_of``."""
    total = 0
    first: str | None = None
    for due, amount, last in schedule:
        if due > as_of:
            break
        if billed_through is not None and last <= billed_through:
            continue
        total += amount
        if first is None:
            first = due
    return total, first


def _billed_through(uow: Any) -> dict[str, str]:
    """Migrated contracts: the day the legacy system billed through (the latest migration of each wins).
    Sorted here, not in SQL: ``ORDER BY id`` would make SQLite scan the whole outbox instead of its type index."""
    rows = sorted(uow.all("SELECT id, payload FROM event WHERE type = 'contract.migrated'"))
    out: dict[str, str] = {}
    for _, text in rows:
        p = json.loads(text)
        out[str(p["contract_id"])] = date.fromisoformat(str(p["billed_through"])).isoformat()
    return out


def values_due(uow: Any, as_of: date, entity: str | None = None) -> Iterable[dict[str, Any]]:
    """Every contract's value due by ``as_of`` (see the module doc), as recon records: from the stored
    schedule when no change is effective after ``as_of``, else by replaying the change log through it."""
    day = as_of.isoformat()
    where = " WHERE start <= ?"
    params: list[Any] = [day]
    if entity:
        where += " AND entity = ?"
        params.append(entity)
    headers = uow.all("SELECT contract_id, entity, currency, customer, billing_day, due_schedule, changes_through"
                      f" FROM contracts_contract{where} ORDER BY contract_id", params)
    if not headers:
        return
    logs: dict[str, list[Change]] = defaultdict(list)
    if any(h[5] is None or h[6] is None or h[6] > day for h in headers):
        for cid, text in uow.all(
                "SELECT contract_id, payload FROM contracts_change WHERE (effective <= ? OR kind = 'activation')"
                f" AND contract_id IN (SELECT contract_id FROM contracts_contract{where} AND (due_schedule IS NULL"
                " OR changes_through IS NULL OR changes_through > ?)) ORDER BY contract_id, seq",
                [day, *params, day]):
            logs[cid].append(Change.from_dict(json.loads(text)))
    migrated = _billed_through(uow)
    for cid, ent, currency, customer, billing_day, schedule, through in headers:
        changes = logs.get(cid)
        if changes:
            due = contract_due(changes, int(billing_day), as_of, _date(migrated.get(cid)))
            amount, first = due.amount, due.first_due.isoformat() if due.first_due else None
        elif schedule is not None and through is not None and through <= day:
            amount, first = due_from_schedule(json.loads(schedule), day, migrated.get(cid))
        else:
            continue
        if amount:
            yield {"contract": cid, "currency": currency, "amount": amount, "entity": ent, "customer": customer,
                   "date": first, "record": {"contract": cid}}


def _date(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


@recon_side("contracts.value_due_to_date", area="contracts",
            description="Contract value due for billing by the run date, per contract (from the change log)")
def value_due_to_date(uow: Any, ctx: SideContext) -> Iterable[dict[str, Any]]:
    return values_due(uow, ctx.as_of, ctx.entity)
