"""Routing counters and the cap ledger held in the server's memory (single node).

With the embedded SQLite store exactly one server process owns the database,
so nothing but that process changes the counters: it can keep them in memory
and decide routing and cap reservations there, on its event loop, instead of
a trip to the store before every buyer is dialed (which cost most of
the post-dial delay). A reservation checked and applied in one synchronous
step of the one event loop is atomic, so caps still cannot overshoot.

:class:`ResidentCounters` is that state: a
:class:`~callwhisper.domain.state.MemoryCapLedger` (the reference semantics),
the tier rotations and the callers' recent history, loaded from the store once
at start-up, after ``CallRepository.close_interrupted_calls`` released what a
previous run left reserved. It never touches the database afterwards: the
engine's backend changes it and queues the same change as a store write, in
order, so that the database holds a prefix of the same history and a restart
loads the state back (less the reservations of the calls a crash cut off,
which start-up releases anyway).

Several servers sharing a PostgreSQL database cannot do this (each would have
its own counters): they keep deciding in SQL (``SqlCapLedger``).

Cap counters of calendar periods that are over are forgotten, a few per
reservation (:func:`forget_after`), so a server that runs for months holds
the current periods' counters, not every hour it has seen; the store keeps
them all for reports.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, select

from callwhisper.domain.caps import CAP_METRICS, CapKey, CapMetric
from callwhisper.domain.state import (
    MemoryCapLedger,
    PastCall,
    Reservation,
    RoutingCounters,
    TierRotation,
)
from callwhisper.store.counters import (
    DEFAULT_HISTORY_WINDOW,
    past_call_from_row,
    rotation_from_row,
)
from callwhisper.store.engine import Database
from callwhisper.store.ledger import reservation_from_row
from callwhisper.store.sql import cap_key
from callwhisper.store.tables import (
    caller_history,
    cap_concurrency,
    cap_last_call,
    cap_reservations,
    cap_usage,
    routing_rotation,
)

FORGET_AT_MOST = 2
"""Caller history entries past the window forgotten per recording, at most.

More than the one entry a recording adds, so that a backlog left by a quiet
spell drains a few entries per call instead of in one pause of the event loop.
"""

FORGET_COUNTERS_AT_MOST = 4
"""Cap counters of ended periods forgotten per reservation, beyond as many as it charges.

A reservation creates at most one counter per charge, so forgetting that
many more keeps up with any rate of calls, and a backlog (the hour counters
of every buyer, ending together) drains a few per call instead of at once.
"""

WESTMOST_OFFSET = timedelta(hours=12)
"""How far behind UTC a time zone's clock can be (UTC-12): the last place a local period ends."""

FORGET_GRACE = timedelta(hours=1)
"""How long after its end everywhere a period's counters are kept, for a wall clock set back."""

_HistoryKey = tuple[str, str]
"""A caller's history entry: one per call and buyer (``""`` for none), as in the store."""


def forget_after(key: CapKey) -> datetime | None:
    """When the counter ``key`` can no longer be asked about; None for never.

    Its ``period_key`` is local to the owner's time zone, which a counter
    does not name (and a configuration may change): the period is over for
    routing in every time zone once it has ended at UTC-12, the last place
    its local end comes. A ``total`` counter, or a key this version does not
    write, is kept.
    """
    try:
        match key.period:
            case "hour":
                end = datetime.strptime(key.period_key, "%Y-%m-%dT%H") + timedelta(hours=1)
            case "day":
                end = datetime.strptime(key.period_key, "%Y-%m-%d") + timedelta(days=1)
            case "week":
                year, week = key.period_key.split("-W")
                end = datetime.fromisocalendar(int(year), int(week), 1) + timedelta(weeks=1)
            case "month":
                start = datetime.strptime(key.period_key, "%Y-%m")
                end = (start + timedelta(days=31)).replace(day=1)
            case _:
                return None
    except ValueError:
        return None
    return end.replace(tzinfo=UTC) + WESTMOST_OFFSET + FORGET_GRACE


class ResidentCounters:
    """What routing reads and the cap ledger, in memory; see the module docstring."""

    def __init__(self, *, history_window: timedelta = DEFAULT_HISTORY_WINDOW) -> None:
        """Empty counters; :meth:`load` fills them from a store."""
        self.ledger = MemoryCapLedger()
        self.history_window = history_window
        self._rotations: dict[str, dict[int, TierRotation]] = {}
        self._history: dict[str, dict[_HistoryKey, PastCall]] = {}
        self._recorded: deque[tuple[datetime, str, _HistoryKey]] = deque()
        """Every entry of the history once, oldest recorded first: what to forget next."""
        self._ending: list[tuple[datetime, CapKey]] = []
        """A heap of every cap counter with a period, by :func:`forget_after`."""
        self._open: dict[str, tuple[Reservation, frozenset[CapMetric]]] = {}
        """Each open reservation and the metrics it committed: the counters its commit and
        finish change, and what ``SqlCapLedger.record_commit_in`` and
        ``record_finish_in`` write them with."""
        self._holders: dict[CapKey, int] = {}
        """How many open reservations charge each counter; those are never forgotten."""
        self._ended: set[CapKey] = set()
        """Counters of ended periods that open reservations still charge: forgotten at finish."""

    @classmethod
    async def load(
        cls,
        database: Database,
        now: datetime,
        *,
        history_window: timedelta = DEFAULT_HISTORY_WINDOW,
    ) -> ResidentCounters:
        """The counters the store holds, with the caller history since ``now - history_window``.

        Call it when no call is in progress and no write is queued (start-up,
        after the interrupted calls are closed): later changes must come
        through this object only.
        """
        resident = cls(history_window=history_window)

        def load_in(connection: Connection) -> None:
            resident._load_in(connection, now, now - history_window)

        await database.run_read(load_in)
        return resident

    def _load_in(self, connection: Connection, now: datetime, since: datetime) -> None:
        ledger = self.ledger
        open_reservations = (
            select(cap_reservations)
            .where(cap_reservations.c.finished_at.is_(None))
            .order_by(cap_reservations.c.created_at, cap_reservations.c.id)
        )
        for row in connection.execute(open_reservations):
            reservation, committed = reservation_from_row(row)
            ledger.hold(reservation, committed)
            self._hold(reservation, frozenset(committed))
        for row in connection.execute(select(cap_usage)):
            key = cap_key(row)
            ending = forget_after(key)
            if ending is not None:
                if ending <= now and key not in self._holders:
                    continue  # a period over: reports read it in the store, routing never will
                heapq.heappush(self._ending, (ending, key))
            ledger.used[key] = row.used
            ledger.reserved[key] = row.reserved
        for row in connection.execute(select(cap_concurrency)):
            ledger.in_progress[str(row.owner)] = int(row.in_progress)
        for row in connection.execute(select(cap_last_call)):
            ledger.last_call_at[str(row.owner)] = row.at
        for row in connection.execute(select(routing_rotation)):
            rotations = self._rotations.setdefault(str(row.campaign_id), {})
            rotations[int(row.tier_index)] = rotation_from_row(row)
        history = (
            select(caller_history)
            .where(caller_history.c.at >= since)
            .order_by(caller_history.c.at, caller_history.c.id)
        )
        for row in connection.execute(history):
            caller, entry = str(row.caller), (str(row.call_id), row.buyer_id)
            self._history.setdefault(caller, {})[entry] = past_call_from_row(row)
            self._recorded.append((row.at, caller, entry))

    def counters(
        self,
        campaign_id: str,
        *,
        keys: Collection[CapKey] = (),
        owners: Collection[str] = (),
        caller: str | None = None,
        now: datetime,
    ) -> RoutingCounters:
        """The snapshot ``CounterRepository.load_counters`` would read, from memory.

        Only counters that exist are included (a key never reserved has no
        usage, as it has no row), so routing sees exactly what it would in SQL.
        """
        ledger = self.ledger
        used, reserved = ledger.used, ledger.reserved
        usage: dict[CapKey, Decimal] = {}
        for key in keys:
            if key in used or key in reserved:
                usage[key] = ledger.usage(key)
        in_progress = {
            owner: ledger.in_progress[owner] for owner in owners if owner in ledger.in_progress
        }
        last_call_at = {
            owner: ledger.last_call_at[owner] for owner in owners if owner in ledger.last_call_at
        }
        history: tuple[PastCall, ...] = ()
        if caller is not None:
            history = self._caller_history(caller, now)
        rotation = {
            (campaign_id, tier_index): value
            for tier_index, value in self._rotations.get(campaign_id, {}).items()
        }
        return RoutingCounters(
            cap_usage=usage,
            in_progress=in_progress,
            last_call_at=last_call_at,
            caller_history=history,
            rotation=rotation,
        )

    def _caller_history(self, caller: str, now: datetime) -> tuple[PastCall, ...]:
        entries = self._history.get(caller)
        if not entries:
            return ()
        since = now - self.history_window
        # Sorted by time, ties in the order first recorded (the store's ``at, id``).
        current = (past for past in entries.values() if past.at >= since)
        return tuple(sorted(current, key=lambda past: past.at))

    def reserve(self, reservation: Reservation) -> str | None:
        """Reserve everything or nothing; ``None`` on success, else why not.

        Counters of periods over at ``reservation.at`` are forgotten, a few.
        """
        ledger = self.ledger
        used, reserved = ledger.used, ledger.reserved
        fresh = {c.key for c in reservation.charges if c.key not in used and c.key not in reserved}
        refused = ledger.reserve(reservation)
        if refused is None:
            for key in fresh:
                ending = forget_after(key)
                if ending is not None:
                    heapq.heappush(self._ending, (ending, key))
            self._hold(reservation, frozenset())
        self._forget_counters(reservation.at, len(reservation.charges) + FORGET_COUNTERS_AT_MOST)
        return refused

    def commit(
        self, reservation_id: str, metrics: Collection[CapMetric], revenue: Decimal | None = None
    ) -> tuple[Reservation, frozenset[CapMetric]]:
        """Keep ``metrics`` of a reservation for good.

        Returns the reservation and the metrics it had committed before: what
        ``SqlCapLedger.record_commit_in`` writes this commit with.
        """
        self.ledger.commit(reservation_id, metrics, revenue)
        reservation, committed = self._open[reservation_id]
        now_committed = committed | {metric for metric in metrics if metric in CAP_METRICS}
        self._open[reservation_id] = (reservation, now_committed)
        return reservation, committed

    def finish(self, reservation_id: str) -> tuple[Reservation, frozenset[CapMetric]]:
        """Release what a reservation did not commit, and its concurrency slots.

        Returns the reservation and the metrics it committed: what
        ``SqlCapLedger.record_finish_in`` writes this finish with.
        """
        self.ledger.finish(reservation_id)
        reservation, committed = self._open.pop(reservation_id)
        holders = self._holders
        for key in {charge.key for charge in reservation.charges}:
            if holders[key] > 1:
                holders[key] -= 1
                continue
            del holders[key]
            if key in self._ended:
                self._ended.discard(key)
                self._drop(key)
        return reservation, committed

    def _hold(self, reservation: Reservation, committed: frozenset[CapMetric]) -> None:
        self._open[reservation.reservation_id] = (reservation, committed)
        holders = self._holders
        for key in {charge.key for charge in reservation.charges}:
            holders[key] = holders.get(key, 0) + 1

    def _forget_counters(self, now: datetime, at_most: int) -> None:
        """Forget up to ``at_most`` counters whose period is over everywhere at ``now``."""
        ending = self._ending
        for _ in range(at_most):
            if not ending or ending[0][0] > now:
                return
            _, key = heapq.heappop(ending)
            if key in self._holders:
                self._ended.add(key)  # a call still settles it; gone when the last one finishes
            else:
                self._drop(key)

    def _drop(self, key: CapKey) -> None:
        self.ledger.used.pop(key, None)
        self.ledger.reserved.pop(key, None)

    def cap_counters(self) -> int:
        """How many cap counters are held in memory (what forgetting ended periods bounds)."""
        return len(self.ledger.used.keys() | self.ledger.reserved.keys())

    def save_rotation(self, campaign_id: str, tier_index: int, rotation: TierRotation) -> None:
        """Remember a tier's rotation after a routing decision moved it."""
        self._rotations.setdefault(campaign_id, {})[tier_index] = rotation

    def record_caller_history(
        self,
        *,
        caller: str,
        campaign_id: str,
        call_id: str,
        at: datetime,
        buyer_id: str | None = None,
        connected: bool = False,
        converted: bool = False,
    ) -> None:
        """Remember a call of ``caller``, as ``CounterRepository.record_caller_history_in`` does.

        Recording the same call and buyer again only turns ``connected`` and
        ``converted`` on; it keeps the first entry's time and place.
        """
        self._forget(at - self.history_window)
        entries = self._history.setdefault(caller, {})
        key = (call_id, buyer_id or "")
        past = entries.get(key)
        if past is None:
            entries[key] = PastCall(campaign_id, buyer_id or None, at, connected, converted)
            self._recorded.append((at, caller, key))
        else:
            entries[key] = PastCall(
                past.campaign_id,
                past.buyer_id,
                past.at,
                past.connected or connected,
                past.converted or converted,
            )

    def _forget(self, since: datetime) -> None:
        """Forget the entries recorded first while older than ``since`` (a few at most).

        Callers who never call again leave with their last entry, so the
        history holds about one window of calls (plus the length of the
        longest call: an entry recorded at a call's end carries its arrival
        time and waits behind those recorded before it).
        """
        recorded = self._recorded
        for _ in range(FORGET_AT_MOST):
            if not recorded or recorded[0][0] >= since:
                return
            _, caller, key = recorded.popleft()
            entries = self._history[caller]
            del entries[key]
            if not entries:
                del self._history[caller]

    def callers(self) -> int:
        """How many callers the history holds (what :meth:`_forget` bounds)."""
        return len(self._history)
