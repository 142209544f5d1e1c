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

from closeloop.collections.connectors import Statement, StatementLine
from closeloop.core.errors import ValidationError
from closeloop.core.money import exponent

MAX_BYTES = 256 * 1024 * 1024
_NS = re.compile(r"^urn:iso:std:iso:20022:tech:xsd:camt\.(053|054)\.001\.(\d{2})$")
SUPPORTED_VERSIONS = range(2, 14)


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
    """Namespace-aware look-ups relative to an element."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def _path(self, path: str) -> str:
        return "/".join(f"{{{self.uri}}}{part}" if part not in (".", "..") else part for part in path.split("/"))

    def find(self, el: Any, path: str) -> Any:
        return None if el is None else el.find(self._path(path))

    def findall(self, el: Any, path: str) -> list[Any]:
        return [] if el is None else el.findall(self._path(path))

    def text(self, el: Any, *paths: str) -> str | None:
        for path in paths:
            found = self.find(el, path)
            if found is not None and found.text is not None and found.text.strip():
                return " ".join(found.text.split())
        return None


def _minor(text: str | None, currency: str, where: str, name: str) -> int:
    if text is None:
        raise _refuse(name, f"{where}: amount is missing")
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise _refuse(name, f"{where}: amount {text!r} is not a decimal number") from None
    try:
        exp = exponent(currency)
    except ValidationError:
        raise _refuse(name, f"{where}: unknown currency {currency!r}") from None
    scaled = value.scaleb(exp)
    if scaled != scaled.to_integral_value() or value < 0:
        raise _refuse(name, f"{where}: amount {text} is not a non-negative {currency} amount")
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
    return [_statement(r, item, f"camt.{kind}.001.{version}", msg_id, name, n)
            for n, item in enumerate(items, 1)]


def _statement(r: _Reader, stmt: Any, version: str, msg_id: str | None, name: str, number: int) -> Statement:
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
    for e_no, ntry in enumerate(r.findall(stmt, "Ntry"), 1):
        lines.extend(_entry_lines(r, ntry, e_no, currency, name, where))
    return Statement(
        format=version, statement_id=r.text(stmt, "Id") or f"{msg_id or name}-{number}", account=account,
        currency=currency, lines=tuple(lines), opening_balance=opening, closing_balance=closing,
        created=r.text(stmt, "CreDtTm"), message_id=msg_id, version=version, servicer=servicer,
    )


def _party(r: _Reader, tx: Any, role: str) -> tuple[str | None, str | None]:
    parties = r.find(tx, "RltdPties")
    if parties is None:
        return None, None
    nm = r.text(parties, f"{role}/Nm", f"{role}/Pty/Nm", f"Ultmt{role}/Nm", f"Ultmt{role}/Pty/Nm")
    acct = r.text(parties, f"{role}Acct/Id/IBAN", f"{role}Acct/Id/Othr/Id")
    return nm, acct


def _remittance(r: _Reader, tx: Any) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    refs: list[str] = []
    for rmt in r.findall(tx, "RmtInf"):
        texts.extend(" ".join(u.text.split()) for u in r.findall(rmt, "Ustrd") if u.text and u.text.strip())
        for strd in r.findall(rmt, "Strd"):
            for cref in r.findall(strd, "CdtrRefInf"):
                ref = r.text(cref, "Ref")
                if ref:
                    refs.append(ref)
            for doc in r.findall(strd, "RfrdDocInf"):
                nb = r.text(doc, "Nb")
                if nb:
                    refs.append(nb)
            texts.extend(" ".join(a.text.split()) for a in r.findall(strd, "AddtlRmtInf") if a.text and a.text.strip())
    return texts, refs


def _entry_lines(r: _Reader, ntry: Any, e_no: int, stmt_ccy: str | None, name: str,
                 where: str) -> list[StatementLine]:
    here = f"{where}, entry {e_no}"
    amt_el = r.find(ntry, "Amt")
    if amt_el is None:
        raise _refuse(name, f"{here}: Amt is missing")
    currency = amt_el.get("Ccy") or stmt_ccy
    if not currency:
        raise _refuse(name, f"{here}: Amt has no Ccy")
    entry_amount = _minor(amt_el.text, currency, here, name)
    cdi = r.text(ntry, "CdtDbtInd")
    if cdi not in ("CRDT", "DBIT"):
        raise _refuse(name, f"{here}: CdtDbtInd {cdi!r} must be CRDT or DBIT")
    reversal = (r.text(ntry, "RvslInd") or "").lower() == "true"
    status = r.text(ntry, "Sts/Cd", "Sts/Prtry", "Sts") or "BOOK"
    booking = _day(r.text(ntry, "BookgDt/Dt", "BookgDt/DtTm"))
    value = _day(r.text(ntry, "ValDt/Dt", "ValDt/DtTm"))
    if not booking and not value:
        raise _refuse(name, f"{here}: neither BookgDt nor ValDt")
    bank_ref = r.text(ntry, "AcctSvcrRef", "NtryRef")
    extra_info = r.text(ntry, "AddtlNtryInf")
    bank_code = _bank_code(r, ntry)
    txs = [tx for dtls in r.findall(ntry, "NtryDtls") for tx in r.findall(dtls, "TxDtls")]
    if not txs:
        return [StatementLine(entry=e_no, detail=1, booking_date=booking or value or "", value_date=value,
                              direction="credit" if cdi == "CRDT" else "debit", amount=entry_amount,
                              currency=currency, reversal=reversal, status=status,
                              remittance=tuple(t for t in (extra_info,) if t), bank_reference=bank_ref,
                              bank_code=bank_code)]
    lines = []
    amounts: list[tuple[int, str] | None] = []
    for tx in txs:
        tx_amt = r.find(tx, "Amt")
        if tx_amt is None:
            tx_amt = r.find(tx, "AmtDtls/TxAmt/Amt")
        if tx_amt is not None:
            tx_ccy = tx_amt.get("Ccy") or currency
            amounts.append((_minor(tx_amt.text, tx_ccy, f"{here} transaction", name), tx_ccy))
        else:
            amounts.append(None)
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
    for t_no, (tx, found) in enumerate(zip(txs, amounts, strict=True), 1):
        amount, tx_currency = found or (0, currency)
        tx_cdi = r.text(tx, "CdtDbtInd") or cdi
        direction = "credit" if tx_cdi == "CRDT" else "debit"
        # the counterparty: the debtor pays us (credit), we pay the creditor (debit)
        payer_name, payer_account = _party(r, tx, "Dbtr" if direction == "credit" else "Cdtr")
        texts, refs = _remittance(r, tx)
        addtl = r.text(tx, "AddtlTxInf")
        if addtl:
            texts.append(addtl)
        if extra_info and len(txs) == 1:
            texts.append(extra_info)
        e2e = r.text(tx, "Refs/EndToEndId")
        if e2e and e2e.upper() == "NOTPROVIDED":
            e2e = None
        original = r.find(tx, "AmtDtls/InstdAmt/Amt")
        orig_ccy = original.get("Ccy") if original is not None else None
        orig_amount = None
        if original is not None and orig_ccy:
            try:
                orig_amount = _minor(original.text, orig_ccy, f"{here} instructed amount", name)
            except ValidationError:
                orig_amount = None
        lines.append(StatementLine(
            entry=e_no, detail=t_no, booking_date=booking or value or "", value_date=value, direction=direction,
            amount=amount, currency=tx_currency, reversal=reversal, status=status, remittance=tuple(texts),
            references=tuple(refs), end_to_end=e2e,
            bank_reference=r.text(tx, "Refs/AcctSvcrRef", "Refs/TxId") or bank_ref,
            payer_name=payer_name, payer_account=payer_account, bank_code=_bank_code(r, tx) or bank_code,
            batch_size=len(txs), original_amount=orig_amount, original_currency=orig_ccy,
        ))
    return lines


def _bank_code(r: _Reader, el: Any) -> str | None:
    domain = r.text(el, "BkTxCd/Domn/Cd")
    if domain:
        family = r.text(el, "BkTxCd/Domn/Fmly/Cd") or ""
        sub = r.text(el, "BkTxCd/Domn/Fmly/SubFmlyCd") or ""
        return "-".join(x for x in (domain, family, sub) if x)
    return r.text(el, "BkTxCd/Prtry/Cd")


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
