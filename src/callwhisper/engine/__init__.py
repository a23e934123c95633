"""The asyncio telephony engine: RTP media, SIP transports, and the B2BUA running calls."""

from callwhisper.engine.b2bua import B2bua
from callwhisper.engine.backend import CallBackend, Prompts, StoreBackend
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
from callwhisper.engine.runner import CallRunner, RunnerSettings
from callwhisper.engine.server import CallwhisperServer, ServerConfig
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
    "B2bua",
    "Bridge",
    "CallBackend",
    "CallRecorder",
    "CallRunner",
    "CallwhisperServer",
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
    "Prompts",
    "RunnerSettings",
    "ServerConfig",
    "SipCore",
    "SipEndpoint",
    "SourceRateLimiter",
    "StoreBackend",
    "TickSchedule",
    "TransportConfig",
    "TransportCounters",
    "silence_frame",
]
