"""A sample call: what a whisper's variables would be for a given caller and tags.

The preview and the linter build the variables exactly as the live flow does
(:class:`~callwhisper.flow.settings.FlowSettings`, geography from
:func:`~callwhisper.routing.geo.enrich`, the flow's
:func:`~callwhisper.flow.template.call_variables`), then make them speakable
with :func:`~callwhisper.whisper.variables.spoken_variables`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

from callwhisper.domain.buyer import Buyer, Target
from callwhisper.domain.call import CallAttributes
from callwhisper.domain.campaign import Campaign
from callwhisper.domain.configuration import Configuration
from callwhisper.flow.offers import Offer
from callwhisper.flow.settings import FlowSettings
from callwhisper.flow.template import call_variables
from callwhisper.routing.geo import enrich
from callwhisper.whisper.variables import spoken_variables

SAMPLE_CALLER: Final = "+14155550123"
"""The caller of a sample call when none is given: San Francisco, California."""


def routed_targets(
    configuration: Configuration, campaign: Campaign
) -> Iterator[tuple[Buyer, Target]]:
    """Every (buyer, target) a campaign's routing plan may dial, in plan order, once each."""
    seen: set[tuple[str, str]] = set()
    for tier in campaign.routing.tiers:
        for entry in tier.buyers:
            buyer = configuration.buyers_by_id[entry.buyer]
            for target in buyer.targets:
                if entry.target in (None, target.id) and (buyer.id, target.id) not in seen:
                    seen.add((buyer.id, target.id))
                    yield buyer, target


def sample_attributes(
    configuration: Configuration,
    campaign: Campaign,
    caller: str = SAMPLE_CALLER,
    tags: Mapping[str, str] | None = None,
) -> CallAttributes:
    """A call from ``caller`` to the campaign's first tracking number, with ``tags`` added.

    The tracking number's publisher and tags are the call's, as for a real
    call; the caller's geography comes from its number.
    """
    tracking = next((n for n in configuration.numbers if n.campaign == campaign.id), None)
    return enrich(
        CallAttributes(
            campaign_id=campaign.id,
            dialed=tracking.number if tracking else "",
            caller=caller,
            publisher_id=tracking.publisher if tracking else None,
            tags={**(tracking.tags if tracking else {}), **(tags or {})},
        )
    )


def sample_variables(
    configuration: Configuration,
    campaign: Campaign,
    attributes: CallAttributes,
    buyer: Buyer | None,
    target: Target | None,
) -> dict[str, str]:
    """The spoken variables of the whisper played to ``target`` of ``buyer`` on this call.

    With no buyer, ``{buyer}`` is left to the whisper's defaults.
    """
    publisher = configuration.publishers_by_id.get(attributes.publisher_id or "")
    settings = FlowSettings.for_campaign(campaign, configuration.telephony, publisher)
    offer = None
    if buyer is not None:
        target = target or buyer.targets[0]
        offer = Offer(
            buyer_id=buyer.id,
            destination=target.destination,
            whisper=campaign.whisper_for(buyer, target),
            revenue=(target.conversion or buyer.conversion).revenue,
            buffer_seconds=(target.conversion or buyer.conversion).buffer_seconds,
            target_id=target.id,
            buyer_name=buyer.name,
        )
    return spoken_variables(call_variables(settings, attributes, offer))
