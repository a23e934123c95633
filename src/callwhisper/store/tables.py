"""The store's tables (SQLAlchemy Core); the migrations create exactly these.

Configuration objects keep their settings as JSON next to a few id columns,
with ``position`` keeping the order of the configuration's lists and
``archived_at`` marking objects removed from the configuration (kept so that
old calls still name them).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

from callwhisper.store.types import Money, UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

ID = 64
"""Length of id columns: configuration ids are at most 64 characters."""


def _config_table(
    name: str, *key: Column[str], extra: tuple[Column[str | None], ...] = ()
) -> Table:
    return Table(
        name,
        metadata,
        *key,
        *extra,
        Column("position", Integer, nullable=False),
        Column("settings", JSON, nullable=False),
        Column("archived_at", UtcDateTime, nullable=True),
        Column("updated_at", UtcDateTime, nullable=False),
    )


config_trunks = _config_table("config_trunks", Column("id", String(ID), primary_key=True))
config_publishers = _config_table("config_publishers", Column("id", String(ID), primary_key=True))
config_buyers = _config_table("config_buyers", Column("id", String(ID), primary_key=True))
config_targets = _config_table(
    "config_targets",
    Column("buyer_id", String(ID), primary_key=True),
    Column("id", String(ID), primary_key=True),
)
config_campaigns = _config_table("config_campaigns", Column("id", String(ID), primary_key=True))
config_numbers = _config_table(
    "config_numbers",
    Column("number", String(128), primary_key=True),
    extra=(
        Column("campaign_id", String(ID), nullable=False),
        Column("publisher_id", String(ID), nullable=True),
    ),
)

config_settings = Table(
    "config_settings",
    metadata,
    Column("name", String(ID), primary_key=True),
    Column("settings", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
"""Top-level settings of the configuration that are not lists of objects (one row)."""

config_revisions = Table(
    "config_revisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("applied_at", UtcDateTime, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("summary", JSON, nullable=False),
)

calls = Table(
    "calls",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("campaign_id", String(ID), nullable=True, index=True),
    Column("dialed", String(128), nullable=False),
    Column("caller", String(128), nullable=True),
    Column("publisher_id", String(ID), nullable=True),
    Column("state", String(32), nullable=False),
    Column("outcome", String(32), nullable=True),
    Column("started_at", UtcDateTime, nullable=False, index=True),
    Column("answered_at", UtcDateTime, nullable=True),
    Column("ended_at", UtcDateTime, nullable=True),
    Column("tags", JSON, nullable=False),
    # A call without a decision keeps SQL NULL, also when its row is written with others.
    Column("routing", JSON(none_as_null=True), nullable=True),
    Column("revenue", Money, nullable=False),
    Column("payout", Money, nullable=False),
    Column("cost", Money, nullable=False),
    Column("converted", Boolean, nullable=False, server_default=false()),
    Column("duplicate", Boolean, nullable=False, server_default=false()),
    Column("recording_path", Text, nullable=True),
    Column("last_event_seq", Integer, nullable=False, server_default=text("0")),
    Column("updated_at", UtcDateTime, nullable=False),
)
Index("ix_calls_open", calls.c.ended_at)

call_legs = Table(
    "call_legs",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("call_id", String(ID), ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
    Column("buyer_id", String(ID), nullable=True),
    Column("target_id", String(ID), nullable=True),
    Column("destination", String(255), nullable=False),
    Column("reservation_id", String(ID), nullable=True),
    Column("dialed_at", UtcDateTime, nullable=False),
    Column("ringing_at", UtcDateTime, nullable=True),
    Column("answered_at", UtcDateTime, nullable=True),
    Column("accepted_at", UtcDateTime, nullable=True),
    Column("ended_at", UtcDateTime, nullable=True),
    Column("outcome", String(32), nullable=True),
    Column("reason", Text, nullable=True),
    Column("cost", Money, nullable=False),
)
Index("ix_call_legs_call_id", call_legs.c.call_id)

call_events = Table(
    "call_events",
    metadata,
    Column(
        "call_id",
        String(ID),
        ForeignKey("calls.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("seq", Integer, primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("leg_id", String(ID), nullable=True),
    Column("data", JSON, nullable=False),
)

cap_usage = Table(
    "cap_usage",
    metadata,
    Column("owner", String(255), primary_key=True),
    Column("metric", String(16), primary_key=True),
    Column("period", String(8), primary_key=True),
    Column("period_key", String(16), primary_key=True),
    Column("used", Money, nullable=False),
    Column("reserved", Money, nullable=False),
)

cap_reservations = Table(
    "cap_reservations",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("call_id", String(ID), nullable=True, index=True),
    Column("at", UtcDateTime, nullable=False),
    Column("charges", JSON, nullable=False),
    Column("concurrency", JSON, nullable=False),
    Column("committed", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
)

cap_concurrency = Table(
    "cap_concurrency",
    metadata,
    Column("owner", String(255), primary_key=True),
    Column("in_progress", Integer, nullable=False),
)

cap_last_call = Table(
    "cap_last_call",
    metadata,
    Column("owner", String(255), primary_key=True),
    Column("at", UtcDateTime, nullable=False),
)

routing_rotation = Table(
    "routing_rotation",
    metadata,
    Column("campaign_id", String(ID), primary_key=True),
    Column("tier_index", Integer, primary_key=True),
    Column("last_member", String(255), nullable=True),
    Column("current", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

caller_history = Table(
    "caller_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("caller", String(128), nullable=False),
    Column("campaign_id", String(ID), nullable=False),
    Column("buyer_id", String(ID), nullable=False),
    Column("call_id", String(ID), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("connected", Boolean, nullable=False),
    Column("converted", Boolean, nullable=False),
    UniqueConstraint("call_id", "buyer_id"),
)
Index("ix_caller_history_caller_at", caller_history.c.caller, caller_history.c.at)
