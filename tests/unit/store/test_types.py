"""Column types: the text SQLite keeps for a point in time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import DateTime, make_url

from callwhisper.store.types import UtcDateTime, sqlite_text

SQLITE = make_url("sqlite://").get_dialect()()
POSTGRESQL = make_url("postgresql+asyncpg://").get_dialect()()


def sqlalchemy_sqlite_text(value: datetime) -> object:
    """What SQLAlchemy's own SQLite ``DATETIME`` makes of the naive UTC time."""
    process = DateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
    assert process is not None
    return process(value.astimezone(UTC).replace(tzinfo=None))


zones = st.builds(
    timezone, st.integers(-23 * 60, 23 * 60).map(lambda minutes: timedelta(minutes=minutes))
)


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=zones))
def test_sqlite_text_is_sqlalchemys_datetime_text_of_the_utc_time(value: datetime) -> None:
    assert sqlite_text(value) == sqlalchemy_sqlite_text(value)


def test_sqlite_text_always_writes_microseconds() -> None:
    value = datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert sqlite_text(value) == "2026-03-02 15:00:00.000000"
    assert sqlite_text(value.replace(microsecond=250)) == "2026-03-02 15:00:00.000250"


def test_sqlite_text_of_one_instant_is_the_same_whatever_its_zone_and_however_often() -> None:
    """Texts already made are kept: an instant seen in another zone still gets its UTC text."""
    utc = datetime(2026, 3, 2, 15, 0, 0, 250, tzinfo=UTC)
    eastern = utc.astimezone(timezone(timedelta(hours=-5)))
    assert [sqlite_text(value) for value in (eastern, utc, eastern, utc)] == [
        "2026-03-02 15:00:00.000250"
    ] * 4
    assert sqlite_text(utc.replace(microsecond=251)) == "2026-03-02 15:00:00.000251"


def test_sqlite_text_refuses_a_naive_time() -> None:
    with pytest.raises(
        ValueError, match=r"naive datetime 2026-03-02T15:00:00 \(give a time zone\)"
    ):
        sqlite_text(datetime(2026, 3, 2, 15, 0))


def test_utc_datetime_binds_sqlite_text_on_sqlite_and_aware_utc_on_postgresql() -> None:
    type_ = UtcDateTime()
    assert type_.dialect_impl(SQLITE).bind_processor(SQLITE) is sqlite_text
    process = type_.dialect_impl(POSTGRESQL).bind_processor(POSTGRESQL)
    assert process is not None
    value = datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=-5)))
    bound = process(value)
    assert bound == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    assert bound.tzinfo is UTC
    assert process(None) is None
