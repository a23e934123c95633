"""Routing counters: usage, calls in progress, spacing, caller history and rotations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

import pytest
from sqlalchemy import Connection

from callwhisper.domain.caps import CapCharge, CapKey
from callwhisper.domain.state import ConcurrencyLimit, PastCall, Reservation, TierRotation
from callwhisper.store import Store

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DAY = CapKey("buyer:acme", "calls", "day", "2026-03-02")
MONTH = CapKey("buyer:acme", "revenue", "month", "2026-03")
UNTOUCHED = CapKey("buyer:zeta", "calls", "day", "2026-03-02")


async def test_counters_sum_used_and_reserved(store: Store) -> None:
    for number in range(3):
        reservation = Reservation(
            f"r{number}",
            (
                CapCharge(DAY, Decimal(10), Decimal(1)),
                CapCharge(MONTH, Decimal(1000), Decimal("45.5")),
            ),
            (ConcurrencyLimit("target:acme/desk", 5),),
            NOW + timedelta(seconds=number),
        )
        assert await store.ledger.reserve(reservation) is None
    await store.ledger.commit("r0", ["calls", "revenue"], revenue=Decimal("40"))
    await store.ledger.finish("r0")
    await store.ledger.finish("r1")
    counters = await store.counters.load_counters(
        "auto",
        keys=[DAY, MONTH, UNTOUCHED],
        owners=["buyer:acme", "target:acme/desk", "buyer:zeta"],
        now=NOW,
    )
    assert counters.cap_usage == {DAY: Decimal(2), MONTH: Decimal("85.5")}
    assert counters.in_progress == {"target:acme/desk": 1}
    assert counters.last_call_at == {
        "buyer:acme": NOW + timedelta(seconds=2),
        "target:acme/desk": NOW + timedelta(seconds=2),
    }


async def test_caller_history_within_the_window(store: Store) -> None:
    caller = "+14155550111"
    old = NOW - timedelta(days=40)
    write = store.database.run_write
    history = store.counters.record_caller_history_in
    await write(
        partial(
            history,
            caller=caller,
            campaign_id="auto",
            call_id="c0",
            at=old,
            buyer_id="acme",
            converted=True,
        )
    )
    for connected, converted in ((True, False), (False, True)):
        await write(
            partial(
                history,
                caller=caller,
                campaign_id="auto",
                call_id="c1",
                at=NOW - timedelta(days=3),
                buyer_id="acme",
                connected=connected,
                converted=converted,
            )
        )
    await write(
        partial(
            history, caller=caller, campaign_id="solar", call_id="c2", at=NOW - timedelta(hours=1)
        )
    )
    await write(
        partial(
            history,
            caller="+14155550999",
            campaign_id="auto",
            call_id="c3",
            at=NOW,
            buyer_id="acme",
        )
    )
    counters = await store.counters.load_counters("auto", caller=caller, now=NOW)
    assert counters.caller_history == (
        PastCall("auto", "acme", NOW - timedelta(days=3), connected=True, converted=True),
        PastCall("solar", None, NOW - timedelta(hours=1), connected=False, converted=False),
    )
    wider = await store.counters.load_counters(
        "auto", caller=caller, now=NOW, history_window=timedelta(days=60)
    )
    assert len(wider.caller_history) == 3
    assert wider.caller_history == (
        PastCall("auto", "acme", old, connected=False, converted=True),
        *counters.caller_history,
    )


async def test_rotations_persist_per_campaign_and_tier(store: Store) -> None:
    write = store.database.run_write
    save = store.counters.save_rotation_in
    await write(partial(save, "auto", 0, TierRotation("zeta/main", {"zeta/main": -1})))
    await write(partial(save, "auto", 0, TierRotation("acme/*", {"zeta/main": 2, "acme/*": -2})))
    await write(partial(save, "auto", 1, TierRotation("acme/*")))
    await write(partial(save, "solar", 0, TierRotation("acme/*")))
    counters = await store.counters.load_counters("auto", now=NOW)
    assert counters.rotation == {
        ("auto", 0): TierRotation("acme/*", {"zeta/main": 2, "acme/*": -2}),
        ("auto", 1): TierRotation("acme/*", {}),
    }


async def test_rotations_and_history_written_in_one_transaction_keep_the_last_and_every_flag(
    store: Store,
) -> None:
    """A shared transaction writes them at its end: a tier's last rotation, flags turned on."""
    save = store.counters.save_rotation_in
    history = partial(
        store.counters.record_caller_history_in,
        caller="+14155550111",
        campaign_id="auto",
        call_id="c1",
        at=NOW,
        buyer_id="acme",
    )

    def work(connection: Connection) -> None:
        save("auto", 0, TierRotation("zeta/main", {"zeta/main": -1}), connection)
        history(connection, connected=True)
        save("auto", 0, TierRotation("acme/*", {"zeta/main": 2, "acme/*": -2}), connection)
        save("auto", 1, TierRotation("acme/*"), connection)
        history(connection, converted=True)
        history(connection)

    await store.database.run_write(work)

    counters = await store.counters.load_counters("auto", caller="+14155550111", now=NOW)
    assert counters.rotation == {
        ("auto", 0): TierRotation("acme/*", {"zeta/main": 2, "acme/*": -2}),
        ("auto", 1): TierRotation("acme/*", {}),
    }
    assert counters.caller_history == (
        PastCall("auto", "acme", NOW, connected=True, converted=True),
    )
