"""Cash application, aging and dunning as pure functions: no database, no clock, dates passed in.

Cash application (:func:`apply_receipts`) matches each receipt to open invoices in
four stages and says why, with a confidence:

1. **reference** — an invoice number found in the remittance text or in a
   structured creditor reference (the number itself, an ISO 11649 ``RF``
   reference built from it, or a 27-digit QR/ISR reference carrying its digits);
2. **exact_amount** — one open invoice of the customer whose balance equals the
   amount (several equal ones: ambiguous, low confidence);
3. **combination** — a set of the customer's open invoices summing exactly to the
   amount, found by a bounded depth-first search (at most ``subset_max_invoices``
   candidates, ``subset_max_size`` invoices in a set, ``subset_max_nodes`` steps);
4. otherwise nothing is applied (``no_match`` / ``unknown_customer``).

An allocation never exceeds the receipt nor an invoice's open balance; what the
receipt leaves is unapplied (customer credit when the customer is known). A
short payment within the tolerance is applied and its difference written off by
rule (``write_off`` on the allocation). A receipt in another currency than the
invoice is converted at the receipt date by the ``convert`` callable the service
passes in. Matches below ``auto_apply_min_confidence`` are proposals: the
service leaves the cash unapplied and opens a ``low_confidence_match`` exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class OpenInvoice:
    """An invoice with an open balance, as cash application sees it.

    balance: open amount in the invoice currency (minor units); disputed: the part under
    an open dispute (excluded from dunning, still payable); dates ISO.
    """

    number: str
    customer: str
    entity: str
    currency: str
    balance: int
    date: str
    due_date: str
    total: int = 0
    disputed: int = 0


@dataclass(frozen=True, slots=True)
class Receipt:
    """Money received: a bank statement line, a provider payment or a ``payment.receive``.

    customer: the customer's external id when known (from the command, the payer's
    account or the provider); text: free remittance text; references: structured
    references (creditor references, document numbers, end-to-end ids); invoice: an
    invoice named explicitly by the payer or the operator.
    """

    id: str
    amount: int
    currency: str
    date: str
    customer: str | None = None
    text: str = ""
    references: tuple[str, ...] = ()
    invoice: str | None = None
    entity: str | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    """Part of a receipt applied to one invoice: ``amount`` in the invoice currency,
    ``payment_amount`` the same in the receipt currency, ``write_off`` a short-pay
    difference written off by rule (invoice currency)."""

    invoice: str
    amount: int
    payment_amount: int
    write_off: int = 0


@dataclass(frozen=True, slots=True)
class Match:
    """The outcome for one receipt. ``allocations`` is what to apply (empty for a proposal
    below the confidence threshold, whose candidates are in ``proposal``)."""

    receipt: str
    customer: str | None
    allocations: tuple[Allocation, ...]
    unapplied: int
    reason: str
    confidence: Decimal
    detail: str = ""
    proposal: tuple[Allocation, ...] = ()

    @property
    def applied(self) -> int:
        return sum(a.payment_amount for a in self.allocations)

    @property
    def invoices(self) -> tuple[str, ...]:
        return tuple(a.invoice for a in self.allocations)


@dataclass(frozen=True, slots=True)
class MatchRules:
    """Cash-application settings (``config/collections.yaml``: cash_application)."""

    auto_apply_min_confidence: Decimal = Decimal("0.80")
    short_pay_max_pct: Decimal = Decimal("0.5")        # percent of the open balance
    short_pay_max_minor: int = 500                     # in the invoice currency's minor units
    fx_tolerance_pct: Decimal = Decimal("1.0")         # receipt in another currency: rate drift accepted
    subset_max_invoices: int = 20
    subset_max_size: int = 5
    subset_max_nodes: int = 20_000
    min_reference_length: int = 4

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> MatchRules:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown cash_application setting(s): {', '.join(unknown)}")
        values: dict[str, object] = {}
        for key, value in data.items():
            default = getattr(cls(), key)
            values[key] = Decimal(str(value)) if isinstance(default, Decimal) else int(str(value))
        rules = cls(**values)  # type: ignore[arg-type]
        if not Decimal(0) <= rules.auto_apply_min_confidence <= Decimal(1):
            raise ValueError("auto_apply_min_confidence must be between 0 and 1")
        if rules.subset_max_size < 2 or rules.subset_max_invoices < 2:
            raise ValueError("subset_max_size and subset_max_invoices must be at least 2")
        return rules


Converter = Callable[[int, str, str], int]  # (minor, from currency, to currency) -> minor, at the receipt date


def _same_currency_only(minor: int, source: str, target: str) -> int:
    if source != target:
        raise LookupError(f"no conversion {source}->{target}")
    return minor


# --------------------------------------------------------------------------- references

_NON_ALNUM = re.compile(r"[^A-Z0-9]")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_./]*[A-Za-z0-9]|[A-Za-z0-9]")
_RF = re.compile(r"RF\d{2}[A-Z0-9]{1,21}")


def normalize(reference: str) -> str:
    """Upper case without separators: ``inv-2026/001`` -> ``INV2026001``."""
    return _NON_ALNUM.sub("", reference.upper())


def _iso7064_mod97(text: str) -> int:
    digits = "".join(str(int(ch, 36)) for ch in text)
    return int(digits) % 97


def rf_reference(invoice_number: str) -> str:
    """The ISO 11649 structured creditor reference (``RFkk`` + up to 21 characters) of an invoice number."""
    body = normalize(invoice_number)
    if not body or len(body) > 21:
        raise ValueError(f"{invoice_number!r} cannot be an ISO 11649 reference (1-21 letters and digits)")
    check = 98 - _iso7064_mod97(body + "RF00")
    return f"RF{check:02d}{body}"


def is_valid_rf(reference: str) -> bool:
    ref = normalize(reference)
    if not _RF.fullmatch(ref):
        return False
    return _iso7064_mod97(ref[4:] + ref[:4]) == 1


_MOD10_TABLE = (0, 9, 4, 6, 8, 2, 7, 1, 3, 5)


def mod10_recursive(digits: str) -> int:
    """The check digit of Swiss ISR/QR references (modulo 10, recursive)."""
    carry = 0
    for ch in digits:
        carry = _MOD10_TABLE[(carry + int(ch)) % 10]
    return (10 - carry) % 10


def qr_reference(invoice_number: str) -> str:
    """The 27-digit QR/ISR reference carrying an invoice number's digits (26 digits + check digit)."""
    digits = "".join(ch for ch in invoice_number if ch.isdigit())
    if not digits or len(digits) > 26:
        raise ValueError(f"{invoice_number!r} has no digits to carry in a QR reference")
    body = digits.rjust(26, "0")
    return body + str(mod10_recursive(body))


def is_valid_qr(reference: str) -> bool:
    ref = reference.replace(" ", "")
    return len(ref) == 27 and ref.isdigit() and mod10_recursive(ref[:26]) == int(ref[26])


def digits_key(invoice_number: str) -> str:
    return "".join(ch for ch in invoice_number if ch.isdigit()).lstrip("0")


def candidate_references(text: str, references: Sequence[str] = ()) -> tuple[tuple[str, str], ...]:
    """Every token that could name an invoice: (kind, key) with kind ``number``, ``rf`` or ``qr``;
    structured references first, then the tokens of the free text in order (memoised: a statement's
    texts are scanned once for the book and once for matching)."""
    return _candidates(text or "", tuple(references))


@lru_cache(maxsize=262_144)
def _candidates(text: str, references: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()

    def add(kind: str, key: str) -> None:
        if key and (kind, key) not in seen:
            seen.add((kind, key))
            out.append((kind, key))

    def scan(token: str) -> None:
        flat = normalize(token)
        if not flat:
            return
        if flat.startswith("RF") and is_valid_rf(flat):
            add("rf", flat[4:])
        digits_only = token.replace(" ", "")
        if len(digits_only) == 27 and is_valid_qr(digits_only):
            add("qr", digits_only[:26].lstrip("0"))
        add("number", flat)

    for ref in references:
        if ref:
            scan(ref)
            compact = ref.replace(" ", "")
            if compact != ref:
                scan(compact)
    for token in _TOKEN.findall(text or ""):
        scan(token)
        if any(sep in token for sep in "/._"):
            for part in re.split(r"[/._]", token):
                if part:
                    scan(part)
    # QR references are often printed in groups of five digits: "21 00000 00003 13947 14300 09017"
    for run in re.findall(r"(?:\d[ ]?){27,}", text or ""):
        compact = run.replace(" ", "")
        for start in range(0, len(compact) - 26):
            piece = compact[start:start + 27]
            if is_valid_qr(piece):
                add("qr", piece[:26].lstrip("0"))
    return tuple(out)


# --------------------------------------------------------------------------- the working index


@dataclass
class InvoiceBook:
    """Open invoices indexed for matching; balances decrease as receipts are applied, so two
    receipts never consume the same balance. Built once per run (a statement, a payment)."""

    invoices: dict[str, OpenInvoice] = field(default_factory=dict)
    balance: dict[str, int] = field(default_factory=dict)
    by_number: dict[str, str] = field(default_factory=dict)
    by_digits: dict[str, list[str]] = field(default_factory=dict)
    by_customer: dict[str, list[str]] = field(default_factory=dict)
    by_amount: dict[tuple[str, int], list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, invoices: Iterable[OpenInvoice]) -> InvoiceBook:
        book = cls()
        for inv in invoices:
            book.add(inv)
        for numbers in book.by_customer.values():
            numbers.sort(key=lambda n: (book.invoices[n].due_date, book.invoices[n].date, n))
        return book

    def add(self, inv: OpenInvoice) -> None:
        if inv.balance <= 0:
            return
        self.invoices[inv.number] = inv
        self.balance[inv.number] = inv.balance
        self.by_number.setdefault(normalize(inv.number), inv.number)
        key = digits_key(inv.number)
        if key:
            self.by_digits.setdefault(key, []).append(inv.number)
        self.by_customer.setdefault(inv.customer, []).append(inv.number)
        self.by_amount.setdefault((inv.currency, inv.balance), []).append(inv.number)

    def open_of(self, customer: str) -> list[OpenInvoice]:
        return [self.invoices[n] for n in self.by_customer.get(customer, ()) if self.balance[n] > 0]

    def consume(self, number: str, amount: int) -> None:
        left = self.balance[number] - amount
        if left < 0:
            raise ValueError(f"over-applying invoice {number}: {amount} > {self.balance[number]}")
        self.balance[number] = left

    def lookup(self, kind: str, key: str, min_length: int) -> list[str]:
        if kind == "qr":
            return list(self.by_digits.get(key, ()))
        if len(key) < min_length:
            return []
        found = self.by_number.get(key)
        return [found] if found else []


# --------------------------------------------------------------------------- allocation helpers


def _pct(part: int, whole: int) -> Decimal:
    return Decimal(part) * 100 / Decimal(whole) if whole else Decimal(0)


def _to_receipt(minor: int, inv_ccy: str, rc_ccy: str, convert: Converter) -> int:
    return minor if inv_ccy == rc_ccy else convert(minor, inv_ccy, rc_ccy)


def _to_invoice(minor: int, rc_ccy: str, inv_ccy: str, convert: Converter) -> int:
    return minor if inv_ccy == rc_ccy else convert(minor, rc_ccy, inv_ccy)


def _allocate(receipt: Receipt, targets: Sequence[OpenInvoice], book: InvoiceBook, rules: MatchRules,
              convert: Converter) -> tuple[list[Allocation], int, str]:
    """Apply the receipt to ``targets`` in order (oldest due first): full balances while the money lasts,
    a part of the next one; a short payment within tolerance on a single remaining invoice is written off.
    Returns (allocations, unapplied in the receipt currency, kind: full/over/partial/short_pay)."""
    left = receipt.amount
    allocations: list[Allocation] = []
    kind = "full"
    for pos, inv in enumerate(targets):
        if left <= 0:
            break
        open_inv = book.balance[inv.number]
        if open_inv <= 0:
            continue
        available = _to_invoice(left, receipt.currency, inv.currency, convert)
        if available >= open_inv:
            pay = _to_receipt(open_inv, inv.currency, receipt.currency, convert)
            pay = min(pay, left)
            allocations.append(Allocation(inv.number, open_inv, pay))
            left -= pay
            continue
        short = open_inv - available
        last = pos == len(targets) - 1
        tolerance = _short_pay_tolerance(open_inv, inv.currency != receipt.currency, rules)
        if last and short <= tolerance:
            allocations.append(Allocation(inv.number, available, left, write_off=short))
            kind = "short_pay"
        else:
            allocations.append(Allocation(inv.number, available, left))
            kind = "partial"
        left = 0
    if left > 0 and allocations:
        kind = "over"
    return allocations, left, kind


def _short_pay_tolerance(open_minor: int, cross_currency: bool, rules: MatchRules) -> int:
    pct = rules.short_pay_max_pct + (rules.fx_tolerance_pct if cross_currency else Decimal(0))
    by_pct = int((Decimal(open_minor) * pct / 100).to_integral_value(rounding=ROUND_HALF_UP))
    cap = rules.short_pay_max_minor if not cross_currency else max(rules.short_pay_max_minor, by_pct)
    return min(by_pct, cap)


def _conf(value: str) -> Decimal:
    return Decimal(value)


def _oldest_first(invoices: Iterable[OpenInvoice]) -> list[OpenInvoice]:
    return sorted(invoices, key=lambda i: (i.due_date, i.date, i.number))


def find_combination(amounts: Sequence[int], target: int, *, max_size: int, max_nodes: int,
                     want: int = 2) -> tuple[list[tuple[int, ...]], bool]:
    """Index sets of ``amounts`` (positive) with at least two members summing exactly to ``target``.

    Depth-first over the amounts in descending order, pruned by the sum still reachable;
    stops after ``want`` solutions or ``max_nodes`` steps. Returns (solutions, exhausted):
    ``exhausted`` is False when the step budget ran out before the search was complete."""
    order = sorted(range(len(amounts)), key=lambda i: -amounts[i])
    values = [amounts[i] for i in order]
    suffix = [0] * (len(values) + 1)
    for i in range(len(values) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + values[i]
    solutions: list[tuple[int, ...]] = []
    nodes = 0
    complete = True
    chosen: list[int] = []

    def dfs(start: int, remaining: int) -> bool:
        nonlocal nodes, complete
        for i in range(start, len(values)):
            nodes += 1
            if nodes > max_nodes:
                complete = False
                return True
            v = values[i]
            if v > remaining:
                continue
            if suffix[i] < remaining:
                return False
            chosen.append(i)
            if v == remaining:
                if len(chosen) >= 2:
                    solutions.append(tuple(sorted(order[j] for j in chosen)))
                    if len(solutions) >= want:
                        chosen.pop()
                        return True
            elif len(chosen) < max_size and dfs(i + 1, remaining - v):
                chosen.pop()
                return True
            chosen.pop()
        return False

    if target > 0:
        dfs(0, target)
    return solutions, complete


# --------------------------------------------------------------------------- matching


def match_receipt(receipt: Receipt, book: InvoiceBook, rules: MatchRules,
                  convert: Converter = _same_currency_only) -> Match:
    """Match one receipt against the book (balances are consumed only for applied allocations)."""
    result = _match(receipt, book, rules, convert)
    if result.allocations:
        for a in result.allocations:
            book.consume(a.invoice, a.amount + a.write_off)
    return result


def apply_receipts(receipts: Iterable[Receipt], book: InvoiceBook, rules: MatchRules,
                   convert: Converter = _same_currency_only) -> list[Match]:
    return [match_receipt(r, book, rules, convert) for r in receipts]


def _decide(receipt: Receipt, customer: str | None, allocations: list[Allocation], left: int, reason: str,
            confidence: Decimal, detail: str, rules: MatchRules) -> Match:
    if confidence >= rules.auto_apply_min_confidence:
        return Match(receipt.id, customer, tuple(allocations), left, reason, confidence, detail)
    return Match(receipt.id, customer, (), receipt.amount, reason, confidence, detail, proposal=tuple(allocations))


def _compatible(inv: OpenInvoice, receipt: Receipt, convert: Converter) -> bool:
    if inv.currency == receipt.currency:
        return True
    try:
        convert(1, receipt.currency, inv.currency)
    except LookupError:
        return False
    return True


def _match(receipt: Receipt, book: InvoiceBook, rules: MatchRules, convert: Converter) -> Match:
    customer = receipt.customer
    if receipt.amount <= 0:
        return Match(receipt.id, customer, (), max(receipt.amount, 0), "not_a_receipt", _conf("1.00"),
                     "the amount is not positive")
    # 0. an invoice named explicitly
    if receipt.invoice:
        inv = book.invoices.get(receipt.invoice)
        if inv is None or book.balance.get(receipt.invoice, 0) <= 0:
            return Match(receipt.id, customer, (), receipt.amount, "invoice_not_open", _conf("1.00"),
                         f"invoice {receipt.invoice} has no open balance; the payment is held on account")
        if customer and inv.customer != customer:
            return _decide(receipt, customer, [], receipt.amount, "invoice_other_customer", _conf("0.30"),
                           f"invoice {inv.number} belongs to {inv.customer}, not {customer}", rules)
        if not _compatible(inv, receipt, convert):
            return Match(receipt.id, customer, (), receipt.amount, "no_rate", _conf("0.00"),
                         f"no FX rate {receipt.currency}->{inv.currency}")
        allocs, left, kind = _allocate(receipt, [inv], book, rules, convert)
        return Match(receipt.id, inv.customer, tuple(allocs), left, f"invoice_given_{kind}"
                     if kind != "full" else "invoice_given", _conf("1.00"), f"invoice {inv.number} named")

    # 1. by reference
    found: list[str] = []
    ambiguous_digits = False
    for kind, key in candidate_references(receipt.text, receipt.references):
        numbers = book.lookup(kind, key, rules.min_reference_length)
        if kind == "qr" and len(numbers) > 1:
            narrowed = [n for n in numbers if customer is None or book.invoices[n].customer == customer]
            if len(narrowed) != 1:
                ambiguous_digits = True
                continue
            numbers = narrowed
        for n in numbers:
            if n not in found and book.balance.get(n, 0) > 0:
                found.append(n)
    if found:
        invs = [book.invoices[n] for n in found]
        owners = {i.customer for i in invs}
        confidence = _conf("0.99")
        if customer:
            mine = [i for i in invs if i.customer == customer]
            if not mine:
                return _decide(receipt, customer, [], receipt.amount, "reference_other_customer", _conf("0.40"),
                               f"{', '.join(found)} belong(s) to {', '.join(sorted(owners))}, not {customer}", rules)
            invs = mine
        elif len(owners) > 1:
            return _decide(receipt, None, [], receipt.amount, "reference_several_customers", _conf("0.30"),
                           f"{', '.join(found)} belong to several customers", rules)
        else:
            customer = invs[0].customer
            confidence = _conf("0.97")
        invs = [i for i in invs if _compatible(i, receipt, convert)]
        if not invs:
            return Match(receipt.id, customer, (), receipt.amount, "no_rate", _conf("0.00"),
                         f"no FX rate from {receipt.currency} for the referenced invoice(s)")
        targets = _oldest_first(invs)
        allocs, left, kind = _allocate(receipt, targets, book, rules, convert)
        reason = "reference" if kind == "full" else f"reference_{kind}"
        if kind in ("partial", "over"):
            confidence = min(confidence, _conf("0.95"))
        elif kind == "short_pay":
            confidence = min(confidence, _conf("0.93"))
        matched_numbers = ", ".join(a.invoice for a in allocs)
        return _decide(receipt, customer, allocs, left, reason, confidence,
                       f"invoice number(s) {matched_numbers} found in the remittance", rules)

    if customer is None:
        # no reference, no customer: a unique open invoice of the exact amount is only a proposal
        candidates = [n for n in book.by_amount.get((receipt.currency, receipt.amount), ())
                      if book.balance.get(n, 0) == receipt.amount]
        if len(candidates) == 1:
            inv = book.invoices[candidates[0]]
            return _decide(receipt, None, [Allocation(inv.number, receipt.amount, receipt.amount)], 0,
                           "exact_amount_unknown_customer", _conf("0.50"),
                           f"payer unknown; {inv.number} of {inv.customer} is the only open invoice of this amount",
                           rules)
        detail = "payer unknown and no invoice reference" + (" (a QR reference matched several invoices)"
                                                             if ambiguous_digits else "")
        return Match(receipt.id, None, (), receipt.amount, "unknown_customer", _conf("0.00"), detail)

    open_invs = [i for i in book.open_of(customer) if _compatible(i, receipt, convert)]
    if not open_invs:
        return Match(receipt.id, customer, (), receipt.amount, "no_open_invoice", _conf("1.00"),
                     f"{customer} has no open invoice; the payment is held as customer credit")

    # 2. exact amount for the customer
    def in_receipt_ccy(inv: OpenInvoice) -> int:
        return _to_receipt(book.balance[inv.number], inv.currency, receipt.currency, convert)

    exact = [i for i in open_invs if in_receipt_ccy(i) == receipt.amount]
    if len(exact) == 1:
        inv = exact[0]
        return _decide(receipt, customer, [Allocation(inv.number, book.balance[inv.number], receipt.amount)], 0,
                       "exact_amount", _conf("0.90"), f"the only open invoice of {customer} for this amount", rules)
    if len(exact) > 1:
        inv = _oldest_first(exact)[0]
        return _decide(receipt, customer, [Allocation(inv.number, book.balance[inv.number], receipt.amount)], 0,
                       "exact_amount_ambiguous", _conf("0.60"),
                       f"{len(exact)} open invoices of {customer} have this amount; the oldest is proposed", rules)

    # 3. a combination of open invoices (same currency only: sums are exact)
    same = [i for i in open_invs if i.currency == receipt.currency][: rules.subset_max_invoices]
    if len(same) >= 2:
        amounts = [book.balance[i.number] for i in same]
        solutions, complete = find_combination(amounts, receipt.amount, max_size=rules.subset_max_size,
                                               max_nodes=rules.subset_max_nodes)
        if solutions:
            chosen = [same[k] for k in solutions[0]]
            allocs = [Allocation(i.number, book.balance[i.number], book.balance[i.number])
                      for i in _oldest_first(chosen)]
            unique = len(solutions) == 1 and complete
            confidence = _conf("0.85") if unique else _conf("0.55")
            detail = (f"{len(chosen)} open invoices of {customer} sum to the amount"
                      + ("" if unique else " (other combinations too; a person should choose)"))
            return _decide(receipt, customer, allocs, 0, "combination" if unique else "combination_ambiguous",
                           confidence, detail, rules)

    # a short payment of a single invoice without any reference: proposed only
    for inv in open_invs:
        bal = in_receipt_ccy(inv)
        if bal > receipt.amount and bal - receipt.amount <= _short_pay_tolerance(
                bal, inv.currency != receipt.currency, rules):
            amount_inv = _to_invoice(receipt.amount, receipt.currency, inv.currency, convert)
            return _decide(receipt, customer, [Allocation(inv.number, amount_inv, receipt.amount,
                                                          write_off=book.balance[inv.number] - amount_inv)], 0,
                           "short_pay_amount", _conf("0.70"),
                           f"close to the balance of {inv.number} (short by {bal - receipt.amount})", rules)
    return Match(receipt.id, customer, (), receipt.amount, "no_match", _conf("0.00"),
                 f"no reference, amount or combination of {customer}'s open invoices matches")


# --------------------------------------------------------------------------- aging, DSO

BUCKETS = ("current", "d1_30", "d31_60", "d61_90", "over_90")


def bucket(days_past_due: int) -> str:
    if days_past_due <= 0:
        return "current"
    if days_past_due <= 30:
        return "d1_30"
    if days_past_due <= 60:
        return "d31_60"
    if days_past_due <= 90:
        return "d61_90"
    return "over_90"


def aging(items: Iterable[tuple[int, date]], as_of: date) -> dict[str, int]:
    """Sum open amounts (minor) by bucket of days past their due date as of a date."""
    out = dict.fromkeys(BUCKETS, 0)
    for amount, due in items:
        out[bucket((as_of - due).days)] += amount
    return out


def dso_days(receivables: int, billed: int, days: int) -> Decimal:
    """Days sales outstanding: receivables / billed over the period x days in the period (2 decimals)."""
    if billed <= 0:
        return Decimal("0.00")
    return (Decimal(receivables) * days / Decimal(billed)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# --------------------------------------------------------------------------- dunning


@dataclass(frozen=True, slots=True)
class DunningStep:
    """One step of a policy: ``kind`` retry (card), reminder (e-mail) or suspension; ``days`` after the
    anchor (the failure date for retries, the due date otherwise); ``template`` for reminders."""

    name: str
    kind: str
    days: int
    template: str | None = None


@dataclass(frozen=True, slots=True)
class DunningPolicy:
    name: str
    steps: tuple[DunningStep, ...]


STEP_KINDS = ("retry", "reminder", "suspension")


def steps_due(policy: DunningPolicy, *, failed_on: date | None, due_on: date, as_of: date,
              done: frozenset[str]) -> list[tuple[DunningStep, date]]:
    """The steps of a policy that are due on or before ``as_of`` and not done yet, in date order.
    Retries count from the failure date (none without a failure); the rest from the due date."""
    out = []
    for position, step in enumerate(policy.steps):
        if step.name in done:
            continue
        anchor = failed_on if step.kind == "retry" else due_on
        if anchor is None:
            continue
        when = anchor + timedelta(days=step.days)
        if when <= as_of:
            out.append((when, position, step))
    return [(step, when) for when, _, step in sorted(out, key=lambda x: (x[0], x[1]))]
