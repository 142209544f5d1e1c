"""CRM file importers under hostile input: Salesforce CSV and tree JSON, HubSpot CSV (customer.import and its
preview) and Salesforce opportunity exports (opportunity.import).

Each malformed file is either imported correctly or refused with a stable code naming the file, line or
field, and a refusal writes nothing (tests/security/conftest.py: attempt)."""

from __future__ import annotations

import pytest
from hypothesis import given

from closeloop.core.errors import CloseloopError
from tests.security import samples
from tests.security.conftest import FUZZ, Outcome, attempt, check_refusal, run_corpus
from tests.security.corpus import FORMULAS, csv_variants, inputs, json_variants
from tests.security.findings import known_crash

CRM_CASES = [(f"salesforce_csv:{name}", "salesforce", data, ".csv") for name, data in csv_variants(samples.SALESFORCE_CSV)]
CRM_CASES += [(f"salesforce_json:{name}", "salesforce", data, ".json")
              for name, data in json_variants(samples.SALESFORCE_TREE)]
CRM_CASES += [(f"hubspot_csv:{name}", "hubspot", data, ".csv") for name, data in csv_variants(samples.HUBSPOT_CSV)]

# Malformed inputs that the importer must not accept as they stand (the others may be read).
MUST_REFUSE = {"empty", "blank", "binary_garbage", "huge_line", "deep_array", "deep_object", "top_level_list",
               "top_level_string", "top_level_number", "records_not_list", "only_first_line", "header_only",
               "nul_first", "nul_inside"}


def test_the_seeds_import(app, files):
    for fmt, seed, suffix in (("salesforce", samples.SALESFORCE_CSV, ".csv"),
                              ("salesforce", samples.SALESFORCE_TREE, ".json"), ("hubspot", samples.HUBSPOT_CSV, ".csv")):
        out = attempt(app, "customer.import", {"file": files(seed, suffix), "format": fmt, "source": "crm"})
        assert not out.refused, out.error


def test_malformed_crm_files_are_refused_cleanly(app, files):
    def run(case: str, fmt: str, data: bytes, suffix: str) -> Outcome:
        path = files(data, suffix)
        variant = case.split(":", 1)[1]
        preview = None
        try:
            preview = app.query("customer_import_preview", {"file": path, "format": fmt, "source": "crm"})
        except CloseloopError as err:
            check_refusal(err, f"{case} (preview)")
        except Exception as exc:  # noqa: BLE001
            if known_crash(exc) is None:
                pytest.fail(f"{case} (preview): crashed with {type(exc).__name__}: {str(exc)[:300]}")
        out = attempt(app, "customer.import", {"file": path, "format": fmt, "source": "crm"}, what=case,
                      tolerate_known=True)
        if variant in MUST_REFUSE and not out.known:
            assert out.refused or (out.result or {}).get("rows_read", 0) == 0, f"{case} was imported: {out.result}"
        if out.refused and preview is not None:  # the preview and the import agree that something is wrong
            assert preview.get("rejected", 0) > 0 or preview.get("rows_read") == 0, (case, preview, out.error)
        return out

    run_corpus(CRM_CASES, run)


@pytest.mark.parametrize("formula", FORMULAS)
def test_formula_cells_are_kept_as_text_never_evaluated(app, files, formula):
    quoted = '"' + formula.replace('"', '""') + '"'
    data = ('"ID","NAME","BILLINGCOUNTRY"\r\n"001F1",' + quoted + ',"US"\r\n').encode()
    out = attempt(app, "customer.import", {"file": files(data), "format": "salesforce", "source": "crm"})
    if not out.refused:
        stored = app.query("customer", {"external_id": "001F1"})["name"]
        assert stored == " ".join(formula.split()) or stored == formula.strip(), stored


@FUZZ
@given(data=inputs(samples.SALESFORCE_CSV))
def test_fuzzed_salesforce_csv(app, files, data):
    attempt(app, "customer.import", {"file": files(data), "format": "salesforce", "accept_valid": True,
                                     "source": "crm"}, what=repr(data[:80]), tolerate_known=True)


@FUZZ
@given(data=inputs(samples.SALESFORCE_TREE))
def test_fuzzed_salesforce_tree_json(app, files, data):
    attempt(app, "customer.import", {"file": files(data, ".json"), "format": "salesforce", "source": "crm"},
            what=repr(data[:80]), tolerate_known=True)


@FUZZ
@given(data=inputs(samples.HUBSPOT_CSV))
def test_fuzzed_hubspot_csv(app, files, data):
    attempt(app, "customer.import", {"file": files(data), "format": "hubspot", "accept_valid": True,
                                     "source": "crm"}, what=repr(data[:80]), tolerate_known=True)


OPPORTUNITY_CASES = [(name, data) for name, data in csv_variants(samples.OPPORTUNITIES_CSV)]


def test_malformed_opportunity_exports_are_refused_cleanly(app, files):
    lines = files(samples.OPPORTUNITY_LINES_CSV)

    def run(case: str, data: bytes) -> Outcome:
        return attempt(app, "opportunity.import", {"file": files(data), "line_items": lines, "source": "crm"},
                       what=f"opportunities:{case}", tolerate_known=True)

    run_corpus(OPPORTUNITY_CASES, run)


@FUZZ
@given(data=inputs(samples.OPPORTUNITY_LINES_CSV))
def test_fuzzed_opportunity_line_items(app, files, data):
    attempt(app, "opportunity.import", {"file": files(samples.OPPORTUNITIES_CSV), "line_items": files(data),
                                        "accept_valid": True, "source": "crm"}, what=repr(data[:80]), tolerate_known=True)
