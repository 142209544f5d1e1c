"""CLI of revenue recognition (a thin layer over the vocabulary).

    closeloop revrec run --through DATE [--entity E] [--dry-run] [--json]
    closeloop revenue waterfall --period YYYY-MM..YYYY-MM [--entity E] [--contract C] [--json]
    closeloop revenue rollforward --period YYYY-MM[..YYYY-MM] [--entity E] [--json]
    closeloop revenue rpo [--as-of DATE] [--entity E] [--contract C] [--json]
    closeloop revenue allocation CONTRACT [--json]
    closeloop revenue schedule CONTRACT [--json]
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from closeloop.cli.main import JsonFlag, emit_json, guarded, open_app, out

revrec_app = typer.Typer(no_args_is_help=True, help="Revenue recognition runs.")
revenue_app = typer.Typer(no_args_is_help=True, help="Revenue reports: waterfall, deferred roll-forward, RPO.")

Entity = Annotated[str | None, typer.Option("--entity", help="One legal entity (default: all).")]


@revrec_app.command("run")
@guarded()
def run(through: Annotated[str, typer.Option("--through", help="Recognise everything due up to this date.")],
        entity: Entity = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what a run would book; save nothing.")] = False,
        as_json: JsonFlag = False) -> None:
    """Recognise revenue due through a date (one revenue.recognized event per entity, currency and period)."""
    with open_app() as cl:
        result = cl.do("revrec.run", {"through": through, "entity": entity, "dry_run": dry_run})
    if as_json:
        emit_json(result)
        return
    title = f"revrec {'dry run' if dry_run else result.get('run')} through {result['through']}"
    table = Table("entity", "currency", "period", "date", "lines", "amount", title=title)
    for e in result["events"]:
        table.add_row(e["entity"], e["currency"], e["period"], e["date"], str(e["lines"]), e.get("amount", ""))
    out.print(table)
    for total in result["recognized"]:
        out.print(f"recognised {total['amount']} {total['currency']} ({total['entity']})")
    if not result["events"]:
        out.print("nothing due: everything through this date is recognised")


@revenue_app.command("waterfall")
@guarded()
def waterfall(period: Annotated[str, typer.Option("--period", help="YYYY-MM..YYYY-MM")], entity: Entity = None,
              contract: Annotated[str | None, typer.Option("--contract")] = None, as_json: JsonFlag = False) -> None:
    """Revenue by month: recognised where a run posted it, scheduled where not yet."""
    with open_app() as cl:
        result = cl.query("revenue_waterfall", {"period": period, "entity": entity, "contract": contract})
    if as_json:
        emit_json(result)
        return
    periods = result["periods"]
    table = Table("contract", "line", "ccy", *periods, title=f"revenue waterfall {period}")
    for r in result["rows"]:
        cells = [_cell(rec, sch) for rec, sch in zip(r["recognized"], r["scheduled"], strict=True)]
        table.add_row(r["contract_id"], r["line_id"], r["currency"], *cells)
    for t in result["totals"]:
        table.add_row("[bold]total[/]", "", t["currency"], *[f"[bold]{v}[/]" for v in t["total"]])
    out.print(table)
    out.print("[dim]scheduled amounts (not recognised yet) in italics[/]")


def _cell(recognised: str, scheduled: str) -> str:
    if scheduled.strip("0.-") == "":
        return recognised if recognised.strip("0.-") else ""
    if recognised.strip("0.-") == "":
        return f"[italic]{scheduled}[/]"
    return f"{recognised} + [italic]{scheduled}[/]"


@revenue_app.command("rollforward")
@guarded()
def rollforward(period: Annotated[str, typer.Option("--period", help="YYYY-MM or YYYY-MM..YYYY-MM")],
                entity: Entity = None, as_json: JsonFlag = False) -> None:
    """Deferred revenue roll-forward: opening, billed, recognised, closing, and the GL it ties to."""
    with open_app() as cl:
        result = cl.query("deferred_revenue_rollforward", {"period": period, "entity": entity})
    if as_json:
        emit_json(result)
        return
    print_rollforward(result)


def print_rollforward(result: dict[str, Any], console: Any = None) -> None:
    console = console or out
    table = Table("entity", "ccy", "period", "opening", "billed", "migrated", "recognised", "asset offset", "closing",
                  "GL", "ties", title="deferred revenue roll-forward")
    for r in result["rows"]:
        table.add_row(r["entity"], r["currency"], r["period"], r["opening"], r["billed"], r["migrated"],
                      r["recognized"], r["contract_asset_offset"], r["closing"], r["gl_closing"],
                      "[green]yes[/]" if r["ties"] else f"[red]no ({r['difference']})[/]")
    console.print(table)


@revenue_app.command("rpo")
@guarded()
def rpo(as_of: Annotated[str | None, typer.Option("--as-of")] = None, entity: Entity = None,
        contract: Annotated[str | None, typer.Option("--contract")] = None, as_json: JsonFlag = False) -> None:
    """Remaining performance obligations: contracted, not yet recognised; within 12 months and later."""
    with open_app() as cl:
        result = cl.query("remaining_performance_obligations", {"as_of": as_of, "entity": entity,
                                                                 "contract": contract})
    if as_json:
        emit_json(result)
        return
    table = Table("entity", "ccy", "within 12 months", "later", "of which unscheduled", "total",
                  title=f"remaining performance obligations as of {result['as_of']}")
    for t in result["totals"]:
        table.add_row(t["entity"], t["currency"], t["within_12_months"], t["later"], t["unscheduled"], t["total"])
    out.print(table)


@revenue_app.command("allocation")
@guarded()
def allocation(contract: Annotated[str, typer.Argument()], as_json: JsonFlag = False) -> None:
    """A contract's transaction price allocated by relative standalone selling price."""
    with open_app() as cl:
        result = cl.query("allocation", {"contract": contract})
    if as_json:
        emit_json(result)
        return
    table = Table("line", "treatment", "SSP", "allocated",
                  title=f"{contract}: transaction price {result['transaction_price']} {result['currency']}")
    for ln in result["lines"]:
        table.add_row(ln["line_id"], ln["treatment"] or "", ln["ssp"], ln["allocated"])
    out.print(table)


@revenue_app.command("schedule")
@guarded()
def schedule(contract: Annotated[str, typer.Argument()], as_json: JsonFlag = False) -> None:
    """A contract's revenue schedule by obligation and period."""
    with open_app() as cl:
        result = cl.query("revenue_schedule", {"contract": contract})
    if as_json:
        emit_json(result)
        return
    for ln in result["lines"]:
        table = Table("period", "scheduled", title=f"{contract} {ln['line_id']} ({ln['treatment']}): allocated"
                      f" {ln['allocated']}, recognised {ln['recognized']}, pending {ln['pending']}")
        for period, amount in ln["periods"].items():
            table.add_row(period, amount)
        out.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(revrec_app, name="revrec")
    app.add_typer(revenue_app, name="revenue")
