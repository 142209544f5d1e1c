"""Property-based: random valid journals always leave the trial balance balanced and equal to the lines."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeloop.core.money import format_minor
from closeloop.ledger.model import EntryDraft, LineDraft
from closeloop.ledger.service import post_entries

ACCOUNTS = ["1000", "1100", "2100", "2200", "3000", "4000", "4100", "6200", "6400", "7000"]


@st.composite
def entries(draw):
    day = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 364)))
    n = draw(st.integers(2, 4))
    amounts = [draw(st.integers(-10**9, 10**9)) for _ in range(n - 1)]
    amounts.append(-sum(amounts))
    accounts = [draw(st.sampled_from(ACCOUNTS)) for _ in range(n)]
    return day.isoformat(), list(zip(accounts, amounts, strict=True))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(entries(), min_size=1, max_size=40), as_of_offset=st.integers(0, 364))
def test_trial_balance_equals_sum_of_lines(app, us01, batch, as_of_offset):
    drafts = [EntryDraft("US01", day, "generated", tuple(LineDraft(a, amt) for a, amt in lines))
              for day, lines in batch]
    with app.unit_of_work() as uow:
        post_entries(uow, drafts)
    with app.unit_of_work(write=False) as uow:
        rows = uow.all("SELECT a.code, e.date, l.amount FROM journal_line l JOIN journal_entry e ON e.id = l.entry_id"
                       " JOIN ledger_account a ON a.id = l.account_id")
    as_of = (date(2026, 1, 1) + timedelta(days=as_of_offset)).isoformat()
    for when in (None, as_of):
        expected: dict[str, int] = defaultdict(int)
        for code, day, amount in rows:
            if when is None or day <= when:
                expected[code] += int(amount)
        tb = app.query("trial_balance", {"entity": "US01", "as_of": when})
        assert tb["accounts"] == {c: format_minor(v, "USD") for c, v in sorted(expected.items()) if v}
        assert tb["balanced"] is True
        assert tb["debits"] == tb["credits"]
        assert tb["debits"] == format_minor(sum(v for v in expected.values() if v > 0), "USD")
    assert app.query("ledger_verify", {})["ok"] is True
