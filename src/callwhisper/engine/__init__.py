"""The asyncio telephony engine: RTP media legs, the shared media clock, SIP transports."""

from callwhisper.engine.clock import PTIME, MediaClock, TickSchedule
from callwhisper.engine.media import (
    Bridge,
    DigitReceived,
    LegCounters,
    LegStats,
    MediaConfig,
    MediaEngine,
    MediaEvent,
    MediaLeg,
    PlaybackFinished,
    PortAllocator,
)
from callwhisper.engine.playback import PCMA, PCMU, LegCodec, Playback, silence_frame
from callwhisper.engine.recording import BUYER, CALLER, CallRecorder
from callwhisper.engine.transport import (
    SipCore,
    SipEndpoint,
    SourceRateLimiter,
    TransportConfig,
    TransportCounters,
)

__all__ = [
    "BUYER",
    "CALLER",
    "PCMA",
    "PCMU",
    "PTIME",
    "Bridge",
    "CallRecorder",
    "DigitReceived",
    "LegCodec",
    "LegCounters",
    "LegStats",
    "MediaClock",
    "MediaConfig",
    "MediaEngine",
    "MediaEvent",
    "MediaLeg",
    "Playback",
    "PlaybackFinished",
    "PortAllocator",
    "SipCore",
    "SipEndpoint",
    "SourceRateLimiter",
    "TickSchedule",
    "TransportConfig",
    "TransportCounters",
    "silence_frame",
]
