"""Small valid files of every format an importer reads: the seeds the fuzzers mutate.

Each is accepted by its importer as it stands (tests/security/test_samples_are_valid), so a refusal of a
mutation is the mutation's doing."""

from __future__ import annotations

CAMT053 = b"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>MSG-0001</MsgId><CreDtTm>2026-01-20T18:00:00+00:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>STMT-2026-01-20</Id>
      <CreDtTm>2026-01-20T18:00:00+00:00</CreDtTm>
      <Acct><Id><IBAN>US64SVBKUS6S3300958879</IBAN></Id><Ccy>USD</Ccy></Acct>
      <Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">1000.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-01-20</Dt></Dt></Bal>
      <Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">1150.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-01-20</Dt></Dt></Bal>
      <Ntry>
        <NtryRef>1</NtryRef>
        <Amt Ccy="USD">150.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>2026-01-20</Dt></BookgDt>
        <ValDt><Dt>2026-01-20</Dt></ValDt>
        <AcctSvcrRef>BANKREF-1</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls><TxDtls>
          <Refs><EndToEndId>E2E-1</EndToEndId></Refs>
          <Amt Ccy="USD">150.00</Amt>
          <RltdPties><Dbtr><Pty><Nm>Globex LLC</Nm></Pty></Dbtr></RltdPties>
          <RmtInf><Ustrd>INV-US01-000001</Ustrd></RmtInf>
        </TxDtls></NtryDtls>
      </Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>
"""

CAMT054 = CAMT053.replace(b"camt.053.001.08", b"camt.054.001.08").replace(b"BkToCstmrStmt", b"BkToCstmrDbtCdtNtfctn") \
    .replace(b"<Stmt>", b"<Ntfctn>").replace(b"</Stmt>", b"</Ntfctn>")

MT940 = b""":20:STMT20260120
:25:NL91ABNA0417164300
:28C:00001/001
:60F:C260120USD1000,00
:61:2601200120C150,00NTRFE2E-1//BANKREF-1
:86:INV-US01-000001 GLOBEX LLC
:62F:C260120USD1150,00
-
"""

BANK_CSV = b"""date;amount;currency;purpose;payer;iban
2026-01-20;150,00;USD;INV-US01-000001;Globex LLC;US64SVBKUS6S3300958879
"""

SALESFORCE_CSV = (
    b'"ID","NAME","BILLINGSTREET","BILLINGCITY","BILLINGSTATE","BILLINGPOSTALCODE","BILLINGCOUNTRY","PARENTID",'
    b'"WEBSITE"\r\n'
    b'"001A000001","Globex LLC","1 Main St","Portland","OR","97201","US","","https://globex.example.com"\r\n'
    b'"001A000002","Globex Europe GmbH","Hauptstrasse 1","Berlin","","10115","Germany","001A000001",""\r\n'
    b'"001A000003","Initech Inc","500 Howard Street","San Francisco","CA","94105","United States","",""\r\n'
)

SALESFORCE_TREE = b"""{"records": [
 {"attributes": {"type": "Account", "referenceId": "AccountRef1"}, "Id": "001B000001", "Name": "Hooli Inc",
  "BillingCountry": "US", "BillingState": "CA", "BillingPostalCode": "94043"},
 {"attributes": {"type": "Contact", "referenceId": "ContactRef1"}, "Id": "003B000001", "LastName": "Belson",
  "FirstName": "Gavin", "AccountId": "001B000001", "Email": "gavin@hooli.example.com"}
]}
"""

HUBSPOT_CSV = (
    "Record ID,Company name,City,Country/Region,Street Address,Postal Code,State/Region,Parent Company ID\n"
    "5301234001,Nordwind Logistik GmbH,Berlin,Germany,Friedrichstraße 123,10117,,\n"
    "5301234002,Nordwind Hamburg,Hamburg,Deutschland,Speicherstadt 5,20457,,5301234001\n"
).encode()

OPPORTUNITIES_CSV = (
    b'"ID","ISDELETED","ACCOUNTID","NAME","STAGENAME","CLOSEDATE","CURRENCYISOCODE","AMOUNT"\r\n'
    b'"006A000001","false","001A000001","Globex seats","Prospecting","2026-03-31","USD","1200.00"\r\n'
)

OPPORTUNITY_LINES_CSV = (
    b'"ID","OPPORTUNITYID","PRODUCTCODE","QUANTITY","UNITPRICE"\r\n'
    b'"00kA000001","006A000001","SEAT","10","10.00"\r\n'
)

USAGE_CSV = b"""customer,metric,quantity,at,key
001A000001,api_calls,120,2026-01-10,u-1
001A000001,api_calls,80,2026-01-11T09:30:00Z,u-2
"""

USAGE_JSONL = b"""{"customer": "001A000001", "metric": "api_calls", "quantity": 120, "at": "2026-01-10", "key": "j-1"}
{"customer": "001A000001", "metric": "api_calls", "quantity": "80", "at": "2026-01-11", "key": "j-2"}
"""

STRIPE_EVENT = {
    "id": "evt_0001", "type": "payment_intent.succeeded", "created": 1768910400,
    "data": {"object": {"id": "pi_0001", "object": "payment_intent", "amount": 15000, "amount_received": 15000,
                        "currency": "usd", "created": 1768910400, "latest_charge": "ch_0001",
                        "metadata": {"closeloop_customer": "001A000001"}}},
}

CRM_EVENT = {"id": "crm-evt-1", "type": "account.upserted", "source": "crm", "occurred_at": "2026-01-05T10:00:00Z",
             "data": {"external_id": "001A000001", "name": "Globex LLC", "country": "US", "region": "OR"}}
