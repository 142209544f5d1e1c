"""The demo's revenue step: a recognition run at every month end, then the deferred revenue roll-forward.

``make demo`` (owned by the lead) calls :func:`run_monthly_revrec` after the demo company's contracts are
signed and billed; everything goes through the command vocabulary and is posted by the posting rules.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from closeloop.core.errors import CloseloopError
from closeloop.core.periods import add_months, parse_date


def month_ends(first: date, through: date) -> list[date]:
    """Every calendar month end from ``first``'s month to ``through`` (``through`` itself last)."""
    out = []
    cursor = date(first.year, first.month, 1)
    while True:
        end = add_months(cursor, 1) - timedelta(days=1)
        if end >= through:
            out.append(through)
            return out
        out.append(end)
        cursor = add_months(cursor, 1)


def run_monthly_revrec(app: Any, through: str, console: Any = None) -> dict[str, Any]:
    """Run ``revrec.run`` at each month end up to ``through`` (months whose period is closed are skipped) and
    return — and print on ``console`` — the deferred revenue roll-forward over those months, tied to the GL."""
    last = parse_date(through, field="through")
    with app.unit_of_work(write=False) as uow:
        row = uow.one("SELECT MIN(first) FROM revenue_schedule WHERE active")
    first = date.fromisoformat(row[0]) if row and row[0] else last
    runs = []
    for day in month_ends(min(first, last), last):
        try:
            result = app.do("revrec.run", {"through": day.isoformat()})
        except CloseloopError as exc:
            if str(exc.code) != "period_closed":
                raise
            runs.append({"through": day.isoformat(), "skipped": exc.message})
            continue
        runs.append({"through": day.isoformat(), "run": result.get("run"), "recognized": result["recognized"]})
    period = f"{min(first, last).isoformat()[:7]}..{last.isoformat()[:7]}"
    rollforward = app.query("deferred_revenue_rollforward", {"period": period})
    if console is not None:
        from closeloop.cli.revenue import print_rollforward

        print_rollforward(rollforward, console)
    return {**rollforward, "runs": runs}
