"""Buyers, their targets (destinations), and the trunks that reach them."""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from pydantic import Field

from callwhisper.domain.base import (
    Destination,
    Identifier,
    Model,
    Money,
    PositiveSeconds,
    Seconds,
    TimeZoneName,
)
from callwhisper.domain.caps import Caps
from callwhisper.domain.filters import Filters
from callwhisper.domain.schedule import Schedule
from callwhisper.domain.whisper import WhisperConfig

DuplicateScope = Literal["buyer", "campaign"]
DuplicateBasis = Literal["connected", "converted"]
DuplicateAction = Literal["skip", "no_convert"]


class ConversionRule(Model):
    """When a call is payable: bridged at least ``buffer_seconds``, paying ``revenue``."""

    buffer_seconds: Seconds = Field(
        default=90, description="Bridged seconds (from accept) a call needs to convert."
    )
    revenue: Money = Field(description="What the buyer pays for a converted call.")


class DuplicateRule(Model):
    """A caller seen within ``window_days`` is a duplicate for this buyer or campaign."""

    window_days: int = Field(default=30, ge=1, le=3650, description="Look-back window in days.")
    scope: DuplicateScope = Field(
        default="buyer", description="Count earlier calls to this buyer, or to the campaign."
    )
    count_on: DuplicateBasis = Field(
        default="converted", description="Earlier calls that count: connected or converted."
    )
    action: DuplicateAction = Field(
        default="skip", description="skip the buyer, or route the call but do not convert it."
    )


class Trunk(Model):
    """A SIP trunk or outbound proxy used to reach targets."""

    id: Identifier = Field(description="Trunk id, referred to by targets.")
    proxy: str = Field(
        description="Where requests go, e.g. 'sip:trunk.example.com:5060', or "
        "'sips:trunk.example.com' for TLS (port 5061 by default)."
    )
    transport: Literal["udp", "tcp", "tls"] = Field(
        default="udp",
        description="udp, tcp or tls: over tcp and tls, one connection to the proxy, reused "
        "by every call; over tls the proxy's certificate must name the proxy URI's host. "
        "A sips: proxy URI, or a transport parameter in it, takes precedence.",
    )
    route_header: bool = Field(
        default=False,
        description="Also name the proxy in a 'Route: <proxy;lr>' header (RFC 3261 8.1.2's "
        "pre-loaded route), kept on in-dialog requests while the proxy records no route. "
        "Off: the proxy is only where requests are sent, as carriers that refuse Route expect.",
    )
    username: str | None = Field(default=None, description="Digest user when challenged.")
    password: str | None = Field(default=None, description="Digest password when challenged.")
    from_domain: str | None = Field(default=None, description="Domain of our From header.")
    caller_id: str | None = Field(
        default=None, description="Caller ID presented instead of the caller's number."
    )


def dialing_trunk(destination: str, trunk: str | None, trunk_ids: Collection[str]) -> str | None:
    """The trunk that dials ``destination`` (a target's or an overflow line's), ``None`` for direct.

    The destination's own ``trunk`` when set. Otherwise a number goes through
    the configuration's only trunk, if it has exactly one: with several, which
    one to pay for is the operator's choice, and the configuration check asks
    for it. A SIP URI without a trunk is dialed directly.
    """
    if trunk is not None:
        return trunk
    if destination.startswith(("sip:", "sips:")) or len(trunk_ids) != 1:
        return None
    return next(iter(trunk_ids))


class Target(Model):
    """One destination of a buyer: a SIP URI or E.164 number, with optional overrides."""

    id: Identifier = Field(description="Target id, unique within its buyer.")
    name: str | None = Field(default=None, description="Display name.")
    destination: Destination = Field(description="SIP URI or E.164 number dialed.")
    trunk: Identifier | None = Field(
        default=None,
        description="Trunk that dials it. Unset: a number goes through the configuration's "
        "only trunk (an error if it has none or several), a SIP URI directly.",
    )
    enabled: bool = Field(default=True, description="Disabled targets are never dialed.")
    conversion: ConversionRule | None = Field(
        default=None, description="Overrides the buyer's conversion rule."
    )
    caps: Caps | None = Field(default=None, description="Caps of this target alone.")
    schedule: Schedule | None = Field(default=None, description="Overrides the buyer's hours.")
    filters: Filters | None = Field(default=None, description="Extra filters for this target.")
    ring_timeout_seconds: PositiveSeconds | None = Field(
        default=None, description="Overrides the ring timeout."
    )
    whisper: WhisperConfig | None = Field(default=None, description="Overrides the whisper.")


class Buyer(Model):
    """A buyer of calls and its targets."""

    id: Identifier = Field(description="Buyer id.")
    name: str | None = Field(default=None, description="Display name, spoken in whispers.")
    timezone: TimeZoneName = Field(
        default="America/New_York", description="Time zone of hours and cap periods."
    )
    enabled: bool = Field(default=True, description="Disabled buyers are never dialed.")
    conversion: ConversionRule = Field(description="When a call converts and what it pays.")
    caps: Caps | None = Field(default=None, description="Caps over all the buyer's targets.")
    schedule: Schedule | None = Field(default=None, description="Hours; none means always open.")
    filters: Filters | None = Field(default=None, description="Which calls the buyer takes.")
    duplicates: DuplicateRule | None = Field(default=None, description="Duplicate caller rule.")
    ring_timeout_seconds: PositiveSeconds | None = Field(
        default=None, description="Overrides the campaign's ring timeout."
    )
    whisper: WhisperConfig | None = Field(
        default=None, description="Overrides the campaign's whisper."
    )
    targets: list[Target] = Field(min_length=1, description="Destinations, in order.")

    def target(self, target_id: str) -> Target:
        """The target with id ``target_id``."""
        for target in self.targets:
            if target.id == target_id:
                return target
        raise KeyError(target_id)
