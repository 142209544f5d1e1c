"""Customer workloads: customers.dedup_febrl and customers.import.

``customers.dedup_febrl``: duplicate detection on the Febrl data sets that ``recordlinkage``
ships (febrl1 and febrl3 deduplication, febrl4 linkage of two files). closeloop's matcher
(the same engine that scores accounts, configured for person records: blocking keys and
comparators below) is measured for precision, recall and F1 against the known true pairs
and timed beside recordlinkage's own standard pipeline on the same data: blocking
(sorted neighbourhood on surname plus blocks on given name and postcode), Jaro-Winkler and
exact comparisons, and its unsupervised ECM classifier. Both sides start from the same
pandas frames; loading is not timed.

``customers.import``: a seeded 100,000-account Salesforce Data Loader CSV (Windows-1252,
upper-case quoted headers) with 5% planted duplicates, imported through
``customer.import`` (parse, validation with python-stdnum and pycountry, blocking and
scoring of duplicates against the file and the master, inserts, events, review list) on
SQLite. The baseline is raw ``sqlite3`` ``executemany`` of the same account rows (already
parsed and validated, no duplicate detection) into an equivalent table: the embedded
storage limit.
"""

from __future__ import annotations

import csv
import sqlite3
import time
from datetime import date
from pathlib import Path
from typing import Any

from closeloop.bench.runner import BenchContext, median, peak_rss_mb, result, workload
from closeloop.customers import matching
from closeloop.customers.demo import MAPPING_YAML, generate_accounts

# --------------------------------------------------------------------------- Febrl

FEBRL_FIELDS = ("given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state",
                "date_of_birth", "soc_sec_id")

FEBRL_CONFIG = matching.MatchConfig.from_dict({
    "match_threshold": 4.0,
    "review_threshold": 4.0,
    "max_block": 400,
    "comparators": [
        {"field": "given_name", "method": "jaro_winkler", "agree": 3.0, "disagree": -2.0, "high": 0.92, "low": 0.70},
        {"field": "surname", "method": "jaro_winkler", "agree": 4.0, "disagree": -3.0, "high": 0.92, "low": 0.70},
        {"field": "street_number", "method": "exact", "agree": 1.0, "disagree": -0.5},
        {"field": "address_1", "method": "jaro_winkler", "agree": 2.0, "disagree": -1.5, "high": 0.92,
         "low": 0.70},
        {"field": "address_2", "method": "jaro_winkler", "agree": 1.0, "disagree": -0.5, "high": 0.92,
         "low": 0.70},
        {"field": "suburb", "method": "jaro_winkler", "agree": 1.5, "disagree": -1.0, "high": 0.92, "low": 0.70},
        {"field": "postcode", "method": "levenshtein", "agree": 1.5, "disagree": -1.0, "high": 0.74, "low": 0.5},
        {"field": "state", "method": "exact", "agree": 0.5, "disagree": -1.0},
        {"field": "date_of_birth", "method": "levenshtein", "agree": 3.0, "disagree": -2.0, "high": 0.87,
         "low": 0.6},
        {"field": "soc_sec_id", "method": "levenshtein", "agree": 5.0, "disagree": -3.0, "high": 0.85, "low": 0.55},
    ],
})


def febrl_columns(frame: Any) -> dict[str, list[str]]:
    return {f: ["" if not isinstance(v, str) else v.strip() for v in frame[f].tolist()] for f in FEBRL_FIELDS}


def febrl_keys(columns: dict[str, list[str]]) -> list[list[str]]:
    """Blocking keys of person records: ids, birth date, postcode + name initial, name prefixes."""
    keys = []
    for n in range(len(columns["surname"])):
        g, s = columns["given_name"][n], columns["surname"][n]
        k = []
        if columns["soc_sec_id"][n]:
            k.append("i:" + columns["soc_sec_id"][n])
        if columns["date_of_birth"][n]:
            k.append("b:" + columns["date_of_birth"][n])
        if columns["postcode"][n]:
            k.append("p:" + columns["postcode"][n] + (s[:1] or g[:1]))
        if s:
            k.append("s:" + s[:3] + g[:1])
        if g:
            k.append("g:" + g[:3] + s[:1])
        if columns["address_1"][n]:
            k.append("a:" + columns["street_number"][n] + columns["address_1"][n][:4])
        keys.append(k)
    return keys


def closeloop_match(frames: list[Any]) -> set[tuple[Any, Any]]:
    """Pairs of record ids closeloop's matcher declares duplicates (one frame: dedup; two: linkage)."""
    if len(frames) == 1:
        ids = list(frames[0].index)
        columns = febrl_columns(frames[0])
        cross = None
    else:
        ids = list(frames[0].index) + list(frames[1].index)
        a, b = febrl_columns(frames[0]), febrl_columns(frames[1])
        columns = {f: a[f] + b[f] for f in FEBRL_FIELDS}
        cross = len(frames[0])
    scored = matching.find_duplicates(columns, febrl_keys(columns), FEBRL_CONFIG, cross=cross,
                                      minimum=FEBRL_CONFIG.match_threshold)
    return {(ids[int(i)], ids[int(j)]) for i, j in zip(scored.i, scored.j, strict=True)}


def recordlinkage_match(frames: list[Any]) -> set[tuple[Any, Any]]:
    """recordlinkage's standard pipeline: blocking + string comparisons + the ECM classifier."""
    import recordlinkage

    indexer = recordlinkage.Index()
    indexer.sortedneighbourhood("surname", window=5)
    indexer.block("given_name")
    indexer.block("postcode")
    pairs = indexer.index(*frames)
    compare = recordlinkage.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85, label="given_name")
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85, label="surname")
    compare.exact("street_number", "street_number", label="street_number")
    compare.string("address_1", "address_1", method="jarowinkler", threshold=0.85, label="address_1")
    compare.string("suburb", "suburb", method="jarowinkler", threshold=0.85, label="suburb")
    compare.exact("postcode", "postcode", label="postcode")
    compare.exact("state", "state", label="state")
    compare.exact("date_of_birth", "date_of_birth", label="date_of_birth")
    compare.exact("soc_sec_id", "soc_sec_id", label="soc_sec_id")
    features = compare.compute(pairs, *frames)
    classifier = recordlinkage.ECMClassifier(binarize=0.5)
    links = classifier.fit_predict(features)
    return {(a, b) for a, b in links}


def _normalise(pairs: set[tuple[Any, Any]], linkage: bool) -> set[tuple[Any, Any]]:
    return pairs if linkage else {tuple(sorted(p)) for p in pairs}  # type: ignore[misc]


def quality(found: set[tuple[Any, Any]], truth: set[tuple[Any, Any]]) -> dict[str, float]:
    tp = len(found & truth)
    precision = tp / len(found) if found else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "true_positives": tp, "found": len(found), "true_pairs": len(truth)}


def febrl_sets(quick: bool) -> list[tuple[str, list[Any], set[tuple[Any, Any]], bool]]:
    from recordlinkage.datasets import load_febrl1, load_febrl3, load_febrl4

    out = []
    d1, l1 = load_febrl1(return_links=True)
    out.append(("febrl1", [d1], _normalise({tuple(x) for x in l1}, False), False))
    if not quick:
        d3, l3 = load_febrl3(return_links=True)
        out.append(("febrl3", [d3], _normalise({tuple(x) for x in l3}, False), False))
        a4, b4, l4 = load_febrl4(return_links=True)
        out.append(("febrl4", [a4, b4], {tuple(x) for x in l4}, True))
    return out


@workload("customers.dedup_febrl")
def dedup_febrl(ctx: BenchContext) -> list[dict[str, Any]]:
    rows = []
    runs = 1 if ctx.quick else 3
    for name, frames, truth, linkage in febrl_sets(ctx.quick):
        ours_t: list[float] = []
        theirs_t: list[float] = []
        ours: set[tuple[Any, Any]] = set()
        theirs: set[tuple[Any, Any]] = set()
        for _ in range(runs):  # alternate closeloop and the baseline
            start = time.perf_counter()
            ours = _normalise(closeloop_match(frames), linkage)
            ours_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            theirs = _normalise(recordlinkage_match(frames), linkage)
            theirs_t.append(time.perf_counter() - start)
        n = sum(len(f) for f in frames)
        q_ours, q_theirs = quality(ours, truth), quality(theirs, truth)
        secs, base_secs = median(ours_t), median(theirs_t)
        rows.append(result(
            f"customers.dedup_febrl.{name}", n=n, unit="records", seconds=secs,
            baseline={"name": "recordlinkage standard pipeline (SNI+blocks, Jaro-Winkler, ECM)",
                      "seconds": round(base_secs, 4), "rate": round(n / base_secs, 1), **q_theirs},
            ratio=base_secs / secs if secs else None,
            goal="F1 >= 0.95 and faster than recordlinkage", met=q_ours["f1"] >= 0.95 and secs < base_secs,
            notes=f"{'linkage of two files' if linkage else 'deduplication'}; median of {runs} run(s) each,"
                  " alternating; loading the data set is not timed", **q_ours))
    return rows


# --------------------------------------------------------------------------- import

@workload("customers.import")
def customers_import(ctx: BenchContext) -> list[dict[str, Any]]:
    from closeloop.app import App
    from closeloop.core.clock import ScenarioClock

    n = ctx.size(100_000)
    data = ctx.workdir / f"sf_accounts_{n}.csv"
    mapping = ctx.workdir / "sf_accounts_mapping.yaml"
    mapping.write_text(MAPPING_YAML)
    planted = generate_accounts(n, data)
    db = ctx.workdir / f"customers_import_{n}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    # Events are left to workers (dispatch="worker"): their delivery is the subscribers' cost, not the import's.
    app = App(f"sqlite:///{db}", clock=ScenarioClock(date(2026, 1, 1)), actor="bench", dispatch="worker")
    start = time.perf_counter()
    report = app.do("customer.import", {"file": str(data), "format": "salesforce", "mapping": str(mapping),
                                        "source": "crm"})
    seconds = time.perf_counter() - start
    rss = peak_rss_mb()
    found = {tuple(sorted((d["external_id"], d["other"]))) for d in report["duplicates"]}
    truth = {tuple(sorted(p)) for p in planted["duplicates"]}
    dup_recall = len(found & truth) / len(truth) if truth else 1.0
    app.close()
    # Baseline: the same parsed account rows, executemany into an equivalent table.
    base_db = ctx.workdir / f"customers_import_base_{n}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{base_db}{suffix}").unlink(missing_ok=True)
    with data.open(encoding="cp1252", newline="") as fh:
        rows = [(r[0], r[3], r[10], r[8], r[9], r[13] or None, r[11], r[12], r[6], r[7])
                for r in list(csv.reader(fh))[1:]]
    con = sqlite3.connect(base_db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE customer (id INTEGER PRIMARY KEY, external_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,"
                " country TEXT NOT NULL, region TEXT, postal_code TEXT, tax_id TEXT, phone TEXT, website TEXT,"
                " street TEXT, city TEXT)")
    base_start = time.perf_counter()
    con.execute("BEGIN")
    con.executemany("INSERT INTO customer (external_id, name, country, region, postal_code, tax_id, phone, website,"
                    " street, city) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    con.execute("COMMIT")
    base_seconds = time.perf_counter() - base_start
    con.close()
    out = result("customers.import", n=n, unit="accounts", seconds=seconds,
                 baseline={"name": "sqlite3.executemany", "seconds": round(base_seconds, 4),
                           "rate": round(n / base_seconds, 1),
                           "wrote": "the account rows only (parsed, no validation, no duplicate detection)"},
                 ratio=base_seconds / seconds if seconds else None, goal="rate >= 10000 accounts/s",
                 met=n / seconds >= 10_000,
                 notes=f"{int(report['created'])} created, {report['suspected_duplicates']} suspected duplicates;"
                       f" planted duplicates found: {dup_recall:.1%}; includes parsing (cp1252), validation"
                       " (pycountry, stdnum), blocking and scoring, inserts, events and the review list",
                 planted_duplicate_recall=round(dup_recall, 4), quality_score=report["quality"]["score"])
    out["peak_rss_mb"] = rss
    return [out]
