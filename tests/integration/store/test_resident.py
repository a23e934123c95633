"""Resident counters: loaded from the store, they answer what the store would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

import pytest

from callwhisper.domain.caps import CapCharge, CapKey
from callwhisper.domain.state import ConcurrencyLimit, PastCall, Reservation, TierRotation
from callwhisper.store import ResidentCounters, Store
from callwhisper.store.resident import FORGET_AT_MOST

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DAY = CapKey("buyer:acme", "calls", "day", "2026-03-02")
MONTH = CapKey("buyer:acme", "revenue", "month", "2026-03")
UNTOUCHED = CapKey("buyer:zeta", "calls", "day", "2026-03-02")
SLOT = "target:acme/desk"
OWNERS = ("buyer:acme", SLOT, "buyer:zeta")
CALLER = "+14155550111"


def reservation(number: int) -> Reservation:
    return Reservation(
        f"r{number}",
        (CapCharge(DAY, Decimal(10), Decimal(1)), CapCharge(MONTH, Decimal(1000), Decimal("45.5"))),
        (ConcurrencyLimit(SLOT, 5),),
        NOW + timedelta(seconds=number),
    )


async def fill(store: Store) -> None:
    """Usage, open reservations (one partly committed), rotations and caller history."""
    for number in range(4):
        assert await store.ledger.reserve(reservation(number)) is None
    await store.ledger.commit("r0", ["calls", "revenue"], revenue=Decimal("40"))
    await store.ledger.finish("r0")
    await store.ledger.finish("r1")
    await store.ledger.commit("r2", ["calls"])
    write = store.database.run_write
    save = store.counters.save_rotation_in
    await write(partial(save, "auto", 0, TierRotation("acme/*", {"acme/*": -1})))
    await write(partial(save, "solar", 0, TierRotation("zeta/main")))
    history = store.counters.record_caller_history_in
    await write(
        partial(
            history, caller=CALLER, campaign_id="auto", call_id="c0", at=NOW - timedelta(days=40)
        )
    )
    for at, converted in ((NOW - timedelta(days=3), False), (NOW - timedelta(days=2), True)):
        await write(
            partial(
                history,
                caller=CALLER,
                campaign_id="auto",
                call_id="c1",
                at=at,
                buyer_id="acme",
                converted=converted,
            )
        )
    await write(
        partial(
            history, caller=CALLER, campaign_id="solar", call_id="c2", at=NOW - timedelta(hours=1)
        )
    )


async def test_loaded_counters_are_what_the_store_reads(store: Store) -> None:
    await fill(store)
    resident = await ResidentCounters.load(store.database, NOW)
    for campaign in ("auto", "solar", "none"):
        expected = await store.counters.load_counters(
            campaign, keys=[DAY, MONTH, UNTOUCHED], owners=OWNERS, caller=CALLER, now=NOW
        )
        got = resident.counters(
            campaign, keys=[DAY, MONTH, UNTOUCHED], owners=OWNERS, caller=CALLER, now=NOW
        )
        assert got == expected
    got = resident.counters("auto", keys=[DAY, MONTH], owners=OWNERS, caller=CALLER, now=NOW)
    assert got.cap_usage == {DAY: Decimal(3), MONTH: Decimal(131)}
    assert got.in_progress == {SLOT: 2}
    assert got.caller_history == (
        PastCall("auto", "acme", NOW - timedelta(days=3), connected=False, converted=True),
        PastCall("solar", None, NOW - timedelta(hours=1), connected=False, converted=False),
    )


async def test_open_reservations_settle_as_in_the_store(store: Store) -> None:
    await fill(store)
    resident = await ResidentCounters.load(store.database, NOW)
    # r2 committed its calls before the load: committing again keeps nothing more.
    resident.commit("r2", ["calls", "revenue"], Decimal("30"))
    await store.ledger.commit("r2", ["calls", "revenue"], revenue=Decimal("30"))
    for reservation_id in ("r2", "r3"):
        resident.finish(reservation_id)
        await store.ledger.finish(reservation_id)
    with pytest.raises(KeyError):
        resident.finish("r1")
    expected = await store.counters.load_counters("auto", keys=[DAY, MONTH], owners=OWNERS, now=NOW)
    got = resident.counters("auto", keys=[DAY, MONTH], owners=OWNERS, now=NOW)
    assert got == expected
    assert got.cap_usage == {DAY: Decimal(2), MONTH: Decimal(70)}
    assert got.in_progress == {SLOT: 0}


async def test_history_recorded_in_memory_merges_as_in_the_store(store: Store) -> None:
    resident = await ResidentCounters.load(store.database, NOW)
    for connected, converted in ((True, False), (False, True), (False, False)):
        at = NOW - timedelta(minutes=5 - connected - 2 * converted)
        resident.record_caller_history(
            caller=CALLER,
            campaign_id="auto",
            call_id="c9",
            at=at,
            buyer_id="acme",
            connected=connected,
            converted=converted,
        )
        await store.database.run_write(
            partial(
                store.counters.record_caller_history_in,
                caller=CALLER,
                campaign_id="auto",
                call_id="c9",
                at=at,
                buyer_id="acme",
                connected=connected,
                converted=converted,
            )
        )
    expected = await store.counters.load_counters("auto", caller=CALLER, now=NOW)
    got = resident.counters("auto", caller=CALLER, now=NOW)
    assert got.caller_history == expected.caller_history
    assert got.caller_history == (
        PastCall("auto", "acme", NOW - timedelta(minutes=4), connected=True, converted=True),
    )
    # A month later the entry has left the window, in memory as in the store.
    later = NOW + timedelta(days=31)
    assert resident.counters("auto", caller=CALLER, now=later).caller_history == ()
    assert (
        await store.counters.load_counters("auto", caller=CALLER, now=later)
    ).caller_history == ()


async def test_callers_who_never_call_again_leave_the_history(store: Store) -> None:
    resident = await ResidentCounters.load(store.database, NOW)
    # One call a minute from a new caller each: two windows' worth.
    window = resident.history_window
    calls = 2 * int(window / timedelta(minutes=1)) // 30
    step = window * 2 / calls
    for number in range(calls):
        resident.record_caller_history(
            caller=f"+1415{number:07d}",
            campaign_id="auto",
            call_id=f"c{number}",
            at=NOW + number * step,
        )
    # What is left is one window: the last call and those within the window before it.
    assert resident.callers() == calls // 2 + 1
    last = NOW + (calls - 1) * step
    newest = resident.counters("auto", caller=f"+1415{calls - 1:07d}", now=last)
    assert [past.at for past in newest.caller_history] == [last]


async def test_expired_history_is_forgotten_a_few_entries_per_call_and_never_read(
    store: Store,
) -> None:
    """Each recording forgets at most FORGET_AT_MOST expired entries; a read never shows them."""
    resident = await ResidentCounters.load(store.database, NOW)
    window = resident.history_window
    # A long call's entry is recorded at its end, after a newer one, with its arrival time.
    arrivals = [NOW + timedelta(hours=1), NOW, NOW + timedelta(hours=2), NOW + timedelta(hours=3)]
    for number, at in enumerate(arrivals):
        resident.record_caller_history(
            caller=f"+1415{number:07d}", campaign_id="auto", call_id=f"c{number}", at=at
        )
    after_quiet_spell = NOW + window + timedelta(days=1)
    resident.record_caller_history(
        caller="+14155550999", campaign_id="auto", call_id="c9", at=after_quiet_spell
    )
    assert resident.callers() == len(arrivals) - FORGET_AT_MOST + 1
    for number in range(len(arrivals)):
        counters = resident.counters("auto", caller=f"+1415{number:07d}", now=after_quiet_spell)
        assert counters.caller_history == ()
    resident.record_caller_history(
        caller="+14155550999", campaign_id="auto", call_id="c10", at=after_quiet_spell
    )
    assert resident.callers() == max(len(arrivals) - 2 * FORGET_AT_MOST, 0) + 1
    newest = resident.counters("auto", caller="+14155550999", now=after_quiet_spell)
    assert [past.at for past in newest.caller_history] == [after_quiet_spell] * 2


async def test_counters_of_ended_periods_are_not_loaded_unless_an_open_reservation_charges_them(
    store: Store,
) -> None:
    """Last month's counters stay in the store for reports; routing never reads them again."""
    await fill(store)
    last_month = CapKey("buyer:acme", "calls", "month", "2026-02")
    last_hour = CapKey("buyer:acme", "calls", "hour", "2026-03-01T10")
    for name, key in (("old", last_month), ("long", last_hour)):
        charge = (CapCharge(key, Decimal(10), Decimal(1)),)
        assert await store.ledger.reserve(Reservation(name, charge, (), NOW)) is None
    await store.ledger.finish("old")
    resident = await ResidentCounters.load(store.database, NOW)
    assert set(resident.ledger.used) | set(resident.ledger.reserved) == {DAY, MONTH, last_hour}
    # A call dialed yesterday and still going settles its counter, which then goes.
    resident.commit("long", ["calls"])
    assert resident.ledger.used[last_hour] == Decimal(1)
    resident.finish("long")
    resident.reserve(Reservation("next", (), (), NOW))
    assert resident.cap_counters() == 2
