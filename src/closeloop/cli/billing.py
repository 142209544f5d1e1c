"""CLI for billing::

    closeloop bill-run --as-of DATE [--entity E] [--dry-run] [--json]
    closeloop usage import FILE [--batch N] [--json]      (CSV with a header, or JSON lines)
    closeloop invoice show NUMBER [--json | --html]
    closeloop invoice pdf NUMBER [-o FILE]
    closeloop invoice list [--customer X] [--status S] [--json]

``usage import`` records each batch atomically (all its events or none); a refused batch stops the
import with its errors, earlier batches stay recorded (re-running the file is safe: keys are idempotent).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from closeloop.cli.main import JsonFlag, emit_json, guarded, open_app, out


def _group(app: typer.Typer, name: str, help_text: str) -> typer.Typer:
    """A shared top-level group (``invoice``): found if another area made it, else made here."""
    for group in app.registered_groups:
        if group.name == name and group.typer_instance is not None:
            return group.typer_instance
    group_app = typer.Typer(no_args_is_help=True, help=help_text)
    app.add_typer(group_app, name=name)
    return group_app


def read_usage_file(path: Path) -> list[dict[str, Any]]:
    """Usage events from CSV (header: customer,metric,quantity,at,key[,properties as JSON]) or JSON lines.

    A file that cannot be read as such is refused with a ``validation_error`` naming the line."""
    from closeloop.core.errors import ValidationError

    def refuse(line: int | None, reason: str) -> ValidationError:
        where = f"{path}:{line}" if line else str(path)
        return ValidationError(f"usage import: {where}: {reason}", field="file", record=str(path), line=line)

    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise refuse(None, f"not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    if "\x00" in text:
        raise refuse(text[:text.index("\x00")].count("\n") + 1, "contains a NUL character (a binary file?)")
    events: list[dict[str, Any]] = []
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson") or text.lstrip().startswith("{"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise refuse(n, f"not a JSON object ({str(exc)[:120]})") from None
            if not isinstance(item, dict):
                raise refuse(n, "each line must be a JSON object {customer, metric, quantity, at, key}")
            events.append(item)
        return events
    try:
        rows = list(csv.DictReader(text.splitlines()))
    except csv.Error as exc:
        raise refuse(None, f"not a readable CSV file ({exc})") from None
    for n, row in enumerate(rows, 2):
        ev: dict[str, Any] = {k: v for k, v in row.items() if isinstance(k, str) and k and v not in (None, "")}
        if isinstance(ev.get("properties"), str):
            try:
                ev["properties"] = json.loads(ev["properties"])
            except (ValueError, RecursionError):
                raise refuse(n, "the properties cell is not JSON") from None
        events.append(ev)
    return events


def _print_invoice(inv: dict[str, Any]) -> None:
    out.print(f"[bold]{inv['number'] or '(held)'}[/] {inv['kind']} {inv['customer']} {inv['date']} due"
              f" {inv['due_date']} [{inv['status']}]")
    table = Table(show_header=True, header_style="bold")
    for col in ("#", "description", "period", "qty", "amount", "tax", "treatment"):
        table.add_column(col, justify="right" if col in ("qty", "amount", "tax") else "left")
    for ln in inv["lines"]:
        period = f"{ln['period_start'] or ''}..{ln['period_end'] or ''}" if ln["period_start"] else ""
        table.add_row(str(ln["line_no"]), ln["description"], period, ln["quantity"], ln["amount"], ln["tax"],
                      ln["tax_treatment"] or "")
    out.print(table)
    out.print(f"subtotal {inv['subtotal']}  tax {inv['tax']}  total {inv['total']} {inv['currency']}  "
              f"credit applied {inv['credit_applied']}  balance {inv['balance']}")


def register(app: typer.Typer) -> None:
    invoice_app = _group(app, "invoice", "Invoices: documents and e-invoices.")
    usage_app = _group(app, "usage", "Usage metering.")

    @app.command("bill-run")
    @guarded()
    def bill_run(
        as_of: Annotated[str, typer.Option("--as-of", help="Bill everything due up to this date (YYYY-MM-DD).")],
        entity: Annotated[str | None, typer.Option("--entity", help="Only this legal entity.")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be issued; save nothing.")] = False,
        workers: Annotated[bool, typer.Option(
            "--workers", help="Only start the run: `closeloop worker` processes bill its partitions.")] = False,
        as_json: JsonFlag = False,
    ) -> None:
        """Run billing: issue every invoice due up to --as-of (one per customer, entity, currency, date)."""
        with open_app() as cl:
            result = cl.do("billing.run", {"as_of": as_of, "entity": entity, "dry_run": dry_run, "workers": workers})
        if as_json:
            emit_json(result)
            return
        if result.get("status") == "running":
            out.print(f"bill run {result['run']} as of {result['as_of']} started: {result['partitions']} partition(s)"
                      " for `closeloop worker` processes to bill (progress: closeloop query billing_runs)")
            return
        if dry_run:
            out.print(f"dry run as of {as_of}: {result['count']} invoice(s) would be issued; totals {result['totals']}")
            for inv in result["invoices"]:
                out.print(f"  {inv['customer']} {inv['date']} {inv['total']} {inv['currency']} [{inv['status']}]")
            return
        out.print(f"bill run {result['run']} as of {result['as_of']}: {result['invoices']} invoice(s) issued"
                  f" ({result['first'] or '-'} .. {result['last'] or '-'}), {result['held']} held")

    @usage_app.command("import")
    @guarded()
    def usage_import(
        file: Annotated[Path, typer.Argument(help="CSV (customer,metric,quantity,at,key) or JSON lines.")],
        batch: Annotated[int, typer.Option("--batch", help="Events per atomic batch.")] = 10_000,
        as_json: JsonFlag = False,
    ) -> None:
        """Record usage events from a file, idempotently (the same key and payload twice counts once)."""
        events = read_usage_file(file)
        accepted = duplicates = 0
        with open_app() as cl:
            for start in range(0, len(events), max(1, batch)):
                result = cl.do("usage.record", {"events": events[start:start + batch]})
                accepted += result["accepted"]
                duplicates += result["duplicates"]
        summary = {"file": str(file), "events": len(events), "accepted": accepted, "duplicates": duplicates}
        if as_json:
            emit_json(summary)
        else:
            out.print(f"{file}: {len(events)} event(s): {accepted} recorded, {duplicates} already recorded")

    @invoice_app.command("show")
    @guarded()
    def invoice_show(
        number: Annotated[str, typer.Argument(help="Invoice or credit memo number.")],
        html: Annotated[bool, typer.Option("--html", help="Print the HTML document.")] = False,
        as_json: JsonFlag = False,
    ) -> None:
        """Show an invoice or credit memo."""
        with open_app() as cl:
            if html:
                from closeloop.billing.documents import invoice_html

                with cl.unit_of_work(write=False) as uow:
                    print(invoice_html(uow, number))
                return
            inv = cl.query("invoice", {"number": number})
        if as_json:
            emit_json(inv)
        else:
            _print_invoice(inv)

    @invoice_app.command("pdf")
    @guarded()
    def invoice_pdf_cmd(
        number: Annotated[str, typer.Argument(help="Invoice or credit memo number.")],
        output: Annotated[Path | None, typer.Option("-o", "--output", help="PDF file (default NUMBER.pdf).")] = None,
    ) -> None:
        """Write an invoice or credit memo as PDF."""
        from closeloop.billing.documents import invoice_pdf

        with open_app() as cl, cl.unit_of_work(write=False) as uow:
            data = invoice_pdf(uow, number)
        target = output or Path(f"{number}.pdf")
        target.write_bytes(data)
        out.print(f"wrote {target} ({len(data)} bytes)")

    @invoice_app.command("list")
    @guarded()
    def invoice_list(
        customer: Annotated[str | None, typer.Option("--customer")] = None,
        status: Annotated[str | None, typer.Option("--status")] = None,
        kind: Annotated[str, typer.Option("--kind", help="invoice or credit_memo")] = "invoice",
        as_json: JsonFlag = False,
    ) -> None:
        """List invoices (or credit memos)."""
        with open_app() as cl:
            result = cl.query("invoices", {"customer": customer, "status": status, "kind": kind, "limit": 10_000})
        if as_json:
            emit_json(result)
            return
        table = Table(show_header=True, header_style="bold")
        for col in ("number", "customer", "date", "due", "status", "total", "balance", "cur"):
            table.add_column(col, justify="right" if col in ("total", "balance") else "left")
        for i in result["items"]:
            table.add_row(i["number"] or "(held)", i["customer"], i["date"], i["due_date"], i["status"], i["total"],
                          i["balance"], i["currency"])
        out.print(table)
        out.print(f"{result['count']} invoice(s)")
