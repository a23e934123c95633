"""Every state machine of the call flow, as data.

Five machines run in one call, each with its states, the events each state
accepts, and the moves it may make:

- the **call** (``CallState``): arrival, IVR, routing, hunting, bridged,
  fallback, forwarded, ended;
- each **buyer leg** (``LegState``): reserving its caps, dialing, ringing,
  whisper (answered, at the accept gate), bridged, ended;
- the **overflow leg** a forward fallback dials (``LegState`` too, with its
  own tables): dialing, ringing, bridged at once on answer, ended;
- each leg's **accept gate** (``GateState``, call-flow 8): prompting,
  waiting for a key, accepted, declined;
- the **IVR** (``IvrState``): prompting, collecting digits, playing a closing
  message, done.

An event that the current state does not accept raises
:class:`~callwhisper.errors.IllegalTransition` before anything changes. Once a
leg has ended, late reports about it (a 200 crossing our CANCEL, a playback
end after a hang-up) are accepted and dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar, get_args

from callwhisper.errors import IllegalTransition
from callwhisper.flow.events import (
    CallArrived,
    CallRefused,
    CapsReserved,
    DigitReceived,
    Event,
    LegAnswered,
    LegEvent,
    LegFailed,
    LegHungUp,
    LegRinging,
    MachineDetected,
    PlaybackFinished,
    RoutingDecided,
)

EventTypes = frozenset[type[Event]]
S = TypeVar("S", bound=StrEnum)


class CallState(StrEnum):
    """Where the whole call is."""

    NEW = "new"
    IVR = "ivr"
    ROUTING = "routing"
    HUNTING = "hunting"
    BRIDGED = "bridged"
    FALLBACK = "fallback"
    FORWARDED = "forwarded"
    """The fallback's overflow line answered and is bridged to the caller (call-flow 14)."""
    ENDED = "ended"


class LegState(StrEnum):
    """Where one buyer leg, or the overflow leg, is."""

    RESERVING = "reserving"
    DIALING = "dialing"
    RINGING = "ringing"
    WHISPER = "whisper"
    BRIDGED = "bridged"
    ENDED = "ended"


class GateState(StrEnum):
    """Where a buyer leg's accept gate is (call-flow 8)."""

    PROMPTING = "prompting"
    WAITING = "waiting"
    ACCEPTED = "accepted"
    DECLINED = "declined"


class IvrState(StrEnum):
    """Where the IVR is."""

    PROMPTING = "prompting"
    COLLECTING = "collecting"
    CLOSING = "closing"
    DONE = "done"


_BUYER_LEG_EVENTS: EventTypes = frozenset(get_args(LegEvent))
CALLER_EVENTS: EventTypes = frozenset({DigitReceived, PlaybackFinished, LegHungUp})
"""Events that may name the caller's leg ``"A"``."""

CALL_EVENTS: Mapping[CallState, EventTypes] = {
    CallState.NEW: frozenset({CallArrived, CallRefused}),
    CallState.IVR: CALLER_EVENTS,
    CallState.ROUTING: CALLER_EVENTS | {RoutingDecided},
    CallState.HUNTING: _BUYER_LEG_EVENTS | {CapsReserved},
    CallState.BRIDGED: _BUYER_LEG_EVENTS | {CapsReserved},
    CallState.FALLBACK: _BUYER_LEG_EVENTS | {CapsReserved},
    CallState.FORWARDED: _BUYER_LEG_EVENTS | {CapsReserved},
    # Answers to requests made before the end, and late reports about ended legs.
    CallState.ENDED: _BUYER_LEG_EVENTS | {CapsReserved, RoutingDecided},
}
"""The events each call state accepts; leg events are then checked by ``LEG_EVENTS``."""

CALL_MOVES: Mapping[CallState, frozenset[CallState]] = {
    CallState.NEW: frozenset({CallState.IVR, CallState.ROUTING, CallState.ENDED}),
    CallState.IVR: frozenset({CallState.ROUTING, CallState.ENDED}),
    CallState.ROUTING: frozenset({CallState.HUNTING, CallState.FALLBACK, CallState.ENDED}),
    CallState.HUNTING: frozenset({CallState.BRIDGED, CallState.FALLBACK, CallState.ENDED}),
    # call-flow 20: a buyer hanging up before the buffer may send the caller back to the hunt.
    CallState.BRIDGED: frozenset({CallState.HUNTING, CallState.ENDED}),
    # call-flow 14: a forward fallback bridges the caller to the overflow line when it answers.
    CallState.FALLBACK: frozenset({CallState.FORWARDED, CallState.ENDED}),
    CallState.FORWARDED: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
}
"""The legal moves of the call."""

LEG_EVENTS: Mapping[LegState, EventTypes] = {
    LegState.RESERVING: frozenset({CapsReserved}),
    # call-flow 5: early media is ringing; only LegAnswered is an answer.
    LegState.DIALING: frozenset({LegRinging, LegAnswered, LegFailed}),
    LegState.RINGING: frozenset({LegRinging, LegAnswered, LegFailed}),
    LegState.WHISPER: frozenset({DigitReceived, PlaybackFinished, MachineDetected, LegHungUp}),
    # A late answering-machine verdict or playback end after accept is dropped.
    LegState.BRIDGED: frozenset({DigitReceived, PlaybackFinished, MachineDetected, LegHungUp}),
    LegState.ENDED: _BUYER_LEG_EVENTS,
}
"""The events each buyer leg state accepts."""

LEG_MOVES: Mapping[LegState, frozenset[LegState]] = {
    LegState.RESERVING: frozenset({LegState.DIALING, LegState.ENDED}),
    LegState.DIALING: frozenset({LegState.RINGING, LegState.WHISPER, LegState.ENDED}),
    LegState.RINGING: frozenset({LegState.WHISPER, LegState.ENDED}),
    LegState.WHISPER: frozenset({LegState.BRIDGED, LegState.ENDED}),
    LegState.BRIDGED: frozenset({LegState.ENDED}),
    LegState.ENDED: frozenset(),
}
"""The legal moves of a buyer leg."""

OVERFLOW_EVENTS: Mapping[LegState, EventTypes] = {
    LegState.DIALING: frozenset({LegRinging, LegAnswered, LegFailed}),
    LegState.RINGING: frozenset({LegRinging, LegAnswered, LegFailed}),
    # Keys the overflow line presses, and other reports that mean nothing without a gate.
    LegState.BRIDGED: frozenset({DigitReceived, PlaybackFinished, MachineDetected, LegHungUp}),
    LegState.ENDED: _BUYER_LEG_EVENTS,
}
"""The events each state of the overflow leg accepts: it has no caps nor accept gate."""

OVERFLOW_MOVES: Mapping[LegState, frozenset[LegState]] = {
    LegState.DIALING: frozenset({LegState.RINGING, LegState.BRIDGED, LegState.ENDED}),
    LegState.RINGING: frozenset({LegState.BRIDGED, LegState.ENDED}),
    LegState.BRIDGED: frozenset({LegState.ENDED}),
    LegState.ENDED: frozenset(),
}
"""The legal moves of the overflow leg: its answer is its bridge, without a whisper."""

GATE_MOVES: Mapping[GateState, frozenset[GateState]] = {
    GateState.PROMPTING: frozenset(
        {GateState.PROMPTING, GateState.WAITING, GateState.ACCEPTED, GateState.DECLINED}
    ),
    GateState.WAITING: frozenset({GateState.PROMPTING, GateState.ACCEPTED, GateState.DECLINED}),
    GateState.ACCEPTED: frozenset(),
    GateState.DECLINED: frozenset(),
}
"""The legal moves of an accept gate: replays, the wait after a prompt, and the verdict."""

IVR_MOVES: Mapping[IvrState, frozenset[IvrState]] = {
    IvrState.PROMPTING: frozenset({IvrState.PROMPTING, IvrState.COLLECTING}),
    IvrState.COLLECTING: frozenset({IvrState.PROMPTING, IvrState.CLOSING, IvrState.DONE}),
    IvrState.CLOSING: frozenset({IvrState.DONE}),
    IvrState.DONE: frozenset(),
}
"""The legal moves of the IVR: next prompt or replay, closing message, done."""


def check_event(machine: str, table: Mapping[S, EventTypes], state: S, event: Event) -> None:
    """Raise :class:`IllegalTransition` unless ``state`` accepts ``event`` in ``table``."""
    if type(event) not in table[state]:
        raise IllegalTransition(machine, state, type(event).__name__)


def check_move(machine: str, table: Mapping[S, frozenset[S]], state: S, to: S) -> None:
    """Raise :class:`IllegalTransition` unless ``table`` allows moving from ``state`` to ``to``."""
    if to not in table[state]:
        raise IllegalTransition(machine, state, f"move to {to}")
