"""`closeloop import crm` and `closeloop customers ...` as a script runs them: output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "customers"


def cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("CLOSELOOP_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "closeloop.cli", "--db", db, *args], capture_output=True, text=True,
                          cwd=ROOT, env=env)


@pytest.fixture
def db(db_url):
    return db_url


def test_import_refused_then_accept_valid_then_customers_commands(db):
    hubspot = str(FIXTURES / "hubspot-companies.csv")
    mapping = str(FIXTURES / "hubspot-mapping.yaml")
    dry = cli("import", "crm", hubspot, "--format", "hubspot", "--mapping", mapping, "--dry-run", "--json", db=db)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["dry_run"] is True
    refused = cli("import", "crm", hubspot, "--format", "hubspot", "--mapping", mapping, db=db)
    assert refused.returncode == 3
    assert "import refused: 2 of 10 rows rejected" in refused.stderr
    assert "Rejected rows" in refused.stdout and "Atlantis" in refused.stdout
    done = cli("import", "crm", hubspot, "--format", "hubspot", "--mapping", mapping, "--accept-valid", "--json",
               db=db)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["created"], report["rejected"], report["committed"]) == (8, 2, True)
    show = cli("customers", "show", "HS-5301234002", "--json", db=db)
    assert json.loads(show.stdout)["parent"] == "HS-5301234001"
    dups = cli("customers", "duplicates", "--json", db=db)
    assert [(d["a"], d["b"]) for d in json.loads(dups.stdout)["items"]] == [("HS-5301234004", "HS-5301234005")]
    merged = cli("customers", "merge", "HS-5301234004", "HS-5301234005", "--reason", "same", "--json", db=db)
    assert merged.returncode == 0 and json.loads(merged.stdout)["status"] == "merged"
    again = cli("customers", "merge", "HS-5301234004", "HS-5301234005", "--json", db=db)
    assert again.returncode == 3 and json.loads(again.stdout)["error"]["code"] == "validation_error"
    tree = cli("customers", "hierarchy", "HS-5301234002", db=db)
    assert tree.returncode == 0 and "top parent HS-5301234001" in tree.stdout
    sor = cli("customers", "sor", "--entity-type", "customer", "--json", db=db)
    assert json.loads(sor.stdout)["entities"]["customer"]["fields"]["payment_terms_days"] == ["billing"]
    missing = cli("import", "crm", str(FIXTURES / "nope.csv"), db=db)
    assert missing.returncode == 3 and "nope.csv does not" in missing.stderr
