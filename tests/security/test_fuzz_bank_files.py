"""Bank statement importers under hostile input: camt.053, camt.054, MT940 and bank CSV through bank.import.

XML attacks (billion laughs, quadratic blow-up, external entities to a file or the network, external DTDs,
parameter entities, XInclude, deep nesting) are refused before anything is resolved; every other malformed
file is read correctly or refused with a stable code naming the file and element or line; a refusal writes
nothing."""

from __future__ import annotations

import socket
import threading
import time

from hypothesis import given

from tests.security import samples
from tests.security.conftest import FUZZ, Outcome, attempt, run_corpus
from tests.security.corpus import XML_ATTACKS, csv_variants, inputs, text_variants, xml_variants

CASES = [(f"camt053:{n}", "camt053", d, ".xml") for n, d in xml_variants(samples.CAMT053)]
CASES += [(f"camt054:{n}", "camt054", d, ".xml") for n, d in xml_variants(samples.CAMT054)]
CASES += [(f"mt940:{n}", "mt940", d, ".sta") for n, d in text_variants(samples.MT940)]
CASES += [(f"csv:{n}", "csv", d, ".csv") for n, d in csv_variants(samples.BANK_CSV)]


def test_the_seeds_import(app, us01, files):
    for fmt, seed, suffix in (("camt053", samples.CAMT053, ".xml"), ("camt054", samples.CAMT054, ".xml"),
                              ("mt940", samples.MT940, ".sta")):
        out = attempt(app, "bank.import", {"format": fmt, "file": files(seed, suffix), "entity": "US01"})
        assert not out.refused, (fmt, out.error)
        assert out.result["lines"] == 1


def test_malformed_statements_are_refused_cleanly(app, us01, files):
    def run(case: str, fmt: str, data: bytes, suffix: str) -> Outcome:
        started = time.monotonic()
        out = attempt(app, "bank.import", {"format": fmt, "file": files(data, suffix), "entity": "US01"},
                      what=case, tolerate_known=True)
        variant = case.split(":", 1)[1]
        if not out.known and (variant in XML_ATTACKS or variant in ("empty", "blank", "binary_garbage", "huge_line")):
            assert out.refused, f"{case} was accepted: {out.result}"
        if variant in XML_ATTACKS:
            assert time.monotonic() - started < 20, f"{case} took {time.monotonic() - started:.1f}s to refuse"
        return out

    run_corpus(CASES, run)


def test_no_external_entity_or_dtd_is_fetched(app, us01, files):
    """A listener on 127.0.0.1 sees no connection while hostile statements naming it are imported."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(5)
        srv.settimeout(0.2)
        port = srv.getsockname()[1]
        hits: list[bytes] = []
        stop = threading.Event()

        def listen() -> None:
            while not stop.is_set():
                try:
                    conn, _ = srv.accept()
                except OSError:
                    continue
                with conn:
                    hits.append(conn.recv(1024))

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        try:
            for name in ("xxe_network", "external_dtd"):
                data = XML_ATTACKS[name].replace(b"127.0.0.1:9", f"127.0.0.1:{port}".encode())
                out = attempt(app, "bank.import", {"format": "camt053", "file": files(data, ".xml"), "entity": "US01"})
                assert out.refused
        finally:
            stop.set()
            thread.join(2)
        assert hits == []


@FUZZ
@given(data=inputs(samples.CAMT053))
def test_fuzzed_camt053(app, us01, files, data):
    attempt(app, "bank.import", {"format": "camt053", "file": files(data, ".xml"), "entity": "US01"},
            what=repr(data[:80]), tolerate_known=True)


@FUZZ
@given(data=inputs(samples.MT940))
def test_fuzzed_mt940(app, us01, files, data):
    attempt(app, "bank.import", {"format": "mt940", "file": files(data, ".sta"), "entity": "US01"},
            what=repr(data[:80]), tolerate_known=True)


@FUZZ
@given(data=inputs(samples.BANK_CSV))
def test_fuzzed_bank_csv(app, us01, files, data):
    attempt(app, "bank.import", {"format": "csv", "file": files(data), "entity": "US01"}, what=repr(data[:80]), tolerate_known=True)
