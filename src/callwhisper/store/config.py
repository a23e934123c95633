"""Applying a configuration to the store, and loading it back.

``apply_configuration`` writes a whole ``Configuration`` in one transaction:

- objects new to the store are created, changed ones updated, and objects
  whose settings and position are unchanged are not written at all, so a
  second apply of the same configuration changes nothing;
- objects missing from the configuration are **archived**, never deleted:
  calls keep naming them, but ``load_configuration`` leaves them out;
  applying a configuration that has them again restores them;
- each apply that changes something records a revision with the hash of the
  configuration.

Settings are kept as ``model_dump(mode="json", exclude_defaults=True)`` and the
order of every list is kept, so ``load_configuration()`` gives back exactly the
configuration applied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from callwhisper.domain.buyer import Buyer, Trunk
from callwhisper.domain.campaign import Campaign, Publisher
from callwhisper.domain.configuration import Configuration
from callwhisper.store.engine import Database
from callwhisper.store.sql import utcnow
from callwhisper.store.tables import (
    config_buyers,
    config_campaigns,
    config_numbers,
    config_publishers,
    config_revisions,
    config_settings,
    config_targets,
    config_trunks,
)

_SETTINGS_ROW = "configuration"
_LIST_FIELDS = ("trunks", "publishers", "buyers", "campaigns", "numbers")

JsonObject = dict[str, Any]
Key = tuple[str, ...]


def settings_of(model: BaseModel, *, exclude: set[str] | None = None) -> JsonObject:
    """The JSON settings stored for a configuration object (defaults left out)."""
    return model.model_dump(mode="json", exclude_defaults=True, exclude=exclude)


def configuration_hash(configuration: Configuration) -> str:
    """SHA-256 of the configuration's canonical JSON."""
    text = json.dumps(settings_of(configuration), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Desired:
    key: Key
    position: int
    settings: JsonObject
    columns: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Kind:
    name: str
    table: Table
    key_columns: tuple[str, ...]
    desired: Callable[[Configuration], list[_Desired]]

    def label(self, key: Key) -> str:
        return f"{self.name} {'/'.join(key)}"


def _by_id(
    models: Sequence[Trunk | Publisher | Buyer | Campaign], exclude: set[str] | None = None
) -> list[_Desired]:
    return [
        _Desired((str(model.id),), index, settings_of(model, exclude=exclude))
        for index, model in enumerate(models)
    ]


def _targets(configuration: Configuration) -> list[_Desired]:
    return [
        _Desired((buyer.id, target.id), index, settings_of(target))
        for buyer in configuration.buyers
        for index, target in enumerate(buyer.targets)
    ]


def _numbers(configuration: Configuration) -> list[_Desired]:
    return [
        _Desired(
            (number.number,),
            index,
            settings_of(number),
            {"campaign_id": number.campaign, "publisher_id": number.publisher},
        )
        for index, number in enumerate(configuration.numbers)
    ]


_KINDS: tuple[_Kind, ...] = (
    _Kind("trunk", config_trunks, ("id",), lambda c: _by_id(c.trunks)),
    _Kind("publisher", config_publishers, ("id",), lambda c: _by_id(c.publishers)),
    _Kind("buyer", config_buyers, ("id",), lambda c: _by_id(c.buyers, exclude={"targets"})),
    _Kind("target", config_targets, ("buyer_id", "id"), _targets),
    _Kind("campaign", config_campaigns, ("id",), lambda c: _by_id(c.campaigns)),
    _Kind("number", config_numbers, ("number",), _numbers),
)


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """What an apply did, each object named like ``buyer acme`` or ``target acme/main``.

    ``revision`` is the revision recorded, or ``None`` when nothing changed.
    """

    hash: str
    revision: int | None
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    archived: tuple[str, ...] = ()
    restored: tuple[str, ...] = ()
    settings_changed: bool = False

    @property
    def changed(self) -> bool:
        """Whether the apply wrote anything."""
        return self.revision is not None


class ConfigRepository:
    """The configuration in the store: apply, load, and the revision history."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def apply_configuration(
        self, configuration: Configuration, *, now: datetime | None = None
    ) -> ApplyReport:
        """Write ``configuration`` in one transaction (see the module docstring)."""
        at = now or utcnow()
        digest = configuration_hash(configuration)
        created: list[str] = []
        updated: list[str] = []
        archived: list[str] = []
        restored: list[str] = []
        async with self._db.write() as connection:
            for kind in _KINDS:
                await self._apply_kind(
                    connection,
                    kind,
                    kind.desired(configuration),
                    at,
                    created,
                    updated,
                    archived,
                    restored,
                )
            settings_changed = await self._apply_settings(connection, configuration, at)
            revision: int | None = None
            if created or updated or archived or restored or settings_changed:
                summary = {
                    "created": created,
                    "updated": updated,
                    "archived": archived,
                    "restored": restored,
                    "settings_changed": settings_changed,
                }
                revision = await connection.scalar(
                    config_revisions.insert()
                    .values(applied_at=at, hash=digest, summary=summary)
                    .returning(config_revisions.c.id)
                )
        return ApplyReport(
            hash=digest,
            revision=revision,
            created=tuple(created),
            updated=tuple(updated),
            archived=tuple(archived),
            restored=tuple(restored),
            settings_changed=settings_changed,
        )

    async def _apply_kind(
        self,
        connection: AsyncConnection,
        kind: _Kind,
        desired: list[_Desired],
        at: datetime,
        created: list[str],
        updated: list[str],
        archived: list[str],
        restored: list[str],
    ) -> None:
        table = kind.table
        key_columns = [table.c[name] for name in kind.key_columns]
        existing = {
            tuple(str(row._mapping[name]) for name in kind.key_columns): row
            for row in await connection.execute(select(table))
        }
        wanted = {item.key for item in desired}
        for item in desired:
            values: dict[str, Any] = {
                "position": item.position,
                "settings": item.settings,
                "archived_at": None,
                "updated_at": at,
                **item.columns,
            }
            row = existing.get(item.key)
            if row is None:
                keys = dict(zip(kind.key_columns, item.key, strict=True))
                await connection.execute(table.insert().values(**keys, **values))
                created.append(kind.label(item.key))
                continue
            same = (
                row.archived_at is None
                and row.position == item.position
                and row.settings == item.settings
                and all(row._mapping[name] == value for name, value in item.columns.items())
            )
            if same:
                continue
            await connection.execute(
                update(table)
                .where(*(c == v for c, v in zip(key_columns, item.key, strict=True)))
                .values(**values)
            )
            (restored if row.archived_at is not None else updated).append(kind.label(item.key))
        for key, row in existing.items():
            if key not in wanted and row.archived_at is None:
                await connection.execute(
                    update(table)
                    .where(*(c == v for c, v in zip(key_columns, key, strict=True)))
                    .values(archived_at=at, updated_at=at)
                )
                archived.append(kind.label(key))

    async def _apply_settings(
        self, connection: AsyncConnection, configuration: Configuration, at: datetime
    ) -> bool:
        settings = settings_of(configuration, exclude=set(_LIST_FIELDS))
        current = await connection.scalar(
            select(config_settings.c.settings).where(config_settings.c.name == _SETTINGS_ROW)
        )
        if current == settings:
            return False
        if current is None:
            await connection.execute(
                config_settings.insert().values(
                    name=_SETTINGS_ROW, settings=settings, updated_at=at
                )
            )
        else:
            await connection.execute(
                update(config_settings)
                .where(config_settings.c.name == _SETTINGS_ROW)
                .values(settings=settings, updated_at=at)
            )
        return True

    async def load_configuration(self) -> Configuration:
        """The configuration last applied (archived objects left out); empty if none."""
        async with self._db.read() as connection:
            settings = await connection.scalar(
                select(config_settings.c.settings).where(config_settings.c.name == _SETTINGS_ROW)
            )
            lists: dict[str, list[JsonObject]] = {}
            for name, table in (
                ("trunks", config_trunks),
                ("publishers", config_publishers),
                ("buyers", config_buyers),
                ("campaigns", config_campaigns),
                ("numbers", config_numbers),
            ):
                lists[name] = await _active_settings(connection, table)
            targets: dict[str, list[JsonObject]] = {}
            rows = await connection.execute(
                select(config_targets.c.buyer_id, config_targets.c.settings)
                .where(config_targets.c.archived_at.is_(None))
                .order_by(config_targets.c.buyer_id, config_targets.c.position)
            )
            for row in rows:
                targets.setdefault(str(row.buyer_id), []).append(dict(row.settings))
        buyers = [{**buyer, "targets": targets.get(buyer["id"], [])} for buyer in lists["buyers"]]
        data: JsonObject = {**(settings or {}), **lists, "buyers": buyers}
        return Configuration.model_validate(data)

    async def latest_revision(self) -> tuple[int, str, datetime] | None:
        """The newest revision as (number, hash, applied at), or ``None`` before any apply."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(config_revisions).order_by(config_revisions.c.id.desc()).limit(1)
                )
            ).first()
        if row is None:
            return None
        return int(row.id), str(row.hash), row.applied_at

    async def revision_count(self) -> int:
        """How many applies changed something."""
        async with self._db.read() as connection:
            count = await connection.scalar(select(func.count()).select_from(config_revisions))
        return int(count or 0)


async def _active_settings(connection: AsyncConnection, table: Table) -> list[JsonObject]:
    rows = await connection.execute(
        select(table.c.settings).where(table.c.archived_at.is_(None)).order_by(table.c.position)
    )
    return [dict(settings) for settings in rows.scalars()]
