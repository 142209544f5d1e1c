from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from closeloop.core.calendars import Retail445, calendar_named

R = Retail445()


def test_445_fiscal_years_end_on_the_last_saturday_of_december():
    assert R.year_end(2026) == date(2026, 12, 26)
    assert R.year_end(2025) == date(2025, 12, 27)
    assert R.year_start(2026) == date(2025, 12, 28)
    assert R.bounds("2026-01") == (date(2025, 12, 28), date(2026, 1, 24))      # 4 weeks
    assert R.bounds("2026-03") == (date(2026, 2, 22), date(2026, 3, 28))       # 5 weeks
    assert R.bounds("2026-12") == (date(2026, 11, 22), date(2026, 12, 26))
    assert R.period_of(date(2026, 12, 27)) == "2027-01"
    # 2022 ended on 31 Dec 2022, the 53-week year: period 12 has six weeks
    assert (R.year_end(2022) - R.year_start(2022)).days + 1 == 371
    assert R.bounds("2022-12") == (date(2022, 11, 20), date(2022, 12, 31))


def test_calendar_months():
    cal = calendar_named("calendar")
    assert cal.period_of(date(2026, 2, 14)) == "2026-02"
    assert cal.bounds("2028-02") == (date(2028, 2, 1), date(2028, 2, 29))
    assert cal.next_period("2026-12") == "2027-01"


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 1)))
def test_445_periods_tile_time(day):
    period = R.period_of(day)
    start, end = R.bounds(period)
    assert start <= day <= end
    assert (end - start).days + 1 in (28, 35, 42)
    assert R.period_of(end + timedelta(days=1)) == R.next_period(period)
