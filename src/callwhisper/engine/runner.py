"""One call on the built-in SIP engine: a :class:`~callwhisper.flow.CallSession` and its legs.

:class:`CallRunner` is the adapter of call-flow.md onto SIP and RTP. It
owns the session, the one timer handle armed at ``session.get_timer()``, the
SIP state of the caller and buyer legs and their media legs. Everything
that happens to the call (SIP events, RTP keys and playback ends, timers) is
handled when it happens, one at a time, so the session is never re-entered;
the commands it returns are carried out in order (the loop in
:class:`~callwhisper.flow.CallSession`'s docstring). Something that happens
while an earlier input is in hand waits its turn.

Only routing and cap reservations (whose answers the session needs), hold
music, and the DNS lookups and connections of next hops may have to wait:
each is run at once up to its first real wait (:func:`eagerly`), so that
routing from memory to a buyer at an address dials the buyer before the call
ever yields to the event loop; when one does wait, the call's later inputs
wait for it. Store writes (timeline entries, cap commits) are handed to the
backend at once, in order, and only their outcomes are watched, so that
signalling never waits for the database. A call has no task of its own:
its future (:attr:`CallRunner.done`) is done once it is over and written.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any, Final, Generic, Protocol, TypeVar, cast

from callwhisper.audio import Audio, Codec
from callwhisper.domain import CallAttributes
from callwhisper.domain.buyer import Trunk, dialing_trunk
from callwhisper.domain.state import Reservation
from callwhisper.domain.whisper import DtmfKey
from callwhisper.engine.backend import CallBackend, Prompts
from callwhisper.engine.legs import (
    BuyerLeg,
    CallerLeg,
    Transport,
    codec_of,
    is_ip_literal,
    is_sips,
    new_session_id,
    uri_address,
    uri_transport,
)
from callwhisper.engine.media import Bridge as MediaBridge
from callwhisper.engine.media import DigitReceived as MediaDigit
from callwhisper.engine.media import LegRecording, MediaEngine, MediaEvent, MediaLeg
from callwhisper.engine.media import PlaybackFinished as MediaPlaybackFinished
from callwhisper.engine.playback import PCMU
from callwhisper.engine.transaction_user import SDP
from callwhisper.errors import (
    IllegalTransition,
    LocalProtocolError,
    RemoteProtocolError,
    SdpError,
    SipParseError,
)
from callwhisper.flow import (
    AnswerCaller,
    Bridge,
    CallArrived,
    CallSession,
    CancelLeg,
    CapsReserved,
    CollectDigits,
    Command,
    CommitCaps,
    DialLeg,
    DigitReceived,
    Entry,
    Event,
    FailureReason,
    FinishCaps,
    FlowSettings,
    ForwardCaller,
    HangupLeg,
    LegAnswered,
    LegFailed,
    LegHungUp,
    LegRinging,
    Persist,
    PlayAudio,
    PlaybackFinished,
    PlayText,
    RejectCaller,
    RequestRouting,
    ReserveCaps,
    RoutingDecided,
    RoutingResult,
    StartRecording,
    StartRingback,
    StopPlayback,
    StopRecording,
    StopRingback,
    reason_for_sip_status,
)
from callwhisper.media.g711 import alaw_encode, ulaw_encode
from callwhisper.media.sdp import (
    SessionDescription,
    create_answer,
    create_offer,
    negotiate_answer,
)
from callwhisper.media.tones import ToneSource, ToneSpec
from callwhisper.sip.auth import DigestClient
from callwhisper.sip.dialog import (
    Dialog,
    DialogId,
    DialogState,
    learned_route_set,
    loose_route,
    route_uri,
)
from callwhisper.sip.headers import NameAddr, Via
from callwhisper.sip.message import SipRequest, SipResponse, make_request, new_branch
from callwhisper.sip.transaction import (
    Address,
    InviteCancelled,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
    TransactionFailed,
    TransactionKey,
)

__all__ = ["CALLER", "CallRunner", "RunnerSettings", "SipSide"]

log = logging.getLogger(__name__)

CALLER: Final = "A"
MAX_AUTH_ATTEMPTS: Final = 2
"""Challenges answered per buyer INVITE before a 401/407 counts as a rejection."""


class SipSide(Protocol):
    """What a runner needs from the SIP user agent (:class:`~callwhisper.engine.b2bua.B2bua`)."""

    @property
    def local(self) -> Address:
        """Our SIP address, for Via and Contact."""
        ...

    @property
    def media_address(self) -> str:
        """The address in our SDP."""
        ...

    @property
    def tls_port(self) -> int | None:
        """The port of our TLS listener, None without one."""
        ...

    def contact_at(self, port: int, transport: Transport = "udp", *, sips: bool = False) -> str:
        """Our Contact on a leg over ``transport`` reached at ``port`` (SIPS: RFC 3261 8.1.1.8)."""
        ...

    def respond(
        self,
        request: SipRequest,
        status: int,
        *,
        to_tag: str | None = None,
        body: bytes = b"",
        extra: tuple[tuple[str, str], ...] = (),
    ) -> SipResponse:
        """Send a response through the request's server transaction and return it."""
        ...

    def send_request(
        self,
        runner: CallRunner,
        leg: str,
        request: SipRequest,
        destination: Address,
        *,
        reliable: bool = False,
    ) -> TransactionKey:
        """Start a client transaction whose responses come back to ``runner`` for ``leg``.

        ``reliable`` says the request goes over TCP or TLS (no retransmissions).
        """
        ...

    async def connect(
        self, destination: Address, *, tls: bool = False, server_name: str | None = None
    ) -> Address:
        """Open (or reuse) a TCP or TLS connection to ``destination``; our address on it.

        Raises OSError, also when a TLS peer's certificate fails for ``server_name``.
        """
        ...

    def use_stream(self, transport: Transport, destination: Address, uri: str) -> None:
        """Send to ``destination`` over TCP or TLS from now on, as ``uri`` names it.

        Over TLS the certificate must name the host of ``uri`` (RFC 5922 7.2);
        over UDP nothing changes.
        """

    def connected(self, destination: Address) -> bool:
        """Whether a TCP or TLS connection to ``destination`` is open."""
        ...

    def send_ack(self, request: SipRequest, destination: Address) -> None:
        """Send an ACK for a 2xx, outside any transaction."""

    def cancel(self, key: TransactionKey) -> None:
        """CANCEL a pending INVITE."""

    def add_dialog(self, dialog_id: DialogId, runner: CallRunner, leg: str) -> None:
        """Route the requests of this dialog to ``runner`` for ``leg``."""

    def forget(self, runner: CallRunner) -> None:
        """The call is over: drop every route to ``runner``."""


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    """Engine settings every call runs with."""

    recordings_dir: Path
    """Where bridged calls are recorded, one ``<call id>.wav`` each."""
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    """Codecs offered to buyers, in order of preference."""
    user_agent: str = "callwhisper"
    """The User-Agent header of our requests to buyers (RFC 3261 20.41)."""
    from_domain: str | None = None
    """Host part of our From header towards buyers; our SIP address when unset."""
    cancel_linger_seconds: float = 4.0
    """How long an ended call still waits for final responses to its CANCELs."""


@dataclass(frozen=True, slots=True)
class SipInput:
    """A transaction event about one leg of this call."""

    leg: str
    event: TransactionEvent


@dataclass(frozen=True, slots=True)
class MediaInput:
    """An RTP event (key, playback end) of one leg of this call."""

    leg: str
    event: MediaEvent


@dataclass(frozen=True, slots=True)
class TimerInput:
    """The session's timer is due."""


_TIMER: Final = TimerInput()


@dataclass(frozen=True, slots=True)
class _Arrival:
    """The call begins: its first input (see :meth:`CallRunner.start`)."""


_ARRIVAL: Final = _Arrival()

Input = SipInput | MediaInput | TimerInput | Event


@dataclass(eq=False, slots=True)
class _Play:
    """A prompt being rendered for a leg, then played."""

    leg: str
    play_id: int
    task: asyncio.Future[None] | None = None
    """The rest of the rendering, when it had to wait."""


@dataclass(slots=True)
class _Media:
    """Media playbacks in progress: engine playback id -> (leg, flow play id)."""

    plays: dict[int, tuple[str, int]] = field(default_factory=dict)
    pending: dict[str, _Play] = field(default_factory=dict)


class CallRunner:
    """Runs one inbound call: its session, legs, timer and store writes."""

    def __init__(
        self,
        call_id: str,
        settings: FlowSettings,
        attributes: CallAttributes,
        caller: CallerLeg,
        *,
        sip: SipSide,
        media: MediaEngine,
        backend: CallBackend,
        prompts: Prompts,
        trunks: dict[str, Trunk],
        config: RunnerSettings,
        wall: Callable[[], float],
    ) -> None:
        """Prepare the call; :meth:`start` begins it and :attr:`done` tells when it is over."""
        self.call_id = call_id
        self.session = CallSession(call_id, settings)
        self.attributes = attributes
        self.caller = caller
        self.buyers: dict[str, BuyerLeg] = {}
        self.sip = sip
        self.media = media
        self.backend = backend
        self.prompts = prompts
        self.trunks = trunks
        self.config = config
        self._wall = wall
        self._inbox: deque[tuple[float, Input | _Arrival]] = deque()
        """Inputs waiting for their turn, each stamped with the wall clock when it came."""
        self._commands: deque[Command] = deque()
        """The commands of the input in hand, still to carry out."""
        self._busy = False
        """Inputs are being handled: one fed now waits its turn (the session is not re-entered)."""
        self._in_hand = False
        """An input was taken and its commands are not all carried out yet."""
        self._moved = False
        """The session handled something since its timer was last armed."""
        self._waiting: asyncio.Future[list[Command]] | None = None
        """The command in progress that had to wait (routing or a reservation in the
        database, a DNS lookup, a connection): nothing else is handled meanwhile."""
        self._done: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop
        """The running loop, set by :meth:`start`: nothing is handled before it."""
        self._ended = False
        self._outcome: str | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._unwritten: deque[asyncio.Future[None]] = deque()
        """Store writes handed over, in order, from the first not known to be done."""
        self._watched: asyncio.Future[None] | None = None
        """The first write not done, whose end is watched (see :meth:`_write`)."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._media = _Media()
        self._voicemail: LegRecording | None = None
        self._reservations: set[str] = set()
        self._hosts: dict[tuple[str, int], Address | None] = {}
        """Host names of next hops, resolved (None: they did not resolve)."""
        self._arrived_at = wall()

    # -- inputs -------------------------------------------------------------------------

    def feed(self, item: Input) -> None:
        """Handle something that happened to this call, stamped with the wall clock now.

        It is handled at once, with every command it leads to, unless an
        earlier input is still in hand: then it waits its turn. Once the call
        is over, nothing more is.
        """
        if self._ended:
            return
        self._inbox.append((self._wall(), item))
        self._drain()

    def media_handler(self, leg: str) -> Callable[[MediaEvent], None]:
        """The ``on_event`` callback of the media leg of ``leg``."""

        def handle(event: MediaEvent) -> None:
            self.feed(MediaInput(leg, event))

        return handle

    # -- the call's life ----------------------------------------------------------------

    def start(self) -> None:
        """Begin the call (once); :attr:`done` then tells when it is over.

        What needs no waiting is done before this returns: with routing and
        reservations answered from memory and a buyer at an address, that is
        as far as the buyer's INVITE, so no turn of the event loop stands
        between the caller's INVITE and it. Inputs are then handled as they
        are fed (see :meth:`feed`); the call needs no task of its own.
        """
        if self._done is not None:
            return
        # Kept: on Python 3.11 every asyncio.get_running_loop() is a getpid() system call.
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        self._done.add_done_callback(self._stopped)
        self._write(self.backend.call_started(self.call_id, self.attributes, self._arrived_at))
        # First in line: nothing fed before the call began may come before its arrival.
        self._inbox.appendleft((self._arrived_at, _ARRIVAL))
        self._drain()

    @property
    def done(self) -> asyncio.Future[None]:
        """Done once the call is over and its store writes are; made by :meth:`start`.

        Cancelling it (the server stopping) ends every leg of the call at
        once, without waiting for the writes: they were handed over, and the
        store commits what it was handed before it closes.
        """
        assert self._done is not None, "the call was not started"
        return self._done

    def _stopped(self, done: asyncio.Future[None]) -> None:
        if not done.cancelled():
            return
        if not self._ended:
            self._abort("server stopping")
            self._end(self._outcome or "interrupted")
        self.sip.forget(self)

    def _drain(self) -> None:
        """Handle the inputs in turn, each with all its commands, until one has to wait."""
        if self._busy or self._waiting is not None or self._done is None or self._ended:
            return
        self._busy = True
        try:
            while True:
                commands = self._commands
                while commands and self._waiting is None:
                    self._execute(commands.popleft())
                if self._waiting is not None:
                    return
                if self._in_hand:
                    self._in_hand = False
                    self._stepped()
                if self._ended or not self._inbox:
                    return
                at, item = self._inbox.popleft()
                self._in_hand = True
                self._process(at, item)
        except Exception:
            log.exception("call %s failed; ending it", self.call_id)
            self._abort("internal error")
            self._end(self._outcome or "interrupted")
        finally:
            self._busy = False

    def _process(self, at: float, item: Input | _Arrival) -> None:
        if self._linger is not None:
            # Over, waiting for the final responses of cancelled INVITEs (see _stepped).
            if isinstance(item, SipInput):
                self._then(self._route_to_learn(item), partial(self._late_sip_event, item, at))
            return
        match item:
            case TimerInput():
                # The loop's clock and the wall clock differ by jitter: a due timer is due.
                now = max(at, self._timer_deadline or at)
                self._timer_deadline = None
                self._moved = True
                self._commands.extend(self.session.handle_timer(now))
            case SipInput():
                self._then(self._route_to_learn(item), partial(self._sip_input, item, at))
            case MediaInput():
                reported = self._media_event(item.leg, item.event)
                if reported is not None:
                    self._commands.extend(self._answer(reported, at))
            case _Arrival():
                arrived = partial(self._answer, CallArrived(self.attributes), at)
                invite = self.caller.invite
                self._then(self._first_route(invite, self.caller.transport, uac=False), arrived)
            case _:
                self._commands.extend(self._answer(item, at))

    def _sip_input(self, item: SipInput, at: float) -> list[Command]:
        events = self._sip_event(item.leg, item.event, at)
        if not events:
            return []
        # Each event is a step of its own: the others come next, before any later input.
        self._inbox.extendleft((at, event) for event in reversed(events[1:]))
        return self._answer(events[0], at)

    def _late_sip_event(self, item: SipInput, at: float) -> list[Command]:
        """A SIP event after the call ended: answered, and nothing reported to the session."""
        self._sip_event(item.leg, item.event, at)
        return []

    def _stepped(self) -> None:
        """An input was handled with all its commands: re-arm the timer, or end the call."""
        if self._moved:
            # Only the session moves its timer: an input it never saw (a 100 Trying, an
            # ACK, the answer to our BYE) leaves it where it is.
            self._moved = False
            self._arm_timer()
        if not self.session.finished:
            return
        if self._outcome is None:
            self._outcome = self.session.record.outcome or "interrupted"
        if not any(leg.key is not None and not leg.final for leg in self.buyers.values()):
            self._end(self._outcome)
        elif self._linger is None:
            # A 200 may cross our CANCEL (RFC 3261 9.1): it must still be ACKed and the
            # call hung up, or the buyer's phone stays off the hook. Wait a little for it.
            self._linger = self._loop.call_later(
                self.config.cancel_linger_seconds, self._end, self._outcome
            )

    def _arm_timer(self) -> None:
        deadline = self.session.get_timer()
        if deadline == self._timer_deadline and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if deadline is not None:
            loop = self._loop
            delay = max(0.0, deadline - self._wall())
            self._timer = loop.call_at(loop.time() + delay, self.feed, _TIMER)

    # -- what may have to wait ----------------------------------------------------------

    def _await(self, work: Coroutine[Any, Any, list[Command]]) -> None:
        """Carry out a command that may have to wait: at once when it need not.

        Its answers join the commands in hand; when it does wait, nothing else
        is handled until it is done (:meth:`_resume`).
        """
        started = eagerly(work, self._loop)
        if started.done():
            self._commands.extend(started.result())
            return
        self._waiting = started
        started.add_done_callback(self._resume)

    def _resume(self, waited: asyncio.Future[list[Command]]) -> None:
        if waited is not self._waiting:
            return  # the call ended meanwhile
        self._waiting = None
        try:
            self._commands.extend(waited.result())
        except (Exception, asyncio.CancelledError):
            log.exception("call %s failed; ending it", self.call_id)
            self._abort("internal error")
            self._end(self._outcome or "interrupted")
            return
        self._drain()

    def _then(self, host: tuple[str, int] | None, then: Callable[[], list[Command]]) -> None:
        """``then``'s commands, once ``host`` (a route's host name, if any) is resolved."""
        if host is None:
            self._commands.extend(then())
        else:
            self._await(self._learn_then(host, then))

    async def _learn_then(
        self, host: tuple[str, int], then: Callable[[], list[Command]]
    ) -> list[Command]:
        try:
            await self._lookup(*host)
        except OSError as exc:
            log.warning("call %s: route host %s: %s", self.call_id, host[0], exc)
        return then()

    # -- commands -------------------------------------------------------------------------

    def _execute(self, command: Command) -> None:
        _CARRY_OUT[type(command)](self, command)

    def _persist(self, command: Persist) -> None:
        self._write(self.backend.persist(self.call_id, command.entry))

    def _commit_caps(self, command: CommitCaps) -> None:
        self._write(self.backend.commit(command.reservation_id, command.metrics, command.revenue))

    def _finish_caps(self, command: FinishCaps) -> None:
        self._reservations.discard(command.reservation_id)
        self._write(self.backend.finish(command.reservation_id))

    def _end_leg(self, command: CancelLeg | HangupLeg) -> None:
        if command.leg == CALLER:
            self._hang_up_caller()
        else:
            self._end_buyer(self.buyers[command.leg], canceled=isinstance(command, CancelLeg))

    def _play_text(self, command: PlayText) -> None:
        text, voice = command.text, command.voice
        self._play(command.leg, command.play_id, lambda: self.prompts.speech(text, voice))

    def _play_audio(self, command: PlayAudio) -> None:
        path = command.path
        self._play(command.leg, command.play_id, lambda: self.prompts.recording(path))

    async def _route(self, attributes: CallAttributes) -> list[Command]:
        try:
            decision = await self.backend.route(self.call_id, attributes, self._wall())
        except Exception:
            log.exception("call %s: routing failed", self.call_id)
            result = RoutingResult((), "routing failed")
        else:
            self._write(self.backend.routed(self.call_id, decision))
            result = RoutingResult.from_decision(decision)
        return self._answer(RoutingDecided(result))

    async def _reserve(self, reservation: Reservation) -> list[Command]:
        # The writes before it (the call row) were handed over already: see CallBackend.
        reservation_id = reservation.reservation_id
        try:
            refused = await self.backend.reserve(self.call_id, reservation)
        except Exception:
            log.exception("call %s: cap reservation %s failed", self.call_id, reservation_id)
            refused = "cap ledger unavailable"
        if refused is None:
            self._reservations.add(reservation_id)
        return self._answer(CapsReserved(reservation_id, refused))

    def _answer(self, event: Event, at: float | None = None) -> list[Command]:
        """The session's commands for ``event`` at ``at`` (now when None)."""
        self._moved = True
        try:
            return self.session.handle(event, self._wall() if at is None else at)
        except IllegalTransition as exc:
            # A report the flow does not expect (a race with our own command): drop it.
            log.warning("call %s: ignored %r: %s", self.call_id, event, exc)
            return []

    # -- the caller (UAS) --------------------------------------------------------------

    def _start_ringback(self, music: str | None) -> None:
        caller = self.caller
        if caller.final_sent and not caller.answered:
            return
        if not caller.answered and not caller.early:
            # call-flow 1: 183 with our SDP, ringback as early media (answer-on-bridge).
            self._respond_with_sdp(183)
            caller.early = True
        if music is not None:
            self._await(self._hold_music(music))
        elif not caller.media.closed and caller.media.bridge is None:
            caller.ringback = caller.media.play_ringback()

    async def _hold_music(self, music: str) -> list[Command]:
        caller = self.caller
        source: Audio | None = None
        try:
            source = await self.prompts.recording(music)
        except Exception:
            log.exception("call %s: hold music %s unusable; ringback instead", self.call_id, music)
        if caller.media.closed or caller.media.bridge is not None:
            return []
        if source is None:
            caller.ringback = caller.media.play_ringback()
        else:
            caller.ringback = caller.media.play(source, loop=True)
        return []

    def _stop_ringback(self) -> None:
        media = self.caller.media
        if self.caller.ringback is not None and media.playing == self.caller.ringback:
            media.stop_playback()
        self.caller.ringback = None

    def _answer_caller(self) -> None:
        caller = self.caller
        if caller.final_sent:
            return
        response = self._respond_with_sdp(200)
        caller.final_sent = caller.answered = True
        caller.dialog = Dialog.as_uas(caller.invite, response, local_contact=caller.contact)

    def _respond_with_sdp(self, status: int) -> SipResponse:
        """Our answer to the caller's offer, in a 183 or the 200 (RFC 3261 13.2.1: the same)."""
        caller = self.caller
        return self.sip.respond(
            caller.invite,
            status,
            to_tag=caller.to_tag,
            body=caller.answer,
            extra=self._sdp(caller),
        )

    def _reject_caller(self, status: int) -> None:
        caller = self.caller
        if not caller.final_sent:
            self.sip.respond(caller.invite, status, to_tag=caller.to_tag)
            caller.final_sent = True
        self._close_media(caller.media)

    def _hang_up_caller(self, status: int = 480) -> None:
        """End the caller's leg: ``status`` while its INVITE is unanswered, else BYE."""
        caller = self.caller
        if not caller.final_sent:
            self.sip.respond(caller.invite, status, to_tag=caller.to_tag)
            caller.final_sent = True
        elif caller.dialog is not None and not caller.hung_up:
            self._bye(CALLER, caller.dialog, self._caller_hop())
        caller.hung_up = True
        self._close_media(caller.media)

    # -- buyer legs (UAC) --------------------------------------------------------------------

    async def _dial(self, command: DialLeg | ForwardCaller) -> list[Command]:
        """Dial a buyer, or the overflow line for the caller (call-flow 14).

        The overflow line is dialed by us as a buyer leg without a whisper: a
        redirect (302) would not do, as a number is reached only through our
        trunk and a caller answered for an IVR can no longer be redirected.
        Its SIP events go to the session as a buyer leg's do; the session
        answers the caller and bridges, or lets the caller go, and ends the
        call when either side hangs up. The session keeps the ring timeout.
        """
        trunk_id = dialing_trunk(command.destination, command.trunk, self.trunks)
        trunk = self.trunks.get(trunk_id) if trunk_id else None
        failure = await self._start_leg(command, trunk)
        return [] if failure is None else self._answer(failure)

    async def _start_leg(
        self, command: DialLeg | ForwardCaller, trunk: Trunk | None
    ) -> LegFailed | None:
        """Open the leg's media and send its INVITE; the failure if it cannot be dialed."""
        local_host = self.sip.local[0]
        try:
            media = self.media.open_leg(
                PCMU, on_event=self.media_handler(command.leg), name=f"{self.call_id}/{command.leg}"
            )
        except OSError as exc:
            log.error("call %s: no RTP port for %s: %s", self.call_id, command.leg, exc)
            return LegFailed(command.leg, "failed", "no media port")
        session_id = new_session_id()
        offer = _offer(
            self.sip.media_address, media.local_address[1], session_id, self.config.codecs
        )
        leg = BuyerLeg(command.leg, media, offer, session_id, self.sip.local, trunk)
        self.buyers[command.leg] = leg
        try:
            request_uri, host, port, leg.transport = self._target(command.destination, trunk)
            leg.next_hop = await self._lookup(host, port)
        except (SipParseError, OSError, ValueError) as exc:
            log.warning("call %s: cannot reach %s: %s", self.call_id, command.destination, exc)
            return self._fail(leg, "failed", "unroutable")
        if leg.transport != "udp":
            try:
                # RFC 3261 26.3.1 / RFC 5922: a TLS peer's certificate must name the URI's host.
                on_connection = await self.sip.connect(
                    leg.next_hop, tls=leg.transport == "tls", server_name=host
                )
            except OSError as exc:
                log.warning(
                    "call %s: %s over %s: %s", self.call_id, command.leg, leg.transport, exc
                )
                return self._fail(leg, "failed", "transport error")
            if leg.transport == "tls":
                # Peers open TLS connections to our listener; without one, only ours reaches us.
                leg.local = (local_host, self.sip.tls_port or on_connection[1])
        # RFC 3261 8.1.1.8: a SIPS Request-URI or first Route asks for a SIPS Contact.
        route = trunk.proxy if trunk and trunk.route_header else None
        routes = [loose_route(route)] if route else []
        sips = is_sips(request_uri) or (route is not None and is_sips(route))
        leg.contact = self.sip.contact_at(leg.local[1], leg.transport, sips=sips)
        user = (trunk.caller_id if trunk and trunk.caller_id else command.caller_id) or "anonymous"
        domain = (trunk.from_domain if trunk else None) or self.config.from_domain or local_host
        leg.invite = make_request(
            "INVITE",
            request_uri,
            from_=NameAddr(f"sip:{user}@{domain}"),
            to=NameAddr(request_uri),
            via=self._via(leg, rport=None),
            contact=leg.contact,
            # RFC 3261 8.1.2: the outbound proxy as a pre-loaded route, when the trunk asks.
            routes=routes,
            body=offer.serialize(),
            content_type=SDP,
            extra=(("User-Agent", self.config.user_agent), ("Allow", ALLOW)),
        )
        self._send_invite(leg)
        return None

    def _send_invite(self, leg: BuyerLeg) -> None:
        assert leg.invite is not None
        assert leg.next_hop is not None
        leg.key = self.sip.send_request(
            self, leg.id, leg.invite, leg.next_hop, reliable=leg.transport != "udp"
        )
        # Sent again with credentials, it is a new transaction still waiting for its answer.
        leg.final = False

    def _target(self, destination: str, trunk: Trunk | None) -> tuple[str, str, int, Transport]:
        """Request-URI, next hop (host and port) and transport of a destination.

        E.164 numbers go through the trunk. A trunk's proxy is the next hop
        of every request (RFC 3261 8.1.2, an outbound proxy) and its
        transport is the proxy URI's (``sips:``, ``transport``), else the
        trunk's ``transport``; a SIP URI dialed directly says its own. A
        number through a ``sips:`` proxy gets a ``sips:`` Request-URI. A
        ``sips:`` destination must go over TLS all the way (RFC 5630 3.1.3):
        through a trunk that is not TLS it is unroutable (ValueError).
        """
        if trunk is None:
            if not destination.startswith(("sip:", "sips:")):
                raise ValueError(f"{destination} needs a trunk")
            transport = uri_transport(destination) or "udp"
            return destination, *uri_address(destination, transport), transport
        transport = uri_transport(trunk.proxy) or trunk.transport
        host, port = uri_address(trunk.proxy, transport)
        if destination.startswith(("sip:", "sips:")):
            uri = destination
        else:
            bracketed = f"[{host}]" if ":" in host else host
            scheme = "sips" if is_sips(trunk.proxy) else "sip"
            uri = f"{scheme}:{destination}@{bracketed}:{port}"
        if is_sips(uri) and transport != "tls":
            raise ValueError(f"a sips: URI needs TLS, and trunk {trunk.id} is {transport}")
        return uri, host, port, transport

    def _end_buyer(self, leg: BuyerLeg, *, canceled: bool) -> None:
        if not leg.ended:
            leg.ended = True
            leg.canceled = leg.canceled or canceled or not leg.answered
            if leg.dialog is not None and leg.dialog.state is DialogState.CONFIRMED:
                self._bye(leg.id, leg.dialog, self._dialog_hop(leg))
            elif leg.key is not None:
                self.sip.cancel(leg.key)
        self._close_media(leg.media)

    def _buyer_response(
        self, leg: BuyerLeg, response: SipResponse, key: TransactionKey
    ) -> list[Event]:
        status = response.status
        if response.cseq.method != "INVITE" or key != leg.key:
            return []
        if status < 200:
            if status in (180, 183) and not leg.canceled and not leg.answered:
                # call-flow 5: early media is ringing, never an answer.
                return [LegRinging(leg.id, early_media=status == 183 and bool(response.body))]
            return []
        leg.final = True
        if status < 300:
            return self._buyer_answered(leg, response)
        if status in (401, 407) and not leg.canceled and self._authorize(leg, response):
            return []
        if leg.canceled or leg.ended:
            return []  # our CANCEL's 487, or a failure of a leg the session already ended
        return [self._fail(leg, reason_for_sip_status(status), status)]

    def _authorize(self, leg: BuyerLeg, challenge: SipResponse) -> bool:
        trunk = leg.trunk
        if trunk is None or trunk.username is None or leg.invite is None:
            return False
        if leg.auth_attempts >= MAX_AUTH_ATTEMPTS or leg.next_hop is None:
            return False
        leg.auth_attempts += 1
        try:
            leg.invite = DigestClient(trunk.username, trunk.password or "").authorize(
                leg.invite, challenge
            )
        except RemoteProtocolError as exc:
            log.warning("call %s: %s: %s", self.call_id, leg.id, exc)
            return False
        self._send_invite(leg)
        return True

    def _buyer_answered(self, leg: BuyerLeg, response: SipResponse) -> list[Event]:
        assert leg.invite is not None
        if leg.dialog is not None:
            # A retransmitted 2xx: our ACK was lost (RFC 3261 13.2.2.4).
            if leg.ack is not None and leg.next_hop is not None:
                self.sip.send_ack(leg.ack, self._dialog_hop(leg))
            return []
        try:
            dialog = Dialog.as_uac(
                leg.invite,
                response,
                local_contact=leg.contact,
                default_route=leg.invite.headers.get_all("Route"),
            )
        except RemoteProtocolError as exc:
            log.warning("call %s: %s answered without a dialog: %s", self.call_id, leg.id, exc)
            return self._fail_answered(leg, None, "failed")
        leg.dialog = dialog
        self.sip.add_dialog(dialog.id, self, leg.id)
        leg.ack = dialog.create_ack(leg.invite.cseq.seq, self._via(leg))
        self.sip.send_ack(leg.ack, self._dialog_hop(leg))
        if leg.canceled or leg.ended:
            # A 200 that crossed our CANCEL: the call exists, so end it (RFC 3261 9.1).
            self._bye(leg.id, dialog, self._dialog_hop(leg))
            leg.ended = True
            return []
        try:
            negotiated = negotiate_answer(leg.offer, SessionDescription.parse(response.body))
        except SdpError as exc:
            log.warning("call %s: %s answered with unusable SDP: %s", self.call_id, leg.id, exc)
            return self._fail_answered(leg, dialog, "failed")
        leg.media.codec = codec_of(negotiated)
        leg.media.set_remote((negotiated.remote_address, negotiated.remote_port))
        leg.answered = True
        return [LegAnswered(leg.id)]

    def _fail_answered(self, leg: BuyerLeg, dialog: Dialog | None, reason: str) -> list[Event]:
        if dialog is not None:
            self._bye(leg.id, dialog, self._dialog_hop(leg))
        return [self._fail(leg, "failed", reason)]

    def _fail(self, leg: BuyerLeg, reason: FailureReason, status: int | str | None) -> LegFailed:
        """End a leg that failed before the flow had it answered, and the report of it."""
        leg.ended = True
        self._close_media(leg.media)
        return LegFailed(leg.id, reason, status)

    def _dialog_hop(self, leg: BuyerLeg) -> Address:
        """Where the leg's requests after the INVITE go (RFC 3261 8.1.2, 12.2.1.1).

        The first route of the dialog (learned, or the trunk's pre-loaded
        proxy); without one, a trunk's proxy, else the remote target when it
        is an address, else where the INVITE went. A hop other than where
        the INVITE went is reached over the leg's transport (RFC 3261 12.2:
        the remote target may be another address than the one connected to).
        """
        assert leg.next_hop is not None
        dialog = leg.dialog
        if dialog is None or (leg.trunk is not None and not dialog.routes):
            return leg.next_hop
        if dialog.routes:
            uri = dialog.next_hop
            hop = self._route_hop(dialog, leg.id, leg.next_hop, leg.transport)
        else:
            uri = dialog.remote_target
            hop = self._address_of(uri, leg.transport) or leg.next_hop
        if hop != leg.next_hop:
            self.sip.use_stream(leg.transport, hop, uri)
        return hop

    def _caller_hop(self) -> Address:
        """Where our requests to the caller go (RFC 3261 12.2.1.1).

        The first route the caller's proxies recorded; without one, back to
        where the INVITE came from (symmetric, RFC 3581), which a caller
        behind NAT needs rather than its Contact: over TCP or TLS on the
        caller's connection. When that connection has closed, a new one goes
        to the caller's Contact, if it names an address (RFC 3261 18.1.1).
        """
        caller = self.caller
        dialog = caller.dialog
        if dialog is not None and dialog.routes:
            hop = self._route_hop(dialog, CALLER, caller.source, caller.transport)
            if hop != caller.source:
                self.sip.use_stream(caller.transport, hop, dialog.next_hop)
            return hop
        if dialog is None or caller.transport == "udp" or self.sip.connected(caller.source):
            return caller.source
        target = self._address_of(dialog.remote_target, caller.transport)
        if target is None:
            return caller.source
        self.sip.use_stream(caller.transport, target, dialog.remote_target)
        return target

    def _route_hop(
        self, dialog: Dialog, leg: str, fallback: Address, transport: Transport
    ) -> Address:
        hop = self._address_of(dialog.next_hop, transport)
        if hop is None:
            # Its name did not resolve (logged then): where the INVITE went is the best guess.
            log.warning("call %s: %s: no address for route %s", self.call_id, leg, dialog.next_hop)
            return fallback
        return hop

    def _address_of(self, uri: str, transport: Transport) -> Address | None:
        """The address of a URI's host when it is one or was resolved, else None.

        A URI without a port means the default port of the leg's ``transport``.
        """
        try:
            host, port = uri_address(uri, transport)
        except SipParseError:
            return None
        if is_ip_literal(host):
            return host, port
        return self._hosts.get((host, port))

    async def _lookup(self, host: str, port: int) -> Address:
        """The address of a next hop, resolved once per call; raises OSError."""
        key = (host, port)
        if key in self._hosts:
            found = self._hosts[key]
            if found is None:
                raise OSError(f"{host} does not resolve")
            return found
        try:
            address = await _resolve(host, port)
        except OSError:
            self._hosts[key] = None
            raise
        self._hosts[key] = address
        return address

    def _route_to_learn(self, item: SipInput) -> tuple[str, int] | None:
        """The first route host a buyer's 2xx records, to resolve before the handlers need it."""
        event = item.event
        leg = self.buyers.get(item.leg)
        if leg is None or not isinstance(event, ResponseReceived):
            return None
        response = event.response
        if response.cseq.method == "INVITE" and 200 <= response.status < 300:
            return self._first_route(response, leg.transport, uac=True)
        return None

    def _first_route(
        self, message: SipRequest | SipResponse, transport: Transport, *, uac: bool
    ) -> tuple[str, int] | None:
        """The host name of the first route ``message`` records, if it has one to resolve.

        The SIP handlers run without waiting; a name is resolved first
        (:meth:`_then`), when the INVITE or 2xx that brings it arrives, and
        kept for the dialog. Without a port the route means the default port
        of the leg's ``transport``.
        """
        try:
            routes = learned_route_set(message, uac=uac)
            host, port = uri_address(route_uri(routes[0]), transport) if routes else ("", 0)
        except RemoteProtocolError:
            return None  # no dialog will be made of it
        if not routes or is_ip_literal(host) or (host, port) in self._hosts:
            return None
        return host, port

    # -- SIP events -----------------------------------------------------------------------

    def _sip_event(self, leg_id: str, event: TransactionEvent, at: float) -> list[Event]:
        caller = self.caller
        if leg_id == CALLER:
            match event:
                case InviteCancelled():
                    # The transaction layer already sent 200 to the CANCEL and 487 to the INVITE.
                    caller.final_sent = caller.hung_up = True
                    self._close_media(caller.media)
                    return [LegHungUp(CALLER)]
                case TransactionFailed(reason=reason) if reason == "no ACK for 2xx":
                    # RFC 3261 13.3.1.4: no ACK means the session must be ended with BYE.
                    self._hang_up_caller()
                    return [LegHungUp(CALLER)]
                case TransactionFailed(reason=reason) if (
                    reason == "transport error" and not caller.hung_up
                ):
                    # RFC 3261 18.2.2: the caller's connection closed and a new one to it
                    # failed. Nothing we send reaches it any more: it is gone.
                    caller.final_sent = caller.hung_up = True
                    self._close_media(caller.media)
                    return [LegHungUp(CALLER)]
                case RequestReceived(request=request):
                    return self._leg_request(CALLER, caller, request)
            return []
        leg = self.buyers.get(leg_id)
        if leg is None:
            return []
        match event:
            case ResponseReceived(response=response, key=key):
                return self._buyer_response(leg, response, key)
            case TransactionFailed(key=key, reason=reason) if key == leg.key:
                leg.final = True
                if leg.canceled or leg.ended or leg.answered:
                    return []
                return [self._fail(leg, reason_for_sip_status(None), reason)]
            case RequestReceived(request=request):
                return self._leg_request(leg.id, leg, request)
        return []

    def _leg_request(
        self, leg_id: str, leg: CallerLeg | BuyerLeg, request: SipRequest
    ) -> list[Event]:
        """A request inside the dialog of the caller's or a buyer's leg."""
        if request.method == "ACK":
            return []
        if leg.dialog is not None:
            try:
                leg.dialog.receive_request(request)
            except RemoteProtocolError as exc:
                self.sip.respond(request, exc.status_hint or 500)
                return []
        if request.method == "BYE":
            self.sip.respond(request, 200)
            if isinstance(leg, CallerLeg):
                gone, leg.hung_up = leg.hung_up, True
            else:
                gone, leg.ended = leg.ended, True
            if gone:
                return []
            self._close_media(leg.media)
            return [LegHungUp(leg_id)]
        if request.method == "INVITE":
            self._reinvite(request, leg)
            return []
        self._other_request(request)
        return []

    def _other_request(self, request: SipRequest) -> None:
        if request.method in ("OPTIONS", "INFO", "NOTIFY"):
            self.sip.respond(request, 200, extra=(("Allow", ALLOW),))
        else:
            self.sip.respond(request, 501, extra=(("Allow", ALLOW),))

    def _reinvite(self, request: SipRequest, leg: CallerLeg | BuyerLeg) -> None:
        """Answer a re-INVITE (hold, resume, a moved address) keeping the leg's codec."""
        media = leg.media
        if media.closed:
            self.sip.respond(request, 481)
            return
        # RFC 3264 8: every SDP we send in the dialog has the next version, offer or answer.
        version = leg.session_version + 1
        if not request.body:
            # RFC 3264 5: an offerless re-INVITE gets our offer in the 200.
            offer = _offer(
                self.sip.media_address,
                media.local_address[1],
                leg.session_id,
                (media.codec.encoding,),
                version,
            )
            leg.session_version = version
            self.sip.respond(request, 200, body=offer.serialize(), extra=self._sdp(leg))
            return
        try:
            answer, negotiated = create_answer(
                SessionDescription.parse(request.body),
                self.sip.media_address,
                media.local_address[1],
                session_id=leg.session_id,
                session_version=version,
                codecs=(media.codec.encoding,),
            )
        except SdpError:
            self.sip.respond(request, 488)
            return
        leg.session_version = version
        # RFC 3264 6.1: a peer putting us on hold (sendonly, inactive) gets no media from us.
        media.sends = negotiated.sends
        remote = (negotiated.remote_address, negotiated.remote_port)
        if remote != media.remote and negotiated.remote_address not in ("0.0.0.0", "::"):
            media.set_remote(remote, relatch=True)
        self.sip.respond(request, 200, body=answer.serialize(), extra=self._sdp(leg))

    @staticmethod
    def _sdp(leg: CallerLeg | BuyerLeg) -> tuple[tuple[str, str], ...]:
        return (("Contact", leg.contact), ("Content-Type", SDP), ("Allow", ALLOW))

    @staticmethod
    def _via(leg: CallerLeg | BuyerLeg, **params: str | None) -> Via:
        """Our Via for a new request: a fresh branch, the leg's transport (RFC 3261 18.1.1)."""
        host, port = leg.local
        return Via(leg.transport.upper(), host, port, {"branch": new_branch(), **params})

    def _bye(self, leg_id: str, dialog: Dialog, destination: Address) -> None:
        if dialog.state is DialogState.TERMINATED:
            return
        leg = self.caller if leg_id == CALLER else self.buyers[leg_id]
        bye = dialog.create_request("BYE", self._via(leg))
        dialog.terminate()
        self.sip.send_request(self, leg_id, bye, destination, reliable=leg.transport != "udp")

    # -- media ----------------------------------------------------------------------------

    def _media_leg(self, leg: str) -> MediaLeg | None:
        media = self.caller.media if leg == CALLER else self.buyers[leg].media
        return None if media.closed else media

    def _media_event(self, leg: str, event: MediaEvent) -> Event | None:
        match event:
            case MediaDigit(digit=digit):
                return DigitReceived(leg, cast(DtmfKey, digit))
            case MediaPlaybackFinished(playback=playback):
                found = self._media.plays.pop(playback, None)
                return None if found is None else PlaybackFinished(*found)
        return None

    def _play(self, leg: str, play_id: int, render: Callable[[], Awaitable[Audio]]) -> None:
        self._cancel_render(leg)
        play = _Play(leg, play_id)
        self._media.pending[leg] = play
        # A prompt in the cache (the whisper of every call) starts playing at once.
        rendered = eagerly(self._render_and_play(play, render), self._loop)
        if rendered.done():
            rendered.result()
        else:
            play.task = rendered

    async def _render_and_play(self, play: _Play, render: Callable[[], Awaitable[Audio]]) -> None:
        try:
            audio = await render()
        except Exception:
            log.exception("call %s: prompt for %s unusable", self.call_id, play.leg)
            audio = None
        if self._media.pending.get(play.leg) is not play:
            return
        del self._media.pending[play.leg]
        media = self._media_leg(play.leg)
        if media is None or media.bridge is not None:
            return
        if audio is None:
            # The flow must go on (wait for a key, replay...) as if the prompt had played.
            self.feed(PlaybackFinished(play.leg, play.play_id))
            return
        if play.leg == CALLER:
            self.caller.ringback = None
        self._media.plays[media.play(audio)] = (play.leg, play.play_id)

    def _cancel_render(self, leg: str) -> None:
        play = self._media.pending.pop(leg, None)
        if play is not None and play.task is not None:
            play.task.cancel()

    def _stop_playback(self, leg: str, play_id: int) -> None:
        pending = self._media.pending.get(leg)
        if pending is not None and pending.play_id == play_id:
            self._cancel_render(leg)
        media = self._media_leg(leg)
        if media is None or media.playing is None:
            return
        if self._media.plays.get(media.playing) == (leg, play_id):
            del self._media.plays[media.playing]
            media.stop_playback()

    def _do_bridge(self, caller: str, buyer: str) -> None:
        self._cancel_render(caller)
        self._cancel_render(buyer)
        a, b = self._media_leg(caller), self._media_leg(buyer)
        if a is None or b is None:
            log.warning("call %s: bridge of a closed leg", self.call_id)
            return
        self.media.bridge(a, b)

    @property
    def _bridge(self) -> MediaBridge | None:
        """The caller's bridge to a buyer, if any (the media engine ends it with either leg)."""
        return self.caller.media.bridge

    def _start_recording(self, channels: tuple[str, ...]) -> None:
        path = self.config.recordings_dir / f"{self.call_id}.wav"
        if channels == (CALLER,):
            self._start_voicemail(path)
            return
        bridge = self._bridge
        if len(channels) != 2 or bridge is None:
            log.warning("call %s: recording %s is not supported", self.call_id, channels)
            return
        # Recording is attached to a bridge: re-bridge at once, streams stay continuous.
        self.media.unbridge(bridge)
        self.media.bridge(bridge.caller, bridge.buyer, record_to=path)
        self._write(self.backend.recording_started(self.call_id, path))

    def _start_voicemail(self, path: Path) -> None:
        """call-flow 14: the caller, answered and told, leaves a message after the beep."""
        media = self._media_leg(CALLER)
        if media is None or media.bridge is not None:
            log.warning("call %s: no caller media to record a voicemail from", self.call_id)
            return
        self._voicemail = self.media.record(media, path)
        # What we send is never in the recording: the beep only tells the caller to speak.
        media.play(_beep(media.codec.encoding))
        self._write(self.backend.recording_started(self.call_id, path))

    def _stop_recording(self) -> None:
        if self._voicemail is not None:
            self.media.stop_recording(self._voicemail)
            self._voicemail = None
            return
        bridge = self._bridge
        if bridge is None or bridge.recorder is None:
            return
        self.media.unbridge(bridge)
        self.media.bridge(bridge.caller, bridge.buyer)

    def _close_media(self, media: MediaLeg) -> None:
        if not media.closed:
            self.media.close_leg(media)

    # -- the end --------------------------------------------------------------------------

    def _abort(self, reason: str) -> None:
        """End every leg of a call that cannot go on; the caller gets 500 or BYE."""
        log.info("call %s: ending every leg (%s)", self.call_id, reason)
        try:
            self._hang_up_caller(500)
            for leg in self.buyers.values():
                self._end_buyer(leg, canceled=True)
        except (LocalProtocolError, RemoteProtocolError):
            log.exception("call %s: SIP teardown failed", self.call_id)
        if not self.session.finished:
            entry = Entry(
                self._wall(), "interrupted", data={"outcome": "interrupted", "reason": reason}
            )
            self._write(self.backend.persist(self.call_id, entry))
        for reservation_id in sorted(self._reservations):
            self._write(self.backend.finish(reservation_id))
        self._reservations.clear()

    def _end(self, outcome: str) -> None:
        """The call is over: stop its timers and media, and write its end; once only."""
        if self._ended:
            return
        self._ended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._linger is not None:
            self._linger.cancel()
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.cancel()
        for leg in list(self._media.pending):
            self._cancel_render(leg)
        self._close_media(self.caller.media)
        for buyer in self.buyers.values():
            self._close_media(buyer.media)
        record = self.session.record
        # Its write is watched like any: the call is done once every write is (_check_writes).
        self._write(self.backend.call_ended(self.call_id, self.attributes, record, outcome=outcome))

    def _write(self, work: Awaitable[None] | None) -> None:
        """Hand a write over at once, in order; only its outcome is waited for.

        ``None`` is a write the backend finishes in order and reports itself
        (see :class:`~callwhisper.engine.backend.CallBackend`). A store
        finishes writes in the order it was given them, mostly many at a
        time: only the first write not done is watched, and when it is,
        every write done by then is checked, so that a failure is logged as
        it comes without a callback for every write.
        """
        if work is None:
            if self._ended and self._watched is None:
                self._check_writes()  # nothing left to watch: the call may be done
            return
        written = asyncio.ensure_future(work, loop=self._loop)
        self._unwritten.append(written)
        if self._watched is None:
            self._check_writes()

    def _check_writes(self, _: object = None) -> None:
        """Log the writes that failed among those done; watch the first one not done."""
        unwritten = self._unwritten
        while unwritten and unwritten[0].done():
            written = unwritten.popleft()
            if not written.cancelled() and (error := written.exception()) is not None:
                log.error("call %s: store write failed", self.call_id, exc_info=error)
        self._watched = unwritten[0] if unwritten else None
        if self._watched is not None:
            self._watched.add_done_callback(self._check_writes)
        elif self._ended and self._done is not None and not self._done.done():
            # The call is over and all of it is written.
            self.sip.forget(self)
            self._done.set_result(None)


ALLOW: Final = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
"""Methods we answer (RFC 3261 20.5)."""


def _offer(
    address: str, port: int, session_id: int, codecs: tuple[str, ...], version: int = 0
) -> SessionDescription:
    return create_offer(
        address, port, session_id=session_id, session_version=version, codecs=codecs
    )


BEEP: Final = ToneSpec((1000.0,), (400, 20), level_dbm0=-13.0)
"""The voicemail beep: 1 kHz for 400 ms."""


@cache
def _beep(encoding: Codec) -> tuple[bytes, ...]:
    """The beep's 20 ms frames in the caller's codec, computed once per codec."""
    source = ToneSource(BEEP, encode=ulaw_encode if encoding == "PCMU" else alaw_encode)
    return tuple(source.frame(index) for index in range(BEEP.cadence[0] // 20))


async def _resolve(host: str, port: int) -> Address:
    """The address of a next hop; names are resolved without blocking the loop."""
    if is_ip_literal(host):
        return host.strip("[]"), port
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"{host} does not resolve")
    address = infos[0][4]
    return str(address[0]), int(address[1])


_T = TypeVar("_T")


def eagerly(
    work: Coroutine[Any, Any, _T], loop: asyncio.AbstractEventLoop | None = None
) -> asyncio.Future[_T]:
    """Run ``work`` at once up to its first real wait, as asyncio's eager tasks do (3.12).

    When it finishes without waiting, the future is done already (an
    exception it raised comes out of this call); otherwise it is a task that
    runs the rest. Until its first wait ``work`` runs in the caller, outside
    of any task: it must not need one (``asyncio.timeout``, ``current_task``).
    ``loop`` is the running loop, when the caller knows it.
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    try:
        waited = work.send(None)
    except StopIteration as finished:
        done: asyncio.Future[_T] = loop.create_future()
        done.set_result(finished.value)
        return done
    return loop.create_task(_finish(work, waited))


async def _finish(work: Coroutine[Any, Any, _T], waited: object) -> _T:
    return await _Rest(work, waited)


class _Rest(Generic[_T]):
    """The rest of a coroutine stepped by hand, which stopped to wait for ``waited``.

    Awaited in a task, it hands the task what the coroutine waits for, as
    ``await`` would, and passes results and exceptions (a cancellation) back in.
    """

    __slots__ = ("_waited", "_work")

    def __init__(self, work: Coroutine[Any, Any, _T], waited: object) -> None:
        self._work = work
        self._waited = waited

    def __await__(self) -> Generator[Any, Any, _T]:
        work, waited = self._work, self._waited
        while True:
            try:
                try:
                    sent = yield waited
                except GeneratorExit:
                    work.close()
                    raise
                except BaseException as error:
                    waited = work.throw(error)
                else:
                    waited = work.send(sent)
            except StopIteration as finished:
                return cast(_T, finished.value)


_CARRY_OUT: Final[dict[type[Command], Callable[[CallRunner, Any], None]]] = {
    Persist: CallRunner._persist,
    CommitCaps: CallRunner._commit_caps,
    FinishCaps: CallRunner._finish_caps,
    RequestRouting: lambda runner, command: runner._await(runner._route(command.attributes)),
    ReserveCaps: lambda runner, command: runner._await(runner._reserve(command.reservation)),
    StartRingback: lambda runner, command: runner._start_ringback(command.music),
    StopRingback: lambda runner, _: runner._stop_ringback(),
    AnswerCaller: lambda runner, _: runner._answer_caller(),
    RejectCaller: lambda runner, command: runner._reject_caller(command.sip_code),
    DialLeg: lambda runner, command: runner._await(runner._dial(command)),
    ForwardCaller: lambda runner, command: runner._await(runner._dial(command)),
    CancelLeg: CallRunner._end_leg,
    HangupLeg: CallRunner._end_leg,
    PlayText: CallRunner._play_text,
    PlayAudio: CallRunner._play_audio,
    StopPlayback: lambda runner, command: runner._stop_playback(command.leg, command.play_id),
    # RFC 4733 keys are always reported; the session keeps the timers.
    CollectDigits: lambda runner, _: None,
    Bridge: lambda runner, command: runner._do_bridge(command.caller, command.buyer),
    StartRecording: lambda runner, command: runner._start_recording(command.channels),
    StopRecording: lambda runner, _: runner._stop_recording(),
}
"""How the runner carries out each command of the session (one lookup, not a match)."""
