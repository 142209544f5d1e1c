"""CLI for the customer master: ``closeloop import crm`` and ``closeloop customers ...``.

    closeloop import crm FILE... --format salesforce|hubspot [--mapping FILE] [--dry-run] [--accept-valid] [--json]
    closeloop customers show EXTERNAL_ID [--json]
    closeloop customers list [--search TEXT] [--status S] [--json]
    closeloop customers hierarchy EXTERNAL_ID [--json]
    closeloop customers duplicates [--scan] [--json]
    closeloop customers merge SURVIVOR MERGED [--reason TEXT] [--json]
    closeloop customers unmerge MERGED --reason TEXT [--json]
    closeloop customers dismiss A B --reason TEXT
    closeloop customers quality [--json]
    closeloop customers sor [--entity-type customer] [--history] [--json]
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from closeloop.cli.main import JsonFlag, emit_json, err, guarded, import_group, open_app, out
from closeloop.core.errors import EXIT_REFUSED, CloseloopError

customers_app = typer.Typer(no_args_is_help=True, help="The customer master: accounts, hierarchy, duplicates, merges.")




def print_report(report: dict[str, Any], *, title: str = "Import report") -> None:
    mode = "dry run, nothing written" if report.get("dry_run") else (
        "committed" if report.get("committed") else "refused, nothing written")
    out.print(f"[bold]{title}[/] ({report['format']}, source {report['source']}, {report['mode']}; {mode})")
    for f in report["files"]:
        out.print(f"  {f['name']}: {f['rows']} rows, {f['encoding']}, {f['layout']}, {'/'.join(f['objects'])}")
    summary = Table("rows read", "created", "updated", "unchanged", "rejected", "skipped", "conflicts", "duplicates",
                    "contacts +/~")
    c = report["contacts"]
    summary.add_row(*(str(report[k]) for k in ("rows_read", "created", "updated", "unchanged", "rejected",
                                                "skipped", "governance_conflicts", "suspected_duplicates")),
                    f"{c['created']}/{c['updated']}")
    out.print(summary)
    q = report["quality"]
    out.print(f"data quality score [bold]{q['score']}[/] (completeness {q['completeness']}, validity {q['validity']},"
              f" uniqueness {q['uniqueness']}, hierarchy {q['hierarchy']})")
    if report["rejections"]:
        table = Table("file", "line", "object", "external id", "field", "reason", title="Rejected rows")
        for r in report["rejections"]:
            reasons = "; ".join(f"{p['field']}: {p['reason']}" if p["field"] != r["field"] else p["reason"]
                                for p in r["problems"])
            table.add_row(r["file"], str(r["row"]), r["object"], r["external_id"] or "", r["field"], reasons)
        out.print(table)
    if report["conflicts"]:
        table = Table("line", "external id", "field", "owned by", "old", "new", title="Governance conflicts (not applied)")
        for r in report["conflicts"]:
            table.add_row(str(r["row"]), r["external_id"], r["field"], " or ".join(r["owners"] or []), str(r["old"]),
                          str(r["new"]))
        out.print(table)
    if report["duplicates"]:
        table = Table("line", "account", "suspected duplicate of", "score", "decision", "why",
                      title="Suspected duplicates")
        for d in report["duplicates"][:50]:
            why = ", ".join(f"{x['field']} {x['points']:+g}" for x in d["fields"] if x["points"])
            table.add_row(str(d["row"]), d["external_id"], d["other"], d["score"], d["decision"], why)
        out.print(table)
        if len(report["duplicates"]) > 50:
            out.print(f"  ... {len(report['duplicates']) - 50} more (--json lists all)")
    if report["warnings"]:
        out.print(f"[yellow]{len(report['warnings'])} warning(s)[/]: " + "; ".join(
            f"line {w['row']} {w['field']}: {w['reason']}" for w in report["warnings"][:10])
            + (" ..." if len(report["warnings"]) > 10 else ""))


def register(app: typer.Typer) -> None:
    import_app = import_group(app)

    @import_app.command("crm")
    @guarded()
    def import_crm(
        files: Annotated[list[str], typer.Argument(help="Account and contact files (CSV or tree JSON)")],
        fmt: Annotated[str, typer.Option("--format", "-f", help="salesforce or hubspot")] = "salesforce",
        mapping: Annotated[str | None, typer.Option("--mapping", help="Mapping file (YAML) for custom fields")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would happen; write nothing")] = False,
        accept_valid: Annotated[bool, typer.Option("--accept-valid",
                                                   help="Import the valid rows; rejected rows go to the exception queue"
                                                   )] = False,
        source: Annotated[str | None, typer.Option("--source", help="Source system (default crm, or the mapping's)")
                          ] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Import CRM accounts (and contacts) with a data-quality report. All or nothing unless --accept-valid."""
        payload = {"file": files, "format": fmt, "mapping": mapping, "accept_valid": accept_valid, "source": source}
        try:
            with open_app() as cl:
                report = (cl.query("customer_import_preview", payload) if dry_run
                          else cl.do("customer.import", {k: v for k, v in payload.items() if v is not None}))
        except CloseloopError as exc:
            report = exc.details.get("report")
            if report is None:
                raise
            if as_json:
                emit_json({"error": exc.to_dict()})
            else:
                print_report(report)
                err.print(f"[bold red]{exc.code}[/]: {exc.message}")
            raise typer.Exit(EXIT_REFUSED) from None
        if as_json:
            emit_json(report)
        else:
            print_report(report)

    @customers_app.command("show")
    @guarded()
    def show(external_id: Annotated[str, typer.Argument()], as_json: JsonFlag = False) -> None:
        """One account: fields, balances, hierarchy links, contacts."""
        with open_app() as cl:
            c = cl.query("customer", {"external_id": external_id})
        if as_json:
            emit_json(c)
            return
        table = Table("field", "value", title=f"{c['external_id']}  {c['name']}  [{c['status']}]")
        for key in ("country", "region", "postal_code", "address", "email", "phone", "website", "tax_id",
                    "tax_id_valid", "tax_exempt", "exemption_ref", "parent", "bill_to", "entity", "currency",
                    "payment_terms_days", "merged_into", "open_balance", "credit_balance", "source", "updated_at"):
            if c.get(key) not in (None, "", [], {}):
                table.add_row(key, str(c[key]))
        if c["children"]:
            table.add_row("children", ", ".join(c["children"]))
        for contact in c["contacts"]:
            table.add_row("contact", " ".join(x for x in (contact["first_name"], contact["last_name"],
                                                          contact["email"] or "") if x))
        out.print(table)

    @customers_app.command("list")
    @guarded()
    def list_customers(
        search: Annotated[str | None, typer.Option("--search")] = None,
        status: Annotated[str | None, typer.Option("--status")] = None,
        limit: Annotated[int, typer.Option("--limit")] = 50,
        as_json: JsonFlag = False,
    ) -> None:
        """Accounts, optionally filtered."""
        with open_app() as cl:
            result = cl.query("customers", {"search": search, "status": status, "limit": limit})
        if as_json:
            emit_json(result)
            return
        table = Table("external id", "name", "country", "status", "parent", "tax id", title=f"{result['count']} accounts")
        for c in result["items"]:
            table.add_row(c["external_id"], c["name"], c["country"], c["status"], c["parent"] or "", c["tax_id"] or "")
        out.print(table)

    @customers_app.command("hierarchy")
    @guarded()
    def show_hierarchy(external_id: Annotated[str, typer.Argument()], as_json: JsonFlag = False) -> None:
        """Ancestors, descendants and open balances rolled up to the top parent."""
        with open_app() as cl:
            h = cl.query("customer_hierarchy", {"external_id": external_id})
        if as_json:
            emit_json(h)
            return
        out.print(f"top parent {h['top']}; ancestors: {' -> '.join(h['ancestors']) or '(none)'}")
        table = Table("account", "depth", "open", "credit", "roll-up open")
        table.add_row(h["external_id"], "0", h["open_balance"], h["credit_balance"], str(h["rollup"]["open_balance"]))
        for d in h["descendants"]:
            table.add_row("  " * d["depth"] + d["external_id"], str(d["depth"]), d["open_balance"], d["credit_balance"],
                          str(d["rollup_open_balance"]))
        out.print(table)
        out.print(f"whole tree under {h['top']}: open {h['top_rollup']['open_balance']},"
                  f" credit {h['top_rollup']['credit_balance']}")

    @customers_app.command("duplicates")
    @guarded()
    def duplicates(
        scan: Annotated[bool, typer.Option("--scan", help="Scan the whole master first")] = False,
        status: Annotated[str, typer.Option("--status")] = "open",
        as_json: JsonFlag = False,
    ) -> None:
        """The review list of suspected duplicates with the points each field contributed."""
        with open_app() as cl:
            scanned = cl.do("customer.find_duplicates", {}) if scan else None
            result = cl.query("customer_duplicates", {"status": status})
        if as_json:
            emit_json({"scan": scanned, **result})
            return
        if scanned:
            out.print(f"scanned {scanned['scanned']} accounts, {scanned['candidate_pairs']} candidate pairs,"
                      f" {scanned['added']} new suspects")
        table = Table("a", "b", "score", "decision", "why", title=f"{result['count']} suspected duplicates ({status})")
        for d in result["items"]:
            why = ", ".join(f"{x['field']} {x['points']:+g}" for x in d["fields"] if x["points"])
            table.add_row(f"{d['a']} {d['a_name']}", f"{d['b']} {d['b_name']}", d["score"], d["decision"], why)
        out.print(table)

    @customers_app.command("merge")
    @guarded()
    def merge(
        survivor: Annotated[str, typer.Argument()],
        merged: Annotated[str, typer.Argument()],
        reason: Annotated[str | None, typer.Option("--reason")] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Merge MERGED into SURVIVOR (survivorship rules, references re-pointed, audited)."""
        with open_app() as cl:
            result = cl.do("customer.merge", {"survivor": survivor, "merged": merged, "reason": reason})
        if as_json:
            emit_json(result)
            return
        out.print(f"merged {result['merged']} into {result['survivor']} (merge {result['merge_id']});"
                  f" fields taken from {result['merged']}: {', '.join(result['changed']) or 'none'};"
                  f" {result['children_moved']} child account(s) moved; re-pointed: {result['repointed'] or '-'}")

    @customers_app.command("unmerge")
    @guarded()
    def unmerge(
        merged: Annotated[str, typer.Argument()],
        reason: Annotated[str, typer.Option("--reason")],
        as_json: JsonFlag = False,
    ) -> None:
        """Undo a merge while nothing new references the survivor."""
        with open_app() as cl:
            result = cl.do("customer.unmerge", {"merged": merged, "reason": reason})
        if as_json:
            emit_json(result)
        else:
            out.print(f"{result['merged']} restored ({result['status']}); survivor fields restored:"
                      f" {', '.join(result['restored']) or 'none'}")

    @customers_app.command("dismiss")
    @guarded()
    def dismiss(a: Annotated[str, typer.Argument()], b: Annotated[str, typer.Argument()],
                reason: Annotated[str, typer.Option("--reason")], as_json: JsonFlag = False) -> None:
        """Mark a suspected pair as two distinct accounts."""
        with open_app() as cl:
            result = cl.do("customer.dismiss_duplicate", {"a": a, "b": b, "reason": reason})
        emit_json(result) if as_json else out.print(f"{a} / {b}: dismissed")

    @customers_app.command("quality")
    @guarded()
    def quality(as_json: JsonFlag = False) -> None:
        """Data-quality score of the customer master."""
        with open_app() as cl:
            q = cl.query("customer_quality", {})
        if as_json:
            emit_json(q)
        else:
            out.print(f"{q['accounts']} active accounts: score [bold]{q['score']}[/] (completeness {q['completeness']},"
                      f" validity {q['validity']}, uniqueness {q['uniqueness']}, hierarchy {q['hierarchy']})")

    @customers_app.command("sor")
    @guarded()
    def sor(
        entity_type: Annotated[str | None, typer.Option("--entity-type")] = None,
        history: Annotated[bool, typer.Option("--history")] = False,
        as_json: JsonFlag = False,
    ) -> None:
        """The system-of-record registry in force (who owns which field)."""
        with open_app() as cl:
            reg = cl.query("system_of_record", {"entity_type": entity_type, "history": history})
        if as_json:
            emit_json(reg)
            return
        out.print(f"registry version {reg['version']} as of {reg['as_of']} ({'; '.join(reg['layers'])});"
                  f" trusted sources: {', '.join(reg['trusted_sources'])}")
        table = Table("entity", "field", "owned by")
        for etype, rules in reg["entities"].items():
            table.add_row(etype, "(default)", ", ".join(rules["default"]))
            for fname, owners in rules["fields"].items():
                table.add_row("", fname, ", ".join(owners))
        out.print(table)
        for change in reg.get("changes", []):
            out.print(f"  {change['at']} {change['actor']}: {change['entity_type']}.{change['field']}"
                      f" {change['previous']} -> {change['owners']} from {change['effective']} ({change['reason']})")

    app.add_typer(customers_app, name="customers")
