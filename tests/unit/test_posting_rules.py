"""Posting rules are validated on load: every rule balances for any payload, fields and roles exist."""

from __future__ import annotations

import copy
from importlib import resources

import yaml
from hypothesis import given
from hypothesis import strategies as st

from closeloop.posting.model import parse_catalogue, parse_rules, plan

CATALOGUE = parse_catalogue(yaml.safe_load((resources.files("closeloop") / "config" / "event_catalogue.yaml")
                                           .read_text()))
SHIPPED = yaml.safe_load((resources.files("closeloop") / "config" / "posting_rules.yaml").read_text())


def test_shipped_rules_are_valid_and_cover_every_money_moving_event():
    rules, problems = parse_rules(SHIPPED, CATALOGUE)
    assert problems == []
    assert set(rules.rules) == {name for name, s in CATALOGUE.items() if s.moves_money}


def broken(mutate) -> list[str]:
    doc = copy.deepcopy(SHIPPED)
    mutate(doc)
    rules, problems = parse_rules(doc, CATALOGUE)
    assert rules is None
    return problems


def test_a_rule_that_cannot_balance_is_refused_with_the_reason():
    problems = broken(lambda d: d["rules"]["invoice.issued"][0]["lines"].pop(2))  # drop the tax line
    assert problems == ["rules.invoice.issued[0]: does not balance for every payload (debits - credits = "
                        "- sum(lines.net) + total), given the identities ['total = sum(lines.net) + sum(lines.tax)',"
                        " 'subtotal = sum(lines.net)', 'tax = sum(lines.tax)']"]


def test_swapped_sides_are_refused():
    def swap(d):
        d["rules"]["payout.paid"][0]["lines"][1] = {"role": "payment_fees", "credit": "fees"}
    assert any("payout.paid" in p and "does not balance" in p for p in broken(swap))


def test_unknown_roles_fields_and_events_are_named():
    def mutate(d):
        d["rules"]["credit.applied"][0]["lines"][0]["role"] = "petty_cash"
        d["rules"]["payout.paid"][0]["lines"][0]["debit"] = "nett"
        d["rules"]["teleport.done"] = [{"lines": []}]
    problems = broken(mutate)
    assert "rules.credit.applied[0].lines[0].role: unknown account role 'petty_cash'" in problems
    assert "rules.payout.paid[0].lines[0].debit: no amount field 'nett'" in problems
    assert "rules.teleport.done: no such event type in the catalogue" in problems


def test_every_money_moving_event_needs_a_rule():
    problems = broken(lambda d: d["rules"].pop("invoice.written_off"))
    assert problems == ["rules: event type invoice.written_off moves money but has no posting rule"]


@given(st.lists(st.tuples(st.integers(-10**9, 10**9), st.integers(0, 10**8)), min_size=1, max_size=8),
       st.integers(0, 10**9))
def test_invoice_rule_balances_for_any_payload_satisfying_the_identities(lines, credit_created):
    rules, _ = parse_rules(SHIPPED, CATALOGUE)
    def dec(minor):
        sign = "-" if minor < 0 else ""
        return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"
    net = sum(n for n, _ in lines)
    tax = sum(t for _, t in lines)
    payload = {"invoice": "INV-1", "entity": "US01", "customer": "C", "currency": "USD", "date": "2026-01-01",
               "due_date": "2026-01-31", "subtotal": dec(net), "tax": dec(tax), "total": dec(net + tax),
               "credit_created": dec(credit_created),
               "lines": [{"line_no": i, "description": "x", "revenue_role": "revenue", "treatment": "ratable",
                          "net": dec(n), "tax": dec(t), "tax_treatment": "standard"}
                         for i, (n, t) in enumerate(lines, 1)]}
    planned = plan(rules.rules["invoice.issued"][0], payload, lambda e: "USD")
    assert sum(line.amount for line in planned.lines) == 0
    assert all(line.amount != 0 for line in planned.lines)
