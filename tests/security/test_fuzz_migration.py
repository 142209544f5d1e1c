"""The legacy migration importer (migration.import, a folder of CSV files and a manifest) and the legacy
invoice register of parallel runs (parallel.import) under hostile input: every malformed file is refused
with a stable code naming the file, row and field (or imported correctly), all or nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop.rollout.legacy_sample import generate
from tests.security.conftest import FUZZ, Outcome, attempt, run_corpus
from tests.security.corpus import csv_variants, inputs

FILES = ("customers.csv", "contracts.csv", "contract_lines.csv", "open_invoices.csv", "opening_balances.csv",
         "prices.csv")
# A YAML "billion laughs": aliases expand to 9**depth strings when the document is walked or serialised.
def yaml_bomb(depth: int, key: str = "system") -> str:
    lines = ["planted:", "  l0: &l0 ['lol','lol','lol','lol','lol','lol','lol','lol','lol']"]
    for n in range(1, depth):
        lines.append(f"  l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * 9) + "]")
    lines.append(f"{key}: *l{depth - 1}")
    return "\n".join(lines) + "\n"


MANIFESTS = [("yaml_bomb_in_system", yaml_bomb(6)), ("yaml_bomb_in_cutover", yaml_bomb(6, "cutover")),
             ("yaml_bomb_in_clearing", yaml_bomb(6, "clearing_account")), ("yaml_bomb_unknown_key", yaml_bomb(6, "x")),
             ("python_object", "system: !!python/object/apply:os.system ['echo pwned']\n"),
             ("not_a_mapping", "- a\n- b\n"), ("invalid_yaml", "system: [unclosed\n"),
             ("bad_cutover", "cutover: 2026-02-30\n"), ("cutover_type", "cutover: [1, 2]\n"),
             ("clearing_type", "clearing_account: {code: [1]}\n"),
             ("huge", "system: '" + "x" * 1_000_000 + "'\n"), ("binary", "\x00\x01\x02")]


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    folder = tmp_path / "clean"
    generate(folder, customers=6, seed=3, clean=True)
    return folder


def variant_dir(legacy: Path, tmp_path: Path, name: str, replace: dict[str, bytes]) -> str:
    target = tmp_path / name
    shutil.copytree(legacy, target)
    for file, data in replace.items():
        (target / file).write_bytes(data)
    return str(target)


def test_the_clean_data_set_imports(app, legacy):
    out = attempt(app, "migration.import", {"dir": str(legacy)})
    assert not out.refused, out.error


def test_malformed_legacy_files_are_refused_cleanly(app, legacy, tmp_path):
    cases = []
    for file in FILES:
        seed = (legacy / file).read_bytes()
        cases += [(f"{file}:{n}", {file: d}) for n, d in csv_variants(seed)]
    cases += [(f"manifest:{n}", {"manifest.yaml": text.encode("utf-8", errors="surrogateescape")})
              for n, text in MANIFESTS]

    def run(case: str, replace: dict[str, bytes]) -> Outcome:
        folder = variant_dir(legacy, tmp_path, case.replace(":", "_").replace(".", "_"), replace)
        try:
            out = attempt(app, "migration.import", {"dir": folder}, what=case, tolerate_known=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if case.startswith("manifest:"):  # none of these manifests is acceptable
            assert out.refused, f"{case} was accepted: {str(out.result)[:200]}"
        return out

    run_corpus(cases, run)


def test_a_yaml_alias_bomb_in_the_manifest_is_refused_before_it_expands(app, legacy, tmp_path):
    """Fixed in rollout/migration.py: system, cutover and clearing_account must be short texts. Before, a
    manifest whose system was a nest of aliases was stringified into the report, the history and messages
    (9**depth strings: a memory and CPU bomb)."""
    folder = variant_dir(legacy, tmp_path, "bomb", {"manifest.yaml": yaml_bomb(7).encode()})
    out = attempt(app, "migration.import", {"dir": folder})
    assert out.refused and out.error.details["field"] == "manifest.system"
    assert len(out.error.message) < 300
    folder = variant_dir(legacy, tmp_path, "bad_date", {"manifest.yaml": b"cutover: 2026-02-30\n"})
    out = attempt(app, "migration.import", {"dir": folder})
    assert out.refused and out.error.details["field"] == "manifest"


def test_inline_files_with_hostile_text_are_refused_cleanly(app, legacy):
    customers = (legacy / "customers.csv").read_text()
    cases = [("nul", {"customers.csv": customers.replace("a", "\x00", 1)}),
             ("unknown_file", {"../../etc/passwd": "x"}), ("path_name", {"/etc/passwd.csv": "x"}),
             ("empty", {}), ("manifest_only", {"manifest.yaml": "system: x"}),
             ("bidi", {"customers.csv": customers.replace("a", "\u202e", 3)}),
             ("huge", {"customers.csv": customers + ("Z" * 200_000)})]
    run_corpus(cases, lambda case, files: attempt(app, "migration.import", {"files": files}, what=case,
                                                   tolerate_known=True))


@FUZZ
@given(data=st.data())
def test_fuzzed_legacy_files(app, legacy, tmp_path, data):
    file = data.draw(st.sampled_from(FILES))
    mutated = data.draw(inputs((legacy / file).read_bytes()))
    folder = variant_dir(legacy, tmp_path, f"fuzz{abs(hash(mutated)) % 10**12}", {file: mutated})
    try:
        attempt(app, "migration.import", {"dir": folder, "accept_valid": data.draw(st.booleans())},
                what=f"{file}: {mutated[:80]!r}", tolerate_known=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


REGISTER = (b"invoice,customer,date,sku,description,period_start,period_end,quantity,unit_price,amount,tax,currency\n"
            b"L-1,C000001,2026-01-01,platform,Platform fee,2026-01-01,2026-01-31,1,100.00,100.00,0.00,USD\n"
            b"L-2,C000002,2026-01-01,seat,Seats,2026-01-01,2026-01-31,5,10.00,50.00,0.00,USD\n")


def test_malformed_legacy_invoice_registers_are_refused_cleanly(app, us01, files):
    def run(case: str, data: bytes) -> Outcome:
        return attempt(app, "parallel.import", {"entity": "US01", "period": "2026-01", "file": files(data)},
                       what=f"register:{case}", tolerate_known=True)

    run_corpus(list(csv_variants(REGISTER)), run)


@FUZZ
@given(data=inputs(REGISTER))
def test_fuzzed_legacy_invoice_register(app, us01, files, data):
    attempt(app, "parallel.import", {"entity": "US01", "period": "2026-01", "file": files(data)},
            what=repr(data[:80]), tolerate_known=True)
