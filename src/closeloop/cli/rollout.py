"""CLI for migrations and parallel runs::

    closeloop import migration DIR [--dry-run] [--accept-valid] [--cutover DATE] [--json]
    closeloop migration sample DIR [--customers N] [--seed S] [--clean]
    closeloop migration status [--json]
    closeloop parallel import FILE --entity E --period YYYY-MM [--system NAME] [--json]
    closeloop parallel run --entity E --period YYYY-MM [--json]
    closeloop parallel status [--entity E] [--json]

``import migration`` is all or nothing unless ``--accept-valid``; a refused migration prints its
whole report and exits 3. After an accepted one the events are delivered and the post-migration
check (``migration_verify``) is printed: AR subledger = GL AR per entity and currency, and every
migrated contract continuing from the day after its billed-through date.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from closeloop.cli.main import JsonFlag, emit_json, err, guarded, import_group, open_app, out
from closeloop.core.errors import EXIT_REFUSED, CloseloopError

migration_app = typer.Typer(no_args_is_help=True, help="Legacy data migration: sample data set, status.")
parallel_app = typer.Typer(no_args_is_help=True, help="Parallel runs: a legacy invoice register against closeloop.")




def print_migration(rep: dict[str, Any]) -> None:
    ds = rep["dataset"]
    state = {"dry_run": "dry run, nothing written", "accepted": "accepted", "refused": "refused, nothing written"}
    out.print(f"[bold]Migration[/] of {ds['source']} ({ds['system']}, cutover {ds['cutover']}, {rep['mode']}):"
              f" {state.get(rep['status'], rep['status'])}")
    table = Table("file", "read", "to create" if rep["dry_run"] else "created", "unchanged", "rejected")
    for kind, c in rep["counts"].items():
        table.add_row(kind, str(c["read"]), str(c["created"]), str(c["unchanged"]), str(c["rejected"]))
    out.print(table)
    if rep.get("problem_counts"):
        out.print("problems: " + ", ".join(f"{k} {v}" for k, v in rep["problem_counts"].items()))
    if rep["problems"]:
        table = Table("file", "line", "field", "code", "reason", title="Problems")
        for p in rep["problems"][:100]:
            table.add_row(p["file"], str(p["row"]), p["field"], p["code"], p["reason"])
        out.print(table)
        if len(rep["problems"]) > 100:
            out.print(f"  ... {len(rep['problems']) - 100} more (--json lists all)")
    d = rep["duplicates"]
    out.print(f"duplicates found {d['found']}: merged {d['merged']}, left for review {d['review']}")
    for m in d["merges"][:20]:
        out.print(f"  {m['merged']} -> {m['survivor']} (score {m['score']}: {m['why']})")
    if rep.get("quality"):
        q = rep["quality"]
        out.print(f"data quality of customers.csv [bold]{q['score']}[/] (completeness {q['completeness']}, validity"
                  f" {q['validity']}, uniqueness {q['uniqueness']}, hierarchy {q['hierarchy']})")
    t = rep["tie_outs"]
    if t.get("ar"):
        table = Table("entity", "currency", "GL opening AR", "open invoices", "migrated", "rejected", "difference",
                      "ties", title="AR tie-out")
        for r in t["ar"]:
            table.add_row(r["entity"], r["currency"], r["gl_opening_ar"], r["open_invoices"], r["migrated"],
                          r["rejected"], r["difference"], "[green]yes[/]" if r["ties"] else "[red]no[/]")
        out.print(table)
    c = t.get("contracts") or {}
    if c:
        out.print(f"contracts: {c['continuing']} continue billing the day after their billed-through date;"
                  f" {c['misaligned']} misaligned, {c['overlapping']} overlapping; next bill dates "
                  + ", ".join(f"{k}: {v}" for k, v in list(c["next_bill_dates"].items())[:8]))
    if rep.get("data_quality_score") is not None:
        out.print(f"customer master data-quality score after the migration: [bold]{rep['data_quality_score']}[/]")


def print_verify(v: dict[str, Any]) -> None:
    table = Table("entity", "currency", "billing open", "AR subledger", "GL AR", "difference", "ties",
                  title="Post-migration check")
    for r in v["ar"]:
        table.add_row(r["entity"], r["currency"] + (" (functional)" if r.get("scope") else ""),
                      r.get("billing_open", ""), r["ar_subledger"], r.get("gl_ar", ""), r["difference"],
                      "[green]yes[/]" if r["ties"] else "[red]no[/]")
    out.print(table)
    c = v["contracts"]
    out.print(f"migrated contracts {c['migrated']}: {c['continuing']} continue after their billed-through date"
              + (f", {len(c['not_delivered_yet'])} not yet known to billing (deliver events)" if c["not_delivered_yet"]
                 else "") + (f", [red]{len(c['wrong'])} wrong[/]" if c["wrong"] else ""))
    out.print("[green]passed[/]" if v["passed"] else "[red]failed[/]")


def register(app: typer.Typer) -> None:
    import_app = import_group(app)

    @import_app.command("migration")
    @guarded()
    def import_migration(
        directory: Annotated[str, typer.Argument(help="Folder of legacy CSV files (docs/migration.md)")],
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would happen; write nothing")] = False,
        accept_valid: Annotated[bool, typer.Option("--accept-valid", help="Import the valid rows; rejected rows go to"
                                                   " the exception queue (import_rejected)")] = False,
        cutover: Annotated[str | None, typer.Option("--cutover", help="Cutover date (default: the manifest's)")] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Migrate a legacy data set after validation, rationalisation and tie-outs. All or nothing."""
        body: dict[str, Any] = {"dir": directory, "accept_valid": accept_valid}
        if cutover:
            body["cutover"] = cutover
        verify = None
        try:
            with open_app() as cl:
                if dry_run:
                    rep = cl.query("migration_preview", body)
                else:
                    rep = cl.do("migration.import", body)
                    verify = cl.query("migration_verify", {})
        except CloseloopError as exc:
            rep = exc.details.get("report")
            if rep is None:
                raise
            if as_json:
                emit_json({"error": exc.to_dict()})
            else:
                print_migration(rep)
                err.print(f"[bold red]{exc.code}[/]: {exc.message}")
            raise typer.Exit(EXIT_REFUSED) from None
        if as_json:
            emit_json({**rep, "verify": verify} if verify is not None else rep)
            return
        print_migration(rep)
        if verify is not None:
            print_verify(verify)

    @migration_app.command("sample")
    def sample(
        directory: Annotated[str, typer.Argument(help="Folder to write the data set into")],
        customers: Annotated[int, typer.Option("--customers", help="Legacy customers")] = 200,
        seed: Annotated[int, typer.Option("--seed")] = 7,
        clean: Annotated[bool, typer.Option("--clean", help="Plant no problems")] = False,
    ) -> None:
        """Write the seeded sample legacy data set (with its planted problems listed in manifest.yaml)."""
        from closeloop.rollout.legacy_sample import generate

        result = generate(directory, customers=customers, seed=seed, clean=clean)
        out.print(f"wrote {directory}: {result['customers']} customers, {result['contracts']} contracts,"
                  f" {result['invoices']} open invoices; planted duplicates {result['duplicates']}, problems "
                  + (", ".join(f"{k} {v}" for k, v in result["problems"].items()) or "none"))

    @migration_app.command("status")
    @guarded()
    def status(as_json: JsonFlag = False) -> None:
        """Migration runs and the post-migration check."""
        with open_app() as cl:
            runs = cl.query("migration", {})
            verify = cl.query("migration_verify", {})
        if as_json:
            emit_json({**runs, "verify": verify})
            return
        table = Table("run", "at", "actor", "system", "cutover", "mode", "created", "unchanged", "rejected")
        for r in runs["runs"]:
            table.add_row(str(r["run"]), r["at"], r["actor"], r["system"] or "", r["cutover"], r["mode"],
                          str(r["created"]), str(r["unchanged"]), str(r["rejected"]))
        out.print(table)
        print_verify(verify)

    @parallel_app.command("import")
    @guarded()
    def parallel_import(
        file: Annotated[str, typer.Argument(help="The legacy invoice register (CSV)")],
        entity: Annotated[str, typer.Option("--entity")],
        period: Annotated[str, typer.Option("--period", help="YYYY-MM")],
        system: Annotated[str | None, typer.Option("--system", help="The legacy system's name")] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Import a legacy invoice register for a parallel run."""
        with open_app() as cl:
            result = cl.do("parallel.import", {"entity": entity, "period": period, "file": file, "system": system})
        if as_json:
            emit_json(result)
        else:
            out.print(f"register {result['register']}: {result['lines']} lines of {result['invoices']} invoices for"
                      f" {result['entity']} {result['period']}" + (f"; left out {result['skipped']}"
                                                                    if result["skipped"] else ""))

    @parallel_app.command("run")
    @guarded()
    def parallel_run(
        entity: Annotated[str, typer.Option("--entity")],
        period: Annotated[str, typer.Option("--period", help="YYYY-MM")],
        as_json: JsonFlag = False,
    ) -> None:
        """Reconcile the legacy register with closeloop's invoices of the period, line by line."""
        with open_app() as cl:
            result = cl.do("parallel.run", {"entity": entity, "period": period})
        if as_json:
            emit_json(result)
            return
        out.print(f"parallel run {result['run']} {result['entity']} {result['period']}: {result['matched']} lines"
                  f" matched, {len(result['differences'])} difference(s), total {result['difference']}"
                  f" {result['currency']}")
        table = Table("customer", "cause", "legacy", "closeloop", "difference", "lines")
        for d in result["differences"]:
            table.add_row(d["customer"], d["cause"], d["legacy"], d["closeloop"], d["difference"], str(len(d["lines"])))
        if result["differences"]:
            out.print(table)

    @parallel_app.command("status")
    @guarded()
    def parallel_status(
        entity: Annotated[str | None, typer.Option("--entity")] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Parallel runs, oldest first (the wave gate reads the last)."""
        with open_app() as cl:
            result = cl.query("parallel_run", {"entity": entity} if entity else {})
        if as_json:
            emit_json(result)
            return
        table = Table("run", "entity", "period", "at", "matched", "differences", "difference")
        for r in result["runs"]:
            table.add_row(str(r["run"]), r["entity"], r["period"], r["at"], str(r["matched"]),
                          str(len(r["differences"])), f"{r['difference']} {r['currency'] or ''}")
        out.print(table)

    app.add_typer(migration_app, name="migration")
    app.add_typer(parallel_app, name="parallel")
