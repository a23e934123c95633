"""A configuration compiled once for routing: indexes, cap limits and schedules in minutes.

Routing decisions run on every call; everything that depends only on the
configuration is worked out here, once per ``Configuration`` object, so a
decision does no parsing, no pydantic validation and no searching.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from decimal import Decimal

from callwhisper.domain import (
    Buyer,
    Campaign,
    Caps,
    Configuration,
    ConversionRule,
    DuplicateRule,
    Filters,
    Publisher,
    RouteEntry,
    Target,
    WhisperConfig,
)
from callwhisper.domain.campaign import RingMode
from callwhisper.domain.caps import CapMetric, CapPeriod
from callwhisper.domain.state import buyer_owner, publisher_owner, route_owner, target_owner
from callwhisper.errors import ConfigError
from callwhisper.routing.geo import normalize_number
from callwhisper.routing.hours import Hours
from callwhisper.routing.methods import Member, RoutingMethod, get_method, member_key


@dataclass(frozen=True, slots=True)
class OwnerLimits:
    """The caps of one owner (buyer, target, route or publisher), ready to check.

    ``label`` prefixes the owner's reasons ("target t1: ") so that a reason
    says whose cap is full; the buyer's own caps have none.
    """

    owner: str
    label: str
    timezone: str
    limits: tuple[tuple[CapMetric, CapPeriod, Decimal], ...]
    concurrency: int | None
    spacing_seconds: int | None
    target_level: bool

    @classmethod
    def of(
        cls, owner: str, label: str, caps: Caps | None, timezone: str, *, target_level: bool
    ) -> OwnerLimits | None:
        """The limits of ``caps``, or ``None`` when it sets none."""
        if caps is None:
            return None
        limits = tuple(caps.limits())
        if not limits and caps.concurrency is None and caps.spacing_seconds is None:
            return None
        return cls(
            owner, label, timezone, limits, caps.concurrency, caps.spacing_seconds, target_level
        )


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """One target as a route entry reaches it, with every override resolved."""

    buyer: Buyer
    target: Target
    hours: Hours | None
    hours_target_level: bool
    buyer_filters: Filters | None
    target_filters: Filters | None
    duplicates: DuplicateRule | None
    owners: tuple[OwnerLimits, ...]
    ring_timeout_seconds: int
    whisper: WhisperConfig
    conversion: ConversionRule


@dataclass(frozen=True, slots=True)
class EntryPlan:
    """A route entry of a tier: the buyer and the targets it names, in order."""

    buyer: Buyer
    target_id: str | None
    targets: tuple[TargetPlan, ...]


@dataclass(frozen=True, slots=True)
class TierPlan:
    """A tier: its method, ring mode and members (parallel to ``entries``)."""

    index: int
    method_name: str
    method: RoutingMethod
    ring: RingMode
    members: tuple[Member, ...]
    entries: tuple[EntryPlan, ...]


@dataclass(frozen=True, slots=True)
class CampaignPlan:
    """A campaign's routing, compiled."""

    campaign: Campaign
    tiers: tuple[TierPlan, ...]
    blocked_numbers: frozenset[str]


@dataclass(frozen=True, slots=True)
class PublisherPlan:
    """A publisher and its caps."""

    publisher: Publisher
    limits: OwnerLimits | None


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything routing needs from one configuration, indexed by id."""

    campaigns: dict[str, CampaignPlan]
    publishers: dict[str, PublisherPlan]


_PLANS: dict[int, Plan] = {}


def compile_plan(configuration: Configuration) -> Plan:
    """The routing plan of ``configuration``, compiled on first use and kept while it lives.

    Raises ``ConfigError`` when the configuration refers to unknown buyers or
    targets (``validate_configuration`` reports those before this can happen).
    """
    key = id(configuration)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _compile(configuration)
        _PLANS[key] = plan
        # Ids are reused after an object dies: forget the plan with the configuration.
        weakref.finalize(configuration, _PLANS.pop, key, None)
    return plan


def _compile(configuration: Configuration) -> Plan:
    problems = configuration.reference_problems()
    if problems:
        raise ConfigError([f"{'.'.join(map(str, loc))}: {message}" for loc, message in problems])
    publishers = {
        publisher.id: PublisherPlan(
            publisher,
            OwnerLimits.of(
                publisher_owner(publisher.id),
                f"publisher {publisher.id}: ",
                publisher.caps,
                publisher.timezone,
                target_level=False,
            ),
        )
        for publisher in configuration.publishers
    }
    campaigns = {
        campaign.id: _compile_campaign(campaign, configuration.buyers_by_id)
        for campaign in configuration.campaigns
    }
    return Plan(campaigns, publishers)


def _compile_campaign(campaign: Campaign, buyers: dict[str, Buyer]) -> CampaignPlan:
    tiers = tuple(
        TierPlan(
            index=index,
            method_name=tier.method,
            method=get_method(tier.method),
            ring=tier.ring,
            members=tuple(Member(member_key(e.buyer, e.target), e.weight) for e in tier.buyers),
            entries=tuple(
                _compile_entry(campaign, entry, buyers[entry.buyer]) for entry in tier.buyers
            ),
        )
        for index, tier in enumerate(campaign.routing.tiers)
    )
    blocked = frozenset(normalize_number(n) or n.strip() for n in campaign.blocking.numbers)
    return CampaignPlan(campaign, tiers, blocked)


def _compile_entry(campaign: Campaign, entry: RouteEntry, buyer: Buyer) -> EntryPlan:
    buyer_limits = OwnerLimits.of(
        buyer_owner(buyer.id), "", buyer.caps, buyer.timezone, target_level=False
    )
    # Route caps are the buyer's caps on this campaign, so they count in the buyer's time zone.
    route_limits = OwnerLimits.of(
        route_owner(campaign.id, buyer.id, entry.target),
        f"campaign {campaign.id}: ",
        entry.caps,
        buyer.timezone,
        target_level=False,
    )
    buyer_hours = Hours.compile(buyer.schedule, buyer.timezone) if buyer.schedule else None
    targets = []
    for target in buyer.targets:
        if entry.target is not None and target.id != entry.target:
            continue
        target_limits = OwnerLimits.of(
            target_owner(buyer.id, target.id),
            f"target {target.id}: ",
            target.caps,
            buyer.timezone,
            target_level=True,
        )
        hours = buyer_hours
        if target.schedule is not None:
            hours = Hours.compile(target.schedule, buyer.timezone)
        targets.append(
            TargetPlan(
                buyer=buyer,
                target=target,
                hours=hours,
                hours_target_level=target.schedule is not None,
                buyer_filters=buyer.filters,
                target_filters=target.filters,
                duplicates=buyer.duplicates,
                owners=tuple(
                    limits
                    for limits in (buyer_limits, target_limits, route_limits)
                    if limits is not None
                ),
                ring_timeout_seconds=target.ring_timeout_seconds
                or buyer.ring_timeout_seconds
                or campaign.ring_timeout_seconds,
                whisper=target.whisper or buyer.whisper or campaign.whisper,
                conversion=entry.conversion or target.conversion or buyer.conversion,
            )
        )
    return EntryPlan(buyer, entry.target, tuple(targets))
