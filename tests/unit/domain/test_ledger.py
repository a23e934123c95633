"""The reference cap ledger: reservations can never overshoot a cap."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callwhisper.domain.caps import CapCharge, CapKey
from callwhisper.domain.state import ConcurrencyLimit, MemoryCapLedger, Reservation

NOW = datetime(2026, 11, 23, 15, tzinfo=UTC)
CALLS = CapKey("buyer:b", "calls", "day", "2026-11-23")
CONVERSIONS = CapKey("buyer:b", "conversions", "day", "2026-11-23")
REVENUE = CapKey("buyer:b", "revenue", "day", "2026-11-23")


def reservation(rid: str, revenue: Decimal = Decimal(20), concurrency: int = 10) -> Reservation:
    return Reservation(
        rid,
        (
            CapCharge(CALLS, Decimal(2), Decimal(1)),
            CapCharge(CONVERSIONS, Decimal(1), Decimal(1)),
            CapCharge(REVENUE, Decimal(50), revenue),
        ),
        (ConcurrencyLimit("buyer:b", concurrency),),
        NOW,
    )


def test_reservation_counts_against_the_cap_before_the_outcome_is_known() -> None:
    ledger = MemoryCapLedger()
    assert ledger.reserve(reservation("r1")) is None
    assert ledger.reserve(reservation("r2")) == "daily conversions cap 1/1"
    assert ledger.usage(CALLS) == Decimal(1)
    assert ledger.in_progress == {"buyer:b": 1}


def test_failed_attempt_releases_everything() -> None:
    ledger = MemoryCapLedger()
    ledger.reserve(reservation("r1"))
    ledger.finish("r1")
    assert ledger.usage(CALLS) == 0
    assert ledger.usage(REVENUE) == 0
    assert ledger.in_progress == {"buyer:b": 0}
    assert ledger.reserve(reservation("r2")) is None


def test_answered_then_declined_keeps_the_call_but_not_the_conversion() -> None:
    ledger = MemoryCapLedger()
    ledger.reserve(reservation("r1"))
    ledger.commit("r1", {"calls"})
    ledger.finish("r1")
    assert ledger.used == {CALLS: Decimal(1)}
    assert ledger.usage(CONVERSIONS) == 0


def test_conversion_keeps_the_actual_revenue() -> None:
    ledger = MemoryCapLedger()
    ledger.reserve(reservation("r1", revenue=Decimal(20)))
    ledger.commit("r1", {"calls", "connections"})
    ledger.commit("r1", {"conversions", "revenue"}, revenue=Decimal("17.50"))
    ledger.finish("r1")
    assert ledger.usage(REVENUE) == Decimal("17.50")
    assert ledger.usage(CONVERSIONS) == 1


def test_refused_reservation_changes_nothing() -> None:
    ledger = MemoryCapLedger()
    ledger.reserve(reservation("r1"))
    ledger.commit("r1", {"calls"})
    ledger.finish("r1")
    before = (dict(ledger.used), dict(ledger.reserved), dict(ledger.in_progress))
    assert ledger.reserve(reservation("r2", revenue=Decimal(60))) == "daily revenue cap 0/50"
    assert (ledger.used, ledger.reserved, ledger.in_progress) == before


def test_concurrency_counts_calls_in_progress() -> None:
    ledger = MemoryCapLedger()
    only_concurrency = Reservation("r1", (), (ConcurrencyLimit("buyer:b", 1),), NOW)
    assert ledger.reserve(only_concurrency) is None
    second = Reservation("r2", (), (ConcurrencyLimit("buyer:b", 1),), NOW)
    assert ledger.reserve(second) == "concurrency 1/1"
    ledger.finish("r1")
    assert ledger.reserve(second) is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["reserve", "answer", "convert", "finish"]), st.integers(0, 7)),
        max_size=80,
    )
)
def test_caps_are_never_exceeded_under_random_interleavings(ops: list[tuple[str, int]]) -> None:
    ledger = MemoryCapLedger()
    live: set[str] = set()
    for op, n in ops:
        rid = f"r{n}"
        if op == "reserve" and rid not in live:
            if ledger.reserve(reservation(rid, revenue=Decimal(n + 10), concurrency=3)) is None:
                live.add(rid)
        elif op == "answer" and rid in live:
            ledger.commit(rid, {"calls", "connections"})
        elif op == "convert" and rid in live:
            ledger.commit(rid, {"conversions", "revenue"})
        elif op == "finish" and rid in live:
            ledger.finish(rid)
            live.remove(rid)
        assert ledger.usage(CALLS) <= 2
        assert ledger.usage(CONVERSIONS) <= 1
        assert ledger.usage(REVENUE) <= 50
        assert 0 <= ledger.in_progress.get("buyer:b", 0) <= 3
        assert all(value >= 0 for value in ledger.reserved.values())
    for rid in list(live):
        ledger.finish(rid)
    assert all(value == 0 for value in ledger.reserved.values())
    assert ledger.in_progress.get("buyer:b", 0) == 0


def test_a_cap_is_named_before_a_full_concurrency_slot() -> None:
    ledger = MemoryCapLedger()
    assert ledger.reserve(reservation("r1", concurrency=1)) is None
    assert ledger.reserve(reservation("r2", concurrency=1)) == "daily conversions cap 1/1"
    ledger.commit("r1", {"calls"})
    ledger.finish("r1")
    only_slot = Reservation("r3", (), (ConcurrencyLimit("buyer:b", 0),), NOW)
    assert ledger.reserve(only_slot) == "concurrency 0/0"


def test_a_held_reservation_settles_as_if_this_ledger_had_made_it() -> None:
    """hold() takes back an open reservation whose amounts the counters already include."""
    ledger = MemoryCapLedger()
    ledger.used[CALLS] = Decimal(1)
    ledger.reserved[CONVERSIONS] = Decimal(1)
    ledger.reserved[REVENUE] = Decimal(20)
    ledger.in_progress["buyer:b"] = 1
    ledger.hold(reservation("r1"), committed=["calls"])
    with pytest.raises(ValueError, match="reservation r1 exists already"):
        ledger.hold(reservation("r1"))
    ledger.commit("r1", {"calls", "conversions"})
    ledger.finish("r1")
    assert ledger.used == {CALLS: Decimal(1), CONVERSIONS: Decimal(1)}
    assert ledger.reserved == {CONVERSIONS: Decimal(0), REVENUE: Decimal(0)}
    assert ledger.in_progress == {"buyer:b": 0}
