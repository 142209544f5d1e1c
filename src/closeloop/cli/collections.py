"""CLI for collections: bank statements, payments, dunning, disputes, aging and statements of account.

    closeloop bank import FILE --format camt053|camt054|mt940|csv [--entity E] [--mapping FILE] [--currency C] [--json]
    closeloop payments list [--customer C] [--status S] [--json]
    closeloop payments show PAYMENT [--json]
    closeloop payments receive --customer C --amount A --currency CUR [--reference R] [--invoice N] [--date D]
    closeloop payments apply PAYMENT INVOICE [--amount A]
    closeloop payments refund PAYMENT --reason R [--amount A]
    closeloop payments webhook BODY_FILE --signature 'Stripe-Signature header'
    closeloop dunning run --as-of DATE [--json]
    closeloop dunning send-emails
    closeloop disputes list [--status S] | show ID | open ID INVOICE AMOUNT --reason R | resolve ID credit|rejected
    closeloop aging [--as-of DATE] [--entity E] [--json]
    closeloop statement CUSTOMER [--as-of DATE] [--html FILE] [--pdf FILE] [--json]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from closeloop.cli.main import JsonFlag, emit_json, guarded, open_app, out

bank_app = typer.Typer(no_args_is_help=True, help="Bank statements: import camt.053/054, MT940 and CSV.")
payments_app = typer.Typer(no_args_is_help=True, help="Payments: receive, apply, refund, list.")
dunning_app = typer.Typer(no_args_is_help=True, help="Dunning: dated runs of retries, reminders and suspensions.")
disputes_app = typer.Typer(no_args_is_help=True, help="Disputes: open, review, resolve, list.")


def _print_payment_rows(rows: list[dict[str, Any]], title: str) -> None:
    table = Table("payment", "customer", "date", "amount", "unapplied", "status", "reason", "confidence", title=title)
    for p in rows:
        table.add_row(p["payment"], p.get("customer") or "?", p.get("date", ""),
                      f"{p.get('amount', '')} {p.get('currency', '')}", p.get("unapplied", ""), p["status"],
                      p.get("reason") or "", p.get("confidence") or "")
    out.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(bank_app, name="bank")
    app.add_typer(payments_app, name="payments")
    app.add_typer(dunning_app, name="dunning")
    app.add_typer(disputes_app, name="disputes")

    @bank_app.command("import")
    @guarded()
    def bank_import(
        file: Annotated[str, typer.Argument(help="The statement file")],
        fmt: Annotated[str, typer.Option("--format", "-f", help="camt053, camt054, mt940 or csv")] = "camt053",
        entity: Annotated[str | None, typer.Option("--entity", help="Our legal entity owning the account")] = None,
        mapping: Annotated[str | None, typer.Option("--mapping", help="CSV column mapping (YAML or JSON file)")] = None,
        currency: Annotated[str | None, typer.Option("--currency", help="CSV without a currency column")] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Import a bank statement; its receipts are applied to open invoices (or held with an exception)."""
        payload: dict[str, Any] = {"format": fmt, "file": str(Path(file).resolve()), "entity": entity,
                                   "currency": currency}
        if mapping:
            payload["mapping"] = yaml.safe_load(Path(mapping).read_text(encoding="utf-8"))
        with open_app() as cl:
            report = cl.do("bank.import", {k: v for k, v in payload.items() if v is not None})
        if as_json:
            emit_json(report)
            return
        out.print(f"[bold]{report['file']}[/] into {report['entity']}: {report['lines']} lines, "
                  f"{report['receipts']} receipts — applied {report['applied']}, partially {report['partially_applied']},"
                  f" unapplied {report['unapplied']}; payouts {report['payouts']}, returned {report['returned']},"
                  f" ignored {report['ignored']}, duplicates {report['duplicates']}, exceptions {report['exceptions']}")
        if report["payments"]:
            _print_payment_rows([{**p, "amount": "", "currency": ""} for p in report["payments"]], "Receipts")

    @payments_app.command("list")
    @guarded()
    def payments_list(customer: Annotated[str | None, typer.Option("--customer")] = None,
                      status: Annotated[str | None, typer.Option("--status")] = None,
                      as_json: JsonFlag = False) -> None:
        """Payments with their status, unapplied cash and why they were (not) matched."""
        with open_app() as cl:
            data = cl.query("payments", {k: v for k, v in {"customer": customer, "status": status}.items() if v})
        if as_json:
            emit_json(data)
        else:
            _print_payment_rows(data["payments"], f"{data['count']} payments")

    @payments_app.command("show")
    @guarded()
    def payments_show(payment: str, as_json: JsonFlag = False) -> None:
        """One payment with its applications."""
        with open_app() as cl:
            data = cl.query("payment", {"payment": payment})
        if as_json:
            emit_json(data)
            return
        out.print(f"[bold]{data['payment']}[/] {data['amount']} {data['currency']} from {data['customer'] or '?'}"
                  f" on {data['date']} ({data['channel']}): {data['status']}, unapplied {data['unapplied']}"
                  f" — {data['reason']} ({data['confidence']}): {data['detail'] or ''}")
        for a in data["applications"]:
            out.print(f"  {a['date']} {a['invoice']} {a['amount']} {a['currency']} ({a['reason']})")

    @payments_app.command("receive")
    @guarded()
    def payments_receive(customer: Annotated[str, typer.Option("--customer")],
                         amount: Annotated[str, typer.Option("--amount")],
                         currency: Annotated[str, typer.Option("--currency")],
                         reference: Annotated[str, typer.Option("--reference")] = "",
                         invoice: Annotated[str | None, typer.Option("--invoice")] = None,
                         date: Annotated[str | None, typer.Option("--date")] = None,
                         as_json: JsonFlag = False) -> None:
        """Record a payment and apply it."""
        payload = {"customer": customer, "amount": amount, "currency": currency, "reference": reference,
                   "invoice": invoice, "date": date}
        with open_app() as cl:
            data = cl.do("payment.receive", {k: v for k, v in payload.items() if v is not None})
        emit_json(data) if as_json else out.print(
            f"{data['payment']}: {data['status']} ({data['reason']}, {data['confidence']}), unapplied {data['unapplied']}")

    @payments_app.command("apply")
    @guarded()
    def payments_apply(payment: str, invoice: str, amount: Annotated[str | None, typer.Option("--amount")] = None,
                       as_json: JsonFlag = False) -> None:
        """Apply a payment's unapplied cash to an invoice."""
        with open_app() as cl:
            data = cl.do("payment.apply", {"payment": payment, "invoice": invoice,
                                           **({"amount": amount} if amount else {})})
        emit_json(data) if as_json else out.print(f"{data['applied']} applied to {data['invoice']}; {data['status']}")

    @payments_app.command("refund")
    @guarded()
    def payments_refund(payment: str, reason: Annotated[str, typer.Option("--reason")],
                        amount: Annotated[str | None, typer.Option("--amount")] = None, as_json: JsonFlag = False
                        ) -> None:
        """Refund a payment's unapplied cash (a second person approves large ones)."""
        with open_app() as cl:
            data = cl.do("payment.refund", {"payment": payment, "reason": reason,
                                            **({"amount": amount} if amount else {})})
        emit_json(data) if as_json else out.print(json.dumps(data))

    @payments_app.command("webhook")
    @guarded()
    def payments_webhook(body_file: str, signature: Annotated[str, typer.Option("--signature")],
                         as_json: JsonFlag = False) -> None:
        """Deliver a provider webhook body (as received) with its Stripe-Signature header."""
        with open_app() as cl:
            data = cl.do("provider.webhook", {"body": Path(body_file).read_text(encoding="utf-8"),
                                              "signature": signature})
        emit_json(data) if as_json else out.print(f"{data['id']} {data['type']}: {data['status']}")

    @dunning_app.command("run")
    @guarded()
    def dunning_run(as_of: Annotated[str, typer.Option("--as-of", help="Execute the steps due on or before")],
                    as_json: JsonFlag = False) -> None:
        """Run dunning as of a date: card retries, reminder e-mails (to the outbox), suspensions."""
        with open_app() as cl:
            data = cl.do("dunning.run", {"as_of": as_of})
        if as_json:
            emit_json(data)
            return
        out.print(f"dunning as of {data['as_of']}: {data['retries']} retries, {data['reminders']} reminders,"
                  f" {data['suspensions']} suspensions ({data['skipped']} superseded, {data['disputed_excluded']}"
                  " fully disputed)")
        table = Table("invoice", "customer", "step", "due on", "amount")
        for a in data["actions"]:
            table.add_row(a["invoice"], a["customer"], a["step"], a["due_on"], a["amount"])
        out.print(table)

    @dunning_app.command("send-emails")
    @guarded()
    def dunning_send(as_json: JsonFlag = False) -> None:
        """Send pending reminder e-mails over SMTP (only when enabled in config or CLOSELOOP_SMTP_HOST)."""
        from closeloop.collections.dunning import send_pending_emails

        with open_app() as cl:
            data = send_pending_emails(cl)
        emit_json(data) if as_json else out.print(data)

    @disputes_app.command("list")
    @guarded()
    def disputes_list(status: Annotated[str | None, typer.Option("--status")] = None, as_json: JsonFlag = False
                      ) -> None:
        """Disputes with owner, SLA and cycle time."""
        with open_app() as cl:
            data = cl.query("disputes", {"status": status} if status else {})
        if as_json:
            emit_json(data)
            return
        table = Table("dispute", "invoice", "amount", "status", "owner", "opened", "SLA", "resolved", "days",
                      title=f"{data['count']} disputes, median cycle {data['cycle_days_median']} days")
        for d in data["disputes"]:
            table.add_row(d["dispute_id"], d["invoice"], f"{d['amount']} {d['currency']}", d["status"], d["owner"],
                          d["opened"], d["sla_due"], d["resolved"] or "", str(d["cycle_days"] or ""))
        out.print(table)

    @disputes_app.command("show")
    @guarded()
    def disputes_show(dispute_id: str, as_json: JsonFlag = False) -> None:
        with open_app() as cl:
            data = cl.query("dispute", {"dispute_id": dispute_id})
        emit_json(data) if as_json else out.print(data)

    @disputes_app.command("open")
    @guarded()
    def disputes_open(dispute_id: str, invoice: str, amount: str, reason: Annotated[str, typer.Option("--reason")],
                      reason_code: Annotated[str | None, typer.Option("--code")] = None, as_json: JsonFlag = False
                      ) -> None:
        with open_app() as cl:
            data = cl.do("dispute.open", {"dispute_id": dispute_id, "invoice": invoice, "amount": amount,
                                          "reason": reason, **({"reason_code": reason_code} if reason_code else {})})
        emit_json(data) if as_json else out.print(f"{data['dispute_id']}: {data['status']}, SLA {data['sla_due']}")

    @disputes_app.command("resolve")
    @guarded()
    def disputes_resolve(dispute_id: str, outcome: str, as_json: JsonFlag = False) -> None:
        with open_app() as cl:
            data = cl.do("dispute.resolve", {"dispute_id": dispute_id, "outcome": outcome})
        emit_json(data) if as_json else out.print(
            f"{data['dispute_id']}: {data['status']} after {data['cycle_days']} days")

    @app.command("aging")
    @guarded()
    def aging(as_of: Annotated[str | None, typer.Option("--as-of")] = None,
              entity: Annotated[str | None, typer.Option("--entity")] = None, as_json: JsonFlag = False) -> None:
        """AR aging by bucket as of a date, from the ledger's receivables."""
        with open_app() as cl:
            data = cl.query("ar_aging", {k: v for k, v in {"as_of": as_of, "entity": entity}.items() if v})
        if as_json:
            emit_json(data)
            return
        table = Table("current", "1-30", "31-60", "61-90", "over 90", "total",
                      title=f"AR aging as of {data['as_of']} ({data['currency']})")
        table.add_row(*(data[k] for k in ("current", "d1_30", "d31_60", "d61_90", "over_90", "total")))
        out.print(table)

    @app.command("statement")
    @guarded()
    def statement(customer: str, as_of: Annotated[str | None, typer.Option("--as-of")] = None,
                  html: Annotated[str | None, typer.Option("--html", help="Write the statement as HTML")] = None,
                  pdf: Annotated[str | None, typer.Option("--pdf", help="Write the statement as PDF")] = None,
                  as_json: JsonFlag = False) -> None:
        """A customer's statement of account (open items, payments on account, aging)."""
        from closeloop.collections.views import statement_pdf

        with open_app() as cl:
            data = cl.query("statement_of_account", {"customer": customer, "html": bool(html or pdf),
                                                     **({"as_of": as_of} if as_of else {})})
        if html:
            Path(html).write_text(data["html"], encoding="utf-8")
        if pdf:
            Path(pdf).write_bytes(statement_pdf(data["html"]))
        data.pop("html", None)
        if as_json:
            emit_json(data)
            return
        for cur, t in data["totals"].items():
            out.print(f"{data['name']} ({data['customer']}) as of {data['as_of']}: open {t['open']} {cur}, credit"
                      f" on account {t['unapplied_credit']}, net due {t['net_due']}")
