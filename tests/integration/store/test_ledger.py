"""The SQL cap ledger: exact amounts, the reference ledger's reasons, and no overshoot."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Connection, select

from callwhisper.domain.caps import CapCharge, CapKey, CapMetric
from callwhisper.domain.state import ConcurrencyLimit, Reservation
from callwhisper.store import CapAmounts, Store, create_store
from callwhisper.store.engine import Work
from callwhisper.store.tables import cap_reservations

pytestmark = pytest.mark.integration

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
CALLS = CapKey("buyer:acme", "calls", "day", "2026-03-02")
REVENUE = CapKey("buyer:acme", "revenue", "month", "2026-03")
CONVERSIONS = CapKey("route:auto/acme/*", "conversions", "total", "all")


def reservation(
    reservation_id: str,
    *charges: CapCharge,
    concurrency: tuple[ConcurrencyLimit, ...] = (),
    at: datetime = AT,
) -> Reservation:
    return Reservation(reservation_id, charges, concurrency, at)


def calls_cap(limit: int) -> CapCharge:
    return CapCharge(CALLS, Decimal(limit), Decimal(1))


async def test_reserve_holds_every_charge(store: Store) -> None:
    refused = await store.ledger.reserve(
        reservation(
            "r1",
            calls_cap(50),
            CapCharge(REVENUE, Decimal("1000"), Decimal("42.5")),
            concurrency=(ConcurrencyLimit("buyer:acme", 3),),
        )
    )
    assert refused is None
    assert await store.ledger.amounts(CALLS) == CapAmounts(Decimal(0), Decimal(1))
    assert await store.ledger.amounts(REVENUE) == CapAmounts(Decimal(0), Decimal("42.5"))
    counters = await store.counters.load_counters(
        "auto", keys=[CALLS, REVENUE], owners=["buyer:acme"], now=AT
    )
    assert counters.in_progress == {"buyer:acme": 1}
    assert counters.last_call_at == {"buyer:acme": AT}
    assert await store.ledger.open_reservations() == ["r1"]


async def test_reserve_refuses_at_the_limit_with_the_reference_reason(store: Store) -> None:
    for number in range(2):
        assert await store.ledger.reserve(reservation(f"r{number}", calls_cap(2))) is None
    refused = await store.ledger.reserve(reservation("r2", calls_cap(2)))
    assert refused == "daily calls cap 2/2"
    assert await store.ledger.amounts(CALLS) == CapAmounts(Decimal(0), Decimal(2))


async def test_refused_reservation_changes_nothing(store: Store) -> None:
    """All or nothing: a later charge that fails leaves the earlier ones untouched."""
    assert (
        await store.ledger.reserve(
            reservation("full", CapCharge(CONVERSIONS, Decimal(1), Decimal(1)))
        )
        is None
    )
    refused = await store.ledger.reserve(
        reservation(
            "r1",
            calls_cap(50),
            CapCharge(CONVERSIONS, Decimal(1), Decimal(1)),
            concurrency=(ConcurrencyLimit("buyer:acme", 3),),
            at=datetime(2026, 3, 2, 16, 0, tzinfo=UTC),
        )
    )
    assert refused == "total conversions cap 1/1"
    assert await store.ledger.amounts(CALLS) == CapAmounts(Decimal(0), Decimal(0))
    counters = await store.counters.load_counters(
        "auto", owners=["buyer:acme", "route:auto/acme/*"], now=AT
    )
    assert counters.in_progress.get("buyer:acme", 0) == 0
    assert counters.last_call_at == {"route:auto/acme/*": AT}
    assert await store.ledger.open_reservations() == ["full"]


async def test_concurrency_refusal_reason(store: Store) -> None:
    slot = (ConcurrencyLimit("target:acme/main", 1),)
    assert await store.ledger.reserve(reservation("r1", concurrency=slot)) is None
    assert await store.ledger.reserve(reservation("r2", concurrency=slot)) == "concurrency 1/1"
    await store.ledger.finish("r1")
    assert await store.ledger.reserve(reservation("r3", concurrency=slot)) is None


async def committed_metrics(store: Store, reservation_id: str) -> list[str]:
    query = select(cap_reservations.c.committed).where(cap_reservations.c.id == reservation_id)
    async with store.database.read() as connection:
        return list((await connection.execute(query)).scalar_one())


async def test_a_metric_the_reservation_does_not_charge_is_not_written(store: Store) -> None:
    """Connections without a connections cap move no counter: the row keeps what moved them."""
    ledger, write = store.ledger, store.database.run_write
    slot = (ConcurrencyLimit("buyer:acme", 3),)
    assert await ledger.reserve(reservation("sql", calls_cap(5), concurrency=slot)) is None
    memory = reservation("memory", calls_cap(5), concurrency=slot)
    await write(partial(ledger.record_reservation_in, memory, None))

    await ledger.commit("sql", ["connections"])
    await write(partial(ledger.record_commit_in, memory, set(), ["connections"], None))
    assert await committed_metrics(store, "sql") == []
    assert await committed_metrics(store, "memory") == []
    assert await ledger.amounts(CALLS) == CapAmounts(Decimal(0), Decimal(2))

    await ledger.commit("sql", ["calls", "connections"])
    connections: set[CapMetric] = {"connections"}
    await write(partial(ledger.record_commit_in, memory, connections, ["calls"], None))
    assert await committed_metrics(store, "sql") == ["calls"]
    assert await committed_metrics(store, "memory") == ["calls"]
    assert await ledger.amounts(CALLS) == CapAmounts(Decimal(2), Decimal(0))


async def test_money_reason_keeps_cents(store: Store) -> None:
    charge = CapCharge(REVENUE, Decimal("100"), Decimal("60.25"))
    assert await store.ledger.reserve(reservation("r1", charge)) is None
    assert await store.ledger.reserve(reservation("r2", charge)) == "monthly revenue cap 60.25/100"


async def test_commit_keeps_and_finish_releases_the_rest(store: Store) -> None:
    await store.ledger.reserve(
        reservation(
            "r1",
            calls_cap(50),
            CapCharge(REVENUE, Decimal("1000"), Decimal("40")),
            CapCharge(CONVERSIONS, Decimal(10), Decimal(1)),
            concurrency=(ConcurrencyLimit("buyer:acme", 3),),
        )
    )
    await store.ledger.commit("r1", ["calls"])
    await store.ledger.commit("r1", ["calls"])
    assert await store.ledger.amounts(CALLS) == CapAmounts(Decimal(1), Decimal(0))
    await store.ledger.commit("r1", ["revenue"], revenue=Decimal("35.1234"))
    assert await store.ledger.amounts(REVENUE) == CapAmounts(Decimal("35.1234"), Decimal(0))
    await store.ledger.finish("r1")
    assert await store.ledger.amounts(CALLS) == CapAmounts(Decimal(1), Decimal(0))
    assert await store.ledger.amounts(CONVERSIONS) == CapAmounts(Decimal(0), Decimal(0))
    counters = await store.counters.load_counters("auto", owners=["buyer:acme"], now=AT)
    assert counters.in_progress == {"buyer:acme": 0}
    assert await store.ledger.open_reservations() == []


async def test_finished_or_unknown_reservations_raise_key_error(store: Store) -> None:
    await store.ledger.reserve(reservation("r1", calls_cap(5)))
    await store.ledger.finish("r1")
    with pytest.raises(KeyError):
        await store.ledger.finish("r1")
    with pytest.raises(KeyError):
        await store.ledger.commit("r1", ["calls"])
    with pytest.raises(KeyError):
        await store.ledger.commit("nope", ["calls"])


async def test_reservation_ids_are_unique(store: Store) -> None:
    await store.ledger.reserve(reservation("r1", calls_cap(5)))
    with pytest.raises(ValueError, match="exists already"):
        await store.ledger.reserve(reservation("r1", calls_cap(5)))
    assert await store.ledger.amounts(CALLS) == CapAmounts(Decimal(0), Decimal(1))


async def test_repeated_counter_in_one_reservation_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="repeats a counter"):
        await store.ledger.reserve(reservation("r1", calls_cap(5), calls_cap(5)))


CONCURRENT_ATTEMPTS = 240
CAP = 50
PROCESSES = 4


async def test_concurrent_reservations_never_overshoot(database_url: str, store: Store) -> None:
    """240 attempts at once from 4 engines (as from 4 processes) against a cap of 50.

    Each attempt also takes a concurrency slot (limit 60) and a revenue charge,
    so every reservation locks several counters.
    """
    engines = [create_store(database_url, pool_size=5) for _ in range(PROCESSES)]
    try:

        async def attempt(number: int) -> str | None:
            ledger = engines[number % PROCESSES].ledger
            return await ledger.reserve(
                reservation(
                    f"r{number:03d}",
                    CapCharge(REVENUE, Decimal("100000"), Decimal("10.01")),
                    calls_cap(CAP),
                    concurrency=(ConcurrencyLimit("buyer:acme", 60),),
                )
            )

        outcomes = await asyncio.gather(*(attempt(n) for n in range(CONCURRENT_ATTEMPTS)))
    finally:
        for engine in engines:
            await engine.close()
    accepted = [outcome for outcome in outcomes if outcome is None]
    refused = [outcome for outcome in outcomes if outcome is not None]
    assert len(accepted) == CAP
    assert set(refused) == {f"daily calls cap {CAP}/{CAP}"}
    assert len(refused) == CONCURRENT_ATTEMPTS - CAP
    assert await store.ledger.amounts(CALLS) == CapAmounts(Decimal(0), Decimal(CAP))
    assert await store.ledger.amounts(REVENUE) == CapAmounts(Decimal(0), Decimal("500.50"))
    counters = await store.counters.load_counters("auto", owners=["buyer:acme"], now=AT)
    assert counters.in_progress == {"buyer:acme": CAP}
    assert len(await store.ledger.open_reservations()) == CAP


async def test_concurrent_finish_and_reserve_keep_counts_exact(
    database_url: str, store: Store
) -> None:
    """Releases racing with new reservations never lose or double a slot."""
    slot = (ConcurrencyLimit("target:acme/main", 20),)
    for number in range(20):
        assert (
            await store.ledger.reserve(
                reservation(f"old{number}", calls_cap(1000), concurrency=slot)
            )
            is None
        )
    other = create_store(database_url, pool_size=5)
    try:
        finishes = [store.ledger.finish(f"old{n}") for n in range(20)]
        reserves = [
            other.ledger.reserve(reservation(f"new{n}", calls_cap(1000), concurrency=slot))
            for n in range(40)
        ]
        results = await asyncio.gather(*finishes, *reserves)
    finally:
        await other.close()
    accepted = sum(1 for outcome in results[20:] if outcome is None)
    assert 0 < accepted <= 20
    counters = await store.counters.load_counters("auto", owners=["target:acme/main"], now=AT)
    assert counters.in_progress == {"target:acme/main": accepted}
    assert await store.ledger.amounts(CALLS) == CapAmounts(Decimal(0), Decimal(accepted))


def owned(owner: str) -> Reservation:
    """A reservation of every metric, and a slot, for ``owner``."""
    charges = (
        CapCharge(CapKey(owner, "calls", "day", "2026-03-02"), Decimal(50), Decimal(1)),
        CapCharge(CapKey(owner, "revenue", "month", "2026-03"), Decimal(1000), Decimal(40)),
        CapCharge(CapKey(owner, "conversions", "total", "all"), Decimal(10), Decimal(1)),
    )
    return Reservation(f"{owner}/r", charges, (ConcurrencyLimit(owner, 3),), AT)


async def settled(store: Store, owner: str) -> tuple[list[CapAmounts], int, tuple[Any, ...]]:
    """The counters of :func:`owned` and its reservation row (charges without the owner)."""
    amounts = [await store.ledger.amounts(charge.key) for charge in owned(owner).charges]
    counters = await store.counters.load_counters("auto", owners=[owner], now=AT)
    query = select(
        cap_reservations.c.charges, cap_reservations.c.committed, cap_reservations.c.finished_at
    ).where(cap_reservations.c.id == f"{owner}/r")
    async with store.database.read() as connection:
        row = (await connection.execute(query)).one()
    charges = [{**charge, "owner": None} for charge in row.charges]
    return amounts, counters.in_progress[owner], (charges, row.committed, row.finished_at)


async def test_a_commit_and_finish_written_behind_leave_the_rows_the_ledger_leaves(
    store: Store,
) -> None:
    """What memory decided, written without reading its reservation back, as the ledger does."""
    ledger, write = store.ledger, store.database.run_write
    assert await ledger.reserve(owned("sql")) is None
    await ledger.commit("sql/r", ["calls"])
    await ledger.commit("sql/r", ["calls"])
    await ledger.commit("sql/r", ["revenue"], revenue=Decimal("35.1234"))
    await ledger.finish("sql/r", at=AT)
    memory = owned("memory")
    calls_only: set[CapMetric] = {"calls"}
    await write(partial(ledger.record_reservation_in, memory, None))
    await write(partial(ledger.record_commit_in, memory, set(), ["calls"], None))
    await write(partial(ledger.record_commit_in, memory, calls_only, ["calls"], None))
    revenue = Decimal("35.1234")
    await write(partial(ledger.record_commit_in, memory, calls_only, ["revenue"], revenue))
    await write(partial(ledger.record_finish_in, memory, {"calls", "revenue"}, AT))

    amounts, in_progress, row = await settled(store, "memory")
    assert (amounts, in_progress, row) == await settled(store, "sql")
    assert amounts == [
        CapAmounts(Decimal(1), Decimal(0)),
        CapAmounts(Decimal("35.1234"), Decimal(0)),
        CapAmounts(Decimal(0), Decimal(0)),
    ]
    assert in_progress == 0
    assert row[1:] == (["calls", "revenue"], AT)


async def test_writes_behind_sharing_a_transaction_leave_the_rows_they_leave_one_by_one(
    store: Store,
) -> None:
    """Counters added up per transaction, and a reservation settled where it is written."""
    ledger, write = store.ledger, store.database.run_write
    revenue = Decimal("35.12345")  # more places than stored: each amount rounds as it would

    def settle(owner: str, *, number: int) -> list[Work[None]]:
        first, second = owned(owner), dataclasses.replace(owned(owner), reservation_id=f"{owner}/s")
        calls_only: set[CapMetric] = {"calls"}
        return [
            partial(ledger.record_reservation_in, first, None),
            partial(ledger.record_commit_in, first, set(), ["calls"], None),
            partial(ledger.record_reservation_in, second, None),
            partial(ledger.record_commit_in, first, calls_only, ["revenue"], revenue),
            partial(ledger.record_finish_in, second, set(), AT),
            partial(ledger.record_commit_in, second, set(), ["revenue"], Decimal(number)),
        ]

    for work in settle("alone", number=1)[:-1]:
        await write(work)
    with pytest.raises(KeyError, match="alone/s"):
        await write(settle("alone", number=1)[-1])

    def together(connection: Connection) -> None:
        works = settle("together", number=2)
        for work in works[:-1]:
            work(connection)
        with pytest.raises(KeyError, match="together/s"):
            works[-1](connection)

    await write(together)

    assert await settled(store, "together") == await settled(store, "alone")
    amounts, in_progress, (_, committed, finished_at) = await settled(store, "together")
    assert amounts == [
        CapAmounts(Decimal(1), Decimal(0)),
        CapAmounts(Decimal("35.1234"), Decimal(0)),
        CapAmounts(Decimal(0), Decimal(1)),
    ]
    assert (in_progress, committed, finished_at) == (1, ["calls", "revenue"], None)


async def test_a_reservation_counts_what_its_transaction_released_before_it(
    store: Store,
) -> None:
    """The slot a finish queued before it gave back is free, as if committed on its own."""
    slot = (ConcurrencyLimit("buyer:acme", 1),)
    assert await store.ledger.reserve(reservation("r1", calls_cap(2), concurrency=slot)) is None

    def finish_then_reserve(connection: Connection) -> str | None:
        store.ledger.finish_in("r1", AT, connection)
        return store.ledger.reserve_in(
            reservation("r2", calls_cap(2), concurrency=slot), None, connection
        )

    assert await store.database.run_write(finish_then_reserve) is None
    assert await store.ledger.open_reservations() == ["r2"]
    assert await store.ledger.amounts(CALLS) == CapAmounts(Decimal(0), Decimal(1))


async def test_a_write_behind_on_a_reservation_that_is_not_open_raises_and_writes_nothing(
    store: Store,
) -> None:
    ledger, write = store.ledger, store.database.run_write
    decided = reservation("r1", calls_cap(5), concurrency=(ConcurrencyLimit("buyer:acme", 3),))
    await write(partial(ledger.record_reservation_in, decided, None))
    await write(partial(ledger.record_finish_in, decided, set(), AT))
    never_written = reservation(
        "r2", calls_cap(5), concurrency=(ConcurrencyLimit("buyer:acme", 3),)
    )

    for settle in (
        partial(ledger.record_commit_in, decided, set(), ["calls"], None),
        partial(ledger.record_finish_in, decided, set(), AT),
        partial(ledger.record_commit_in, never_written, set(), ["calls"], None),
        partial(ledger.record_finish_in, never_written, set(), AT),
    ):
        with pytest.raises(KeyError):
            await write(settle)

    assert await ledger.amounts(CALLS) == CapAmounts(Decimal(0), Decimal(0))
    counters = await store.counters.load_counters("auto", owners=["buyer:acme"], now=AT)
    assert counters.in_progress == {"buyer:acme": 0}
