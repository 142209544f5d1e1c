"""Demo data for the customer master: a Salesforce-style account export with planted duplicates and bad rows.

:func:`import_demo_accounts` is what ``make demo`` calls: it writes a few hundred
accounts as a Salesforce Data Loader CSV (Windows-1252, upper-case quoted headers, a
custom VAT number field), imports it with ``--accept-valid`` semantics and prints the
quality report. :func:`generate_accounts` is the seeded generator the
``customers.import`` benchmark also uses.
"""

from __future__ import annotations

import csv
import random
import tempfile
from pathlib import Path
from typing import Any

HEADERS = ["ID", "ISDELETED", "MASTERRECORDID", "NAME", "TYPE", "PARENTID", "BILLINGSTREET", "BILLINGCITY",
           "BILLINGSTATE", "BILLINGPOSTALCODE", "BILLINGCOUNTRY", "PHONE", "WEBSITE", "VAT_NUMBER__C",
           "LASTMODIFIEDDATE"]
_WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne", "Soylent", "Hooli", "Vandelay", "Pied", "Piper", "Aperture", "Massive", "Dynamic", "Oscorp", "Gringotts", "Monarch", "Virtucon", "Zorg", "Nakatomi", "Weyland", "Yutani", "Dunder", "Mifflin", "Kramerica", "Prestige", "Sterling", "Cooper", "Bluth", "Gekko", "Duff", "Krusty", "Sirius", "Ollivander", "Octan", "Genco", "Axiom", "Nordic", "Atlas", "Boreal", "Cobalt", "Delta", "Ember", "Fjord", "Granite", "Harbor", "Iris", "Juniper", "Kestrel", "Lumen", "Meridian", "Nimbus", "Orchid", "Pioneer", "Quartz", "Ridge", "Summit", "Tundra", "Vertex", "Willow", "Zephyr"]
_SUFFIXES = ("Inc", "LLC", "Ltd", "GmbH", "Corp", "Group", "Holdings", "SA", "BV", "AB", "", "", "")
_STREETS = ("Main Street", "Market St", "Oak Avenue", "High Street", "Church Road", "Park Lane", "Hauptstrasse",
            "Rue de la Paix", "Elm Drive", "Harbour Road")
_COUNTRIES = (("US", "United States", "CA", "94105"), ("US", "USA", "NY", "10017"), ("GB", "United Kingdom", "",
              "SW1A 1AA"), ("DE", "Germany", "", "10115"), ("FR", "France", "", "75008"), ("CA", "Canada", "ON",
              "M5V 3L9"), ("NL", "Netherlands", "", "1012 AB"), ("US", "US", "TX", "73301"))


def _tax_id(country: str, rng: random.Random) -> str:
    """A unique, valid tax id: a German VAT number (ISO 7064 MOD 11,10) or a US EIN; '' elsewhere."""
    if country == "DE":
        from stdnum.iso7064 import mod_11_10

        digits = str(rng.randint(10_000_000, 99_999_999))
        return f"DE{digits}{mod_11_10.calc_check_digit(digits)}"
    if country == "US":
        return f"04-{rng.randint(1_000_000, 9_999_999)}"
    return ""


def _typo(text: str, rng: random.Random) -> str:
    if len(text) < 4:
        return text
    i = rng.randrange(1, len(text) - 1)
    op = rng.randrange(3)
    if op == 0:
        return text[:i] + text[i + 1:]
    if op == 1:
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    return text[:i] + rng.choice("aeiourstln") + text[i + 1:]


def generate_accounts(n: int, path: Path, *, duplicate_share: float = 0.05, seed: int = 7,
                      bad_rows: int = 0) -> dict[str, Any]:
    """A Data Loader style account export: ``n`` rows, of which ``duplicate_share`` duplicate an
    earlier account (new id, a typo or a different legal form, same address), and ``bad_rows``
    with an unknown country or a tax id that fails its checksum. Returns what was planted."""
    rng = random.Random(seed)
    originals: list[list[str]] = []
    planted: list[tuple[str, str]] = []
    bad: list[str] = []
    with path.open("w", encoding="cp1252", errors="replace", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(HEADERS)
        for k in range(n):
            sf_id = f"001x{k:011d}AAA"
            if originals and rng.random() < duplicate_share:
                src = rng.choice(originals)
                name = src[3]
                variant = rng.randrange(3)
                if variant == 0:
                    name = _typo(name, rng)
                elif variant == 1:
                    base = " ".join(w for w in name.split() if w not in _SUFFIXES)
                    name = f"{base} {rng.choice(('Inc.', 'Limited', 'Corporation', 'Co'))}"
                else:
                    name = name.upper()
                row = [sf_id, "false", "", name, "Customer", "", src[6], src[7], src[8], src[9], src[10], src[11],
                       src[12], src[13], f"2026-01-0{rng.randint(1, 9)}T10:00:00.000Z"]
                planted.append((src[0], sf_id))
            else:
                country, spelled, state, postcode = rng.choice(_COUNTRIES)
                words = rng.sample(_WORDS, 2)
                name = f"{words[0]} {words[1]} {k} {rng.choice(_SUFFIXES)}".strip()
                street = f"{rng.randint(1, 9999)} {rng.choice(_STREETS)}"
                vat = _tax_id(country, rng) if rng.random() < 0.3 else ""
                row = [sf_id, "false", "", name, "Customer", "", street, f"City{rng.randint(1, 300)}", state,
                       postcode, spelled, f"+1 555 {rng.randint(1000000, 9999999)}",
                       f"https://www.{words[0].lower()}{k}.example.org", vat, "2025-12-01T10:00:00.000Z"]
                originals.append(row)
            if bad_rows and len(bad) < bad_rows and rng.random() < bad_rows * 3 / n:
                if rng.random() < 0.5:
                    row[10] = "Atlantis"
                else:
                    row[10], row[13] = "Germany", "DE136695977"
                bad.append(sf_id)
            writer.writerow(row)
    return {"rows": n, "duplicates": planted, "bad": bad}


MAPPING_YAML = "fields:\n  tax_id: VAT_NUMBER__C\n"


def import_demo_accounts(app: Any, console: Any, *, accounts: int = 300, seed: int = 11) -> dict[str, Any]:
    """Generate and import a demo account export; print and return the import report."""
    from rich.table import Table

    folder = Path(tempfile.mkdtemp(prefix="closeloop-demo-crm-"))
    data = folder / "salesforce_accounts.csv"
    mapping = folder / "mapping.yaml"
    mapping.write_text(MAPPING_YAML)
    planted = generate_accounts(accounts, data, duplicate_share=0.06, seed=seed, bad_rows=8)
    report: dict[str, Any] = app.do("customer.import", {"file": str(data), "format": "salesforce",
                                                        "mapping": str(mapping), "accept_valid": True,
                                                        "source": "crm"})
    q = report["quality"]
    console.print(f"[bold]CRM import[/] {data.name}: {report['rows_read']} rows, {report['created']} accounts created,"
                  f" {report['rejected']} rejected (in the exception queue), {report['suspected_duplicates']}"
                  f" suspected duplicates ({len(planted['duplicates'])} planted)")
    console.print(f"data quality score [bold]{q['score']}[/]: completeness {q['completeness']}, validity"
                  f" {q['validity']}, uniqueness {q['uniqueness']}, hierarchy {q['hierarchy']}")
    if report["rejections"]:
        table = Table("line", "account", "field", "reason", title="Rejected rows")
        for r in report["rejections"]:
            table.add_row(str(r["row"]), r["external_id"] or "", r["field"], r["reason"])
        console.print(table)
    if report["duplicates"]:
        table = Table("account", "duplicate of", "score", "decision", title="Suspected duplicates (top 10)")
        for d in report["duplicates"][:10]:
            table.add_row(d["external_id"], d["other"], d["score"], d["decision"])
        console.print(table)
    report["planted_duplicates"] = len(planted["duplicates"])
    report["planted_bad_rows"] = len(planted["bad"])
    return report
