"""Builders of small configurations and calls for routing tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from callwhisper.config import validate_configuration
from callwhisper.domain import CallAttributes, Configuration
from callwhisper.routing.plan import FilterPart

# Wednesday 4 March 2026, 10:00 in New York (EST, UTC-5).
NOW = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)

SAN_FRANCISCO = "+14155550100"
NEW_YORK = "+12125550100"
AUSTIN = "+15125550100"


def buyer(buyer_id: str, **fields: Any) -> dict[str, Any]:
    """A buyer paying 10 per call with one target ``t1``, plus ``fields``."""
    data: dict[str, Any] = {
        "id": buyer_id,
        "conversion": {"revenue": "10", "buffer_seconds": 90},
        "targets": [{"id": "t1", "destination": f"sip:{buyer_id}@buyers.example"}],
    }
    data.update(fields)
    return data


def configuration(
    buyers: list[dict[str, Any]],
    tiers: list[dict[str, Any]] | None = None,
    **campaign: Any,
) -> Configuration:
    """Campaign ``c1`` routing to ``buyers`` (one priority tier of all of them by default)."""
    publishers = campaign.pop("publishers", [])
    if tiers is None:
        tiers = [{"buyers": [{"buyer": b["id"]} for b in buyers]}]
    routing = {"tiers": tiers, **campaign.pop("routing", {})}
    return validate_configuration(
        {
            "publishers": publishers,
            "buyers": buyers,
            "campaigns": [{"id": "c1", "routing": routing, **campaign}],
        }
    )


def call(caller: str | None = SAN_FRANCISCO, **fields: Any) -> CallAttributes:
    """A call to campaign ``c1`` from ``caller``."""
    return CallAttributes(campaign_id="c1", dialed="+18005550199", caller=caller, **fields)


def rejection(
    parts: tuple[FilterPart, ...],
    state: str | None,
    area_code: str | None,
    zip_code: str | None,
    tags: dict[str, str],
) -> str | None:
    """What filter ``parts`` answer, checked in order as a decision does (``Filters.rejection``)."""
    for part in parts:
        answer = part.check((state, area_code, zip_code), tags)
        if answer:
            return answer
    return None
