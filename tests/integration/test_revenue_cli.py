"""The revenue CLI over a database, and the demo's monthly recognition runs."""

from __future__ import annotations

import io
import json
from datetime import date

from rich.console import Console
from typer.testing import CliRunner

from closeloop.app import App
from closeloop.cli.main import app as cli
from closeloop.revenue.demo import month_ends, run_monthly_revrec
from tests.integration.test_revenue_recognition import company, sign


def run(db: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", db, *args])
    return result.exit_code, result.output


def seeded(db_url: str, clock) -> None:
    app = App(db_url, clock=clock, actor="tester", migrate=False)
    try:
        clock.set(date(2026, 1, 15))
        company(app)
        sign(app, "2026-01-15", [{"line_id": "L1", "price_id": "pro-31", "quantity": 1},
                                 {"line_id": "S", "price_id": "support-y", "quantity": 1}])
        app.do("billing.run", {"as_of": "2026-01-15"})
    finally:
        app.close()


def test_cli(db_url, clock):
    seeded(db_url, clock)
    code, out = run(db_url, "revrec", "run", "--through", "2026-01-31", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["dry_run"] is True
    code, out = run(db_url, "revrec", "run", "--through", "2026-01-31")
    assert code == 0 and "RR-000001" in out and "recognised" in out
    code, out = run(db_url, "revrec", "run", "--through", "2026-01-31")
    assert code == 0 and "nothing due" in out
    code, out = run(db_url, "revenue", "rollforward", "--period", "2026-01", "--json")
    data = json.loads(out)
    assert code == 0 and data["ties"] is True and data["rows"][0]["billed"] == "1231.00"
    assert "yes" in run(db_url, "revenue", "rollforward", "--period", "2026-01")[1]
    code, out = run(db_url, "revenue", "waterfall", "--period", "2026-01..2026-03", "--json")
    assert code == 0 and json.loads(out)["periods"] == ["2026-01", "2026-02", "2026-03"]
    assert "total" in run(db_url, "revenue", "waterfall", "--period", "2026-01..2026-03")[1]
    code, out = run(db_url, "revenue", "rpo", "--as-of", "2026-01-31", "--json")
    assert code == 0 and json.loads(out)["totals"][0]["currency"] == "USD"
    assert "within 12 months" in run(db_url, "revenue", "rpo", "--as-of", "2026-01-31")[1]
    code, out = run(db_url, "revenue", "allocation", "C1", "--json")
    assert code == 0 and json.loads(out)["transaction_price"] == "1572.00"
    assert "S" in run(db_url, "revenue", "schedule", "C1")[1]
    code, out = run(db_url, "revenue", "allocation", "NOPE", "--json")
    assert code != 0 and json.loads(out)["error"]["code"] == "not_found"


def test_demo_runs_every_month_end_and_returns_the_rollforward(app, clock, db_url):
    seeded(db_url, clock)
    clock.set(date(2026, 4, 30))
    buffer = io.StringIO()
    result = run_monthly_revrec(app, "2026-04-30", Console(file=buffer, width=200))
    assert [r["through"] for r in result["runs"]] == ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]
    assert [r["period"] for r in result["rows"]] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    assert result["ties"] is True and "deferred revenue roll-forward" in buffer.getvalue()
    assert month_ends(date(2026, 1, 15), date(2026, 2, 10)) == [date(2026, 1, 31), date(2026, 2, 10)]
