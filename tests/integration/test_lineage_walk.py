"""Lineage: from a record back through the events that caused it to the commands (and source records) that
started the flow, and forward to what it caused; explainers per record kind."""

from __future__ import annotations

from datetime import timedelta

import pytest

from closeloop.control import lineage as ln
from closeloop.core import events as ev
from closeloop.core.errors import CloseloopError
from tests.conftest import post


@pytest.fixture
def derived_handler():
    def derive(uow, e):
        uow.emit("thing.derived", "thing", f"T-{e.payload['journal']}", {"from": e.payload["journal"]})

    ev._HANDLERS.setdefault("journal.posted", []).append(ev.Handler("test.derive", "journal.posted", derive))
    yield
    ev._HANDLERS["journal.posted"] = [h for h in ev._HANDLERS["journal.posted"] if h.name != "test.derive"]
    if not ev._HANDLERS["journal.posted"]:
        del ev._HANDLERS["journal.posted"]


def test_journal_line_back_to_the_command_that_posted_it(app, us01):
    app.do("journal.post", {"entity": "US01", "date": "2026-01-05", "memo": "sale", "lines": [
        {"account": "cash", "debit": "5.00"}, {"account": "4000", "credit": "5.00"}]}, actor="alice")
    result = app.query("lineage", {"record": {"journal": "JE-US01-0000001", "line": 2}})
    kinds = [(s["kind"], s["id"], s["event"], s["actor"]) for s in result["steps"]]
    assert kinds[0] == ("journal_line", "JE-US01-0000001#2", "posted", "alice")
    assert ("journal", "JE-US01-0000001", "journal.posted", "alice") in kinds
    command = next(s for s in result["steps"] if s["kind"] == "command")
    assert (command["event"], command["actor"], command["outcome"]) == ("journal.post", "alice", "ok")
    assert result["sources"] == [{k: command[k] for k in ("kind", "id", "event", "at", "actor", "source")}]
    assert result["steps"][0]["detail"] == "4000 -5.00"


def test_an_event_caused_by_a_handler_is_explained_through_its_cause_and_forward(app, us01, derived_handler):
    post(app, "US01", "2026-01-05", ("cash", "debit", "1.00"), ("3000", "credit", "1.00"))
    back = app.query("lineage", {"record": {"thing": "T-JE-US01-0000001"}})
    events = [s["event"] for s in back["steps"]]
    assert events == ["thing.derived", "journal.posted", "journal.post"]
    assert back["steps"][0]["caused_by"] == back["steps"][1]["event_id"]
    assert [s["depth"] for s in back["steps"]] == [0, 1, 2]
    both = app.query("lineage", {"record": {"journal": "JE-US01-0000001"}, "direction": "both"})
    assert [(s["kind"], s["event"]) for s in both["forward"]] == [("thing", "thing.derived")]


def test_a_dead_letter_exception_leads_back_to_the_event_and_its_command(app, us01, clock):
    def failing(uow, e):
        raise RuntimeError("no route to ERP")

    ev._HANDLERS.setdefault("journal.posted", []).append(ev.Handler("test.fail", "journal.posted", failing))
    try:
        post(app, "US01", "2026-01-05", ("cash", "debit", "1.00"), ("3000", "credit", "1.00"))
        for _ in range(5):
            clock.set(clock.today() + timedelta(days=1))
            app.dispatch()
    finally:
        ev._HANDLERS["journal.posted"] = [h for h in ev._HANDLERS["journal.posted"] if h.name != "test.fail"]
        if not ev._HANDLERS["journal.posted"]:
            del ev._HANDLERS["journal.posted"]
    [item] = app.query("exceptions", {"kind": "sync_failed"})["items"]
    steps = app.query("lineage", {"record": {"exception": item["id"]}})["steps"]
    summary = [(s["kind"], s["event"]) for s in steps]
    assert summary[0] == ("exception", "sync_failed opened")
    assert ("journal", "journal.posted") in summary and ("command", "journal.post") in summary
    opened = next(s for s in steps if s["event"] == "exception.opened")
    posted = next(s for s in steps if s["event"] == "journal.posted")
    assert opened["caused_by"] == posted["event_id"] and posted["status"] == "dead"


def test_command_explainers_name_source_records_and_unknown_records_are_not_found(app):
    @ln.command_explainer("probe.emit")
    def source_of_probe(uow, audit, payload):
        return [{"kind": "source_record", "id": f"monitoring:{payload['probe']}", "event": "ping", "at": None,
                 "actor": None, "source": "monitoring"}]

    try:
        app.do("probe.emit", {"probe": "p1"})
        result = app.query("lineage", {"record": {"probe": "p1"}})
        assert [s["kind"] for s in result["steps"]] == ["probe", "command", "source_record"]
        assert result["sources"][-1]["id"] == "monitoring:p1"
    finally:
        ln._COMMAND_EXPLAINERS.pop("probe.emit", None)
    with pytest.raises(CloseloopError) as exc:
        app.query("lineage", {"record": {"invoice": "NOPE-1"}})
    assert exc.value.code == "not_found"
    with pytest.raises(CloseloopError) as exc:
        app.query("lineage", {"record": {"journal": "JE-US01-0000001"}, "direction": "sideways"})
    assert exc.value.code == "validation_error"
