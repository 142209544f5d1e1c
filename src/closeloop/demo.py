"""``make demo``: a SaaS company's whole order-to-cash year, built through the public vocabulary.

Three legal entities (Acme Inc in the US, Acme GmbH in Germany, Acme Ltd in the UK; three
currencies), a Salesforce-style export of about a thousand accounts with hierarchies, planted
duplicates and bad rows, a catalogue of seat, tiered-usage and milestone products, quotes (some
changed after approval), contracts with amendments, renewals and cancellations, a year of usage,
monthly bill runs with tax in three jurisdictions (a reverse-charge and an exempt customer among
them), payments from a signed provider webhook stream and camt.053 bank statements (failures,
disputes, refunds, payouts), revenue recognition, an intercompany project, FX revaluation,
reconciliation, and twelve closed periods. Then a short report: what happened, the exception queue
by kind, the KPIs by month, the deferred revenue roll-forward, and how to open the web app on it.

Each month M runs in business order on the scenario clock: collections for M (webhooks and bank
statements), the month's usage, milestones every third month, the bill run on the first day of
M+1, the revenue recognition run, FX revaluation and reconciliation; the close of M happens a few
days into M+1 (gates evaluated from the data; a failing gate needs an override approved by a
second person, with its reason).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from closeloop.app import App
from closeloop.core.clock import ScenarioClock
from closeloop.core.errors import CloseloopError
from closeloop.core.periods import add_months, period_of

YEAR = 2026
ENTITIES = (
    {"code": "US01", "name": "Acme Inc", "country": "US", "region": "CA", "currency": "USD", "tax_id": "94-1081436",
     "address": {"street": "500 Howard Street", "city": "San Francisco", "region": "CA", "postal_code": "94105",
                 "country": "US"}},
    {"code": "DE01", "name": "Acme GmbH", "country": "DE", "currency": "EUR", "tax_id": "DE136695976",
     "address": {"street": "Friedrichstrasse 68", "city": "Berlin", "postal_code": "10117", "country": "DE"}},
    {"code": "UK01", "name": "Acme Ltd", "country": "GB", "currency": "GBP", "tax_id": "GB980780684",
     "address": {"street": "1 Poultry", "city": "London", "postal_code": "EC2R 8EJ", "country": "GB"}},
)
# Where an account is billed from: the entity of its country (the rest of Europe from Germany).
ENTITY_BY_COUNTRY = {"US": "US01", "CA": "US01", "GB": "UK01"}
CURRENCY = {"US01": "USD", "DE01": "EUR", "UK01": "GBP"}
CONTRACTS = 150


def _fx_rates(app: App) -> None:
    """Month-start and mid-month rates for the year, drifting a little (revaluation has something to do)."""
    rng = random.Random(77)
    eur_usd, gbp_usd = Decimal("1.0800"), Decimal("1.2700")
    for month in range(1, 14):
        year, m = (YEAR, month) if month <= 12 else (YEAR + 1, 1)
        for day in (1, 15):
            eur_usd += Decimal(rng.randint(-120, 120)) / 10000
            gbp_usd += Decimal(rng.randint(-120, 120)) / 10000
            when = date(year, m, day).isoformat()
            gbp_eur = (gbp_usd / eur_usd).quantize(Decimal("0.0001"))
            for base, quote, rate in (("EUR", "USD", eur_usd), ("GBP", "USD", gbp_usd), ("GBP", "EUR", gbp_eur),
                                      ("USD", "EUR", (1 / eur_usd).quantize(Decimal("0.0001"))),
                                      ("USD", "GBP", (1 / gbp_usd).quantize(Decimal("0.0001"))),
                                      ("EUR", "GBP", (1 / gbp_eur).quantize(Decimal("0.0001")))):
                app.do("fx.rate", {"base": base, "quote": quote, "date": when, "rate": str(rate)})


def _assign_entities(app: App) -> list[str]:
    """Give each imported account its contracting entity and currency (billing's data), by country."""
    accounts = app.query("customers", {"status": "active", "limit": 10_000})["items"]
    billable = []
    for acct in accounts:
        entity = ENTITY_BY_COUNTRY.get(acct["country"], "DE01")
        app.do("customer.upsert", {"source": "billing", "external_id": acct["external_id"], "name": acct["name"],
                                   "country": acct["country"], "entity": entity, "currency": CURRENCY[entity]})
        billable.append(acct["external_id"])
    # two accounts every tax team asks about: a French business (reverse charge from Germany) and an
    # exempt US non-profit with its certificate
    app.do("customer.upsert", {"source": "crm", "external_id": "SF-FR-B2B", "name": "Société Exemple SA",
                               "country": "FR", "postal_code": "75008", "tax_id": "FR40303265045",
                               "address": {"street": "8 rue de la Paix", "city": "Paris", "postal_code": "75008",
                                           "country": "FR"}, "email": "ap@exemple.fr"})
    app.do("customer.upsert", {"source": "billing", "external_id": "SF-FR-B2B", "name": "Société Exemple SA",
                               "country": "FR", "entity": "DE01", "currency": "EUR"})
    app.do("customer.upsert", {"source": "crm", "external_id": "SF-US-NPO", "name": "Open Schools Foundation",
                               "country": "US", "region": "NY", "postal_code": "10017", "tax_exempt": True,
                               "exemption_ref": "NY-ST119-2026-0042", "email": "finance@openschools.org",
                               "address": {"street": "10 E 40th St", "city": "New York", "region": "NY",
                                           "postal_code": "10017", "country": "US"}})
    app.do("customer.upsert", {"source": "billing", "external_id": "SF-US-NPO", "name": "Open Schools Foundation",
                               "country": "US", "entity": "US01", "currency": "USD"})
    return ["SF-FR-B2B", "SF-US-NPO", *billable]


def _intercompany_project(app: App, start: date) -> str:
    """A US customer's implementation project sold by Acme Inc and delivered by Acme GmbH."""
    app.do("quote.create", {"quote_id": "Q-IC-1", "customer": "SF-US-NPO", "start": start.isoformat(),
                            "term_months": 12, "lines": [
                                {"line_id": "impl", "price_id": "impl-usd", "quantity": 1,
                                 "performing_entity": "DE01",
                                 "milestones": [{"milestone_id": "design", "amount": "8000.00"},
                                                {"milestone_id": "build", "amount": "10000.00"},
                                                {"milestone_id": "golive", "amount": "6000.00"}]}]})
    app.do("quote.approve", {"quote_id": "Q-IC-1", "approver": "sales-manager"})
    app.do("quote.accept", {"quote_id": "Q-IC-1", "contract_id": "C-IC-1"})
    return "C-IC-1"


def _start_close(app: App, period: str) -> None:
    for ent in ENTITIES:
        app.do("close.start", {"entity": ent["code"], "period": period}, actor="controller")


def _accruals(app: App, month_end: date) -> None:
    """The controller's month-end accruals: the manual journals every close has (hosting, bonuses)."""
    for ent in ENTITIES:
        amount = {"US01": "4200.00", "DE01": "3100.00", "UK01": "2600.00"}[ent["code"]]
        app.do("journal.post", {"entity": ent["code"], "date": month_end.isoformat(), "manual": True,
                                "memo": f"Hosting accrual {month_end.isoformat()[:7]}",
                                "lines": [{"account": "6400", "debit": amount, "dimensions": {"department": "ops"}},
                                          {"account": "2500", "credit": amount}]}, actor="controller")


def _close(app: App, period: str, console: Console, log: list[dict[str, Any]]) -> None:
    for ent in ENTITIES:
        code = ent["code"]
        result = app.do("close.run", {"entity": code, "period": period}, actor="controller")
        overrides = []
        if not result["locked"]:
            overrides = [{"gate": g, "approver": "cfo",
                          "reason": "reviewed in the close meeting; carried to next period with the exception open"}
                         for g in result["blocking"]]
            result = app.do("close.run", {"entity": code, "period": period, "overrides": overrides},
                            actor="controller")
        log.append({"entity": code, "period": period, "locked": result["locked"],
                    "overridden": [o["gate"] for o in overrides]})


def run_year(app: App, clock: ScenarioClock, console: Console) -> dict[str, Any]:
    from closeloop.billing.demo import complete_milestones, record_month_usage
    from closeloop.collections.demo import run_demo_collections
    from closeloop.contracts.demo import create_demo_contracts
    from closeloop.customers.demo import import_demo_accounts

    facts: dict[str, Any] = {}
    for ent in ENTITIES:
        app.do("entity.create", ent)
    _fx_rates(app)
    console.rule("CRM import")
    crm = import_demo_accounts(app, console, accounts=1000)
    facts["crm"] = {k: crm[k] for k in ("rows_read", "created", "rejected", "suspected_duplicates",
                                         "planted_duplicates", "planted_bad_rows")}
    facts["crm"]["quality_score"] = crm["quality"]["score"]
    customers = _assign_entities(app)
    console.rule("Quotes and contracts")
    deals = create_demo_contracts(app, customers[:CONTRACTS], None)
    facts["contracts"] = {k: deals[k] for k in ("amendments", "renewals", "cancellations", "approvals",
                                                 "quotes_changed_after_approval")}
    facts["contracts"]["contracts"] = len(deals["contracts"])
    facts["contracts"]["skipped"] = len(deals["skipped"])
    _intercompany_project(app, date(YEAR, 1, 1))
    console.print(f"{len(deals['contracts'])} contracts ({facts['contracts']['quotes_changed_after_approval']} quotes"
                  f" changed after approval), {deals['amendments']} amendments, {deals['renewals']} renewals,"
                  f" {deals['cancellations']} cancellations; an intercompany project (sold by US01, delivered by DE01)")
    console.rule("The year, month by month")
    rng = random.Random(2026)
    closes: list[dict[str, Any]] = []
    usage = duplicates = milestones = invoices = held = 0
    first = app.do("billing.run", {"as_of": date(YEAR, 1, 1).isoformat()}, actor="billing-ops")  # in advance
    invoices, held = first["invoices"], first["held"]
    previous_end: date | None = None
    month = date(YEAR, 1, 1)
    for index in range(13):
        run_day = add_months(month, 1)
        month_end = run_day - timedelta(days=1)
        if index < 12:
            # collections of the month; the previous month closes a few days in
            fifth = month + timedelta(days=4)
            before = (previous_end or month - timedelta(days=1)).isoformat()
            run_demo_collections(app, fifth.isoformat(), None, since=before)
            if previous_end is not None:
                _close(app, period_of(previous_end), console, closes)
            run_demo_collections(app, month_end.isoformat(), None, since=fifth.isoformat())
            n_usage, n_dup = record_month_usage(app, month, run_day, rng)
            usage, duplicates = usage + n_usage, duplicates + n_dup
            if index % 3 == 2:
                milestones += complete_milestones(app, month_end - timedelta(days=2))
            _accruals(app, month_end)
            if run_day > clock.today():
                clock.set(run_day)
            run = app.do("billing.run", {"as_of": run_day.isoformat()}, actor="billing-ops")
            invoices, held = invoices + run["invoices"], held + run["held"]
            app.do("revrec.run", {"through": month_end.isoformat()}, actor="controller")
            for ent in ENTITIES:
                app.do("fx.revalue", {"entity": ent["code"], "period": period_of(month)}, actor="controller")
            app.do("recon.run", {"as_of": month_end.isoformat()}, actor="controller")
            _start_close(app, period_of(month))
            console.print(f"  {period_of(month)}: {run['invoices']} invoices"
                          f"{', ' + str(run['held']) + ' held for tax' if run['held'] else ''},"
                          f" usage {n_usage} events")
        else:
            # January of the next year: collections up to the 5th, then December closes
            fifth = month + timedelta(days=4)
            run_demo_collections(app, fifth.isoformat(), None, since=previous_end.isoformat())  # type: ignore[union-attr]
            _close(app, period_of(previous_end), console, closes)  # type: ignore[arg-type]
        previous_end = month_end
        month = run_day
    facts["billing"] = {"invoices": invoices, "held": held, "usage_events": usage, "usage_duplicates": duplicates,
                        "milestones_completed": milestones}
    facts["closes"] = closes
    return facts


def _report(app: App, facts: dict[str, Any], console: Console, seconds: float, path: str) -> dict[str, Any]:
    from closeloop.core.exception_queue import KINDS

    kinds = {k: app.query("exceptions", {"kind": k})["count"] for k in KINDS}
    open_kinds = {k: app.query("exceptions", {"kind": k, "status": "open"})["count"] for k in KINDS}
    kpis = app.query("kpis", {"periods": f"{YEAR}-01..{YEAR}-12"})
    rollforward = app.query("deferred_revenue_rollforward", {"period": f"{YEAR}-01..{YEAR}-12"})
    payments = app.query("payments", {})
    verify = app.query("ledger_verify", {})
    balanced = {e["code"]: app.query("trial_balance", {"entity": e["code"]})["balanced"] for e in ENTITIES}
    locked = sum(1 for c in facts["closes"] if c["locked"])
    summary = {"database": path, "seconds": round(seconds, 1), **facts, "payments": payments.get("count"),
               "exceptions": {"by_kind": kinds, "open": open_kinds}, "kpis": kpis["rows"],
               "deferred_revenue_rollforward": rollforward, "ledger_verified": verify["ok"],
               "trial_balances_balanced": balanced, "periods_locked": locked}

    console.rule(f"closeloop demo — the year {YEAR} in {seconds:.0f} s")
    crm, c, b = facts["crm"], facts["contracts"], facts["billing"]
    console.print(f"CRM: {crm['rows_read']} rows, {crm['created']} accounts, {crm['rejected']} rejected rows,"
                  f" {crm['suspected_duplicates']} suspected duplicates ({crm['planted_duplicates']} planted),"
                  f" data quality {crm['quality_score']}")
    console.print(f"Sales: {c['contracts']} contracts, {c['quotes_changed_after_approval']} quotes changed after"
                  f" approval, {c['amendments']} amendments, {c['renewals']} renewals, {c['cancellations']}"
                  " cancellations")
    console.print(f"Billing: {b['invoices']} invoices ({b['held']} held for tax), {b['usage_events']} usage events"
                  f" ({b['usage_duplicates']} resent, counted once), {b['milestones_completed']} milestones")
    console.print(f"Cash: {payments.get('count')} payments; ledger audit chain"
                  f" {'intact' if verify['ok'] else 'BROKEN'} ({verify['entries_checked']} entries); trial balances"
                  f" {'balanced' if all(balanced.values()) else 'NOT balanced'}; {locked} of"
                  f" {len(facts['closes'])} entity-periods locked")
    table = Table("exception kind", "opened", "open now", title="The exception queue")
    for k in KINDS:
        if kinds[k]:
            table.add_row(k, str(kinds[k]), str(open_kinds[k]))
    console.print(table)
    short = {"first_pass_invoice_accuracy": "first pass", "manual_journal_share": "manual JE",
             "recon_exception_count": "recon breaks", "recon_exception_mean_age_days": "break age",
             "dispute_cycle_days_median": "dispute med", "dispute_cycle_days_p90": "dispute p90",
             "close_cycle_days": "close days", "straight_through_rate": "STP", "dso_days": "DSO",
             "billing_leakage": "leakage", "data_quality_score": "DQ"}
    table = Table("period", *short.values(), title="KPIs by month (docs/kpis.md)")
    for row in kpis["rows"]:
        table.add_row(row["period"], *[str(row.get(k) if row.get(k) is not None else "-") for k in short])
    console.print(table)
    # Every column of the monthly roll-forward, summed over the year, so that each row foots:
    # opening + billed + migrated - recognised - contract-asset offset = closing.
    table = Table("entity", "currency", "opening", "billed", "migrated", "recognised", "contract asset", "closing",
                  "GL", "ties",
                  title=f"Deferred revenue roll-forward {YEAR} (per month in `closeloop revenue rollforward`)")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rollforward["rows"]:
        groups.setdefault((row["entity"], row["currency"]), []).append(row)
    for (entity, currency), rows in sorted(groups.items()):
        totals = [str(sum(Decimal(r[k]) for r in rows))
                  for k in ("billed", "migrated", "recognized", "contract_asset_offset")]
        table.add_row(entity, currency, rows[0]["opening"], *totals, rows[-1]["closing"],
                      rows[-1]["gl_closing"], "yes" if all(r["ties"] for r in rows) else "NO")
    console.print(table)
    console.print(f"\nOpen the web app on this year: [bold]closeloop --db {path} serve[/] then"
                  " http://127.0.0.1:8000 (user [bold]demo[/], password [bold]demo-password[/])")
    console.print(f"Or explore from the shell: closeloop --db {path} ledger trial-balance | closeloop --db {path}"
                  f" exceptions list | closeloop --db {path} kpis")
    return summary


def run_demo(path: str, console: Console | None = None, as_json: bool = False) -> dict[str, Any]:
    console = console or Console()
    if not console.is_terminal and not console.quiet:
        console = Console(width=150, highlight=False)
    quiet = Console(quiet=True) if as_json else console
    if "://" not in path:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    started = time.perf_counter()
    clock = ScenarioClock(date(YEAR, 1, 1))
    app = App(path, clock=clock, actor="demo")
    try:
        facts = run_year(app, clock, quiet)
        with app.unit_of_work() as uow:
            from closeloop.auth.users import add_user

            with contextlib.suppress(CloseloopError):
                add_user(uow, "demo", ["admin"], password="demo-password")
        summary = _report(app, facts, quiet, time.perf_counter() - started, path)
    finally:
        app.close()
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    return summary
