"""The invoice generator: ``generate(account, subscriptions, existing, usage, target_date)``. Pure.

Kill Bill's split: the generator imports no store and reads no clock; the service loads an
account's subscriptions, billed items and usage, calls it, and persists the drafts (or, for a
dry run and ``billing_preview``, returns them unsaved).

How it works (docs/billing.md has the worked examples):

1. Each subscription's change log is replayed *through* a date (changes effective after it are
   not applied yet), giving every line's versions (segments) and their days.
2. For each version and each billing period it overlaps (:class:`~closeloop.contracts.schedule.Grid`,
   periods follow the billing day), the piece of the period is due on its *natural date*: the
   first day of the piece in advance, the period's end in arrears. A piece not yet billed becomes
   a charge: price x days / days in the enclosing period (a whole period: the price).
3. Every billed item whose version now covers fewer days (an amendment or a cancellation ended it
   earlier) gets a credit: old price x unused days / days of its period, capped at what is still
   creditable on it.
4. Usage: each metered piece rates the period's aggregated quantity once the period has ended;
   usage that arrives after its period was invoiced re-rates the period and bills the difference
   on the next invoice, with the original period shown.
5. One-time lines on their first day, milestones on their completion date, partial billings on
   their date.

Invoices: one per customer, entity, currency and billing date. The dates are the natural dates of
*scheduled* charges (grid dates, a contract's first day, milestone and partial dates) up to the
target date, and the target date itself. Each date is generated as if a run happened that day
(changes through that date); charges that are not scheduled (credits and charges from changes, late
usage) go on the first invoice dated on or after their natural date, or on one of their own dated
the target date.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache

from closeloop.billing.model import (
    DEFAULT_REVENUE_ROLE,
    Account,
    BilledItem,
    Charge,
    DraftInvoice,
    Generation,
    Subscription,
    UsageBook,
    charge_sort_key,
    dec_plain,
    item_from_charge,
)
from closeloop.billing.proration import capped_credit, prorate
from closeloop.catalog.rating import rate
from closeloop.contracts.model import ContractLine, Segment, Timeline, replay
from closeloop.contracts.schedule import Grid
from closeloop.core.money import format_minor, to_minor

ONE_DAY = timedelta(days=1)


@lru_cache(maxsize=65536)
def _pieces(grid: Grid, first: date, last: date) -> tuple[tuple[date, date, date, date], ...]:
    """Grid pieces, memoised: subscriptions share a handful of grids (billing day x period length)."""
    return tuple(grid.pieces(first, last))


@lru_cache(maxsize=65536)
def _period_of(grid: Grid, day: date) -> tuple[date, date]:
    return grid.period_of(day)


@dataclass
class _Index:
    """The items billed so far (existing + generated in this call), by what identifies them."""

    pieces: dict[tuple[str, str, int, date, str], list[BilledItem]] = field(default_factory=lambda: defaultdict(list))
    recurring: dict[str, list[BilledItem]] = field(default_factory=lambda: defaultdict(list))
    refs: set[tuple[str, str, str, str]] = field(default_factory=set)
    by_id: dict[int, BilledItem] = field(default_factory=dict)
    next_id: int = -1

    def add(self, item: BilledItem) -> None:
        self.by_id[item.id] = item
        if item.kind in ("recurring", "usage", "minimum") and item.period_start is not None:
            self.pieces[(item.contract_id, item.line_id, item.version, item.period_start, item.kind)].append(item)
            if item.kind == "recurring" and item.amount > 0:
                self.recurring[item.contract_id].append(item)
        elif item.kind in ("one_time", "milestone", "partial"):
            self.refs.add((item.contract_id, item.line_id, item.kind, item.ref or ""))

    def credit(self, item_id: int, amount: int) -> None:
        old = self.by_id[item_id]
        new = replace(old, credited=old.credited + amount)
        self.by_id[item_id] = new
        for bucket in (self.pieces[(old.contract_id, old.line_id, old.version, old.period_start, old.kind)],  # type: ignore[index]
                       self.recurring[old.contract_id]):
            for i, it in enumerate(bucket):
                if it.id == item_id:
                    bucket[i] = new

    def take(self, charge: Charge) -> int:
        item = item_from_charge(self.next_id, charge)
        self.next_id -= 1
        if charge.kind == "credit" and charge.credit_of is not None:
            self.credit(charge.credit_of, -charge.amount)
        self.add(item)
        return item.id


def _product_fields(line: ContractLine) -> dict[str, object]:
    p = line.product
    return {"sku": p.sku, "tax_code": p.tax_code, "treatment": p.treatment,
            "revenue_role": p.revenue_role or DEFAULT_REVENUE_ROLE.get(p.treatment, "revenue"),
            "product_family": p.family, "performing_entity": line.performing_entity}


def _span(start: date, end_exclusive: date) -> str:
    return f"{start.isoformat()} to {(end_exclusive - ONE_DAY).isoformat()}"


class _Generator:
    def __init__(self, account: Account, subscriptions: Sequence[Subscription], existing: Iterable[BilledItem],
                 usage: UsageBook) -> None:
        self.account = account
        self.subs = sorted(subscriptions, key=lambda s: s.contract_id)
        self.index = _Index()
        for item in existing:
            self.index.add(item)
        self.usage = usage
        self._timelines: dict[tuple[str, date | None], Timeline | None] = {}
        self._commit_cache: dict[tuple[str, int], list[tuple[tuple[str, ...], int, str, int]]] = {}

    def timeline(self, sub: Subscription, through: date | None) -> Timeline | None:
        key = (sub.contract_id, through)
        if key not in self._timelines:
            changes = [c for c in sub.changes if through is None or c.kind == "activation" or c.effective <= through]
            self._timelines[key] = replay(changes, through) if changes else None
        return self._timelines[key]

    # ------------------------------------------------------------------ what is due on a date

    def pending(self, day: date) -> list[Charge]:
        out: list[Charge] = []
        for sub in self.subs:
            tl = self.timeline(sub, day)
            if tl is None:
                continue
            rank = {line_id: i for i, line_id in enumerate(tl.line_order)}
            out.extend(self._credits(sub, tl, day))
            usage: list[Charge] = []
            for seg in tl.segments:
                line = seg.line
                r = rank.get(line.line_id, 0)
                if line.metered:
                    usage.extend(self._usage(sub, tl, seg, day, r))
                elif line.recurring:
                    out.extend(self._recurring(sub, tl, seg, day, r))
                elif line.milestones:
                    out.extend(self._milestones(sub, seg, day, r))
                else:
                    out.extend(self._one_time(sub, seg, day, r))
            out.extend(usage)
            commitments = self._commitments(sub, tl)
            if commitments:
                out.extend(self._minimums(sub, tl, day, commitments, usage, rank))
            out.extend(self._partials(sub, tl, day, rank))
        return out

    # ------------------------------------------------------------------ minimum commitments

    def _commitments(self, sub: Subscription, tl: Timeline) -> list[tuple[tuple[str, ...], int, str, int]]:
        """The minimum commitments of a contract: (metered lines covered, amount per billing period, the line the
        true-up is billed on, period months). A line's own ``minimum`` (a spending minimum on a metered line)
        and the contract's ``minimum`` (its metered lines, or those of one metric)."""
        key = (sub.contract_id, len(sub.changes))
        found = self._commit_cache.get(key)
        if found is not None:
            return found
        out: list[tuple[tuple[str, ...], int, str, int]] = []
        metered: dict[str, ContractLine] = {}
        for seg in tl.segments:
            if seg.line.metered:
                metered.setdefault(seg.line.line_id, seg.line)
        for line_id, line in metered.items():
            mn = line.ext("minimum") if line.extensions else None
            if mn and line.terms.months:
                out.append(((line_id,), to_minor(mn["amount"], line.currency), line_id, line.terms.months))
        act = sub.changes[0] if sub.changes and sub.changes[0].kind == "activation" else None
        cmin = act.ext("minimum") if act is not None and act.extensions else None
        if cmin and metered:
            covered = tuple(x for x in tl.line_order if x in metered
                            and (not cmin.get("metric") or metered[x].terms.metric == cmin["metric"]))
            if covered and metered[covered[0]].terms.months:
                out.append((covered, to_minor(cmin["amount"], sub.currency), covered[0],
                            int(metered[covered[0]].terms.months or 1)))
        self._commit_cache[key] = out
        return out

    def _minimums(self, sub: Subscription, tl: Timeline, day: date,
                  commitments: list[tuple[tuple[str, ...], int, str, int]], usage: list[Charge],
                  rank: dict[str, int]) -> list[Charge]:
        """A true-up per commitment and ended billing period: the minimum (prorated by the days of service in the
        period) less the usage billed for the period, never below zero, billed in arrears with the period's usage;
        late usage that lowers a true-up already billed gives a (negative) adjustment on the next invoice."""
        out = []
        for covered, amount, on_line, months in commitments:
            segs = [s for s in tl.segments if s.line.line_id in covered]
            if not segs:
                continue
            first = min(s.start for s in segs)
            last = max(s.end for s in segs)
            attribution = next((s for s in segs if s.line.line_id == on_line), segs[0])
            line = attribution.line
            grid = Grid.of(tl.start, sub.billing_day, months)
            start = first
            if sub.scan_from is not None and sub.scan_from > first:
                start = max(first, _period_of(grid, sub.scan_from)[0])
            for p_start, p_end, o_start, o_end in _pieces(grid, start, last):
                if p_end > day:
                    break
                used = 0
                for lid in covered:
                    for v in {s.seq for s in segs if s.line.line_id == lid}:
                        used += sum(it.amount for it in self.index.pieces.get((sub.contract_id, lid, v, p_start,
                                                                                "usage"), ()))
                used += sum(c.amount for c in usage if c.line_id in covered and c.period_start == p_start)
                minimum = prorate(amount, (o_end - o_start).days, (p_end - p_start).days)
                target = max(0, minimum - used)
                billed = self.index.pieces.get((sub.contract_id, on_line, 0, p_start, "minimum"))
                delta = target - sum(it.amount for it in billed or ())
                if delta == 0:
                    continue
                cur = sub.currency
                if billed:
                    desc = (f"Minimum commitment true-up adjusted for late usage {_span(o_start, o_end)}"
                            f" (minimum {format_minor(minimum, cur)}, usage now {format_minor(used, cur)})")
                else:
                    desc = (f"Minimum commitment true-up {_span(o_start, o_end)} (minimum {format_minor(minimum, cur)},"
                            f" usage {format_minor(used, cur)})")
                out.append(Charge(
                    contract_id=sub.contract_id, line_id=on_line, version=0, kind="minimum", description=desc,
                    amount=delta, natural=p_end, scheduled=not billed, quantity=Decimal(1), unit_price=None,
                    period_start=p_start, period_end=p_end, service_from=o_start, service_to=o_end,
                    period_amount=minimum, rank=rank.get(on_line, 0), **_product_fields(line)))  # type: ignore[arg-type]
        return out

    def _first(self, sub: Subscription, grid: Grid, seg: Segment) -> date:
        if sub.scan_from is None or sub.scan_from <= seg.start:
            return seg.start
        return max(seg.start, _period_of(grid, sub.scan_from)[0])

    def _recurring(self, sub: Subscription, tl: Timeline, seg: Segment, day: date, rank: int) -> list[Charge]:
        line = seg.line
        months = line.list_terms.months
        amount = line.period_amount
        if months is None or amount is None:
            return []
        grid = Grid.of(tl.start, sub.billing_day, months)
        advance = line.list_terms.timing == "advance"
        out = []
        for p_start, p_end, o_start, o_end in _pieces(grid, self._first(sub, grid, seg), seg.end):
            natural = o_start if advance else p_end
            if natural > day:
                break
            billed = self.index.pieces.get((sub.contract_id, line.line_id, seg.seq, p_start, "recurring"))
            start = o_start
            if billed:
                covered_to = max(it.service_to or o_start for it in billed)
                if covered_to >= o_end:
                    continue
                start = max(o_start, covered_to)
            if advance:
                scheduled = not billed and (start == p_start or (start == seg.start and seg.kind in ("activation",
                                                                                                    "renewal")))
            else:
                scheduled = not billed
            full = (p_end - p_start).days
            days = (o_end - start).days
            value = prorate(amount, days, full)
            trial = line.phase == "trial"
            if value == 0 and not (trial and line.ext("trial_invoice") == "zero"):
                continue
            desc = line.product.name
            if trial:
                pct = Decimal(str(line.ext("trial_discount_pct") or 100))
                desc += " — free trial" if pct == 100 else f" — trial ({dec_plain(pct)}% off)"
            if days != full:
                desc += f" ({days}/{full} days)"
            out.append(Charge(
                contract_id=sub.contract_id, line_id=line.line_id, version=seg.seq, kind="recurring",
                description=desc, amount=value, natural=natural if start == o_start else max(natural, start),
                scheduled=scheduled, quantity=line.quantity, unit_price=line.net_unit_amount,
                period_start=p_start, period_end=p_end, service_from=start, service_to=o_end, period_amount=amount,
                rank=rank, **_product_fields(line)))  # type: ignore[arg-type]
        return out

    def _credits(self, sub: Subscription, tl: Timeline, day: date) -> list[Charge]:
        items = self.index.recurring.get(sub.contract_id)
        if not items:
            return []
        versions = {(s.line.line_id, s.seq): s for s in tl.segments}
        out = []
        for it in list(items):
            if it.service_from is None or it.service_to is None or it.period_start is None or it.period_end is None:
                continue
            seg = versions.get((it.line_id, it.version))
            if seg is not None and seg.end + ONE_DAY >= it.service_to:
                continue
            keep_to = it.service_from if seg is None else min(it.service_to, max(it.service_from, seg.end + ONE_DAY))
            if seg is not None and seg.start > it.service_from:
                keep_to = it.service_from
            unused = (it.service_to - keep_to).days
            if unused <= 0:
                continue
            creditable = it.amount - it.credited - it.memo_credited
            full = (it.period_end - it.period_start).days
            value = capped_credit(it.period_amount if it.period_amount is not None else it.amount, unused, full,
                                  creditable, already=it.credited)
            if value <= 0 or keep_to > day:
                continue
            line = seg.line if seg is not None else self._line_of(sub, tl, it)
            name = line.product.name if line is not None else it.line_id
            fields = _product_fields(line) if line is not None else {}
            out.append(Charge(
                contract_id=sub.contract_id, line_id=it.line_id, version=it.version, kind="credit",
                description=f"Credit: unused {name} {_span(keep_to, it.service_to)} ({unused}/{full} days)",
                amount=-value, natural=keep_to, scheduled=False, quantity=it.quantity,
                period_start=it.period_start, period_end=it.period_end, service_from=keep_to,
                service_to=it.service_to, period_amount=it.period_amount, credit_of=it.id,
                rank=tl.line_order.index(it.line_id) if it.line_id in tl.line_order else 0,
                **fields))  # type: ignore[arg-type]
        return out

    def _line_of(self, sub: Subscription, tl: Timeline, item: BilledItem) -> ContractLine | None:
        full = self.timeline(sub, None)
        for source in (tl, full):
            if source is None:
                continue
            for s in source.segments:
                if s.line.line_id == item.line_id and s.seq == item.version:
                    return s.line
        # the version no longer exists (cancelled before it started): find it in the change log
        for c in sub.changes:
            for ln in c.lines:
                if ln.line_id == item.line_id:
                    return ln
        for s in (full.segments if full else ()):
            if s.line.line_id == item.line_id:
                return s.line
        return None

    def _usage(self, sub: Subscription, tl: Timeline, seg: Segment, day: date, rank: int) -> list[Charge]:
        line = seg.line
        terms = line.terms
        months = terms.months
        if months is None or terms.metric is None:
            return []
        grid = Grid.of(tl.start, sub.billing_day, months)
        out = []
        for p_start, p_end, o_start, o_end in _pieces(grid, self._first(sub, grid, seg), seg.end):
            if p_end > day:
                break
            quantity, count = self.usage.aggregate(terms.metric, o_start, o_end, terms.aggregation or "sum")
            billed = self.index.pieces.get((sub.contract_id, line.line_id, seg.seq, p_start, "usage"))
            total = rate(terms, quantity, discount_pct=line.discount_pct)
            if not billed:
                value, qty, late = total, quantity, False
            else:
                billed_count = sum(it.usage_count for it in billed)
                if count <= billed_count:
                    continue
                value = total - sum(it.amount for it in billed)
                qty = quantity - sum((it.quantity for it in billed), Decimal(0))
                late = True
            desc = f"{line.product.name}: {terms.metric} {_span(o_start, o_end)}"
            if late:
                desc = f"Late usage: {desc}"
            unit = terms.amount if terms.model in ("usage", "per_unit") else None
            out.append(Charge(
                contract_id=sub.contract_id, line_id=line.line_id, version=seg.seq, kind="usage",
                description=desc, amount=value, natural=p_end, scheduled=not late, quantity=qty, unit_price=unit,
                period_start=p_start, period_end=p_end, service_from=o_start, service_to=o_end,
                usage_count=count - (sum(it.usage_count for it in billed) if billed else 0), rank=rank,
                **_product_fields(line)))  # type: ignore[arg-type]
        return out

    def _one_time(self, sub: Subscription, seg: Segment, day: date, rank: int) -> list[Charge]:
        line = seg.line
        if seg.start != line.start or line.start > day or seg.kind == "renewal":
            return []
        if (sub.contract_id, line.line_id, "one_time", "") in self.index.refs:
            return []
        amount = line.period_amount or 0
        amount -= sum(p.amount for p in sub.partials if p.line_id == line.line_id)
        if amount <= 0:
            return []
        return [Charge(contract_id=sub.contract_id, line_id=line.line_id, version=seg.seq, kind="one_time",
                       description=line.product.name, amount=amount, natural=line.start,
                       scheduled=seg.kind == "activation", quantity=line.quantity, unit_price=line.net_unit_amount,
                       service_from=line.start, rank=rank, **_product_fields(line))]  # type: ignore[arg-type]

    def _milestones(self, sub: Subscription, seg: Segment, day: date, rank: int) -> list[Charge]:
        line = seg.line
        if seg.start != line.start:
            return []
        out = []
        amounts = {m.milestone_id: m.amount for m in line.milestones}
        for done in sub.milestones:
            if done.line_id != line.line_id or done.date > day or done.milestone_id not in amounts:
                continue
            if (sub.contract_id, line.line_id, "milestone", done.milestone_id) in self.index.refs:
                continue
            out.append(Charge(contract_id=sub.contract_id, line_id=line.line_id, version=seg.seq, kind="milestone",
                              description=f"{line.product.name}: milestone {done.milestone_id}",
                              amount=amounts[done.milestone_id], natural=done.date, scheduled=True,
                              service_from=done.date, ref=done.milestone_id, rank=rank,
                              **_product_fields(line)))  # type: ignore[arg-type]
        return out

    def _partials(self, sub: Subscription, tl: Timeline, day: date, rank: dict[str, int]) -> list[Charge]:
        out = []
        for p in sub.partials:
            if p.date > day or (sub.contract_id, p.line_id, "partial", f"partial:{p.id}") in self.index.refs:
                continue
            segs = [s for s in tl.segments if s.line.line_id == p.line_id]
            if not segs:
                continue
            line = segs[0].line
            out.append(Charge(contract_id=sub.contract_id, line_id=p.line_id, version=segs[0].seq, kind="partial",
                              description=p.description or f"{line.product.name} (partial)", amount=p.amount,
                              natural=p.date, scheduled=True, service_from=p.date, ref=f"partial:{p.id}",
                              rank=rank.get(p.line_id, 0), **_product_fields(line)))  # type: ignore[arg-type]
        return out

    # ------------------------------------------------------------------ dates

    def next_date(self, after: date) -> date | None:
        """The earliest date after ``after`` on which something may fall due (a hint; never too late)."""
        best: date | None = None

        def consider(d: date | None) -> None:
            nonlocal best
            if d is not None and d > after and (best is None or d < best):
                best = d

        for sub in self.subs:
            for c in sub.changes:
                consider(c.effective)
            for m in sub.milestones:
                consider(m.date)
            for p in sub.partials:
                consider(p.date)
            tl = self.timeline(sub, None)
            if tl is None:
                continue
            for seg in tl.segments:
                consider(seg.start)
                months = seg.line.list_terms.months
                if months is None:
                    continue
                grid = Grid.of(tl.start, sub.billing_day, months)
                probe = min(max(after, seg.start), seg.end)
                p_start, p_end = _period_of(grid, probe)
                if seg.end >= after or p_end > after:
                    consider(p_end)
        return best


def generate(account: Account, subscriptions: Sequence[Subscription], existing: Iterable[BilledItem],
             usage: UsageBook, target_date: date) -> Generation:
    """Every invoice due for ``account`` up to ``target_date`` that is not billed yet (see the module doc)."""
    gen = _Generator(account, subscriptions, existing, usage)
    preview = gen.pending(target_date)
    dates = sorted({c.natural for c in preview if c.scheduled} | {target_date})
    invoices: list[DraftInvoice] = []
    if preview:
        for day in dates:
            charges = gen.pending(day)
            if not charges:
                continue
            if day != target_date and not any(c.scheduled for c in charges):
                continue
            taken = sorted(((c, gen.index.take(c)) for c in _net_out(charges)), key=lambda x: charge_sort_key(x[0]))
            if taken:
                invoices.append(DraftInvoice(account, day, tuple(c for c, _ in taken), tuple(i for _, i in taken)))
    return Generation(tuple(invoices), gen.next_date(target_date))


def _net_out(charges: list[Charge]) -> list[Charge]:
    """Drop usage re-ratings worth nothing that add no events (kept: zero-usage lines of a period)."""
    return [c for c in charges if not (c.kind == "usage" and c.amount == 0 and c.usage_count == 0
                                       and c.description.startswith("Late usage"))]
