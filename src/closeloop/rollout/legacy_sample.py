"""A realistic legacy data set for ``closeloop import migration``, generated from a seed.

    from closeloop.rollout.legacy_sample import generate
    planted = generate("legacy/", customers=200, seed=7)     # -> the planted problems and their counts

    python -m closeloop.rollout.legacy_sample DIR [--customers N] [--seed S] [--clean]

Three legal entities (US01 in USD, DE01 in EUR, GB01 in GBP) with their customers (valid US EINs, German
and British VAT numbers with correct check digits, real postal-code formats), a parent/subsidiary
hierarchy, contacts, a small catalogue (a monthly platform fee, monthly seats, an annual support plan)
in three currencies, active contracts billed in advance through the current billing period, open
invoices (some partly paid, some German ones in US dollars) and a balanced opening trial balance per
entity whose receivables equal the open invoices.

Unless ``clean``, problems are planted — each listed in ``manifest.yaml`` (``planted``) with the count
the migration report must find (tests/unit/test_migration_sample.py asserts it):

- ``duplicates``: near-copies of customers (another legacy id, the name re-typed, same tax id and
  address), found by the matcher and merged; some subsidiaries point at the copy;
- ``duplicate_id``: a legacy customer id reused for another company, an invoice number reused;
- ``broken_reference``: invoices and contacts for customers that do not exist, a contract line on a
  price that does not exist, a subsidiary whose parent does not exist;
- ``bad_tax_id``: German VAT numbers with a wrong check digit;
- ``unbalanced``: GB01's opening balances are off by 100.00;
- ``overlapping_contract``: a second contract for the same customer and product over the same days;
- ``billed_through_misaligned``: contracts whose billed-through date ends inside a billing period;
- ``hierarchy_cycle``: two accounts that name each other as parent (both rows).

The receivables of the opening balances include the invoices of planted broken references (the
legacy system had them), so with ``--accept-valid`` the AR tie-out holds: the difference is exactly
the rejected invoices, which wait in the exception queue.
"""

from __future__ import annotations

import csv
import random
import sys
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import yaml

CUTOVER = date(2026, 1, 31)
SYSTEM = "LegacyBill 7.2"
ENTITIES = (("US01", "Acme Inc", "US", "USD"), ("DE01", "Acme GmbH", "DE", "EUR"), ("GB01", "Acme Ltd", "GB", "GBP"))
COUNTRY_ENTITY = {"US": "US01", "DE": "DE01", "GB": "GB01"}
CURRENCY = {"US01": "USD", "DE01": "EUR", "GB01": "GBP"}
USD_PER = {"EUR": Decimal("0.92")}  # DE01 books its US-dollar receivables at 0.92 EUR per USD

_SYLLABLES = ("ka", "vel", "mor", "tri", "zan", "lo", "bri", "qua", "sen", "dor", "fal", "gri", "hal", "jun",
              "kel", "lum", "nix", "ost", "pra", "rin", "sol", "tav", "ul", "ver", "wex", "yor", "zel", "cor", "dan",
              "eb", "fin", "gal", "hes", "ir", "jor", "kin", "lar", "mel", "nor", "par")
_SECTORS = ("Logistics", "Systems", "Analytics", "Foods", "Textiles", "Robotics", "Labs", "Energy", "Media",
            "Health", "Materials", "Software", "Consulting", "Freight", "Optics", "Pharma", "Retail", "Marine")
_FORMS = {"US": ("Inc", "LLC", "Corp"), "DE": ("GmbH", "AG", "KG"), "GB": ("Ltd", "PLC", "LLP")}
_STREETS = {"US": ("Main St", "Oak Avenue", "Market Street", "Harbor Blvd", "Elm Street", "Lakeview Drive"),
            "DE": ("Hauptstrasse", "Bahnhofstrasse", "Gartenweg", "Lindenallee", "Schillerstrasse"),
            "GB": ("High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane")}
_CITIES = {"US": (("Austin", "TX", "787"), ("New York", "NY", "100"), ("Pittsburgh", "PA", "152"),
                  ("Seattle", "WA", "981"), ("San Jose", "CA", "951"), ("Portland", "OR", "972")),
           "DE": (("Berlin", None, "10"), ("Hamburg", None, "20"), ("Munich", None, "80"), ("Cologne", None, "50")),
           "GB": (("London", None, "EC1A"), ("Leeds", None, "LS1"), ("Bristol", None, "BS1"), ("Glasgow", None, "G2"))}
_EIN_PREFIXES = ("12", "20", "26", "27", "45", "46", "47", "81", "82", "83", "84", "85", "86", "87", "88", "91",
                 "92", "93", "98", "99")
_FIRST = ("Anna", "Ben", "Chloe", "David", "Eva", "Felix", "Grace", "Hugo", "Iris", "Jonas", "Kate", "Liam")
_LAST = ("Smith", "Meyer", "Jones", "Schulz", "Brown", "Fischer", "Taylor", "Weber", "Wilson", "Becker")

PRODUCTS: tuple[dict[str, Any], ...] = (
    {"sku": "PLAT", "name": "Platform subscription", "treatment": "ratable", "family": "platform",
     "amount": {"USD": "500.00", "EUR": "460.00", "GBP": "400.00"}, "model": "flat", "period": "month"},
    {"sku": "SEAT", "name": "User seats", "treatment": "ratable", "family": "platform",
     "amount": {"USD": "25.00", "EUR": "23.00", "GBP": "20.00"}, "model": "per_unit", "period": "month"},
    {"sku": "SUPP", "name": "Premium support (annual)", "treatment": "ratable", "family": "services",
     "amount": {"USD": "2400.00", "EUR": "2200.00", "GBP": "1900.00"}, "model": "flat", "period": "year"},
)


def _de_vat(rng: random.Random, valid: bool = True) -> str:
    from stdnum.iso7064 import mod_11_10

    body = str(rng.randint(10_000_000, 99_999_999))
    check = mod_11_10.calc_check_digit(body)
    if not valid:
        check = str((int(check) + 1 + rng.randrange(8)) % 10)
    return f"DE{body}{check}"


def _gb_vat(rng: random.Random) -> str:
    body = str(rng.randint(1_000_000, 9_999_999))
    total = sum(w * int(d) for w, d in zip((8, 7, 6, 5, 4, 3, 2), body, strict=True))
    return f"GB{body}{(-total) % 97:02d}"


def _ein(rng: random.Random) -> str:
    return f"{rng.choice(_EIN_PREFIXES)}-{rng.randint(1_000_000, 9_999_999)}"


def _tax_id(country: str, rng: random.Random) -> str:
    return {"US": _ein, "DE": _de_vat, "GB": _gb_vat}[country](rng)


def _postal(country: str, prefix: str, rng: random.Random) -> str:
    if country == "US":
        return f"{prefix}{rng.randint(0, 99):02d}"
    if country == "DE":
        return f"{prefix}{rng.randint(100, 999)}"
    return f"{prefix} {rng.randint(1, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _add_months(d: date, months: int) -> date:
    import calendar

    idx = d.year * 12 + d.month - 1 + months
    y, m = divmod(idx, 12)
    return date(y, m + 1, min(d.day, calendar.monthrange(y, m + 1)[1]))


class _Names:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def company(self, country: str) -> tuple[str, str]:
        tries = 0
        while True:
            # Two or three syllables make about 65,000 words: past that (a 100,000-customer set) the tenth
            # miss in a row draws a longer word, so the generator never spins on an exhausted space.
            tries += 1
            size = self.rng.choice((2, 3, 3)) if tries <= 10 else 4 + tries // 50
            word = "".join(self.rng.choice(_SYLLABLES) for _ in range(size))
            if word in self.used or len(word) < 4:
                continue
            self.used.add(word)
            sector = self.rng.choice(_SECTORS)
            return f"{word.capitalize()} {sector} {self.rng.choice(_FORMS[country])}", word


def generate(directory: str | Path, *, customers: int = 200, seed: int = 7, clean: bool = False,
             invoices_per_customer: float = 2.0, contract_share: float = 0.7) -> dict[str, Any]:
    """Write the data set into ``directory``; returns the planted problems with the counts the report must find."""
    rng = random.Random(seed)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    names = _Names(rng)
    k = 0 if clean else max(1, customers // 100)  # planted rows per kind of problem
    cust_rows: list[dict[str, str]] = []
    for n in range(customers):
        country = rng.choices(("US", "DE", "GB"), weights=(5, 3, 2))[0]
        name, word = names.company(country)
        city, region, prefix = rng.choice(_CITIES[country])
        entity = COUNTRY_ENTITY[country]
        row = {"legacy_id": f"C{n + 1:06d}", "name": name, "parent_id": "",
               "street": f"{rng.randint(1, 999)} {rng.choice(_STREETS[country])}", "city": city,
               "region": region or "", "postal_code": _postal(country, prefix, rng), "country": country,
               "email": f"billing@{word}.com", "phone": f"+{rng.randint(1, 49)} {rng.randint(100, 999)}"
               f" {rng.randint(100000, 999999)}", "website": f"https://www.{word}.com",
               "tax_id": _tax_id(country, rng), "currency": CURRENCY[entity], "entity": entity,
               "payment_terms_days": rng.choice(("30", "30", "45", "60"))}
        cust_rows.append(row)
    # Hierarchy: a tenth are subsidiaries of an earlier account of the same entity.
    roots: dict[str, list[dict[str, str]]] = defaultdict(list)  # the earlier accounts without a parent, in order
    for row in cust_rows[:10]:
        roots[row["entity"]].append(row)
    for row in cust_rows[10:]:
        if rng.random() < 0.1:
            siblings = roots[row["entity"]]
            if siblings:
                row["parent_id"] = rng.choice(siblings[-50:])["legacy_id"]
        if not row["parent_id"]:
            roots[row["entity"]].append(row)
    planted: dict[str, Any] = {"duplicates": 0, "problems": defaultdict(int), "rows": defaultdict(list)}
    problems = planted["problems"]
    quiet: set[str] = set()  # accounts with planted problems get no dependents (no cascades)
    # Bad tax ids: German VAT numbers with a wrong check digit.
    children_of = {r["parent_id"] for r in cust_rows if r["parent_id"]}
    germans = [r for r in cust_rows if r["country"] == "DE" and not r["parent_id"] and r["legacy_id"] not in children_of]
    for r in rng.sample(germans, min(k, len(germans))):
        r["tax_id"] = _de_vat(rng, valid=False)
        quiet.add(r["legacy_id"])
        problems["bad_tax_id"] += 1
        planted["rows"]["bad_tax_id"].append(r["legacy_id"])
    # A subsidiary whose parent does not exist; two accounts naming each other as parent.
    pool = [r for r in cust_rows if r["legacy_id"] not in quiet and not r["parent_id"]
            and r["legacy_id"] not in children_of]
    extra: list[dict[str, str]] = []
    if k:
        orphan = pool.pop()
        orphan["parent_id"] = "C999999"
        quiet.add(orphan["legacy_id"])
        problems["broken_reference"] += 1
        planted["rows"]["missing_parent"].append(orphan["legacy_id"])
        a, b = pool.pop(), pool.pop()
        a["parent_id"], b["parent_id"] = b["legacy_id"], a["legacy_id"]
        quiet.update((a["legacy_id"], b["legacy_id"]))
        problems["hierarchy_cycle"] += 2
        planted["rows"]["hierarchy_cycle"].extend((a["legacy_id"], b["legacy_id"]))
    # Near-duplicates: another legacy id for the same company (re-typed name, same tax id and address).
    next_id = customers + 1
    copies: list[tuple[dict[str, str], dict[str, str]]] = []
    for src in rng.sample(pool, min(k * 2, len(pool))):
        variant = rng.randrange(3)
        base = " ".join(w for w in src["name"].split() if w not in sum(_FORMS.values(), ()))
        name = (src["name"].upper() if variant == 0 else
                f"{base}, {rng.choice(_FORMS[src['country']])}." if variant == 1 else src["name"].replace(" ", "  "))
        copy = {**src, "legacy_id": f"C{next_id:06d}", "name": name, "parent_id": "",
                "phone": src["phone"], "email": src["email"].replace("billing@", "accounts@")}
        next_id += 1
        extra.append(copy)
        copies.append((src, copy))
        planted["duplicates"] += 1
        planted["rows"]["duplicates"].append([src["legacy_id"], copy["legacy_id"]])
    # Subsidiaries hanging under a copy follow the survivor when the copy is merged.
    for src, copy in copies[:2]:
        kids = [r for r in cust_rows if r["parent_id"] == "" and r["entity"] == src["entity"]
                and r["legacy_id"] not in quiet and r is not src]
        if kids:
            kid = rng.choice(kids)
            kid["parent_id"] = copy["legacy_id"]
            planted["rows"]["child_of_copy"].append([kid["legacy_id"], copy["legacy_id"]])
    # A legacy id reused for another company.
    unplanted = [r for r in cust_rows if r["legacy_id"] not in quiet]
    for _ in range(k):
        victim = rng.choice(unplanted)
        country = victim["country"]
        name, word = names.company(country)
        extra.append({**victim, "name": name, "email": f"billing@{word}.com", "website": f"https://www.{word}.com",
                      "tax_id": _tax_id(country, rng), "parent_id": ""})
        problems["duplicate_id"] += 1
        planted["rows"]["duplicate_customer_id"].append(victim["legacy_id"])
    rng.shuffle(extra)
    all_customers = cust_rows + extra
    _write(out / "entities.csv", ("code", "name", "country", "currency"),
           [dict(zip(("code", "name", "country", "currency"), e, strict=True)) for e in ENTITIES])
    _write(out / "customers.csv", ("legacy_id", "name", "parent_id", "street", "city", "region", "postal_code",
                                   "country", "email", "phone", "website", "tax_id", "currency", "entity",
                                   "payment_terms_days"), all_customers)
    # Contacts.
    live = [r for r in cust_rows if r["legacy_id"] not in quiet]
    contacts = []
    for n, r in enumerate(live):
        if rng.random() < 0.7:
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            contacts.append({"legacy_id": f"P{n + 1:06d}", "customer_id": r["legacy_id"], "first_name": first,
                             "last_name": last, "email": f"{first.lower()}.{last.lower()}@{r['email'].split('@')[1]}",
                             "title": rng.choice(("CFO", "Controller", "AP clerk", "IT manager"))})
    for j in range(k):
        contacts.append({"legacy_id": f"PX{j + 1:05d}", "customer_id": f"C9{j + 1:05d}", "first_name": "Orphan",
                         "last_name": "Contact", "email": "", "title": ""})
        problems["broken_reference"] += 1
        planted["rows"]["contact_unknown_customer"].append(f"PX{j + 1:05d}")
    _write(out / "contacts.csv", ("legacy_id", "customer_id", "first_name", "last_name", "email", "title"), contacts)
    # Catalogue.
    _write(out / "products.csv", ("sku", "name", "treatment", "family"),
           [{k2: p[k2] for k2 in ("sku", "name", "treatment", "family")} for p in PRODUCTS])
    prices = [{"price_id": f"{p['sku']}-{cur}", "sku": p["sku"], "currency": cur, "model": p["model"],
               "amount": amount, "period": p["period"], "timing": "advance"}
              for p in PRODUCTS for cur, amount in p["amount"].items()]
    _write(out / "prices.csv", ("price_id", "sku", "currency", "model", "amount", "period", "timing"), prices)
    # Contracts billed in advance through the billing period that holds the cutover.
    contracts, lines = [], []
    n_contract = 0

    def contract(cust: dict[str, str], start: date, months: int, sku_lines: list[tuple[str, str]], period: int,
                 billed: date | None = None) -> dict[str, str]:
        nonlocal n_contract
        n_contract += 1
        cid = f"K{n_contract:06d}"
        bday = start.day
        if billed is None:
            k_ = 0
            while _add_months(start, (k_ + 1) * period) <= CUTOVER:
                k_ += 1
            billed = _add_months(start, (k_ + 1) * period) - timedelta(days=1)
        row = {"contract_id": cid, "customer_id": cust["legacy_id"], "start": start.isoformat(),
               "term_months": str(months), "billing_day": str(bday), "billed_through": billed.isoformat(),
               "auto_renew": rng.choice(("true", "false"))}
        contracts.append(row)
        for i, (price_id, qty) in enumerate(sku_lines, 1):
            lines.append({"contract_id": cid, "line_id": f"L{i}", "price_id": price_id, "quantity": qty})
        return row

    with_contracts = [r for r in live if rng.random() < contract_share]
    plan_of: dict[str, tuple[date, int, list[tuple[str, str]], int]] = {}
    for r in with_contracts:
        cur = r["currency"]
        start = date(rng.choice((2024, 2025)), rng.randint(1, 12), rng.choice((1, 1, 1, 15)))
        if rng.random() < 0.2:
            months, period, sl = 36, 12, [(f"SUPP-{cur}", "1")]
        else:
            months = rng.choice((24, 36)) if start.year == 2024 else rng.choice((12, 24, 36))
            period = 1
            sl = [(f"PLAT-{cur}", "1")] + ([(f"SEAT-{cur}", str(rng.randint(3, 80)))] if rng.random() < 0.6 else [])
        if _add_months(start, months) <= CUTOVER + timedelta(days=40):
            months += 12
        contract(r, start, months, sl, period)
        plan_of[r["legacy_id"]] = (start, months, sl, period)
    monthly = [r for r in with_contracts if plan_of[r["legacy_id"]][3] == 1]
    for r in rng.sample(monthly, min(k, len(monthly))):  # a second contract over the same days
        start, months, sl, period = plan_of[r["legacy_id"]]
        contract(r, _add_months(start, 2), months - 2, sl[:1], period)
        problems["overlapping_contract"] += 1
        planted["rows"]["overlapping_contract"].append(contracts[-1]["contract_id"])
    others = [r for r in live if r["legacy_id"] not in plan_of]
    for r in rng.sample(others, min(k, len(others))):  # billed through the middle of a period
        start = date(2025, rng.randint(1, 6), 1)
        row = contract(r, start, 24, [(f"PLAT-{r['currency']}", "1")], 1, billed=date(2026, 1, 20))
        problems["billed_through_misaligned"] += 1
        planted["rows"]["billed_through_misaligned"].append(row["contract_id"])
    if k and others:
        r = rng.choice([x for x in others if x["legacy_id"] not in plan_of])
        contract(r, date(2025, 3, 1), 24, [(f"GOLD-{r['currency']}", "1")], 1)
        problems["broken_reference"] += 1
        planted["rows"]["contract_unknown_price"].append(contracts[-1]["contract_id"])
    _write(out / "contracts.csv", ("contract_id", "customer_id", "start", "term_months", "billing_day",
                                   "billed_through", "auto_renew"), contracts)
    _write(out / "contract_lines.csv", ("contract_id", "line_id", "price_id", "quantity"), lines)
    # Open invoices of the last 90 days.
    invoices: list[dict[str, str]] = []
    n_inv = 0
    targets = [r for r in cust_rows if r["legacy_id"] not in quiet] + [c for _, c in copies]
    for r in targets:
        count = int(invoices_per_customer) + (1 if rng.random() < invoices_per_customer % 1 else 0)
        if rng.random() < 0.15:
            count = 0
        for _ in range(count):
            n_inv += 1
            cur = r["currency"]
            if r["entity"] == "DE01" and rng.random() < 0.08:
                cur = "USD"
            day = CUTOVER - timedelta(days=rng.randint(0, 90))
            net = Decimal(rng.randint(5_000, 500_000)) / 100
            rate = {"US01": Decimal("0"), "DE01": Decimal("0.19"), "GB01": Decimal("0.20")}[r["entity"]]
            tax = (net * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            total = net + tax
            balance = total if rng.random() < 0.8 else (total * Decimal(rng.randint(10, 90)) / 100).quantize(
                Decimal("0.01"))
            invoices.append({"number": f"LEG-{n_inv:07d}", "customer_id": r["legacy_id"], "entity": r["entity"],
                             "currency": cur, "date": day.isoformat(),
                             "due_date": (day + timedelta(days=int(r["payment_terms_days"]))).isoformat(),
                             "total": _money(total), "tax": _money(tax), "balance": _money(balance)})
    for j in range(k):  # invoices of customers the legacy system lost
        n_inv += 1
        invoices.append({"number": f"LEG-{n_inv:07d}", "customer_id": f"C8{j + 1:05d}", "entity": "US01",
                         "currency": "USD", "date": "2026-01-10", "due_date": "2026-02-09", "total": "120.00",
                         "tax": "0.00", "balance": "120.00"})
        problems["broken_reference"] += 1
        planted["rows"]["invoice_unknown_customer"].append(f"LEG-{n_inv:07d}")
    ar: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for inv in invoices:
        ar[(inv["entity"], inv["currency"])] += Decimal(inv["balance"])
    for j in range(k):  # a number reused (the legacy system's own duplicate): not in its GL
        src = invoices[j * 7 % max(1, len(invoices) - k)]
        invoices.append({**src, "total": "99.00", "tax": "0.00", "balance": "99.00", "date": src["date"]})
        problems["duplicate_id"] += 1
        planted["rows"]["duplicate_invoice_number"].append(src["number"])
    _write(out / "open_invoices.csv", ("number", "customer_id", "entity", "currency", "date", "due_date", "total",
                                       "tax", "balance"), invoices)
    # Opening balances: receivables = the open invoices; balanced by retained earnings.
    ob = []
    for code, _name, _country, functional in ENTITIES:
        lines_ = []
        for (ent, cur), amount in sorted(ar.items()):
            if ent != code:
                continue
            if cur == functional:
                lines_.append({"account": "1100", "debit": _money(amount), "currency": "", "txn_amount": ""})
            else:
                lines_.append({"account": "1100", "debit": _money(amount * USD_PER[functional]), "currency": cur,
                               "txn_amount": _money(amount)})
        cash = Decimal(rng.randint(1_000_000, 9_000_000))
        lines_.append({"account": "1000", "debit": _money(cash)})
        lines_.append({"account": "1500", "debit": _money(Decimal(rng.randint(100_000, 900_000)))})
        deferred = Decimal(rng.randint(50_000, 400_000))
        lines_.append({"account": "2200", "credit": _money(deferred)})
        lines_.append({"account": "2100", "credit": _money(Decimal(rng.randint(10_000, 90_000)))})
        lines_.append({"account": "3000", "credit": "1000000.00"})
        debits = sum((Decimal(x.get("debit") or 0) for x in lines_), Decimal(0))
        credits = sum((Decimal(x.get("credit") or 0) for x in lines_), Decimal(0))
        lines_.append({"account": "3100", "credit": _money(debits - credits)} if debits >= credits else
                      {"account": "3100", "debit": _money(credits - debits)})
        if code == "GB01" and k:
            lines_[-1] = {**lines_[-1], **({"credit": _money(Decimal(lines_[-1]["credit"]) + 100)}
                                           if lines_[-1].get("credit") else
                                           {"debit": _money(Decimal(lines_[-1]["debit"]) - 100)})}
            problems["unbalanced"] += 1
            planted["rows"]["unbalanced"].append("GB01")
        for x in lines_:
            ob.append({"entity": code, "memo": "", **x})
    _write(out / "opening_balances.csv", ("entity", "account", "debit", "credit", "currency", "txn_amount", "memo"),
           ob)
    result = {"system": SYSTEM, "cutover": CUTOVER.isoformat(), "customers": len(all_customers),
              "invoices": len(invoices), "contracts": len(contracts), "duplicates": planted["duplicates"],
              "problems": dict(sorted(problems.items())), "rows": {k2: v for k2, v in sorted(planted["rows"].items())}}
    (out / "manifest.yaml").write_text(yaml.safe_dump({"system": SYSTEM, "cutover": CUTOVER.isoformat(),
                                                        "planted": {"duplicates": result["duplicates"],
                                                                    "problems": result["problems"]}},
                                                       sort_keys=False))
    return result


def _write(path: Path, header: tuple[str, ...], rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({h: r.get(h, "") for h in header})


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m closeloop.rollout.legacy_sample")
    parser.add_argument("dir")
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--clean", action="store_true", help="plant no problems")
    args = parser.parse_args(argv)
    result = generate(args.dir, customers=args.customers, seed=args.seed, clean=args.clean)
    print(yaml.safe_dump({k: v for k, v in result.items() if k != "rows"}, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
