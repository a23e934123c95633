"""Cap periods, descriptions and the counters one call reserves."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from callwhisper.domain.caps import (
    CapCharge,
    CapKey,
    Caps,
    charges_for,
    describe_cap,
    period_key,
    period_keys,
)


def test_period_keys_are_calendar_periods_in_the_owner_time_zone() -> None:
    # 03:30 UTC on Monday 2026-11-23 is still Sunday evening in New York.
    now = datetime(2026, 11, 23, 3, 30, tzinfo=UTC)
    zone = "America/New_York"
    assert period_key("hour", now, zone) == "2026-11-22T22"
    assert period_key("day", now, zone) == "2026-11-22"
    assert period_key("week", now, zone) == "2026-W47"
    assert period_key("month", now, zone) == "2026-11"
    assert period_key("total", now, zone) == "all"
    assert period_key("day", now, "UTC") == "2026-11-23"
    assert period_key("week", now, "UTC") == "2026-W48"


def test_period_keys_are_every_period_key_in_order() -> None:
    now = datetime(2026, 11, 23, 3, 30, tzinfo=UTC)
    assert period_keys(now, "America/New_York") == (
        "2026-11-22T22",
        "2026-11-22",
        "2026-W47",
        "2026-11",
        "all",
    )


def test_iso_week_of_a_new_year_belongs_to_the_previous_year() -> None:
    assert period_key("week", datetime(2027, 1, 1, 12, tzinfo=UTC), "UTC") == "2026-W53"


def test_cap_description_reads_like_an_operator_would_say_it() -> None:
    assert describe_cap("calls", "day", Decimal(50), Decimal(50)) == "daily calls cap 50/50"
    assert describe_cap("revenue", "month", Decimal("1999.50"), Decimal(2000)) == (
        "monthly revenue cap 1999.50/2000"
    )


def test_charges_reserve_one_call_or_the_expected_revenue() -> None:
    caps = Caps.model_validate(
        {"calls": {"daily": 50, "total": 1000}, "revenue": {"daily": "500"}, "concurrency": 3}
    )
    now = datetime(2026, 11, 23, 15, tzinfo=UTC)
    charges = charges_for("buyer:b1", caps, now, "UTC", Decimal("25.00"))
    assert charges == [
        CapCharge(CapKey("buyer:b1", "calls", "day", "2026-11-23"), Decimal(50), Decimal(1)),
        CapCharge(CapKey("buyer:b1", "calls", "total", "all"), Decimal(1000), Decimal(1)),
        CapCharge(CapKey("buyer:b1", "revenue", "day", "2026-11-23"), Decimal(500), Decimal(25)),
    ]


def test_no_caps_means_no_charges() -> None:
    assert charges_for("buyer:b1", None, datetime(2026, 1, 1, tzinfo=UTC), "UTC", Decimal(1)) == []


def test_negative_cap_is_rejected_at_its_location() -> None:
    with pytest.raises(ValidationError) as info:
        Caps.model_validate({"calls": {"daily": -1}})
    assert info.value.errors()[0]["loc"] == ("calls", "daily")
