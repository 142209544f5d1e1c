from __future__ import annotations

import pytest

from closeloop.core.errors import CloseloopError
from closeloop.core.exception_queue import on_resolve, open_exception


def test_open_query_dedup_and_resolve(app):
    with app.unit_of_work() as uow:
        first = open_exception(uow, "recon_break", record_type="invoice", record_id="INV-1", message="AR differs",
                               amount=1250, currency="USD", entity="US01", dedup_key="recon:ar:INV-1")
        again = open_exception(uow, "recon_break", record_type="invoice", record_id="INV-1",
                               message="AR differs by 13.00", amount=1300, currency="USD", entity="US01",
                               dedup_key="recon:ar:INV-1")
        open_exception(uow, "not_owner", record_type="customer", record_id="SF-1", message="billing changed name")
    assert first == again
    result = app.query("exceptions", {"kind": "recon_break", "status": "open"})
    assert result["count"] == 1
    item = result["items"][0]
    assert (item["owner_role"], item["amount"], item["record"], item["message"]) == (
        "controller", "13.00", {"invoice": "INV-1"}, "AR differs by 13.00")
    assert app.query("exceptions", {})["count"] == 2
    app.do("exception.resolve", {"exception": first, "action": "reassign", "reason": "ledger team",
                                 "assignee": "carol"})
    assert app.query("exceptions", {"kind": "recon_break"})["items"][0]["assignee"] == "carol"
    with pytest.raises(CloseloopError) as exc:
        app.do("exception.resolve", {"exception": first, "action": "retry", "reason": "try"})
    assert exc.value.code == "validation_error"
    done = app.do("exception.resolve", {"exception": first, "action": "accept", "reason": "timing difference"})
    assert done["status"] == "resolved"
    assert app.query("exceptions", {"kind": "recon_break", "status": "open"})["count"] == 0
    with pytest.raises(CloseloopError) as exc:
        app.do("exception.resolve", {"exception": first, "action": "accept", "reason": "again"})
    assert exc.value.code == "conflict"
    with pytest.raises(CloseloopError) as exc:
        app.query("exceptions", {"kind": "nonsense"})
    assert exc.value.code == "validation_error"


def test_area_resolution_effects(app, monkeypatch):
    from closeloop.core import exception_queue

    calls = []
    # a stub for this test only: billing registers the real release of held invoices
    monkeypatch.setitem(exception_queue._RESOLVERS, ("tax_undetermined", "release"),
                        exception_queue._RESOLVERS.get(("tax_undetermined", "release")))

    @on_resolve("tax_undetermined", "release")
    def release(uow, item, cmd):
        calls.append(item["record"])
        return {"released": item["record"]["invoice"]}

    with app.unit_of_work() as uow:
        exc_id = open_exception(uow, "tax_undetermined", record_type="invoice", record_id="H-1", message="no rate")
    result = app.do("exception.resolve", {"exception": exc_id, "action": "release", "reason": "fixed"})
    assert result["released"] == "H-1" and calls == [{"invoice": "H-1"}]
