"""The shared media clock's schedule: drift-free deadlines, bounded catch-up."""

from __future__ import annotations

import pytest

from callwhisper.engine.clock import TickSchedule


def test_nothing_is_due_before_the_first_deadline() -> None:
    schedule = TickSchedule(10.0, 0.02)
    assert schedule.due(9.999) == 0
    assert schedule.deadline == 10.0


def test_one_tick_per_deadline_reached() -> None:
    schedule = TickSchedule(10.0, 0.02)
    assert schedule.due(10.0) == 1
    assert schedule.deadline == pytest.approx(10.02)


def test_late_wake_up_does_not_shift_later_deadlines() -> None:
    """Deadlines stay on the start + n * interval grid whatever the wake-up lateness."""
    schedule = TickSchedule(10.0, 0.02)
    assert schedule.due(10.007) == 1
    assert schedule.deadline == pytest.approx(10.02)
    assert schedule.due(10.0395) == 1
    assert schedule.deadline == pytest.approx(10.04)


def test_missed_ticks_are_caught_up_in_one_burst() -> None:
    schedule = TickSchedule(10.0, 0.02, max_burst=5)
    assert schedule.due(10.065) == 4
    assert schedule.deadline == pytest.approx(10.08)
    assert schedule.skipped == 0


def test_a_long_stall_skips_ahead_instead_of_bursting() -> None:
    schedule = TickSchedule(10.0, 0.02, max_burst=5)
    assert schedule.due(11.0) == 1
    assert schedule.skipped == 50
    assert schedule.deadline == pytest.approx(11.02)


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="tick interval must be positive, got 0"):
        TickSchedule(0.0, 0)
