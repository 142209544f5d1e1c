"""CLI of the integration and control areas: worker, events, exceptions, recon, explain, audit, webhooks.

    closeloop worker [--import MODULE] [--exit-when-idle]
    closeloop events list|show|retry|replay|skip        (events dispatch is in main)
    closeloop exceptions list|show|assign|resolve
    closeloop recon run|rules|show
    closeloop explain RECORD            e.g. journal:JE-US01-0000001, journal:JE-US01-0000001#2, event:12
    closeloop audit [--actor A] [--command C] [--outcome O] [--since D] [--until D]
    closeloop webhooks add|list|remove|deliveries|send|retry

Every query command has ``--json``. ``recon run`` exits 1 when it finds breaks.
"""


import json
from typing import Annotated, Any

import typer


def parse_record(text: str) -> dict[str, Any]:
    """``kind:id`` (``#N`` selects a line), or a JSON object."""
    text = text.strip()
    if text.startswith("{"):
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a record is kind:id or a JSON object")
        return data
    if ":" not in text:
        raise ValueError(f"{text!r}: give kind:id, e.g. journal:JE-US01-0000001 or event:12")
    kind, ident = text.split(":", 1)
    record: dict[str, Any] = {}
    if "#" in ident:
        ident, line = ident.rsplit("#", 1)
        record["line"] = int(line)
    record = {kind: int(ident) if kind in ("event", "exception", "command") and ident.isdigit() else ident,
              **record}
    return record


def register(app: typer.Typer) -> None:  # noqa: C901 - one place that wires every command
    from rich.table import Table

    from closeloop.cli.main import (
        EXIT_CHECK_FAILED,
        EXIT_USAGE,
        JsonFlag,
        emit_json,
        err,
        events_app,
        guarded,
        open_app,
        out,
    )

    exceptions_app = typer.Typer(no_args_is_help=True, help="The exception queue: list, show, assign, resolve.")
    recon_app = typer.Typer(no_args_is_help=True, help="Reconciliation: run rules, list them, show breaks.")
    webhooks_app = typer.Typer(no_args_is_help=True, help="Outbound webhooks: subscriptions and deliveries.")
    app.add_typer(exceptions_app, name="exceptions")
    app.add_typer(recon_app, name="recon")
    app.add_typer(webhooks_app, name="webhooks")

    # ------------------------------------------------------------------ worker

    @app.command("worker")
    def worker(
        imports: Annotated[list[str] | None, typer.Option("--import", help="Module registering extra handlers")] = None,
        batch: Annotated[int, typer.Option("--batch", help="Events claimed per round")] = 100,
        per_transaction: Annotated[int, typer.Option("--per-transaction", help="Events per transaction")] = 1,
        lease: Annotated[float, typer.Option("--lease", help="Lease seconds (PostgreSQL)")] = 30.0,
        poll: Annotated[float, typer.Option("--poll", help="Seconds between polls when idle")] = 0.5,
        exit_when_idle: Annotated[bool, typer.Option("--exit-when-idle", help="Stop when nothing is due")] = False,
        no_webhooks: Annotated[bool, typer.Option("--no-webhooks", help="Do not send webhooks")] = False,
    ) -> None:
        """Deliver events and send webhooks continuously (SIGTERM stops gracefully)."""
        import importlib
        import logging

        from closeloop.integration.worker import Worker, WorkerOptions

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        for module in imports or []:
            importlib.import_module(module)
        with open_app(dispatch="worker") as cl:
            w = Worker(cl, WorkerOptions(batch_size=batch, events_per_transaction=per_transaction,
                                         lease_seconds=lease, poll_seconds=poll, webhooks=not no_webhooks,
                                         exit_when_idle=exit_when_idle))
            w.install_signals()
            err.print(f"worker {w.worker_id} on {cl.url.split('@')[-1]}")
            report = w.run()
        err.print(f"worker {w.worker_id} stopped: {report.to_dict() | {'webhooks': w.sent.to_dict()}}")

    # ------------------------------------------------------------------ events

    def _event_table(items: list[dict[str, Any]]) -> None:
        table = Table("id", "type", "aggregate", "status", "attempts", "next attempt", "last error")
        for e in items:
            (agg_type, agg_id), = e["aggregate"].items()
            table.add_row(str(e["id"]), e["type"], f"{agg_type} {agg_id}", e["status"], str(e["attempts"]),
                          e["next_attempt_at"] or "", (e["last_error"] or "").splitlines()[0][:80]
                          if e["last_error"] else "")
        out.print(table)

    @events_app.command("list")
    @guarded()
    def events_list(
        status: Annotated[str | None, typer.Option("--status", help="pending, done, dead, skipped")] = None,
        type_: Annotated[str | None, typer.Option("--type")] = None,
        aggregate: Annotated[str | None, typer.Option("--aggregate", help="TYPE:ID")] = None,
        limit: Annotated[int, typer.Option("--limit")] = 50,
        as_json: JsonFlag = False,
    ) -> None:
        """List events (newest last) by status, type or aggregate."""
        where: dict[str, Any] = {"status": status, "type": type_, "limit": limit}
        if aggregate:
            where["aggregate_type"], _, where["aggregate_id"] = aggregate.partition(":")
        with open_app() as cl:
            result = cl.query("events", {k: v for k, v in where.items() if v is not None})
        if as_json:
            emit_json(result)
            return
        _event_table(result["items"])
        out.print(f"{len(result['items'])} of {result['count']}")

    @events_app.command("show")
    @guarded()
    def events_show(event: Annotated[int, typer.Argument()], as_json: JsonFlag = False) -> None:
        """One event: payload, delivery per handler, who retried/replayed/skipped it."""
        with open_app() as cl:
            result = cl.query("event", {"event": event})
        if as_json:
            emit_json(result)
            return
        out.print(f"[bold]event {result['id']}[/] {result['type']} v{result['version']}  status {result['status']}"
                  f"  attempts {result['attempts']}")
        out.print(f"aggregate {result['aggregate']}  entity {result['entity']}  recorded {result['recorded_at']}"
                  f" by {result['actor']} ({result['source']})")
        out.print(f"command {result['command_id']}  caused by {result['causation_id']}"
                  f"  correlation {result['correlation_id']}")
        if result["last_error"]:
            out.print(f"[red]last error[/]: {result['last_error']}")
        for h in result["handlers"]:
            out.print(f"  handler {h['handler']}: {'delivered ' + h['delivered_at'] if h['delivered_at'] else 'not yet'}")
        for a in result["actions"]:
            out.print(f"  {a['at']} {a['actor']} {a['action']}: {a['reason'] or ''}")
        out.print_json(json.dumps(result["payload"], default=str))

    def _event_command(name: str, payload: dict[str, Any], as_json: bool) -> None:
        with open_app() as cl:
            result = cl.do(name, payload)
            status = cl.query("event", {"event": payload["event"]})["status"]
        result["status_now"] = status
        if as_json:
            emit_json(result)
        else:
            out.print(f"event {result['event']} ({result['type']}): {result['previous_status']} -> {status}")

    @events_app.command("retry")
    @guarded()
    def events_retry(event: Annotated[int, typer.Argument()],
                     reason: Annotated[str | None, typer.Option("--reason")] = None,
                     as_json: JsonFlag = False) -> None:
        """Deliver a failing or dead event again now (audited)."""
        _event_command("event.retry", {"event": event, "reason": reason}, as_json)

    @events_app.command("replay")
    @guarded()
    def events_replay(event: Annotated[int, typer.Argument()],
                      reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log)")],
                      handler: Annotated[list[str] | None, typer.Option("--handler", help="Re-run this handler even"
                                                                         " if it already ran")] = None,
                      as_json: JsonFlag = False) -> None:
        """Deliver a past event again (to handlers that have not had it, or to the named ones)."""
        _event_command("event.replay", {"event": event, "reason": reason, "handlers": handler or []}, as_json)

    @events_app.command("skip")
    @guarded()
    def events_skip(event: Annotated[int, typer.Argument()],
                    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log)")],
                    as_json: JsonFlag = False) -> None:
        """Give up on a pending or dead event; later events of its aggregate proceed."""
        _event_command("event.skip", {"event": event, "reason": reason}, as_json)

    @events_app.command("backlog")
    @guarded()
    def events_backlog(as_json: JsonFlag = False) -> None:
        """Undelivered events: pending, backing off, waiting, dead, oldest."""
        with open_app() as cl:
            result = cl.query("event_backlog", {})
        if as_json:
            emit_json(result)
        else:
            out.print(result)

    # ------------------------------------------------------------------ exceptions

    @exceptions_app.command("list")
    @guarded()
    def exceptions_list(
        kind: Annotated[str | None, typer.Option("--kind")] = None,
        status: Annotated[str, typer.Option("--status", help="open, resolved, or all")] = "open",
        owner: Annotated[str | None, typer.Option("--owner", help="Owner role")] = None,
        assignee: Annotated[str | None, typer.Option("--assignee")] = None,
        overdue: Annotated[bool, typer.Option("--overdue", help="Only those past their SLA")] = False,
        limit: Annotated[int, typer.Option("--limit")] = 100,
        as_json: JsonFlag = False,
    ) -> None:
        """The exception queue with age and SLA (oldest due first)."""
        where: dict[str, Any] = {"kind": kind, "status": None if status == "all" else status, "owner_role": owner,
                                 "assignee": assignee, "overdue": True if overdue else None, "limit": limit}
        with open_app() as cl:
            result = cl.query("exception_queue", {k: v for k, v in where.items() if v is not None} |
                              ({"status": None} if status == "all" else {}))
        if as_json:
            emit_json(result)
            return
        table = Table("id", "kind", "severity", "owner", "assignee", "age", "due", "amount", "record", "message")
        for i in result["items"]:
            (rtype, rid), = i["record"].items()
            due = ("[red]OVERDUE[/] " if i["overdue"] else "") + (i["due_at"] or "")[:16]
            table.add_row(str(i["id"]), i["kind"], i["severity"], i["owner_role"], i["assignee"] or "",
                          f"{i['age_days']}d", due, f"{i.get('amount', '')} {i.get('currency') or ''}".strip(),
                          f"{rtype} {rid}", i["message"][:70])
        out.print(table)
        out.print(f"{result['count']} exception(s), {result['overdue']} overdue; by kind {result['by_kind']}")

    @exceptions_app.command("show")
    @guarded()
    def exceptions_show(exception: Annotated[int, typer.Argument()], as_json: JsonFlag = False) -> None:
        """One exception: details, history and the playbook of its kind."""
        with open_app() as cl:
            result = cl.query("exception", {"exception": exception})
        if as_json:
            emit_json(result)
            return
        out.print(f"[bold]exception {result['id']}[/] {result['kind']} ({result['severity']}) {result['status']}"
                  f"  owner {result['owner_role']}  assignee {result['assignee'] or '-'}")
        out.print(f"record {result['record']}  amount {result.get('amount', '-')} {result.get('currency') or ''}")
        out.print(f"opened {result['opened_at']} (age {result['age_days']}d), due {result['due_at']}"
                  + ("  [red]OVERDUE[/]" if result["overdue"] else ""))
        out.print(result["message"])
        if result.get("details"):
            out.print_json(json.dumps(result["details"], default=str))
        out.print("[bold]history[/]")
        for h in result["history"]:
            out.print(f"  {h['at']} {h['actor']} {h['action']}: {h['reason'] or ''}")
        if result.get("playbook"):
            from rich.markdown import Markdown

            out.print(Markdown(result["playbook"]))

    @exceptions_app.command("assign")
    @guarded()
    def exceptions_assign(exception: Annotated[int, typer.Argument()], assignee: Annotated[str, typer.Argument()],
                          reason: Annotated[str | None, typer.Option("--reason")] = None,
                          as_json: JsonFlag = False) -> None:
        """Assign an exception to a person."""
        with open_app() as cl:
            result = cl.do("exception.assign", {"exception": exception, "assignee": assignee, "reason": reason})
        emit_json(result) if as_json else out.print(f"exception {exception} assigned to {assignee}")

    @exceptions_app.command("resolve")
    @guarded()
    def exceptions_resolve(
        exception: Annotated[int, typer.Argument()],
        action: Annotated[str, typer.Argument(help="retry, release, accept, adjust, reassign")],
        reason: Annotated[str, typer.Option("--reason", help="Required: why")],
        assignee: Annotated[str | None, typer.Option("--assignee", help="For reassign")] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Act on an exception (exception.resolve)."""
        with open_app() as cl:
            result = cl.do("exception.resolve", {"exception": exception, "action": action, "reason": reason,
                                                 "assignee": assignee})
        emit_json(result) if as_json else out.print(result)

    # ------------------------------------------------------------------ recon

    def _print_recon(result: dict[str, Any]) -> None:
        table = Table("rule", "status", "left", "right", "matched", "breaks", "opened", "closed", "note")
        for r in result["rules"]:
            table.add_row(r["rule"], r["status"], str(r["left"]), str(r["right"]), str(r["matched"]),
                          str(r["breaks"]), str(r["exceptions"]["opened"]), str(r["exceptions"]["closed"]),
                          (r["message"] or "")[:60])
        out.print(table)
        if result["breaks"]:
            breaks = Table("rule", "category", "key", "left", "right", "amount", "exception")
            for b in result["breaks"]:
                key = b["key"] if isinstance(b["key"], str) else " ".join(str(v) for v in b["key"].values())
                breaks.add_row(b["rule"], b["category"], key[:60], b.get("left") or "", b.get("right") or "",
                               f"{b.get('amount') or ''} {b.get('currency') or ''}".strip(),
                               str(b.get("exception") or ""))
            out.print(breaks)
        out.print(f"matched {result['matched']}, breaks {len(result['breaks'])}")

    @recon_app.command("run")
    @guarded()
    def recon_run(
        rule: Annotated[list[str] | None, typer.Option("--rule", "-r", help="Rule id (repeatable; default all"
                                                        " enabled)")] = None,
        file: Annotated[list[str] | None, typer.Option("--file", help="RULE=PATH for a file side")] = None,
        as_of: Annotated[str | None, typer.Option("--as-of")] = None,
        entity: Annotated[str | None, typer.Option("--entity", "-e")] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Run reconciliation rules; breaks open or update exceptions, cleared ones close. Exit 1 on breaks."""
        files = dict(f.split("=", 1) for f in file or [])
        with open_app() as cl:
            result = cl.do("recon.run", {"rules": rule or [], "files": files, "as_of": as_of, "entity": entity})
        if as_json:
            emit_json(result)
        else:
            _print_recon(result)
        if any(b["category"] != "timing" for b in result["breaks"]):
            raise typer.Exit(EXIT_CHECK_FAILED)

    @recon_app.command("show")
    @guarded()
    def recon_show(rule: Annotated[str | None, typer.Option("--rule", "-r")] = None, as_json: JsonFlag = False) -> None:
        """The latest outcome of each rule."""
        with open_app() as cl:
            result = cl.query("recon", {"rule": rule})
        emit_json(result) if as_json else _print_recon(result)

    @recon_app.command("rules")
    @guarded()
    def recon_rules(as_json: JsonFlag = False) -> None:
        """The rules in force, their sides, and whether each can run yet."""
        with open_app() as cl:
            result = cl.query("recon_rules", {})
        if as_json:
            emit_json(result)
            return
        table = Table("rule", "status", "left", "right", "key", "missing")
        for r in result["rules"]:
            table.add_row(r["rule"] + ("" if r["enabled"] else " (off)"), r["status"],
                          r.get("left", r.get("check", "")), r.get("right", ""), ", ".join(r.get("key", [])),
                          r.get("missing", ""))
        out.print(table)

    # ------------------------------------------------------------------ explain, audit

    @app.command("explain")
    @guarded()
    def explain(
        record: Annotated[str, typer.Argument(help="kind:id (journal:JE-US01-0000001, event:12, exception:3,"
                                                   " invoice:INV-1#2) or a JSON object")],
        forward: Annotated[bool, typer.Option("--forward", help="Also what the record caused")] = False,
        as_json: JsonFlag = False,
    ) -> None:
        """Explain a record back to its sources: each step with who and when."""
        try:
            parsed = parse_record(record)
        except ValueError as exc:
            err.print(f"[bold red]usage[/]: {exc}")
            raise typer.Exit(EXIT_USAGE) from None
        with open_app() as cl:
            result = cl.query("lineage", {"record": parsed,
                                          "direction": "both" if forward else "back"})
        if as_json:
            emit_json(result)
            return
        for s in result["steps"]:
            indent = "  " * int(s.get("depth", 0))
            ev = f" [cyan]{s['event']}[/]" if s.get("event") else ""
            who = f" by {s['actor']}" if s.get("actor") else ""
            src = f" ({s['source']})" if s.get("source") and s.get("source") not in ("closeloop",) else ""
            ref = f" [dim]event {s['event_id']}[/]" if s.get("event_id") else ""
            out.print(f"{indent}{s['kind']} {s['id']}{ev}{who}{src} {s.get('at') or ''}{ref}")
        for s in result.get("forward", []):
            out.print(f"[green]->[/] {'  ' * int(s['depth'])}{s['kind']} {s['id']} {s['event']} {s['at']}")

    @app.command("audit")
    @guarded()
    def audit(
        actor: Annotated[str | None, typer.Option("--actor")] = None,
        command: Annotated[str | None, typer.Option("--command", help="Exact, or a prefix like journal.*")] = None,
        outcome: Annotated[str | None, typer.Option("--outcome", help="ok, refused, or an error code")] = None,
        source: Annotated[str | None, typer.Option("--source")] = None,
        since: Annotated[str | None, typer.Option("--since", help="YYYY-MM-DD")] = None,
        until: Annotated[str | None, typer.Option("--until", help="YYYY-MM-DD")] = None,
        limit: Annotated[int, typer.Option("--limit")] = 100,
        as_json: JsonFlag = False,
    ) -> None:
        """The audit log: who ran which command, when, from where, and what came of it."""
        where = {"actor": actor, "command": command, "outcome": outcome, "source": source, "since": since,
                 "until": until, "limit": limit}
        with open_app() as cl:
            result = cl.query("audit", {k: v for k, v in where.items() if v is not None} | {"payloads": as_json})
        if as_json:
            emit_json(result)
            return
        table = Table("id", "at", "actor", "source", "command", "outcome")
        for i in result["items"]:
            table.add_row(str(i["id"]), i["at"], i["actor"], i["source"], i["command"],
                          i["outcome"] if i["outcome"] == "ok" else f"[red]{i['outcome']}[/]")
        out.print(table)
        out.print(f"{len(result['items'])} of {result['count']}")

    # ------------------------------------------------------------------ webhooks

    @webhooks_app.command("add")
    @guarded()
    def webhooks_add(name: Annotated[str, typer.Argument()], url: Annotated[str, typer.Argument()],
                     event: Annotated[list[str], typer.Option("--event", help="Event type, prefix.* or *")],
                     secret: Annotated[str | None, typer.Option("--secret")] = None,
                     as_json: JsonFlag = False) -> None:
        """Subscribe a URL; prints the signing secret (shown once)."""
        with open_app() as cl:
            result = cl.do("webhook.subscribe", {"name": name, "url": url, "event_types": event, "secret": secret})
        emit_json(result) if as_json else out.print(f"subscription {name} -> {url}; secret {result['secret']}")

    @webhooks_app.command("remove")
    @guarded()
    def webhooks_remove(name: Annotated[str, typer.Argument()], as_json: JsonFlag = False) -> None:
        """Deactivate a subscription."""
        with open_app() as cl:
            result = cl.do("webhook.unsubscribe", {"name": name})
        emit_json(result) if as_json else out.print(result)

    @webhooks_app.command("list")
    @guarded()
    def webhooks_list(as_json: JsonFlag = False) -> None:
        """Subscriptions with delivery counts."""
        with open_app() as cl:
            result = cl.query("webhooks", {})
        if as_json:
            emit_json(result)
            return
        table = Table("name", "url", "event types", "deliveries")
        for s in result["items"]:
            table.add_row(s["name"], s["url"], ", ".join(s["event_types"]),
                          ", ".join(f"{k} {v}" for k, v in s["deliveries"].items()))
        out.print(table)

    @webhooks_app.command("deliveries")
    @guarded()
    def webhooks_deliveries(subscription: Annotated[str | None, typer.Option("--subscription")] = None,
                            status: Annotated[str | None, typer.Option("--status")] = None,
                            limit: Annotated[int, typer.Option("--limit")] = 50,
                            as_json: JsonFlag = False) -> None:
        """The delivery log (each attempt with status code, error, duration)."""
        with open_app() as cl:
            result = cl.query("webhook_deliveries", {"subscription": subscription, "status": status, "limit": limit})
        if as_json:
            emit_json(result)
            return
        table = Table("id", "subscription", "event", "type", "status", "attempts", "last", "next attempt")
        for d in result["items"]:
            table.add_row(str(d["id"]), d["subscription"], str(d["event"]), d["event_type"], d["status"],
                          str(d["attempts"]), str(d["last_status"] or d["last_error"] or ""),
                          d["next_attempt_at"] or "")
        out.print(table)

    @webhooks_app.command("send")
    @guarded()
    def webhooks_send(as_json: JsonFlag = False) -> None:
        """Send every due delivery now (one pass; workers do this continuously)."""
        from closeloop.integration.webhooks import WebhookSender
        from closeloop.integration.worker import uow_factory

        with open_app() as cl:
            report = WebhookSender(uow_factory(cl)).run()
        emit_json(report.to_dict()) if as_json else out.print(report.to_dict())

    @webhooks_app.command("retry")
    @guarded()
    def webhooks_retry(delivery: Annotated[int, typer.Argument()],
                       reason: Annotated[str | None, typer.Option("--reason")] = None,
                       as_json: JsonFlag = False) -> None:
        """Send a failing or dead delivery again."""
        with open_app() as cl:
            result = cl.do("webhook.retry", {"delivery": delivery, "reason": reason})
        emit_json(result) if as_json else out.print(result)
