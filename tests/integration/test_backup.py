"""Backup and restore round trip: every report is identical afterwards."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from closeloop.app import App
from closeloop.core.errors import CloseloopError
from closeloop.ops.backup import backup, restore
from closeloop.scenarios.fresh import fresh_database
from tests.conftest import TEST_DATABASE, post


def reports(app):
    return {code: (app.query("trial_balance", {"entity": code}),
                   app.query("profit_and_loss", {"entity": code, "period": "2026-01..2026-12"}),
                   app.query("balance_sheet", {"entity": code}))
            for code in ("US01", "DE01")} | {"verify": app.query("ledger_verify", {}),
                                             "exceptions": app.query("exceptions", {})}


def test_round_trip_keeps_every_report(app, us01, de01, db_url, tmp_path):
    for i in range(1, 13):
        post(app, "US01", f"2026-{i:02d}-10", ("cash", "debit", f"{i}00.00"), ("4000", "credit", f"{i}00.00"))
        post(app, "DE01", f"2026-{i:02d}-11", ("6200", "debit", f"{i}1.50"), ("cash", "credit", f"{i}1.50"))
    app.do("period.close", {"entity": "US01", "period": "2026-01"})
    before = reports(app)
    target = tmp_path / "backup.bin"
    info = backup(db_url, str(target))
    assert info["bytes"] > 0
    with pytest.raises(CloseloopError) as err:
        backup(db_url, str(target))
    assert err.value.code == "conflict"
    with fresh_database(TEST_DATABASE) as other:
        if other.startswith("sqlite"):
            path = sa.engine.make_url(other).database
            with pytest.raises(CloseloopError) as err:
                restore(other, str(target))
            assert err.value.code == "conflict"
        result = restore(other, str(target), force=True)
        assert result["ledger_verified"] is True and result["entries_checked"] == 24
        restored = App(other, migrate=False)
        try:
            assert reports(restored) == before
        finally:
            restored.close()
        _ = path if other.startswith("sqlite") else None
