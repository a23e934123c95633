"""The pay-per-call domain: pure data and rules, no I/O.

Configuration objects are frozen pydantic models (validated, documented per
field); runtime values are frozen dataclasses.
"""

from callwhisper.domain.buyer import Buyer, ConversionRule, DuplicateRule, Target, Trunk
from callwhisper.domain.call import CallAttributes
from callwhisper.domain.campaign import (
    Blocking,
    Campaign,
    Fallback,
    PayoutRule,
    Publisher,
    RouteEntry,
    RoutingPlan,
    TelephonyCosts,
    Tier,
    TrackingNumber,
)
from callwhisper.domain.caps import CapCharge, CapKey, Caps, CountLimits, MoneyLimits
from callwhisper.domain.configuration import Configuration
from callwhisper.domain.filters import Filters, TagRule
from callwhisper.domain.ivr import Ivr, IvrBranch, IvrNode
from callwhisper.domain.schedule import Schedule
from callwhisper.domain.state import (
    CapLedger,
    ConcurrencyLimit,
    MemoryCapLedger,
    PastCall,
    Reservation,
    RoutingCounters,
    TierRotation,
)
from callwhisper.domain.whisper import TtsVoice, WhisperConfig

__all__ = [
    "Blocking",
    "Buyer",
    "CallAttributes",
    "Campaign",
    "CapCharge",
    "CapKey",
    "CapLedger",
    "Caps",
    "ConcurrencyLimit",
    "Configuration",
    "ConversionRule",
    "CountLimits",
    "DuplicateRule",
    "Fallback",
    "Filters",
    "Ivr",
    "IvrBranch",
    "IvrNode",
    "MemoryCapLedger",
    "MoneyLimits",
    "PastCall",
    "PayoutRule",
    "Publisher",
    "Reservation",
    "RouteEntry",
    "RoutingCounters",
    "RoutingPlan",
    "Schedule",
    "TagRule",
    "Target",
    "TelephonyCosts",
    "Tier",
    "TierRotation",
    "TrackingNumber",
    "Trunk",
    "TtsVoice",
    "WhisperConfig",
]
