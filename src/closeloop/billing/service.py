"""Billing commands, queries and the service functions other areas call.

Commands: ``usage.record`` (one event, or ``events`` for a batch), ``billing.run`` (as_of, entity?,
dry_run?), ``milestone.complete``, ``billing.partial``, ``invoice.credit``, ``credit.apply``,
``invoice.void``. Queries: ``invoice``, ``invoices``, ``billing_preview``, ``credit_memo``,
``subscriptions``, ``billing_runs``.

Service functions for other areas (docs/billing.md):

- :func:`invoice_document` — the whole invoice or credit memo as one dict (e-invoicing, PDF);
- :func:`open_invoices`, :func:`apply_payment_to_invoice`, :func:`unapply_payment`,
  :func:`write_off_invoice`, :func:`issue_credit_memo` (dispute resolutions) — collections;
- :func:`find_invoice` — an invoice by number or ``{customer, seq}``.

Wherever a command or query takes ``invoice`` it accepts the number or ``{customer: X, seq: N}``
(the customer's N-th invoice in creation order; credit memos are not counted).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclasses_field
from dataclasses import replace as dataclass_replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from closeloop.billing.coupons import redemptions_for, restore, save_redemptions, uses_json
from closeloop.billing.discounts import Discounted, Redemption, apply_coupons, discounts_of
from closeloop.billing.drawdown import Wallet, credits_of, draw
from closeloop.billing.generator import generate
from closeloop.billing.model import (
    Account,
    BilledItem,
    Charge,
    DraftInvoice,
    Generation,
    MilestoneCompletion,
    PartialBilling,
    Subscription,
    UsageBook,
    dec_plain,
)
from closeloop.billing.subscriptions import load_changes
from closeloop.billing.usage import record_batch, usage_books
from closeloop.contracts.model import Change, replay
from closeloop.core.entities import get_entity
from closeloop.core.errors import (
    ConflictError,
    InsufficientAmountError,
    NotFoundError,
    TaxUndeterminedError,
    ValidationError,
)
from closeloop.core.exception_queue import on_resolve, open_exception
from closeloop.core.money import allocate, format_minor, round_minor, to_minor
from closeloop.core.periods import parse_date
from closeloop.core.registry import Limit, command, payload, query
from closeloop.core.uow import dumps
from closeloop.core.work import work_source

BILLING_ROLES = ("billing", "admin")
# Prepaid credits are an advance payment: not taxed when bought (Lago), taxed on the invoices they pay.
PREPAID_TAX_CODE = "prepaid_credit"
PREPAID_EXEMPTION = ("Advance payment for prepaid credits, not subject to VAT when bought: VAT is charged on the"
                     " invoices the credits pay")
# Line kinds an invoice.issued line names (revenue recognition treats them apart); others carry no kind.
SPECIAL_KINDS = ("discount", "minimum", "wallet_topup")
PARTITION_SIZE = 2000
# A run shared by workers is cut finer, so that several workers share it evenly to its end and each
# partition's transaction holds its locks (invoice numbers, ledger balances) briefly.
WORKER_PARTITION_SIZE = 500
ONE_DAY = timedelta(days=1)
OPEN_STATUSES = ("open", "partially_paid")


def _d(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _end_inclusive(value: str | None) -> str | None:
    return None if value is None else (date.fromisoformat(value) - ONE_DAY).isoformat()


# =========================================================================== loading


@dataclass
class _Loaded:
    subs: dict[int, list[Subscription]]
    items: dict[str, list[BilledItem]]
    books: dict[int, UsageBook]
    customers: dict[int, str]
    redemptions: dict[int, list[Redemption]] = dataclasses_field(default_factory=dict)


def _item_from_row(r: Any) -> BilledItem:
    (lid, contract_id, line_id, version, kind, net, p_start, p_end, s_from, s_to, p_amount, qty, count, credited,
     memo_credited, ref, credit_of) = r
    return BilledItem(id=int(lid), contract_id=contract_id, line_id=line_id, version=int(version or 0), kind=kind,
                      amount=int(net), period_start=None if p_start is None else date.fromisoformat(p_start),
                      period_end=None if p_end is None else date.fromisoformat(p_end),
                      service_from=None if s_from is None else date.fromisoformat(s_from),
                      service_to=None if s_to is None else date.fromisoformat(s_to),
                      period_amount=None if p_amount is None else int(p_amount), quantity=Decimal(qty),
                      usage_count=int(count), credited=int(credited), memo_credited=int(memo_credited), ref=ref,
                      credit_of=None if credit_of is None else int(credit_of))


_ITEM_COLS = ("l.id, l.contract_id, l.line_id, l.version, l.kind, l.net, l.period_start, l.period_end, l.service_from,"
              " l.service_to, l.period_amount, l.quantity, l.usage_count, l.credited, l.memo_credited, l.ref,"
              " l.credit_of")


def _chunks(values: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _changes_for(uow: Any, expected: Mapping[str, int]) -> dict[str, list[Change]]:
    """The change logs of contracts, parsed once per App: a cached log is used only while it has as many
    changes as the subscription row says (logs only grow), so another process's change is never missed."""
    out: dict[str, list[Change]] = defaultdict(list)
    shared = uow.services.cache("billing.changes") if uow.services is not None else {}
    missing = [c for c, n in expected.items() if len(shared.get(c) or ()) != n]
    for chunk in _chunks(missing):
        marks = ",".join("?" * len(chunk))
        for cid, payload_text in uow.all(f"SELECT contract_id, payload FROM billing_contract_change WHERE contract_id"
                                         f" IN ({marks}) ORDER BY contract_id, seq", list(chunk)):
            out[cid].append(Change.from_dict(json.loads(payload_text)))
    for cid in expected:
        if cid in out:
            value = out[cid]
            uow.after_commit(lambda c=cid, v=value: shared.__setitem__(c, v))
        elif cid in shared:
            out[cid] = shared[cid]
    return out


def _load(uow: Any, customer_ids: Sequence[int], entity: str | None, *, with_items: bool = True) -> _Loaded:
    subs: dict[int, list[Subscription]] = defaultdict(list)
    rows: list[Any] = []
    for chunk in _chunks(list(customer_ids)):
        marks = ",".join("?" * len(chunk))
        sql = ("SELECT contract_id, customer_id, customer, entity, currency, billing_day, scan_from, changes FROM"
               f" billing_subscription WHERE customer_id IN ({marks})")
        params: list[Any] = list(chunk)
        if entity:
            sql += " AND entity = ?"
            params.append(entity)
        rows.extend(uow.all(sql, params))
    contract_ids = [r[0] for r in rows]
    changes = _changes_for(uow, {r[0]: int(r[7]) for r in rows})
    milestones: dict[str, list[MilestoneCompletion]] = defaultdict(list)
    partials: dict[str, list[PartialBilling]] = defaultdict(list)
    items: dict[str, list[BilledItem]] = defaultdict(list)
    scan = {r[0]: r[6] for r in rows}
    for chunk in _chunks(contract_ids):
        marks = ",".join("?" * len(chunk))
        for cid, line_id, mid, day in uow.all("SELECT contract_id, line_id, milestone_id, date FROM billing_milestone"
                                              f" WHERE contract_id IN ({marks})", list(chunk)):
            milestones[cid].append(MilestoneCompletion(cid, line_id, mid, date.fromisoformat(day)))
        for pid, cid, line_id, amount, day, desc in uow.all(
                "SELECT id, contract_id, line_id, amount, date, description FROM billing_partial"
                f" WHERE contract_id IN ({marks}) ORDER BY id", list(chunk)):
            partials[cid].append(PartialBilling(int(pid), cid, line_id, int(amount), date.fromisoformat(day),
                                                desc or ""))
        if with_items:
            floor = min((scan[c] or "0000-00-00") for c in chunk)
            for r in uow.all(f"SELECT {_ITEM_COLS} FROM billing_line l JOIN billing_invoice i ON i.id = l.invoice_id"
                             f" WHERE l.contract_id IN ({marks}) AND i.status != 'void' AND l.kind != 'memo'"
                             " AND (l.period_end IS NULL OR l.period_end > ? OR l.kind = 'credit')",
                             [*chunk, _back(floor)]):
                items[r[1]].append(_item_from_row(r))
    unique: dict[str, str | None] = {}
    since: dict[int, str | None] = {}
    customers: dict[int, str] = {}
    for cid, customer_id, customer, ent, cur, bday, scan_from, _n in rows:
        log = changes.get(cid) or []
        if not log:
            continue
        sub = Subscription(cid, int(customer_id), ent, cur, int(bday), tuple(log), tuple(milestones.get(cid, ())),
                           tuple(partials.get(cid, ())), None if scan_from is None else date.fromisoformat(scan_from))
        subs[int(customer_id)].append(sub)
        customers[int(customer_id)] = customer
        for c in log:
            for ln in c.lines:
                if ln.list_terms.aggregation == "unique_count" and ln.list_terms.metric:
                    unique[ln.list_terms.metric] = ln.list_terms.aggregation_property
        floor = None if scan_from is None else _back(scan_from)
        prev = since.get(int(customer_id), "9999-12-31")
        since[int(customer_id)] = None if floor is None or prev is None else min(prev, floor)
    metered = [c for c, ss in subs.items() if any(ln.metered for s in ss for ch in s.changes for ln in ch.lines)
               or any(u.price is not None and u.price.metered for s in ss for ch in s.changes for u in ch.updates)]
    books = usage_books(uow, metered, since, unique) if metered else {}
    return _Loaded(subs, items, books, customers, redemptions_for(uow, list(subs)) if subs else {})


def _back(day: str) -> str:
    """A year before ``day``: the earliest start of a billing period that encloses it."""
    if day < "0001-12-31":
        return day
    return (date.fromisoformat(day) - timedelta(days=370)).isoformat()


def _accounts(loaded: _Loaded) -> list[tuple[Account, list[Subscription]]]:
    out = []
    for customer_id in sorted(loaded.subs, key=lambda c: (loaded.customers[c], c)):
        groups: dict[tuple[str, str], list[Subscription]] = defaultdict(list)
        for s in loaded.subs[customer_id]:
            groups[(s.entity, s.currency)].append(s)
        for (ent, cur), subs in sorted(groups.items()):
            out.append((Account(customer_id, loaded.customers[customer_id], ent, cur), subs))
    return out


def _generate(loaded: _Loaded, as_of: date, redeemed: list[Redemption] | None = None
              ) -> list[tuple[Account, list[Subscription], Any]]:
    """Every account's drafts, with the coupons in force applied (``redeemed`` collects the redemptions'
    new state for the writer)."""
    out = []
    for account, subs in _accounts(loaded):
        items = [it for s in subs for it in loaded.items.get(s.contract_id, ())]
        gen = generate(account, subs, items, loaded.books.get(account.customer_id) or UsageBook(), as_of)
        reds = loaded.redemptions.get(account.customer_id)
        if gen.invoices and (reds or any(it.kind == "discount" for it in items)):
            gen = _with_coupons(gen, reds or [], items, redeemed)
        out.append((account, subs, gen))
    return out


def _with_coupons(gen: Generation, reds: list[Redemption], items: Sequence[BilledItem],
                  redeemed: list[Redemption] | None) -> Generation:
    """Discount lines on each draft, in date order (:func:`closeloop.billing.discounts.apply_coupons`)."""
    known: dict[int, Discounted] = discounts_of([(it.id, it.amount, it.credit_of if it.kind == "discount" else None,
                                                  it.ref if it.kind == "discount" else None) for it in items])
    drafts = []
    state = list(reds)
    for draft in gen.invoices:
        cur = draft.account.currency
        new, state, uses, found = apply_coupons(draft, state, known)
        known.update(found)
        notes = tuple(f"Coupon {u['coupon']}: {u['discount']} off; {u['unused']} of its value unused on this invoice"
                      for u in uses_json(uses, cur) if "unused" in u)
        drafts.append(DraftInvoice(new.account, new.date, new.charges, new.item_ids, new.notes + notes))
    if redeemed is not None:
        before = {r.id: r for r in reds}
        redeemed.extend(r for r in state if r != before.get(r.id))
    return Generation(tuple(drafts), gen.next_date)


# =========================================================================== tax


@dataclass(frozen=True, slots=True)
class _LineTax:
    tax: int
    treatment: str
    rate: Decimal
    category: str
    jurisdiction: str | None


@dataclass(frozen=True, slots=True)
class _Taxed:
    lines: tuple[_LineTax, ...]
    groups: tuple[dict[str, Any], ...]
    mentions: tuple[str, ...]
    held: tuple[tuple[int, str], ...]


def _compute_tax(uow: Any, entity: str, customer: Any, currency: str, day: str,
                 lines: Sequence[tuple[int, int, str]]) -> _Taxed:
    """Tax through the tax area's contract (``closeloop.tax.service.compute_invoice_tax``). Prepaid-credit
    top-ups are advance payments, not supplies: not taxed (category O), taxed when the credits are used."""
    if any(code == PREPAID_TAX_CODE for _, _, code in lines):
        return _prepaid_tax(uow, entity, customer, currency, day, lines)
    try:
        from closeloop.tax.service import TaxLineInput, compute_invoice_tax
    except ModuleNotFoundError:  # no tax engine installed: nothing taxed, said so on the invoice
        zero = _LineTax(0, "out_of_scope", Decimal(0), "O", None)
        total = sum(n for _, n, _ in lines)
        return _Taxed(tuple(zero for _ in lines), ({"treatment": "out_of_scope", "rate": Decimal(0), "category": "O",
                                                    "taxable": total, "tax": 0, "exemption_reason": None,
                                                    "mention": None},), (), ())
    result = compute_invoice_tax(uow, seller_entity=entity, customer=customer, currency=currency, date=day,
                                 lines=[TaxLineInput(no, net, code) for no, net, code in lines])
    by_no = {ln.line_no: ln for ln in result.lines}
    out = []
    for no, _, _ in lines:
        t = by_no.get(no)
        out.append(_LineTax(0, "held", Decimal(0), "", None) if t is None else
                   _LineTax(int(t.tax_minor), t.treatment, Decimal(t.rate), t.category, t.jurisdiction))
    groups = tuple({"treatment": g.treatment, "rate": Decimal(g.rate), "category": g.category,
                    "taxable": int(g.taxable_minor), "tax": int(g.tax_minor), "exemption_reason": g.exemption_reason,
                    "mention": g.mention} for g in result.groups)
    return _Taxed(tuple(out), groups, tuple(result.mentions), tuple(result.held))


def _prepaid_tax(uow: Any, entity: str, customer: Any, currency: str, day: str,
                 lines: Sequence[tuple[int, int, str]]) -> _Taxed:
    prepaid = [x for x in lines if x[2] == PREPAID_TAX_CODE]
    others = [x for x in lines if x[2] != PREPAID_TAX_CODE]
    rest = _compute_tax(uow, entity, customer, currency, day, others) if others else _Taxed((), (), (), ())
    zero = _LineTax(0, "out_of_scope", Decimal(0), "O", None)
    by_no = dict(zip([x[0] for x in others], rest.lines, strict=True))
    out = tuple(zero if code == PREPAID_TAX_CODE else by_no[no] for no, _, code in lines)
    group = {"treatment": "out_of_scope", "rate": Decimal(0), "category": "O",
             "taxable": sum(n for _, n, _ in prepaid), "tax": 0, "exemption_reason": PREPAID_EXEMPTION,
             "mention": None}
    return _Taxed(out, (*rest.groups, group), rest.mentions, rest.held)


def _rate_text(rate: Decimal) -> str:
    if rate == 0:
        return "0"
    text = format(rate.normalize(), "f")
    return text


# =========================================================================== persisting invoices


@dataclass
class _Numbering:
    """Gapless numbers per entity and sequence, reserved under a row lock, written back once."""

    uow: Any
    next: dict[tuple[str, str], int]

    @classmethod
    def open(cls, uow: Any) -> _Numbering:
        return cls(uow, {})

    def take(self, entity: str, kind: str) -> str:
        key = (entity, kind)
        if key not in self.next:
            row = self.uow.one(f"SELECT next_value FROM billing_sequence WHERE entity = ? AND kind = ?"
                               f"{self.uow.for_update()}", key)
            if row is None:
                self.uow.execute("INSERT INTO billing_sequence (entity, kind, next_value) VALUES (?,?,1)"
                                 " ON CONFLICT (entity, kind) DO NOTHING", key)
                row = self.uow.one(f"SELECT next_value FROM billing_sequence WHERE entity = ? AND kind = ?"
                                   f"{self.uow.for_update()}", key)
            self.next[key] = int(row[0])
        n = self.next[key]
        self.next[key] = n + 1
        prefix = "INV" if kind == "invoice" else "CM"
        return f"{prefix}-{entity}-{n:06d}"

    def flush(self) -> None:
        if self.next:
            self.uow.executemany("UPDATE billing_sequence SET next_value = ? WHERE entity = ? AND kind = ?",
                                 [(v, e, k) for (e, k), v in self.next.items()])


def _status(total: int, balance: int, paid: int, credited: int, written_off: int) -> str:
    if total < 0:
        return "credited"
    if balance <= 0:
        if written_off > 0:
            return "written_off"
        if credited > 0 and paid == 0:
            return "credited"
        return "paid"
    return "partially_paid" if paid > 0 else "open"


def _line_payload(ln: Mapping[str, Any], currency: str) -> dict[str, Any]:
    out: dict[str, Any] = {"line_no": ln["line_no"], "description": ln["description"],
                           "revenue_role": ln["revenue_role"], "treatment": ln["treatment"],
                           "net": format_minor(ln["net"], currency), "tax": format_minor(ln["tax"], currency),
                           "tax_treatment": ln["tax_treatment"]}
    if ln["kind"] in SPECIAL_KINDS:
        out["kind"] = ln["kind"]
        if ln["kind"] == "wallet_topup" and ln.get("ref"):
            out["wallet"] = str(ln["ref"]).split(":", 1)[1]
    for key, value in (("period_start", ln.get("service_from")), ("period_end", _end_inclusive(ln.get("service_to"))),
                       ("contract_id", ln.get("contract_id")), ("line_id", ln.get("line_id")),
                       ("product_family", ln.get("product_family")),
                       ("performing_entity", ln.get("performing_entity"))):
        if value is not None:
            out[key] = value
    return out


def _issued_payload(inv: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    cur = inv["currency"]
    return {"invoice": inv["number"], "entity": inv["entity"], "customer": inv["customer"], "currency": cur,
            "date": inv["date"], "due_date": inv["due_date"], "subtotal": format_minor(inv["subtotal"], cur),
            "tax": format_minor(inv["tax"], cur), "total": format_minor(inv["total"], cur),
            "credit_created": format_minor(inv["credit_created"], cur),
            "lines": [_line_payload(ln, cur) for ln in lines]}


class _Writer:
    """Collects a partition's invoices, lines, credits and events and writes them set-based."""

    def __init__(self, uow: Any, run_id: int | None) -> None:
        self.uow = uow
        self.run_id = run_id
        self.numbers = _Numbering.open(uow)
        self.invoices: list[tuple[Any, ...]] = []
        self.lines: list[tuple[Any, ...]] = []
        self.issued: list[tuple[str, str, dict[str, Any]]] = []
        self.applied: list[tuple[str, str, dict[str, Any]]] = []
        self.subscription_updates: list[tuple[Any, ...]] = []
        self.held: list[tuple[int, str, str, int, str, str]] = []
        self.credits: dict[tuple[int, str, str], list[list[Any]]] = {}
        self.credit_rows: list[tuple[Any, ...]] = []
        self.credit_updates: dict[int, int] = {}
        self.uses: list[tuple[Any, ...]] = []
        self.seqs: dict[int, int] = {}
        self.customers: dict[int, Any] = {}
        self.count = 0
        self.held_count = 0
        self._ids: list[int] = []
        self._tax_memo: dict[Any, _Taxed] = {}
        self._line_ids: list[int] = []
        self._top_invoice = self._top_line = 0
        self._temp: dict[tuple[Account, int], int] = {}  # provisional item id of an account's generation -> line id
        self.wallets: dict[tuple[int, str, str], list[Wallet]] = {}
        self.wallet_changed: dict[str, Wallet] = {}
        self.wallet_txns: list[tuple[Any, ...]] = []
        self.wallet_events: list[tuple[str, str, str, dict[str, Any]]] = []
        self.redemptions: list[Redemption] = []

    def reserve(self, n: int, lines: int = 0) -> None:
        """Reserve ids for ``n`` invoices and ``lines`` lines at once (the id block; on SQLite the table's key)."""
        # on SQLite an id block continues the table's key, which the rows reserved here are not in yet: a second
        # reservation before the flush (an automatic wallet top-up) starts after the last one
        if n > 0:
            first = max(invoice_ids(self.uow, n), self._top_invoice + 1)
            self._ids.extend(range(first, first + n))
            self._top_invoice = first + n - 1
        if lines > 0:
            first = max(line_ids(self.uow, lines), self._top_line + 1)
            self._line_ids.extend(range(first, first + lines))
            self._top_line = first + lines - 1

    def _new_line_id(self) -> int:
        if not self._line_ids:
            self.reserve(0, 1)
        return self._line_ids.pop(0)

    def _new_id(self) -> int:
        if not self._ids:
            self.reserve(1)
        return self._ids.pop(0)

    def prepare(self, customer_ids: Sequence[int]) -> None:
        for chunk in _chunks(list(customer_ids)):
            marks = ",".join("?" * len(chunk))
            for cid, seq in self.uow.all(f"SELECT customer_id, MAX(seq) FROM billing_invoice WHERE customer_id IN"
                                         f" ({marks}) GROUP BY customer_id", list(chunk)):
                self.seqs[int(cid)] = int(seq or 0)
            for row in self.uow.all("SELECT id, customer_id, entity, currency, remaining FROM billing_credit"
                                    f" WHERE customer_id IN ({marks}) AND remaining > 0 ORDER BY date, id",
                                    list(chunk)):
                self.credits.setdefault((int(row[1]), row[2], row[3]), []).append([int(row[0]), int(row[4])])
        from closeloop.billing.wallets import load_wallets

        for w in load_wallets(self.uow, customer_ids):
            self.wallets.setdefault((w.customer_id, w.entity, w.currency), []).append(w)

    def _tax(self, entity: str, customer: Any, currency: str, day: str,
             lines: tuple[tuple[int, int, str], ...]) -> _Taxed:
        """Tax through the tax area, memoised within the partition: the outcome depends only on the seller,
        the buyer's tax facts, the currency, the date and the lines (most invoices of a run repeat them)."""
        facts = tuple(getattr(customer, f, None) for f in ("country", "region", "postal_code", "tax_id",
                                                           "tax_id_valid", "tax_exempt", "exemption_ref"))
        key = (entity, facts, currency, day, lines)
        found = self._tax_memo.get(key)
        if found is None:
            found = self._tax_memo[key] = _compute_tax(self.uow, entity, customer, currency, day, list(lines))
        return found

    def customer(self, account: Account) -> Any:
        if account.customer_id not in self.customers:
            from closeloop.customers.service import customer_by_id

            self.customers[account.customer_id] = customer_by_id(self.uow, account.customer_id)
        return self.customers[account.customer_id]

    def add(self, draft: DraftInvoice) -> dict[str, Any]:
        uow = self.uow
        account = draft.account
        customer = self.customer(account)
        cur = account.currency
        day = draft.date.isoformat()
        charges = draft.charges
        taxed = self._tax(account.entity, customer, cur, day,
                          tuple((i, c.amount, c.tax_code) for i, c in enumerate(charges, 1)))
        invoice_id = self._new_id()
        seq = self.seqs.get(account.customer_id, 0) + 1
        self.seqs[account.customer_id] = seq
        terms = int(getattr(customer, "payment_terms_days", None) or account.payment_terms_days)
        due = (draft.date + timedelta(days=terms)).isoformat()
        subtotal = sum(c.amount for c in charges)
        tax = sum(t.tax for t in taxed.lines)
        total = subtotal + tax
        held = bool(taxed.held)
        lines = []
        temps = draft.item_ids or (0,) * len(charges)
        for i, (c, t, temp) in enumerate(zip(charges, taxed.lines, temps, strict=True), 1):
            line_id = self._new_line_id()
            if temp:
                self._temp[(account, temp)] = line_id
            credit_of = c.credit_of
            if credit_of is not None and credit_of < 0:
                credit_of = self._temp[(account, credit_of)]
            lines.append(_line_row(line_id, invoice_id, i, c, t, credit_of))
        line_dicts = [_line_dict(r) for r in lines]
        inv: dict[str, Any] = {"id": invoice_id, "customer": account.customer, "customer_id": account.customer_id,
                               "entity": account.entity, "currency": cur, "date": day, "due_date": due,
                               "subtotal": subtotal, "tax": tax, "total": total, "seq": seq}
        credit_created = credit_applied = wallet_applied = 0
        number = None
        if held:
            status = "held"
            balance = total
            reasons = "; ".join(f"line {no}: {why}" for no, why in taxed.held)
            self.held.append((invoice_id, account.entity, account.customer, total, cur, reasons))
            self.held_count += 1
        else:
            number = self.numbers.take(account.entity, "invoice")
            inv["number"] = number
            if total < 0:
                credit_created = -total
                self.credit_rows.append((account.customer_id, account.entity, cur, invoice_id, day, credit_created))
                balance = 0
            else:
                credit_applied = self._apply_credit(account, invoice_id, number, day, total)
                balance = total - credit_applied
            inv["credit_created"] = credit_created
            self.issued.append((number, account.entity, _issued_payload(inv, line_dicts)))
            wallet_applied = self._apply_wallets(account, invoice_id, number, draft.date, line_dicts, balance)
            balance -= wallet_applied
            status = _status(total, balance, 0, 0, 0)
            self.count += 1
        self.invoices.append((invoice_id, number, "invoice", account.customer_id, account.customer, seq,
                              account.entity, cur, day, due, status, subtotal, tax, total, credit_created,
                              credit_applied, 0, 0, 0, balance, wallet_applied, None, None,
                              dumps([_group_dict(g, cur) for g in taxed.groups]),
                              dumps([*taxed.mentions, *draft.notes]),
                              "; ".join(f"line {no}: {why}" for no, why in taxed.held) or None, self.run_id, terms,
                              None if held else uow.now(), uow.now()))
        self.lines.extend(lines)
        if not held and not any(c.kind == "wallet_topup" for c in charges):
            self._auto_topups(account, draft.date)
        return {"id": invoice_id, "number": number, "status": status, "total": total, "held": held}

    # ------------------------------------------------------------------ prepaid credits

    def _apply_wallets(self, account: Account, invoice_id: int, number: str, day: date,
                       lines: Sequence[Mapping[str, Any]], due: int) -> int:
        """Draw the customer's wallets for this invoice (after tax, customer credit first): usage lines with their
        tax, or the whole invoice, per wallet; never more than a wallet holds or the invoice owes."""
        wallets = self.wallets.get((account.customer_id, account.entity, account.currency))
        if not wallets or due <= 0 or any(ln["kind"] == "wallet_topup" for ln in lines):
            return 0
        usage = sum(ln["net"] + ln["tax"] for ln in lines if ln["treatment"] == "usage")
        applied = 0
        for scope, eligible in (("usage", usage), ("all", due)):
            group = [w for w in wallets if w.applies_to == scope]
            if not group:
                continue
            after, taken = draw(group, eligible, due - applied, day)
            by_id = {w.wallet_id: w for w in after}
            for wallet_id, amount in taken:
                w = by_id[wallet_id]
                applied += amount
                self._wallet_moved(w, "drawdown", day, -amount, invoice_id, number)
                self.wallet_events.append(("wallet.applied", wallet_id, account.entity, {
                    "wallet": wallet_id, "invoice": number, "customer": account.customer, "entity": account.entity,
                    "currency": account.currency, "date": day.isoformat(),
                    "amount": format_minor(amount, account.currency),
                    "credits": dec_plain(credits_of(amount, w.rate, w.currency)),
                    "balance": format_minor(w.balance, account.currency)}))
            wallets[:] = [by_id.get(w.wallet_id, w) for w in wallets]
        return applied

    def _wallet_moved(self, w: Wallet, kind: str, day: date, amount: int, invoice_id: int | None,
                      number: str | None, auto: bool = False) -> None:
        self.wallet_changed[w.wallet_id] = w
        self.wallet_txns.append((w.wallet_id, kind, day.isoformat(), amount,
                                 dec_plain(credits_of(abs(amount), w.rate, w.currency)), invoice_id, number, w.balance,
                                 auto, self.uow.now()))

    def _auto_topups(self, account: Account, day: date) -> None:
        """A wallet with an automatic top-up rule that a draw-down took to its threshold or below is topped up
        at once: a top-up invoice of its own, dated the same day."""
        wallets = self.wallets.get((account.customer_id, account.entity, account.currency)) or []
        for i, w in enumerate(wallets):
            if (w.threshold is None or not w.topup_credits or w.balance > w.threshold or w.status != "active"
                    or w.wallet_id not in self.wallet_changed or (w.expires is not None and day >= w.expires)):
                continue
            from closeloop.billing.wallets import topup_draft

            draft, amount = topup_draft(account, w, w.topup_credits, day)
            topped = dataclass_replace(w, balance=w.balance + amount)
            wallets[i] = topped
            inv = self.add(draft)
            self._wallet_moved(topped, "topup", day, amount, inv["id"], inv["number"], auto=True)
            self.wallet_events.append(("wallet.topped_up", w.wallet_id, account.entity, {
                "wallet": w.wallet_id, "customer": account.customer, "entity": account.entity,
                "currency": account.currency, "date": day.isoformat(), "amount": format_minor(amount, w.currency),
                "credits": dec_plain(w.topup_credits), "invoice": inv["number"],
                "balance": format_minor(topped.balance, w.currency), "auto": True}))

    def _apply_credit(self, account: Account, invoice_id: int, number: str, day: str, total: int) -> int:
        lots = self.credits.get((account.customer_id, account.entity, account.currency))
        if not lots or total <= 0:
            return 0
        applied = 0
        for lot in lots:
            if applied >= total:
                break
            use = min(lot[1], total - applied)
            if use <= 0:
                continue
            lot[1] -= use
            applied += use
            if lot[0] > 0:
                self.credit_updates[lot[0]] = lot[1]
            self.uses.append((lot[0], invoice_id, use, day))
        if applied:
            self.applied.append((account.customer, account.entity, {
                "customer": account.customer, "invoice": number, "entity": account.entity,
                "currency": account.currency, "date": day, "amount": format_minor(applied, account.currency)}))
        return applied

    def flush(self) -> None:
        uow = self.uow
        if self.invoices:
            uow.executemany(
                "INSERT INTO billing_invoice (id, number, kind, customer_id, customer, seq, entity, currency, date,"
                " due_date, status, subtotal, tax, total, credit_created, credit_applied, paid, credited, written_off,"
                " balance, wallet_applied, original_id, reason, tax_breakdown, mentions, held_reason, run_id,"
                " payment_terms_days, issued_at, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                self.invoices)
            uow.executemany(_LINE_INSERT, self.lines)
            credit_of = [(-ln[_CREDIT_AMOUNT], ln[_CREDIT_OF]) for ln in self.lines if ln[_KIND] == "credit"
                         and ln[_CREDIT_OF] is not None]
            if credit_of:
                uow.executemany("UPDATE billing_line SET credited = credited + ? WHERE id = ?", credit_of)
        if self.credit_rows:
            ids = []
            for row in self.credit_rows:
                ids.append(uow.scalar("INSERT INTO billing_credit (customer_id, entity, currency, source_id, date,"
                                      " amount, remaining) VALUES (?,?,?,?,?,?,?) RETURNING id", (*row, row[-1])))
        if self.credit_updates:
            uow.executemany("UPDATE billing_credit SET remaining = ? WHERE id = ?",
                            [(v, k) for k, v in self.credit_updates.items()])
        if self.uses:
            uow.executemany("INSERT INTO billing_credit_use (credit_id, invoice_id, amount, date, auto)"
                            " VALUES (?,?,?,?,?)", [(*u, True) for u in self.uses])
        self.numbers.flush()
        if self.issued:
            uow.emit_many("invoice.issued", "invoice", [(n, e, p) for n, e, p in self.issued])
        if self.applied:
            uow.emit_many("credit.applied", "customer", [(c, e, p) for c, e, p in self.applied])
        for invoice_id, entity, customer, total, cur, reasons in self.held:
            open_exception(uow, "tax_undetermined", record_type="invoice", record_id=str(invoice_id),
                           message=f"invoice for {customer} held: tax cannot be determined ({reasons}); fix the"
                                   " customer or tax data, then resolve with release",
                           entity=entity, amount=total, currency=cur, dedup_key=f"tax_undetermined:invoice:{invoice_id}",
                           details={"invoice_id": invoice_id, "customer": customer})
        if self.subscription_updates:
            uow.executemany("UPDATE billing_subscription SET scan_from = ?, next_date = ? WHERE contract_id = ?",
                            self.subscription_updates)
        save_redemptions(uow, self.redemptions)
        if self.wallet_changed:
            uow.executemany("UPDATE billing_wallet SET balance = ? WHERE wallet_id = ?",
                            [(w.balance, w.wallet_id) for w in self.wallet_changed.values()])
            uow.executemany("INSERT INTO billing_wallet_txn (wallet_id, kind, date, amount, credits, invoice_id, invoice,"
                            " balance_after, auto, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)", self.wallet_txns)
        for event_type, wallet_id, entity, body in self.wallet_events:
            uow.emit(event_type, "wallet", wallet_id, body, entity=entity)


_LINE_FIELDS = ("id", "invoice_id", "line_no", "kind", "description", "sku", "contract_id", "line_id", "version",
                "quantity", "unit_price", "net", "tax", "tax_treatment", "tax_rate", "tax_category", "tax_code",
                "jurisdiction", "revenue_role", "treatment", "product_family", "performing_entity", "period_start",
                "period_end", "service_from", "service_to", "period_amount", "usage_count", "credited",
                "memo_credited", "memo_tax_credited", "ref", "credit_of")
_LINE_COLS = ", ".join(_LINE_FIELDS)
_LINE_N = len(_LINE_FIELDS)
_KIND = _LINE_FIELDS.index("kind")
_CREDIT_OF = _LINE_FIELDS.index("credit_of")
_CREDIT_AMOUNT = _LINE_FIELDS.index("net")


_LINE_INSERT = f"INSERT INTO billing_line ({_LINE_COLS}) VALUES ({','.join('?' * _LINE_N)})"


def line_ids(uow: Any, n: int) -> int:
    """The first of ``n`` new billing_line ids (given explicitly, on both engines)."""
    return int(uow.next_ids("billing_line", n, table="billing_line"))


def invoice_ids(uow: Any, n: int) -> int:
    """The first of ``n`` new billing_invoice ids (ids are always given explicitly, on both engines)."""
    return int(uow.next_ids("billing_invoice", n, table="billing_invoice"))


def _line_row(line_id: int, invoice_id: int, line_no: int, c: Charge, t: _LineTax,
              credit_of: int | None) -> tuple[Any, ...]:
    return (line_id, invoice_id, line_no, c.kind, c.description, c.sku, c.contract_id, c.line_id, c.version,
            dec_plain(c.quantity), None if c.unit_price is None else dec_plain(c.unit_price), c.amount, t.tax,
            t.treatment, _rate_text(t.rate), t.category, c.tax_code, t.jurisdiction, c.revenue_role, c.treatment,
            c.product_family, c.performing_entity, _d(c.period_start), _d(c.period_end), _d(c.service_from),
            _d(c.service_to), c.period_amount, c.usage_count, 0, 0, 0, c.ref, credit_of)


def _line_dict(row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(_LINE_FIELDS, row, strict=True))


def _group_dict(g: Mapping[str, Any], currency: str) -> dict[str, Any]:
    return {"treatment": g["treatment"], "rate": _rate_text(Decimal(g["rate"])), "category": g["category"],
            "taxable": g["taxable"], "tax": g["tax"], "exemption_reason": g.get("exemption_reason"),
            "mention": g.get("mention")}


# =========================================================================== usage.record


@payload
class UsageRecord:
    customer: str | None = None
    metric: str | None = None
    quantity: Decimal | None = None
    at: str | None = None
    key: str | None = None
    properties: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None


@command("usage.record", UsageRecord, roles=BILLING_ROLES + ("implementation",),
         summary="Record metered usage (one event, or a batch in events), idempotent by key")
def usage_record(uow: Any, cmd: UsageRecord) -> dict[str, Any]:
    if cmd.events is not None:
        if any(getattr(cmd, f) is not None for f in ("customer", "metric", "quantity", "at", "key", "properties")):
            raise ValidationError("give either one event's fields or events, not both", field="events")
        return record_batch(uow, cmd.events)
    missing = [f for f in ("customer", "metric", "quantity", "at", "key") if getattr(cmd, f) is None]
    if missing:
        raise ValidationError(f"usage.record: {', '.join(missing)}: required field is missing", field=missing[0])
    return record_batch(uow, [{"customer": cmd.customer, "metric": cmd.metric, "quantity": cmd.quantity,
                               "at": cmd.at, "key": cmd.key, "properties": cmd.properties}])


# =========================================================================== billing.run


@payload
class BillingRun:
    as_of: str
    entity: str | None = None
    dry_run: bool = False
    customer: str | None = None
    # Leave the partitions to ``closeloop worker`` processes (one transaction each, shared by as many
    # workers as run) instead of billing them all in this command's transaction.
    workers: bool = False


def _last_run(uow: Any, entity: str | None) -> str | None:
    if entity:
        return uow.scalar("SELECT MAX(as_of) FROM billing_run WHERE status = 'completed' AND (entity IS NULL OR entity = ?)",
                          (entity,))
    return uow.scalar("SELECT MAX(as_of) FROM billing_run WHERE status = 'completed'")


def _candidates(uow: Any, as_of: str, entity: str | None, customer_id: int | None = None,
                between: tuple[int, int] | None = None) -> list[int]:
    sql = "SELECT DISTINCT customer_id FROM billing_subscription WHERE next_date IS NOT NULL AND next_date <= ?"
    params: list[Any] = [as_of]
    if between is not None:
        sql += " AND customer_id BETWEEN ? AND ?"
        params.extend(between)
    if entity:
        sql += " AND entity = ?"
        params.append(entity)
    if customer_id is not None:
        sql += " AND customer_id = ?"
        params.append(customer_id)
    return [int(r[0]) for r in uow.all(sql + " ORDER BY customer_id", params)]


def start_run(uow: Any, as_of: date, entity: str | None, partition_size: int | None = None) -> tuple[int, int]:
    """Create a bill run and its partitions (customers due by ``as_of``); returns (run id, partitions)."""
    partition_size = partition_size or PARTITION_SIZE
    last = _last_run(uow, entity)
    if last is not None and as_of.isoformat() < last:
        raise ValidationError(f"bill run as of {as_of} is before the last bill run ({last}); a bill run date never"
                              " goes back", field="as_of", last=last)
    if entity:
        get_entity(uow, entity)
    customers = _candidates(uow, as_of.isoformat(), entity)
    parts = max(1, -(-len(customers) // partition_size)) if customers else 0
    run_id = int(uow.scalar(
        "INSERT INTO billing_run (as_of, entity, status, partitions, invoices, held, actor, started_at)"
        " VALUES (?,?,'running',?,0,0,?,?) RETURNING id", (as_of.isoformat(), entity, parts, uow.actor, uow.now())))
    bounds = [customers[p * partition_size:(p + 1) * partition_size] for p in range(parts)]
    uow.executemany("INSERT INTO billing_run_partition (run_id, partition, status, invoices, first_customer,"
                    " last_customer) VALUES (?,?,'pending',0,?,?)",
                    [(run_id, p, ids[0], ids[-1]) for p, ids in enumerate(bounds)])
    return run_id, parts


def partition_customers(uow: Any, run_id: int, partition: int) -> list[int]:
    """The customers of a partition still due (fixed at the start of the run: a range of customer ids)."""
    row = uow.one("SELECT r.as_of, r.entity, p.first_customer, p.last_customer FROM billing_run r JOIN"
                  " billing_run_partition p ON p.run_id = r.id WHERE r.id = ? AND p.partition = ?", (run_id, partition))
    if row is None or row[2] is None:
        return []
    return _candidates(uow, row[0], row[1], between=(int(row[2]), int(row[3])))


def claim_partition(uow: Any, run_id: int, worker: str) -> int | None:
    """Claim the next pending partition of a run (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""
    lock = "" if uow.dialect.is_sqlite else " FOR UPDATE SKIP LOCKED"
    row = uow.one("SELECT partition FROM billing_run_partition WHERE run_id = ? AND status = 'pending'"
                  f" ORDER BY partition LIMIT 1{lock}", (run_id,))
    if row is None:
        return None
    uow.execute("UPDATE billing_run_partition SET claimed_by = ? WHERE run_id = ? AND partition = ?",
                (worker, run_id, int(row[0])))
    return int(row[0])


def bill_partition(uow: Any, run_id: int, partition: int, customer_ids: Sequence[int], as_of: date,
                   entity: str | None) -> dict[str, int]:
    """Generate and issue the invoices of one partition's customers (one transaction)."""
    loaded = _load(uow, customer_ids, entity)
    writer = _Writer(uow, run_id)
    writer.prepare(list(loaded.subs))
    generated = _generate(loaded, as_of, writer.redemptions)
    writer.reserve(sum(len(gen.invoices) for _, _, gen in generated),
                   sum(len(d.charges) for _, _, gen in generated for d in gen.invoices))
    for _account, subs, gen in generated:
        for draft in gen.invoices:
            writer.add(draft)
        nxt = None if gen.next_date is None else gen.next_date.isoformat()
        for s in subs:
            writer.subscription_updates.append((as_of.isoformat(), nxt, s.contract_id))
    writer.flush()
    uow.execute("UPDATE billing_run_partition SET status = 'done', invoices = ?, done_at = ? WHERE run_id = ?"
                " AND partition = ?", (writer.count + writer.held_count, uow.now(), run_id, partition))
    return {"invoices": writer.count, "held": writer.held_count}


def finish_run(uow: Any, run_id: int) -> dict[str, Any]:
    pending = uow.scalar("SELECT COUNT(*) FROM billing_run_partition WHERE run_id = ? AND status != 'done'", (run_id,))
    row = uow.one("SELECT as_of, entity FROM billing_run WHERE id = ?", (run_id,))
    counts = uow.one("SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'held' THEN 1 ELSE 0 END), 0) FROM billing_invoice"
                     " WHERE run_id = ?", (run_id,))
    if int(pending) == 0:
        uow.execute("UPDATE billing_run SET status = 'completed', invoices = ?, held = ?, completed_at = ? WHERE id = ?",
                    (int(counts[0]) - int(counts[1]), int(counts[1]), uow.now(), run_id))
        from closeloop.billing.wallets import expire_due

        expire_due(uow, date.fromisoformat(row[0]), row[1])
    numbers = [r[0] for r in uow.all("SELECT number FROM billing_invoice WHERE run_id = ? AND number IS NOT NULL"
                                     " ORDER BY id", (run_id,))]
    return {"run": run_id, "as_of": row[0], "entity": row[1], "status": "completed" if int(pending) == 0 else "running",
            "invoices": int(counts[0]) - int(counts[1]), "held": int(counts[1]),
            "first": numbers[0] if numbers else None, "last": numbers[-1] if numbers else None}


_FAULT: dict[str, Any] = {"after_partitions": None}


@command("billing.run", BillingRun, roles=BILLING_ROLES,
         summary="Bill run: issue every invoice due up to as_of (dry_run: show them, save nothing)")
def billing_run(uow: Any, cmd: BillingRun) -> dict[str, Any]:
    as_of = parse_date(cmd.as_of, field="as_of")
    if cmd.dry_run:
        return {"as_of": cmd.as_of, "dry_run": True, **preview(uow, as_of, cmd.entity, cmd.customer)}
    if cmd.customer:
        raise ValidationError("a bill run covers every customer; use billing_preview for one customer",
                              field="customer")
    running = uow.one("SELECT r.id FROM billing_run r WHERE r.status = 'running' AND EXISTS (SELECT 1 FROM"
                      " billing_run_partition p WHERE p.run_id = r.id AND p.status <> 'done') ORDER BY r.id LIMIT 1")
    if running is not None:
        raise ConflictError(f"bill run {int(running[0])} is still being billed by workers; start the next one when"
                            " it has completed (query billing_runs)", field="as_of", run=int(running[0]))
    run_id, parts = start_run(uow, as_of, cmd.entity, WORKER_PARTITION_SIZE if cmd.workers else None)
    if cmd.workers and parts:
        return {"run": run_id, "as_of": as_of.isoformat(), "entity": cmd.entity, "status": "running",
                "partitions": parts, "invoices": 0, "held": 0,
                "note": "the partitions are billed by `closeloop worker` processes; query billing_runs for progress"}
    for p in range(parts):
        if _FAULT["after_partitions"] is not None and p >= _FAULT["after_partitions"]:
            raise RuntimeError("injected crash during the bill run")
        bill_partition(uow, run_id, p, partition_customers(uow, run_id, p), as_of, cmd.entity)
    return finish_run(uow, run_id)


@work_source("billing.run_partitions")
def bill_next_partition(app: Any, worker: str) -> int:
    """A worker's share of bill runs started with ``workers``: claim one pending partition of the oldest
    running run and bill it in one transaction. A run whose partitions are all done is completed by the
    next worker that looks (two workers billing the last two partitions at once each still see the
    other's as pending, so completion cannot be left to the one that bills the last)."""
    with app.unit_of_work(write=False) as uow:
        row = uow.one("SELECT r.id, r.as_of, r.entity, (SELECT COUNT(*) FROM billing_run_partition p"
                      " WHERE p.run_id = r.id AND p.status <> 'done') FROM billing_run r WHERE r.status = 'running'"
                      " ORDER BY r.id LIMIT 1")
    if row is None:
        return 0
    run_id, day, entity, left = int(row[0]), date.fromisoformat(row[1]), row[2], int(row[3])
    with app.unit_of_work() as uow:
        if not left:
            lock = "" if uow.dialect.is_sqlite else " FOR UPDATE"
            status = uow.scalar(f"SELECT status FROM billing_run WHERE id = ?{lock}", (run_id,))
            if status != "running":
                return 0
            return 1 if finish_run(uow, run_id)["status"] == "completed" else 0
        part = claim_partition(uow, run_id, worker)
        if part is None:
            return 0
        bill_partition(uow, run_id, part, partition_customers(uow, run_id, part), day, entity)
    return 1


def run_in_partitions(app: Any, as_of: str, entity: str | None = None, *, partition_size: int | None = None,
                      worker: str = "worker", run_id: int | None = None,
                      stop_after: int | None = None) -> dict[str, Any]:
    """A bill run with one transaction per partition (what workers share): start it (or resume ``run_id``),
    claim and bill partitions until none is left, then complete it. ``stop_after`` simulates a crash."""
    day = parse_date(as_of, field="as_of")
    if run_id is None:
        with app.unit_of_work() as uow:
            run_id, _ = start_run(uow, day, entity, partition_size)
    done = 0
    while True:
        if stop_after is not None and done >= stop_after:
            return {"run": run_id, "status": "interrupted"}
        with app.unit_of_work() as uow:
            part = claim_partition(uow, run_id, worker)
            if part is None:
                break
            bill_partition(uow, run_id, part, partition_customers(uow, run_id, part), day, entity)
        done += 1
    with app.unit_of_work() as uow:
        out = finish_run(uow, run_id)
    app.dispatch()
    return out


def preview(uow: Any, as_of: date, entity: str | None, customer: str | None) -> dict[str, Any]:
    """What a bill run would issue (computed exactly as a run does, nothing saved)."""
    customer_id = None
    if customer is not None:
        from closeloop.customers.service import get_customer

        customer_id = get_customer(uow, customer).id
    ids = _candidates(uow, as_of.isoformat(), entity, customer_id)
    loaded = _load(uow, ids, entity)
    out = []
    customers: dict[int, Any] = {}
    for account, _subs, gen in _generate(loaded, as_of):
        for draft in gen.invoices:
            if account.customer_id not in customers:
                from closeloop.customers.service import customer_by_id

                customers[account.customer_id] = customer_by_id(uow, account.customer_id)
            out.append(_draft_view(uow, draft, customers[account.customer_id]))
    total: dict[str, int] = defaultdict(int)
    for inv in out:
        total[inv["currency"]] += to_minor(inv["total"], inv["currency"])
    return {"count": len(out), "invoices": out, "totals": {c: format_minor(v, c) for c, v in sorted(total.items())}}


def _draft_view(uow: Any, draft: DraftInvoice, customer: Any) -> dict[str, Any]:
    a = draft.account
    cur = a.currency
    taxed = _compute_tax(uow, a.entity, customer, cur, draft.date.isoformat(),
                         [(i, c.amount, c.tax_code) for i, c in enumerate(draft.charges, 1)])
    subtotal = sum(c.amount for c in draft.charges)
    tax = sum(t.tax for t in taxed.lines)
    terms = int(getattr(customer, "payment_terms_days", 30))
    return {"number": None, "customer": a.customer, "entity": a.entity, "date": draft.date.isoformat(),
            "due_date": (draft.date + timedelta(days=terms)).isoformat(), "currency": cur,
            "subtotal": format_minor(subtotal, cur), "tax": format_minor(tax, cur),
            "total": format_minor(subtotal + tax, cur), "balance": format_minor(max(subtotal + tax, 0), cur),
            "status": "held" if taxed.held else "draft",
            "lines": [{"line_no": i, "description": c.description, "quantity": dec_plain(c.quantity),
                       "amount": format_minor(c.amount, cur), "tax": format_minor(t.tax, cur),
                       "tax_treatment": t.treatment, "period_start": _d(c.service_from),
                       "period_end": _end_inclusive(_d(c.service_to)), "kind": c.kind}
                      for i, (c, t) in enumerate(zip(draft.charges, taxed.lines, strict=True), 1)]}


# =========================================================================== milestones and partial billing


def _subscription(uow: Any, contract_id: str) -> tuple[Any, list[Change]]:
    row = uow.one(f"SELECT contract_id, customer_id, entity, currency, next_date FROM billing_subscription WHERE"
                  f" contract_id = ?{uow.for_update()}", (contract_id,))
    if row is None:
        raise NotFoundError(f"contract {contract_id!r} has no subscription in billing (no contract event was"
                            " received for it)", field="contract_id", record=contract_id)
    return row, load_changes(uow, contract_id)


def _line_of(changes: list[Change], line_id: str, contract_id: str) -> Any:
    tl = replay(changes)
    segs = [s for s in tl.segments if s.line.line_id == line_id]
    if not segs:
        raise NotFoundError(f"contract {contract_id} has no line {line_id!r}", field="line_id", record=line_id)
    return segs[0].line


def _due(uow: Any, contract_id: str, day: str) -> None:
    uow.execute("UPDATE billing_subscription SET next_date = CASE WHEN next_date IS NULL OR next_date > ? THEN ?"
                " ELSE next_date END WHERE contract_id = ?", (day, day, contract_id))


@payload
class MilestoneComplete:
    contract_id: str
    line_id: str
    milestone_id: str
    date: str


@command("milestone.complete", MilestoneComplete, roles=BILLING_ROLES + ("sales_ops",),
         summary="Record a completed milestone: the next bill run on or after its date invoices it")
def milestone_complete(uow: Any, cmd: MilestoneComplete) -> dict[str, Any]:
    day = parse_date(cmd.date).isoformat()
    _row, changes = _subscription(uow, cmd.contract_id)
    line = _line_of(changes, cmd.line_id, cmd.contract_id)
    amounts = {m.milestone_id: m.amount for m in line.milestones}
    if cmd.milestone_id not in amounts:
        raise NotFoundError(f"line {cmd.line_id} of contract {cmd.contract_id} has no milestone {cmd.milestone_id!r}"
                            f" (it has {', '.join(amounts) or 'none'})", field="milestone_id", record=cmd.milestone_id)
    existing = uow.one("SELECT date FROM billing_milestone WHERE contract_id = ? AND line_id = ? AND milestone_id = ?",
                       (cmd.contract_id, cmd.line_id, cmd.milestone_id))
    if existing is not None:
        if existing[0] == day:
            return {"contract_id": cmd.contract_id, "milestone_id": cmd.milestone_id, "date": day, "recorded": False}
        raise ConflictError(f"milestone {cmd.milestone_id} was already completed on {existing[0]}",
                            field="milestone_id", record=cmd.milestone_id)
    uow.execute("INSERT INTO billing_milestone (contract_id, line_id, milestone_id, date, recorded_at, actor)"
                " VALUES (?,?,?,?,?,?)", (cmd.contract_id, cmd.line_id, cmd.milestone_id, day, uow.now(), uow.actor))
    _due(uow, cmd.contract_id, day)
    uow.emit("milestone.completed", "contract", cmd.contract_id,
             {"contract_id": cmd.contract_id, "line_id": cmd.line_id, "milestone_id": cmd.milestone_id, "date": day,
              "amount": format_minor(amounts[cmd.milestone_id], line.currency), "currency": line.currency})
    return {"contract_id": cmd.contract_id, "line_id": cmd.line_id, "milestone_id": cmd.milestone_id, "date": day,
            "amount": format_minor(amounts[cmd.milestone_id], line.currency), "recorded": True}


@payload
class BillingPartial:
    contract_id: str
    line_id: str
    date: str
    amount: Decimal | None = None
    percent: Decimal | None = None
    description: str | None = None


@command("billing.partial", BillingPartial, roles=BILLING_ROLES,
         summary="Bill part of a one-time line on a date (amount or percent); the rest is billed later")
def billing_partial(uow: Any, cmd: BillingPartial) -> dict[str, Any]:
    day = parse_date(cmd.date).isoformat()
    _row, changes = _subscription(uow, cmd.contract_id)
    line = _line_of(changes, cmd.line_id, cmd.contract_id)
    cur = line.currency
    if line.recurring or line.metered or line.milestones:
        raise ValidationError(f"line {cmd.line_id} is {'metered' if line.metered else 'recurring' if line.recurring else 'billed by milestones'}:"
                              " partial billing applies to one-time lines", field="line_id", record=cmd.line_id)
    if (cmd.amount is None) == (cmd.percent is None):
        raise ValidationError("give amount or percent (one of them)", field="amount")
    total = line.period_amount or 0
    if cmd.percent is not None:
        if not 0 < cmd.percent <= 100:
            raise ValidationError(f"percent {cmd.percent} must be above 0 and at most 100", field="percent")
        amount = round_minor(Decimal(total) * Decimal(cmd.percent) / 100)
    else:
        amount = to_minor(cmd.amount, cur, field="amount")  # type: ignore[arg-type]
        if amount <= 0:
            raise ValidationError("a partial billing amount is positive", field="amount")
    earlier = int(uow.scalar("SELECT COALESCE(SUM(amount), 0) FROM billing_partial WHERE contract_id = ? AND line_id = ?",
                             (cmd.contract_id, cmd.line_id)))
    billed = uow.scalar("SELECT COUNT(*) FROM billing_line l JOIN billing_invoice i ON i.id = l.invoice_id WHERE"
                        " l.contract_id = ? AND l.line_id = ? AND l.kind = 'one_time' AND i.status != 'void'",
                        (cmd.contract_id, cmd.line_id))
    left = 0 if int(billed) else total - earlier
    if amount > left:
        raise InsufficientAmountError(f"line {cmd.line_id}: {format_minor(amount, cur)} is more than is left to bill"
                                      f" ({format_minor(left, cur)} of {format_minor(total, cur)})", field="amount",
                                      left=format_minor(left, cur))
    pid = uow.scalar("INSERT INTO billing_partial (contract_id, line_id, amount, date, description, recorded_at)"
                     " VALUES (?,?,?,?,?,?) RETURNING id", (cmd.contract_id, cmd.line_id, amount, day, cmd.description,
                                                           uow.now()))
    _due(uow, cmd.contract_id, day)
    return {"partial": int(pid), "contract_id": cmd.contract_id, "line_id": cmd.line_id, "date": day,
            "amount": format_minor(amount, cur), "remaining": format_minor(left - amount, cur)}


# =========================================================================== finding invoices


_INV_COLS = ("id, number, kind, customer_id, customer, seq, entity, currency, date, due_date, status, subtotal, tax,"
             " total, credit_created, credit_applied, paid, credited, written_off, balance, original_id, reason,"
             " tax_breakdown, mentions, held_reason, run_id, payment_terms_days, issued_at, wallet_applied")
_INV_FIELDS = [c.strip() for c in _INV_COLS.split(",")]


def _inv(row: Any) -> dict[str, Any]:
    return dict(zip(_INV_FIELDS, row, strict=True))


def find_invoice(uow: Any, ref: Any, *, lock: bool = False, field: str = "invoice") -> dict[str, Any]:
    """An invoice (or credit memo) by number, ``{customer, seq}`` or ``{number}``; ``not_found`` otherwise."""
    suffix = uow.for_update() if lock else ""
    if isinstance(ref, Mapping):
        if ref.get("number"):
            return find_invoice(uow, ref["number"], lock=lock, field=field)
        if "customer" not in ref or "seq" not in ref:
            raise ValidationError(f"{field}: give a number or {{customer, seq}}", field=field)
        from closeloop.customers.service import get_customer

        cust = get_customer(uow, str(ref["customer"]), field=f"{field}.customer")
        row = uow.one(f"SELECT {_INV_COLS} FROM billing_invoice WHERE customer_id = ? AND seq = ? AND kind = 'invoice'"
                      f"{suffix}", (cust.id, int(ref["seq"])))
        if row is None:
            raise NotFoundError(f"customer {ref['customer']} has no invoice number {ref['seq']} (in issue order)",
                                field=field, record=f"{ref['customer']}#{ref['seq']}")
        return _inv(row)
    text = str(ref)
    row = uow.one(f"SELECT {_INV_COLS} FROM billing_invoice WHERE number = ?{suffix}", (text,))
    if row is None and text.isdigit():
        row = uow.one(f"SELECT {_INV_COLS} FROM billing_invoice WHERE id = ?{suffix}", (int(text),))
    if row is None:
        raise NotFoundError(f"invoice {text!r} does not exist", field=field, record=text)
    return _inv(row)


def _lines(uow: Any, invoice_id: int) -> list[dict[str, Any]]:
    return [_line_dict(r) for r in uow.all(f"SELECT {_LINE_COLS} FROM billing_line WHERE invoice_id = ? ORDER BY line_no",
                                           (invoice_id,))]


def invoice_view(uow: Any, inv: Mapping[str, Any]) -> dict[str, Any]:
    cur = inv["currency"]
    lines = _lines(uow, inv["id"])
    m = lambda v: format_minor(int(v), cur)  # noqa: E731
    out = {"number": inv["number"], "kind": inv["kind"], "customer": inv["customer"], "seq": inv["seq"],
           "entity": inv["entity"], "date": inv["date"], "due_date": inv["due_date"], "currency": cur,
           "subtotal": m(inv["subtotal"]), "tax": m(inv["tax"]), "total": m(inv["total"]), "balance": m(inv["balance"]),
           "status": inv["status"], "credit_applied": m(inv["credit_applied"]),
           "wallet_applied": m(inv["wallet_applied"] or 0),
           "credit_created": m(inv["credit_created"]), "paid": m(inv["paid"]), "credited": m(inv["credited"]),
           "written_off": m(inv["written_off"]), "held_reason": inv["held_reason"],
           "tax_breakdown": [{**g, "taxable": m(g["taxable"]), "tax": m(g["tax"])}
                             for g in json.loads(inv["tax_breakdown"] or "[]")],
           "mentions": json.loads(inv["mentions"] or "[]"),
           "lines": [{"line_no": ln["line_no"], "description": ln["description"], "quantity": ln["quantity"],
                      "unit_price": ln["unit_price"], "amount": m(ln["net"]), "tax": m(ln["tax"]),
                      "tax_treatment": ln["tax_treatment"], "tax_rate": ln["tax_rate"],
                      "period_start": ln["service_from"], "period_end": _end_inclusive(ln["service_to"])
                      if ln["service_to"] else (ln["service_from"] if ln["kind"] in ("one_time", "milestone", "partial")
                                                else None),
                      "kind": ln["kind"], "sku": ln["sku"], "contract_id": ln["contract_id"],
                      "line_id": ln["line_id"]} for ln in lines]}
    if inv["kind"] == "credit_memo":
        orig = uow.one("SELECT number FROM billing_invoice WHERE id = ?", (inv["original_id"],))
        out["original_invoice"] = orig[0] if orig else None
        out["reason"] = inv["reason"]
    else:
        out["credit_memos"] = [r[0] for r in uow.all("SELECT number FROM billing_invoice WHERE original_id = ?"
                                                     " ORDER BY id", (inv["id"],))]
    return out


# =========================================================================== queries


@payload
class InvoiceQuery:
    number: str | None = None
    customer: str | None = None
    seq: int | None = None
    invoice: Any = None


def _ref(q: Any) -> Any:
    if getattr(q, "invoice", None) is not None:
        return q.invoice
    if q.number:
        return q.number
    if q.customer is not None and q.seq is not None:
        return {"customer": q.customer, "seq": q.seq}
    raise ValidationError("give number, or customer and seq", field="number")


@query("invoice", InvoiceQuery, summary="One invoice or credit memo (number, or customer + seq)")
def invoice_query(uow: Any, q: InvoiceQuery) -> dict[str, Any]:
    return invoice_view(uow, find_invoice(uow, _ref(q), field="number"))


@payload
class InvoicesQuery:
    customer: str | None = None
    status: str | None = None
    entity: str | None = None
    kind: str = "invoice"
    date_from: str | None = None
    date_to: str | None = None
    limit: Limit = 200


@query("invoices", InvoicesQuery, summary="Invoices by customer, status, entity: count, total and the list")
def invoices_query(uow: Any, q: InvoicesQuery) -> dict[str, Any]:
    where, params = ["kind = ?"], [q.kind]
    if q.customer:
        from closeloop.customers.service import get_customer

        where.append("customer_id = ?")
        params.append(get_customer(uow, q.customer).id)
    for col, val in (("status", q.status), ("entity", q.entity)):
        if val:
            where.append(f"{col} = ?")
            params.append(val)
    if q.date_from:
        where.append("date >= ?")
        params.append(q.date_from)
    if q.date_to:
        where.append("date <= ?")
        params.append(q.date_to)
    clause = " AND ".join(where)
    totals = uow.all(f"SELECT currency, COUNT(*), SUM(total), SUM(balance) FROM billing_invoice WHERE {clause}"
                     " GROUP BY currency ORDER BY currency", params)
    count = sum(int(r[1]) for r in totals)
    rows = uow.all(f"SELECT {_INV_COLS} FROM billing_invoice WHERE {clause} ORDER BY id LIMIT ?",
                   [*params, min(q.limit, 10_000)])
    by_cur = {r[0]: (int(r[2] or 0), int(r[3] or 0)) for r in totals}
    out: dict[str, Any] = {"count": count}
    if len(by_cur) == 1:
        cur, (tot, bal) = next(iter(by_cur.items()))
        out.update(total=format_minor(tot, cur), balance=format_minor(bal, cur), currency=cur)
    else:
        out.update(total=None if by_cur else "0.00", balance=None if by_cur else "0.00")
    out["totals"] = {c: format_minor(t, c) for c, (t, _) in by_cur.items()}
    out["items"] = [{"number": i["number"], "customer": i["customer"], "seq": i["seq"], "date": i["date"],
                     "due_date": i["due_date"], "currency": i["currency"], "status": i["status"],
                     "total": format_minor(int(i["total"]), i["currency"]),
                     "balance": format_minor(int(i["balance"]), i["currency"])} for i in map(_inv, rows)]
    return out


@payload
class BillingPreview:
    as_of: str
    customer: str | None = None
    entity: str | None = None


@query("billing_preview", BillingPreview, summary="What a bill run as of a date would issue (a dry run: nothing saved)")
def billing_preview(uow: Any, q: BillingPreview) -> dict[str, Any]:
    return preview(uow, parse_date(q.as_of, field="as_of"), q.entity, q.customer)


@payload
class CreditMemoQuery:
    invoice: Any = None
    number: str | None = None


@query("credit_memo", CreditMemoQuery, summary="The credit memos of an invoice (amount net, tax, total) or one memo")
def credit_memo_query(uow: Any, q: CreditMemoQuery) -> dict[str, Any]:
    if q.number:
        memos = [find_invoice(uow, q.number, field="number")]
    else:
        if q.invoice is None:
            raise ValidationError("give invoice (number or {customer, seq}) or number", field="invoice")
        inv = find_invoice(uow, q.invoice)
        memos = [_inv(r) for r in uow.all(f"SELECT {_INV_COLS} FROM billing_invoice WHERE original_id = ? AND"
                                          " kind = 'credit_memo' ORDER BY id", (inv["id"],))]
        if not memos:
            raise NotFoundError(f"invoice {inv['number']} has no credit memo", field="invoice", record=inv["number"])
    cur = memos[0]["currency"]
    return {"amount": format_minor(sum(int(m["subtotal"]) for m in memos), cur),
            "tax": format_minor(sum(int(m["tax"]) for m in memos), cur),
            "total": format_minor(sum(int(m["total"]) for m in memos), cur), "currency": cur, "count": len(memos),
            "credit_memos": [invoice_view(uow, m) for m in memos]}


@payload
class SubscriptionsQuery:
    customer: str | None = None
    contract_id: str | None = None
    as_of: str | None = None


@query("subscriptions", SubscriptionsQuery, summary="Subscriptions (billing's view of contracts) and their schedules")
def subscriptions_query(uow: Any, q: SubscriptionsQuery) -> dict[str, Any]:
    where, params = [], []
    if q.customer:
        from closeloop.customers.service import get_customer

        where.append("customer_id = ?")
        params.append(get_customer(uow, q.customer).id)
    if q.contract_id:
        where.append("contract_id = ?")
        params.append(q.contract_id)
    rows = uow.all("SELECT contract_id, customer, entity, currency, billing_day, start, status, next_date FROM"
                   " billing_subscription" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY contract_id",
                   params)
    day = parse_date(q.as_of, field="as_of") if q.as_of else uow.today()
    items = []
    for cid, customer, ent, cur, bday, start, status, nxt in rows:
        tl = replay(load_changes(uow, cid))
        items.append({
            "contract_id": cid, "customer": customer, "entity": ent, "currency": cur, "billing_day": int(bday),
            "start": start, "end": tl.service_end.isoformat(), "status": status, "next_bill_date": nxt,
            "lines": [{"line_id": s.line.line_id, "sku": s.line.product.sku, "quantity": dec_plain(s.line.quantity),
                       "period": s.line.list_terms.period, "timing": s.line.list_terms.timing,
                       "model": s.line.list_terms.model, "metric": s.line.list_terms.metric,
                       "amount": None if s.line.period_amount is None else format_minor(s.line.period_amount, cur),
                       "from": s.start.isoformat(), "to": s.end.isoformat()}
                      for s in tl.segments if s.start <= day <= s.end or s.start > day]})
    return {"count": len(items), "items": items}


@payload
class BillingRunsQuery:
    limit: Limit = 50


@query("billing_runs", BillingRunsQuery, summary="Bill runs, newest first")
def billing_runs_query(uow: Any, q: BillingRunsQuery) -> dict[str, Any]:
    rows = uow.dicts("SELECT id AS run, as_of, entity, status, partitions, invoices, held, actor, started_at,"
                     " completed_at FROM billing_run ORDER BY id DESC LIMIT ?", (q.limit,))
    return {"count": len(rows), "items": rows}


# =========================================================================== credit memos


@payload
class CreditLineIn:
    line: int
    amount: Decimal


@payload
class InvoiceCredit:
    invoice: Any
    reason: str
    amount: Decimal | None = None
    lines: list[CreditLineIn] | None = None


@command("invoice.credit", InvoiceCredit, roles=BILLING_ROLES,
         summary="Issue a credit memo on an invoice (full, an amount net of tax, or by line)")
def invoice_credit(uow: Any, cmd: InvoiceCredit) -> dict[str, Any]:
    inv = find_invoice(uow, cmd.invoice, lock=True)
    cur = inv["currency"]
    by_line: dict[int, int] | None = None
    if cmd.lines:
        by_line = {}
        for i, x in enumerate(cmd.lines):
            by_line[x.line] = by_line.get(x.line, 0) + to_minor(x.amount, cur, field=f"lines[{i}].amount")
    amount = None if cmd.amount is None else to_minor(cmd.amount, cur, field="amount")
    return issue_credit_memo(uow, inv["number"], amount_minor=amount, lines=by_line, reason=cmd.reason)


def issue_credit_memo(uow: Any, invoice_number: str, *, amount_minor: int | None = None,
                      lines: Mapping[int, int] | None = None, reason: str, source: str = "invoice.credit"
                      ) -> dict[str, Any]:
    """Credit an invoice (full when neither amount nor lines): a numbered credit memo referencing it,
    tax reversed proportionally per line, never more than what remains (``insufficient_amount``).
    Collections calls this for dispute resolutions."""
    if not reason or not reason.strip():
        raise ValidationError("a credit memo needs a reason", field="reason")
    inv = find_invoice(uow, invoice_number, lock=True)
    if inv["kind"] != "invoice":
        raise ValidationError(f"{invoice_number} is a credit memo; credit the invoice it references",
                              field="invoice", record=invoice_number)
    if inv["status"] in ("held", "void"):
        raise ValidationError(f"invoice {invoice_number or inv['id']} is {inv['status']}: only issued invoices can be"
                              " credited", field="invoice", record=str(invoice_number))
    cur = inv["currency"]
    every = _lines(uow, inv["id"])
    discount: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # a charge's discount lines: net, tax
    for ln in every:
        if ln["kind"] == "discount" and ln["credit_of"] is not None:
            discount[int(ln["credit_of"])][0] += ln["net"]
            discount[int(ln["credit_of"])][1] += ln["tax"]
    # a discounted charge is creditable for what it was billed after its discount (its discount lines fold in)
    src = [{**ln, "net": ln["net"] + discount[ln["id"]][0], "tax": ln["tax"] + discount[ln["id"]][1]}
           if ln["id"] in discount else ln for ln in every if ln["net"] > 0 and ln["kind"] != "discount"]
    src = [ln for ln in src if ln["net"] > 0]
    left = {ln["line_no"]: ln["net"] - ln["memo_credited"] - ln["credited"] for ln in src}
    tax_left = {ln["line_no"]: ln["tax"] - ln["memo_tax_credited"] for ln in src}
    remaining = sum(max(0, v) for v in left.values())
    parts: dict[int, int] = {}
    if lines:
        for no, value in lines.items():
            if no not in left:
                raise NotFoundError(f"invoice {invoice_number} has no creditable line {no}", field="lines",
                                    record=str(no))
            if value <= 0:
                raise ValidationError(f"line {no}: a credit amount is positive", field="lines")
            if value > left[no]:
                raise InsufficientAmountError(f"line {no}: {format_minor(value, cur)} is more than is left to credit"
                                              f" ({format_minor(max(left[no], 0), cur)})", field="lines",
                                              left=format_minor(max(left[no], 0), cur))
            parts[no] = value
    else:
        want = remaining if amount_minor is None else amount_minor
        if want <= 0:
            if amount_minor is not None and amount_minor <= 0:
                raise ValidationError("a credit amount is positive", field="amount")
            raise InsufficientAmountError(f"invoice {invoice_number} has nothing left to credit", field="amount",
                                          left=format_minor(0, cur))
        if want > remaining:
            raise InsufficientAmountError(f"{format_minor(want, cur)} is more than is left to credit on invoice"
                                          f" {invoice_number} ({format_minor(remaining, cur)} net of tax)",
                                          field="amount", left=format_minor(remaining, cur))
        nos = [no for no in left if left[no] > 0]
        for no, part in zip(nos, allocate(want, [left[no] for no in nos]), strict=True):
            if part:
                parts[no] = part
    memo_lines = []
    src_by_no = {ln["line_no"]: ln for ln in src}
    for i, (no, net) in enumerate(sorted(parts.items()), 1):
        ln = src_by_no[no]
        if net == left[no]:
            tax = tax_left[no]
        else:
            tax = min(tax_left[no], round_minor(Decimal(ln["tax"]) * net / Decimal(ln["net"])))
        memo_lines.append((no, i, net, tax, ln))
    subtotal = sum(x[2] for x in memo_lines)
    tax_total = sum(x[3] for x in memo_lines)
    total = subtotal + tax_total
    applied = min(total, max(int(inv["balance"]), 0))
    credit_created = total - applied
    numbers = _Numbering.open(uow)
    number = numbers.take(inv["entity"], "credit_memo")
    numbers.flush()
    day = uow.today().isoformat()
    memo_id = invoice_ids(uow, 1)
    uow.execute(
        "INSERT INTO billing_invoice (id, number, kind, customer_id, customer, seq, entity, currency, date, due_date,"
        " status, subtotal, tax, total, credit_created, credit_applied, paid, credited, written_off, balance,"
        " original_id, reason, tax_breakdown, mentions, payment_terms_days, issued_at, created_at) VALUES"
        " (?,?,'credit_memo',?,?,NULL,?,?,?,?,'issued',?,?,?,?,0,0,0,0,0,?,?,?,?,?,?,?)",
        (memo_id, number, inv["customer_id"], inv["customer"], inv["entity"], cur, day, day, subtotal, tax_total, total,
         credit_created, inv["id"], reason, None, None, int(inv["payment_terms_days"]), uow.now(), uow.now()))
    rows = []
    for _no, i, net, tax, ln in memo_lines:
        rows.append((None, memo_id, i, "memo", f"Credit: {ln['description']}", ln["sku"], ln["contract_id"],
                     ln["line_id"], ln["version"], "1", None, net, tax, ln["tax_treatment"], ln["tax_rate"],
                     ln["tax_category"], ln["tax_code"], ln["jurisdiction"], ln["revenue_role"], ln["treatment"],
                     ln["product_family"], ln["performing_entity"], None, None, ln["service_from"], ln["service_to"],
                     None, 0, 0, 0, 0, None, ln["id"]))
    first_line = line_ids(uow, len(rows))
    uow.executemany(_LINE_INSERT, [(first_line + k, *r[1:]) for k, r in enumerate(rows)])
    uow.executemany("UPDATE billing_line SET memo_credited = memo_credited + ?, memo_tax_credited = memo_tax_credited"
                    " + ? WHERE id = ?", [(net, tax, ln["id"]) for _, _, net, tax, ln in memo_lines])
    credited = int(inv["credited"]) + applied
    balance = int(inv["balance"]) - applied
    status = _status(int(inv["total"]), balance, int(inv["paid"]), credited, int(inv["written_off"]))
    uow.execute("UPDATE billing_invoice SET credited = ?, balance = ?, status = ? WHERE id = ?",
                (credited, balance, status, inv["id"]))
    if credit_created:
        uow.execute("INSERT INTO billing_credit (customer_id, entity, currency, source_id, date, amount, remaining)"
                    " VALUES (?,?,?,?,?,?,?)", (inv["customer_id"], inv["entity"], cur, memo_id, day, credit_created,
                                                credit_created))
    uow.emit("credit_memo.issued", "invoice", inv["number"], {
        "credit_memo": number, "invoice": inv["number"], "entity": inv["entity"], "customer": inv["customer"],
        "currency": cur, "date": day, "subtotal": format_minor(subtotal, cur), "tax": format_minor(tax_total, cur),
        "total": format_minor(total, cur), "credit_created": format_minor(credit_created, cur),
        "lines": [{k: v for k, v in {"line_no": i, "description": f"Credit: {ln['description']}",
                                     "revenue_role": ln["revenue_role"], "treatment": ln["treatment"],
                                     "net": format_minor(net, cur), "tax": format_minor(tax, cur),
                                     "product_family": ln["product_family"]}.items() if v is not None}
                  for _, i, net, tax, ln in memo_lines]}, entity=inv["entity"])
    return {"credit_memo": number, "invoice": inv["number"], "amount": format_minor(subtotal, cur),
            "tax": format_minor(tax_total, cur), "total": format_minor(total, cur),
            "credit_created": format_minor(credit_created, cur), "invoice_balance": format_minor(balance, cur),
            "invoice_status": status, "source": source}


# =========================================================================== customer credit


@payload
class CreditApply:
    customer: str
    invoice: Any
    amount: Decimal | None = None


@command("credit.apply", CreditApply, roles=BILLING_ROLES + ("collections",),
         summary="Apply the customer's unapplied credit to an open invoice (oldest credit first)")
def credit_apply(uow: Any, cmd: CreditApply) -> dict[str, Any]:
    from closeloop.customers.service import get_customer

    cust = get_customer(uow, cmd.customer)
    inv = find_invoice(uow, cmd.invoice, lock=True)
    if inv["customer_id"] != cust.id:
        raise ValidationError(f"invoice {inv['number']} belongs to {inv['customer']}, not {cmd.customer}",
                              field="invoice", record=inv["number"])
    if inv["status"] not in OPEN_STATUSES:
        raise ValidationError(f"invoice {inv['number']} is {inv['status']}: credit applies to open invoices",
                              field="invoice", record=inv["number"])
    cur = inv["currency"]
    lots = uow.all(f"SELECT id, remaining FROM billing_credit WHERE customer_id = ? AND entity = ? AND currency = ?"
                   f" AND remaining > 0 ORDER BY date, id{uow.for_update()}", (cust.id, inv["entity"], cur))
    available = sum(int(r[1]) for r in lots)
    balance = int(inv["balance"])
    want = min(available, balance) if cmd.amount is None else to_minor(cmd.amount, cur, field="amount")
    if want <= 0:
        raise InsufficientAmountError(f"customer {cmd.customer} has no {cur} credit to apply"
                                      if available <= 0 else "an amount to apply is positive", field="amount",
                                      available=format_minor(available, cur))
    if want > available:
        raise InsufficientAmountError(f"{format_minor(want, cur)} is more than the customer's credit"
                                      f" ({format_minor(available, cur)})", field="amount",
                                      available=format_minor(available, cur))
    if want > balance:
        raise InsufficientAmountError(f"{format_minor(want, cur)} is more than the invoice's balance"
                                      f" ({format_minor(balance, cur)})", field="amount",
                                      balance=format_minor(balance, cur))
    left = want
    day = uow.today().isoformat()
    for lot_id, remaining in lots:
        if left <= 0:
            break
        use = min(int(remaining), left)
        left -= use
        uow.execute("UPDATE billing_credit SET remaining = remaining - ? WHERE id = ?", (use, lot_id))
        uow.execute("INSERT INTO billing_credit_use (credit_id, invoice_id, amount, date, auto) VALUES (?,?,?,?,?)",
                    (lot_id, inv["id"], use, day, False))
    balance -= want
    status = _status(int(inv["total"]), balance, int(inv["paid"]), int(inv["credited"]), int(inv["written_off"]))
    if status == "credited":
        status = "paid"
    uow.execute("UPDATE billing_invoice SET credit_applied = credit_applied + ?, balance = ?, status = ? WHERE id = ?",
                (want, balance, status, inv["id"]))
    uow.emit("credit.applied", "customer", inv["customer"], {
        "customer": inv["customer"], "invoice": inv["number"], "entity": inv["entity"], "currency": cur, "date": day,
        "amount": format_minor(want, cur)}, entity=inv["entity"])
    return {"invoice": inv["number"], "applied": format_minor(want, cur), "balance": format_minor(balance, cur),
            "status": status, "credit_left": format_minor(available - want, cur)}


# =========================================================================== void


@payload
class InvoiceVoid:
    invoice: Any
    reason: str | None = None


def _posted(uow: Any, number: str) -> bool:
    row = uow.one("SELECT e.id FROM event e WHERE e.type = 'invoice.issued' AND e.aggregate_type = 'invoice' AND"
                  " e.aggregate_id = ?", (number,))
    if row is None:
        return False
    delivered = uow.one("SELECT 1 FROM event_delivery WHERE event_id = ? AND handler = 'posting'", (row[0],))
    if delivered is None:
        return False
    unposted = uow.one("SELECT 1 FROM exception_item WHERE kind = 'unposted_event' AND record_type = 'event' AND"
                       " record_id = ? AND status = 'open'", (str(row[0]),))
    return unposted is None


@command("invoice.void", InvoiceVoid, roles=BILLING_ROLES,
         summary="Void an invoice that is not posted yet; its charges become billable again")
def invoice_void(uow: Any, cmd: InvoiceVoid) -> dict[str, Any]:
    inv = find_invoice(uow, cmd.invoice, lock=True)
    if inv["kind"] != "invoice" or inv["status"] in ("void", "held"):
        raise ValidationError(f"invoice {inv['number'] or inv['id']} is {inv['status']}: only issued invoices can be"
                              " voided (a held invoice is released or fixed)", field="invoice")
    from closeloop.billing.migration import refuse_void  # here: billing.migration imports this module

    refuse_void(uow, inv)  # a migrated legacy invoice: its receivable was posted by the migration
    if _posted(uow, inv["number"]):
        raise ValidationError(f"invoice {inv['number']} is posted to the ledger: it cannot be voided; issue a credit"
                              " memo instead", field="invoice", record=inv["number"])
    if int(inv["paid"]) or int(inv["credited"]) or int(inv["credit_applied"]) or int(inv["credit_created"]) \
            or int(inv["wallet_applied"] or 0):
        raise ValidationError(f"invoice {inv['number']} has payments, credits, prepaid credits or created credit:"
                              " credit it instead", field="invoice", record=inv["number"])
    if uow.one("SELECT 1 FROM billing_line WHERE invoice_id = ? AND kind = 'wallet_topup'", (inv["id"],)):
        raise ValidationError(f"invoice {inv['number']} bought prepaid credits: credit it instead",
                              field="invoice", record=inv["number"])
    restore(uow, int(inv["id"]))
    uow.execute("UPDATE billing_invoice SET status = 'void', balance = 0, reason = ? WHERE id = ?",
                (cmd.reason, inv["id"]))
    reversed_credits = uow.all("SELECT credit_of, net FROM billing_line WHERE invoice_id = ? AND kind = 'credit' AND"
                               " credit_of IS NOT NULL", (inv["id"],))
    uow.executemany("UPDATE billing_line SET credited = credited + ? WHERE id = ?",
                    [(int(net), int(of)) for of, net in reversed_credits])
    for (cid,) in uow.all("SELECT DISTINCT contract_id FROM billing_line WHERE invoice_id = ? AND contract_id IS NOT"
                          " NULL", (inv["id"],)):
        uow.execute("UPDATE billing_subscription SET scan_from = CASE WHEN scan_from IS NULL OR scan_from > ? THEN ?"
                    " ELSE scan_from END WHERE contract_id = ? AND scan_from IS NOT NULL", (inv["date"], inv["date"], cid))
        _due(uow, cid, inv["date"])
    cur = inv["currency"]
    uow.emit("invoice.voided", "invoice", inv["number"], {
        "invoice": inv["number"], "entity": inv["entity"], "customer": inv["customer"], "currency": cur,
        "date": uow.today().isoformat(), "total": format_minor(int(inv["total"]), cur),
        "tax": format_minor(int(inv["tax"]), cur), "subtotal": format_minor(int(inv["subtotal"]), cur)},
        entity=inv["entity"])
    return {"invoice": inv["number"], "status": "void"}


# =========================================================================== held invoices


@on_resolve("tax_undetermined", "release")
def release_held(uow: Any, exception: dict[str, Any], cmd: Any) -> dict[str, Any]:
    """Re-determine tax of a held invoice; issue it with the next number, dated the release day."""
    invoice_id = int(next(iter(exception["record"].values())))
    inv = find_invoice(uow, str(invoice_id), lock=True)
    if inv["status"] != "held":
        raise ValidationError(f"invoice {invoice_id} is not held (it is {inv['status']})", field="exception")
    from closeloop.customers.service import customer_by_id

    customer = customer_by_id(uow, int(inv["customer_id"]))
    lines = _lines(uow, invoice_id)
    day = uow.today().isoformat()
    taxed = _compute_tax(uow, inv["entity"], customer, inv["currency"], day,
                         [(ln["line_no"], ln["net"], ln["tax_code"] or "saas") for ln in lines])
    if taxed.held:
        reasons = "; ".join(f"line {no}: {why}" for no, why in taxed.held)
        raise TaxUndeterminedError(f"invoice {invoice_id}: tax still cannot be determined ({reasons}); fix the data"
                                   " first", field="exception", record=str(invoice_id))
    cur = inv["currency"]
    uow.executemany("UPDATE billing_line SET tax = ?, tax_treatment = ?, tax_rate = ?, tax_category = ?, jurisdiction = ?"
                    " WHERE invoice_id = ? AND line_no = ?",
                    [(t.tax, t.treatment, _rate_text(t.rate), t.category, t.jurisdiction, invoice_id, ln["line_no"])
                     for ln, t in zip(lines, taxed.lines, strict=True)])
    subtotal = int(inv["subtotal"])
    tax = sum(t.tax for t in taxed.lines)
    total = subtotal + tax
    terms = int(inv["payment_terms_days"])
    due = (date.fromisoformat(day) + timedelta(days=terms)).isoformat()
    writer = _Writer(uow, None)
    writer.prepare([int(inv["customer_id"])])
    number = writer.numbers.take(inv["entity"], "invoice")
    account = Account(int(inv["customer_id"]), inv["customer"], inv["entity"], cur, terms)
    credit_created = credit_applied = wallet_applied = 0
    if total < 0:
        credit_created = -total
        writer.credit_rows.append((account.customer_id, account.entity, cur, invoice_id, day, credit_created))
        balance = 0
    else:
        credit_applied = writer._apply_credit(account, invoice_id, number, day, total)
        balance = total - credit_applied
        taxed_lines = [{**ln, "tax": t.tax} for ln, t in zip(lines, taxed.lines, strict=True)]
        wallet_applied = writer._apply_wallets(account, invoice_id, number, date.fromisoformat(day), taxed_lines,
                                               balance)
        balance -= wallet_applied
    status = _status(total, balance, 0, 0, 0)
    uow.execute("UPDATE billing_invoice SET number = ?, date = ?, due_date = ?, status = ?, tax = ?, total = ?,"
                " credit_created = ?, credit_applied = ?, balance = ?, wallet_applied = ?, tax_breakdown = ?,"
                " mentions = ?, held_reason = NULL, issued_at = ? WHERE id = ?",
                (number, day, due, status, tax, total, credit_created, credit_applied, balance, wallet_applied,
                 dumps([_group_dict(g, cur) for g in taxed.groups]), dumps(list(taxed.mentions)), uow.now(), invoice_id))
    inv_view = {**inv, "number": number, "date": day, "due_date": due, "tax": tax, "total": total,
                "credit_created": credit_created}
    fresh = _lines(uow, invoice_id)
    writer.issued.append((number, inv["entity"], _issued_payload(inv_view, fresh)))
    writer.flush()
    return {"invoice": number, "status": status, "total": format_minor(total, cur)}


# =========================================================================== for collections and others


def open_invoices(uow: Any, customer_id: int, *, currency: str | None = None, entity: str | None = None
                  ) -> list[dict[str, Any]]:
    """A customer's invoices with a balance (open, partially paid), oldest due first."""
    sql = f"SELECT {_INV_COLS} FROM billing_invoice WHERE customer_id = ? AND status IN ('open', 'partially_paid')"
    params: list[Any] = [customer_id]
    if currency:
        sql += " AND currency = ?"
        params.append(currency)
    if entity:
        sql += " AND entity = ?"
        params.append(entity)
    return [{**_inv(r), "balance_minor": int(r[19])} for r in uow.all(sql + " ORDER BY due_date, id", params)]


def apply_payment_to_invoice(uow: Any, invoice_number: str, amount_minor: int, *, reference: str | None = None
                             ) -> dict[str, Any]:
    """Reduce an open invoice's balance by a payment (collections emits payment.applied itself).
    More than the balance is ``insufficient_amount`` (the caller keeps the rest unapplied)."""
    inv = find_invoice(uow, invoice_number, lock=True)
    if inv["status"] not in OPEN_STATUSES:
        raise ValidationError(f"invoice {invoice_number} is {inv['status']}: payments apply to open invoices",
                              field="invoice", record=invoice_number)
    if amount_minor <= 0:
        raise ValidationError("a payment amount is positive", field="amount")
    if amount_minor > int(inv["balance"]):
        raise InsufficientAmountError(f"{format_minor(amount_minor, inv['currency'])} is more than invoice"
                                      f" {invoice_number}'s balance ({format_minor(int(inv['balance']), inv['currency'])})",
                                      field="amount", balance=format_minor(int(inv["balance"]), inv["currency"]))
    paid = int(inv["paid"]) + amount_minor
    balance = int(inv["balance"]) - amount_minor
    status = _status(int(inv["total"]), balance, paid, int(inv["credited"]), int(inv["written_off"]))
    uow.execute("UPDATE billing_invoice SET paid = ?, balance = ?, status = ? WHERE id = ?",
                (paid, balance, status, inv["id"]))
    return {"invoice": invoice_number, "balance_minor": balance, "status": status, "reference": reference}


def unapply_payment(uow: Any, invoice_number: str, amount_minor: int) -> dict[str, Any]:
    """Undo part of a payment application (a failed or refunded payment)."""
    inv = find_invoice(uow, invoice_number, lock=True)
    if amount_minor <= 0 or amount_minor > int(inv["paid"]):
        raise InsufficientAmountError(f"invoice {invoice_number} has {format_minor(int(inv['paid']), inv['currency'])}"
                                      " paid", field="amount")
    paid = int(inv["paid"]) - amount_minor
    balance = int(inv["balance"]) + amount_minor
    status = _status(int(inv["total"]), balance, paid, int(inv["credited"]), int(inv["written_off"]))
    uow.execute("UPDATE billing_invoice SET paid = ?, balance = ?, status = ? WHERE id = ?",
                (paid, balance, status, inv["id"]))
    return {"invoice": invoice_number, "balance_minor": balance, "status": status}


def write_off_invoice(uow: Any, invoice_number: str, amount_minor: int | None, reason: str) -> dict[str, Any]:
    """Write off (part of) an open invoice's balance and emit ``invoice.written_off``."""
    inv = find_invoice(uow, invoice_number, lock=True)
    if inv["status"] not in OPEN_STATUSES:
        raise ValidationError(f"invoice {invoice_number} is {inv['status']}: only open invoices are written off",
                              field="invoice", record=invoice_number)
    amount = int(inv["balance"]) if amount_minor is None else amount_minor
    if amount <= 0 or amount > int(inv["balance"]):
        raise InsufficientAmountError(f"{format_minor(amount, inv['currency'])} is more than the balance"
                                      f" ({format_minor(int(inv['balance']), inv['currency'])})", field="amount")
    written = int(inv["written_off"]) + amount
    balance = int(inv["balance"]) - amount
    status = _status(int(inv["total"]), balance, int(inv["paid"]), int(inv["credited"]), written)
    uow.execute("UPDATE billing_invoice SET written_off = ?, balance = ?, status = ? WHERE id = ?",
                (written, balance, status, inv["id"]))
    cur = inv["currency"]
    uow.emit("invoice.written_off", "invoice", invoice_number, {
        "invoice": invoice_number, "entity": inv["entity"], "customer": inv["customer"], "currency": cur,
        "date": uow.today().isoformat(), "amount": format_minor(amount, cur), "reason": reason}, entity=inv["entity"])
    return {"invoice": invoice_number, "written_off": format_minor(amount, cur), "balance": format_minor(balance, cur),
            "status": status}


def invoice_document(uow: Any, number: str) -> dict[str, Any]:
    """The whole document (invoice or credit memo) for e-invoicing and rendering; amounts as decimal strings."""
    inv = find_invoice(uow, number, field="number")
    cur = inv["currency"]
    m = lambda v: format_minor(int(v), cur)  # noqa: E731
    ent = get_entity(uow, inv["entity"])
    from closeloop.customers.service import customer_by_id

    cust = customer_by_id(uow, int(inv["customer_id"]))
    lines = _lines(uow, inv["id"])
    out_lines = []
    for ln in lines:
        qty, unit = _qty_unit(ln, cur)
        out_lines.append({
            "line_no": ln["line_no"], "description": ln["description"], "sku": ln["sku"], "quantity": qty,
            "unit_price": unit, "net": m(ln["net"]), "tax": m(ln["tax"]), "tax_treatment": ln["tax_treatment"],
            "tax_rate": ln["tax_rate"], "tax_category": ln["tax_category"], "period_start": ln["service_from"],
            "period_end": _end_inclusive(ln["service_to"]) if ln["service_to"] else ln["service_from"],
            **({"kind": ln["kind"]} if ln["kind"] in SPECIAL_KINDS else {})})
    breakdown = []
    for g in json.loads(inv["tax_breakdown"] or "null") or _memo_breakdown(lines):
        item = {"treatment": g["treatment"], "rate": g["rate"], "category": g["category"], "taxable": m(g["taxable"]),
                "tax": m(g["tax"])}
        if g.get("exemption_reason"):
            item["exemption_reason"] = g["exemption_reason"]
        if g.get("mention"):
            item["mention"] = g["mention"]
        breakdown.append(item)
    mentions = json.loads(inv["mentions"] or "null") or sorted({b["mention"] for b in breakdown if b.get("mention")})
    doc = {
        "number": inv["number"], "kind": inv["kind"], "date": inv["date"], "due_date": inv["due_date"],
        "currency": cur, "status": inv["status"],
        "seller": {"entity": ent.code, "name": ent.name, "country": ent.country, "tax_id": ent.tax_id,
                   "address": ent.address},
        "buyer": {"customer": cust.external_id, "name": cust.name, "country": cust.country, "region": cust.region,
                  "postal_code": cust.postal_code, "tax_id": cust.tax_id, "email": cust.email, "address": cust.address},
        "lines": out_lines, "tax_breakdown": breakdown, "subtotal": m(inv["subtotal"]), "tax": m(inv["tax"]),
        "total": m(inv["total"]), "credit_applied": m(inv["credit_applied"]),
        **({"wallet_applied": m(inv["wallet_applied"])} if int(inv["wallet_applied"] or 0) else {}),
        "amount_due": m(max(int(inv["total"]) - int(inv["credit_applied"]) - int(inv["wallet_applied"] or 0), 0))
        if inv["kind"] == "invoice" else m(0),
        "mentions": list(mentions), "payment_terms_days": int(inv["payment_terms_days"]),
        "original_invoice": None, "reason": None,
    }
    if inv["kind"] == "credit_memo":
        orig = uow.one("SELECT number FROM billing_invoice WHERE id = ?", (inv["original_id"],))
        doc["original_invoice"] = orig[0] if orig else None
        doc["reason"] = inv["reason"]
    return doc


def _memo_breakdown(lines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for ln in lines:
        key = (ln["tax_treatment"] or "", ln["tax_rate"] or "0", ln["tax_category"] or "")
        g = groups.setdefault(key, {"treatment": key[0], "rate": key[1], "category": key[2], "taxable": 0, "tax": 0})
        g["taxable"] += ln["net"]
        g["tax"] += ln["tax"]
    return list(groups.values())


def _qty_unit(ln: Mapping[str, Any], currency: str) -> tuple[str, str]:
    """Quantity and unit price such that quantity x unit price = net exactly (else 1 x net)."""
    net = Decimal(format_minor(int(ln["net"]), currency))
    q = Decimal(ln["quantity"] or "1")
    if q != 0:
        unit = net / q
        if unit == unit.quantize(Decimal("0.000001")) and unit * q == net:
            return dec_plain(q), dec_plain(unit) if unit != 0 else "0"
    return "1", format_minor(int(ln["net"]), currency)


# =========================================================================== customer balances


def _balances(uow: Any, customer_ids: Sequence[int]) -> dict[int, list[tuple[int, int, str]]]:
    out: dict[int, dict[str, list[int]]] = defaultdict(dict)
    for chunk in _chunks(list(customer_ids)):
        marks = ",".join("?" * len(chunk))
        for cid, cur, bal in uow.all(f"SELECT customer_id, currency, SUM(balance) FROM billing_invoice WHERE customer_id IN"
                                     f" ({marks}) AND status IN ('open', 'partially_paid') GROUP BY customer_id,"
                                     " currency", list(chunk)):
            out[int(cid)].setdefault(cur, [0, 0])[0] += int(bal or 0)
        for cid, cur, rem in uow.all(f"SELECT customer_id, currency, SUM(remaining) FROM billing_credit WHERE customer_id"
                                     f" IN ({marks}) AND remaining > 0 GROUP BY customer_id, currency", list(chunk)):
            out[int(cid)].setdefault(cur, [0, 0])[1] += int(rem or 0)
    return {cid: [(v[0], v[1], cur) for cur, v in by.items()] for cid, by in out.items()}


_REPOINTED = ("billing_subscription", "billing_invoice", "billing_credit", "billing_meter", "billing_wallet")


def _repoint(uow: Any, merged_id: int, survivor_id: int) -> list[str]:
    """A merge moves the merged account's subscriptions, invoices, credit, meters and usage to the survivor."""
    moved = [f"billing_subscription:{r[0]}" for r in uow.all(
        "SELECT contract_id FROM billing_subscription WHERE customer_id = ?", (merged_id,))]
    moved += [f"billing_invoice:{r[0]}" for r in uow.all("SELECT id FROM billing_invoice WHERE customer_id = ?",
                                                         (merged_id,))]
    moved += [f"billing_credit:{r[0]}" for r in uow.all("SELECT id FROM billing_credit WHERE customer_id = ?",
                                                        (merged_id,))]
    moved += [f"billing_wallet:{r[0]}" for r in uow.all("SELECT wallet_id FROM billing_wallet WHERE customer_id = ?",
                                                        (merged_id,))]
    # a coupon the survivor already holds on the same scope stays with the merged account (one per scope)
    moved += [f"billing_coupon_redemption:{r[0]}" for r in uow.all(
        "SELECT id FROM billing_coupon_redemption r WHERE customer_id = ? AND NOT EXISTS (SELECT 1 FROM"
        " billing_coupon_redemption s WHERE s.customer_id = ? AND s.coupon = r.coupon AND s.scope = r.scope)",
        (merged_id, survivor_id))]
    for table in _REPOINTED:
        uow.execute(f"UPDATE {table} SET customer_id = ? WHERE customer_id = ?", (survivor_id, merged_id))
    uow.executemany("UPDATE billing_coupon_redemption SET customer_id = ? WHERE id = ?",
                    [(survivor_id, int(x.split(":", 1)[1])) for x in moved
                     if x.startswith("billing_coupon_redemption:")])
    uow.execute("UPDATE billing_usage SET customer_id = ? WHERE customer_id = ?", (survivor_id, merged_id))
    return moved


def _restore(uow: Any, merged_id: int, survivor_id: int, ids: Any) -> None:
    contracts = [str(x).split(":", 1)[1] for x in ids or () if str(x).startswith("billing_subscription:")]
    for table, key in (("billing_subscription", "contract_id"), ("billing_invoice", "id"), ("billing_credit", "id"),
                       ("billing_wallet", "wallet_id"), ("billing_coupon_redemption", "id")):
        values = [str(x).split(":", 1)[1] for x in ids or () if str(x).startswith(f"{table}:")]
        uow.executemany(f"UPDATE {table} SET customer_id = ? WHERE {key} = ?",
                        [(merged_id, v if key in ("contract_id", "wallet_id") else int(v)) for v in values])
    uow.executemany("UPDATE billing_meter SET customer_id = ? WHERE contract_id = ?", [(merged_id, c) for c in contracts])


def _new_references(uow: Any, survivor_id: int, since: str) -> int:
    return int(uow.scalar("SELECT COUNT(*) FROM billing_invoice WHERE customer_id = ? AND created_at >= ?",
                          (survivor_id, since)) or 0)


def _register() -> None:
    from closeloop.customers.service import register_balance_provider, register_reference_holder

    register_balance_provider(_balances, name="billing")
    register_reference_holder("billing", _repoint, restore=_restore, new_references=_new_references)


_register()
