"""Campaigns, their routing plans, publishers and tracking numbers."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator, model_validator

from callwhisper.domain.base import (
    Destination,
    Identifier,
    Model,
    Money,
    PositiveSeconds,
    Seconds,
    TimeZoneName,
)
from callwhisper.domain.buyer import Buyer, ConversionRule, DuplicateRule, Target
from callwhisper.domain.caps import Caps
from callwhisper.domain.ivr import Ivr
from callwhisper.domain.whisper import WhisperConfig

RoutingMethod = Literal["priority", "round_robin", "weighted"]
RingMode = Literal["sequential", "parallel"]
FallbackAction = Literal["reject", "message", "voicemail", "forward"]
CallerIdMode = Literal["caller", "tracking_number"]

DEFAULT_WHISPER_TEXT = "{lead_type} call from {caller_state}. Press 1 to accept."


class RouteEntry(Model):
    """A buyer (or one of its targets) in a tier, with campaign-specific settings."""

    buyer: Identifier = Field(description="Buyer id.")
    target: Identifier | None = Field(
        default=None, description="One target of the buyer; all its targets in order if unset."
    )
    weight: int = Field(default=1, ge=0, description="Share of calls in a weighted tier.")
    caps: Caps | None = Field(default=None, description="Caps of this buyer on this campaign.")
    conversion: ConversionRule | None = Field(
        default=None, description="Overrides the buyer's conversion rule on this campaign."
    )


class Tier(Model):
    """A group of buyers tried together by one method; tiers are tried in order."""

    name: str | None = Field(default=None, description="Display name.")
    method: RoutingMethod = Field(
        default="priority", description="priority (in order), round_robin or weighted."
    )
    ring: RingMode = Field(
        default="sequential", description="sequential (one at a time) or parallel."
    )
    buyers: list[RouteEntry] = Field(min_length=1, description="Members of the tier.")

    @model_validator(mode="after")
    def _weights(self) -> Tier:
        if self.method == "weighted":
            for index, entry in enumerate(self.buyers):
                if entry.weight == 0:
                    raise ValueError(
                        f"buyers[{index}].weight: must be > 0 in a weighted tier "
                        "(remove the buyer instead)"
                    )
        return self


class RoutingPlan(Model):
    """How a campaign picks buyers."""

    tiers: list[Tier] = Field(min_length=1, description="Tiers, tried in order.")
    max_candidates: int = Field(
        default=10, ge=1, le=100, description="Most buyers tried for one call."
    )
    hunt_timeout_seconds: PositiveSeconds = Field(
        default=120, description="Longest time spent hunting for a buyer."
    )
    retries_on_busy: int = Field(
        default=0, ge=0, le=5, description="Retries of a candidate that was busy or failed."
    )
    revenue_recovery_attempts: int = Field(
        default=0,
        ge=0,
        le=5,
        description="Re-offers of the caller when a buyer hangs up before the buffer.",
    )


class Fallback(Model):
    """What happens to the caller when no buyer accepts."""

    action: FallbackAction = Field(
        default="reject", description="reject (unanswered), message, voicemail or forward."
    )
    sip_code: int = Field(
        default=480,
        ge=400,
        le=699,
        description="SIP status of a rejection (480, 486, 503...), also given to an unanswered "
        "caller the overflow line of forward did not take.",
    )
    message: str | None = Field(default=None, description="Text spoken for message and voicemail.")
    forward_to: Destination | None = Field(
        default=None,
        description="Overflow number or URI for forward: dialed without a whisper, and bridged "
        "to the caller once it answers.",
    )
    trunk: Identifier | None = Field(
        default=None,
        description="Trunk that dials forward_to. Unset: a number goes through the "
        "configuration's only trunk (an error if it has none or several), a SIP URI directly.",
    )
    ring_timeout_seconds: PositiveSeconds = Field(
        default=60,
        description="Seconds the overflow line of forward may ring; then the caller gets "
        "sip_code, or our BYE if answered already (after an IVR).",
    )
    voicemail_max_seconds: PositiveSeconds = Field(
        default=120,
        description="Longest voicemail: the caller, after a beep, into a mono WAV of the call.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Fallback:
        if self.action == "forward" and self.forward_to is None:
            raise ValueError("forward_to is required with action forward")
        if self.action == "message" and self.message is None:
            raise ValueError("message is required with action message")
        return self


class PayoutRule(Model):
    """What a publisher earns for a call: ``amount`` once bridged ``buffer_seconds``."""

    amount: Money = Field(description="Payout per converted call.")
    buffer_seconds: Seconds = Field(
        default=90, description="Bridged seconds a call needs for the payout."
    )


class Blocking(Model):
    """Callers refused before routing."""

    anonymous: bool = Field(default=False, description="Refuse calls without a caller ID.")
    numbers: list[str] = Field(default_factory=list, description="Caller numbers refused.")


class Publisher(Model):
    """A traffic source that earns a payout per converted call."""

    id: Identifier = Field(description="Publisher id.")
    name: str | None = Field(default=None, description="Display name.")
    timezone: TimeZoneName = Field(
        default="America/New_York", description="Time zone of the publisher's cap periods."
    )
    payout: PayoutRule | None = Field(
        default=None, description="Overrides the campaign's payout for this publisher."
    )
    caps: Caps | None = Field(default=None, description="Caps on the publisher's calls.")


class TrackingNumber(Model):
    """A number (E.164) or SIP user that callers dial, mapped to a campaign."""

    number: str = Field(min_length=1, description="E.164 number or SIP user part.")
    campaign: Identifier = Field(description="Campaign id.")
    publisher: Identifier | None = Field(default=None, description="Publisher id, if any.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags set on every call.")

    @field_validator("number")
    @classmethod
    def _number_shape(cls, value: str) -> str:
        if value.startswith("+"):
            if not (value[1:].isdigit() and 7 <= len(value) - 1 <= 15 and value[1] != "0"):
                raise ValueError(f"{value!r} is not an E.164 number")
        elif any(c in value for c in ' @:;<>"\t'):
            raise ValueError(f"{value!r} is not a SIP user part")
        return value


class Campaign(Model):
    """An offer: its tracking numbers lead here, and its routing plan sells the calls."""

    id: Identifier = Field(description="Campaign id.")
    name: str | None = Field(default=None, description="Display name.")
    lead_type: str = Field(
        default="Inbound", description="Vertical spoken in whispers, e.g. 'Auto insurance'."
    )
    timezone: TimeZoneName = Field(
        default="America/New_York", description="Time zone of reports and the IVR."
    )
    enabled: bool = Field(default=True, description="A disabled campaign rejects its calls.")
    ivr: Ivr | None = Field(default=None, description="Questions asked before routing.")
    routing: RoutingPlan = Field(description="How buyers are picked.")
    whisper: WhisperConfig = Field(
        default_factory=lambda: WhisperConfig(text=DEFAULT_WHISPER_TEXT),
        description="Whisper played to buyers, unless a buyer or target overrides it.",
    )
    fallback: Fallback = Field(
        default_factory=Fallback, description="What happens when no buyer accepts."
    )
    recording: bool = Field(default=False, description="Record bridged calls.")
    ring_timeout_seconds: PositiveSeconds = Field(
        default=30, description="Seconds a buyer leg may ring."
    )
    payout: PayoutRule | None = Field(default=None, description="Publisher payout.")
    duplicates: DuplicateRule | None = Field(
        default=None, description="Campaign-wide duplicate rule; duplicates do not convert."
    )
    blocking: Blocking = Field(default_factory=Blocking, description="Refused callers.")
    caller_id: CallerIdMode = Field(
        default="caller", description="Caller ID shown to buyers: caller or tracking_number."
    )

    def whisper_for(self, buyer: Buyer | None, target: Target | None) -> WhisperConfig:
        """The whisper ``target`` of ``buyer`` hears on this campaign.

        The target's, else the buyer's, else the campaign's own.
        """
        if target is not None and target.whisper is not None:
            return target.whisper
        if buyer is not None and buyer.whisper is not None:
            return buyer.whisper
        return self.whisper


class TelephonyCosts(Model):
    """What telephony costs us per minute of each answered leg, billed in increments."""

    inbound_per_minute: Money = Field(default=Decimal(0), description="Cost of the caller's leg.")
    outbound_per_minute: Money = Field(
        default=Decimal(0), description="Cost of each answered buyer leg."
    )
    increment_seconds: PositiveSeconds = Field(
        default=60, description="Billing increment: 60 rounds up to the minute, 1 bills per second."
    )
