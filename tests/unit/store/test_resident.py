"""Resident cap counters of periods that are over are forgotten, a few per reservation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from callwhisper.domain.caps import CAP_PERIODS, CapCharge, CapKey, period_keys
from callwhisper.domain.state import Reservation
from callwhisper.store.resident import (
    FORGET_COUNTERS_AT_MOST,
    FORGET_GRACE,
    WESTMOST_OFFSET,
    ResidentCounters,
    forget_after,
)

ONE = Decimal(1)


def keys(owner: str, now: datetime, timezone: str = "UTC") -> list[CapKey]:
    """The calls counters of ``owner`` for every period containing ``now`` in ``timezone``."""
    local = period_keys(now, timezone)
    return [
        CapKey(owner, "calls", period, key) for period, key in zip(CAP_PERIODS, local, strict=True)
    ]


def reserve(resident: ResidentCounters, name: str, at: datetime, *counters: CapKey) -> None:
    charges = tuple(CapCharge(key, Decimal(100), ONE) for key in counters)
    assert resident.reserve(Reservation(name, charges, (), at)) is None


def ends(key: CapKey) -> datetime:
    """When ``key`` may be forgotten (it has a period that ends)."""
    at = forget_after(key)
    assert at is not None
    return at


def held(resident: ResidentCounters) -> set[CapKey]:
    return set(resident.ledger.used) | set(resident.ledger.reserved)


def test_a_period_can_be_forgotten_once_it_has_ended_at_utc_minus_12() -> None:
    after = WESTMOST_OFFSET + FORGET_GRACE
    assert forget_after(CapKey("b", "calls", "hour", "2026-03-02T23")) == (
        datetime(2026, 3, 3, tzinfo=UTC) + after
    )
    assert forget_after(CapKey("b", "calls", "day", "2026-02-28")) == (
        datetime(2026, 3, 1, tzinfo=UTC) + after
    )
    # ISO week 53 of 2026 runs from Monday 28 December to Sunday 3 January.
    assert forget_after(CapKey("b", "calls", "week", "2026-W53")) == (
        datetime(2027, 1, 4, tzinfo=UTC) + after
    )
    assert forget_after(CapKey("b", "revenue", "month", "2026-12")) == (
        datetime(2027, 1, 1, tzinfo=UTC) + after
    )


def test_total_counters_and_keys_not_written_by_this_version_are_kept() -> None:
    assert forget_after(CapKey("b", "calls", "total", "all")) is None
    assert forget_after(CapKey("b", "calls", "day", "2026-13-01")) is None
    assert forget_after(CapKey("b", "calls", "week", "2026-03")) is None


def test_counters_of_ended_periods_go_and_current_ones_stay() -> None:
    resident = ResidentCounters()
    monday = datetime(2026, 3, 30, 10, 20, tzinfo=UTC)
    old = keys("buyer:acme", monday)
    reserve(resident, "r1", monday, *old)
    resident.commit("r1", ["calls"])
    resident.finish("r1")
    # Thursday of the same ISO week, in April: the hour, day and month of Monday are over.
    thursday = datetime(2026, 4, 2, 12, 0, tzinfo=UTC)
    new = keys("buyer:acme", thursday)
    reserve(resident, "r2", thursday, *new)
    week, total = old[2], old[4]
    assert held(resident) == {week, total, *new}
    usage = resident.counters("auto", keys=new, now=thursday).cap_usage
    assert usage == {new[0]: ONE, new[1]: ONE, week: 2 * ONE, new[3]: ONE, total: 2 * ONE}


def test_a_period_still_current_in_the_owners_time_zone_is_kept() -> None:
    """Pago Pago (UTC-11) is still on 2 March when UTC is on the 3rd: routing reads that day."""
    resident = ResidentCounters()
    evening = datetime(2026, 3, 3, 10, 30, tzinfo=UTC)  # 23:30 on 2 March in Pago Pago
    west = keys("buyer:west", evening, "Pacific/Pago_Pago")
    assert west[1].period_key == "2026-03-02"
    reserve(resident, "r1", evening, *west)
    resident.finish("r1")
    utc_day = CapKey("buyer:utc", "calls", "day", "2026-03-02")
    reserve(resident, "r2", evening - timedelta(hours=11), utc_day)
    resident.finish("r2")
    reserve(resident, "r3", evening, CapKey("buyer:other", "calls", "total", "all"))
    assert set(west) <= held(resident)
    assert utc_day in held(resident)  # over in UTC, but the owner's zone is not known here
    # An hour after 2 March has ended at UTC-12 (noon on the 3rd, UTC), it goes.
    reserve(resident, "r4", ends(utc_day) - timedelta(seconds=1))
    assert utc_day in held(resident)
    reserve(resident, "r5", ends(utc_day))
    assert utc_day not in held(resident)
    assert west[1] not in held(resident)


def test_a_counter_an_open_reservation_charges_stays_until_it_finishes() -> None:
    """A call dialed at 10:59 still commits and releases its 10 o'clock counters at 11:30."""
    resident = ResidentCounters()
    dialed = datetime(2026, 3, 2, 10, 59, tzinfo=UTC)
    hour = CapKey("buyer:acme", "calls", "hour", "2026-03-02T10")
    revenue = CapKey("buyer:acme", "revenue", "hour", "2026-03-02T10")
    reserve(resident, "long", dialed, hour, revenue)
    later = ends(hour) + timedelta(days=1)
    reserve(resident, "next", later, CapKey("buyer:acme", "calls", "total", "all"))
    assert {hour, revenue} <= held(resident)
    resident.commit("long", ["calls"])
    assert resident.ledger.used[hour] == ONE
    resident.finish("long")
    assert not {hour, revenue} & held(resident)


def test_a_backlog_of_ended_counters_is_forgotten_a_few_per_reservation() -> None:
    resident = ResidentCounters()
    start = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    for number in range(40):
        reserve(
            resident,
            f"r{number}",
            start,
            CapKey(f"buyer:{number}", "calls", "hour", "2026-03-02T10"),
        )
        resident.finish(f"r{number}")
    assert resident.cap_counters() == 40
    later = start + timedelta(days=2)
    current = CapKey("buyer:new", "calls", "hour", "2026-03-04T10")
    reserve(resident, "now", later, current)
    assert resident.cap_counters() == 40 + 1 - (1 + FORGET_COUNTERS_AT_MOST)
    assert current in held(resident)
    resident.reserve(Reservation("refused", (CapCharge(current, ONE, ONE),), (), later))
    assert resident.cap_counters() == 40 + 1 - 2 * (1 + FORGET_COUNTERS_AT_MOST)
