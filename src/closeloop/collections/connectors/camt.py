"""ISO 20022 camt.053 (bank-to-customer statement) and camt.054 (debit/credit notification).

Versions ``camt.05x.001.02`` to ``.13`` share the elements read here; the
differences handled are: ``Sts`` as text (.02-.04) or ``Sts/Cd`` (.08+),
the transaction amount as ``TxDtls/Amt`` (.04+) or ``TxDtls/AmtDtls/TxAmt/Amt``,
parties as ``Dbtr/Nm`` or ``Dbtr/Pty/Nm`` (.08+), the servicer's ``BIC`` or
``BICFI``, and an account identified by ``IBAN`` or ``Othr/Id``.

A batched entry (several ``TxDtls``) gives one line per transaction with its own
amount, counterparty and remittance; a reversal (``RvslInd``) is flagged on its
lines. Structured remittance (``Strd``) gives the creditor reference
(``CdtrRefInf/Ref``: ISO 11649 RF, QR/ISR or a bank's own scheme) and referred
document numbers (``RfrdDocInf/Nb``) as references; ``Ustrd`` is free text.

Safety: the file is parsed by lxml with entity resolution, DTD loading and
network access off; a document that declares a DTD or entities (an XML bomb,
an external entity) is refused before lxml sees it — defusedxml names why.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException
from lxml import etree

from closeloop.collections.connectors import MAX_MAJOR_DIGITS, Statement, StatementLine, checked
from closeloop.core.errors import ValidationError
from closeloop.core.money import exponent

MAX_BYTES = 256 * 1024 * 1024
_NS = re.compile(r"^urn:iso:std:iso:20022:tech:xsd:camt\.(053|054)\.001\.(\d{2})$")
SUPPORTED_VERSIONS = range(2, 14)


Flat = dict[str, list[Any]]


def _refuse(name: str, reason: str, **details: Any) -> ValidationError:
    return ValidationError(f"{name}: {reason}", field="file", record=name, **details)


def safe_root(data: bytes, name: str = "statement") -> Any:
    """Parse XML bytes safely: no DTD, no entities, no network, bounded size; returns the lxml root."""
    if len(data) > MAX_BYTES:
        raise _refuse(name, f"the file is {len(data)} bytes; at most {MAX_BYTES} are accepted")
    if not data.strip():
        raise _refuse(name, "the file is empty")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data or b"<!doctype" in data:
        try:
            DET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        except DefusedXmlException as exc:
            kind = type(exc).__name__
            raise _refuse(name, f"refused unsafe XML ({kind}: {exc}); bank statements never need a DTD,"
                          " entities or external references", refused=kind) from None
        except DET.ParseError as exc:
            raise _refuse(name, f"not well-formed XML: {exc}") from None
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                             huge_tree=False, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        line = getattr(exc, "lineno", None)
        raise _refuse(name, f"not well-formed XML{f' (line {line})' if line else ''}: {exc.msg}", line=line) from None
    if root is None:
        raise _refuse(name, "no root element")
    return root


class _Reader:
    """Namespace-aware look-ups relative to an element, one child step at a time (lxml's C-level
    ``iterchildren(tag)``, much faster than ElementPath for the many small look-ups of a statement)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._steps: dict[str, tuple[str, ...]] = {}

    def steps(self, path: str) -> tuple[str, ...]:
        found = self._steps.get(path)
        if found is None:
            found = self._steps[path] = tuple(f"{{{self.uri}}}{part}" for part in path.split("/"))
        return found

    def find(self, el: Any, path: str) -> Any:
        for tag in self.steps(path):
            if el is None:
                return None
            el = next(el.iterchildren(tag), None)
        return el

    def findall(self, el: Any, path: str) -> list[Any]:
        if el is None:
            return []
        nodes = [el]
        for tag in self.steps(path):
            nodes = [c for n in nodes for c in n.iterchildren(tag)]
        return nodes

    def text(self, el: Any, *paths: str) -> str | None:
        for path in paths:
            found = self.find(el, path)
            if found is not None:
                value = found.text
                if value is not None and value.strip():
                    return " ".join(value.split())
        return None


ENTRY_KEYS = ("Amt", "Amt/@Ccy", "CdtDbtInd", "RvslInd", "Sts", "Sts/Cd", "Sts/Prtry", "BookgDt/Dt", "BookgDt/DtTm",
              "ValDt/Dt", "ValDt/DtTm", "AcctSvcrRef", "NtryRef", "AddtlNtryInf", "BkTxCd/Domn/Cd",
              "BkTxCd/Domn/Fmly/Cd", "BkTxCd/Domn/Fmly/SubFmlyCd", "BkTxCd/Prtry/Cd")
TX_KEYS = ("Amt", "Amt/@Ccy", "AmtDtls/TxAmt/Amt", "AmtDtls/TxAmt/Amt/@Ccy", "AmtDtls/InstdAmt/Amt",
           "AmtDtls/InstdAmt/Amt/@Ccy", "CdtDbtInd", "AddtlTxInf", "Refs/EndToEndId", "Refs/AcctSvcrRef", "Refs/TxId",
           "RmtInf/Ustrd", "RmtInf/Strd/CdtrRefInf/Ref", "RmtInf/Strd/RfrdDocInf/Nb", "RmtInf/Strd/AddtlRmtInf",
           "BkTxCd/Domn/Cd", "BkTxCd/Domn/Fmly/Cd", "BkTxCd/Domn/Fmly/SubFmlyCd", "BkTxCd/Prtry/Cd",
           *(f"RltdPties/{who}{role}/{leaf}" for who in ("", "Ultmt") for role in ("Dbtr", "Cdtr")
             for leaf in ("Nm", "Pty/Nm")),
           *(f"RltdPties/{role}Acct/Id/{leaf}" for role in ("Dbtr", "Cdtr") for leaf in ("IBAN", "Othr/Id")))
_XSLT_CACHE: dict[str, Any] = {}


def _xpath(key: str) -> str:
    return "/".join(part if part.startswith("@") else f"c:{part}" for part in key.split("/"))


MULTI = frozenset({"RmtInf/Ustrd", "RmtInf/Strd/CdtrRefInf/Ref", "RmtInf/Strd/RfrdDocInf/Nb", "RmtInf/Strd/AddtlRmtInf"})
_SEP = "\ue000"  # between the values of a repeated element (a private-use character: never in bank data)


def _fields(keys: tuple[str, ...]) -> str:
    """Positional fields, tab-separated: the first value of single elements, every value of repeated ones."""
    out = []
    for key in keys:
        if key in MULTI:
            out.append(f'<xsl:text>&#9;</xsl:text><xsl:for-each select="{_xpath(key)}"><xsl:if test="position() > 1">'
                       f'<xsl:text>{_SEP}</xsl:text></xsl:if><xsl:value-of select="normalize-space(.)"/></xsl:for-each>')
        else:
            out.append(f'<xsl:text>&#9;</xsl:text><xsl:value-of select="normalize-space({_xpath(key)})"/>')
    return "".join(out)


def _transform(uri: str) -> Any:
    """An XSLT (run by libxslt, in C) that writes every entry and transaction of a statement as one
    tab-separated line of ``path=value`` fields: the fast path for statements of 100,000 entries."""
    found = _XSLT_CACHE.get(uri)
    if found is None:
        sheet = (f'<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:c="{uri}">'
                 '<xsl:output method="text" encoding="UTF-8"/><xsl:template match="/">'
                 '<xsl:for-each select="/c:Document/*/c:Stmt | /c:Document/*/c:Ntfctn"><xsl:text>S&#10;</xsl:text>'
                 '<xsl:for-each select="c:Ntry"><xsl:text>E</xsl:text>' + _fields(ENTRY_KEYS) + '<xsl:text>&#10;'
                 '</xsl:text><xsl:for-each select="c:NtryDtls/c:TxDtls"><xsl:text>T</xsl:text>' + _fields(TX_KEYS)
                 + '<xsl:text>&#10;</xsl:text></xsl:for-each></xsl:for-each></xsl:for-each>'
                 '</xsl:template></xsl:stylesheet>')
        found = _XSLT_CACHE[uri] = etree.XSLT(etree.fromstring(sheet.encode()))
    return found


def _records(root: Any, uri: str) -> list[list[tuple[dict[str, list[str]], list[dict[str, list[str]]]]]]:
    """[statement][entry] = (entry fields, [transaction fields]) from the XSLT's text output."""
    text = str(_transform(uri)(root))
    statements: list[list[tuple[dict[str, list[str]], list[dict[str, list[str]]]]]] = []
    entry_keys = [k.replace("/@", "@") for k in ENTRY_KEYS]
    tx_keys = [k.replace("/@", "@") for k in TX_KEYS]
    multi = [k in MULTI for k in TX_KEYS]
    for line in text.split("\n"):
        if not line:
            continue
        kind = line[0]
        if kind == "S":
            statements.append([])
            continue
        parts = line.split("\t")[1:]
        if kind == "E":
            statements[-1].append(({k: [v] for k, v in zip(entry_keys, parts, strict=False) if v}, []))
        else:
            statements[-1][-1][1].append({k: (v.split(_SEP) if m else [v])
                                          for k, v, m in zip(tx_keys, parts, multi, strict=False) if v})
    return statements


def _minor(text: str | None, currency: str, where: str, name: str) -> int:
    if text is None:
        raise _refuse(name, f"{where}: amount is missing")
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise _refuse(name, f"{where}: amount {text[:40]!r} is not a decimal number", field_name="Amt") from None
    try:
        exp = exponent(currency)
    except ValidationError:
        raise _refuse(name, f"{where}: unknown currency {currency!r}") from None
    if not value.is_finite() or value < 0:
        raise _refuse(name, f"{where}: amount {text[:40]} is not a non-negative {currency} amount", field_name="Amt")
    if value.adjusted() >= MAX_MAJOR_DIGITS:  # checked before int(): 1E+999999 would be a huge integer
        raise _refuse(name, f"{where}: amount {text[:40]}{'...' if len(text) > 40 else ''} is out of range (at most"
                      f" {MAX_MAJOR_DIGITS} digits before the decimals)", field_name="Amt")
    scaled = value.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise _refuse(name, f"{where}: amount {text[:40]} has more decimals than {currency} allows ({exp})",
                      field_name="Amt")
    return int(scaled)


def _day(value: str | None) -> str | None:
    return value[:10] if value else None


def parse_camt(data: bytes, name: str = "statement.xml") -> list[Statement]:
    """All statements (camt.053) or notifications (camt.054) of a file."""
    root = safe_root(data, name)
    tag = root.tag if isinstance(root.tag, str) else ""
    uri = tag[1:].split("}", 1)[0] if tag.startswith("{") else ""
    m = _NS.match(uri)
    if not m or int(m.group(2)) not in SUPPORTED_VERSIONS or etree.QName(root).localname != "Document":
        raise _refuse(name, f"not an ISO 20022 camt.053/camt.054 document: root {tag or root.tag!r}"
                      " (expected Document in urn:iso:std:iso:20022:tech:xsd:camt.053.001.02 to .13"
                      " or camt.054.001.02 to .13)", namespace=uri or None)
    kind, version = m.group(1), m.group(2)
    r = _Reader(uri)
    message_tag, item_tag = (("BkToCstmrStmt", "Stmt") if kind == "053" else ("BkToCstmrDbtCdtNtfctn", "Ntfctn"))
    message = r.find(root, message_tag)
    if message is None:
        raise _refuse(name, f"camt.{kind} document without {message_tag}")
    msg_id = r.text(message, "GrpHdr/MsgId")
    items = r.findall(message, item_tag)
    if not items:
        raise _refuse(name, f"{message_tag} has no {item_tag}")
    records = _records(root, uri)
    if len(records) != len(items):  # pragma: no cover - both walk the same statements in document order
        raise _refuse(name, "statements could not be read consistently")
    return checked([_statement(r, item, f"camt.{kind}.001.{version}", msg_id, name, n, records[n - 1])
                    for n, item in enumerate(items, 1)], name)


def _statement(r: _Reader, stmt: Any, version: str, msg_id: str | None, name: str, number: int,
               entries: list[tuple[Flat, list[Flat]]]) -> Statement:
    where = f"statement {number}"
    acct = r.find(stmt, "Acct")
    account = r.text(acct, "Id/IBAN", "Id/Othr/Id") or ""
    currency = r.text(acct, "Ccy")
    servicer = r.text(acct, "Svcr/FinInstnId/BIC", "Svcr/FinInstnId/BICFI")
    opening = closing = None
    for bal in r.findall(stmt, "Bal"):
        code = r.text(bal, "Tp/CdOrPrtry/Cd")
        amt = r.find(bal, "Amt")
        if amt is None:
            continue
        ccy = amt.get("Ccy") or currency or ""
        value = _minor(amt.text, ccy, f"{where} balance {code}", name)
        if r.text(bal, "CdtDbtInd") == "DBIT":
            value = -value
        if code in ("OPBD", "PRCD") and opening is None:
            opening = value
        elif code in ("CLBD",):
            closing = value
    lines: list[StatementLine] = []
    for e_no, (entry, txs) in enumerate(entries, 1):
        lines.extend(_entry_lines(entry, txs, e_no, currency, name, where))
    return Statement(
        format=version, statement_id=r.text(stmt, "Id") or f"{msg_id or name}-{number}", account=account,
        currency=currency, lines=tuple(lines), opening_balance=opening, closing_balance=closing,
        created=r.text(stmt, "CreDtTm"), message_id=msg_id, version=version, servicer=servicer,
    )


def _flat(el: Any, plen: int, prefix: str, out: Flat, skip: str | None = None) -> Flat:
    """Every leaf below ``el`` by its path of local names ("RmtInf/Strd/CdtrRefInf/Ref"), texts in document
    order, and attributes as "path@Name": one pass over the subtree instead of many path look-ups."""
    for c in el.iterchildren(tag=etree.Element):
        name = c.tag[plen:] if c.tag[0] == "{" else c.tag
        if name == skip:
            continue
        key = f"{prefix}/{name}" if prefix else name
        if len(c):
            _flat(c, plen, key, out)
        else:
            out.setdefault(key, []).append(c.text)
            if c.attrib:
                for attr, value in c.attrib.items():
                    out.setdefault(f"{key}@{attr}", []).append(value)
    return out


def _first(d: Flat, *keys: str) -> str | None:
    for key in keys:
        for value in d.get(key, ()):
            if value is not None and value.strip():
                return " ".join(value.split())
    return None


def _all(d: Flat, key: str) -> list[str]:
    return [" ".join(v.split()) for v in d.get(key, ()) if v is not None and v.strip()]


def _party(d: Flat, role: str) -> tuple[str | None, str | None]:
    p = "RltdPties/"
    nm = _first(d, f"{p}{role}/Nm", f"{p}{role}/Pty/Nm", f"{p}Ultmt{role}/Nm", f"{p}Ultmt{role}/Pty/Nm")
    acct = _first(d, f"{p}{role}Acct/Id/IBAN", f"{p}{role}Acct/Id/Othr/Id")
    return nm, acct


def _remittance(d: Flat) -> tuple[list[str], list[str]]:
    texts = _all(d, "RmtInf/Ustrd")
    refs = _all(d, "RmtInf/Strd/CdtrRefInf/Ref") + _all(d, "RmtInf/Strd/RfrdDocInf/Nb")
    texts += _all(d, "RmtInf/Strd/AddtlRmtInf")
    return texts, refs


def _bank_code(d: Flat) -> str | None:
    domain = _first(d, "BkTxCd/Domn/Cd")
    if domain:
        family = _first(d, "BkTxCd/Domn/Fmly/Cd") or ""
        sub = _first(d, "BkTxCd/Domn/Fmly/SubFmlyCd") or ""
        return "-".join(x for x in (domain, family, sub) if x)
    return _first(d, "BkTxCd/Prtry/Cd")


def _amount_of(d: Flat, key: str, default_ccy: str | None) -> tuple[str | None, str | None]:
    values = d.get(key)
    if not values:
        return None, None
    ccys = d.get(f"{key}@Ccy") or [None]
    return values[0], ccys[0] or default_ccy


def _entry_lines(e: Flat, flats: list[Flat], e_no: int, stmt_ccy: str | None, name: str,
                 where: str) -> list[StatementLine]:
    here = f"{where}, entry {e_no}"
    amt_text, currency = _amount_of(e, "Amt", stmt_ccy)
    if amt_text is None:
        raise _refuse(name, f"{here}: Amt is missing")
    if not currency:
        raise _refuse(name, f"{here}: Amt has no Ccy")
    entry_amount = _minor(amt_text, currency, here, name)
    cdi = _first(e, "CdtDbtInd")
    if cdi not in ("CRDT", "DBIT"):
        raise _refuse(name, f"{here}: CdtDbtInd {cdi!r} must be CRDT or DBIT")
    reversal = (_first(e, "RvslInd") or "").lower() == "true"
    status = _first(e, "Sts/Cd", "Sts/Prtry", "Sts") or "BOOK"
    booking = _day(_first(e, "BookgDt/Dt", "BookgDt/DtTm"))
    value = _day(_first(e, "ValDt/Dt", "ValDt/DtTm"))
    if not booking and not value:
        raise _refuse(name, f"{here}: neither BookgDt nor ValDt")
    bank_ref = _first(e, "AcctSvcrRef", "NtryRef")
    extra_info = _first(e, "AddtlNtryInf")
    bank_code = _bank_code(e)
    txs = flats
    if not txs:
        return [StatementLine(entry=e_no, detail=1, booking_date=booking or value or "", value_date=value,
                              direction="credit" if cdi == "CRDT" else "debit", amount=entry_amount,
                              currency=currency, reversal=reversal, status=status,
                              remittance=tuple(t for t in (extra_info,) if t), bank_reference=bank_ref,
                              bank_code=bank_code)]
    amounts: list[tuple[int, str] | None] = []
    for d in flats:
        text, ccy = _amount_of(d, "Amt", currency)
        if text is None:
            text, ccy = _amount_of(d, "AmtDtls/TxAmt/Amt", currency)
        amounts.append(None if text is None else (_minor(text, ccy or currency, f"{here} transaction", name),
                                                  ccy or currency))
    if len(txs) == 1:
        # one transaction: the entry's booked amount is what moved on the account
        amounts = [(entry_amount, currency)]
    elif any(a is None for a in amounts):
        known = sum(a[0] for a in amounts if a is not None and a[1] == currency)
        missing = [i for i, a in enumerate(amounts) if a is None]
        if len(missing) == 1 and known <= entry_amount:
            amounts[missing[0]] = (entry_amount - known, currency)
        else:
            raise _refuse(name, f"{here}: a batch of {len(txs)} transactions without their amounts")
    lines = []
    for t_no, (d, found) in enumerate(zip(flats, amounts, strict=True), 1):
        amount, tx_currency = found or (0, currency)
        tx_cdi = _first(d, "CdtDbtInd") or cdi
        direction = "credit" if tx_cdi == "CRDT" else "debit"
        # the counterparty: the debtor pays us (credit), we pay the creditor (debit)
        payer_name, payer_account = _party(d, "Dbtr" if direction == "credit" else "Cdtr")
        texts, refs = _remittance(d)
        addtl = _first(d, "AddtlTxInf")
        if addtl:
            texts.append(addtl)
        if extra_info and len(txs) == 1:
            texts.append(extra_info)
        e2e = _first(d, "Refs/EndToEndId")
        if e2e and e2e.upper() == "NOTPROVIDED":
            e2e = None
        orig_text, orig_ccy = _amount_of(d, "AmtDtls/InstdAmt/Amt", None)
        orig_amount = None
        if orig_text is not None and orig_ccy:
            try:
                orig_amount = _minor(orig_text, orig_ccy, f"{here} instructed amount", name)
            except ValidationError:
                orig_amount = None
        lines.append(StatementLine(
            entry=e_no, detail=t_no, booking_date=booking or value or "", value_date=value, direction=direction,
            amount=amount, currency=tx_currency, reversal=reversal, status=status, remittance=tuple(texts),
            references=tuple(refs), end_to_end=e2e,
            bank_reference=_first(d, "Refs/AcctSvcrRef", "Refs/TxId") or bank_ref,
            payer_name=payer_name, payer_account=payer_account, bank_code=_bank_code(d) or bank_code,
            batch_size=len(txs), original_amount=orig_amount, original_currency=orig_ccy,
        ))
    return lines


def write_camt053(account: str, currency: str, entries: list[dict[str, Any]], *, statement_id: str = "STMT-1",
                  created: str = "2026-01-01T00:00:00", opening: int = 0) -> bytes:
    """A camt.053.001.08 statement (for the demo, the benchmark and tests). Each entry: amount (minor),
    date, direction (credit/debit), remittance?, reference? (a structured creditor reference), payer?,
    iban?, end_to_end?, reversal?, currency? (defaults to the account's)."""
    from xml.sax.saxutils import escape

    exp = exponent(currency)

    def money(minor: int, ccy: str) -> str:
        e = exponent(ccy)
        return f"{minor // 10**e}.{minor % 10**e:0{e}d}" if e else str(minor)

    parts = []
    closing = opening
    for n, e in enumerate(entries, 1):
        ccy = e.get("currency") or currency
        credit = e.get("direction", "credit") == "credit"
        closing += e["amount"] if credit else -e["amount"]
        party = "Dbtr" if credit else "Cdtr"
        rmt = ""
        if e.get("remittance"):
            rmt += f"<Ustrd>{escape(e['remittance'])}</Ustrd>"
        if e.get("reference"):
            rmt += (f"<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry></Tp><Ref>{escape(e['reference'])}</Ref>"
                    "</CdtrRefInf></Strd>")
        parties = ""
        if e.get("payer") or e.get("iban"):
            parties = (f"<RltdPties><{party}><Pty><Nm>{escape(e.get('payer') or '')}</Nm></Pty></{party}>"
                       + (f"<{party}Acct><Id><IBAN>{escape(e['iban'])}</IBAN></Id></{party}Acct>" if e.get("iban")
                          else "") + "</RltdPties>")
        parts.append(
            f"<Ntry><NtryRef>{n}</NtryRef><Amt Ccy=\"{ccy}\">{money(e['amount'], ccy)}</Amt>"
            f"<CdtDbtInd>{'CRDT' if credit else 'DBIT'}</CdtDbtInd>"
            + ("<RvslInd>true</RvslInd>" if e.get("reversal") else "")
            + f"<Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{e['date']}</Dt></BookgDt><ValDt><Dt>{e['date']}</Dt></ValDt>"
            f"<AcctSvcrRef>{escape(statement_id)}-{n}</AcctSvcrRef><BkTxCd/><NtryDtls><TxDtls><Refs>"
            f"<EndToEndId>{escape(e.get('end_to_end') or 'NOTPROVIDED')}</EndToEndId></Refs>"
            f"{parties}" + (f"<RmtInf>{rmt}</RmtInf>" if rmt else "") + "</TxDtls></NtryDtls></Ntry>")
    del exp
    head = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:"
            f"camt.053.001.08\"><BkToCstmrStmt><GrpHdr><MsgId>{escape(statement_id)}</MsgId><CreDtTm>{created}"
            f"</CreDtTm></GrpHdr><Stmt><Id>{escape(statement_id)}</Id><CreDtTm>{created}</CreDtTm><Acct><Id><IBAN>"
            f"{escape(account)}</IBAN></Id><Ccy>{currency}</Ccy></Acct>"
            f"<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy=\"{currency}\">{money(abs(opening), currency)}"
            f"</Amt><CdtDbtInd>{'CRDT' if opening >= 0 else 'DBIT'}</CdtDbtInd><Dt><Dt>{created[:10]}</Dt></Dt></Bal>"
            f"<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy=\"{currency}\">{money(abs(closing), currency)}"
            f"</Amt><CdtDbtInd>{'CRDT' if closing >= 0 else 'DBIT'}</CdtDbtInd><Dt><Dt>{created[:10]}</Dt></Dt></Bal>")
    return (head + "".join(parts) + "</Stmt></BkToCstmrStmt></Document>").encode("utf-8")
