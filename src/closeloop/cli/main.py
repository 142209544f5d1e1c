"""The ``closeloop`` command line (Typer): a thin layer over the command/query vocabulary.

Exit codes scripts can rely on: 0 success; 1 a check failed (a scenario
expectation, ``ledger verify`` finding tampering); 2 usage error; 3 refused by
a business rule (the stable error code is printed, as JSON with ``--json``);
4 internal error.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from closeloop.core.errors import EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_USAGE, CloseloopError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="closeloop: order-to-cash with a governed ledger. See README.md.")
ledger_app = typer.Typer(no_args_is_help=True, help="General ledger reports, export and verification.")
period_app = typer.Typer(no_args_is_help=True, help="Accounting periods.")
scenario_app = typer.Typer(no_args_is_help=True, help="Run business scenarios (YAML).")
events_app = typer.Typer(no_args_is_help=True, help="Business events: delivery of the outbox.")
app.add_typer(ledger_app, name="ledger")
app.add_typer(period_app, name="period")
app.add_typer(scenario_app, name="scenario")
app.add_typer(events_app, name="events")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class State:
    db: str | None = None
    actor: str = os.environ.get("CLOSELOOP_USER") or os.environ.get("USER") or "cli"


state = State()
F = TypeVar("F", bound=Callable[..., Any])


@app.callback()
def main_options(
    db: Annotated[str | None, typer.Option("--db", help="Database URL or SQLite path (else "
                                           "CLOSELOOP_DATABASE_URL, else ./closeloop.db).")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Acting user recorded in the audit log.")] = None,
) -> None:
    state.db = db
    if user:
        state.actor = user


def open_app(**options: Any) -> Any:
    from closeloop.app import App

    return App(state.db, actor=state.actor, source="closeloop", **options)


def guarded(json_flag: str = "as_json") -> Callable[[F], F]:
    """Map refusals and crashes to the documented exit codes."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            as_json = bool(kwargs.get(json_flag))
            try:
                return fn(*args, **kwargs)
            except CloseloopError as exc:
                if as_json:
                    print(json.dumps({"error": exc.to_dict()}, indent=2))
                else:
                    err.print(f"[bold red]{exc.code}[/]: {exc.message}")
                raise typer.Exit(exc.exit_code) from None
            except (typer.Exit, typer.Abort):
                raise
            except FileNotFoundError as exc:
                err.print(f"[bold red]usage[/]: file not found: {exc.filename or exc}")
                raise typer.Exit(EXIT_USAGE) from None
            except Exception as exc:  # noqa: BLE001
                err.print(f"[bold red]internal error[/]: {type(exc).__name__}: {exc}")
                if os.environ.get("CLOSELOOP_DEBUG"):
                    raise
                raise typer.Exit(EXIT_INTERNAL) from None

        return inner  # type: ignore[return-value]

    return wrap


def import_group(app: typer.Typer) -> typer.Typer:
    """The shared ``closeloop import`` group: made by the first area that registers under it, found by the rest."""
    for group in app.registered_groups:
        if group.name == "import" and group.typer_instance is not None:
            return group.typer_instance
    group_app = typer.Typer(no_args_is_help=True, help="Import files from other systems (CRM, bank, ...).")
    app.add_typer(group_app, name="import")
    return group_app


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


# --------------------------------------------------------------------------- generic vocabulary


def _load_payload(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        from closeloop.core.errors import ValidationError

        raise ValidationError(f"payload is not valid JSON: {exc}", field="payload") from None
    if not isinstance(data, dict):
        from closeloop.core.errors import ValidationError

        raise ValidationError("payload must be a JSON object", field="payload")
    return data


@app.command("do")
@guarded()
def do_command(
    command: Annotated[str, typer.Argument(help="Command name, e.g. journal.post")],
    payload: Annotated[str | None, typer.Argument(help="JSON object, or @file.json")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run any command of the vocabulary with a JSON payload."""
    with open_app() as cl:
        result = cl.do(command, _load_payload(payload))
    if as_json:
        emit_json(result)
    else:
        out.print(result)


@app.command("query")
@guarded()
def query_command(
    name: Annotated[str, typer.Argument(help="Query name, e.g. trial_balance")],
    where: Annotated[str | None, typer.Argument(help="JSON object, or @file.json")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run any query of the vocabulary."""
    with open_app() as cl:
        result = cl.query(name, _load_payload(where))
    if as_json:
        emit_json(result)
    else:
        out.print(result)


@app.command("commands")
def list_commands(as_json: JsonFlag = False) -> None:
    """List every command and query with its fields."""
    from closeloop import areas
    from closeloop.core import registry

    areas.load()
    ops = sorted(registry.operations().values(), key=lambda o: (o.kind, o.name))
    if as_json:
        emit_json([{"name": o.name, "kind": o.kind, "fields": list(o.fields), "roles": list(o.roles),
                    "summary": o.summary} for o in ops])
        return
    table = Table("kind", "name", "fields", "summary")
    for o in ops:
        table.add_row(o.kind, o.name, ", ".join(o.fields), o.summary)
    out.print(table)


# --------------------------------------------------------------------------- init, demo


@app.command("init")
@guarded()
def init() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    from closeloop.core.db import resolve_url

    with open_app():
        pass
    out.print(f"database ready: {resolve_url(state.db)}")


@app.command("demo")
@guarded()
def demo(
    path: Annotated[str, typer.Option("--path", help="SQLite file for the demo company.")] = "demo.db",
    as_json: JsonFlag = False,
) -> None:
    """Build the demo company in a fresh SQLite database and print its reports."""
    from closeloop.demo import run_demo

    run_demo(state.db or path, console=out, as_json=as_json)


# --------------------------------------------------------------------------- ledger


def _print_trial_balance(tb: dict[str, Any]) -> None:
    table = Table(title=f"Trial balance {tb['entity']} ({tb['currency']})"
                  + (f" as of {tb['as_of']}" if tb.get("as_of") else ""))
    table.add_column("account")
    table.add_column("name")
    table.add_column("debit", justify="right")
    table.add_column("credit", justify="right")
    for row in tb["rows"]:
        table.add_row(row["code"], row["name"], row["debit"], row["credit"])
    table.add_section()
    table.add_row("", "total", tb["debits"], tb["credits"])
    out.print(table)
    out.print("balanced" if tb["balanced"] else "[bold red]NOT BALANCED[/]")


def _print_pnl(p: dict[str, Any]) -> None:
    table = Table(title=f"Profit and loss {p['entity']} ({p['currency']}) {p['start'] or ''}..{p['end'] or ''}")
    table.add_column("account")
    table.add_column("name")
    table.add_column("amount", justify="right")
    for kind in ("revenue", "expense"):
        for row in p["lines"]:
            if row["type"] == kind:
                table.add_row(row["code"], row["name"], row["amount"])
        table.add_section()
    table.add_row("", "revenue", p["revenue"])
    table.add_row("", "expenses", p["expenses"])
    table.add_row("", "net income", p["net_income"])
    out.print(table)


@ledger_app.command("trial-balance")
@guarded()
def trial_balance(
    entity: Annotated[str | None, typer.Option("--entity", "-e")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Trial balance of an entity (every entity when none is named)."""
    with open_app() as cl:
        codes = [entity] if entity else [e["code"] for e in cl.query("entities", {})["entities"]]
        results = [cl.query("trial_balance", {"entity": c, "as_of": as_of}) for c in codes]
    if as_json:
        emit_json(results[0] if entity else results)
        return
    for tb in results:
        _print_trial_balance(tb)


@ledger_app.command("pnl")
@guarded()
def pnl(
    entity: Annotated[str | None, typer.Option("--entity", "-e")] = None,
    period: Annotated[str | None, typer.Option("--period", help="YYYY-MM or YYYY-MM..YYYY-MM")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Profit and loss over a period range."""
    with open_app() as cl:
        codes = [entity] if entity else [e["code"] for e in cl.query("entities", {})["entities"]]
        results = [cl.query("profit_and_loss", {"entity": c, "period": period}) for c in codes]
    if as_json:
        emit_json(results[0] if entity else results)
        return
    for p in results:
        _print_pnl(p)


@ledger_app.command("balance-sheet")
@guarded()
def balance_sheet(
    entity: Annotated[str | None, typer.Option("--entity", "-e")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Balance sheet as of a date."""
    with open_app() as cl:
        codes = [entity] if entity else [e["code"] for e in cl.query("entities", {})["entities"]]
        results = [cl.query("balance_sheet", {"entity": c, "as_of": as_of}) for c in codes]
    if as_json:
        emit_json(results[0] if entity else results)
        return
    for bs in results:
        table = Table(title=f"Balance sheet {bs['entity']} ({bs['currency']}) as of {bs['as_of'] or 'today'}")
        table.add_column("section")
        table.add_column("account")
        table.add_column("amount", justify="right")
        for section in ("assets", "liabilities", "equity"):
            for row in bs["sections"][section]:
                table.add_row(section, f"{row['code']} {row['name']}", row["amount"])
            table.add_row(section, "total", bs[section] if section != "equity" else bs["equity"])
            table.add_section()
        out.print(table)


@ledger_app.command("export")
@guarded()
def export(
    fmt: Annotated[str, typer.Option("--format", "-f", help="hledger, ledger or beancount")] = "hledger",
    entity: Annotated[str | None, typer.Option("--entity", "-e")] = None,
    output: Annotated[str | None, typer.Option("-o", "--output", help="File (default standard output)")] = None,
) -> None:
    """Write the ledger as a journal that hledger, ledger-cli or beancount read unchanged."""
    from closeloop.ledger.export import export_journal

    with open_app() as cl, cl.unit_of_work(write=False) as uow:
        if output:
            with open(output, "w", encoding="utf-8") as fh:
                n = export_journal(uow, fh, fmt, entity)
            err.print(f"wrote {n} entries to {output}")
        else:
            export_journal(uow, sys.stdout, fmt, entity)


@ledger_app.command("verify")
@guarded()
def verify(
    entity: Annotated[str | None, typer.Option("--entity", "-e")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Replay the audit hash chain; exit 1 and name each row if anything was changed, removed or inserted."""
    with open_app() as cl:
        result = cl.query("ledger_verify", {"entity": entity})
    if as_json:
        emit_json(result)
    else:
        if result["ok"]:
            out.print(f"ledger intact: {result['entries_checked']} entries verified")
        for p in result["problems"]:
            out.print(f"[bold red]{p['kind']}[/] {p['entity']} {p['record']}: {p['detail']}")
    if not result["ok"]:
        raise typer.Exit(EXIT_CHECK_FAILED)


# --------------------------------------------------------------------------- periods


@period_app.command("close")
@guarded()
def period_close(
    entity: Annotated[str, typer.Argument()],
    period: Annotated[str, typer.Argument(help="YYYY-MM")],
    as_json: JsonFlag = False,
) -> None:
    """Lock a period (the plain lock; the gated close is `closeloop close run`)."""
    with open_app() as cl:
        result = cl.do("period.close", {"entity": entity, "period": period})
    if as_json:
        emit_json(result)
    else:
        out.print(f"{entity} {period}: closed")


# --------------------------------------------------------------------------- scenarios


@scenario_app.command("run")
def scenario_run(
    paths: Annotated[list[str], typer.Argument(help="Scenario files or folders")],
    as_json: JsonFlag = False,
) -> None:
    """Run scenarios, each on a fresh database; exit 1 if any expectation fails."""
    from closeloop.scenarios.runner import report_json, run_paths

    try:
        results = run_paths(paths, db_url=state.db)
    except FileNotFoundError as exc:
        err.print(f"[bold red]usage[/]: no such scenario file or folder: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    if as_json:
        emit_json(report_json(results))
    else:
        for r in results:
            mark = "[green]PASS[/]" if r.passed else "[bold red]FAIL[/]"
            out.print(f"{mark} {r.name} ({r.steps} steps)  [dim]{r.file}[/]")
            for f in r.failures:
                out.print(f"     step {f.step}: {f.message}")
                out.print(f"       expected: {json.dumps(f.expected, default=str)}")
                out.print(f"       actual:   {json.dumps(f.actual, default=str)}")
        passed = sum(r.passed for r in results)
        out.print(f"{passed} passed, {len(results) - passed} failed")
    if any(not r.passed for r in results):
        raise typer.Exit(EXIT_CHECK_FAILED)


# --------------------------------------------------------------------------- events


@events_app.command("dispatch")
@guarded()
def events_dispatch(as_json: JsonFlag = False) -> None:
    """Deliver every pending event to its handlers now."""
    with open_app() as cl:
        report = cl.dispatch()
    data = {"delivered": report.delivered, "failed": report.failed, "waiting": report.waiting, "dead": report.dead,
            "errors": report.errors}
    if as_json:
        emit_json(data)
    else:
        out.print(data)


# --------------------------------------------------------------------------- backup


@app.command("backup")
@guarded()
def backup_command(
    file: Annotated[str, typer.Argument(help="Backup file to write (must not exist)")],
    as_json: JsonFlag = False,
) -> None:
    """Back up the database (SQLite online backup; pg_dump for PostgreSQL)."""
    from closeloop.ops.backup import backup

    result = backup(state.db, file)
    emit_json(result) if as_json else out.print(f"backed up to {result['file']} ({result['bytes']} bytes)")


@app.command("restore")
@guarded()
def restore_command(
    file: Annotated[str, typer.Argument(help="Backup file to restore")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing database")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Restore a backup into the database and verify the ledger's audit chain."""
    from closeloop.ops.backup import restore

    result = restore(state.db, file, force=force)
    if as_json:
        emit_json(result)
    else:
        out.print(f"restored {result['restored']}: ledger {'verified' if result['ledger_verified'] else 'BROKEN'}"
                  f" ({result['entries_checked']} entries)")
    if not result["ledger_verified"]:
        raise typer.Exit(EXIT_CHECK_FAILED)


# --------------------------------------------------------------------------- bench


@app.command("bench")
def bench(
    names: Annotated[list[str] | None, typer.Argument(help="Workloads to run (default: all)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Each workload at a tenth of its size")] = False,
    output: Annotated[str, typer.Option("--output", "-o")] = "bench/results.json",
) -> None:
    """Run the benchmarks side by side with their peers; print a table and write bench/results.json."""
    from closeloop.bench.runner import run_bench

    code = run_bench(names or [], quick=quick, output=output, console=out)
    raise typer.Exit(code)


# Each area may add its own commands: a module under closeloop.cli with register(app: typer.Typer).
CLI_MODULES: tuple[str, ...] = ("closeloop.cli.web", "closeloop.cli.customers", "closeloop.cli.integration", "closeloop.cli.contracts",
                                "closeloop.cli.einvoice", "closeloop.cli.billing", "closeloop.cli.revenue",
                                "closeloop.cli.collections", "closeloop.cli.rollout", "closeloop.cli.close")


def _register_area_clis() -> None:
    import importlib

    for name in CLI_MODULES:
        importlib.import_module(name).register(app)


_register_area_clis()


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        if exc.code not in (None, 0) and isinstance(exc.code, int) and exc.code == 2:
            raise SystemExit(EXIT_USAGE) from None
        raise
