"""CLI for the close cockpit, KPIs, rollout waves, variations and FX:

    closeloop close status ENTITY PERIOD | run ENTITY PERIOD [--override GATE=REASON --approver NAME]
    closeloop close reopen ENTITY PERIOD --reason R | approve-reopen ENTITY PERIOD | year-end ENTITY YEAR
    closeloop kpis [--period P | --periods A..B] [--json]
    closeloop waves status | plan FILE | golive WAVE | check --scenarios DIR
    closeloop variations list | review
    closeloop fx rate BASE QUOTE DATE RATE | revalue ENTITY PERIOD
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from closeloop.cli.main import EXIT_CHECK_FAILED, JsonFlag, emit_json, guarded, open_app, out


def _gates_table(title: str, gates: list[dict[str, Any]]) -> Table:
    table = Table("gate", "passed", "evidence", title=title)
    for g in gates:
        mark = "[green]yes[/]" if g["passed"] else ("[yellow]overridden[/]" if g.get("overridden") else "[red]no[/]")
        evidence = g["evidence"] + (f" — override: {g['overridden']['reason']} ({g['overridden']['approver']})"
                                    if g.get("overridden") else "")
        table.add_row(g["gate"], mark, evidence)
    return table


def register(app: typer.Typer) -> None:
    close_app = typer.Typer(no_args_is_help=True, help="Period close: the gated checklist, lock, reopen, year end.")
    waves_app = typer.Typer(no_args_is_help=True, help="Rollout waves: readiness gates and go-live.")
    variations_app = typer.Typer(no_args_is_help=True, help="The variations register.")
    fx_app = typer.Typer(no_args_is_help=True, help="FX rates and period-end revaluation.")
    app.add_typer(close_app, name="close")
    app.add_typer(waves_app, name="waves")
    app.add_typer(variations_app, name="variations")
    app.add_typer(fx_app, name="fx")

    @close_app.command("status")
    @guarded()
    def close_status(entity: str, period: str, as_json: JsonFlag = False) -> None:
        """Each close gate of the period with its evidence, and whether it is locked."""
        with open_app() as cl:
            result = cl.query("close_status", {"entity": entity, "period": period})
        if as_json:
            emit_json(result)
            return
        out.print(_gates_table(f"Close {entity} {period}: {'LOCKED' if result['locked'] else 'open'}",
                               result["gates"]))

    @close_app.command("run")
    @guarded()
    def close_run(
        entity: str,
        period: str,
        override: Annotated[list[str] | None, typer.Option("--override", help="GATE=REASON (repeat)")] = None,
        approver: Annotated[str | None, typer.Option("--approver", help="Who approved the overrides")] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Evaluate the gates and lock the period if every gate passes or is overridden (exit 1 if not locked)."""
        overrides = []
        for item in override or []:
            gate, _, reason = item.partition("=")
            overrides.append({"gate": gate, "reason": reason, "approver": approver or ""})
        with open_app() as cl:
            result = cl.do("close.run", {"entity": entity, "period": period, "overrides": overrides})
        if as_json:
            emit_json(result)
        else:
            out.print(_gates_table(f"Close {entity} {period}: {'LOCKED' if result['locked'] else 'not locked'}",
                                   result["gates"]))
        if not result["locked"]:
            raise typer.Exit(EXIT_CHECK_FAILED)

    @close_app.command("reopen")
    @guarded()
    def close_reopen(entity: str, period: str, reason: Annotated[str, typer.Option("--reason")],
                     as_json: JsonFlag = False) -> None:
        """Ask to reopen a locked period (a second person approves)."""
        with open_app() as cl:
            result = cl.do("period.reopen", {"entity": entity, "period": period, "reason": reason})
        emit_json(result) if as_json else out.print(result)

    @close_app.command("approve-reopen")
    @guarded()
    def close_approve_reopen(entity: str, period: str, as_json: JsonFlag = False) -> None:
        """Approve a requested reopening (not by its requester)."""
        with open_app() as cl:
            result = cl.do("period.reopen_approve", {"entity": entity, "period": period})
        emit_json(result) if as_json else out.print(result)

    @close_app.command("year-end")
    @guarded()
    def close_year_end(entity: str, year: int, as_json: JsonFlag = False) -> None:
        """Roll the fiscal year's profit and loss into retained earnings."""
        with open_app() as cl:
            result = cl.do("close.year_end", {"entity": entity, "year": year})
        emit_json(result) if as_json else out.print(result)

    @app.command("kpis")
    @guarded()
    def kpis(
        period: Annotated[str | None, typer.Option("--period", help="YYYY-MM")] = None,
        periods: Annotated[str | None, typer.Option("--periods", help="YYYY-MM..YYYY-MM (a trend)")] = None,
        entity: Annotated[str | None, typer.Option("--entity", "-e")] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Every KPI, computed from the data (docs/kpis.md), for a period or a range of periods."""
        with open_app() as cl:
            result = cl.query("kpis", {"period": period, "periods": periods, "entity": entity})
        if as_json:
            emit_json(result)
            return
        table = Table("KPI", *[r["period"] or "now" for r in result["rows"]], title="KPIs")
        for name in result["kpis"]:
            table.add_row(name, *[str(r.get(name) if r.get(name) is not None else "-") for r in result["rows"]])
        out.print(table)

    @waves_app.command("status")
    @guarded()
    def waves_status(wave: Annotated[str | None, typer.Argument()] = None, as_json: JsonFlag = False) -> None:
        """Each wave's readiness gates: live measure against threshold, and go/no-go."""
        with open_app() as cl:
            result = cl.query("waves_status", {"wave": wave})
        if as_json:
            emit_json(result)
            return
        if not result["planned"]:
            out.print("no wave plan loaded: everything is live (closeloop waves plan FILE)")
        for w in result["waves"]:
            table = Table("measure", "value", "passed", "evidence",
                          title=f"Wave {w['wave']} {w.get('name') or ''}: {w['status']},"
                                f" {'GO' if w['go'] else 'NO-GO'}")
            for g in w["gates"]:
                table.add_row(g["measure"], str(g["value"]), "[green]yes[/]" if g["passed"] else "[red]no[/]",
                              g["evidence"])
            out.print(table)

    @waves_app.command("plan")
    @guarded()
    def waves_plan(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], as_json: JsonFlag = False) -> None:
        """Load a wave plan (YAML)."""
        with open_app() as cl:
            result = cl.do("waves.plan", {"body": file.read_text()})
        emit_json(result) if as_json else out.print(result)

    @waves_app.command("golive")
    @guarded()
    def waves_golive(wave: str, as_json: JsonFlag = False) -> None:
        """Take a wave live (refused while a readiness gate fails)."""
        with open_app() as cl:
            result = cl.do("wave.golive", {"wave": wave})
        emit_json(result) if as_json else out.print(result)

    @waves_app.command("check")
    @guarded()
    def waves_check(scenarios: Annotated[list[str], typer.Option("--scenarios", help="Scenario files or folders")],
                    as_json: JsonFlag = False) -> None:
        """Run the scenario suite and record its result for the readiness gate."""
        from closeloop.cli.main import state
        from closeloop.scenarios.runner import run_paths

        results = run_paths(scenarios, db_url=state.db if state.db and "postgres" in state.db else None)
        passed = sum(r.passed for r in results)
        failures = tuple(r.name for r in results if not r.passed)
        with open_app() as cl:
            cl.do("waves.record_scenarios", {"passed": passed, "failed": len(results) - passed,
                                             "failures": failures})
        data = {"passed": passed, "failed": len(results) - passed, "failures": list(failures)}
        emit_json(data) if as_json else out.print(data)
        if failures:
            raise typer.Exit(EXIT_CHECK_FAILED)

    @variations_app.command("list")
    @guarded()
    def variations_list(status: Annotated[str | None, typer.Option("--status")] = None,
                        as_json: JsonFlag = False) -> None:
        """The variations register."""
        with open_app() as cl:
            result = cl.query("variations", {"status": status})
        if as_json:
            emit_json(result)
            return
        table = Table("variation", "area", "scope", "class", "owner", "review", "status", "active",
                      title="Variations register")
        for v in result["items"]:
            table.add_row(v["variation_id"], v["area"], v["scope"], v["classification"], v["owner"],
                          v["review_date"], v["status"], "yes" if v["active"] else "no")
        out.print(table)

    @variations_app.command("review")
    @guarded()
    def variations_review(as_of: Annotated[str | None, typer.Option("--as-of")] = None,
                          as_json: JsonFlag = False) -> None:
        """Expire variations past their review date (each opens a variation_expired exception)."""
        with open_app() as cl:
            result = cl.do("variations.review", {"as_of": as_of})
        emit_json(result) if as_json else out.print(result)

    @fx_app.command("rate")
    @guarded()
    def fx_rate(base: str, quote: str, date: str, rate: str, as_json: JsonFlag = False) -> None:
        """Record an FX rate: 1 BASE = RATE QUOTE from DATE."""
        with open_app() as cl:
            result = cl.do("fx.rate", {"base": base, "quote": quote, "date": date, "rate": rate})
        emit_json(result) if as_json else out.print(result)

    @fx_app.command("revalue")
    @guarded()
    def fx_revalue(entity: str, period: str, as_json: JsonFlag = False) -> None:
        """Revalue open foreign-currency balances at the period-end rate (reversed next period)."""
        with open_app() as cl:
            result = cl.do("fx.revalue", {"entity": entity, "period": period})
        emit_json(result) if as_json else out.print(result)
