"""Usage files (CSV with a header, JSON lines) through `closeloop usage import`, and usage.record with
arbitrary event values: a clean refusal (exit code 2 or 3, a message naming the line or field) or a correct
import, never an internal error; a refused batch records nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop.app import App
from tests.security import samples
from tests.security.conftest import FUZZ, Outcome, attempt, run_corpus, table_counts
from tests.security.corpus import csv_variants, inputs, json_variants
from tests.security.findings import known_cli_crash


def _contract(app: App) -> None:
    app.do("entity.create", {"code": "US01", "name": "Acme Inc", "country": "US", "currency": "USD"})
    app.do("customer.upsert", {"source": "crm", "external_id": "001A000001", "name": "Globex", "country": "US",
                               "region": "OR"})
    app.do("product.create", {"sku": "api", "name": "API calls", "treatment": "usage"})
    app.do("price.create", {"price_id": "api", "sku": "api", "currency": "USD", "model": "usage", "amount": "0.02",
                            "period": "month", "timing": "arrears", "metric": "api_calls"})
    app.do("quote.create", {"quote_id": "Q-1", "customer": "001A000001", "start": "2026-01-01", "term_months": 12,
                            "lines": [{"line_id": "U1", "price_id": "api", "quantity": 1}]})
    app.do("quote.accept", {"quote_id": "Q-1", "contract_id": "C-1"})


@pytest.fixture
def metered(app: App) -> App:
    _contract(app)
    return app


def usage_import(db_url: str, path: str) -> Any:
    from typer.testing import CliRunner

    from closeloop.cli.main import app as cli

    return CliRunner().invoke(cli, ["--db", db_url, "usage", "import", path, "--json"])


CASES = [(f"csv:{n}", d, ".csv") for n, d in csv_variants(samples.USAGE_CSV)]
CASES += [(f"jsonl:{n}", d, ".jsonl") for n, d in json_variants(samples.USAGE_JSONL)]


def test_the_seeds_import(metered, db_url, files):
    for seed, suffix in ((samples.USAGE_CSV, ".csv"), (samples.USAGE_JSONL, ".jsonl")):
        result = usage_import(db_url, files(seed, suffix))
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["events"] == 2


def test_malformed_usage_files_are_refused_cleanly(metered, db_url, files):
    def run(case: str, data: bytes, suffix: str) -> Outcome:
        before = table_counts(metered)["billing_usage"]
        result = usage_import(db_url, files(data, suffix))
        output = result.output
        if result.exit_code == 4 and known_cli_crash(output):
            return Outcome(known=known_cli_crash(output))
        assert result.exit_code in (0, 2, 3), f"{case}: exit {result.exit_code}: {output[-600:]}"
        assert "internal error" not in output and "Traceback" not in output, output[-600:]
        if result.exit_code != 0:
            assert table_counts(metered)["billing_usage"] == before, f"{case}: refused but recorded usage"
        return Outcome(result={"exit": result.exit_code})

    run_corpus(CASES, run)


EVENT_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                         st.text(max_size=40), st.sampled_from(["001A000001", "api_calls", "2026-01-10",
                                                                "2026-01-10T10:00:00Z", "2026-02-30", "9" * 40,
                                                                "-1", "1e999", "NaN", "0.0000001", "\x00"]),
                         st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                              max_size=3))
EVENTS = st.fixed_dictionaries(
    {"customer": st.one_of(st.just("001A000001"), EVENT_VALUES), "metric": st.one_of(st.just("api_calls"), EVENT_VALUES),
     "quantity": st.one_of(st.integers(0, 1000), EVENT_VALUES), "at": st.one_of(st.just("2026-01-10"), EVENT_VALUES),
     "key": st.one_of(st.text(min_size=1, max_size=20), EVENT_VALUES)},
    optional={"properties": st.one_of(st.dictionaries(st.text(max_size=8), EVENT_VALUES, max_size=3), EVENT_VALUES),
              "extra": EVENT_VALUES})


@FUZZ
@given(events=st.lists(EVENTS, min_size=1, max_size=5))
def test_fuzzed_usage_events(metered, events):
    attempt(metered, "usage.record", {"events": events}, what=repr(events)[:200], tolerate_known=True)


@FUZZ
@given(data=inputs(samples.USAGE_JSONL))
def test_fuzzed_usage_file(metered, db_url, files, data):
    result = usage_import(db_url, files(data, ".jsonl"))
    output = result.output
    if result.exit_code == 4:
        assert known_cli_crash(output), f"exit 4: {output[-600:]}"
    else:
        assert result.exit_code in (0, 2, 3), f"exit {result.exit_code}: {output[-600:]}"
