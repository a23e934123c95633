"""What a call runner needs besides signalling and media: routing, caps, records and prompts.

:class:`CallBackend` is the narrow interface a :class:`~callwhisper.engine.runner.CallRunner`
talks to; :class:`StoreBackend` implements it on the :class:`~callwhisper.store.Store`
and :func:`~callwhisper.routing.decide`. Unit tests substitute a fake, so the
command-to-SIP mapping is tested without a database.

:class:`Prompts` turns ``PlayText`` and ``PlayAudio`` into
:class:`~callwhisper.audio.Audio` in worker threads: speech synthesis and
decoding a recording are blocking work that must never run on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Protocol, TypedDict

from sqlalchemy import Connection

from callwhisper.audio import Audio, TtsCache, get_engine, import_recording
from callwhisper.domain import CallAttributes, Configuration
from callwhisper.domain.caps import CapMetric
from callwhisper.domain.state import Reservation
from callwhisper.domain.whisper import TtsVoice
from callwhisper.flow import CallRecord, Entry
from callwhisper.routing import RoutingDecision, compile_plan, counter_scope, decide
from callwhisper.store import CallChanges, LegChanges, ResidentCounters, Store
from callwhisper.whisper import tts_options

__all__ = ["CallBackend", "Prompts", "StoreBackend", "utc"]

log = logging.getLogger(__name__)

_URGENT_METRICS = frozenset({"conversions", "revenue"})
"""Commits that bill: written at once, not with the next batch."""


def utc(at: float) -> datetime:
    """POSIX seconds as an aware UTC datetime, the store's and routing's time type."""
    return datetime.fromtimestamp(at, UTC)


class CallBackend(Protocol):
    """Routing, the cap ledger and the call record, as one call runner uses them.

    Writes are called by the runner as soon as the session emits them, in
    that order; signalling never waits for them. A write returns what tells
    when it is done, watched by the runner (a failure is logged), or
    ``None`` when the backend finishes it in order with the call's later
    writes and logs its failure itself: :meth:`call_ended`'s is then done
    only once every earlier write of the call is. A reservation is asked
    after the writes before it were called, and must be applied after them
    (the reservation row refers to the call row): a backend whose writes
    are not under way when called must order them itself.
    """

    def call_started(
        self, call_id: str, attributes: CallAttributes, at: float
    ) -> Awaitable[None] | None:
        """Create the call's record."""
        ...

    async def route(self, call_id: str, attributes: CallAttributes, at: float) -> RoutingDecision:
        """Decide the candidates of a call from the current counters."""
        ...

    def routed(self, call_id: str, decision: RoutingDecision) -> Awaitable[None] | None:
        """Keep the decision with the call, and persist the tier rotations it moved."""
        ...

    async def reserve(self, call_id: str, reservation: Reservation) -> str | None:
        """Reserve caps; ``None`` when granted, else why not."""
        ...

    def commit(
        self, reservation_id: str, metrics: tuple[CapMetric, ...], revenue: Decimal | None
    ) -> Awaitable[None] | None:
        """Commit metrics of a reservation for good."""
        ...

    def finish(self, reservation_id: str) -> Awaitable[None] | None:
        """Release what a reservation did not commit."""
        ...

    def persist(self, call_id: str, entry: Entry) -> Awaitable[None] | None:
        """Append one timeline entry (and keep the call and leg rows up to date)."""
        ...

    def recording_started(self, call_id: str, path: Path) -> Awaitable[None] | None:
        """Remember where the call's recording is written."""
        ...

    def call_ended(
        self, call_id: str, attributes: CallAttributes, record: CallRecord, *, outcome: str
    ) -> Awaitable[None]:
        """Close the call with its outcome and money, and remember the caller for duplicates.

        Done once this and every earlier write of the call are.
        """
        ...


def leg_row_id(call_id: str, leg: str) -> str:
    """The store id of a buyer leg: the same as its cap reservation id."""
    return f"{call_id}/{leg}"


class StoreBackend:
    """:class:`CallBackend` on the store, routing on ``configuration``.

    Every write of a call, and its cap reservations, go through the store's
    shared write transaction, queued in order when called: the writes of
    all the calls in progress are committed together instead of one
    transaction each. Only the call's last write has a future
    (``Store.submit``); the others are posted (``Store.post``), their
    failures logged with the call.

    Where the counters are decided depends on ``resident``:

    - given (the single-node SQLite server), routing reads and cap
      reservations are answered from those in-memory counters at once, and
      every change to them is queued as a store write behind it, in order;
    - ``None`` (PostgreSQL, possibly several servers), routing reads the
      counters in SQL and a reservation is decided in SQL, committed at once
      with the writes queued before it.
    """

    def __init__(
        self,
        store: Store,
        configuration: Configuration,
        resident: ResidentCounters | None = None,
    ) -> None:
        """Route with ``configuration``; see :meth:`use_configuration` to change it."""
        self.store = store
        self.configuration = configuration
        compile_plan(configuration)
        self.resident = resident
        self._tags: dict[str, dict[str, str]] = {}
        """The tags of each call in progress: an IVR answer is stored without reading the call."""
        self._seqs: dict[str, int] = {}
        """The last timeline entry number of each call in progress: this process numbers them."""

    def use_configuration(self, configuration: Configuration) -> None:
        """Route the next calls with ``configuration`` (calls in progress keep their offers).

        Its routing plan is compiled here, once, rather than by the first call
        routed on it, which would wait 5-30 ms more before its buyer is dialed.
        """
        self.configuration = configuration
        compile_plan(configuration)

    def call_started(self, call_id: str, attributes: CallAttributes, at: float) -> None:
        """Create the call row."""
        self._tags[call_id] = dict(attributes.tags)
        self._seqs[call_id] = 0
        self.store.post(
            partial(
                self.store.calls.create_call_in,
                call_id,
                dialed=attributes.dialed,
                started_at=utc(at),
                campaign_id=attributes.campaign_id,
                caller=attributes.caller,
                publisher_id=attributes.publisher_id,
                state="active",
                tags=attributes.tags,
            ),
            what=_call(call_id),
        )

    async def route(self, call_id: str, attributes: CallAttributes, at: float) -> RoutingDecision:
        """Read the counters the decision needs, then decide."""
        now = utc(at)
        configuration = self.configuration
        keys, owners = counter_scope(configuration, attributes, now)
        if self.resident is not None:
            counters = self.resident.counters(
                attributes.campaign_id, keys=keys, owners=owners, caller=attributes.caller, now=now
            )
        else:
            counters = await self.store.counters.load_counters(
                attributes.campaign_id, keys=keys, owners=owners, caller=attributes.caller, now=now
            )
        return decide(configuration, attributes, counters, now)

    def routed(self, call_id: str, decision: RoutingDecision) -> None:
        """Store the decision, the duplicate flag and the new rotations."""
        if self.resident is not None:
            for (campaign_id, tier_index), rotation in decision.rotations.items():
                self.resident.save_rotation(campaign_id, tier_index, rotation)
        self.store.post(partial(self._routed_in, call_id, decision), what=_call(call_id))

    def _routed_in(self, call_id: str, decision: RoutingDecision, connection: Connection) -> None:
        calls = self.store.calls
        calls.record_routing_in(call_id, decision.to_dict(), connection)
        if decision.duplicate:
            calls.update_call_in(call_id, {"duplicate": True}, connection)
        for (campaign_id, tier_index), rotation in decision.rotations.items():
            self.store.counters.save_rotation_in(campaign_id, tier_index, rotation, connection)

    async def reserve(self, call_id: str, reservation: Reservation) -> str | None:
        """Reserve caps, linked to the call for crash recovery.

        In memory when resident (the row is written behind: a crash before it
        is written loses a reservation that start-up would release anyway),
        else in the SQL ledger.
        """
        if self.resident is None:
            return await self.store.ledger.reserve(reservation, call_id=call_id, queued=True)
        refused = self.resident.reserve(reservation)
        if refused is None:
            # A failure is logged: memory granted the reservation, the database lost it.
            work = partial(self.store.ledger.record_reservation_in, reservation, call_id)
            self.store.post(work, what=_reservation(reservation.reservation_id))
        return refused

    def commit(
        self, reservation_id: str, metrics: tuple[CapMetric, ...], revenue: Decimal | None
    ) -> Awaitable[None] | None:
        """Commit in memory when resident, and in the SQL ledger.

        When resident, the commit memory made is written without reading the
        reservation back, and one that bills (a conversion, revenue) is
        committed to the database at once; other commits, and every commit
        when the SQL ledger decides, ride with the next batch of writes.
        """
        ledger = self.store.ledger
        what = _reservation(reservation_id)
        if self.resident is None:
            self.store.post(partial(ledger.commit_in, reservation_id, metrics, revenue), what=what)
            return None
        try:
            reservation, committed = self.resident.commit(reservation_id, metrics, revenue)
        except KeyError as error:
            return _failed(error)
        work = partial(ledger.record_commit_in, reservation, committed, metrics, revenue)
        self.store.post(work, what=what, urgent=not _URGENT_METRICS.isdisjoint(metrics))
        return None

    def finish(self, reservation_id: str) -> Awaitable[None] | None:
        """Finish in memory when resident (written without reading back), and in the SQL ledger."""
        ledger = self.store.ledger
        now = datetime.now(UTC)
        what = _reservation(reservation_id)
        if self.resident is None:
            self.store.post(partial(ledger.finish_in, reservation_id, now), what=what)
            return None
        try:
            reservation, committed = self.resident.finish(reservation_id)
        except KeyError as error:
            return _failed(error)
        self.store.post(partial(ledger.record_finish_in, reservation, committed, now), what=what)
        return None

    def persist(self, call_id: str, entry: Entry) -> None:
        """Append the entry, then mirror leg milestones onto the call and leg rows."""
        tags: dict[str, str] | None = None
        if entry.kind == "tag":
            # An IVR answer is a call tag like the tracking number's: routing and reports use it.
            tags = self._tags.setdefault(call_id, {})
            tags[entry.data["name"]] = entry.data["value"]
            tags = dict(tags)
        seq = self._seqs[call_id] = self._seqs.get(call_id, 0) + 1
        self.store.post(partial(self._persist_in, call_id, seq, entry, tags), what=_call(call_id))

    def _persist_in(
        self,
        call_id: str,
        seq: int,
        entry: Entry,
        tags: dict[str, str] | None,
        connection: Connection,
    ) -> None:
        calls = self.store.calls
        at = utc(entry.at)
        calls.record_event_in(
            call_id, seq, entry.kind, at, entry.data, connection, leg_id=entry.leg
        )
        data = entry.data
        leg = entry.leg
        if entry.kind == "caller_answered":
            calls.update_call_in(call_id, {"answered_at": at}, connection)
        elif tags is not None:
            calls.update_call_in(call_id, {"tags": tags}, connection)
        elif leg is None or leg == "A":
            return
        elif entry.kind == "dial":
            calls.create_leg_in(
                leg_row_id(call_id, leg),
                call_id,
                connection,
                destination=data["destination"],
                dialed_at=at,
                # The overflow line of a forward fallback is no buyer and reserves no caps.
                buyer_id=data.get("buyer"),
                target_id=data.get("target"),
                reservation_id=data.get("reservation"),
            )
        elif (changes := _leg_changes(entry.kind, at, data)) is not None:
            calls.update_leg_in(leg_row_id(call_id, leg), changes, connection)

    def recording_started(self, call_id: str, path: Path) -> None:
        """Store the recording's path on the call."""
        changes: CallChanges = {"recording_path": os.fspath(path)}
        work = partial(self.store.calls.update_call_in, call_id, changes)
        self.store.post(work, what=_call(call_id))

    def call_ended(
        self, call_id: str, attributes: CallAttributes, record: CallRecord, *, outcome: str
    ) -> Awaitable[None]:
        """Close the call row with its money; record the caller for duplicate rules.

        Its future is done once the call's earlier writes, posted before it, are.
        """
        self._tags.pop(call_id, None)
        self._seqs.pop(call_id, None)
        ended_at = utc(record.ended_at) if record.ended_at is not None else datetime.now(UTC)
        history = _caller_history(call_id, attributes, record, ended_at)
        if self.resident is not None and attributes.caller is not None:
            self.resident.record_caller_history(caller=attributes.caller, **history)
        return self.store.submit(
            partial(self._ended_in, call_id, attributes, record, outcome, ended_at, history)
        )

    def _ended_in(
        self,
        call_id: str,
        attributes: CallAttributes,
        record: CallRecord,
        outcome: str,
        ended_at: datetime,
        history: _HistoryEntry,
        connection: Connection,
    ) -> None:
        converted = record.converted_leg is not None
        self.store.calls.finish_call_in(
            call_id,
            connection,
            outcome=outcome,
            ended_at=ended_at,
            revenue=record.revenue,
            payout=record.payout,
            cost=record.cost,
            converted=converted,
        )
        if attributes.caller is None:
            return
        self.store.counters.record_caller_history_in(
            connection, caller=attributes.caller, **history
        )


class _HistoryEntry(TypedDict):
    campaign_id: str
    call_id: str
    at: datetime
    buyer_id: str | None
    connected: bool
    converted: bool


def _caller_history(
    call_id: str, attributes: CallAttributes, record: CallRecord, ended_at: datetime
) -> _HistoryEntry:
    """What the caller history remembers of an ended call (duplicate rules read it)."""
    arrived = utc(record.arrived_at) if record.arrived_at is not None else ended_at
    bridged = record.bridged_legs[-1] if record.bridged_legs else None
    buyer = record.legs[bridged].buyer_id if bridged in record.legs else None
    return {
        "campaign_id": attributes.campaign_id,
        "call_id": call_id,
        "at": arrived,
        "buyer_id": buyer,
        "connected": bridged is not None,
        "converted": record.converted_leg is not None,
    }


def _failed(error: Exception) -> asyncio.Future[None]:
    """A write refused before reaching the store (an unknown reservation), as the store would."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


def _call(call_id: str) -> str:
    """How the log names a call's write that failed."""
    return f"call {call_id}"


def _reservation(reservation_id: str) -> str:
    """How the log names a cap reservation's write that failed."""
    return f"cap reservation {reservation_id}"


def _leg_changes(kind: str, at: datetime, data: Mapping[str, str]) -> LegChanges | None:
    if kind == "ringing":
        return {"ringing_at": at}
    if kind == "answer":
        return {"answered_at": at}
    if kind == "accept":
        return {"accepted_at": at}
    if kind == "leg_end":
        reason = data.get("status") or data.get("by")
        return {"ended_at": at, "outcome": data["reason"], "reason": reason, "cost": _money(data)}
    return None


def _money(data: Mapping[str, str]) -> Decimal:
    return Decimal(data.get("cost", "0"))


class Prompts:
    """Speech and recordings as :class:`Audio`, rendered in worker threads and cached."""

    def __init__(self, tts_cache: TtsCache) -> None:
        """Render speech through ``tts_cache``."""
        self.tts_cache = tts_cache
        self._recordings: dict[tuple[str, int], Audio] = {}

    async def speech(self, text: str, voice: TtsVoice) -> Audio:
        """``text`` spoken with ``voice`` (cached by the TTS cache)."""
        options = tts_options(voice)
        engine = get_engine(voice.engine)
        # Every call of a campaign says the same whisper: a memory hit needs no thread.
        audio = self.tts_cache.remembered(engine, text, options)
        if audio is not None:
            return audio
        return await asyncio.to_thread(self.tts_cache.render, engine, text, options)

    async def recording(self, path: str) -> Audio:
        """The recording at ``path``, imported once per modification time."""
        stat = await asyncio.to_thread(os.stat, path)
        key = (path, stat.st_mtime_ns)
        audio = self._recordings.get(key)
        if audio is None:
            audio = await asyncio.to_thread(import_recording, path)
            self._recordings[key] = audio
        return audio
