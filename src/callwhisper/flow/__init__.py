"""The call flow: a sans-I/O session per call, written once for every telephony driver.

A driver creates a :class:`CallSession` per inbound call, feeds it events
with the time they happened, carries out the commands it returns, and wakes
it at :meth:`CallSession.get_timer`::

    session = CallSession(call_id, FlowSettings.for_campaign(campaign, costs))
    commands = session.handle(CallArrived(attributes), now)
    ...
    commands = session.handle_timer(now)

See ``call-flow.md`` for the behaviour, :mod:`callwhisper.flow.states` for the
state machines, :mod:`~callwhisper.flow.events` and
:mod:`~callwhisper.flow.commands` for the vocabulary.
"""

from callwhisper.flow.commands import (
    AnswerCaller,
    Bridge,
    CancelLeg,
    CollectDigits,
    Command,
    CommitCaps,
    DialLeg,
    FinishCaps,
    ForwardCaller,
    HangupLeg,
    Persist,
    PlayAudio,
    PlayText,
    RejectCaller,
    RequestRouting,
    ReserveCaps,
    StartRecording,
    StartRingback,
    StopPlayback,
    StopRecording,
    StopRingback,
)
from callwhisper.flow.events import (
    CallArrived,
    CallRefused,
    CapsReserved,
    DigitReceived,
    Event,
    LegAnswered,
    LegFailed,
    LegHungUp,
    LegRinging,
    MachineDetected,
    PlaybackFinished,
    RoutingDecided,
)
from callwhisper.flow.offers import Offer, RoutingResult
from callwhisper.flow.reasons import (
    DeclineReason,
    FailureReason,
    Outcome,
    reason_for_sip_status,
)
from callwhisper.flow.record import CallRecord, Entry, LegRecord, interrupted_entry
from callwhisper.flow.session import CallSession
from callwhisper.flow.settings import FlowSettings
from callwhisper.flow.states import CallState, GateState, IvrState, LegState
from callwhisper.flow.template import render
from callwhisper.flow.timeline import format_timeline, print_timeline

__all__ = [
    "AnswerCaller",
    "Bridge",
    "CallArrived",
    "CallRecord",
    "CallRefused",
    "CallSession",
    "CallState",
    "CancelLeg",
    "CapsReserved",
    "CollectDigits",
    "Command",
    "CommitCaps",
    "DeclineReason",
    "DialLeg",
    "DigitReceived",
    "Entry",
    "Event",
    "FailureReason",
    "FinishCaps",
    "FlowSettings",
    "ForwardCaller",
    "GateState",
    "HangupLeg",
    "IvrState",
    "LegAnswered",
    "LegFailed",
    "LegHungUp",
    "LegRecord",
    "LegRinging",
    "LegState",
    "MachineDetected",
    "Offer",
    "Outcome",
    "Persist",
    "PlayAudio",
    "PlayText",
    "PlaybackFinished",
    "RejectCaller",
    "RequestRouting",
    "ReserveCaps",
    "RoutingDecided",
    "RoutingResult",
    "StartRecording",
    "StartRingback",
    "StopPlayback",
    "StopRecording",
    "StopRingback",
    "format_timeline",
    "interrupted_entry",
    "print_timeline",
    "reason_for_sip_status",
    "render",
]
