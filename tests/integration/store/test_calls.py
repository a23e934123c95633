"""Call records: milestones, timelines, money, and closing calls a crash left open."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

import pytest
from sqlalchemy import Connection

from callwhisper.domain.caps import CapCharge, CapKey
from callwhisper.domain.state import ConcurrencyLimit, Reservation
from callwhisper.store import CapAmounts, Store

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def later(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


async def test_a_call_is_recorded_milestone_by_milestone(store: Store) -> None:
    calls = store.calls
    write = store.database.run_write
    await write(
        partial(
            calls.create_call_in,
            "c1",
            dialed="+18005550123",
            caller="+14155550111",
            campaign_id="auto-ca",
            publisher_id="pub-a",
            started_at=START,
            tags={"source": "radio"},
        )
    )
    inbound = partial(calls.append_event_in, "c1", "inbound", START, {"from": "+14155550111"})
    assert await write(inbound) == 1
    decision = {"candidates": [{"buyer": "zeta", "skipped": "daily calls cap 50/50"}]}
    await write(partial(calls.record_routing_in, "c1", decision))
    await write(
        partial(
            calls.create_leg_in,
            "c1-l1",
            "c1",
            destination="+13125550199",
            dialed_at=later(1),
            buyer_id="acme",
            target_id="desk",
            reservation_id="r1",
        )
    )
    dial = partial(calls.append_event_in, "c1", "dial", later(1), None, leg_id="c1-l1")
    assert await write(dial) == 2
    await write(
        partial(
            calls.update_leg_in,
            "c1-l1",
            {"answered_at": later(5), "accepted_at": later(9), "ringing_at": later(2)},
        )
    )
    await write(
        partial(calls.update_call_in, "c1", {"state": "bridged", "answered_at": later(0.5)})
    )
    await write(
        partial(
            calls.update_leg_in,
            "c1-l1",
            {"ended_at": later(200), "outcome": "converted", "cost": Decimal("0.0429")},
        )
    )
    await write(
        partial(
            calls.finish_call_in,
            "c1",
            outcome="converted",
            ended_at=later(200),
            revenue=Decimal("30"),
            payout=Decimal("10"),
            cost=Decimal("0.0714"),
            converted=True,
        )
    )
    call = await calls.get_call("c1")
    assert call is not None
    assert (call.state, call.outcome, call.converted) == ("ended", "converted", True)
    assert (call.revenue, call.payout, call.cost) == (Decimal(30), Decimal(10), Decimal("0.0714"))
    assert call.profit == Decimal("19.9286")
    assert call.started_at == START
    assert call.ended_at == later(200)
    assert call.answered_at == later(0.5)
    assert call.tags == {"source": "radio"}
    assert call.routing == decision
    assert [(e.seq, e.kind, e.leg_id) for e in call.events] == [
        (1, "inbound", None),
        (2, "dial", "c1-l1"),
    ]
    assert call.events[0].data == {"from": "+14155550111"}
    (leg,) = call.legs
    assert (leg.buyer_id, leg.target_id, leg.outcome) == ("acme", "desk", "converted")
    assert (leg.ringing_at, leg.answered_at, leg.accepted_at) == (later(2), later(5), later(9))
    assert leg.cost == Decimal("0.0429")


async def test_timeline_sequence_is_monotonic_under_concurrent_appends(store: Store) -> None:
    write = store.database.run_write
    await write(partial(store.calls.create_call_in, "c1", dialed="+18005550123", started_at=START))
    seqs = await asyncio.gather(
        *(
            write(
                partial(store.calls.append_event_in, "c1", "dtmf", later(n), {"key": str(n % 10)})
            )
            for n in range(30)
        )
    )
    assert sorted(seqs) == list(range(1, 31))
    call = await store.calls.get_call("c1")
    assert call is not None
    assert [event.seq for event in call.events] == list(range(1, 31))


async def test_a_leg_that_changes_in_the_transaction_dialing_it_is_stored_with_its_last_values(
    store: Store,
) -> None:
    calls = store.calls

    def dial_ring_answer(connection: Connection) -> None:
        calls.create_call_in("c1", connection, dialed="+18005550123", started_at=START)
        calls.create_leg_in(
            "c1-l1", "c1", connection, destination="sip:desk@acme", dialed_at=later(1)
        )
        calls.create_leg_in(
            "c1-l2", "c1", connection, destination="sip:desk@zeta", dialed_at=later(1)
        )
        calls.update_leg_in("c1-l1", {"ringing_at": later(2), "cost": Decimal(1)}, connection)
        calls.update_leg_in("c1-l1", {"answered_at": later(3), "cost": Decimal(2)}, connection)
        with pytest.raises(KeyError, match="c1-l3"):
            calls.update_leg_in("c1-l3", {"answered_at": later(3)}, connection)
        with pytest.raises(ValueError, match="'c1-l2' is deferred already"):
            calls.create_leg_in(
                "c1-l2", "c1", connection, destination="sip:desk@zeta", dialed_at=later(9)
            )

    await store.submit(dial_ring_answer)
    await store.database.run_write(
        partial(calls.update_leg_in, "c1-l2", {"ended_at": later(4), "outcome": "busy"})
    )

    call = await calls.get_call("c1")
    assert call is not None
    first_leg, second_leg = call.legs
    assert (first_leg.dialed_at, first_leg.ringing_at, first_leg.answered_at) == (
        later(1),
        later(2),
        later(3),
    )
    assert (first_leg.cost, first_leg.ended_at, first_leg.outcome) == (Decimal(2), None, None)
    assert (second_leg.ringing_at, second_leg.ended_at, second_leg.outcome) == (
        None,
        later(4),
        "busy",
    )
    assert second_leg.cost == Decimal(0)


async def test_unknown_calls_and_legs_raise_key_error(store: Store) -> None:
    write = store.database.run_write
    with pytest.raises(KeyError, match="missing-call"):
        await write(partial(store.calls.update_call_in, "missing-call", {"state": "bridged"}))
    with pytest.raises(KeyError, match="missing-leg"):
        await write(partial(store.calls.update_leg_in, "missing-leg", {"outcome": "busy"}))
    with pytest.raises(KeyError, match="missing-call"):
        await write(partial(store.calls.append_event_in, "missing-call", "inbound", START, None))
    assert await store.calls.get_call("missing") is None


async def test_list_calls_newest_first_by_campaign(store: Store) -> None:
    for number, campaign in enumerate(["a", "b", "a"]):
        await store.database.run_write(
            partial(
                store.calls.create_call_in,
                f"c{number}",
                dialed="+18005550123",
                campaign_id=campaign,
                started_at=later(number),
            )
        )
    listed = await store.calls.list_calls(campaign_id="a")
    assert [call.id for call in listed] == ["c2", "c0"]
    assert [call.id for call in await store.calls.list_calls(since=later(1))] == ["c2", "c1"]


async def test_close_interrupted_calls_closes_open_calls_and_releases_their_caps(
    store: Store,
) -> None:
    key = CapKey("buyer:acme", "calls", "day", "2026-03-02")
    slot = ConcurrencyLimit("buyer:acme", 5)
    calls = store.calls
    write = store.database.run_write
    await write(partial(calls.create_call_in, "done", dialed="+18005550123", started_at=START))
    await write(
        partial(
            calls.finish_call_in,
            "done",
            outcome="no_answer",
            ended_at=later(30),
            revenue=Decimal(0),
            payout=Decimal(0),
            cost=Decimal(0),
        )
    )
    await write(partial(calls.create_call_in, "live", dialed="+18005550123", started_at=START))
    reservation = Reservation("r-live", (CapCharge(key, Decimal(10), Decimal(1)),), (slot,), START)
    assert await store.ledger.reserve(reservation, call_id="live") is None
    await write(
        partial(
            calls.create_leg_in,
            "live-l1",
            "live",
            destination="+13125550199",
            dialed_at=later(1),
            reservation_id="r-live",
        )
    )
    await write(partial(calls.append_event_in, "live", "dial", later(1), None, leg_id="live-l1"))

    assert await store.calls.close_interrupted_calls(later(60)) == 1
    assert await store.calls.close_interrupted_calls(later(61)) == 0

    live = await store.calls.get_call("live")
    assert live is not None
    assert (live.state, live.outcome, live.ended_at) == ("ended", "interrupted", later(60))
    assert [(e.seq, e.kind) for e in live.events] == [(1, "dial"), (2, "interrupted")]
    assert (live.legs[0].outcome, live.legs[0].ended_at) == ("interrupted", later(60))
    done = await store.calls.get_call("done")
    assert done is not None
    assert done.outcome == "no_answer"
    assert await store.ledger.amounts(key) == CapAmounts(Decimal(0), Decimal(0))
    assert await store.ledger.open_reservations() == []
    counters = await store.counters.load_counters("auto", owners=["buyer:acme"], now=START)
    assert counters.in_progress == {"buyer:acme": 0}


async def test_entries_numbered_by_the_caller_share_statements_and_keep_the_counter(
    store: Store,
) -> None:
    """record_event_in defers its rows to the transaction's end; append_event_in then goes on."""
    calls = store.calls
    write = store.database.run_write
    await write(partial(calls.create_call_in, "c1", dialed="+18005550123", started_at=START))
    await write(partial(calls.create_call_in, "c2", dialed="+18005550123", started_at=START))

    def entries(connection: Connection) -> None:
        calls.record_event_in("c1", 1, "inbound", START, {"from": "a"}, connection)
        calls.record_event_in("c2", 1, "inbound", later(1), {}, connection)
        calls.record_event_in("c1", 2, "dial", later(2), {}, connection, leg_id="B1")

    await store.submit(entries)

    assert await write(partial(calls.append_event_in, "c1", "hangup", later(3), None)) == 3
    first = await calls.get_call("c1")
    second = await calls.get_call("c2")
    assert first is not None
    assert second is not None
    assert [(e.seq, e.kind, e.leg_id, dict(e.data)) for e in first.events] == [
        (1, "inbound", None, {"from": "a"}),
        (2, "dial", "B1", {}),
        (3, "hangup", None, {}),
    ]
    assert [(e.seq, e.at) for e in second.events] == [(1, later(1))]


async def test_a_new_call_is_inserted_at_the_end_with_what_its_transaction_changed(
    store: Store,
) -> None:
    """Its routing, tags and timeline numbers ride in its insert; it still follows rows of
    earlier calls deferred before it and precedes its own legs and entries (foreign keys)."""
    calls = store.calls
    write = store.database.run_write
    await write(partial(calls.create_call_in, "c0", dialed="+18005550123", started_at=START))
    written: list[str] = []

    def shared(connection: Connection) -> None:
        # Rows that refer to calls, deferred before the new call's insert is.
        calls.record_event_in("c0", 1, "inbound", START, {}, connection)
        calls.create_leg_in("c0/B1", "c0", connection, destination="sip:a", dialed_at=START)
        calls.create_call_in("c1", connection, dialed="+18005550123", started_at=later(1))
        calls.record_routing_in("c1", {"candidates": ["acme"]}, connection)
        calls.update_call_in("c1", {"tags": {"source": "radio"}, "duplicate": True}, connection)
        calls.record_event_in("c1", 1, "inbound", later(1), {}, connection)
        calls.create_leg_in("c1/B1", "c1", connection, destination="sip:b", dialed_at=later(2))
        calls.record_event_in("c1", 2, "dial", later(2), {}, connection, leg_id="B1")
        # Nothing of c1 is written yet: it is all deferred.
        written.extend(str(row[0]) for row in connection.exec_driver_sql("SELECT id FROM calls"))

    await store.submit(shared)

    assert written == ["c0"]
    call = await calls.get_call("c1")
    assert call is not None
    assert call.routing == {"candidates": ["acme"]}
    assert (dict(call.tags), call.duplicate) == ({"source": "radio"}, True)
    assert [(e.seq, e.kind) for e in call.events] == [(1, "inbound"), (2, "dial")]
    assert [leg.id for leg in call.legs] == ["c1/B1"]
    # The counter came with the insert: the next entry appended follows the last one.
    assert await write(partial(calls.append_event_in, "c1", "hangup", later(3), None)) == 3
    first = await calls.get_call("c0")
    assert first is not None
    assert [e.kind for e in first.events] == ["inbound"]
    assert [leg.id for leg in first.legs] == ["c0/B1"]


async def test_a_call_without_a_routing_decision_keeps_sql_null(store: Store) -> None:
    """Written with others in one statement, the missing decision is NULL, not JSON null."""
    calls = store.calls

    def two(connection: Connection) -> None:
        calls.create_call_in("c1", connection, dialed="+18005550123", started_at=START)
        calls.create_call_in("c2", connection, dialed="+18005550123", started_at=START)
        calls.record_routing_in("c2", {"candidates": []}, connection)

    await store.submit(two)

    def unrouted(connection: Connection) -> list[str]:
        query = "SELECT id FROM calls WHERE routing IS NULL"
        return [str(row[0]) for row in connection.exec_driver_sql(query)]

    assert await store.database.run_read(unrouted) == ["c1"]
    call = await calls.get_call("c1")
    assert call is not None
    assert call.routing is None
