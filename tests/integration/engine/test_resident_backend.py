"""The single-node backend: counters decided in memory, written behind, loaded back at restart."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from callwhisper.domain import CallAttributes, Configuration
from callwhisper.domain.caps import CapCharge, CapKey, CapMetric
from callwhisper.domain.state import ConcurrencyLimit, MemoryCapLedger, Reservation
from callwhisper.engine import StoreBackend
from callwhisper.store import CapAmounts, ResidentCounters, Store, create_store
from callwhisper.store import engine as store_engine
from callwhisper.store.tables import cap_reservations
from tests.integration.engine.conftest import StartServer

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DAY = CapKey("buyer:acme", "calls", "day", "2026-03-02")
REVENUE = CapKey("buyer:acme", "revenue", "day", "2026-03-02")
CONVERSIONS = CapKey("buyer:acme", "conversions", "day", "2026-03-02")
SLOT = "target:acme/desk"
KEYS = (DAY, REVENUE)
OWNERS = ("buyer:acme", SLOT)
CALLS: tuple[CapMetric, ...] = ("calls",)

Open = Callable[[], Awaitable[tuple[Store, StoreBackend]]]


@pytest.fixture
async def open_backend(database_url: str) -> AsyncIterator[Open]:
    """Opens the store as the server does (interrupted calls closed, counters loaded).

    Opening it again closes the previous one first: a restart.
    """
    opened: list[Store] = []

    async def open_() -> tuple[Store, StoreBackend]:
        if opened:
            await opened.pop().close()
        store = create_store(database_url)
        opened.append(store)
        await store.migrate()
        await store.calls.close_interrupted_calls(NOW)
        resident = await ResidentCounters.load(store.database, NOW)
        return store, StoreBackend(store, Configuration(), resident)

    yield open_
    for store in opened:
        await store.close()


def reservation(number: int, *, calls: int = 4, concurrency: int = 3) -> Reservation:
    return Reservation(
        f"call-{number}/B1",
        (
            CapCharge(DAY, Decimal(calls), Decimal(1)),
            CapCharge(REVENUE, Decimal(1000), Decimal("45.5")),
        ),
        (ConcurrencyLimit(SLOT, concurrency),),
        NOW + timedelta(seconds=number),
    )


async def start_call(backend: StoreBackend, number: int) -> None:
    attributes = CallAttributes("auto", "+18005550100", f"+1415555{number:04d}")
    backend.call_started(f"call-{number}", attributes, NOW.timestamp() + number)


def settled(store: Store) -> asyncio.Future[None]:
    """Done once the writes posted so far are: a write queued after them (now) ends after them."""
    return store.submit(lambda _connection: None)


def assert_same_counters(counters: ResidentCounters, reference: MemoryCapLedger) -> None:
    got = counters.counters("auto", keys=KEYS, owners=OWNERS, now=NOW)
    for key in KEYS:
        assert got.cap_usage.get(key, Decimal(0)) == reference.usage(key), key
    for owner in OWNERS:
        assert got.in_progress.get(owner, 0) == reference.in_progress.get(owner, 0), owner
        assert got.last_call_at.get(owner) == reference.last_call_at.get(owner), owner


async def test_a_restart_in_the_middle_of_calls_loads_the_same_state(open_backend: Open) -> None:
    store, backend = await open_backend()
    assert backend.resident is not None
    reference = MemoryCapLedger()
    refusals: list[str | None] = []
    for number in range(6):
        await start_call(backend, number)
        refused = await backend.reserve(f"call-{number}", reservation(number))
        assert refused == reference.reserve(reservation(number))
        refusals.append(refused)
    # Three slots: the fourth and later calls were refused, by memory as by the reference.
    assert refusals == [None, None, None, "concurrency 3/3", "concurrency 3/3", "concurrency 3/3"]
    backend.commit("call-0/B1", ("calls", "revenue"), Decimal("40"))
    backend.finish("call-0/B1")
    backend.commit("call-1/B1", CALLS, None)
    reference.commit("call-0/B1", ("calls", "revenue"), Decimal("40"))
    reference.finish("call-0/B1")
    reference.commit("call-1/B1", CALLS, None)
    # Reserving again takes the slot call 0 gave back.
    assert await backend.reserve("call-3", reservation(6)) is None
    assert reference.reserve(reservation(6)) is None
    assert_same_counters(backend.resident, reference)
    await settled(store)

    # A restart while calls 1, 2 and 3 are in progress: their reservations are released.
    store, backend = await open_backend()
    assert backend.resident is not None
    reference.finish("call-1/B1")
    reference.finish("call-2/B1")
    reference.finish("call-6/B1")
    assert_same_counters(backend.resident, reference)
    sql = await store.counters.load_counters("auto", keys=KEYS, owners=OWNERS, now=NOW)
    assert sql == backend.resident.counters("auto", keys=KEYS, owners=OWNERS, now=NOW)
    assert sql.cap_usage == {DAY: Decimal(2), REVENUE: Decimal(40)}
    assert sql.in_progress == {SLOT: 0}
    # What was committed survived; the reservations settled at start-up are gone for good.
    unknown = backend.finish("call-1/B1")
    assert unknown is not None
    with pytest.raises(KeyError):
        await unknown
    assert await store.ledger.open_reservations() == []


@pytest.mark.parametrize(("calls", "concurrency"), [(7, 100), (100, 3)])
async def test_concurrent_reservations_never_exceed_a_cap(
    open_backend: Open, calls: int, concurrency: int
) -> None:
    store, backend = await open_backend()
    granted: list[int] = []
    held = 0
    most_held = 0

    async def call(number: int) -> None:
        nonlocal held, most_held
        await start_call(backend, number)
        await asyncio.sleep(0)
        wanted = reservation(number, calls=calls, concurrency=concurrency)
        if await backend.reserve(f"call-{number}", wanted) is not None:
            return
        granted.append(number)
        held += 1
        most_held = max(most_held, held)
        backend.commit(f"call-{number}/B1", CALLS, None)
        await settled(store)
        held -= 1
        backend.finish(f"call-{number}/B1")
        await settled(store)

    await asyncio.gather(*(call(number) for number in range(40)))
    assert most_held <= concurrency
    assert len(granted) <= calls
    # Every call arrives before any commit is written: only the cap limits them.
    assert len(granted) == min(calls, concurrency)
    # The written state agrees, and the SQL ledger refuses what memory refuses.
    sql = await store.counters.load_counters("auto", keys=KEYS, owners=OWNERS, now=NOW)
    assert sql.cap_usage[DAY] == len(granted)
    assert sql.in_progress == {SLOT: 0}
    if calls == len(granted):
        assert await store.ledger.reserve(reservation(99, calls=calls)) == "daily calls cap 7/7"


async def test_a_reservation_open_at_start_up_settles_in_memory_and_in_the_store_alike(
    open_backend: Open,
) -> None:
    """Its commits and finish are written from what memory loaded, as for one memory granted."""
    store, _ = await open_backend()
    reference = MemoryCapLedger()
    assert await store.ledger.reserve(reservation(0)) is None
    await store.ledger.commit("call-0/B1", CALLS)
    assert reference.reserve(reservation(0)) is None
    reference.commit("call-0/B1", CALLS)

    store, backend = await open_backend()
    assert backend.resident is not None
    backend.commit("call-0/B1", ("calls", "revenue"), Decimal("40"))
    backend.finish("call-0/B1")
    await settled(store)
    reference.commit("call-0/B1", ("calls", "revenue"), Decimal("40"))
    reference.finish("call-0/B1")

    assert_same_counters(backend.resident, reference)
    sql = await store.counters.load_counters("auto", keys=KEYS, owners=OWNERS, now=NOW)
    assert sql == backend.resident.counters("auto", keys=KEYS, owners=OWNERS, now=NOW)
    assert sql.cap_usage == {DAY: Decimal(1), REVENUE: Decimal(40)}
    assert await store.ledger.amounts(DAY) == CapAmounts(Decimal(1), Decimal(0))
    assert await store.ledger.open_reservations() == []


@pytest.mark.parametrize(
    ("metric", "conversions", "revenue"),
    [
        (
            "conversions",
            CapAmounts(Decimal(1), Decimal(0)),
            CapAmounts(Decimal(0), Decimal("45.5")),
        ),
        ("revenue", CapAmounts(Decimal(0), Decimal(1)), CapAmounts(Decimal(40), Decimal(0))),
    ],
)
async def test_a_commit_that_bills_is_written_at_once(
    open_backend: Open,
    monkeypatch: pytest.MonkeyPatch,
    metric: CapMetric,
    conversions: CapAmounts,
    revenue: CapAmounts,
) -> None:
    """Without the bill, the commit would wait an hour for company."""
    monkeypatch.setattr(store_engine, "COMMIT_DELAY", 3600.0)
    store, backend = await open_backend()
    await start_call(backend, 0)
    charged = reservation(0)
    converting = CapCharge(CONVERSIONS, Decimal(10), Decimal(1))
    charged = dataclasses.replace(charged, charges=(*charged.charges, converting))
    assert await backend.reserve("call-0", charged) is None

    backend.commit("call-0/B1", (metric,), Decimal("40"))
    await asyncio.wait_for(settled(store), 10)

    assert await store.ledger.amounts(CONVERSIONS) == conversions
    assert await store.ledger.amounts(REVENUE) == revenue
    committed = await store.database.run_read(
        lambda connection: connection.scalar(select(cap_reservations.c.committed))
    )
    assert committed == [metric]


async def test_a_server_on_sqlite_decides_in_memory(start_server: StartServer) -> None:
    server = await start_server({})
    assert server.b2bua is not None
    backend = server.b2bua.backend
    assert isinstance(backend, StoreBackend)
    assert backend.resident is not None
