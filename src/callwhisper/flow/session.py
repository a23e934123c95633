"""One call, from arrival to hang-up, as a sans-I/O state machine.

Feed :meth:`CallSession.handle` the driver's events and call
:meth:`CallSession.handle_timer` when :meth:`CallSession.get_timer` is due;
both return the commands to carry out, in order. Time is always the ``now``
passed in (POSIX seconds); the session never reads a clock or touches I/O.
The states and their legal moves are in :mod:`callwhisper.flow.states`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import ClassVar

from callwhisper.domain.call import CallAttributes
from callwhisper.domain.state import Reservation
from callwhisper.domain.whisper import TtsVoice
from callwhisper.errors import IllegalTransition
from callwhisper.flow.billing import elapsed, leg_cost
from callwhisper.flow.commands import (
    AnswerCaller,
    Bridge,
    CancelLeg,
    Command,
    CommitCaps,
    DialLeg,
    FinishCaps,
    ForwardCaller,
    HangupLeg,
    PlayText,
    RejectCaller,
    RequestRouting,
    ReserveCaps,
    StartRecording,
    StartRingback,
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
    LegEvent,
    LegFailed,
    LegHungUp,
    LegRinging,
    MachineDetected,
    PlaybackFinished,
    RoutingDecided,
)
from callwhisper.flow.hunt import Hunt
from callwhisper.flow.ivr import IvrRunner
from callwhisper.flow.offers import Offer
from callwhisper.flow.outbox import Outbox
from callwhisper.flow.reasons import RETRIABLE, FailureReason, LegEndReason, Outcome, Party
from callwhisper.flow.record import CALLER, EXPLAIN_PREFIX, OVERFLOW, CallRecord, Entry
from callwhisper.flow.settings import FlowSettings
from callwhisper.flow.states import (
    CALL_EVENTS,
    CALL_MOVES,
    CALLER_EVENTS,
    LEG_EVENTS,
    LEG_MOVES,
    OVERFLOW_EVENTS,
    OVERFLOW_MOVES,
    CallState,
    EventTypes,
    LegState,
    check_event,
    check_move,
)
from callwhisper.flow.template import call_variables
from callwhisper.flow.whisper import AcceptGate

Timer = tuple[float, Callable[..., None], "_Dialed | None"]
"""A deadline, what fires at it (with ``now``), and the leg it fires for (passed first)."""


_ARRIVALS = (CallArrived, CallRefused)

_RINGING = frozenset({LegState.DIALING, LegState.RINGING})
"""States in which a dialed leg's ring timeout runs (call-flow 5)."""


@dataclass(eq=False, slots=True)
class _Dialed:
    """A leg the session dials: a buyer leg, or the overflow line of a forward fallback.

    Both ring, fail, ring out, are canceled and end (with their cost) the same
    way; each kind follows its own state machine, ``EVENTS`` and ``MOVES``.
    """

    EVENTS: ClassVar[Mapping[LegState, EventTypes]]
    MOVES: ClassVar[Mapping[LegState, frozenset[LegState]]]

    id: str
    state: LegState
    ring_deadline: float | None = None
    """When the leg rings out, set at the dial; the timer runs only while it dials or rings."""
    early_media: bool = False
    """The leg has sent early media (183 with SDP): noted once, when it starts."""


@dataclass(eq=False, slots=True, kw_only=True)
class _Leg(_Dialed):
    """A buyer leg as the session tracks it."""

    EVENTS = LEG_EVENTS
    MOVES = LEG_MOVES

    offer: Offer
    index: int
    reservation_id: str
    gate: AcceptGate | None = None
    abandoned: bool = False
    """The hunt stopped while caps were being reserved: release them, do not dial."""

    @property
    def active(self) -> bool:
        return self.state is not LegState.ENDED and not self.abandoned


@dataclass(eq=False, slots=True)
class _Overflow(_Dialed):
    """The leg to the campaign's overflow line, dialed when the fallback forwards the caller."""

    EVENTS = OVERFLOW_EVENTS
    MOVES = OVERFLOW_MOVES


class CallSession:
    """The whispered, gated, cascading transfer of one inbound call (call-flow.md 1-20).

    A driver runs one session per call and carries out each command in order::

        session = CallSession(call_id, settings)
        pending = session.handle(CallArrived(attributes), now)
        while pending:
            command = pending.pop(0)
            match command:
                case RequestRouting(attributes):
                    result = RoutingResult.from_decision(decide(...))
                    pending += session.handle(RoutingDecided(result), now)
                case ReserveCaps(reservation):
                    refused = ledger.reserve(reservation)
                    event = CapsReserved(reservation.reservation_id, refused)
                    pending += session.handle(event, now)
                case Persist(entry):
                    store.append(call_id, entry)
                case DialLeg() | Bridge() | ...:
                    telephony.execute(command)

    Telephony reports come back as events (``LegAnswered``, ``DigitReceived``...),
    and ``handle_timer(now)`` is called once ``get_timer()`` is due.
    """

    def __init__(self, call_id: str, settings: FlowSettings) -> None:
        self.call_id = call_id
        self.settings = settings
        self.state = CallState.NEW
        self.record = CallRecord(call_id)
        self._out = Outbox(self.record)
        self._attributes: CallAttributes | None = None
        self._ivr: IvrRunner | None = None
        self._hunt = Hunt((), 0, 0)
        self._legs: dict[str, _Leg] = {}
        self._reservations: dict[str, _Leg] = {}
        self._routing_pending = False
        self._ringback = False
        self._hunt_deadline: float | None = None
        self._bridged: _Leg | None = None
        self._conversion_deadline: float | None = None
        self._payout_deadline: float | None = None
        self._paid = False
        self._recording = False
        self._recoveries = 0
        self._outcome: Outcome = "caller_hangup"
        self._fallback_play_id: int | None = None
        self._voicemail_deadline: float | None = None
        self._overflow: _Overflow | None = None

    # -- driver API -----------------------------------------------------------------

    @property
    def timeline(self) -> tuple[Entry, ...]:
        """Every timeline entry so far."""
        return tuple(self.record.timeline)

    @property
    def finished(self) -> bool:
        """Whether the call ended and no cap reservation is still awaited."""
        return self.state is CallState.ENDED and not any(
            leg.state is LegState.RESERVING for leg in self._legs.values()
        )

    def handle(self, event: Event, now: float) -> list[Command]:
        """Process ``event`` at ``now``; an illegal one raises ``IllegalTransition``, unchanged."""
        self._check(event)
        match event:
            case CallArrived():
                self._arrived(event.attributes, now)
            case CallRefused():
                self._refused(event, now)
            case RoutingDecided():
                self._routing_pending = False
                if self.state is CallState.ROUTING:
                    self._routed(event, now)
            case CapsReserved():
                self._reserved(self._reservations[event.reservation_id], event, now)
            case _ if event.leg == CALLER:
                self._caller_event(event, now)
            case _:
                leg = self._dialed(event.leg)
                assert leg is not None
                if leg.state is not LegState.ENDED:
                    self._leg_event(leg, event, now)
        return self._out.drain()

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or ``None``."""
        earliest: float | None = None
        for deadline, _, _ in self._timers():
            if earliest is None or deadline < earliest:
                earliest = deadline
        return earliest

    def handle_timer(self, now: float) -> list[Command]:
        """Fire every timer due at ``now``, earliest first."""
        while due := [timer for timer in self._timers() if timer[0] <= now]:
            _, fire, leg = min(due, key=lambda timer: timer[0])
            if leg is None:
                fire(now)
            else:
                fire(leg, now)
        return self._out.drain()

    # -- legality ---------------------------------------------------------------------

    def _check(self, event: Event) -> None:
        check_event("call", CALL_EVENTS, self.state, event)
        name = type(event).__name__
        if isinstance(event, RoutingDecided):
            if not self._routing_pending:
                raise IllegalTransition("call", self.state, f"{name} without a request")
        elif isinstance(event, CapsReserved):
            leg = self._reservations.get(event.reservation_id)
            if leg is None:
                raise IllegalTransition("call", self.state, f"{name} for unknown reservation")
            check_event(f"leg {leg.id}", LEG_EVENTS, leg.state, event)
        elif isinstance(event, _ARRIVALS):
            return
        elif event.leg == CALLER:
            if type(event) not in CALLER_EVENTS:
                raise IllegalTransition(f"leg {CALLER}", self.state, name)
        elif (dialed := self._dialed(event.leg)) is None:
            raise IllegalTransition("call", self.state, f"{name} for unknown leg {event.leg}")
        else:
            check_event(f"leg {dialed.id}", dialed.EVENTS, dialed.state, event)

    def _move(self, to: CallState) -> None:
        check_move("call", CALL_MOVES, self.state, to)
        self.state = to

    def _move_leg(self, leg: _Dialed, to: LegState) -> None:
        check_move(f"leg {leg.id}", leg.MOVES, leg.state, to)
        leg.state = to

    def _dialed(self, leg_id: str) -> _Leg | _Overflow | None:
        """The buyer leg or overflow line named ``leg_id``, if it was dialed."""
        return self._overflow if leg_id == OVERFLOW else self._legs.get(leg_id)

    def _dialed_legs(self) -> Iterator[_Leg | _Overflow]:
        """Every leg dialed so far: the buyer legs in order, then the overflow line."""
        yield from self._legs.values()
        if self._overflow is not None:
            yield self._overflow

    # -- arrival, IVR, routing -------------------------------------------------------------

    def _arrived(self, attributes: CallAttributes, now: float) -> None:
        self._note_arrival(attributes, now)
        ivr = self.settings.ivr
        if ivr is None:
            self._move(CallState.ROUTING)
            self._request_routing(now)
            return
        self._move(CallState.IVR)
        # call-flow 3: the IVR needs audio to reach the caller, so it is answered now.
        self._answer_caller(now)
        variables = self._spoken(call_variables(self.settings, attributes))
        self._ivr = IvrRunner(ivr, variables, self._out)
        self._ivr.start(now)

    def _note_arrival(self, attributes: CallAttributes, now: float) -> None:
        self._attributes = attributes
        self._out.note(
            now,
            "arrived",
            CALLER,
            dialed=attributes.dialed,
            caller=attributes.caller or "anonymous",
            campaign=self.settings.campaign_id,
        )

    def _refused(self, event: CallRefused, now: float) -> None:
        self._note_arrival(event.attributes, now)
        self._outcome = "refused"
        status = {"status": str(event.status)} if event.status is not None else {}
        self._end_caller(now, "rejected", "system", **status)
        self._end(now)

    def _after_ivr(self, now: float) -> None:
        assert self._ivr is not None
        assert self._attributes is not None
        result = self._ivr.result
        if result is None:
            return
        if result.action == "route":
            # The IVR's answers and branch tags are in the record (its "tag" entries).
            tags = {**self._attributes.tags, **self.record.tags}
            self._attributes = replace(self._attributes, tags=tags)
            self._move(CallState.ROUTING)
            self._request_routing(now)
            return
        self._outcome = "ivr_hangup" if result.action == "hangup" else "refused"
        self._out.send(HangupLeg(CALLER, f"ivr {result.action}"))
        self._end_caller(now, "hangup", "system")
        self._end(now)

    def _request_routing(self, now: float) -> None:
        assert self._attributes is not None
        # call-flow 1 and 3: ringback at once, and without a gap until the bridge (2).
        self._start_ringback(now)
        self._routing_pending = True
        self._out.send(RequestRouting(self._attributes))

    def _routed(self, event: RoutingDecided, now: float) -> None:
        result = event.result
        explanation = {EXPLAIN_PREFIX + key: value for key, value in result.explanation.items()}
        refused = {"refused": result.refused_reason} if result.refused_reason else {}
        self._out.note(
            now, "routing", candidates=str(len(result.candidates)), **refused, **explanation
        )
        settings = self.settings
        self._hunt = Hunt(result.candidates, settings.max_candidates, settings.retries_on_busy)
        if not result.candidates:
            if result.refused_reason:
                self._outcome = "refused"
            self._fallback(now, result.refused_reason or "no candidates")
            return
        self._move(CallState.HUNTING)
        # call-flow 12: the whole hunt is bounded.
        self._hunt_deadline = now + settings.hunt_timeout_seconds
        self._advance(now)

    # -- the hunt ---------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        """call-flow 11: after a failure or decline, go on to the next candidates."""
        if self.state is not CallState.HUNTING:
            return
        while not any(leg.active for leg in self._legs.values()):
            group = self._hunt.next_group()
            if not group:
                self._fallback(now, "no buyer accepted")
                return
            for index, offer in group:
                self._reserve(index, offer, now)

    def _reserve(self, index: int, offer: Offer, now: float) -> None:
        leg_id = f"B{len(self._legs) + 1}"
        leg = _Leg(
            leg_id,
            LegState.RESERVING,
            offer=offer,
            index=index,
            reservation_id=f"{self.call_id}/{leg_id}",
        )
        self._legs[leg_id] = leg
        self._reservations[leg.reservation_id] = leg
        reservation = Reservation(
            leg.reservation_id, offer.charges, offer.concurrency, datetime.fromtimestamp(now, UTC)
        )
        self._out.send(ReserveCaps(reservation))

    def _reserved(self, leg: _Leg, event: CapsReserved, now: float) -> None:
        offer = leg.offer
        if event.refused is not None:
            # A refused reservation holds nothing: the candidate is skipped with its reason.
            self._move_leg(leg, LegState.ENDED)
            self._out.note(now, "skipped", buyer=offer.buyer_id, reason=event.refused)
            if not leg.abandoned:
                self._advance(now)
            return
        if leg.abandoned:
            self._move_leg(leg, LegState.ENDED)
            self._out.send(FinishCaps(leg.reservation_id))
            return
        assert self._attributes is not None
        self._move_leg(leg, LegState.DIALING)
        # call-flow 5: the ring timeout runs from the dial.
        leg.ring_deadline = now + offer.ring_timeout_seconds
        self._out.send(
            DialLeg(
                leg.id,
                offer.destination,
                offer.trunk,
                offer.caller_id or self._attributes.caller,
                offer.ring_timeout_seconds,
                offer.buyer_id,
                offer.target_id,
            )
        )
        target = {"target": offer.target_id} if offer.target_id else {}
        self._out.note(
            now,
            "dial",
            leg.id,
            buyer=offer.buyer_id,
            destination=offer.destination,
            reservation=leg.reservation_id,
            **target,
        )

    def _leg_event(self, leg: _Leg | _Overflow, event: LegEvent, now: float) -> None:
        """A report about a leg we dialed: buyer legs and the overflow line ring and fail alike."""
        match event:
            case LegRinging():
                self._ringing(leg, event, now)
            case LegFailed():
                status = {"status": str(event.status)} if event.status is not None else {}
                self._end_leg(leg, now, event.reason, None, **status)
                self._unanswered(leg, event.reason, now)
            case _ if isinstance(leg, _Leg):
                self._buyer_event(leg, event, now)
            case _:
                self._overflow_event(leg, event, now)

    def _ringing(self, leg: _Dialed, event: LegRinging, now: float) -> None:
        """Note the first ringing response, and early media when it starts after a plain 180.

        A 180 then a 183 with SDP is one ringing entry saying ``no`` and one
        ``early_media`` entry; repeated 180s and 183s add nothing.
        """
        if leg.state is LegState.DIALING:
            self._move_leg(leg, LegState.RINGING)
        if self.record.legs[leg.id].ringing_at is None:
            self._out.note(now, "ringing", leg.id, early_media="yes" if event.early_media else "no")
        elif event.early_media and not leg.early_media:
            self._out.note(now, "early_media", leg.id)
        leg.early_media = leg.early_media or event.early_media

    def _unanswered(self, leg: _Dialed, reason: FailureReason, now: float) -> None:
        """A dialed leg ended unanswered: the hunt goes on, or the overflow's caller is let go."""
        if not isinstance(leg, _Leg):
            self._turn_away(now, f"overflow {reason}")
            return
        # call-flow 12: a busy or failed candidate may be retried.
        if reason in RETRIABLE and self._hunt.retry(leg.index):
            self._reserve(leg.index, leg.offer, now)
        self._advance(now)

    def _buyer_event(self, leg: _Leg, event: LegEvent, now: float) -> None:
        match event:
            case LegAnswered():
                self._answered(leg, now)
            case DigitReceived() if leg.gate is not None and leg.state is LegState.WHISPER:
                leg.gate.key(event.digit, now)
                self._after_gate(leg, now)
            case PlaybackFinished() if leg.gate is not None and leg.state is LegState.WHISPER:
                leg.gate.playback_finished(event.play_id, now)
                self._after_gate(leg, now)
            case MachineDetected() if leg.gate is not None and leg.state is LegState.WHISPER:
                leg.gate.machine()
                self._after_gate(leg, now)
            case LegHungUp() if leg.state is LegState.BRIDGED:
                self._bridge_ended(now, "buyer")
            case LegHungUp() if leg.gate is not None:
                leg.gate.hangup()
                self._after_gate(leg, now)
            case _:
                # Keys, playback ends and machine verdicts on a bridged leg change nothing.
                pass

    def _answered(self, leg: _Leg, now: float) -> None:
        assert self._attributes is not None
        # call-flow 7: a real answer stops the ring timer and starts the whisper.
        self._move_leg(leg, LegState.WHISPER)
        self._out.note(now, "answer", leg.id)
        self._out.send(CommitCaps(leg.reservation_id, ("calls",)))
        variables = self._spoken(call_variables(self.settings, self._attributes, leg.offer))
        leg.gate = AcceptGate(leg.id, leg.offer.whisper, variables, self._out)
        leg.gate.start(now)

    def _after_gate(self, leg: _Leg, now: float) -> None:
        gate = leg.gate
        assert gate is not None
        if gate.accepted:
            self._accept(leg, now)
        elif gate.declined is not None:
            # call-flow 9: each decline is recorded, the leg hung up, and the hunt goes on.
            self._out.note(now, "decline", leg.id, reason=gate.declined)
            if gate.declined == "buyer_hangup":
                self._end_leg(leg, now, "declined", "buyer")
            else:
                self._out.send(HangupLeg(leg.id, gate.declined))
                self._end_leg(leg, now, "declined", "system")
            self._advance(now)

    def _ring_timeout(self, leg: _Dialed, now: float) -> None:
        self._out.send(CancelLeg(leg.id))
        self._end_leg(leg, now, "no_answer", "system")
        self._unanswered(leg, "no_answer", now)

    def _hunt_expired(self, now: float) -> None:
        self._hunt_deadline = None
        self._stop_legs(now)
        self._fallback(now, f"hunt limit {self.settings.hunt_timeout_seconds:g} s")

    def _stop_legs(self, now: float, keep: _Leg | None = None) -> None:
        """Cancel every pending leg we dialed but ``keep`` (call-flow 4, 13, 15)."""
        for leg in self._dialed_legs():
            if leg is keep or leg.state is LegState.ENDED:
                continue
            if isinstance(leg, _Leg) and leg.state is LegState.RESERVING:
                leg.abandoned = True
                continue
            if leg.state is LegState.WHISPER:
                self._out.send(HangupLeg(leg.id, "canceled"))
            else:
                self._out.send(CancelLeg(leg.id))
            self._end_leg(leg, now, "canceled", "system")

    def _end_leg(
        self, leg: _Dialed, now: float, reason: LegEndReason, by: Party | None, **status: str
    ) -> None:
        """Record the end of a leg we dialed, with what it cost (call-flow 18)."""
        self._move_leg(leg, LegState.ENDED)
        costs = self.settings.costs
        answered_at = self.record.legs[leg.id].answered_at
        cost = leg_cost(answered_at, now, costs.outbound_per_minute, costs.increment_seconds)
        party = {"by": by} if by else {}
        self._out.note(now, "leg_end", leg.id, reason=reason, cost=str(cost), **party, **status)
        if isinstance(leg, _Leg):
            self._out.send(FinishCaps(leg.reservation_id))

    # -- bridge and money -------------------------------------------------------------------

    def _accept(self, leg: _Leg, now: float) -> None:
        self._out.note(now, "accept", leg.id)
        self._out.send(CommitCaps(leg.reservation_id, ("connections",)))
        self._move_leg(leg, LegState.BRIDGED)
        self._move(CallState.BRIDGED)
        self._bridged = leg
        self._hunt_deadline = None
        # call-flow 15: answer the caller if needed, connect both ways, cancel the others.
        self._connect(leg.id, now)
        self._stop_legs(now, keep=leg)
        if self.settings.recording:
            # call-flow 19: recording starts at the bridge, caller left, buyer right.
            self._start_recording(now, leg.id)
        # call-flow 17: billable time starts at accept; duplicates never convert.
        if not leg.offer.no_convert:
            if self.record.converted_leg is None:
                self._conversion_deadline = now + leg.offer.buffer_seconds
            if self.settings.payout is not None and not self._paid:
                self._payout_deadline = now + self.settings.payout.buffer_seconds
        self._settle(now)

    def _settle(self, now: float) -> None:
        """Convert and pay out once the bridged time reaches each buffer (call-flow 17)."""
        leg = self._bridged
        assert leg is not None
        bridged = elapsed(self._accepted_at(leg), now)
        if self._conversion_deadline is not None and bridged >= leg.offer.buffer_seconds:
            self._convert(now)
        payout = self.settings.payout
        if self._payout_deadline is not None and payout and bridged >= payout.buffer_seconds:
            self._pay(now)

    def _convert(self, now: float) -> None:
        leg = self._bridged
        assert leg is not None
        self._conversion_deadline = None
        revenue = leg.offer.revenue
        self._out.send(CommitCaps(leg.reservation_id, ("conversions", "revenue"), revenue))
        self._out.note(now, "conversion", leg.id, buyer=leg.offer.buyer_id, revenue=str(revenue))

    def _accepted_at(self, leg: _Leg) -> float:
        """When ``leg`` accepted: billable time starts there (call-flow 17)."""
        accepted_at = self.record.legs[leg.id].accepted_at
        assert accepted_at is not None
        return accepted_at

    def _pay(self, now: float) -> None:
        assert self.settings.payout is not None
        self._payout_deadline = None
        self._paid = True
        self._out.note(now, "payout", amount=str(self.settings.payout.amount))

    def _bridge_ended(self, now: float, by: Party) -> None:
        leg = self._bridged
        assert leg is not None
        self._settle(now)
        self._conversion_deadline = self._payout_deadline = None
        self._bridged = None
        self._stop_recording(now, leg.id)
        if by == "caller":
            self._out.send(HangupLeg(leg.id, "caller hung up"))
            self._end_leg(leg, now, "hangup", "system")
            self._end(now)
            return
        self._end_leg(leg, now, "hangup", "buyer")
        short = elapsed(self._accepted_at(leg), now) < leg.offer.buffer_seconds
        recoverable = self._recoveries < self.settings.revenue_recovery_attempts
        if short and recoverable and self._hunt.has_more:
            # call-flow 20: re-offer the caller, who hears ringback again meanwhile.
            self._recoveries += 1
            self._out.note(now, "recovery", leg.id, attempt=str(self._recoveries))
            self._move(CallState.HUNTING)
            self._start_ringback(now)
            self._hunt_deadline = now + self.settings.hunt_timeout_seconds
            self._advance(now)
            return
        self._out.send(HangupLeg(CALLER, "buyer hung up"))
        self._end_caller(now, "hangup", "system")
        self._end(now)

    # -- caller -------------------------------------------------------------------------

    def _caller_event(self, event: LegEvent, now: float) -> None:
        match event:
            case DigitReceived() if self.state is CallState.IVR:
                assert self._ivr is not None
                self._ivr.key(event.digit, now)
                self._after_ivr(now)
            case PlaybackFinished() if self.state is CallState.IVR:
                assert self._ivr is not None
                self._ivr.playback_finished(event.play_id, now)
                self._after_ivr(now)
            case PlaybackFinished() if self.state is CallState.FALLBACK:
                if event.play_id == self._fallback_play_id:
                    self._fallback_played(now)
            case LegHungUp() if self.state is not CallState.ENDED:
                self._caller_hung_up(now)
            case _:
                # Keys while waiting, stale playback ends, reports after the end.
                pass

    def _caller_hung_up(self, now: float) -> None:
        self._end_caller(now, "hangup", "caller")
        if self.state is CallState.BRIDGED:
            self._bridge_ended(now, "caller")
            return
        if self.state is CallState.FORWARDED:
            self._forward_ended(now, "caller")
            return
        self._stop_recording(now, CALLER)
        # call-flow 4: before the bridge, the caller's hang-up cancels every leg we dialed at once.
        self._stop_legs(now)
        self._end(now)

    def _spoken(self, variables: dict[str, str]) -> dict[str, str]:
        """Variables as a voice should say them, when the driver gave a way to (call-flow 7)."""
        speak = self.settings.speak
        return dict(speak(variables)) if speak is not None else variables

    def _answer_caller(self, now: float) -> None:
        if self._caller_answered_at is None:
            self._out.send(AnswerCaller())
            self._out.note(now, "caller_answered", CALLER)

    def _start_ringback(self, now: float) -> None:
        self._ringback = True
        self._out.send(StartRingback(self.settings.hold_music))
        self._out.note(now, "ringback", CALLER)

    def _stop_ringback(self) -> None:
        if self._ringback:
            self._ringback = False
            self._out.send(StopRingback())

    @property
    def _caller_answered_at(self) -> float | None:
        return self.record.legs[CALLER].answered_at

    def _connect(self, leg: str, now: float) -> None:
        """Answer the caller if not yet answered, and bridge it to ``leg`` (call-flow 15)."""
        self._stop_ringback()
        self._answer_caller(now)
        self._out.send(Bridge(CALLER, leg))
        self._out.note(now, "bridge", leg)

    def _start_recording(self, now: float, leg: str) -> None:
        """Record the caller, on the left, and ``leg`` on the right unless it is the caller."""
        self._recording = True
        self._out.send(StartRecording((CALLER,) if leg == CALLER else (CALLER, leg)))
        self._out.note(now, "recording_start", leg)

    def _stop_recording(self, now: float, leg: str) -> None:
        """Stop the recording in progress, if any; ``leg`` is the entry's (buyer or caller)."""
        if self._recording:
            self._recording = False
            self._out.send(StopRecording())
            self._out.note(now, "recording_stop", leg)

    def _end_caller(self, now: float, reason: LegEndReason, by: Party, **status: str) -> None:
        costs = self.settings.costs
        answered = self._caller_answered_at
        cost = leg_cost(answered, now, costs.inbound_per_minute, costs.increment_seconds)
        self._out.note(now, "leg_end", CALLER, reason=reason, by=by, cost=str(cost), **status)

    # -- fallback and end -----------------------------------------------------------------

    def _fallback(self, now: float, reason: str) -> None:
        """call-flow 14: nobody accepted; the campaign's fallback decides."""
        fallback = self.settings.fallback
        self._move(CallState.FALLBACK)
        if self._outcome == "caller_hangup":
            self._outcome = "no_buyer"
        self._out.note(now, "fallback", action=fallback.action, reason=reason)
        if fallback.action == "forward":
            # call-flow 2: the caller keeps hearing ringback while the overflow line rings.
            self._forward(now)
            return
        self._stop_ringback()
        if fallback.action == "reject":
            self._turn_away(now, reason)
        else:
            self._answer_caller(now)
            if fallback.message is not None:
                self._fallback_play_id = self._out.play_id()
                voice = self.settings.ivr.voice if self.settings.ivr else TtsVoice()
                self._out.send(PlayText(CALLER, self._fallback_play_id, fallback.message, voice))
            else:
                self._fallback_played(now)

    def _turn_away(self, now: float, reason: str) -> None:
        """End the call: the fallback's SIP code if the caller is unanswered, else our BYE."""
        self._stop_ringback()
        if self._caller_answered_at is None:
            self._out.send(RejectCaller(self.settings.fallback.sip_code, reason))
            self._end_caller(now, "rejected", "system")
        else:
            self._out.send(HangupLeg(CALLER, reason))
            self._end_caller(now, "hangup", "system")
        self._end(now)

    # -- the overflow line (fallback forward) ---------------------------------------------------

    def _forward(self, now: float) -> None:
        """call-flow 14: dial the overflow line, with no whisper nor accept gate."""
        fallback = self.settings.fallback
        assert fallback.forward_to is not None
        assert self._attributes is not None
        timeout = fallback.ring_timeout_seconds
        self._overflow = _Overflow(OVERFLOW, LegState.DIALING, ring_deadline=now + timeout)
        self._out.send(
            ForwardCaller(
                OVERFLOW, fallback.forward_to, fallback.trunk, self._attributes.caller, timeout
            )
        )
        trunk = {"trunk": fallback.trunk} if fallback.trunk else {}
        self._out.note(now, "dial", OVERFLOW, destination=fallback.forward_to, **trunk)

    def _overflow_event(self, leg: _Overflow, event: LegEvent, now: float) -> None:
        match event:
            case LegAnswered():
                self._overflow_answered(leg, now)
            case LegHungUp():
                self._forward_ended(now, "overflow")
            case _:
                # Keys the overflow line presses go nowhere: it has no accept gate.
                pass

    def _overflow_answered(self, leg: _Overflow, now: float) -> None:
        """The overflow line's answer is its accept: answer the caller and bridge at once."""
        self._move_leg(leg, LegState.BRIDGED)
        self._move(CallState.FORWARDED)
        self._out.note(now, "answer", OVERFLOW)
        self._connect(OVERFLOW, now)
        if self.settings.recording:
            # call-flow 19: a bridged call is recorded, caller left, overflow line right.
            self._start_recording(now, OVERFLOW)

    def _forward_ended(self, now: float, by: Party) -> None:
        """The caller or the overflow line hung up the forwarded call: end the other side."""
        leg = self._overflow
        assert leg is not None
        self._stop_recording(now, OVERFLOW)
        if by == "caller":
            self._out.send(HangupLeg(OVERFLOW, "caller hung up"))
            self._end_leg(leg, now, "hangup", "system")
        else:
            self._end_leg(leg, now, "hangup", "overflow")
            self._out.send(HangupLeg(CALLER, "overflow hung up"))
            self._end_caller(now, "hangup", "system")
        self._end(now)

    def _fallback_played(self, now: float) -> None:
        fallback = self.settings.fallback
        self._fallback_play_id = None
        if fallback.action == "voicemail" and not self._recording:
            self._start_recording(now, CALLER)
            self._voicemail_deadline = now + fallback.voicemail_max_seconds
            return
        self._out.send(HangupLeg(CALLER, fallback.action))
        self._end_caller(now, "hangup", "system")
        self._end(now)

    def _voicemail_done(self, now: float) -> None:
        self._voicemail_deadline = None
        self._stop_recording(now, CALLER)
        self._out.send(HangupLeg(CALLER, "voicemail"))
        self._end_caller(now, "hangup", "system")
        self._end(now)

    def _end(self, now: float) -> None:
        record = self.record
        if record.converted_leg is not None:
            outcome: Outcome = "converted"
        elif record.bridged_legs:
            outcome = "connected"
        else:
            outcome = self._outcome
        self._move(CallState.ENDED)
        self._out.note(
            now,
            "ended",
            outcome=outcome,
            revenue=str(record.revenue),
            payout=str(record.payout),
            cost=str(record.cost),
        )

    # -- timers -------------------------------------------------------------------------

    def _timers(self) -> Iterator[Timer]:
        state = self.state
        if state is CallState.IVR and self._ivr and self._ivr.deadline is not None:
            yield self._ivr.deadline, self._ivr_timer, None
        if state is CallState.HUNTING and self._hunt_deadline is not None:
            yield self._hunt_deadline, self._hunt_expired, None
        for leg in self._dialed_legs():
            if leg.ring_deadline is not None and leg.state in _RINGING:
                yield leg.ring_deadline, self._ring_timeout, leg
            elif (
                isinstance(leg, _Leg)
                and leg.state is LegState.WHISPER
                and leg.gate is not None
                and leg.gate.deadline is not None
            ):
                yield leg.gate.deadline, self._gate_timer, leg
        if state is CallState.BRIDGED:
            if self._conversion_deadline is not None:
                yield self._conversion_deadline, self._convert, None
            if self._payout_deadline is not None:
                yield self._payout_deadline, self._pay, None
        if state is CallState.FALLBACK and self._voicemail_deadline is not None:
            yield self._voicemail_deadline, self._voicemail_done, None

    def _ivr_timer(self, now: float) -> None:
        assert self._ivr is not None
        self._ivr.timer(now)
        self._after_ivr(now)

    def _gate_timer(self, leg: _Leg, now: float) -> None:
        assert leg.gate is not None
        leg.gate.timer(now)
        self._after_gate(leg, now)
