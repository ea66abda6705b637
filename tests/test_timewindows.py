"""Time intervals for KPI alert rules (catalog/timewindows.py): weekdays, times, days of the
month, months and IANA time zones, parsed from plain YAML as Alertmanager writes them."""

from __future__ import annotations

from datetime import datetime

import pytest
import yaml

from opsmetrics.catalog.timewindows import TimeInterval, parse_time_interval


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


BUSINESS_HOURS_BERLIN = """
- weekdays: [monday:friday]
  times: [{start_time: 09:00, end_time: 17:00}]
  location: Europe/Berlin
"""


def interval(text: str) -> TimeInterval:
    return parse_time_interval(yaml.safe_load(text))


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        ("2024-06-03T07:00+00:00", True),  # Monday 09:00 in Berlin (CEST, UTC+2)
        ("2024-06-03T06:59+00:00", False),  # 08:59 in Berlin
        ("2024-06-03T14:59+00:00", True),  # 16:59
        ("2024-06-03T15:00+00:00", False),  # 17:00: the end is excluded
        ("2024-01-08T08:00+00:00", True),  # winter (CET, UTC+1): 09:00
        ("2024-01-08T07:30+00:00", False),  # 08:30 in Berlin
        ("2024-06-08T10:00+00:00", False),  # Saturday
        ("2024-06-09T10:00+00:00", False),  # Sunday
        ("2024-06-07T22:30+00:00", False),  # Friday 22:30 UTC is Saturday 00:30 in Berlin
    ],
)
def test_business_hours_in_a_time_zone(moment: str, inside: bool) -> None:
    assert interval(BUSINESS_HOURS_BERLIN).contains(ms(moment)) is inside


def test_weekend_in_the_time_zone_not_in_utc() -> None:
    weekend = interval("[{weekdays: [saturday, sunday], location: Asia/Tokyo}]")
    # Friday 16:00 UTC is Saturday 01:00 in Tokyo; Sunday 16:00 UTC is Monday 01:00 there.
    assert weekend.contains(ms("2024-06-07T16:00+00:00"))
    assert not weekend.contains(ms("2024-06-09T16:00+00:00"))
    assert not weekend.contains(ms("2024-06-07T14:00+00:00"))


def test_days_of_month_months_and_any_window() -> None:
    month_end = interval("[{days_of_month: ['-1'], months: [february]}, {months: [december]}]")
    assert month_end.contains(ms("2024-02-29T12:00+00:00"))  # leap year: the 29th is the last
    assert not month_end.contains(ms("2024-02-28T12:00+00:00"))
    assert month_end.contains(ms("2024-12-03T12:00+00:00"))  # the second window
    assert not month_end.contains(ms("2024-03-31T12:00+00:00"))


def test_unquoted_ranges_read_as_base_60_numbers_still_work() -> None:
    # YAML 1.1 reads 17:00 as 1020 and 1:5 as 65; both mean what was written.
    got = interval("[{days_of_month: [1:5], times: [{start_time: 10:00, end_time: 17:00}]}]")
    assert got.contains(ms("2024-06-05T16:59+00:00"))
    assert not got.contains(ms("2024-06-06T12:00+00:00"))
    assert not got.contains(ms("2024-06-05T17:00+00:00"))


def test_an_empty_interval_contains_every_moment() -> None:
    assert TimeInterval().contains(0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[{weekdays: [funday]}]", "[0].weekdays: 'funday' is not a number"),
        ("[{location: Mars/Olympus}]", "[0].location: unknown time zone 'Mars/Olympus'"),
        ("[{times: [{start_time: '18:00', end_time: '09:00'}]}]", "start_time must be before"),
        ("[{times: [{start_time: '25:00', end_time: '26:00'}]}]", "is not a time of day"),
        ("[{days_of_month: ['40']}]", "days are 1 to 31"),
        ("[{hours: [1]}]", "[0].hours: unknown field"),
    ],
)
def test_problems_name_the_field(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        interval(text)
    assert message in str(caught.value)
