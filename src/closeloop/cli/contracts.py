"""CLI of the catalogue, quotes, contracts and opportunities (a thin layer over the vocabulary).

    closeloop catalog products|prices [--json]
    closeloop quotes list|show QUOTE [--version N]|approve QUOTE --approver NAME|accept QUOTE --contract-id ID
    closeloop contracts list|show CONTRACT [--as-of DATE]|history CONTRACT
    closeloop renewals run --as-of DATE [--dry-run]
    closeloop import opportunities FILE [--line-items FILE] [--accept-valid] [--dry-run] [--mapping FILE]
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from closeloop.cli.main import JsonFlag, emit_json, guarded, import_group, open_app, out
from closeloop.core.errors import EXIT_CHECK_FAILED

catalog_app = typer.Typer(no_args_is_help=True, help="Products and prices.")
quotes_app = typer.Typer(no_args_is_help=True, help="Quotes: versions, approvals, acceptance.")
contracts_app = typer.Typer(no_args_is_help=True, help="Contracts as of any date, their history.")
renewals_app = typer.Typer(no_args_is_help=True, help="Automatic renewals.")


def _print(result: Any, as_json: bool) -> None:
    if as_json:
        emit_json(result)
    else:
        out.print(result)


@catalog_app.command("products")
@guarded()
def products(as_json: JsonFlag = False) -> None:
    """The product catalogue."""
    with open_app() as cl:
        result = cl.query("products", {})
    if as_json:
        emit_json(result)
        return
    table = Table("sku", "name", "treatment", "tax code", "ssp", "active")
    for p in result["items"]:
        table.add_row(p["sku"], p["name"], p["treatment"], p["tax_code"], p["ssp"] or "", "yes" if p["active"] else "no")
    out.print(table)


@catalog_app.command("prices")
@guarded()
def prices(sku: Annotated[str | None, typer.Option("--sku")] = None,
           currency: Annotated[str | None, typer.Option("--currency")] = None, as_json: JsonFlag = False) -> None:
    """Prices, optionally of one product or currency."""
    with open_app() as cl:
        result = cl.query("prices", {"sku": sku, "currency": currency})
    if as_json:
        emit_json(result)
        return
    table = Table("price", "sku", "currency", "model", "amount / tiers", "period", "timing", "metric")
    for p in result["items"]:
        amount = p["amount"] if p["amount"] is not None else "; ".join(
            f"<={t['up_to'] or 'inf'}: {t['unit_amount']}" + (f"+{t['flat_amount']}" if t["flat_amount"] != "0" else "")
            for t in p["tiers"])
        table.add_row(p["price_id"], p["sku"], p["currency"], p["model"], amount, p["period"], p["timing"],
                      p["metric"] or "")
    out.print(table)


@quotes_app.command("list")
@guarded()
def quotes_list(customer: Annotated[str | None, typer.Option("--customer")] = None,
                status: Annotated[str | None, typer.Option("--status")] = None, as_json: JsonFlag = False) -> None:
    """Quotes by customer and status."""
    with open_app() as cl:
        result = cl.query("quotes", {"customer": customer, "status": status})
    if as_json:
        emit_json(result)
        return
    table = Table("quote", "version", "status", "customer", "entity", "currency", "start", "months", "contract")
    for q in result["items"]:
        table.add_row(q["quote_id"], str(q["version"]), q["status"], q["customer"], q["entity"], q["currency"],
                      q["start"], str(q["term_months"]), q["contract_id"] or "")
    out.print(table)


@quotes_app.command("show")
@guarded()
def quotes_show(quote_id: str, version: Annotated[int | None, typer.Option("--version")] = None,
                as_json: JsonFlag = False) -> None:
    """A quote (its current or a given version) with rules, approvals and versions."""
    with open_app() as cl:
        q = cl.query("quote", {"quote_id": quote_id, "version": version})
    if as_json:
        emit_json(q)
        return
    out.print(f"[bold]{q['quote_id']}[/] v{q['version']} of {q['current_version']}  {q['status']}  customer "
              f"{q['customer']}  {q['entity']} {q['currency']}  {q['start']}..{q['end']} ({q['term_months']} months)")
    table = Table("line", "sku", "price", "qty", "disc %", "unit (net)", "per period", "period", "ssp")
    for ln in q["lines"]:
        table.add_row(ln["line_id"], ln["sku"], ln["price_id"], ln["quantity"], ln["discount_pct"],
                      ln["unit_amount"] or "tiered", ln["amount"] or "usage", ln["period"], ln["ssp"] or "")
    out.print(table)
    out.print(f"TCV {q['tcv']}  ACV {q['acv']}  MRR {q['mrr']}")
    for r in q["rules"]:
        mark = "[green]covered[/] by " + ", ".join(r["covered_by"]) if r["covered_by"] else "[yellow]pending[/]"
        out.print(f"  rule {r['id']} ({', '.join(r['roles'])}): {mark}")


@quotes_app.command("approve")
@guarded()
def quotes_approve(quote_id: str, approver: Annotated[str, typer.Option("--approver")],
                   comment: Annotated[str | None, typer.Option("--comment")] = None, as_json: JsonFlag = False) -> None:
    """Record an approval of the quote's current version."""
    with open_app() as cl:
        result = cl.do("quote.approve", {"quote_id": quote_id, "approver": approver, "comment": comment})
    if as_json:
        emit_json(result)
    else:
        out.print(f"{quote_id} v{result['version']}: {result['status']}"
                  + (f" (pending: {', '.join(result['pending_approvals'])})" if result["pending_approvals"] else ""))


@quotes_app.command("accept")
@guarded()
def quotes_accept(quote_id: str, contract_id: Annotated[str, typer.Option("--contract-id")],
                  as_json: JsonFlag = False) -> None:
    """Accept an approved quote: it becomes a contract."""
    with open_app() as cl:
        result = cl.do("quote.accept", {"quote_id": quote_id, "contract_id": contract_id})
    if as_json:
        emit_json(result)
    else:
        out.print(f"contract {contract_id}: {result['status']} {result['start']}..{result['end']} TCV {result['tcv']}")


def _print_contract(c: dict[str, Any]) -> None:
    out.print(f"[bold]{c['contract_id']}[/] as of {c['as_of']}: {c['status']}  customer {c['customer']}  {c['entity']}"
              f" {c['currency']}  term {c['term']} {c['start']}..{c['end']}  billing day {c['billing_day']}"
              f"{'  auto-renew' if c['auto_renew'] else ''}")
    table = Table("line", "sku", "qty", "unit (net)", "per period", "period", "MRR", "from", "to")
    for ln in c["lines"]:
        table.add_row(ln["line_id"], ln["sku"], ln["quantity"], ln["unit_amount"] or "tiered", ln["amount"] or "usage",
                      ln["period"], ln["mrr"], ln["from"], ln["to"])
    out.print(table)
    out.print(f"TCV {c['tcv']}  ACV {c['acv']}  MRR {c['mrr']}  ARR {c['arr']}")
    for a in c["changes"]:
        out.print(f"  {a['seq']}. {a['kind']} {a['ref']} effective {a['effective']} (recorded {a['recorded_on']})")


@contracts_app.command("show")
@guarded()
def contracts_show(contract_id: str, as_of: Annotated[str | None, typer.Option("--as-of")] = None,
                   as_json: JsonFlag = False) -> None:
    """A contract as it stood on a date (default today)."""
    with open_app() as cl:
        c = cl.query("contract", {"contract_id": contract_id, "as_of": as_of})
    if as_json:
        emit_json(c)
    else:
        _print_contract(c)


@contracts_app.command("list")
@guarded()
def contracts_list(customer: Annotated[str | None, typer.Option("--customer")] = None,
                   status: Annotated[str | None, typer.Option("--status")] = None,
                   as_of: Annotated[str | None, typer.Option("--as-of")] = None, as_json: JsonFlag = False) -> None:
    """Contracts with their values."""
    with open_app() as cl:
        result = cl.query("contracts", {"customer": customer, "status": status, "as_of": as_of})
    if as_json:
        emit_json(result)
        return
    table = Table("contract", "customer", "entity", "status", "start", "end", "TCV", "ACV", "MRR")
    for c in result["items"]:
        table.add_row(c["contract_id"], c["customer"], c["entity"], c["status"], c["start"], c["end"],
                      f"{c['tcv']} {c['currency']}", c["acv"], c["mrr"])
    out.print(table)


@contracts_app.command("history")
@guarded()
def contracts_history(contract_id: str, as_json: JsonFlag = False) -> None:
    """Every change of a contract: who, when, effective when."""
    with open_app() as cl:
        result = cl.query("contract_history", {"contract_id": contract_id})
    if as_json:
        emit_json(result)
        return
    for c in result["items"]:
        out.print(f"{c['seq']}. {c['kind']} {c['ref']} effective {c['effective']} by {c['actor']} ({c['source']})"
                  f" at {c['at']}{'  [void]' if c['void'] else ''}")


@renewals_app.command("run")
@guarded()
def renewals_run(as_of: Annotated[str, typer.Option("--as-of")],
                 dry_run: Annotated[bool, typer.Option("--dry-run")] = False, as_json: JsonFlag = False) -> None:
    """Renew every auto-renewing contract whose term has ended by the date."""
    with open_app() as cl:
        result = cl.do("renewals.run", {"as_of": as_of, "dry_run": dry_run})
    if as_json:
        emit_json(result)
        return
    for r in result["renewed"]:
        out.print(f"{r['contract_id']}: term {r['term']} {r['start']}..{r['end']} uplift {r['uplift_pct']}%")
    out.print(f"{result['count']} renewal(s){' (dry run)' if dry_run else ''}")


def import_opportunities(
    file: Annotated[str, typer.Argument(help="Salesforce Opportunity export (CSV or JSON)")],
    line_items: Annotated[str | None, typer.Option("--line-items", help="OpportunityLineItem export (CSV)")] = None,
    mapping: Annotated[str | None, typer.Option("--mapping", help="Mapping YAML over config/opportunity_mapping.yaml")] = None,
    accept_valid: Annotated[bool, typer.Option("--accept-valid", help="Import valid rows; rejected rows become"
                                                                        " import_rejected exceptions")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; write nothing")] = False,
    source: Annotated[str | None, typer.Option("--source")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Import CRM opportunities; closed-won ones become quotes (exit 1 when rows were rejected)."""
    payload = {"file": file, "line_items": line_items, "mapping": mapping, "accept_valid": accept_valid,
               "source": source}
    with open_app() as cl:
        result = cl.query("opportunity_import_preview", payload) if dry_run else cl.do("opportunity.import", payload)
    if as_json:
        emit_json(result)
    else:
        out.print(f"{result['valid']} valid, {len(result['rejected'])} rejected"
                  + ("" if dry_run else f"; created {result['created']}, updated {result['updated']}, unchanged"
                     f" {result['unchanged']}, converted {result['converted']}, unconvertible"
                     f" {result['unconvertible']}, not owner {result['not_owner']}"))
        for r in result["rejected"]:
            out.print(f"  [red]rejected[/] {r['file']} line {r['row']}: "
                      + "; ".join(f"{p['field']}: {p['reason']}" for p in r["problems"]))
        for item in result.get("items", []):
            if item.get("status") == "unconvertible":
                out.print(f"  [yellow]unconvertible[/] {item['external_id']}: {'; '.join(item['reasons'] or [])}")
    if result["rejected"]:
        raise typer.Exit(EXIT_CHECK_FAILED)




def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")
    app.add_typer(quotes_app, name="quotes")
    app.add_typer(contracts_app, name="contracts")
    app.add_typer(renewals_app, name="renewals")
    import_group(app).command("opportunities")(guarded()(import_opportunities))
