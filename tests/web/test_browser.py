"""Browser tests: Playwright (Python) driving Debian's Chromium headless against a live server on the sample
company (closeloop.web.sample): sign in, open every page, resolve an exception, approve a quote, download an
invoice PDF, and follow a bill run's progress page.

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

from tests.api.conftest import PASSWORD, LiveServer
from tests.web.test_pages import PAGES

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


@pytest.fixture(scope="module")
def site(browser: Any, o2c: Any) -> Iterator[LiveServer]:
    with LiveServer(o2c.asgi) as running:
        yield running


@pytest.fixture
def page(browser: Any, site: LiveServer) -> Iterator[Any]:
    context = browser.new_context(base_url=site.url, locale="en-US", accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    pg.on("dialog", lambda dialog: dialog.accept())  # the confirmations of irreversible actions
    yield pg
    context.close()


def sign_in(page: Any, user: str = "ctrl") -> None:
    page.goto("/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def test_log_in_open_every_page_and_resolve_an_exception(page: Any, o2c: Any) -> None:
    page.goto("/exceptions")
    page.wait_for_url("**/login?next=*")
    sign_in(page, "tester")
    assert page.locator("h1").inner_text() == "Dashboard"
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"{page.url}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
    for link in page.locator("nav.main-nav a").all_inner_texts():
        page.click(f"nav.main-nav a:text-is('{link}')")
        page.wait_for_load_state()
        assert page.locator("h1").count() == 1, link
        for tab in page.locator("nav.tabs a").all():  # every tab of the section
            href = tab.get_attribute("href")
            response = page.request.get(href)
            assert response.status == 200, href
    for path, text in PAGES:
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        assert text in page.content(), (path, text)
    assert not errors, errors  # no CSP violation, no script error, no missing asset
    # ledger drill-down: trial balance -> account -> journal entry
    page.goto("/ledger?entity=US01")
    page.click("table.report a:text-is('1100')")
    page.click("a:text-is('JE-US01-0000001')")
    assert "Journal entry JE-US01-0000001" in page.locator("h2").first.inner_text()
    # resolve the system-of-record conflict from its page, reached from the customers section
    page.goto("/customers/conflicts")
    page.click("table.grid tbody a >> nth=0")
    exception_id = int(page.url.rsplit("/", 1)[1])
    assert "Playbook" in page.locator("aside").inner_text()
    page.select_option("select[name=action]", "accept")
    page.fill("textarea[name=reason]", "the CRM keeps the name; billing asked in error")
    page.click("#resolve-form button[type=submit]")
    page.wait_for_url(f"**/exceptions/{exception_id}?flash=*")
    assert "accept: resolved" in page.locator(".flash").inner_text()
    with o2c.app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT status FROM exception_item WHERE id = ?", (exception_id,)) == "resolved"


def test_approve_a_quote(page: Any, o2c: Any) -> None:
    sign_in(page, "tester")
    page.goto("/quotes?status=pending_approval")
    page.click("table#quotes a:text-is('Q-1004')")
    assert "discount_over_20" in page.locator("aside").inner_text()
    page.fill("#approve-form input[name=comment]", "approved for the pilot")
    page.click("#approve-form button[type=submit]")
    page.wait_for_url("**/quotes/Q-1004?flash=*")
    assert "quote is approved" in page.locator(".flash").inner_text()
    page.fill("#accept-form input[name=contract_id]", "C-1004")
    page.click("#accept-form button[type=submit]")
    page.wait_for_url("**/contracts/C-1004?flash=*")
    assert "Contract C-1004" in page.locator("h2").first.inner_text()
    with o2c.app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM audit_log WHERE command = 'quote.approve' AND outcome = 'ok'"
                          " AND actor = 'tester'") >= 1


def test_download_an_invoice_pdf(page: Any) -> None:
    sign_in(page, "ctrl")
    page.goto("/invoices")
    with page.expect_download() as download:
        page.click("table#invoices a[href$='.pdf'] >> nth=0")
    assert download.value.suggested_filename.endswith(".pdf")
    with open(download.value.path(), "rb") as fh:
        assert fh.read(5) == b"%PDF-"
    page.goto("/invoices/INV-US01-000001")
    with page.expect_download() as download:
        page.click("#pdf-link")
    assert download.value.suggested_filename == "INV-US01-000001.pdf"


def test_a_bill_run_shows_its_progress_until_done(page: Any) -> None:
    sign_in(page, "tester")
    page.goto("/billing/runs")
    page.fill("#bill-run-form input[name=as_of]", "2026-03-10")
    page.click("#bill-run-form button[type=submit]")
    page.wait_for_url("**/jobs/*")
    page.wait_for_selector("#job-status:text-is('done')")  # the page polls and reloads by itself
    assert "Done in" in page.locator("section.card").inner_text()
