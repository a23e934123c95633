"""Initial schema

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from callwhisper.store.types import Money, UtcDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "caller_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("caller", sa.String(length=128), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("buyer_id", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("converted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_caller_history")),
        sa.UniqueConstraint("call_id", "buyer_id", name=op.f("uq_caller_history_call_id")),
    )
    op.create_index("ix_caller_history_caller_at", "caller_history", ["caller", "at"], unique=False)

    op.create_table(
        "calls",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=True),
        sa.Column("dialed", sa.String(length=128), nullable=False),
        sa.Column("caller", sa.String(length=128), nullable=True),
        sa.Column("publisher_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("answered_at", UtcDateTime(), nullable=True),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("routing", sa.JSON(), nullable=True),
        sa.Column("revenue", Money(), nullable=False),
        sa.Column("payout", Money(), nullable=False),
        sa.Column("cost", Money(), nullable=False),
        sa.Column("converted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("duplicate", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("recording_path", sa.Text(), nullable=True),
        sa.Column("last_event_seq", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
    )
    op.create_index(op.f("ix_calls_campaign_id"), "calls", ["campaign_id"], unique=False)
    op.create_index("ix_calls_open", "calls", ["ended_at"], unique=False)
    op.create_index(op.f("ix_calls_started_at"), "calls", ["started_at"], unique=False)

    op.create_table(
        "cap_concurrency",
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("in_progress", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_cap_concurrency")),
    )
    op.create_table(
        "cap_last_call",
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_cap_last_call")),
    )
    op.create_table(
        "cap_reservations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("charges", sa.JSON(), nullable=False),
        sa.Column("concurrency", sa.JSON(), nullable=False),
        sa.Column("committed", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cap_reservations")),
    )
    op.create_index(
        op.f("ix_cap_reservations_call_id"), "cap_reservations", ["call_id"], unique=False
    )

    op.create_table(
        "cap_usage",
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("period_key", sa.String(length=16), nullable=False),
        sa.Column("used", Money(), nullable=False),
        sa.Column("reserved", Money(), nullable=False),
        sa.PrimaryKeyConstraint(
            "owner", "metric", "period", "period_key", name=op.f("pk_cap_usage")
        ),
    )
    op.create_table(
        "config_buyers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("archived_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_buyers")),
    )
    op.create_table(
        "config_campaigns",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("archived_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_campaigns")),
    )
    op.create_table(
        "config_numbers",
        sa.Column("number", sa.String(length=128), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("publisher_id", sa.String(length=64), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("archived_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_config_numbers")),
    )
    op.create_table(
        "config_publishers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("archived_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_publishers")),
    )
    op.create_table(
        "config_revisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("applied_at", UtcDateTime(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_revisions")),
    )
    op.create_table(
        "config_settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_config_settings")),
    )
    op.create_table(
        "config_targets",
        sa.Column("buyer_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("archived_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("buyer_id", "id", name=op.f("pk_config_targets")),
    )
    op.create_table(
        "config_trunks",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("archived_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_trunks")),
    )
    op.create_table(
        "routing_rotation",
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("tier_index", sa.Integer(), nullable=False),
        sa.Column("last_member", sa.String(length=255), nullable=True),
        sa.Column("current", sa.JSON(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "tier_index", name=op.f("pk_routing_rotation")),
    )
    op.create_table(
        "call_events",
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("leg_id", sa.String(length=64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_events_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_id", "seq", name=op.f("pk_call_events")),
    )
    op.create_table(
        "call_legs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("buyer_id", sa.String(length=64), nullable=True),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("destination", sa.String(length=255), nullable=False),
        sa.Column("reservation_id", sa.String(length=64), nullable=True),
        sa.Column("dialed_at", UtcDateTime(), nullable=False),
        sa.Column("ringing_at", UtcDateTime(), nullable=True),
        sa.Column("answered_at", UtcDateTime(), nullable=True),
        sa.Column("accepted_at", UtcDateTime(), nullable=True),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("cost", Money(), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_legs_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_legs")),
    )
    op.create_index("ix_call_legs_call_id", "call_legs", ["call_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_call_legs_call_id", table_name="call_legs")
    op.drop_table("call_legs")
    op.drop_table("call_events")
    op.drop_table("routing_rotation")
    op.drop_table("config_trunks")
    op.drop_table("config_targets")
    op.drop_table("config_settings")
    op.drop_table("config_revisions")
    op.drop_table("config_publishers")
    op.drop_table("config_numbers")
    op.drop_table("config_campaigns")
    op.drop_table("config_buyers")
    op.drop_table("cap_usage")
    op.drop_index(op.f("ix_cap_reservations_call_id"), table_name="cap_reservations")
    op.drop_table("cap_reservations")
    op.drop_table("cap_last_call")
    op.drop_table("cap_concurrency")
    op.drop_index(op.f("ix_calls_started_at"), table_name="calls")
    op.drop_index("ix_calls_open", table_name="calls")
    op.drop_index(op.f("ix_calls_campaign_id"), table_name="calls")
    op.drop_table("calls")
    op.drop_index("ix_caller_history_caller_at", table_name="caller_history")
    op.drop_table("caller_history")
