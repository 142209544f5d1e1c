"""Coupons: ``coupon.create``, ``coupon.apply`` and the ``coupon`` / ``coupons`` queries.

A coupon (:class:`closeloop.billing.discounts.Coupon`) is redeemed on a customer (``coupon.apply``
without contract), a contract (``coupon.apply`` with ``contract_id``, or the quote's ``coupons``) or
one contract line (``coupon.apply`` with ``contract_id`` and ``line_id``, or the quote line's
``coupons``). Bill runs turn the redemptions in force into discount lines
(:func:`closeloop.billing.discounts.apply_coupons`) before tax.

Refused (``validation_error`` naming the coupon and the reason, ``details.reason``): a coupon that has
expired (past ``redeem_by``), a fixed coupon in another currency than the customer's invoices, one
redeemed ``max_redemptions`` times already (exhausted); an unknown coupon is ``not_found``. The same
checks run on a quote's coupons (registered with the contracts area). A coupon already redeemed on
the same customer, contract and line is accepted once (idempotent).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from closeloop.billing.discounts import DURATIONS, Coupon, Redemption, Use
from closeloop.contracts.pricing import register_coupon_check
from closeloop.core.errors import ConflictError, NotFoundError, ValidationError
from closeloop.core.money import check_currency, format_minor, to_minor
from closeloop.core.periods import parse_date
from closeloop.core.registry import command, payload, query

ROLES = ("billing", "admin", "sales_ops")
_COLS = ("code, name, percent_off, amount_off, currency, duration, duration_months, redeem_by, max_redemptions, redeemed,"
         " duration_periods")


def _coupon(row: Sequence[Any]) -> Coupon:
    code, name, pct, amount, cur, duration, months, redeem_by, max_red, _redeemed, periods = row
    return Coupon(code=code, name=name, duration=duration, percent_off=None if pct is None else Decimal(pct),
                  amount_off=None if amount is None else int(amount), currency=cur,
                  duration_months=None if months is None else int(months),
                  redeem_by=None if redeem_by is None else date.fromisoformat(redeem_by),
                  max_redemptions=None if max_red is None else int(max_red),
                  duration_periods=None if periods is None else int(periods))


def get_coupon(uow: Any, code: str, *, field: str = "coupon") -> tuple[Coupon, int]:
    """A coupon and how many times it was redeemed; ``not_found`` otherwise."""
    row = uow.one(f"SELECT {_COLS} FROM billing_coupon WHERE code = ?", (code,))
    if row is None:
        raise NotFoundError(f"coupon {code!r} does not exist; create it with coupon.create", field=field, record=code)
    return _coupon(row), int(row[9])


def _check(uow: Any, code: str, currency: str, day: date) -> str | None:
    """The contracts area's check of a quote's coupon codes."""
    row = uow.one(f"SELECT {_COLS} FROM billing_coupon WHERE code = ?", (code,))
    if row is None:
        return f"coupon {code!r} does not exist"
    return _coupon(row).problem(currency, day, int(row[9]))


register_coupon_check(_check)


# --------------------------------------------------------------------------- coupon.create


@payload
class CouponCreate:
    coupon: str
    duration: str
    percent_off: Decimal | None = None
    amount_off: Decimal | None = None
    currency: str | None = None
    duration_months: int | None = None
    duration_periods: int | None = None
    name: str | None = None
    redeem_by: str | None = None
    max_redemptions: int | None = None


@command("coupon.create", CouponCreate, roles=ROLES,
         summary="Create a coupon: percent_off or amount_off (+ currency), for once, repeating (N months) or forever")
def coupon_create(uow: Any, cmd: CouponCreate) -> dict[str, Any]:
    errors: list[dict[str, str]] = []

    def bad(field: str, reason: str) -> None:
        errors.append({"field": field, "reason": reason})

    code = cmd.coupon
    if not code or len(code) > 64 or any(c.isspace() for c in code):
        bad("coupon", "a coupon code is 1-64 characters without spaces")
    if (cmd.percent_off is None) == (cmd.amount_off is None):
        bad("percent_off", "give percent_off or amount_off (one of them)")
    amount = None
    if cmd.percent_off is not None and not 0 < cmd.percent_off <= 100:
        bad("percent_off", f"must be above 0 and at most 100 ({cmd.percent_off})")
    if cmd.amount_off is not None:
        if not cmd.currency:
            bad("currency", "a fixed-amount coupon needs its currency")
        else:
            try:
                check_currency(cmd.currency)
                amount = to_minor(cmd.amount_off, cmd.currency, field="amount_off")
                if amount <= 0:
                    bad("amount_off", f"must be above zero ({cmd.amount_off})")
            except ValidationError as exc:
                bad("amount_off", exc.message)
    if cmd.duration not in DURATIONS:
        bad("duration", f"must be one of {', '.join(DURATIONS)} ({cmd.duration!r})")
    if cmd.duration == "repeating" and (cmd.duration_months is None) == (cmd.duration_periods is None):
        bad("duration_months", "a repeating coupon lasts duration_months or duration_periods (one of them)")
    for name in ("duration_months", "duration_periods"):
        value = getattr(cmd, name)
        if value is not None and (cmd.duration != "repeating" or value < 1):
            bad(name, f"only a repeating coupon takes {name}, 1 or more")
    if cmd.max_redemptions is not None and cmd.max_redemptions < 1:
        bad("max_redemptions", "must be 1 or more")
    redeem_by = None
    if cmd.redeem_by is not None:
        try:
            redeem_by = parse_date(cmd.redeem_by, field="redeem_by").isoformat()
        except ValidationError as exc:
            bad("redeem_by", exc.message)
    if errors:
        raise ValidationError(f"coupon {code}: " + "; ".join(f"{e['field']}: {e['reason']}" for e in errors),
                              field=errors[0]["field"], record=code, errors=errors)
    values = (code, cmd.name or code, None if cmd.percent_off is None else format(cmd.percent_off.normalize(), "f"),
              amount, cmd.currency if amount is not None else None, cmd.duration, cmd.duration_months, redeem_by,
              cmd.max_redemptions)
    existing = uow.one(f"SELECT {_COLS} FROM billing_coupon WHERE code = ?", (code,))
    if existing is not None:
        if tuple(existing[:9]) == values and existing[10] == cmd.duration_periods:
            return {**_coupon_view(uow, code), "created": False}
        raise ConflictError(f"coupon {code!r} already exists with other terms; coupons never change (create another)",
                            field="coupon", record=code)
    uow.execute(f"INSERT INTO billing_coupon ({_COLS}, created_at) VALUES (?,?,?,?,?,?,?,?,?,0,?,?)",
                (*values, cmd.duration_periods, uow.now()))
    return {**_coupon_view(uow, code), "created": True}


# --------------------------------------------------------------------------- redemptions


def redeem(uow: Any, coupon: Coupon, redeemed: int, *, customer_id: int, customer: str, currency: str, start: date,
           contract_id: str | None = None, line_id: str | None = None, source: str = "apply",
           check: bool = True) -> tuple[int, bool]:
    """Record a redemption (idempotent per coupon, customer and scope): (its id, created?)."""
    scope = f"{contract_id or ''}/{line_id or ''}"
    row = uow.one("SELECT id FROM billing_coupon_redemption WHERE coupon = ? AND customer_id = ? AND scope = ?",
                  (coupon.code, customer_id, scope))
    if row is not None:
        return int(row[0]), False
    if check:
        problem = coupon.problem(currency, start, redeemed)
        if problem:
            reason = "expired" if "expired" in problem else "exhausted" if "exhausted" in problem else "currency"
            raise ValidationError(problem, field="coupon", record=coupon.code, reason=reason)
    remaining = coupon.amount_off if coupon.amount_off is not None and coupon.duration == "once" else None
    rid = uow.scalar("INSERT INTO billing_coupon_redemption (coupon, customer_id, customer, contract_id, line_id, scope,"
                     " start, uses, remaining, discounted, status, source, created_at) VALUES (?,?,?,?,?,?,?,0,?,0,"
                     "'active',?,?) RETURNING id", (coupon.code, customer_id, customer, contract_id, line_id, scope,
                                                    start.isoformat(), remaining, source, uow.now()))
    uow.execute("UPDATE billing_coupon SET redeemed = redeemed + 1 WHERE code = ?", (coupon.code,))
    return int(rid), True


@payload
class CouponApply:
    coupon: str
    customer: str
    contract_id: str | None = None
    line_id: str | None = None
    start: str | None = None


@command("coupon.apply", CouponApply, roles=ROLES,
         summary="Redeem a coupon on a customer, a contract or a contract line (from start, default today)")
def coupon_apply(uow: Any, cmd: CouponApply) -> dict[str, Any]:
    from closeloop.customers.service import get_customer

    cust = get_customer(uow, cmd.customer)
    coupon, redeemed = get_coupon(uow, cmd.coupon)
    start = parse_date(cmd.start, field="start") if cmd.start else uow.today()
    currency = getattr(cust, "currency", None) or ""
    if cmd.line_id and not cmd.contract_id:
        raise ValidationError("a line coupon names its contract_id too", field="contract_id")
    if cmd.contract_id:
        row = uow.one("SELECT customer_id, currency FROM billing_subscription WHERE contract_id = ?", (cmd.contract_id,))
        if row is None:
            raise NotFoundError(f"contract {cmd.contract_id!r} has no subscription in billing", field="contract_id",
                                record=cmd.contract_id)
        if int(row[0]) != int(cust.id):
            raise ValidationError(f"contract {cmd.contract_id} belongs to another customer than {cmd.customer}",
                                  field="contract_id", record=cmd.contract_id)
        currency = row[1]
        if cmd.line_id:
            from closeloop.billing.subscriptions import load_changes
            from closeloop.contracts.model import replay

            if cmd.line_id not in replay(load_changes(uow, cmd.contract_id)).line_order:
                raise NotFoundError(f"contract {cmd.contract_id} has no line {cmd.line_id!r}", field="line_id",
                                    record=cmd.line_id)
    if not currency and coupon.currency:
        currency = coupon.currency
    rid, created = redeem(uow, coupon, redeemed, customer_id=int(cust.id), customer=cust.external_id,
                          currency=currency, start=start, contract_id=cmd.contract_id, line_id=cmd.line_id)
    return {"redemption": rid, "coupon": coupon.code, "customer": cust.external_id, "contract_id": cmd.contract_id,
            "line_id": cmd.line_id, "start": start.isoformat(), "created": created}


def redeem_from_contract(uow: Any, payload: dict[str, Any], change: Any, lines: Sequence[Any]) -> None:
    """Record the coupons a contract event carries: the contract's (activation) and its lines' (activation,
    added lines). Checked at quote time; recorded here even if the coupon ran out since (documented)."""
    cid = payload["contract_id"]
    customer_id, customer, currency = int(payload["customer_id"]), str(payload["customer"]), str(payload["currency"])
    wanted: list[tuple[str, str | None, date]] = []
    if change.kind == "activation":
        for code in change.ext("coupons") or ():
            wanted.append((code, None, change.effective))
    for ln in lines:
        for code in (ln.ext("coupons") if ln.extensions else None) or ():
            wanted.append((code, ln.line_id, ln.start))
    for code, line_id, start in wanted:
        row = uow.one(f"SELECT {_COLS} FROM billing_coupon WHERE code = ?", (code,))
        if row is None:
            continue
        redeem(uow, _coupon(row), int(row[9]), customer_id=customer_id, customer=customer, currency=currency,
               start=start, contract_id=cid, line_id=line_id, source="quote", check=False)


def redemptions_for(uow: Any, customer_ids: Sequence[int]) -> dict[int, list[Redemption]]:
    """Active redemptions per customer, in the order they were redeemed (one query per chunk)."""
    out: dict[int, list[Redemption]] = {}
    ids = list(customer_ids)
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        for r in uow.all(f"SELECT r.id, r.customer_id, r.contract_id, r.line_id, r.start, r.uses, r.remaining,"
                         f" r.discounted, r.status, {', '.join('c.' + c.strip() for c in _COLS.split(','))}"
                         " FROM billing_coupon_redemption r JOIN billing_coupon c ON c.code = r.coupon"
                         f" WHERE r.customer_id IN ({marks}) AND r.status = 'active' ORDER BY r.id", chunk):
            red = Redemption(id=int(r[0]), coupon=_coupon(r[9:]), customer_id=int(r[1]), start=date.fromisoformat(r[4]),
                             contract_id=r[2], line_id=r[3], uses=int(r[5]),
                             remaining=None if r[6] is None else int(r[6]), discounted=int(r[7]), status=r[8])
            out.setdefault(int(r[1]), []).append(red)
    return out


def save_redemptions(uow: Any, changed: Sequence[Redemption]) -> None:
    if changed:
        uow.executemany("UPDATE billing_coupon_redemption SET uses = ?, remaining = ?, discounted = ?, status = ?"
                        " WHERE id = ?", [(r.uses, r.remaining, r.discounted, r.status, r.id) for r in changed])


def restore(uow: Any, invoice_id: int) -> None:
    """A voided invoice gives its coupons back what it used (invoice.void)."""
    uses: dict[int, int] = {}
    for ref, net in uow.all("SELECT ref, net FROM billing_line WHERE invoice_id = ? AND kind = 'discount'", (invoice_id,)):
        if ref and str(ref).startswith("coupon:"):
            uses[int(str(ref).split(":", 1)[1])] = uses.get(int(str(ref).split(":", 1)[1]), 0) - int(net)
    for rid, amount in uses.items():
        row = uow.one("SELECT r.remaining, c.duration, c.amount_off FROM billing_coupon_redemption r JOIN billing_coupon c"
                      " ON c.code = r.coupon WHERE r.id = ?", (rid,))
        if row is None:
            continue
        remaining = None if row[0] is None else int(row[0]) + amount
        uow.execute("UPDATE billing_coupon_redemption SET uses = CASE WHEN uses > 0 THEN uses - 1 ELSE 0 END,"
                    " discounted = discounted - ?, remaining = ?, status = 'active' WHERE id = ?",
                    (amount, remaining, rid))


def uses_json(uses: Sequence[Use], currency: str) -> list[dict[str, Any]]:
    return [{"coupon": u.code, "redemption": u.redemption_id, "discount": format_minor(u.amount, currency),
             **({"unused": format_minor(u.unused, currency)} if u.unused else {})} for u in uses]


# --------------------------------------------------------------------------- queries


def _coupon_view(uow: Any, code: str) -> dict[str, Any]:
    c, redeemed = get_coupon(uow, code)
    out: dict[str, Any] = {"coupon": c.code, "name": c.name, "duration": c.duration, "redeemed": redeemed}
    if c.percent_off is not None:
        out["percent_off"] = format(c.percent_off.normalize(), "f")
    if c.amount_off is not None:
        out.update(amount_off=format_minor(c.amount_off, c.currency or "USD"), currency=c.currency)
    for key, value in (("duration_months", c.duration_months), ("duration_periods", c.duration_periods),
                       ("max_redemptions", c.max_redemptions),
                       ("redeem_by", None if c.redeem_by is None else c.redeem_by.isoformat())):
        if value is not None:
            out[key] = value
    return out


@payload
class CouponQuery:
    coupon: str


@query("coupon", CouponQuery, summary="A coupon and its redemptions (used, unused remainder, status)")
def coupon_query(uow: Any, q: CouponQuery) -> dict[str, Any]:
    view = _coupon_view(uow, q.coupon)
    cur = view.get("currency") or "USD"
    rows = uow.all("SELECT id, customer, contract_id, line_id, start, uses, remaining, discounted, status FROM"
                   " billing_coupon_redemption WHERE coupon = ? ORDER BY id", (q.coupon,))
    view["redemptions"] = [{"redemption": int(r[0]), "customer": r[1], "contract_id": r[2], "line_id": r[3],
                            "start": r[4], "uses": int(r[5]), "discounted": format_minor(int(r[7]), cur),
                            "status": r[8], **({"remaining": format_minor(int(r[6]), cur)} if r[6] is not None else {})}
                           for r in rows]
    return view


@payload
class CouponsQuery:
    customer: str | None = None


@query("coupons", CouponsQuery, summary="Coupons, or a customer's redemptions")
def coupons_query(uow: Any, q: CouponsQuery) -> dict[str, Any]:
    if q.customer:
        from closeloop.customers.service import get_customer

        cust = get_customer(uow, q.customer)
        rows = uow.all("SELECT r.id, r.coupon, r.contract_id, r.line_id, r.start, r.uses, r.remaining, r.discounted,"
                       " r.status, c.currency FROM billing_coupon_redemption r JOIN billing_coupon c ON c.code = r.coupon"
                       " WHERE r.customer_id = ? ORDER BY r.id", (cust.id,))
        cur = getattr(cust, "currency", None) or "USD"
        items = [{"redemption": int(r[0]), "coupon": r[1], "contract_id": r[2], "line_id": r[3], "start": r[4],
                  "uses": int(r[5]), "discounted": format_minor(int(r[7]), r[9] or cur), "status": r[8],
                  **({"remaining": format_minor(int(r[6]), r[9] or cur)} if r[6] is not None else {})} for r in rows]
        return {"count": len(items), "items": items}
    codes = [r[0] for r in uow.all("SELECT code FROM billing_coupon ORDER BY code")]
    return {"count": len(codes), "items": [_coupon_view(uow, c) for c in codes]}
