"""Hours of operation: open/closed decisions and the reasons given when closed."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from callwhisper.domain.schedule import Schedule, parse_time_range

NY = ZoneInfo("America/New_York")
WEEKDAYS_9_TO_5 = {
    day: ["09:00-12:00", "13:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")
}


def at(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NY)


def test_range_parses_to_minutes_and_midnight_end_is_allowed() -> None:
    assert parse_time_range("09:30-17:00") == (570, 1020)
    assert parse_time_range("18:00-24:00") == (1080, 1440)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("09:00 to 17:00", "'09:00 to 17:00' is not a time range like '09:00-17:00'"),
        ("0900-1700", "'0900' is not a time like '09:30'"),
        ("09:00-25:00", "'25:00' is not a time of day"),
        ("9:0-17:00", "'9:0' is not a time like '09:30'"),
        ("10:00-10:00", "'10:00-10:00' is empty (start equals end)"),
    ],
)
def test_malformed_range_is_rejected_with_exact_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        parse_time_range(text)


def test_open_during_hours_and_closed_during_the_lunch_break() -> None:
    schedule = Schedule(hours=WEEKDAYS_9_TO_5)
    monday = at(2026, 11, 23, 10)
    assert schedule.is_open(monday, "America/New_York")
    assert not schedule.is_open(at(2026, 11, 23, 12, 30), "America/New_York")
    assert schedule.closed_reason(at(2026, 11, 23, 12, 30), "America/New_York") == (
        "closed until 13:00 America/New_York"
    )


def test_closing_time_is_exclusive() -> None:
    schedule = Schedule(hours=WEEKDAYS_9_TO_5)
    assert schedule.is_open(at(2026, 11, 23, 16, 59), "America/New_York")
    assert not schedule.is_open(at(2026, 11, 23, 17, 0), "America/New_York")


def test_weekend_reason_names_the_next_opening_day() -> None:
    schedule = Schedule(hours=WEEKDAYS_9_TO_5)
    saturday = at(2026, 11, 21, 11)
    assert schedule.closed_reason(saturday, "America/New_York") == (
        "closed until Mon 09:00 America/New_York"
    )


def test_hours_are_read_in_the_schedule_time_zone_not_the_callers() -> None:
    schedule = Schedule(timezone="America/Los_Angeles", hours={"mon": ["09:00-17:00"]})
    # 16:30 UTC on a Monday in November is 08:30 in Los Angeles.
    early = datetime(2026, 11, 23, 16, 30, tzinfo=UTC)
    assert not schedule.is_open(early, "America/New_York")
    assert schedule.closed_reason(early, "America/New_York") == (
        "closed until 09:00 America/Los_Angeles"
    )
    assert schedule.is_open(datetime(2026, 11, 23, 17, 30, tzinfo=UTC), "America/New_York")


def test_overnight_range_spills_into_the_next_morning() -> None:
    schedule = Schedule(hours={"fri": ["22:00-02:00"]}, overnight=True)
    assert schedule.is_open(at(2026, 11, 27, 23), "America/New_York")
    assert schedule.is_open(at(2026, 11, 28, 1, 59), "America/New_York")
    assert not schedule.is_open(at(2026, 11, 28, 2), "America/New_York")


def test_inverted_range_without_overnight_flag_is_an_error() -> None:
    with pytest.raises(ValidationError, match="ends before it starts; set overnight: true"):
        Schedule(hours={"fri": ["22:00-02:00"]})


def test_overlapping_ranges_are_an_error() -> None:
    message = r"hours.mon: ranges overlap \(09:00-12:00, 11:00-13:00\)"
    with pytest.raises(ValidationError, match=message):
        Schedule(hours={"mon": ["09:00-12:00", "11:00-13:00"]})


def test_closed_date_closes_the_whole_day_and_reason_skips_it() -> None:
    schedule = Schedule(hours=WEEKDAYS_9_TO_5, closed_dates=[date(2026, 11, 26)])
    thanksgiving = at(2026, 11, 26, 10)
    assert not schedule.is_open(thanksgiving, "America/New_York")
    assert schedule.closed_reason(thanksgiving, "America/New_York") == (
        "closed until Fri 09:00 America/New_York"
    )


def test_schedule_without_hours_is_always_open_except_closed_dates() -> None:
    schedule = Schedule(closed_dates=[date(2026, 12, 25)])
    assert schedule.is_open(at(2026, 12, 24, 3), "America/New_York")
    assert schedule.closed_reason(at(2026, 12, 25, 3), "America/New_York") == (
        "closed until Sat 00:00 America/New_York"
    )


def test_schedule_with_no_hours_at_all_says_so() -> None:
    schedule = Schedule(hours={})
    assert schedule.closed_reason(at(2026, 11, 23, 10), "America/New_York") == (
        "closed: no opening hours"
    )


def test_unknown_time_zone_is_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        Schedule(timezone="Mars/Olympus")


def test_open_hours_follow_daylight_saving_time() -> None:
    schedule = Schedule(hours={"mon": ["09:00-10:00"]})
    # 13:30 UTC is 09:30 EDT in July but 08:30 EST in November.
    assert schedule.is_open(datetime(2026, 7, 6, 13, 30, tzinfo=UTC), "America/New_York")
    assert not schedule.is_open(datetime(2026, 11, 23, 13, 30, tzinfo=UTC), "America/New_York")
