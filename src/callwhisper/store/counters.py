"""What routing reads: a ``RoutingCounters`` snapshot, plus rotations and caller history."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import Connection, Row, bindparam, or_, select

from callwhisper.domain.caps import CapKey
from callwhisper.domain.state import PastCall, RoutingCounters, TierRotation
from callwhisper.store.engine import Database, add_deferred, defer
from callwhisper.store.sql import CAP_USAGE_KEY, cap_key, upsert, utcnow
from callwhisper.store.tables import (
    caller_history,
    cap_concurrency,
    cap_last_call,
    cap_usage,
    routing_rotation,
)

DEFAULT_HISTORY_WINDOW = timedelta(days=30)

_NO_BUYER = ""

# The statements, built once: building one costs several times running it.
_USAGE = select(cap_usage).where(CAP_USAGE_KEY.in_(bindparam("keys", expanding=True)))
_IN_PROGRESS = select(cap_concurrency).where(
    cap_concurrency.c.owner.in_(bindparam("owners", expanding=True))
)
_LAST_CALLS = select(cap_last_call).where(
    cap_last_call.c.owner.in_(bindparam("owners", expanding=True))
)
_HISTORY = (
    select(caller_history)
    .where(
        caller_history.c.caller == bindparam("caller"), caller_history.c.at >= bindparam("since")
    )
    .order_by(caller_history.c.at, caller_history.c.id)
)
_ROTATIONS = select(routing_rotation).where(routing_rotation.c.campaign_id == bindparam("campaign"))


def past_call_from_row(row: Row[Any]) -> PastCall:
    """The ``PastCall`` a ``caller_history`` row holds (no buyer is stored as ``""``)."""
    return PastCall(
        campaign_id=str(row.campaign_id),
        buyer_id=row.buyer_id or None,
        at=row.at,
        connected=bool(row.connected),
        converted=bool(row.converted),
    )


def rotation_from_row(row: Row[Any]) -> TierRotation:
    """The ``TierRotation`` a ``routing_rotation`` row holds."""
    return TierRotation(last=row.last_member, current=dict(row.current))


class CounterRepository:
    """Routing counters: cap usage, calls in progress, spacing, duplicates, rotations."""

    def __init__(self, database: Database) -> None:
        self._db = database
        rotation = upsert(database.dialect, routing_rotation)
        self._save_rotation = rotation.on_conflict_do_update(
            index_elements=[routing_rotation.c.campaign_id, routing_rotation.c.tier_index],
            set_={
                "last_member": rotation.excluded.last_member,
                "current": rotation.excluded.current,
                "updated_at": rotation.excluded.updated_at,
            },
        )
        history = upsert(database.dialect, caller_history)
        self._record_history = history.on_conflict_do_update(
            index_elements=[caller_history.c.call_id, caller_history.c.buyer_id],
            set_={
                "connected": or_(caller_history.c.connected, history.excluded.connected),
                "converted": or_(caller_history.c.converted, history.excluded.converted),
            },
        )

    async def load_counters(
        self,
        campaign_id: str,
        *,
        keys: Collection[CapKey] = (),
        owners: Collection[str] = (),
        caller: str | None = None,
        now: datetime,
        history_window: timedelta = DEFAULT_HISTORY_WINDOW,
    ) -> RoutingCounters:
        """One consistent snapshot for routing a call of ``campaign_id``.

        ``cap_usage`` holds used plus reserved for each of ``keys`` that has a
        counter; ``in_progress`` and ``last_call_at`` cover ``owners``;
        ``caller_history`` lists the caller's calls since ``now -
        history_window`` (every campaign, oldest first); ``rotation`` holds the
        campaign's tier rotations.
        """
        return await self._db.run_read(
            partial(_load_counters_in, campaign_id, keys, owners, caller, now - history_window)
        )

    def save_rotation_in(
        self, campaign_id: str, tier_index: int, rotation: TierRotation, connection: Connection
    ) -> None:
        """Persist a tier's rotation so round robin and weighted shares survive restarts.

        Written at the end of the transaction (``store.engine.add_deferred``):
        a shared transaction writes each tier's last rotation once.
        """
        params = {
            "campaign_id": campaign_id,
            "tier_index": tier_index,
            "last_member": rotation.last,
            "current": dict(rotation.current),
            "updated_at": utcnow(),
        }
        key = (campaign_id, tier_index)
        add_deferred(connection, self._save_rotation, params, key=key, sums=())

    def record_caller_history_in(
        self,
        connection: Connection,
        *,
        caller: str,
        campaign_id: str,
        call_id: str,
        at: datetime,
        buyer_id: str | None = None,
        connected: bool = False,
        converted: bool = False,
    ) -> None:
        """Remember that ``caller`` called (and whether it connected or converted).

        One entry per call and buyer: recording it again only ever turns
        ``connected`` and ``converted`` on, so a later correction cannot lose them.
        Written at the end of the transaction (``store.engine.defer``), with the
        other entries it records.
        """
        defer(
            connection,
            self._record_history,
            {
                "caller": caller,
                "campaign_id": campaign_id,
                "buyer_id": buyer_id or _NO_BUYER,
                "call_id": call_id,
                "at": at,
                "connected": connected,
                "converted": converted,
            },
        )


def _load_counters_in(
    campaign_id: str,
    keys: Collection[CapKey],
    owners: Collection[str],
    caller: str | None,
    since: datetime,
    connection: Connection,
) -> RoutingCounters:
    usage = _usage(connection, keys)
    in_progress: dict[str, int] = {}
    last_call_at: dict[str, datetime] = {}
    if owners:
        owner_list = {"owners": sorted(set(owners))}
        for row in connection.execute(_IN_PROGRESS, owner_list):
            in_progress[str(row.owner)] = int(row.in_progress)
        for row in connection.execute(_LAST_CALLS, owner_list):
            last_call_at[str(row.owner)] = row.at
    history: tuple[PastCall, ...] = ()
    if caller is not None:
        rows = connection.execute(_HISTORY, {"caller": caller, "since": since})
        history = tuple(past_call_from_row(row) for row in rows)
    rotation = {
        (campaign_id, int(row.tier_index)): rotation_from_row(row)
        for row in connection.execute(_ROTATIONS, {"campaign": campaign_id})
    }
    return RoutingCounters(
        cap_usage=usage,
        in_progress=in_progress,
        last_call_at=last_call_at,
        caller_history=history,
        rotation=rotation,
    )


def _usage(connection: Connection, keys: Collection[CapKey]) -> dict[CapKey, Decimal]:
    if not keys:
        return {}
    rows = connection.execute(_USAGE, {"keys": sorted(set(keys))})
    return {cap_key(row): row.used + row.reserved for row in rows}
