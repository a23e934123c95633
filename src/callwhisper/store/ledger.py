"""The cap ledger in SQL: reservations that can never overshoot a cap.

Same contract and same refusal reasons as ``domain.state.MemoryCapLedger``,
but async and safe across tasks and processes:

- PostgreSQL: counter rows are created first (``INSERT ... ON CONFLICT DO
  NOTHING``, in a short transaction of their own), then one transaction locks
  every row the reservation touches with ``SELECT ... FOR UPDATE`` in key order
  (a fixed order, so two reservations cannot deadlock on each other), checks
  the limits, and applies conditional updates
  (``reserved = reserved + :n WHERE used + reserved + :n <= :limit``).
  Serialization failures and deadlocks are retried.
- SQLite: the same statements inside ``BEGIN IMMEDIATE``, which serializes
  writers on the database file.

What commits and finishes change, and what reservations decided elsewhere
(``record_*_in``) change, is added up per counter and written at the end of
the transaction (``store.engine.add_deferred``): a shared transaction of many
calls then writes each counter once. A reservation decided in SQL writes
those changes first, so that it counts them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Row, and_, bindparam, select, update
from sqlalchemy.exc import IntegrityError

from callwhisper.domain.caps import CapCharge, CapKey, CapMetric
from callwhisper.domain.state import ConcurrencyLimit, Reservation, refusal
from callwhisper.errors import StoreError
from callwhisper.store.compiled import execute, execute_many, first
from callwhisper.store.engine import (
    Database,
    add_deferred,
    defer,
    deferred_row,
    retrying,
    run_deferred,
    update_deferred,
)
from callwhisper.store.sql import CAP_USAGE_KEY, cap_key, upsert, utcnow
from callwhisper.store.tables import cap_concurrency, cap_last_call, cap_reservations, cap_usage
from callwhisper.store.types import Money, money

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class CapAmounts:
    """What one counter holds: committed (``used``) and held by open reservations."""

    used: Decimal
    reserved: Decimal

    @property
    def usage(self) -> Decimal:
        """What counts against the limit."""
        return self.used + self.reserved


def _charge_json(charge: CapCharge) -> dict[str, str]:
    key = charge.key
    return {
        "owner": key.owner,
        "metric": key.metric,
        "period": key.period,
        "period_key": key.period_key,
        "limit": str(charge.limit),
        "amount": str(charge.amount),
    }


def _charge_from_json(data: Mapping[str, str]) -> CapCharge:
    key = CapKey(
        data["owner"],
        cast(CapMetric, data["metric"]),
        cast(Any, data["period"]),
        data["period_key"],
    )
    return CapCharge(key, Decimal(data["limit"]), Decimal(data["amount"]))


# The statements, built once: building one costs several times running it.
_USAGE_ROW = and_(
    cap_usage.c.owner == bindparam("key_owner"),
    cap_usage.c.metric == bindparam("key_metric"),
    cap_usage.c.period == bindparam("key_period"),
    cap_usage.c.period_key == bindparam("key_period_key"),
)
_AMOUNT = bindparam("amount", type_=Money())
_RESERVATION_EXISTS = select(cap_reservations.c.id).where(
    cap_reservations.c.id == bindparam("reservation_key")
)
_LOCK_USAGE = (
    select(cap_usage)
    .where(CAP_USAGE_KEY.in_(bindparam("keys", expanding=True)))
    .order_by(*CAP_USAGE_KEY.clauses)
    .with_for_update()
)
_LOCK_SLOTS = (
    select(cap_concurrency)
    .where(cap_concurrency.c.owner.in_(bindparam("owners", expanding=True)))
    .order_by(cap_concurrency.c.owner)
    .with_for_update()
)
# The rows are locked and checked; the conditions keep the updates honest anyway.
_RESERVE_USAGE = (
    update(cap_usage)
    .where(
        _USAGE_ROW,
        cap_usage.c.used + cap_usage.c.reserved + _AMOUNT <= bindparam("limit", type_=Money()),
    )
    .values(reserved=cap_usage.c.reserved + _AMOUNT)
)
_TAKE_SLOT = (
    update(cap_concurrency)
    .where(
        cap_concurrency.c.owner == bindparam("slot_owner"),
        cap_concurrency.c.in_progress + 1 <= bindparam("slot_limit"),
    )
    .values(in_progress=cap_concurrency.c.in_progress + 1)
)
_INSERT_RESERVATION = cap_reservations.insert()
_HELD = (
    select(cap_reservations.c.charges, cap_reservations.c.concurrency, cap_reservations.c.committed)
    .where(
        cap_reservations.c.id == bindparam("reservation_key"),
        cap_reservations.c.finished_at.is_(None),
    )
    .with_for_update()
)
_UPDATE_OPEN_RESERVATION = update(cap_reservations).where(
    cap_reservations.c.id == bindparam("reservation_key"),
    cap_reservations.c.finished_at.is_(None),
)
_USAGE_AMOUNTS = ("used", "reserved")
_IN_PROGRESS = ("in_progress",)


def reservation_from_row(row: Row[Any]) -> tuple[Reservation, list[CapMetric]]:
    """The reservation a ``cap_reservations`` row holds, and the metrics it committed.

    Owners with only a spacing rule are not stored (they matter at reserve time only).
    """
    reservation = Reservation(
        str(row.id),
        tuple(_charge_from_json(data) for data in row.charges),
        tuple(ConcurrencyLimit(str(slot["owner"]), int(slot["limit"])) for slot in row.concurrency),
        row.at,
    )
    return reservation, [cast(CapMetric, metric) for metric in row.committed]


def _reservation_row(reservation: Reservation, call_id: str | None) -> dict[str, Any]:
    return {
        "id": reservation.reservation_id,
        "call_id": call_id,
        "at": reservation.at,
        "charges": [_charge_json(charge) for charge in reservation.charges],
        "concurrency": [
            {"owner": slot.owner, "limit": slot.limit} for slot in reservation.concurrency
        ],
        "committed": [],
        "created_at": utcnow(),
        "finished_at": None,
    }


def _key_params(key: CapKey) -> dict[str, str]:
    return {
        "key_owner": key.owner,
        "key_metric": key.metric,
        "key_period": key.period,
        "key_period_key": key.period_key,
    }


class SqlCapLedger:
    """The cap ledger on the store's database (see the module docstring for how)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._create_usage = upsert(database.dialect, cap_usage).on_conflict_do_nothing()
        self._create_slots = upsert(database.dialect, cap_concurrency).on_conflict_do_nothing()
        # Counters created or added to in one statement each: the changes of a shared
        # transaction are added up per counter and written at its end (add_deferred).
        usage = upsert(database.dialect, cap_usage)
        self._add_usage = usage.on_conflict_do_update(
            index_elements=list(CAP_USAGE_KEY.clauses),
            set_={
                "used": cap_usage.c.used + usage.excluded.used,
                "reserved": cap_usage.c.reserved + usage.excluded.reserved,
            },
        )
        slots = upsert(database.dialect, cap_concurrency)
        self._add_slots = slots.on_conflict_do_update(
            index_elements=[cap_concurrency.c.owner],
            set_={"in_progress": cap_concurrency.c.in_progress + slots.excluded.in_progress},
        )
        touch = upsert(database.dialect, cap_last_call)
        self._touch = touch.on_conflict_do_update(
            index_elements=[cap_last_call.c.owner], set_={"at": touch.excluded.at}
        )

    async def reserve(
        self, reservation: Reservation, *, call_id: str | None = None, queued: bool = False
    ) -> str | None:
        """Reserve every charge and concurrency slot, or nothing; ``None`` on success, else why not.

        Also records ``reservation.at`` as the last call time of every owner
        involved (spacing). ``call_id`` links the reservation to its call so that
        ``CallRepository.close_interrupted_calls`` can release it after a crash.
        ``queued`` runs it in the store's shared write transaction
        (``Database.submit``, urgently), after the writes queued before it.
        Raises ``ValueError`` if the id exists already or if a key or a
        concurrency owner appears twice.
        """
        keys = [charge.key for charge in reservation.charges]
        owners = [slot.owner for slot in reservation.concurrency]
        if len(set(keys)) != len(keys) or len(set(owners)) != len(owners):
            raise ValueError(f"reservation {reservation.reservation_id} repeats a counter")

        async def attempt() -> str | None:
            if not self._db.is_sqlite:
                await self._db.run_write(partial(self.create_counters_in, reservation))
            work = partial(self.reserve_in, reservation, call_id)
            if queued:
                return await self._db.submit(work, urgent=True)
            return await self._db.run_write(work)

        try:
            return await self._retrying(attempt)
        except IntegrityError as error:
            raise ValueError(f"reservation {reservation.reservation_id} exists already") from error

    async def commit(
        self, reservation_id: str, metrics: Collection[CapMetric], revenue: Decimal | None = None
    ) -> None:
        """Keep ``metrics`` for good; ``revenue`` replaces the reserved revenue amount.

        Committing a metric twice, or one the reservation does not charge,
        changes nothing; an unknown or finished reservation raises ``KeyError``.
        """
        work = partial(self.commit_in, reservation_id, metrics, revenue)
        await self._retrying(partial(self._db.run_write, work))

    async def finish(self, reservation_id: str, *, at: datetime | None = None) -> None:
        """Release what was not committed, and the concurrency slots.

        An unknown or finished reservation raises ``KeyError``.
        """
        work = partial(self.finish_in, reservation_id, at or utcnow())
        await self._retrying(partial(self._db.run_write, work))

    async def amounts(self, key: CapKey) -> CapAmounts:
        """The used and reserved amounts of one counter (zero if never touched)."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(cap_usage.c.used, cap_usage.c.reserved).where(_USAGE_ROW),
                    _key_params(key),
                )
            ).first()
        if row is None:
            return CapAmounts(Decimal(0), Decimal(0))
        return CapAmounts(row.used, row.reserved)

    async def open_reservations(self) -> list[str]:
        """Ids of the reservations not finished yet, oldest first."""
        async with self._db.read() as connection:
            result = await connection.execute(
                select(cap_reservations.c.id)
                .where(cap_reservations.c.finished_at.is_(None))
                .order_by(cap_reservations.c.created_at, cap_reservations.c.id)
            )
            return [str(value) for value in result.scalars()]

    async def _retrying(self, work: Callable[[], Awaitable[_T]]) -> _T:
        return await retrying(work, what="cap ledger")

    def create_counters_in(self, reservation: Reservation, connection: Connection) -> None:
        """Create the counter rows a reservation touches (PostgreSQL: in a transaction first)."""
        keys = sorted({charge.key for charge in reservation.charges})
        execute_many(
            connection,
            self._create_usage,
            [{**key._asdict(), "used": Decimal(0), "reserved": Decimal(0)} for key in keys],
        )
        owners = sorted({slot.owner for slot in reservation.concurrency})
        execute_many(
            connection, self._create_slots, [{"owner": owner, "in_progress": 0} for owner in owners]
        )

    def reserve_in(
        self, reservation: Reservation, call_id: str | None, connection: Connection
    ) -> str | None:
        """:meth:`reserve` in the caller's write transaction (on SQLite, counters included)."""
        # What the transaction's earlier units of work changed counts: it is written first.
        run_deferred(connection, self._add_usage)
        run_deferred(connection, self._add_slots)
        run_deferred(connection, _INSERT_RESERVATION, reservation.reservation_id)
        if self._db.is_sqlite:
            self.create_counters_in(reservation, connection)
        exists = connection.scalar(
            _RESERVATION_EXISTS, {"reservation_key": reservation.reservation_id}
        )
        if exists is not None:
            raise ValueError(f"reservation {reservation.reservation_id} exists already")
        charges = sorted(reservation.charges, key=lambda charge: charge.key)
        slots = sorted(reservation.concurrency, key=lambda slot: slot.owner)
        usage: dict[CapKey, Decimal] = {}
        if charges:
            rows = connection.execute(_LOCK_USAGE, {"keys": [charge.key for charge in charges]})
            usage = {cap_key(row): row.used + row.reserved for row in rows}
        in_progress: dict[str, int] = {}
        if slots:
            rows = connection.execute(_LOCK_SLOTS, {"owners": [slot.owner for slot in slots]})
            in_progress = {str(row.owner): int(row.in_progress) for row in rows}
        reason = refusal(reservation.charges, reservation.concurrency, usage, in_progress)
        if reason is not None:
            return reason
        for charge in charges:
            params = {**_key_params(charge.key), "amount": charge.amount, "limit": charge.limit}
            if execute(connection, _RESERVE_USAGE, params) != 1:
                raise StoreError(f"cap counter {charge.key} changed under a lock")
        for slot in slots:
            params = {"slot_owner": slot.owner, "slot_limit": slot.limit}
            if execute(connection, _TAKE_SLOT, params) != 1:
                raise StoreError(f"concurrency counter {slot.owner} changed under a lock")
        self._touch_owners(connection, reservation)
        execute(connection, _INSERT_RESERVATION, _reservation_row(reservation, call_id))
        return None

    def record_reservation_in(
        self, reservation: Reservation, call_id: str | None, connection: Connection
    ) -> None:
        """Write a reservation another ledger granted, without checking any limit.

        The single-node server decides reservations in memory
        (``callwhisper.store.resident``) and writes them behind in order: the
        rows then follow what it decided instead of deciding again, so a
        write can never disagree with a caller already dialing.
        """
        for charge in sorted(reservation.charges, key=lambda charge: charge.key):
            self._add_to_usage(connection, charge.key, Decimal(0), money(charge.amount))
        for owner in sorted(slot.owner for slot in reservation.concurrency):
            self._add_to_slots(connection, owner, 1)
        self._touch_owners(connection, reservation)
        # Deferred: a commit or finish in the same transaction is written with it.
        row = _reservation_row(reservation, call_id)
        defer(connection, _INSERT_RESERVATION, row, key=reservation.reservation_id)

    def _touch_owners(self, connection: Connection, reservation: Reservation) -> None:
        for owner in sorted(reservation.owners()):
            params = {"owner": owner, "at": reservation.at}
            add_deferred(connection, self._touch, params, key=owner, sums=())

    def _add_to_usage(
        self, connection: Connection, key: CapKey, used: Decimal, reserved: Decimal
    ) -> None:
        """Add to a cap counter at the end of the transaction (``used``, ``reserved``: money)."""
        params = {**key._asdict(), "used": used, "reserved": reserved}
        add_deferred(connection, self._add_usage, params, key=key, sums=_USAGE_AMOUNTS)

    def _add_to_slots(self, connection: Connection, owner: str, calls: int) -> None:
        """Add to an owner's calls in progress at the end of the transaction."""
        params = {"owner": owner, "in_progress": calls}
        add_deferred(connection, self._add_slots, params, key=owner, sums=_IN_PROGRESS)

    def commit_in(
        self,
        reservation_id: str,
        metrics: Collection[CapMetric],
        revenue: Decimal | None,
        connection: Connection,
    ) -> None:
        """:meth:`commit` in the caller's write transaction."""
        self._commit(connection, _read_held(connection, reservation_id), metrics, revenue)

    def finish_in(self, reservation_id: str, at: datetime, connection: Connection) -> None:
        """:meth:`finish` in the caller's write transaction."""
        self._finish(connection, _read_held(connection, reservation_id), at)

    def record_commit_in(
        self,
        reservation: Reservation,
        committed: Collection[CapMetric],
        metrics: Collection[CapMetric],
        revenue: Decimal | None,
        connection: Connection,
    ) -> None:
        """Write a commit another ledger decided, without reading the reservation back.

        ``committed`` holds the metrics the reservation had committed before
        this commit (see :meth:`record_reservation_in`). Raises ``KeyError``,
        writing nothing, if the reservation is not open in the database (a
        commit that moves no counter writes nothing and checks nothing).
        """
        self._commit(connection, _Held.of(reservation, committed), metrics, revenue)

    def record_finish_in(
        self,
        reservation: Reservation,
        committed: Collection[CapMetric],
        at: datetime,
        connection: Connection,
    ) -> None:
        """Write a finish another ledger decided, without reading the reservation back.

        ``committed`` holds the metrics the reservation had committed. Raises
        ``KeyError``, writing nothing, if the reservation is not open in the
        database.
        """
        self._finish(connection, _Held.of(reservation, committed), at)

    def _commit(
        self,
        connection: Connection,
        held: _Held,
        metrics: Collection[CapMetric],
        revenue: Decimal | None,
    ) -> None:
        # A metric the reservation does not charge (connections without a connections cap)
        # moves no counter, and finishing releases charges only: nothing to write for it.
        charged = {charge.key.metric for charge in held.charges}
        committed = (held.committed | set(metrics)) & charged
        if committed <= held.committed:
            return
        _settle(connection, held.reservation_id, {"committed": sorted(committed)})
        for charge in held.charges:
            metric = charge.key.metric
            if metric in metrics and metric not in held.committed:
                kept = revenue if metric == "revenue" and revenue is not None else charge.amount
                self._add_to_usage(connection, charge.key, money(kept), -money(charge.amount))

    def _finish(self, connection: Connection, held: _Held, at: datetime) -> None:
        _settle(connection, held.reservation_id, {"finished_at": at})
        for charge in held.charges:
            if charge.key.metric not in held.committed:
                self._add_to_usage(connection, charge.key, Decimal(0), -money(charge.amount))
        for owner in held.owners:
            self._add_to_slots(connection, owner, -1)


@dataclass(frozen=True, slots=True)
class _Held:
    """What settling an open reservation needs.

    Charges and slot owners are in key order, the order counter rows are locked in.
    """

    reservation_id: str
    charges: tuple[CapCharge, ...]
    owners: tuple[str, ...]
    committed: frozenset[str]

    @classmethod
    def of(cls, reservation: Reservation, committed: Collection[CapMetric]) -> _Held:
        return cls(
            reservation.reservation_id,
            tuple(sorted(reservation.charges, key=lambda charge: charge.key)),
            tuple(sorted(slot.owner for slot in reservation.concurrency)),
            frozenset(committed),
        )


def _read_held(connection: Connection, reservation_id: str) -> _Held:
    """An open reservation as its row holds it; ``KeyError`` if none is open."""
    run_deferred(connection, _INSERT_RESERVATION, reservation_id)
    row = first(connection, _HELD, {"reservation_key": reservation_id})
    if row is None:
        raise KeyError(reservation_id)
    charges, concurrency, committed = row
    return _Held(
        reservation_id,
        tuple(sorted((_charge_from_json(data) for data in charges), key=lambda c: c.key)),
        tuple(sorted(str(slot["owner"]) for slot in concurrency)),
        frozenset(committed),
    )


def _settle(connection: Connection, reservation_id: str, changes: Mapping[str, Any]) -> None:
    """Change the row of an open reservation; ``KeyError`` if none is open."""
    deferred = deferred_row(connection, _INSERT_RESERVATION, reservation_id)
    if deferred is None:
        params = {**changes, "reservation_key": reservation_id}
        if execute(connection, _UPDATE_OPEN_RESERVATION, params) != 1:
            raise KeyError(reservation_id)
    elif deferred["finished_at"] is not None:
        raise KeyError(reservation_id)
    else:
        update_deferred(connection, _INSERT_RESERVATION, reservation_id, changes)
