"""Money with exact amounts: conversion at the buffer, payout, cost per answered leg."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callwhisper.domain.campaign import PayoutRule, TelephonyCosts
from callwhisper.domain.caps import CapCharge, CapKey
from callwhisper.flow import (
    CommitCaps,
    DigitReceived,
    FlowSettings,
    LegAnswered,
    LegHungUp,
)
from callwhisper.flow.billing import billed_seconds, elapsed, leg_cost
from tests.unit.flow.harness import Harness, offer


@pytest.mark.parametrize(
    ("seconds", "increment", "billed"),
    [("0.5", 60, 60), ("60", 60, 60), ("60.001", 60, 120), ("61", 6, 66), ("61.2", 1, 62)],
)
def test_billed_time_rounds_up_to_the_increment(seconds: str, increment: int, billed: int) -> None:
    assert billed_seconds(Decimal(seconds), increment) == billed


def test_leg_cost_is_exact_and_nothing_for_an_unanswered_leg() -> None:
    assert leg_cost(10.0, 100.0, Decimal("0.013"), 6) == Decimal("0.0195")
    assert leg_cost(None, 100.0, Decimal("5"), 60) == Decimal(0)
    assert elapsed(0.1, 90.1) == Decimal("90.000")


@given(
    start=st.floats(0, 2e9, allow_nan=False),
    duration=st.floats(-1, 1e6, allow_nan=False),
    increment=st.integers(1, 3600),
    cents=st.integers(0, 10**6),
)
def test_leg_cost_is_the_billed_time_of_the_elapsed_milliseconds_at_the_rate(
    start: float, duration: float, increment: int, cents: int
) -> None:
    """As call-flow 18 says: the elapsed time to the ms, rounded up to the increment, priced."""
    end = start + duration
    per_minute = Decimal(cents).scaleb(-4)
    seconds = elapsed(start, end)
    milliseconds = Decimal(round((end - start) * 1000))
    assert str(seconds) == str((milliseconds * Decimal("0.001")).quantize(Decimal("0.001")))
    billed = billed_seconds(seconds, increment)
    expected = (per_minute * billed / 60).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    assert leg_cost(start, end, per_minute, increment) == expected


def _bridged(
    *, buffer: int = 90, no_convert: bool = False, settings: FlowSettings | None = None
) -> Harness:
    h = Harness(offer("acme", revenue="42.50", buffer=buffer, no_convert=no_convert),
                settings=settings)  # fmt: skip
    h.arrive()
    h.send(LegAnswered("B1"), at=5)
    h.send(DigitReceived("B1", "1"), at=10)
    return h


def _conversions(h: Harness) -> list[CommitCaps]:
    return [c for c in h.log if isinstance(c, CommitCaps) and "revenue" in c.metrics]


def test_buffer_exactly_reached_converts_while_the_call_is_up() -> None:
    h = _bridged()
    assert h.session.get_timer() == 100
    h.run_until(100)
    assert _conversions(h) == [
        CommitCaps("call-1/B1", ("conversions", "revenue"), Decimal("42.50"))
    ]
    h.send(LegHungUp("A"), at=400)
    assert (h.session.record.revenue, h.session.record.outcome) == (Decimal("42.50"), "converted")
    assert len(_conversions(h)) == 1


def test_hangup_at_exactly_the_buffer_converts() -> None:
    h = _bridged()
    h.send(LegHungUp("B1"), at=100)
    assert h.session.record.revenue == Decimal("42.50")


def test_one_second_short_of_the_buffer_does_not_convert() -> None:
    h = _bridged()
    h.send(LegHungUp("B1"), at=99)
    record = h.session.record
    assert (record.revenue, record.outcome, _conversions(h)) == (Decimal(0), "connected", [])


def test_a_duplicate_never_converts() -> None:
    h = _bridged(no_convert=True)
    h.run_until(1000)
    h.send(LegHungUp("B1"), at=1000)
    assert (h.session.record.revenue, _conversions(h)) == (Decimal(0), [])


def test_a_zero_buffer_converts_at_accept() -> None:
    h = _bridged(buffer=0)
    assert h.session.record.revenue == Decimal("42.50")
    assert h.session.record.converted_leg == "B1"


def test_the_publisher_payout_follows_its_own_buffer() -> None:
    payout = PayoutRule(amount=Decimal("12.25"), buffer_seconds=120)
    h = _bridged(settings=FlowSettings("auto", payout=payout))
    h.send(LegHungUp("B1"), at=110)  # 100 s: the buyer's 90 s reached, the publisher's 120 s not
    assert (h.session.record.revenue, h.session.record.payout) == (Decimal("42.50"), Decimal(0))
    h = _bridged(settings=FlowSettings("auto", payout=payout))
    h.send(LegHungUp("B1"), at=130)
    assert h.session.record.payout == Decimal("12.25")


def test_cost_per_answered_leg_at_the_configured_rates() -> None:
    costs = TelephonyCosts(
        inbound_per_minute=Decimal("0.0085"),
        outbound_per_minute=Decimal("0.013"),
        increment_seconds=6,
    )
    h = _bridged(settings=FlowSettings("auto", costs=costs))
    h.send(LegHungUp("A"), at=70)
    legs = h.session.record.legs
    # The buyer leg bills from its answer (65 s -> 66 s), the caller from the bridge (60 s).
    assert legs["B1"].cost == Decimal("0.0143")
    assert legs["A"].cost == Decimal("0.0085")
    assert h.session.record.cost == Decimal("0.0228")
    assert h.entries("ended")[0].data["cost"] == "0.0228"


def test_caps_follow_the_ledger_lifecycle_and_balance() -> None:
    key = CapKey("buyer:acme", "revenue", "day", "2026-01-05")
    calls = CapKey("buyer:acme", "calls", "day", "2026-01-05")
    charges = (
        CapCharge(key, Decimal(1000), Decimal("42.50")),
        CapCharge(calls, Decimal(10), Decimal(1)),
    )
    h = Harness(offer("acme", revenue="42.50", charges=charges), offer("bolt", charges=charges))
    h.arrive()
    h.send(LegAnswered("B1"), at=1)
    h.send(DigitReceived("B1", "2"), at=2)  # declined: the answered call counts, no revenue
    h.send(LegAnswered("B2"), at=3)
    h.send(DigitReceived("B2", "1"), at=4)
    h.run_until(94)
    h.send(LegHungUp("A"), at=200)
    assert h.ledger.used == {key: Decimal("40"), calls: Decimal(2)}
    assert h.ledger.reserved == {key: Decimal(0), calls: Decimal(0)}
