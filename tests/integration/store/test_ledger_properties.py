"""Property: under any interleaving of reserve/commit/finish, the SQL ledger agrees with
the reference ``MemoryCapLedger`` step by step and no counter ever passes its limit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callwhisper.domain.caps import CapCharge, CapKey, CapMetric, CapPeriod
from callwhisper.domain.state import ConcurrencyLimit, MemoryCapLedger, Reservation
from callwhisper.store import Store

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
OWNERS = ("buyer:a", "target:a/x", "route:c/a/*")
COUNTERS: tuple[tuple[CapMetric, CapPeriod, str], ...] = (
    ("calls", "day", "2026-03-02"),
    ("connections", "week", "2026-W10"),
    ("conversions", "total", "all"),
    ("revenue", "month", "2026-03"),
)
LIMITS = {"calls": Decimal(4), "connections": Decimal(3), "conversions": Decimal(2)}
REVENUE_LIMIT = Decimal("100")
CONCURRENCY_LIMITS = {"buyer:a": 3, "target:a/x": 2, "route:c/a/*": 4}


@dataclass(frozen=True)
class Reserve:
    counters: tuple[tuple[int, int], ...]
    slots: tuple[int, ...]
    revenue: Decimal


@dataclass(frozen=True)
class Commit:
    which: int
    metrics: tuple[CapMetric, ...]
    revenue_share: Decimal | None


@dataclass(frozen=True)
class Finish:
    which: int


Step = Reserve | Commit | Finish

reserves = st.builds(
    Reserve,
    counters=st.lists(
        st.tuples(st.integers(0, len(OWNERS) - 1), st.integers(0, len(COUNTERS) - 1)),
        unique=True,
        max_size=4,
    ).map(tuple),
    slots=st.lists(st.integers(0, len(OWNERS) - 1), unique=True, max_size=2).map(tuple),
    revenue=st.decimals(min_value=Decimal("0.5"), max_value=Decimal("60"), places=2),
)
commits = st.builds(
    Commit,
    which=st.integers(0, 30),
    metrics=st.lists(
        st.sampled_from(["calls", "connections", "conversions", "revenue"]), unique=True
    ).map(tuple),
    revenue_share=st.none() | st.sampled_from([Decimal(0), Decimal("0.5"), Decimal(1)]),
)
finishes = st.builds(Finish, which=st.integers(0, 30))
programs = st.lists(st.one_of(reserves, reserves, commits, finishes), min_size=1, max_size=25)


def _limit(metric: CapMetric) -> Decimal:
    return REVENUE_LIMIT if metric == "revenue" else LIMITS[metric]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=programs)
async def test_sql_ledger_matches_the_reference_and_never_overshoots(
    store: Store, program: list[Step]
) -> None:
    # The store outlives the examples, so each example works on counters of its own.
    run = uuid.uuid4().hex[:8]
    owners = [f"{owner}#{run}" for owner in OWNERS]
    keys = [
        CapKey(owner, metric, period, period_key)
        for owner in owners
        for metric, period, period_key in COUNTERS
    ]
    memory = MemoryCapLedger()
    made: list[tuple[str, Decimal]] = []
    for number, step in enumerate(program):
        at = START + timedelta(seconds=number)
        if isinstance(step, Reserve):
            charges = tuple(
                CapCharge(
                    CapKey(owners[o], COUNTERS[c][0], COUNTERS[c][1], COUNTERS[c][2]),
                    _limit(COUNTERS[c][0]),
                    step.revenue if COUNTERS[c][0] == "revenue" else Decimal(1),
                )
                for o, c in step.counters
            )
            slots = tuple(
                ConcurrencyLimit(owners[s], CONCURRENCY_LIMITS[OWNERS[s]]) for s in step.slots
            )
            reservation = Reservation(f"{run}-{number}", charges, slots, at)
            expected = memory.reserve(reservation)
            assert await store.ledger.reserve(reservation) == expected
            if expected is None:
                made.append((reservation.reservation_id, step.revenue))
        elif made:
            reservation_id, reserved_revenue = made[step.which % len(made)]
            if isinstance(step, Commit):
                revenue = (
                    None
                    if step.revenue_share is None
                    else (reserved_revenue * step.revenue_share).quantize(Decimal("0.01"))
                )
                try:
                    memory.commit(reservation_id, step.metrics, revenue)
                except KeyError:
                    with pytest.raises(KeyError):
                        await store.ledger.commit(reservation_id, step.metrics, revenue)
                else:
                    await store.ledger.commit(reservation_id, step.metrics, revenue)
            else:
                try:
                    memory.finish(reservation_id)
                except KeyError:
                    with pytest.raises(KeyError):
                        await store.ledger.finish(reservation_id)
                else:
                    await store.ledger.finish(reservation_id)

        counters = await store.counters.load_counters("c", keys=keys, owners=owners, now=at)
        for key in keys:
            usage = counters.cap_usage.get(key, Decimal(0))
            assert usage == memory.usage(key)
            assert usage <= _limit(key.metric)
        for owner, name in zip(owners, OWNERS, strict=True):
            assert counters.in_progress.get(owner, 0) == memory.in_progress.get(owner, 0)
            assert counters.in_progress.get(owner, 0) <= CONCURRENCY_LIMITS[name]
            assert counters.last_call_at.get(owner) == memory.last_call_at.get(owner)
