"""CLI for e-invoices::

    closeloop invoice export NUMBER [--format facturx|ubl] [-o FILE] [--json]
    closeloop customers einvoice-format EXTERNAL_ID facturx|ubl|none
    closeloop einvoice read FILE [--json]          (a UBL invoice or credit note, e.g. a supplier's)

``invoice export`` writes the stored e-invoice (made and stored at the first export, never changed
after) to FILE, or to standard output for UBL XML; a Factur-X PDF needs ``-o``.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from closeloop.cli.main import JsonFlag, emit_json, guarded, open_app, out
from closeloop.core.errors import ValidationError

einvoice_app = typer.Typer(no_args_is_help=True, help="E-invoices: read UBL files.")


def _group(app: typer.Typer, name: str, help_text: str) -> typer.Typer:
    """A shared top-level group (``invoice``, ``customers``): found if another area made it, else made here."""
    for group in app.registered_groups:
        if group.name == name and group.typer_instance is not None:
            return group.typer_instance
    group_app = typer.Typer(no_args_is_help=True, help=help_text)
    app.add_typer(group_app, name=name)
    return group_app


def register(app: typer.Typer) -> None:
    invoice_app = _group(app, "invoice", "Invoices: documents and e-invoices.")
    customers_app = _group(app, "customers", "The customer master.")
    app.add_typer(einvoice_app, name="einvoice")

    @invoice_app.command("export")
    @guarded()
    def invoice_export(
        number: Annotated[str, typer.Argument(help="Invoice or credit memo number")],
        fmt: Annotated[str | None, typer.Option("--format", help="facturx or ubl (default: the customer's)")] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write")] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Export an invoice's e-invoice: Factur-X PDF/A-3 (CII inside) or UBL 2.1 / Peppol BIS 3.0 XML."""
        with open_app() as cl:
            result = cl.do("einvoice.export", {"invoice": number, "format": fmt})
        content = (base64.b64decode(result["content"]) if result["encoding"] == "base64"
                   else result["content"].encode("utf-8"))
        if output is not None:
            output.write_bytes(content)
        if as_json:
            emit_json({k: v for k, v in result.items() if k != "content"} | {"output": str(output) if output else None})
            return
        if output is None:
            if result["encoding"] == "base64":
                raise ValidationError("a Factur-X PDF is binary: give -o FILE", field="output")
            sys.stdout.write(content.decode("utf-8"))
            return
        out.print(f"{result['filename']} ({result['format']}, {len(content)} bytes, sha256 {result['sha256'][:16]}…)"
                  f" written to {output}")

    @customers_app.command("einvoice-format")
    @guarded()
    def einvoice_format(external_id: str, fmt: Annotated[str, typer.Argument(help="facturx, ubl or none")],
                        as_json: JsonFlag = False) -> None:
        """Set the customer's preferred e-invoice format (made and stored when each invoice is issued)."""
        with open_app() as cl:
            result = cl.do("customer.einvoice_format", {"customer": external_id, "format": fmt})
        if as_json:
            emit_json(result)
        else:
            out.print(f"{result['customer']}: e-invoice format {result['format'] or 'none'}")

    @einvoice_app.command("read")
    @guarded()
    def einvoice_read(path: Path, as_json: JsonFlag = False) -> None:
        """Read a UBL 2.1 invoice or credit note and print its totals, VAT breakdown and lines."""
        with open_app() as cl:
            result = cl.query("ubl_read", {"content": path.read_text(encoding="utf-8")})
        if as_json:
            emit_json(result)
            return
        out.print(f"[bold]{result['kind']} {result['number']}[/] ({result['type_code']}) {result['issue_date']}"
                  f"  {result['seller']} -> {result['buyer']}")
        table = Table("line", "name", "quantity", "net", "VAT")
        for x in result["lines"]:
            table.add_row(x["id"], x["name"] or "", x["quantity"], x["net"], f"{x['category']} {x['percent'] or ''}")
        out.print(table)
        for b in result["breakdown"]:
            out.print(f"VAT {b['category']} {b['percent'] or ''}%: taxable {b['taxable']}, tax {b['tax']}")
        out.print(f"subtotal {result['subtotal']}  tax {result['tax']}  total {result['total']}"
                  f"  payable {result['payable']} {result['currency']}")
        for p in result["problems"]:
            out.print(f"[red]{p}[/]")
