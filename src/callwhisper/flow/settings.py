"""The campaign-level settings one call session runs with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from callwhisper.domain.campaign import Campaign, Fallback, PayoutRule, Publisher, TelephonyCosts
from callwhisper.domain.ivr import Ivr


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """Everything a session needs from the configuration, fixed for the whole call."""

    campaign_id: str
    campaign_name: str | None = None
    """Spoken as ``{campaign}`` in whispers; the id is used when unset."""
    lead_type: str = "Inbound"
    publisher_name: str | None = None
    ivr: Ivr | None = None
    fallback: Fallback = field(default_factory=Fallback)
    recording: bool = False
    """Record bridged calls, caller left and buyer right (call-flow 19)."""
    hunt_timeout_seconds: float = 120
    max_candidates: int = 10
    retries_on_busy: int = 0
    revenue_recovery_attempts: int = 0
    payout: PayoutRule | None = None
    costs: TelephonyCosts = field(default_factory=TelephonyCosts)
    hold_music: str | None = None
    """Recording played to the waiting caller instead of generated ringback."""
    speak: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None
    """Turns template variables into what a voice should say ("CA" -> "California")."""

    @classmethod
    def for_campaign(
        cls,
        campaign: Campaign,
        costs: TelephonyCosts,
        publisher: Publisher | None = None,
        hold_music: str | None = None,
        speak: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None,
    ) -> FlowSettings:
        """The settings of a call to ``campaign``, sent by ``publisher`` if any."""
        payout = publisher.payout if publisher and publisher.payout else campaign.payout
        return cls(
            campaign_id=campaign.id,
            campaign_name=campaign.name,
            lead_type=campaign.lead_type,
            publisher_name=(publisher.name or publisher.id) if publisher else None,
            ivr=campaign.ivr,
            fallback=campaign.fallback,
            recording=campaign.recording,
            hunt_timeout_seconds=campaign.routing.hunt_timeout_seconds,
            max_candidates=campaign.routing.max_candidates,
            retries_on_busy=campaign.routing.retries_on_busy,
            revenue_recovery_attempts=campaign.routing.revenue_recovery_attempts,
            payout=payout,
            costs=costs,
            hold_music=hold_music,
            speak=speak,
        )
