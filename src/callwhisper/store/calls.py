"""Call records: calls, their legs and their timelines, written at every milestone.

Every write is a unit of work (the ``*_in`` methods, the connection last):
``Database.run_write(partial(calls.update_call_in, call_id, changes))`` runs
it in a transaction of its own, ``Store.submit`` in the shared transaction
of the writes queued with it. What is committed survives a crash;
``close_interrupted_calls`` runs at start-up and closes what a crash left open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypedDict

from sqlalchemy import Connection, Row, bindparam, select, update

from callwhisper.store.compiled import execute
from callwhisper.store.engine import Database, defer, run_deferred, update_deferred
from callwhisper.store.ledger import SqlCapLedger
from callwhisper.store.sql import utcnow
from callwhisper.store.tables import call_events, call_legs, calls, cap_reservations

INTERRUPTED = "interrupted"
"""Outcome of a call (and its open legs) that was in flight when the process stopped."""

ENDED = "ended"
"""State of a call that is over."""

# The call path's statements, built once: building one costs several times running it.
_INSERT_CALL = calls.insert()
_UPDATE_CALL = update(calls).where(calls.c.id == bindparam("call_key"))
"""SET takes the columns of the parameters given."""
_INSERT_LEG = call_legs.insert()
_UPDATE_LEG = update(call_legs).where(call_legs.c.id == bindparam("leg_key"))
_NEXT_EVENT_SEQ = (
    update(calls)
    .where(calls.c.id == bindparam("call_key"))
    .values(last_event_seq=calls.c.last_event_seq + 1)
    .returning(calls.c.last_event_seq)
)
_INSERT_EVENT = call_events.insert()
_RAISE_EVENT_SEQ = (
    update(calls)
    .where(calls.c.id == bindparam("call_key"), calls.c.last_event_seq < bindparam("seq"))
    .values(last_event_seq=bindparam("seq"))
)


class CallChanges(TypedDict, total=False):
    """Fields of a call that ``update_call_in`` may change."""

    state: str
    outcome: str | None
    publisher_id: str | None
    answered_at: datetime | None
    tags: Mapping[str, str]
    converted: bool
    duplicate: bool
    recording_path: str | None
    revenue: Decimal
    payout: Decimal
    cost: Decimal


class LegChanges(TypedDict, total=False):
    """Fields of a leg that ``update_leg_in`` may change."""

    ringing_at: datetime | None
    answered_at: datetime | None
    accepted_at: datetime | None
    ended_at: datetime | None
    outcome: str | None
    reason: str | None
    cost: Decimal
    reservation_id: str | None


_EVERY_CALL_COLUMN: dict[str, Any] = dict.fromkeys(calls.c.keys())
_EVERY_LEG_COLUMN: dict[str, Any] = dict.fromkeys(call_legs.c.keys())
"""A new call's or leg's row starts with every column, so that a change folded into it
in the same transaction (see ``create_call_in``) keeps every row of the insert alike."""


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One entry of a call's timeline; ``seq`` counts from 1 per call."""

    seq: int
    at: datetime
    kind: str
    leg_id: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class LegRecord:
    """One attempt to reach a buyer's target."""

    id: str
    call_id: str
    buyer_id: str | None
    target_id: str | None
    destination: str
    reservation_id: str | None
    dialed_at: datetime
    ringing_at: datetime | None
    answered_at: datetime | None
    accepted_at: datetime | None
    ended_at: datetime | None
    outcome: str | None
    reason: str | None
    cost: Decimal


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One inbound call with its legs and timeline (empty when not asked for)."""

    id: str
    campaign_id: str | None
    dialed: str
    caller: str | None
    publisher_id: str | None
    state: str
    outcome: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    tags: Mapping[str, str]
    routing: Mapping[str, Any] | None
    revenue: Decimal
    payout: Decimal
    cost: Decimal
    converted: bool
    duplicate: bool
    recording_path: str | None
    legs: tuple[LegRecord, ...] = ()
    events: tuple[CallEvent, ...] = field(default=())

    @property
    def profit(self) -> Decimal:
        """Revenue minus payout minus telephony cost."""
        return self.revenue - self.payout - self.cost


class CallRepository:
    """Writes and reads call records."""

    def __init__(self, database: Database, ledger: SqlCapLedger) -> None:
        self._db = database
        self._ledger = ledger

    def create_call_in(
        self,
        call_id: str,
        connection: Connection,
        *,
        dialed: str,
        started_at: datetime,
        campaign_id: str | None = None,
        caller: str | None = None,
        publisher_id: str | None = None,
        state: str = "new",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Record a new inbound call.

        The insert is deferred to the end of the transaction
        (``store.engine.defer``): the call's changes in the same transaction
        (its routing decision, its first timeline numbers) are written with
        it, and a shared transaction inserts every new call in one statement.
        """
        row = {
            "id": call_id,
            "campaign_id": campaign_id,
            "dialed": dialed,
            "caller": caller,
            "publisher_id": publisher_id,
            "state": state,
            "started_at": started_at,
            "tags": dict(tags or {}),
            "revenue": Decimal(0),
            "payout": Decimal(0),
            "cost": Decimal(0),
            "converted": False,
            "duplicate": False,
            "last_event_seq": 0,
            "updated_at": utcnow(),
        }
        defer(connection, _INSERT_CALL, {**_EVERY_CALL_COLUMN, **row}, key=call_id)

    def update_call_in(self, call_id: str, changes: CallChanges, connection: Connection) -> None:
        """Change some fields of a call; raises ``KeyError`` for an unknown call."""
        values: dict[str, Any] = dict(changes)
        if "tags" in values:
            values["tags"] = dict(values["tags"])
        _update_call(connection, call_id, values)

    def record_routing_in(
        self, call_id: str, decision: Mapping[str, Any], connection: Connection
    ) -> None:
        """Keep the routing decision (candidates and reasons) of a call, as JSON."""
        _update_call(connection, call_id, {"routing": dict(decision)})

    def finish_call_in(
        self,
        call_id: str,
        connection: Connection,
        *,
        outcome: str,
        ended_at: datetime,
        revenue: Decimal,
        payout: Decimal,
        cost: Decimal,
        converted: bool | None = None,
    ) -> None:
        """Close a call with its outcome and its money."""
        values: dict[str, Any] = {
            "state": ENDED,
            "outcome": outcome,
            "ended_at": ended_at,
            "revenue": revenue,
            "payout": payout,
            "cost": cost,
        }
        if converted is not None:
            values["converted"] = converted
        _update_call(connection, call_id, values)

    def create_leg_in(
        self,
        leg_id: str,
        call_id: str,
        connection: Connection,
        *,
        destination: str,
        dialed_at: datetime,
        buyer_id: str | None = None,
        target_id: str | None = None,
        reservation_id: str | None = None,
    ) -> None:
        """Record a buyer leg being dialed.

        The insert is deferred to the end of the transaction
        (``store.engine.defer``), so that the leg's changes in the same
        transaction (it rings, it answers) are written with it.
        """
        row = {
            "id": leg_id,
            "call_id": call_id,
            "buyer_id": buyer_id,
            "target_id": target_id,
            "destination": destination,
            "reservation_id": reservation_id,
            "dialed_at": dialed_at,
            "cost": Decimal(0),
        }
        defer(connection, _INSERT_LEG, {**_EVERY_LEG_COLUMN, **row}, key=leg_id)

    def update_leg_in(self, leg_id: str, changes: LegChanges, connection: Connection) -> None:
        """Change some fields of a leg; raises ``KeyError`` for an unknown leg."""
        if update_deferred(connection, _INSERT_LEG, leg_id, changes):
            return
        if execute(connection, _UPDATE_LEG, {**changes, "leg_key": leg_id}) != 1:
            raise KeyError(leg_id)

    def append_event_in(
        self,
        call_id: str,
        kind: str,
        at: datetime,
        data: Mapping[str, Any] | None,
        connection: Connection,
        *,
        leg_id: str | None = None,
    ) -> int:
        """Add an entry to a call's timeline; returns its sequence number (1, 2, ...)."""
        return _append_event(connection, call_id, kind, at, data or {}, leg_id)

    def record_event_in(
        self,
        call_id: str,
        seq: int,
        kind: str,
        at: datetime,
        data: Mapping[str, Any],
        connection: Connection,
        *,
        leg_id: str | None = None,
    ) -> None:
        """Add entry ``seq`` of a call's timeline, numbered by the process running the call.

        The process records a call's entries in the order of their numbers.
        The insert and the call's counter are deferred to the end of the
        transaction (``store.engine.defer``): a shared transaction then
        writes every call's new entries in one statement, and raises each
        call's counter once, to its last entry (a call inserted in the same
        transaction is inserted with it).
        """
        defer(connection, _INSERT_EVENT, _event_row(call_id, seq, at, kind, leg_id, data))
        if update_deferred(connection, _INSERT_CALL, call_id, {"last_event_seq": seq}):
            return
        raised = {"call_key": call_id, "seq": seq}
        if not update_deferred(connection, _RAISE_EVENT_SEQ, call_id, raised):
            defer(connection, _RAISE_EVENT_SEQ, raised, key=call_id)

    async def close_interrupted_calls(self, now: datetime) -> int:
        """Close the calls that never ended (after a crash); returns how many.

        Each gets the outcome ``interrupted``, its open legs too, a timeline
        event ``interrupted``, and its open cap reservations are finished, which
        releases what they had not committed.
        """
        return await self._db.run_write(partial(self._close_interrupted_calls_in, now))

    def _close_interrupted_calls_in(self, now: datetime, connection: Connection) -> int:
        open_calls = [
            str(call_id)
            for call_id in connection.scalars(
                select(calls.c.id).where(calls.c.ended_at.is_(None)).order_by(calls.c.id)
            )
        ]
        if not open_calls:
            return 0
        connection.execute(
            update(call_legs)
            .where(call_legs.c.call_id.in_(open_calls), call_legs.c.ended_at.is_(None))
            .values(ended_at=now, outcome=INTERRUPTED)
        )
        reservations = connection.scalars(
            select(cap_reservations.c.id)
            .where(
                cap_reservations.c.call_id.in_(open_calls),
                cap_reservations.c.finished_at.is_(None),
            )
            .order_by(cap_reservations.c.id)
        )
        for reservation_id in list(reservations):
            self._ledger.finish_in(str(reservation_id), now, connection)
        for call_id in open_calls:
            _append_event(connection, call_id, INTERRUPTED, now, {}, None)
            _update_call(
                connection, call_id, {"state": ENDED, "outcome": INTERRUPTED, "ended_at": now}
            )
        return len(open_calls)

    async def get_call(self, call_id: str) -> CallRecord | None:
        """A call with its legs and timeline, or ``None``."""
        found = await self._load(select(calls).where(calls.c.id == call_id))
        return found[0] if found else None

    async def list_calls(
        self,
        *,
        campaign_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        with_events: bool = False,
    ) -> list[CallRecord]:
        """The newest calls first, with their legs (and timelines if asked)."""
        query = select(calls).order_by(calls.c.started_at.desc(), calls.c.id).limit(limit)
        if campaign_id is not None:
            query = query.where(calls.c.campaign_id == campaign_id)
        if since is not None:
            query = query.where(calls.c.started_at >= since)
        return await self._load(query, with_events=with_events)

    async def _load(self, query: Any, *, with_events: bool = True) -> list[CallRecord]:
        async with self._db.read() as connection:
            rows = list(await connection.execute(query))
            ids = [str(row.id) for row in rows]
            legs: dict[str, list[LegRecord]] = {}
            events: dict[str, list[CallEvent]] = {}
            if ids:
                for leg in await connection.execute(
                    select(call_legs)
                    .where(call_legs.c.call_id.in_(ids))
                    .order_by(call_legs.c.dialed_at, call_legs.c.id)
                ):
                    legs.setdefault(str(leg.call_id), []).append(_leg(leg))
                if with_events:
                    for event in await connection.execute(
                        select(call_events)
                        .where(call_events.c.call_id.in_(ids))
                        .order_by(call_events.c.call_id, call_events.c.seq)
                    ):
                        events.setdefault(str(event.call_id), []).append(
                            CallEvent(
                                int(event.seq),
                                event.at,
                                str(event.kind),
                                event.leg_id,
                                dict(event.data),
                            )
                        )
        return [_call(row, legs.get(str(row.id), ()), events.get(str(row.id), ())) for row in rows]


def _update_call(connection: Connection, call_id: str, values: Mapping[str, Any]) -> None:
    changes = {**values, "updated_at": utcnow()}
    if update_deferred(connection, _INSERT_CALL, call_id, changes):
        return
    if execute(connection, _UPDATE_CALL, {**changes, "call_key": call_id}) != 1:
        raise KeyError(call_id)


def _append_event(
    connection: Connection,
    call_id: str,
    kind: str,
    at: datetime,
    data: Mapping[str, Any],
    leg_id: str | None,
) -> int:
    # Bumping the call's counter locks the call row: concurrent appends take turns.
    run_deferred(connection, _INSERT_CALL, call_id)
    seq = connection.scalar(_NEXT_EVENT_SEQ, {"call_key": call_id})
    if seq is None:
        raise KeyError(call_id)
    connection.execute(_INSERT_EVENT, _event_row(call_id, seq, at, kind, leg_id, data))
    return int(seq)


def _event_row(
    call_id: str,
    seq: int,
    at: datetime,
    kind: str,
    leg_id: str | None,
    data: Mapping[str, Any],
) -> dict[str, Any]:
    """The parameters of ``_INSERT_EVENT`` for one timeline entry."""
    return {
        "call_id": call_id,
        "seq": seq,
        "at": at,
        "kind": kind,
        "leg_id": leg_id,
        "data": dict(data),
    }


def _leg(row: Row[Any]) -> LegRecord:
    return LegRecord(
        id=row.id,
        call_id=row.call_id,
        buyer_id=row.buyer_id,
        target_id=row.target_id,
        destination=row.destination,
        reservation_id=row.reservation_id,
        dialed_at=row.dialed_at,
        ringing_at=row.ringing_at,
        answered_at=row.answered_at,
        accepted_at=row.accepted_at,
        ended_at=row.ended_at,
        outcome=row.outcome,
        reason=row.reason,
        cost=row.cost,
    )


def _call(row: Row[Any], legs: Sequence[LegRecord], events: Sequence[CallEvent]) -> CallRecord:
    return CallRecord(
        id=row.id,
        campaign_id=row.campaign_id,
        dialed=row.dialed,
        caller=row.caller,
        publisher_id=row.publisher_id,
        state=row.state,
        outcome=row.outcome,
        started_at=row.started_at,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        tags=dict(row.tags),
        routing=row.routing,
        revenue=row.revenue,
        payout=row.payout,
        cost=row.cost,
        converted=bool(row.converted),
        duplicate=bool(row.duplicate),
        recording_path=row.recording_path,
        legs=tuple(legs),
        events=tuple(events),
    )
