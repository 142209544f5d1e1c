"""The pages of customers, quotes and contracts, invoices, collections, revenue, close and rollout over HTTP:
what each shows from the sample company, the actions behind their forms, roles, entity scope, CSRF on every
form post, and the background jobs with their progress page.

One company per module (``o2c``); tests that change it act on records no other test reads.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from closeloop.core.exception_queue import open_exception
from tests.web.conftest import csrf_of

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# (path, text the page must show)
PAGES = [
    ("/", "dso days"),
    ("/kpis/dso_days?period=2026-02", "Records behind the value"),
    ("/kpis/data_quality_score?period=2026-03", "Formula"),
    ("/customers", "Globex LLC"),
    ("/customers?search=initech", "SF-002"),
    ("/customers/SF-001", "Acme Holdings Inc"),
    ("/customers/ACME-TOP", "Initech"),
    ("/customers/duplicates", "15.50"),
    ("/customers/conflicts", "Initech Billing Dept"),
    ("/quotes", "Q-1002"),
    ("/quotes/Q-1002", "discount_over_20"),
    ("/quotes/Q-1001?version=1", "C-1001"),
    ("/contracts", "C-1001"),
    ("/contracts/C-1001", "upsell: five more seats"),
    ("/contracts/C-1001?as_of=2026-01-15", "2026-01-01"),
    ("/invoices", "INV-US01-000001"),
    ("/invoices?entity=DE01&status=open", "INV-DE01-000001"),
    ("/credit-memos", "CM-DE01-000001"),
    ("/invoices/INV-US01-000001", "PAY-0000001"),
    ("/invoices/INV-DE01-000002", "CM-DE01-000001"),
    ("/invoices/CM-DE01-000001", "one seat not delivered"),
    ("/billing/runs", "2026-03-01"),
    ("/billing/runs?preview=1&as_of=2026-04-01", "Preview as of 2026-04-01: 2 invoice(s)"),
    ("/collections?entity=US01", "1–30 days"),
    ("/collections?entity=DE01&bucket=d31_60", "INV-DE01-000001"),
    ("/collections/dunning?entity=DE01", "reminder_3"),
    ("/collections/disputes", "five seats were never used"),
    ("/collections/payments", "PAY-0000002"),
    ("/collections/payments/PAY-0000001", "INV-US01-000001"),
    ("/ledger/revenue?entity=US01", "C-1001"),
    ("/ledger/deferred-revenue?entity=US01", "ties to the ledger every month"),
    ("/ledger/rpo?entity=US01", "RPO US01 USD"),
    ("/close?entity=US01&period=2026-01", "locked"),
    ("/close?entity=DE01&period=2026-02", "bill run complete"),
    ("/recon", "ledger_debits_vs_credits"),
    ("/waves", "US and Germany core"),
    ("/variations", "VAR-DE-1"),
]


def test_every_page_shows_its_records(as_user, o2c):
    client = as_user("tester")
    for path, text in PAGES:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:800])
        assert text in page.text, (path, text)
        assert 'class="main-nav"' in page.text and "<script" not in page.text.replace(
            '<script src="/static/app.js" defer></script>', ""), path  # no inline script (CSP)
    labels = [e.label for e in o2c.asgi.state.nav]
    assert labels == ["Dashboard", "Exceptions", "Customers", "Contracts", "Invoices", "Collections", "Ledger",
                      "Close", "Operations"]


def test_amounts_use_the_readers_locale(as_user, o2c):
    client = as_user("tester")
    page = client.get("/contracts/C-1001", headers={"Accept-Language": "de-DE"}).text
    assert "1.750,00\xa0$" in page  # TCV of the amended contract
    assert "$1,750.00" in client.get("/contracts/C-1001").text


def test_the_dashboard_reads_every_kpi_with_one_trend_query(as_user, o2c, monkeypatch):
    from closeloop.app import App
    from closeloop.web.pages.dashboard import KPI_NAMES

    calls: list[str] = []
    original = App.query

    def counting(self: Any, name: str, where: Any = None, **kw: Any) -> Any:
        calls.append(name)
        return original(self, name, where, **kw)

    monkeypatch.setattr(App, "query", counting)
    client = as_user("tester")
    page = client.get("/").text
    assert calls.count("kpis") == 1 and calls.count("kpi") == 0
    for name in KPI_NAMES:
        assert f'href="/kpis/{name}?period=' in page, name
    assert "100.0%" in page  # first-pass invoice accuracy as a percentage
    drill = client.get("/kpis/dso_days?period=2026-02&entity=US01").text
    assert "150.00" in drill and "receivable" in drill  # the records behind the value


def test_customer_page_shows_the_whole_tree_and_roll_up(as_user, o2c):
    page = as_user("reader").get("/customers/SF-002").text
    tree = page[page.index('id="hierarchy"'):page.index("</ul>", page.index('id="hierarchy"'))]
    assert "Acme Holdings Inc" in tree and "Globex LLC" in tree and "Initech" in tree
    assert 'class="depth-1 self"' in tree  # SF-002 highlighted under its top parent
    assert "ACME-TOP › SF-002" in page


def test_every_form_post_needs_the_csrf_token(as_user, o2c):
    """Each POST route of the pages refuses a missing or wrong token with 403 and runs nothing."""
    client = as_user("tester")
    import importlib

    from closeloop.web.pages import PAGE_MODULES

    posts = sorted({r.path for m in PAGE_MODULES for r in importlib.import_module(m).router.routes
                    if "POST" in getattr(r, "methods", set())})
    assert len(posts) >= 20, posts
    with o2c.app.unit_of_work(write=False) as uow:
        before = uow.scalar("SELECT COUNT(*) FROM audit_log WHERE outcome = 'ok'")
    for path in posts:
        url = re.sub(r"\{[^}]+\}", "X-1", path.replace("{exception_id}", "1"))
        missing = client.post(url, data={"reason": "x"}, follow_redirects=False)
        assert missing.status_code == 403 and "CSRF" in missing.text, (path, missing.status_code)
        wrong = client.post(url, data={"csrf_token": "forged"}, follow_redirects=False)
        assert wrong.status_code == 403, path
    upload = client.post("/customers/import", files={"file": ("a.csv", b"Id,Name\n")}, data={"format": "salesforce"})
    assert upload.status_code == 403
    with o2c.app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM audit_log WHERE outcome = 'ok'") == before  # nothing ran
        assert uow.scalar("SELECT COUNT(*) FROM auth_event WHERE kind = 'csrf'") >= 2 * len(posts)


def test_roles_decide_which_actions_are_offered_and_allowed(as_user, o2c):
    reader = as_user("reader")
    for path in ("/quotes/Q-1002", "/collections/disputes", "/billing/runs", "/close?entity=DE01&period=2026-02",
                 "/waves", "/customers/duplicates", "/variations"):
        page = reader.get(path)
        assert page.status_code == 200 and "<form method=\"post\" action=\"/logout\"" in page.text
        assert page.text.count('method="post"') == 1, path  # only the sign-out form
    token = csrf_of(reader)
    refused = reader.post("/quotes/Q-1002/approve", data={"csrf_token": token})
    assert refused.status_code == 403 and "forbidden" in refused.text
    refused = reader.post("/billing/runs", data={"csrf_token": token, "as_of": "2026-03-10"})
    assert refused.status_code == 403
    with o2c.app.unit_of_work(write=False) as uow:
        denied = {r[0] for r in uow.all("SELECT command FROM audit_log WHERE actor = 'reader' AND outcome ="
                                        " 'forbidden'")}
    assert {"quote.approve", "billing.run"} <= denied
    sales = as_user("sales").get("/quotes/Q-1002").text
    assert 'id="approve-form"' in sales  # sales ops may record an approval (the rule still needs a manager)


def test_an_entity_scoped_user_sees_only_their_entity(as_user, o2c):
    de = as_user("de_ctrl")
    invoices = de.get("/invoices").text
    assert "INV-DE01-000001" in invoices and "INV-US01" not in invoices
    customers = de.get("/customers").text
    assert "SF-DE1" in customers and "SF-001" not in customers
    quotes = de.get("/quotes").text
    assert "Q-1003" in quotes and "Q-1001" not in quotes
    assert "C-1003" in de.get("/contracts").text and "C-1001" not in de.get("/contracts").text
    payments = de.get("/collections/payments").text
    assert "PAY-0000001" not in payments
    assert "D-1" not in de.get("/collections/disputes").text
    for path in ("/invoices/INV-US01-000001", "/invoices/INV-US01-000001.pdf", "/invoices/INV-US01-000001/document",
                 "/customers/SF-001", "/quotes/Q-1001", "/contracts/C-1001", "/collections?entity=US01",
                 "/collections/payments/PAY-0000001", "/close?entity=US01&period=2026-01",
                 "/ledger/revenue?entity=US01", "/ledger/rpo?entity=US01", "/kpis/dso_days?entity=US01",
                 "/invoices?entity=US01"):
        assert de.get(path).status_code in (403, 404), path
    assert de.get("/collections").status_code == 200  # defaults to DE01
    assert "INV-DE01-000001" in de.get("/collections").text


def test_invoice_pdf_document_and_einvoice(as_user, o2c):
    client = as_user("ctrl")
    pdf = client.get("/invoices/INV-DE01-000001.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and 'filename="INV-DE01-000001.pdf"' in pdf.headers["content-disposition"]
    doc = client.get("/invoices/INV-DE01-000001/document")
    assert doc.status_code == 200 and "Muster AG" in doc.text and "default-src 'none'" in \
        doc.headers["content-security-policy"]
    assert client.get("/invoices/INV-DE01-000001/einvoice/ubl").status_code == 404  # nothing exported yet
    token = csrf_of(client, "/invoices/INV-DE01-000001")
    xml = client.post("/invoices/INV-DE01-000001/einvoice", data={"csrf_token": token, "format": "ubl"})
    assert xml.status_code == 200 and xml.headers["content-type"].startswith("application/xml")
    assert b"<Invoice" in xml.content and "INV-DE01-000001.ubl.xml" in xml.headers["content-disposition"]
    stored = client.get("/invoices/INV-DE01-000001/einvoice/ubl")
    assert stored.status_code == 200 and stored.content == xml.content
    assert "INV-DE01-000001.ubl.xml" in client.get("/invoices/INV-DE01-000001").text
    facturx = client.post("/invoices/INV-DE01-000001/einvoice", data={"csrf_token": token, "format": "facturx"})
    assert facturx.status_code == 200 and facturx.content.startswith(b"%PDF")
    reader = as_user("reader")
    assert reader.post("/invoices/INV-DE01-000001/einvoice", data={"csrf_token": csrf_of(reader),
                                                                   "format": "ubl"}).status_code == 403


def test_approve_then_accept_a_quote(as_user, o2c):
    client = as_user("tester")
    token = csrf_of(client, "/quotes/Q-1002")
    done = client.post("/quotes/Q-1002/approve", data={"csrf_token": token, "comment": "strategic logo"},
                       follow_redirects=False)
    assert done.status_code == 303
    page = client.get(done.headers["location"]).text
    assert "approved by tester: quote is approved" in page and 'id="accept-form"' in page
    accepted = client.post("/quotes/Q-1002/accept", data={"csrf_token": token, "contract_id": "C-1002"},
                           follow_redirects=False)
    assert accepted.status_code == 303 and accepted.headers["location"].startswith("/contracts/C-1002")
    assert "$1,800.00" in client.get("/contracts/C-1002").text  # TCV: 20 seats x 7.50 x 12
    assert o2c.app.query("quote", {"quote_id": "Q-1002"}, actor="tester")["status"] == "accepted"


def test_merge_and_dismiss_suspected_duplicates(as_user, o2c):
    o2c.app.do("customer.upsert", {"source": "crm", "external_id": "SF-077", "name": "Initech Inc",
                                   "country": "US", "region": "OR", "postal_code": "97205",
                                   "address": {"street": "4120 Freidrich Lane", "city": "Portland"}}, actor="tester")
    client = as_user("sales")
    page = client.get("/customers/duplicates").text
    assert "SF-077" in page and "Not duplicates" in page
    token = csrf_of(client, "/customers/duplicates")
    pair = next(d for d in o2c.app.query("customer_duplicates", {"status": "open"}, actor="tester")["items"]
                if "SF-077" in (d["a"], d["b"]))
    dismissed = client.post("/customers/duplicates/dismiss", data={"csrf_token": token, "a": pair["a"],
                                                                   "b": pair["b"], "reason": "a subsidiary"},
                            follow_redirects=False)
    assert dismissed.status_code == 303
    merged = client.post("/customers/duplicates/merge", data={"csrf_token": token, "survivor": "SF-001",
                                                              "merged": "LEGACY-77", "reason": "same EIN"},
                         follow_redirects=False)
    assert merged.status_code == 303 and merged.headers["location"].startswith("/customers/SF-001")
    assert "LEGACY-77 merged into SF-001" in client.get(merged.headers["location"]).text
    assert o2c.app.query("customer", {"external_id": "LEGACY-77"}, actor="tester")["status"] == "merged"
    assert "No suspected duplicate is open" in client.get("/customers/duplicates").text


def test_disputes_open_review_and_resolve(as_user, o2c):
    client = as_user("collector")
    token = csrf_of(client, "/collections/disputes")
    opened = client.post("/collections/disputes/open", data={
        "csrf_token": token, "dispute_id": "D-9", "invoice": "INV-US01-000003", "amount": "20.00",
        "reason": "price not agreed", "reason_code": "pricing"}, follow_redirects=False)
    assert opened.status_code == 303, client.get(opened.headers.get("location", "/")).text[:300]
    assert client.post("/collections/disputes/D-9/review", data={"csrf_token": token, "owner": "carol"},
                       follow_redirects=False).status_code == 303
    resolved = client.post("/collections/disputes/D-9/resolve", data={"csrf_token": token, "outcome": "rejected",
                                                                      "note": "contract price"},
                           follow_redirects=False)
    assert resolved.status_code == 303 and "resolved+rejected" in resolved.headers["location"]
    assert o2c.app.query("dispute", {"dispute_id": "D-9"}, actor="tester")["status"] == "resolved_rejected"
    bad = client.post("/collections/disputes/D-9/resolve", data={"csrf_token": token, "outcome": "maybe"})
    assert bad.status_code == 422


def test_apply_unapplied_cash_and_run_dunning(as_user, o2c):
    client = as_user("collector")
    page = client.get("/collections/payments/PAY-0000002").text
    assert 'id="apply-form"' in page and "INV-US01-000002" in page
    token = csrf_of(client, "/collections/payments/PAY-0000002")
    applied = client.post("/collections/payments/PAY-0000002/apply", data={"csrf_token": token,
                                                                            "invoice": "INV-US01-000002"},
                          follow_redirects=False)
    assert applied.status_code == 303
    assert o2c.app.query("payment", {"payment": "PAY-0000002"}, actor="tester")["unapplied"] == "0.00"
    ran = client.post("/collections/dunning/run", data={"csrf_token": token, "as_of": "2026-03-10"},
                      follow_redirects=False)
    assert ran.status_code == 303 and "dunning+run+as+of+2026-03-10" in ran.headers["location"]


def _wait(client: Any, location: str) -> dict[str, Any]:
    assert location.startswith("/jobs/")
    deadline = time.monotonic() + 30
    while True:
        status = client.get(location + ".json").json()
        if status["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return status  # type: ignore[no-any-return]
        time.sleep(0.05)


def test_bill_run_in_the_background_with_a_progress_page(as_user, o2c):
    client = as_user("biller")
    token = csrf_of(client, "/billing/runs")
    started = client.post("/billing/runs", data={"csrf_token": token, "as_of": "2026-03-10", "entity": "US01"},
                          follow_redirects=False)
    assert started.status_code == 303
    job = _wait(client, started.headers["location"])
    assert job["status"] == "done" and job["operation"] == "billing.run", job
    expected = int(job["expected"].split(" invoice(s) to issue")[0])  # from the preview, before the run
    assert job["result"]["invoices"] == expected and job["result"]["status"] == "completed"
    again = client.post("/billing/runs", data={"csrf_token": token, "as_of": "2026-03-10", "entity": "US01"},
                        follow_redirects=False)
    rerun = _wait(client, again.headers["location"])
    assert rerun["expected"].startswith("0 invoice(s)") and rerun["result"]["invoices"] == 0  # nothing twice
    page = client.get(started.headers["location"]).text
    assert "Done in" in page and "billing.run" in page
    other = as_user("tester")
    assert other.get(started.headers["location"]).status_code == 404  # a job is its starter's


def test_recon_run_and_crm_import_run_as_jobs(as_user, o2c):
    client = as_user("tester")
    token = csrf_of(client, "/recon")
    started = client.post("/recon/run", data={"csrf_token": token, "as_of": "2026-03-10"}, follow_redirects=False)
    job = _wait(client, started.headers["location"])
    assert job["status"] == "done" and job["result"]["matched"] > 0 and "rule(s) to run" in job["expected"]
    data = (FIXTURES / "customers" / "salesforce-hierarchy.csv").read_bytes()
    started = client.post("/customers/import", data={"csrf_token": token, "format": "salesforce"},
                          files={"file": ("../../etc/accounts.csv", data, "text/csv")}, follow_redirects=False)
    assert started.status_code == 303, started.text[:500]
    job = _wait(client, started.headers["location"])
    assert job["status"] == "done" and job["result"]["created"] == 4, job
    assert job["expected"].startswith("4 rows: 4 to create")
    assert "Acme France SAS" in client.get("/customers?search=france").text
    assert client.post("/customers/import", data={"csrf_token": token, "format": "excel"},
                       files={"file": ("a.csv", data)}).status_code == 422
    sales = as_user("reader")
    refused = sales.post("/customers/import", data={"csrf_token": csrf_of(sales), "format": "salesforce"},
                         files={"file": ("a.csv", data)})
    assert refused.status_code == 403


def test_close_with_an_override_then_reopen_with_a_second_person(as_user, o2c):
    with o2c.app.unit_of_work() as uow:
        exc = open_exception(uow, "recon_break", record_type="invoice", record_id="INV-DE01-000002", entity="DE01",
                             message="AR subledger differs from GL", amount=25000, currency="EUR")
    o2c.app.dispatch()
    ctrl = as_user("ctrl")
    token = csrf_of(ctrl, "/close?entity=DE01&period=2026-02")
    blocked = ctrl.post("/close/run", data={"csrf_token": token, "entity": "DE01", "period": "2026-02"},
                        follow_redirects=False)
    assert "recon_breaks_below_threshold" in blocked.headers["location"]
    page = ctrl.get(blocked.headers["location"]).text
    assert f"#{exc}" in page and "blocking" in page
    missing = ctrl.post("/close/run", data={"csrf_token": token, "entity": "DE01", "period": "2026-02",
                                            "override_recon_breaks_below_threshold": "1"})
    assert missing.status_code == 422
    own = ctrl.post("/close/run", data={"csrf_token": token, "entity": "DE01", "period": "2026-02",
                                        "override_recon_breaks_below_threshold": "1",
                                        "reason_recon_breaks_below_threshold": "timing", "approver_"
                                        "recon_breaks_below_threshold": "ctrl"})
    assert own.status_code == 403  # the closer cannot approve their own override
    done = ctrl.post("/close/run", data={"csrf_token": token, "entity": "DE01", "period": "2026-02",
                                         "override_recon_breaks_below_threshold": "1",
                                         "reason_recon_breaks_below_threshold": "timing difference, clears in March",
                                         "approver_recon_breaks_below_threshold": "ctrl2"}, follow_redirects=False)
    assert "is+closed" in done.headers["location"]
    page = ctrl.get("/close?entity=DE01&period=2026-02").text
    assert "overridden" in page and "approved by ctrl2" in page and 'id="reopen-form"' in page
    ctrl.post("/close/reopen", data={"csrf_token": token, "entity": "DE01", "period": "2026-02",
                                     "reason": "late supplier invoice"})
    assert "waits for a second person" in ctrl.get("/close?entity=DE01&period=2026-02").text
    assert ctrl.post("/close/reopen/approve", data={"csrf_token": token, "entity": "DE01",
                                                    "period": "2026-02"}).status_code == 403
    ctrl2 = as_user("ctrl2")
    page = ctrl2.get("/close?entity=DE01&period=2026-02").text
    assert 'id="reopen-approve-form"' in page and "late supplier invoice" in page
    approved = ctrl2.post("/close/reopen/approve", data={"csrf_token": csrf_of(ctrl2), "entity": "DE01",
                                                          "period": "2026-02"}, follow_redirects=False)
    assert approved.status_code == 303
    assert o2c.app.query("close_status", {"entity": "DE01", "period": "2026-02"}, actor="tester")["locked"] is False


def test_waves_go_live_and_variations(as_user, o2c):
    impl = as_user("impl")
    page = impl.get("/waves").text
    assert "no-go" in page and "data-quality score" in page
    token = csrf_of(impl, "/waves")
    refused = impl.post("/waves/W2/golive", data={"csrf_token": token})
    assert refused.status_code == 409  # a failing gate: no-go
    live = impl.post("/waves/W3/golive", data={"csrf_token": token}, follow_redirects=False)
    assert live.status_code == 303 and "W3+is+live" in live.headers["location"]
    registered = impl.post("/variations/register", data={
        "csrf_token": token, "variation_id": "VAR-US-9", "title": "Net 45 for public sector", "area": "billing",
        "scope": "customers of the public sector", "classification": "strategic", "owner": "deal desk",
        "reason": "procurement rules", "review_date": "2026-09-30"}, follow_redirects=False)
    assert registered.status_code == 303
    assert 'action="/variations/VAR-US-9/approve"' not in impl.get("/variations").text  # not by its proposer
    assert impl.post("/variations/VAR-US-9/approve", data={"csrf_token": token}).status_code == 403
    tester = as_user("tester")
    assert tester.post("/variations/VAR-US-9/approve", data={"csrf_token": csrf_of(tester)},
                       follow_redirects=False).status_code == 303
    assert o2c.app.query("variations", {}, actor="tester")["items"][-1]["status"] == "approved"


@pytest.mark.parametrize("path", ["/customers/NOPE", "/quotes/NOPE", "/contracts/NOPE", "/invoices/NOPE",
                                  "/invoices/NOPE.pdf", "/collections/payments/NOPE", "/kpis/no_such_kpi",
                                  "/jobs/nope"])
def test_unknown_records_are_not_found(as_user, o2c, path):
    assert as_user("tester").get(path).status_code in (404, 422)


def test_bad_parameters_are_validation_errors(as_user, o2c):
    client = as_user("tester")
    for path in ("/contracts?as_of=yesterday", "/invoices?date_from=13/01/2026", "/close?period=2026-13",
                 "/ledger/revenue?start=2026", "/quotes/Q-1001?version=x", "/invoices/INV-US01-000001/einvoice/pdf"):
        page = client.get(path)
        assert page.status_code == 422 and "validation_error" in page.text, path
