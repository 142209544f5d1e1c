"""``make screenshots``: the pages of the web application as PNG files under docs/screenshots/.

Builds a small order-to-cash company (``closeloop.web.sample``: customers with a hierarchy and
duplicates, quotes, contracts, three bill runs, payments, a dispute, dunning, revenue, a closed
month, a wave plan) plus a CRM import of demo accounts in a temporary SQLite database, opens a
few exceptions, signs in with headless Chromium (Debian's, through Playwright) and saves each page.

    python -m closeloop.web.screenshots [--out docs/screenshots] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

# (file name, path, signed in)
PAGES = [
    ("login", "/login", False),
    ("dashboard", "/", True),
    ("kpi-drill-down", "/kpis/dso_days?period=2026-02", True),
    ("exceptions", "/exceptions", True),
    ("exception", "/exceptions/1", True),
    ("customers", "/customers", True),
    ("customer-hierarchy", "/customers/SF-001", True),
    ("customer-duplicates", "/customers/duplicates", True),
    ("customer-conflicts", "/customers/conflicts", True),
    ("quotes", "/quotes", True),
    ("quote-approval", "/quotes/Q-1002", True),
    ("contracts", "/contracts", True),
    ("contract-amendments", "/contracts/C-1001", True),
    ("invoices", "/invoices", True),
    ("invoice", "/invoices/INV-US01-000001", True),
    ("invoice-document", "/invoices/INV-DE01-000002/document", True),
    ("credit-memos", "/credit-memos", True),
    ("bill-runs", "/billing/runs?preview=1&as_of=2026-04-01", True),
    ("collections-aging", "/collections?entity=US01", True),
    ("collections-dunning", "/collections/dunning?entity=DE01", True),
    ("collections-disputes", "/collections/disputes", True),
    ("collections-payments", "/collections/payments", True),
    ("ledger-trial-balance", "/ledger?entity=US01", True),
    ("ledger-profit-and-loss", "/ledger/pnl?entity=US01&period=2026-01..2026-03", True),
    ("ledger-balance-sheet", "/ledger/balance-sheet?entity=US01", True),
    ("ledger-account", "/ledger/accounts/1100?entity=US01", True),
    ("ledger-journal", "/ledger/journals/JE-US01-0000002", True),
    ("revenue-waterfall", "/ledger/revenue?entity=US01", True),
    ("deferred-revenue", "/ledger/deferred-revenue?entity=US01", True),
    ("rpo", "/ledger/rpo?entity=US01", True),
    ("close-cockpit", "/close?entity=DE01&period=2026-02", True),
    ("reconciliation", "/recon", True),
    ("waves", "/waves", True),
    ("variations", "/variations", True),
    ("operations", "/operations?op=journal.post", True),
]
PASSWORD = "screenshots-only"
TODAY = date(2026, 3, 10)  # where build_sample leaves the clock


def build(db: str) -> None:
    from rich.console import Console

    from closeloop.app import App
    from closeloop.auth.users import add_user
    from closeloop.core.clock import ScenarioClock
    from closeloop.core.exception_queue import open_exception
    from closeloop.customers.demo import import_demo_accounts
    from closeloop.web.sample import build_sample

    clock = ScenarioClock(date(2026, 1, 1))
    app = App(db, clock=clock, actor="demo")
    facts = build_sample(app, clock)
    import_demo_accounts(app, Console(quiet=True), accounts=60)
    with app.unit_of_work() as uow:
        add_user(uow, "controller", ["controller", "admin"], password=PASSWORD, locale="en_US")
        for i, (kind, record, message, entity, amount) in enumerate([
            ("recon_break", "INV-US01-000042", "Invoice total 1,200.00 differs from AR control by 200.00", "US01",
             20000),
            ("tax_undetermined", "INV-DE01-000017", "No tax rule for buyer in CH (product saas)", "DE01", None),
            ("sync_failed", "evt-991", "posting handler failed: account 4010 does not exist", "US01", None),
        ]):
            open_exception(uow, kind, record_type="invoice" if record.startswith("INV") else "record",
                           record_id=record, message=message, entity=entity, amount=amount,
                           currency="USD" if amount and entity == "US01" else None, dedup_key=f"shot-{i}")
    assert facts["closed"], "the sample's January close did not lock"
    app.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closeloop.web.screenshots")
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    import uvicorn
    from playwright.sync_api import sync_playwright

    from closeloop.api.server import create_server

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "screens.db")
        build(db)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        from closeloop.app import App
        from closeloop.core.clock import ScenarioClock

        cl = App(db, clock=ScenarioClock(TODAY), actor="api")  # the pages see the sample's today
        server = uvicorn.Server(uvicorn.Config(create_server(app=cl, upload_dir=os.path.join(tmp, "uploads")),
                                               host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
                page = browser.new_page(base_url=f"http://127.0.0.1:{port}", viewport={"width": 1280, "height": 800},
                                        locale="en-US")
                for name, path, signed_in in PAGES:
                    if signed_in and "/login" in page.url or signed_in and page.url == "about:blank":
                        page.goto("/login")
                        page.fill("input[name=username]", "controller")
                        page.fill("input[name=password]", PASSWORD)
                        page.click("button[type=submit]")
                        page.wait_for_url("**/")
                    response = page.goto(path)
                    if response is not None and response.status >= 400:
                        raise SystemExit(f"{path} answered {response.status}")
                    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                    print(f"wrote {out / (name + '.png')}")
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
