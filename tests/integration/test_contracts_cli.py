"""The contracts CLI over a database: quotes, contracts as of a date, renewals, opportunity imports."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from closeloop.app import App
from closeloop.cli.main import app as cli
from tests.fixtures.contracts.helpers import catalogue, company, seats_quote

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "contracts"


def run(db: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", db, *args])
    return result.exit_code, result.output


def test_cli(db_url, clock):
    app = App(db_url, clock=clock, actor="tester", migrate=False)
    try:
        company(app)
        catalogue(app)
        seats_quote(app, discount="30", auto_renew=True)
    finally:
        app.close()
    code, out = run(db_url, "quotes", "show", "Q1")
    assert code == 0 and "pending" in out and "discount_over_20" in out
    code, out = run(db_url, "quotes", "accept", "Q1", "--contract-id", "C1", "--json")
    assert code == 3 and json.loads(out)["error"]["code"] == "approval_required"
    assert run(db_url, "quotes", "approve", "Q1", "--approver", "sam")[0] == 0
    code, out = run(db_url, "quotes", "accept", "Q1", "--contract-id", "C1")
    assert code == 0 and "contract C1: active" in out
    code, out = run(db_url, "contracts", "show", "C1", "--as-of", "2026-02-01", "--json")
    data = json.loads(out)
    assert (data["status"], data["mrr"], data["lines"][0]["unit_amount"]) == ("active", "70.00", "7.00")
    assert "TCV 840.00" in run(db_url, "contracts", "show", "C1", "--as-of", "2026-02-01")[1]
    code, out = run(db_url, "renewals", "run", "--as-of", "2027-01-01", "--json")
    assert code == 0 and json.loads(out)["count"] == 1
    assert "renewal" in run(db_url, "contracts", "history", "C1")[1]
    assert "C1" in run(db_url, "contracts", "list")[1]
    assert "seat-usd" in run(db_url, "catalog", "prices", "--sku", "seat")[1]
    assert "onboarding" in run(db_url, "catalog", "products")[1]
    code, out = run(db_url, "import", "opportunities", str(FIXTURES / "sf_opportunities.csv"), "--line-items",
                    str(FIXTURES / "sf_opportunity_line_items.csv"), "--dry-run")
    assert code == 1 and "4 valid, 1 rejected" in out and "line 6" in out
