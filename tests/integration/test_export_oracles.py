"""The exported journal is read unchanged by hledger, ledger-cli and beancount, with identical balances.

The oracles are external tools. `.ci/run` installs hledger and ledger and sets
CLOSELOOP_REQUIRE_ORACLES=1, under which a missing tool fails the test;
elsewhere the test is skipped with the reason shown.
"""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
import subprocess
from datetime import date, timedelta

import pytest

from closeloop.core.money import format_minor
from closeloop.ledger.export import export_journal
from closeloop.ledger.model import EntryDraft, LineDraft
from closeloop.ledger.service import post_entries

REQUIRE = os.environ.get("CLOSELOOP_REQUIRE_ORACLES") == "1"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if REQUIRE:
            pytest.fail(f"{tool} is required (CLOSELOOP_REQUIRE_ORACLES=1) but not installed")
        pytest.skip(f"{tool} not installed (apt-get install {tool}); set CLOSELOOP_REQUIRE_ORACLES=1 to require it")
    return path


def generate(app, seed: int = 7, n: int = 600) -> None:
    app.do("entity.create", {"code": "US01", "name": "Acme Inc", "country": "US", "currency": "USD"})
    app.do("entity.create", {"code": "JP01", "name": "Acme KK", "country": "JP", "currency": "JPY"})
    app.do("entity.create", {"code": "BH01", "name": "Acme WLL", "country": "BH", "currency": "BHD"})
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-01", "rate": "1.0837"})
    rng = random.Random(seed)
    codes = ["1000", "1100", "2100", "2200", "3000", "4000", "4100", "6200", "6400", "7000"]
    drafts = []
    for i in range(n):
        entity = ("US01", "JP01", "BH01")[i % 3]
        day = (date(2026, 1, 1) + timedelta(days=rng.randint(0, 729))).isoformat()
        k = rng.randint(2, 4)
        amounts = [rng.randint(-5_000_000, 5_000_000) for _ in range(k - 1)]
        amounts.append(-sum(amounts))
        drafts.append(EntryDraft(entity, day, f"generated {i}; with ; semicolons \"and quotes\"",
                                 tuple(LineDraft(rng.choice(codes), a) for a in amounts)))
    with app.unit_of_work() as uow:
        post_entries(uow, drafts)
    # one foreign-currency manual journal, exported in the functional currency
    app.do("journal.post", {"entity": "US01", "date": "2026-03-01", "memo": "EUR", "lines": [
        {"account": "cash", "debit": "100.00", "currency": "EUR"},
        {"account": "4900", "credit": "100.00", "currency": "EUR"}]})


def closeloop_balances(app) -> dict[str, str]:
    out = {}
    for code in ("US01", "JP01", "BH01"):
        tb = app.query("trial_balance", {"entity": code})
        for row in tb["rows"]:
            prefix = {"asset": "assets", "liability": "liabilities", "equity": "equity", "revenue": "revenues",
                      "expense": "expenses"}[row["type"]]
            out[f"{prefix}:{code}:{row['code']}"] = f"{tb['accounts'][row['code']]} {tb['currency']}"
    return out


def export(app, tmp_path, fmt: str) -> str:
    path = tmp_path / f"ledger.{fmt}"
    with app.unit_of_work(write=False) as uow, open(path, "w") as fh:
        export_journal(uow, fh, fmt)
    return str(path)


@pytest.mark.oracle
def test_hledger_balances_equal_closeloop(app, tmp_path):
    tool = need("hledger")
    generate(app)
    path = export(app, tmp_path, "hledger")
    res = subprocess.run([tool, "-f", path, "balance", "--flat", "-O", "csv", "--no-total"],
                         capture_output=True, text=True, check=True)
    theirs = {row["account"]: row["balance"] for row in csv.DictReader(io.StringIO(res.stdout))}
    assert theirs == closeloop_balances(app)


@pytest.mark.oracle
def test_ledger_cli_balances_equal_closeloop(app, tmp_path):
    tool = need("ledger")
    generate(app)
    path = export(app, tmp_path, "ledger")
    res = subprocess.run([tool, "-f", path, "balance", "--flat", "--no-total", "--empty",
                          "--format", "%(account)\t%(display_total)\n"], capture_output=True, text=True, check=True)
    theirs = dict(line.split("\t") for line in res.stdout.splitlines() if line.strip())
    theirs = {k: v for k, v in theirs.items() if not v.startswith("0 ")}
    assert theirs == closeloop_balances(app)


def test_beancount_reads_the_export_with_identical_balances(app, tmp_path):
    loader = pytest.importorskip("beancount.loader")
    generate(app)
    path = export(app, tmp_path, "beancount")
    entries, errors, _ = loader.load_file(path)
    assert errors == []
    totals: dict[str, tuple[int, str]] = {}
    from decimal import Decimal

    for entry in entries:
        for posting in getattr(entry, "postings", []) or []:
            number, currency = posting.units.number, posting.units.currency
            old = totals.get(posting.account, (Decimal(0), currency))[0]
            totals[posting.account] = (old + number, currency)
    theirs = {acct.replace("Assets", "assets").replace("Liabilities", "liabilities").replace("Equity", "equity")
              .replace("Income", "revenues").replace("Expenses", "expenses"):
              f"{format_minor(int(num.scaleb({'USD': 2, 'JPY': 0, 'BHD': 3}[cur])), cur)} {cur}"
              for acct, (num, cur) in totals.items() if num != 0}
    assert theirs == closeloop_balances(app)
