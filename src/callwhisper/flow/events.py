"""Events the driver feeds into a :class:`~callwhisper.flow.session.CallSession`.

Each event is a small frozen dataclass; the time it happened is the ``now``
passed alongside it. Legs are named by the ids the session allocated: ``"A"``
is the caller, ``"B1"``, ``"B2"``... are buyer legs in the order they were
dialed, and ``"overflow"`` is the overflow line a forward fallback dials;
the leg events below are about buyer and overflow legs alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from callwhisper.domain.call import CallAttributes
from callwhisper.domain.whisper import DtmfKey
from callwhisper.flow.offers import RoutingResult
from callwhisper.flow.reasons import FailureReason


@dataclass(frozen=True, slots=True)
class CallArrived:
    """The caller's INVITE (or webhook) arrived; dialed number and caller are in ``attributes``."""

    attributes: CallAttributes


@dataclass(frozen=True, slots=True)
class CallRefused:
    """The driver turned the caller away before the flow could start; only recorded.

    The SIP engine does so when the caller offers no codec it can speak (488
    Not Acceptable Here). The driver has already answered the caller with
    ``status``, its protocol's own code; the session records the arrival, the
    caller's leg rejected by the system, and the outcome ``refused``.
    """

    attributes: CallAttributes
    status: int | str | None = None


@dataclass(frozen=True, slots=True)
class RoutingDecided:
    """The answer to :class:`~callwhisper.flow.commands.RequestRouting`."""

    result: RoutingResult


@dataclass(frozen=True, slots=True)
class CapsReserved:
    """The answer to :class:`~callwhisper.flow.commands.ReserveCaps`.

    ``refused`` is the ledger's reason (``daily calls cap 50/50``) when nothing
    was reserved, ``None`` when everything was.
    """

    reservation_id: str
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class LegRinging:
    """A buyer leg is ringing (180), or sends early media (183) when ``early_media``."""

    leg: str
    early_media: bool = False


@dataclass(frozen=True, slots=True)
class LegAnswered:
    """A buyer leg answered for real (200 OK), not early media."""

    leg: str


@dataclass(frozen=True, slots=True)
class LegFailed:
    """A buyer leg ended before it was answered.

    ``reason`` is already mapped by the driver (see
    :func:`~callwhisper.flow.reasons.reason_for_sip_status`); ``status`` is the
    provider's own status, kept for the record.
    """

    leg: str
    reason: FailureReason
    status: int | str | None = None


@dataclass(frozen=True, slots=True)
class MachineDetected:
    """Answering-machine detection says an answered buyer leg is a machine."""

    leg: str


@dataclass(frozen=True, slots=True)
class DigitReceived:
    """A DTMF key from a leg (RFC 4733 event, SIP INFO or a provider's webhook)."""

    leg: str
    digit: DtmfKey


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    """The playback ``play_id`` on ``leg`` reached its end."""

    leg: str
    play_id: int


@dataclass(frozen=True, slots=True)
class LegHungUp:
    """The far end hung up an answered leg: the caller for ``"A"``, the buyer otherwise."""

    leg: str


LegEvent = (
    LegRinging
    | LegAnswered
    | LegFailed
    | MachineDetected
    | DigitReceived
    | PlaybackFinished
    | LegHungUp
)
"""Events about one leg."""

Event = CallArrived | CallRefused | RoutingDecided | CapsReserved | LegEvent
"""Every event a session accepts."""
