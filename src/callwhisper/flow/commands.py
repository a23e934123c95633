"""Commands a :class:`~callwhisper.flow.session.CallSession` asks its driver to carry out.

One small frozen dataclass per verb, in the order they must be executed. The
caller is always leg ``"A"``; buyer legs are the ids given in :class:`DialLeg`.
Two commands are requests whose answer is fed back as an event:
:class:`RequestRouting` (answered by ``RoutingDecided``) and
:class:`ReserveCaps` (answered by ``CapsReserved``). :class:`CommitCaps` and
:class:`FinishCaps` settle reservations as the ``CapLedger`` lifecycle says.
:class:`Persist` carries each timeline entry to the store as it happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from callwhisper.domain.call import CallAttributes
from callwhisper.domain.caps import CapMetric
from callwhisper.domain.state import Reservation
from callwhisper.domain.whisper import TtsVoice
from callwhisper.flow.record import Entry


@dataclass(frozen=True, slots=True)
class StartRingback:
    """Let the caller hear ringback, or ``music`` if set, until :class:`StopRingback`.

    Before the caller is answered this is ``180 Ringing`` or ``183`` with
    generated ringback as early media (call-flow 1); after an IVR it is played
    in-band (call-flow 3).
    """

    music: str | None = None


@dataclass(frozen=True, slots=True)
class StopRingback:
    """Stop the caller's ringback or hold music."""


@dataclass(frozen=True, slots=True)
class AnswerCaller:
    """Answer the caller (``200 OK``)."""


@dataclass(frozen=True, slots=True)
class RejectCaller:
    """Refuse the caller without answering, with SIP status ``sip_code`` (call-flow 14)."""

    sip_code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ForwardCaller:
    """Dial the campaign's overflow line as leg ``leg``, to take the caller (call-flow 14).

    Dialed like a buyer leg but without whisper nor accept gate, while the
    caller keeps hearing ringback. The driver reports the leg as it would a
    buyer's (``LegRinging``, ``LegAnswered``, ``LegFailed``, ``LegHungUp``);
    the session then answers the caller and bridges, or turns the caller
    away, and ends the call when either side hangs up. ``trunk`` is the
    fallback's own, ``None`` for the driver's default (see
    :func:`~callwhisper.domain.buyer.dialing_trunk`); the session
    enforces ``timeout_seconds`` itself.
    """

    leg: str
    destination: str
    trunk: str | None
    caller_id: str | None
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class DialLeg:
    """Dial a buyer leg; it may ring ``timeout_seconds`` (the session enforces it too).

    If the leg answers after a :class:`CancelLeg` (a 200 crossing the CANCEL),
    the driver hangs it up; the session ignores reports about legs it ended.
    """

    leg: str
    destination: str
    trunk: str | None
    caller_id: str | None
    timeout_seconds: float
    buyer_id: str
    target_id: str | None


@dataclass(frozen=True, slots=True)
class PlayText:
    """Speak ``text`` to ``leg`` only, and report ``PlaybackFinished(leg, play_id)``."""

    leg: str
    play_id: int
    text: str
    voice: TtsVoice


@dataclass(frozen=True, slots=True)
class PlayAudio:
    """Play the recording at ``path`` to ``leg`` only, and report ``PlaybackFinished``."""

    leg: str
    play_id: int
    path: str


@dataclass(frozen=True, slots=True)
class StopPlayback:
    """Stop the playback ``play_id`` at once (barge-in); no ``PlaybackFinished`` is needed."""

    leg: str
    play_id: int


@dataclass(frozen=True, slots=True)
class CollectDigits:
    """Report DTMF keys from ``leg``.

    ``max_digits``, ``finish_on_key`` and ``timeout_seconds`` are hints for
    providers that gather digits themselves; the session keeps its own timers.
    """

    leg: str
    max_digits: int
    finish_on_key: str | None
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class Bridge:
    """Connect the caller and the buyer (or overflow) leg both ways (call-flow 15)."""

    caller: str
    buyer: str


@dataclass(frozen=True, slots=True)
class CancelLeg:
    """Give up a buyer leg that has not answered (SIP CANCEL)."""

    leg: str


@dataclass(frozen=True, slots=True)
class HangupLeg:
    """Hang up an answered leg (SIP BYE)."""

    leg: str
    reason: str


@dataclass(frozen=True, slots=True)
class StartRecording:
    """Record ``channels``: one per leg, in order (caller left, buyer right: call-flow 19)."""

    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StopRecording:
    """Stop the recording in progress."""


@dataclass(frozen=True, slots=True)
class RequestRouting:
    """Decide the candidates for a call with these attributes; answer ``RoutingDecided``."""

    attributes: CallAttributes


@dataclass(frozen=True, slots=True)
class ReserveCaps:
    """``CapLedger.reserve`` this reservation; answer ``CapsReserved``."""

    reservation: Reservation


@dataclass(frozen=True, slots=True)
class CommitCaps:
    """``CapLedger.commit``: keep ``metrics`` of a reservation for good."""

    reservation_id: str
    metrics: tuple[CapMetric, ...]
    revenue: Decimal | None = None


@dataclass(frozen=True, slots=True)
class FinishCaps:
    """``CapLedger.finish``: release what was not committed, and the concurrency slot."""

    reservation_id: str


@dataclass(frozen=True, slots=True)
class Persist:
    """Append ``entry`` to the call's stored timeline.

    Entries must be stored in the order they are emitted; a driver may write
    them in the background so that signalling (a 180, a bridge) never waits
    for the database.
    """

    entry: Entry


Command = (
    StartRingback
    | StopRingback
    | AnswerCaller
    | RejectCaller
    | ForwardCaller
    | DialLeg
    | PlayText
    | PlayAudio
    | StopPlayback
    | CollectDigits
    | Bridge
    | CancelLeg
    | HangupLeg
    | StartRecording
    | StopRecording
    | RequestRouting
    | ReserveCaps
    | CommitCaps
    | FinishCaps
    | Persist
)
"""Every command a session emits."""
