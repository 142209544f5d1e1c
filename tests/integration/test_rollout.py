"""Rollout waves (readiness gates, go/no-go, the live-scope guard) and the variations register."""

from __future__ import annotations

from datetime import date

import pytest

from closeloop.core.errors import CloseloopError

PLAN = """
waves:
  - wave: W1
    name: US pilot
    scope: {entities: [US01]}
    gates:
      - {measure: open_exceptions, kind: tax_undetermined, max: 0}
      - {measure: scenarios_passing}
  - wave: W2
    name: Germany
    scope: {entities: [DE01], capabilities: [revenue_automation]}
    gates:
      - {measure: data_quality_score, min: "95"}
capabilities:
  revenue_automation: [fx.revalue]
"""


def test_waves_gate_commands_outside_the_live_scope(app, us01, de01):
    app.do("waves.plan", {"body": PLAN})
    with pytest.raises(CloseloopError) as err:
        app.do("journal.post", {"entity": "US01", "date": "2026-01-05", "lines": [
            {"account": "cash", "debit": "1.00"}, {"account": "3000", "credit": "1.00"}]})
    assert err.value.code == "not_live" and err.value.details["wave"] == "W1"
    assert "wave W1 (US pilot) will bring it" in err.value.message
    status = app.query("waves_status", {"wave": "W1"})["waves"][0]
    assert status["go"] is False
    assert status["gates"][1]["evidence"].startswith("the scenario suite has not been run")
    with pytest.raises(CloseloopError) as err:
        app.do("wave.golive", {"wave": "W1"})
    assert err.value.code == "conflict"
    app.do("waves.record_scenarios", {"passed": 40, "failed": 0})
    assert app.do("wave.golive", {"wave": "W1"})["status"] == "live"
    app.do("journal.post", {"entity": "US01", "date": "2026-01-05", "lines": [
        {"account": "cash", "debit": "1.00"}, {"account": "3000", "credit": "1.00"}]})
    with pytest.raises(CloseloopError) as err:
        app.do("fx.revalue", {"entity": "DE01", "period": "2026-01"})
    assert err.value.code == "not_live" and err.value.details["wave"] == "W2"


def test_wave_gate_failing_on_data_quality(app, us01, de01):
    app.do("waves.plan", {"body": PLAN})
    for i in range(4):  # accounts with only a name and a country: completeness is poor
        app.do("customer.upsert", {"source": "crm", "external_id": f"SF-{i}", "name": f"Thin Account {i}",
                                   "country": "DE"})
    w2 = app.query("waves_status", {"wave": "W2"})["waves"][0]
    gate = w2["gates"][0]
    score = app.query("kpi", {"name": "data_quality_score"})["value"]
    assert gate["measure"] == "data_quality_score" and gate["value"] == score
    assert float(score) < 95 and gate["passed"] is False and w2["go"] is False
    assert gate["evidence"] == f"data-quality score {score} (minimum 95)"


def test_plan_validation_names_problems(app):
    with pytest.raises(CloseloopError) as err:
        app.do("waves.plan", {"body": "waves:\n  - wave: W1\n    gates: [{measure: vibes}]\n"})
    assert err.value.code == "validation_error" and "measure must be one of" in err.value.message


def test_variations_need_approval_and_expire(app, clock):
    base = {"variation_id": "VAR-CA-1", "title": "California billing day", "area": "billing", "scope": "region CA",
            "classification": "regulatory", "owner": "ops-west", "reason": "state rule", "review_date": "2026-03-31"}
    with pytest.raises(CloseloopError) as err:
        app.do("variation.register", {**base, "classification": "whim"})
    assert err.value.code == "validation_error"
    app.do("variation.register", base, actor="alice")
    with pytest.raises(CloseloopError) as err:
        app.do("variation.approve", {"variation_id": "VAR-CA-1"}, actor="alice")
    assert err.value.code == "forbidden"
    app.do("variation.approve", {"variation_id": "VAR-CA-1"}, actor="bob")
    assert app.query("variations", {})["items"][0]["active"] is True
    clock.set(date(2026, 4, 2))
    assert app.do("variations.review", {})["expired"] == ["VAR-CA-1"]
    exc = app.query("exceptions", {"kind": "variation_expired"})
    assert exc["count"] == 1 and exc["items"][0]["record"] == {"variation": "VAR-CA-1"}
    assert app.query("variations", {})["items"][0]["status"] == "expired"


def test_scenario_counts_are_validated(app):
    with pytest.raises(CloseloopError) as err:
        app.do("waves.record_scenarios", {"passed": 34007468793, "failed": 0})
    assert err.value.code == "validation_error" and err.value.details["field"] == "passed"
    with pytest.raises(CloseloopError):
        app.do("waves.record_scenarios", {"passed": 1, "failed": -1})
