"""The migration and parallel-run CLI: closeloop import migration, migration sample|status, parallel import|run|status."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from closeloop.cli.main import app as cli


def run(db: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", db, *args])
    return result.exit_code, result.output


def test_import_migration_dry_run_refusal_accept_valid_and_status(db_url, tmp_path):
    folder = tmp_path / "legacy"
    code, out = run(db_url, "migration", "sample", str(folder), "--customers", "120", "--seed", "5")
    assert code == 0 and "planted duplicates 2" in out
    planted = yaml.safe_load((folder / "manifest.yaml").read_text())["planted"]

    code, out = run(db_url, "import", "migration", str(folder), "--dry-run", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["status"] == "dry_run" and report["problem_counts"] == planted["problems"]
    assert report["duplicates"]["merged"] == planted["duplicates"]

    code, out = run(db_url, "import", "migration", str(folder))
    assert code == 3
    assert "refused, nothing written" in out and "validation_error: migration refused:" in out
    assert "bad_tax_id" in out and "AR tie-out" in out

    code, out = run(db_url, "import", "migration", str(folder), "--accept-valid", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["status"] == "accepted" and data["verify"]["passed"] is True
    assert data["created"]["merges"] == planted["duplicates"]

    code, out = run(db_url, "migration", "status")
    assert code == 0 and "passed" in out
    code, out = run(db_url, "migration", "status", "--json")
    status = json.loads(out)
    assert status["count"] == 1 and status["runs"][0]["mode"] == "accept_valid"

    code, out = run(db_url, "import", "migration", str(folder), "--accept-valid")
    assert code == 0 and "Post-migration check" in out


def test_parallel_cli(db_url, tmp_path, clock):
    from datetime import date

    from closeloop.app import App

    clock.set(date(2026, 2, 1))
    app = App(db_url, clock=clock, actor="tester", migrate=False)
    try:
        app.do("entity.create", {"code": "US01", "name": "Acme Inc", "country": "US", "currency": "USD"})
        app.do("customer.upsert", {"source": "crm", "external_id": "A", "name": "Alpha Corp", "country": "US",
                                   "region": "OR", "entity": "US01"})
        app.do("product.create", {"sku": "PLAT", "name": "Platform", "treatment": "ratable"})
        app.do("price.create", {"price_id": "P", "sku": "PLAT", "currency": "USD", "model": "flat",
                                "amount": "100.00", "period": "month", "timing": "advance"})
        app.do("quote.create", {"quote_id": "Q", "customer": "A", "start": "2026-02-01", "term_months": 12,
                                "lines": [{"line_id": "L1", "price_id": "P", "quantity": "1"}]})
        app.do("quote.accept", {"quote_id": "Q", "contract_id": "K"})
        app.do("billing.run", {"as_of": "2026-02-01"})
    finally:
        app.close()
    register = tmp_path / "register.csv"
    register.write_text("invoice,customer,date,sku,period_start,period_end,amount,tax\n"
                        "X-1,A,2026-02-01,PLAT,2026-02-01,2026-02-28,105.00,0.00\n")
    code, out = run(db_url, "parallel", "import", str(register), "--entity", "US01", "--period", "2026-02")
    assert code == 0 and "1 lines of 1 invoices" in out
    code, out = run(db_url, "parallel", "run", "--entity", "US01", "--period", "2026-02", "--json")
    assert code == 0
    assert json.loads(out)["differences"][0]["cause"] == "price"
    code, out = run(db_url, "parallel", "status", "--json")
    assert json.loads(out)["runs"][-1]["difference"] == "5.00"
    code, out = run(db_url, "parallel", "run", "--entity", "US01", "--period", "2026-03")
    assert code == 3 and "no legacy invoice register for US01 2026-03" in out
