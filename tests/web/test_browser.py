"""Browser tests: Playwright (Python) driving Debian's Chromium headless against a live server.

They skip, with the reason shown, when Chromium or Playwright is missing, unless CLOSELOOP_REQUIRE_BROWSER=1
(CI installs chromium with apt-get and sets it). ``playwright install`` is never needed: the system
Chromium is launched through its executable path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from closeloop.core.exception_queue import open_exception
from tests.api.conftest import PASSWORD

CHROMIUM = os.environ.get("CLOSELOOP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("CLOSELOOP_REQUIRE_BROWSER") == "1"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (Python) is not installed"
    if not os.path.exists(CHROMIUM):
        return f"chromium is not installed ({CHROMIUM}); apt-get install -y chromium"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing()
    if reason:
        if REQUIRED:
            pytest.fail(f"CLOSELOOP_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, live: Any, server: Any) -> Iterator[Any]:
    context = browser.new_context(base_url=live.url, locale="en-US", accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def sign_in(page: Any, user: str = "ctrl") -> None:
    page.goto("/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def test_log_in_open_every_page_and_resolve_an_exception(page: Any, server: Any) -> None:
    server.app.do("journal.post", {"entity": "US01", "date": "2026-01-05", "memo": "capital",
                                   "lines": [{"account": "cash", "debit": "500.00"},
                                             {"account": "3000", "credit": "500.00"}]}, actor="ctrl")
    with server.app.unit_of_work() as uow:
        exception_id = open_exception(uow, "recon_break", record_type="invoice", record_id="INV-9",
                                      message="billed differs from ledger", entity="US01", amount=5000,
                                      currency="USD")
    page.goto("/exceptions")
    page.wait_for_url("**/login?next=*")
    sign_in(page)
    assert page.locator("h1").inner_text() == "Dashboard"
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    for link in page.locator("nav.main-nav a").all_inner_texts():
        page.click(f"nav.main-nav a:text-is('{link}')")
        page.wait_for_load_state()
        assert page.locator("h1").count() == 1, link
    assert not errors, errors  # no CSP violation, no missing asset
    # ledger drill-down: trial balance -> account -> journal entry
    page.goto("/ledger?entity=US01")
    page.click("table.report a:text-is('1000')")
    page.click("a:text-is('JE-US01-0000001')")
    assert "Journal entry JE-US01-0000001" in page.locator("h2").first.inner_text()
    # resolve the exception through the form
    page.goto("/exceptions")
    page.click(f"a[href='/exceptions/{exception_id}'] >> nth=0")
    assert "Playbook" in page.locator("aside").inner_text()
    page.select_option("select[name=action]", "accept")
    page.fill("textarea[name=reason]", "timing difference, clears next month")
    page.click("#resolve-form button[type=submit]")
    page.wait_for_url(f"**/exceptions/{exception_id}?flash=*")
    assert "accept: resolved" in page.locator(".flash").inner_text()
    assert "timing difference" in page.locator("table.grid").last.inner_text()
    with server.app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT status FROM exception_item WHERE id = ?", (exception_id,)) == "resolved"


def test_download_an_invoice_pdf(page: Any, server: Any) -> None:
    if not any(entry.path == "/invoices" for entry in server.asgi.state.nav):
        pytest.skip("the invoices page (HTML/PDF) does not exist yet: the billing area adds it")
    sign_in(page, "tester")
    page.goto("/invoices")
    with page.expect_download() as download:
        page.click("a[href$='.pdf'] >> nth=0")
    assert download.value.suggested_filename.endswith(".pdf")


def test_approve_a_quote_from_the_operations_page(page: Any, server: Any) -> None:
    from closeloop.core import registry
    from closeloop.core.errors import CloseloopError

    if not {"quote.create", "quote.approve", "price.create"} <= set(registry.operations()):
        pytest.skip("quotes are not implemented yet (contracts area)")
    try:
        server.app.do("customer.upsert", {"source": "crm", "external_id": "SF-1", "name": "Globex", "country": "US",
                                          "region": "CA", "entity": "US01", "currency": "USD"}, actor="tester")
        server.app.do("product.create", {"sku": "seat", "name": "Seat", "treatment": "ratable"}, actor="tester")
        server.app.do("price.create", {"price_id": "seat-usd", "sku": "seat", "currency": "USD", "model": "per_unit",
                                       "amount": "10.00", "period": "month", "timing": "advance"}, actor="tester")
        server.app.do("quote.create", {"quote_id": "Q-1", "customer": "SF-1", "start": "2026-02-01",
                                       "term_months": 12, "lines": [{"line_id": "L1", "price_id": "seat-usd",
                                                                     "quantity": 5}]}, actor="tester")
    except CloseloopError as err:
        pytest.skip(f"could not set up a quote with the contracts area as it is: {err.code}: {err.message}")
    sign_in(page, "tester")
    page.goto("/operations?op=quote.approve")
    page.fill("textarea[name=payload]", '{"quote_id": "Q-1"}')
    page.click("#run-form button[type=submit]")
    page.wait_for_selector("pre.result")
    assert "Q-1" in page.locator("pre.result").inner_text()
    with server.app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM audit_log WHERE command = 'quote.approve' AND outcome = 'ok'"
                          " AND actor = 'tester'") == 1
