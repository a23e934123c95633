"""Counters that routing reads and the cap ledger that keeps them honest.

Routing is a pure function of a ``RoutingCounters`` snapshot; the ledger is the
single writer of cap usage. ``MemoryCapLedger`` is the reference implementation
of the ledger's semantics (the store implements the same contract in SQL).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from callwhisper.domain.caps import CAP_METRICS, CapCharge, CapKey, CapMetric, describe_cap


def buyer_owner(buyer_id: str) -> str:
    """Cap owner key of a buyer."""
    return f"buyer:{buyer_id}"


def target_owner(buyer_id: str, target_id: str) -> str:
    """Cap owner key of one target of a buyer."""
    return f"target:{buyer_id}/{target_id}"


def route_owner(campaign_id: str, buyer_id: str, target_id: str | None) -> str:
    """Cap owner key of a buyer (or one target) on one campaign."""
    return f"route:{campaign_id}/{buyer_id}/{target_id or '*'}"


def publisher_owner(publisher_id: str) -> str:
    """Cap owner key of a publisher."""
    return f"publisher:{publisher_id}"


@dataclass(frozen=True, slots=True)
class PastCall:
    """An earlier call of the same caller, for duplicate rules."""

    campaign_id: str
    buyer_id: str | None
    at: datetime
    connected: bool
    converted: bool


@dataclass(frozen=True, slots=True)
class TierRotation:
    """Persistent rotation state of one tier.

    ``last`` is the member key round robin chose last; ``current`` holds the
    smooth weighted round robin's current weight per member key.
    """

    last: str | None = None
    current: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RoutingCounters:
    """A read-only snapshot of every counter a routing decision needs."""

    cap_usage: Mapping[CapKey, Decimal] = field(default_factory=dict)
    in_progress: Mapping[str, int] = field(default_factory=dict)
    last_call_at: Mapping[str, datetime] = field(default_factory=dict)
    caller_history: Sequence[PastCall] = ()
    rotation: Mapping[tuple[str, int], TierRotation] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    """At most ``limit`` calls in progress for ``owner``."""

    owner: str
    limit: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """What one dialed attempt holds: period charges and concurrency slots.

    ``spaced`` names owners with a spacing rule: the ledger records ``at`` as
    their last call time even when they have no other limit.
    """

    reservation_id: str
    charges: tuple[CapCharge, ...]
    concurrency: tuple[ConcurrencyLimit, ...]
    at: datetime
    spaced: tuple[str, ...] = ()

    def owners(self) -> set[str]:
        """Every owner whose last call time this reservation sets."""
        return (
            {charge.key.owner for charge in self.charges}
            | {slot.owner for slot in self.concurrency}
            | set(self.spaced)
        )


def refusal(
    charges: Sequence[CapCharge],
    concurrency: Sequence[ConcurrencyLimit],
    usage: Mapping[CapKey, Decimal],
    in_progress: Mapping[str, int],
) -> str | None:
    """Why a reservation cannot be made (``None`` if it can), in every ledger's words.

    The first charge that would pass its limit, else the first full concurrency
    slot; ``usage`` is used plus reserved per key and ``in_progress`` the calls
    per owner (an absent one is zero).
    """
    for charge in charges:
        current = usage.get(charge.key, Decimal(0))
        if current + charge.amount > charge.limit:
            key = charge.key
            return describe_cap(key.metric, key.period, current, charge.limit)
    for slot in concurrency:
        count = in_progress.get(slot.owner, 0)
        if count + 1 > slot.limit:
            return f"concurrency {count}/{slot.limit}"
    return None


class CapLedger(Protocol):
    """Reserves cap slots atomically and settles them with the attempt's outcome.

    The life of a reservation: ``reserve`` when a buyer leg is dialed; ``commit``
    each metric as it becomes true (``calls`` at answer, ``connections`` at
    accept, ``conversions`` and ``revenue`` at conversion); ``finish`` when the
    attempt ends, which releases every metric not committed and the
    concurrency slots. A reservation that fails changes nothing.
    """

    def reserve(self, reservation: Reservation) -> str | None:
        """Reserve everything or nothing; ``None`` on success, else why not."""
        ...

    def commit(
        self, reservation_id: str, metrics: Collection[CapMetric], revenue: Decimal | None = None
    ) -> None:
        """Keep ``metrics`` for good; ``revenue`` replaces the reserved revenue amount."""
        ...

    def finish(self, reservation_id: str) -> None:
        """Release what was not committed, and the concurrency slots."""
        ...


@dataclass
class _Held:
    reservation: Reservation
    committed: set[CapMetric] = field(default_factory=set)


class MemoryCapLedger:
    """The cap ledger in memory: the reference semantics, and the unit tests' ledger."""

    def __init__(self) -> None:
        self.used: dict[CapKey, Decimal] = {}
        self.reserved: dict[CapKey, Decimal] = {}
        self.in_progress: dict[str, int] = {}
        self.last_call_at: dict[str, datetime] = {}
        self._held: dict[str, _Held] = {}

    def usage(self, key: CapKey) -> Decimal:
        """Used plus reserved on ``key``: what counts against its limit."""
        return self.used.get(key, Decimal(0)) + self.reserved.get(key, Decimal(0))

    def reserve(self, reservation: Reservation) -> str | None:
        """Reserve everything or nothing; ``None`` on success, else why not."""
        if reservation.reservation_id in self._held:
            raise ValueError(f"reservation {reservation.reservation_id} exists already")
        usage = {charge.key: self.usage(charge.key) for charge in reservation.charges}
        reason = refusal(reservation.charges, reservation.concurrency, usage, self.in_progress)
        if reason is not None:
            return reason
        for charge in reservation.charges:
            self.reserved[charge.key] = self.reserved.get(charge.key, Decimal(0)) + charge.amount
        for slot in reservation.concurrency:
            self.in_progress[slot.owner] = self.in_progress.get(slot.owner, 0) + 1
        for owner in reservation.owners():
            self.last_call_at[owner] = reservation.at
        self._held[reservation.reservation_id] = _Held(reservation)
        return None

    def commit(
        self, reservation_id: str, metrics: Collection[CapMetric], revenue: Decimal | None = None
    ) -> None:
        """Keep ``metrics`` for good; ``revenue`` replaces the reserved revenue amount."""
        held = self._held[reservation_id]
        for charge in held.reservation.charges:
            metric = charge.key.metric
            if metric in metrics and metric not in held.committed:
                self.reserved[charge.key] -= charge.amount
                kept = revenue if metric == "revenue" and revenue is not None else charge.amount
                self.used[charge.key] = self.used.get(charge.key, Decimal(0)) + kept
        held.committed.update(m for m in metrics if m in CAP_METRICS)

    def finish(self, reservation_id: str) -> None:
        """Release what was not committed, and the concurrency slots."""
        held = self._held.pop(reservation_id)
        for charge in held.reservation.charges:
            if charge.key.metric not in held.committed:
                self.reserved[charge.key] -= charge.amount
        for slot in held.reservation.concurrency:
            self.in_progress[slot.owner] -= 1

    def hold(self, reservation: Reservation, committed: Collection[CapMetric] = ()) -> None:
        """Take back an open reservation whose amounts the counters already include.

        For a ledger rebuilt from stored counters (see ``callwhisper.store.resident``):
        ``commit`` and ``finish`` then settle it as if this ledger had reserved it.
        """
        if reservation.reservation_id in self._held:
            raise ValueError(f"reservation {reservation.reservation_id} exists already")
        held = _Held(reservation, {metric for metric in committed if metric in CAP_METRICS})
        self._held[reservation.reservation_id] = held

    def counters(self) -> RoutingCounters:
        """A snapshot for routing."""
        keys = set(self.used) | set(self.reserved)
        return RoutingCounters(
            cap_usage={key: self.usage(key) for key in keys},
            in_progress=dict(self.in_progress),
            last_call_at=dict(self.last_call_at),
        )
