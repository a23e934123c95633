"""The store backend's writes behind: one that fails is logged and loses no other."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.exc import IntegrityError

from callwhisper.domain import CallAttributes, Configuration
from callwhisper.domain.caps import CapCharge, CapKey
from callwhisper.domain.state import ConcurrencyLimit, Reservation
from callwhisper.engine import StoreBackend
from callwhisper.flow import CallRecord, Entry
from callwhisper.store import ResidentCounters, Store, create_store
from tests.logs import only_error

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DAY = CapKey("buyer:acme", "calls", "day", "2026-03-02")
SLOT = "target:acme/desk"


def reservation(reservation_id: str) -> Reservation:
    return Reservation(
        reservation_id,
        (CapCharge(DAY, Decimal(100), Decimal(1)),),
        (ConcurrencyLimit(SLOT, 10),),
        NOW,
    )


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = create_store(database_url)
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_reservation_write_that_fails_is_logged_and_the_rest_of_its_batch_lands(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # A finished reservation with the id call-1's leg will use: memory, which loads the
    # open reservations only, grants the id again, and the database refuses its row.
    assert await store.ledger.reserve(reservation("call-1/B1")) is None
    await store.ledger.finish("call-1/B1", at=NOW)
    resident = await ResidentCounters.load(store.database, NOW)
    backend = StoreBackend(store, Configuration(), resident)
    at = NOW.timestamp()

    # No await suspends between these: they are all queued for one transaction.
    backend.call_started("call-1", CallAttributes("auto", "+18005550100", "+14155550101"), at)
    backend.persist("call-1", Entry(at, "ringback", "A"))
    assert await backend.reserve("call-1", reservation("call-1/B1")) is None
    backend.persist("call-1", Entry(at + 1, "dial", "B1", {"destination": "d"}))
    assert await backend.reserve("call-2", reservation("call-2/B1")) is None
    backend.persist("call-1", Entry(at + 2, "ringing", "B1"))
    with caplog.at_level(logging.ERROR, logger="callwhisper.store.engine"):
        # A write submitted after the others is done once they are.
        await store.submit(lambda _connection: None)

    assert only_error(caplog, IntegrityError) == "cap reservation call-1/B1: store write failed"
    call = await store.calls.get_call("call-1")
    assert call is not None
    assert [(event.seq, event.kind) for event in call.events] == [
        (1, "ringback"),
        (2, "dial"),
        (3, "ringing"),
    ]
    [leg] = call.legs
    assert (leg.id, leg.dialed_at, leg.ringing_at) == (
        "call-1/B1",
        NOW + timedelta(seconds=1),
        NOW + timedelta(seconds=2),
    )
    assert await store.ledger.open_reservations() == ["call-2/B1"]
    # The database holds call-2's reservation only, as memory holds both.
    usage = await store.ledger.amounts(DAY)
    assert (usage.used, usage.reserved) == (Decimal(0), Decimal(1))
    assert resident.ledger.usage(DAY) == Decimal(2)


async def test_a_call_that_ends_without_times_is_closed_and_remembered_at_one_time(
    store: Store,
) -> None:
    """The record knows neither arrival nor end: both rows take the time the call ended."""
    backend = StoreBackend(store, Configuration())
    attributes = CallAttributes("auto", "+18005550100", "+14155550101")
    backend.call_started("call-1", attributes, NOW.timestamp())

    await backend.call_ended("call-1", attributes, CallRecord("call-1"), outcome="failed")

    call = await store.calls.get_call("call-1")
    assert call is not None
    assert call.ended_at is not None
    counters = await store.counters.load_counters("auto", caller="+14155550101", now=call.ended_at)
    assert [past.at for past in counters.caller_history] == [call.ended_at]
