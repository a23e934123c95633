"""Our own small SIP user agent: the caller and the buyers of ``callwhisper demo`` and of tests.

A :class:`UserAgent` is one SIP phone: a UDP port for SIP running the
sans-I/O transaction layer, a UDP port per call for RTP, and a
:class:`~callwhisper.engine.clock.MediaClock` sending the audio of its
calls. It places calls (:meth:`UserAgent.dial`: INVITE with an SDP offer,
ACK, then BYE or CANCEL on :meth:`UserAgent.hang_up`) and answers the ones
it receives as its :class:`AnswerScript` says (180, then 200 with an SDP
answer; press a key once it has heard enough of the whisper, or never, like
a voicemail box). Each call counts the sound it hears, so that the demo and
tests can tell who heard what.

The parts that decide are testable without sockets: :class:`PhoneMedia`
(the packet to send at each 20 ms tick, the meaning of each packet received)
and :class:`Phone`, the transaction user, which gets its SIP core, its
flush, its clock and its RTP ports injected, as
:class:`~callwhisper.engine.b2bua.B2bua` does. :class:`UserAgent` only binds
the sockets and starts the clock around them.

It is a test peer, not a softphone: UDP, or TLS once it has a certificate
of its own (then it listens for TLS too, and its Contact over TLS names that
listener), IP addresses only, no registration or authentication, and a
re-INVITE is refused with 488.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal, Protocol

import numpy as np

from callwhisper.audio import FRAME_SAMPLES, Codec
from callwhisper.engine.clock import PTIME, MediaClock
from callwhisper.engine.legs import (
    Transport,
    codec_of,
    is_ip_literal,
    is_sips,
    needs_sips,
    new_session_id,
    uri_address,
    uri_transport,
    via_transport,
)
from callwhisper.engine.playback import LegCodec, Playback
from callwhisper.engine.transaction_user import SDP, TransactionUser
from callwhisper.engine.transport import SipEndpoint, TcpStreams, TransportConfig
from callwhisper.errors import (
    LocalProtocolError,
    RemoteProtocolError,
    RtpError,
    SdpError,
    SipParseError,
)
from callwhisper.media.dtmf import DigitStarted, DtmfReceiver, DtmfSender, digit_to_event
from callwhisper.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from callwhisper.media.rtp import IncomingStream, OutgoingStream, RtpPacket, is_rtcp
from callwhisper.media.sdp import (
    NegotiatedMedia,
    SessionDescription,
    create_answer,
    create_offer,
    negotiate_answer,
)
from callwhisper.media.tones import SilenceSource, ToneSource, ToneSpec
from callwhisper.sip.dialog import Dialog, DialogId, check_dialog_request
from callwhisper.sip.headers import NameAddr, Via
from callwhisper.sip.message import (
    SipRequest,
    SipResponse,
    make_request,
    new_branch,
    new_tag,
)
from callwhisper.sip.timers import DEFAULT_TIMERS, TimerConfig
from callwhisper.sip.transaction import (
    Address,
    InviteCancelled,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
    TransactionFailed,
    TransactionKey,
    TransactionLayer,
)

__all__ = [
    "CALL_TRANSITIONS",
    "SOUND_RMS",
    "AnswerScript",
    "CallState",
    "Phone",
    "PhoneCall",
    "PhoneMedia",
    "RtpPort",
    "UserAgent",
]

log = logging.getLogger(__name__)

CODECS: Final = ("PCMU", "PCMA")
ALLOW: Final = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
USER_AGENT: Final = "callwhisper-phone"
SOUND_RMS: Final = 160.0
"""RMS level (16-bit PCM) above which a frame is sound, not silence: about -40 dBm0."""
KEY_MS: Final = 120
"""How long a key press lasts: six 20 ms packet times of RFC 4733 events, the end repeated."""


# -- media --------------------------------------------------------------------------------


def is_sound(payload: bytes, encoding: Codec) -> bool:
    """Whether a G.711 frame holds sound rather than silence or a faint hiss."""
    if not payload:
        return False
    pcm = ulaw_decode(payload) if encoding == "PCMU" else alaw_decode(payload)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples * samples))) > SOUND_RMS


class PhoneMedia:
    """The RTP of one call, sans-I/O: the packet to send at each tick, what a packet means.

    Nothing is sent before :meth:`start` (the SDP exchange tells the codec
    and where to send). Then every tick sends a frame of the phone's voice (a
    steady tone, or silence), except while a key is being pressed: its RFC
    4733 packets take those ticks. Received audio is counted, and frames of
    sound apart; received key presses are reported once each.
    """

    def __init__(self, voice: ToneSpec | None = None) -> None:
        """A stream speaking ``voice`` (silence when None), with random RTP numbering."""
        self.voice = voice
        self.codec: LegCodec | None = None
        self.remote: Address | None = None
        # RFC 3550 5.1: random initial SSRC, sequence number and timestamp.
        self.outgoing = OutgoingStream(
            secrets.randbits(32), secrets.randbits(16), secrets.randbits(32)
        )
        self.incoming = IncomingStream()
        self._receiver = DtmfReceiver()
        self._playback: Playback | None = None
        self._keys: deque[str] = deque()
        self._sender: DtmfSender | None = None
        self.frames_heard = 0
        """Audio frames received in the negotiated codec."""
        self.sound_frames = 0
        """Those of them that were sound (see :func:`is_sound`)."""
        self.keys_heard: list[str] = []
        self.ignored = 0
        """Packets dropped: before :meth:`start`, malformed, from elsewhere, unknown payload."""

    @property
    def started(self) -> bool:
        """Whether the codec and the peer's address are known."""
        return self.codec is not None

    @property
    def destination(self) -> Address | None:
        """Where packets go: the latched source of the peer's packets, else its SDP address."""
        return self.incoming.latched or self.remote

    @property
    def sound_seconds(self) -> float:
        """Seconds of sound heard so far."""
        return self.sound_frames * PTIME

    def start(self, codec: LegCodec, remote: Address) -> None:
        """Begin sending to ``remote`` in ``codec`` (what the offer/answer agreed)."""
        self.codec = codec
        self.remote = remote
        encode = ulaw_encode if codec.encoding == "PCMU" else alaw_encode
        source = (
            SilenceSource(encode=encode)
            if self.voice is None
            else ToneSource(self.voice, encode=encode)
        )
        self._playback = Playback(0, source, codec.encoding)

    def press(self, key: str) -> None:
        """Queue a key press, sent as RFC 4733 telephone-events from the next tick.

        Raises :class:`LocalProtocolError` for a key that is not a DTMF digit,
        or when the peer did not agree to telephone-events.
        """
        digit_to_event(key)
        if self.codec is None:
            raise LocalProtocolError("no media yet: a key can be pressed once the call has media")
        if self.codec.telephone_event is None:
            raise LocalProtocolError("the peer did not agree to telephone-events (RFC 4733)")
        self._keys.append(key)

    def tick(self, now: float) -> bytes | None:
        """The packet to send at this 20 ms tick, or None before :meth:`start`."""
        codec, playback = self.codec, self._playback
        if codec is None or playback is None:
            return None
        if self._sender is None and self._keys:
            assert codec.telephone_event is not None  # checked by press()
            key = self._keys.popleft()
            self._sender = DtmfSender(self.outgoing, codec.telephone_event, key, duration_ms=KEY_MS)
        if self._sender is not None:
            packet = self._sender.tick(now)
            if packet is not None:
                return packet
            self._sender = None
        frame = playback.next_frame()
        if frame is None:
            return None
        return self.outgoing.send(
            frame, codec.payload_type, now,
            samples=FRAME_SAMPLES, marker=playback.frames_played == 1,
        )  # fmt: skip

    def receive(self, data: bytes, source: Address, now: float) -> list[str]:
        """Account for one datagram; return the keys whose press it starts."""
        codec = self.codec
        if codec is None:
            self.ignored += 1
            return []
        try:
            if not self.incoming.receive(data, source, now) or is_rtcp(data):
                self.ignored += 1
                return []
            packet = RtpPacket.parse(data)
        except RtpError:
            self.ignored += 1
            return []
        if packet.payload_type == codec.payload_type:
            self.frames_heard += 1
            if is_sound(packet.payload, codec.encoding):
                self.sound_frames += 1
            return []
        if packet.payload_type == codec.telephone_event:
            try:
                events = self._receiver.receive(packet, now)
            except RtpError:
                self.ignored += 1
                return []
            keys = [event.digit for event in events if isinstance(event, DigitStarted)]
            self.keys_heard += keys
            return keys
        self.ignored += 1
        return []


# -- calls ----------------------------------------------------------------------------------


class CallState(StrEnum):
    """Where a phone's call stands, placed or received."""

    CALLING = "calling"
    """INVITE sent or received, nothing more yet."""
    RINGING = "ringing"
    """A provisional response (180/183) was received or sent."""
    CONFIRMED = "confirmed"
    """Answered: 2xx received (and ACKed) or sent."""
    ENDING = "ending"
    """We sent BYE or CANCEL and wait for its outcome."""
    ENDED = "ended"


CallInput = Literal["provisional", "answer", "hang_up", "end"]

CALL_TRANSITIONS: Final[Mapping[CallState, Mapping[CallInput, CallState]]] = {
    CallState.CALLING: {
        "provisional": CallState.RINGING,
        "answer": CallState.CONFIRMED,
        "hang_up": CallState.ENDING,
        "end": CallState.ENDED,
    },
    CallState.RINGING: {
        "provisional": CallState.RINGING,
        "answer": CallState.CONFIRMED,
        "hang_up": CallState.ENDING,
        "end": CallState.ENDED,
    },
    CallState.CONFIRMED: {"hang_up": CallState.ENDING, "end": CallState.ENDED},
    CallState.ENDING: {"end": CallState.ENDED},
    CallState.ENDED: {},
}


class RtpPort(Protocol):
    """The UDP socket of one call's RTP, as :class:`Phone` uses it."""

    @property
    def local_address(self) -> Address:
        """The bound address, put in our SDP."""
        ...

    def send(self, packet: bytes, destination: Address) -> None:
        """Send one packet; failures are counted, not raised (RTP tolerates loss)."""

    def close(self) -> None:
        """Close the socket; later sends are dropped."""


@dataclass(frozen=True, slots=True)
class AnswerScript:
    """How a phone treats the calls it receives.

    It rings for ``ring_seconds``, answers, then presses ``press`` once it
    has heard ``press_after_sound`` seconds of sound (the whisper), or never
    when ``press`` is None: a voicemail box that listens and says nothing.
    It hangs up only when the other side does.
    """

    ring_seconds: float = 0.0
    press: str | None = None
    press_after_sound: float = 1.0

    def __post_init__(self) -> None:
        """Reject a key that is not a DTMF digit and negative durations."""
        if self.press is not None:
            digit_to_event(self.press)
        if self.ring_seconds < 0 or self.press_after_sound < 0:
            raise ValueError("ring_seconds and press_after_sound must not be negative")

    def key_to_press(self, sound_seconds: float, pressed: bool) -> str | None:
        """The key to press now, having heard ``sound_seconds`` of sound, if any."""
        if self.press is None or pressed or sound_seconds < self.press_after_sound:
            return None
        return self.press


@dataclass(eq=False, slots=True)
class PhoneCall:
    """One call of a phone, placed (``outgoing``) or received (``incoming``), and its story."""

    direction: Literal["outgoing", "incoming"]
    invite: SipRequest
    key: TransactionKey
    """The INVITE's transaction: client for outgoing calls, server for incoming ones."""
    peer: Address
    """Where the INVITE went (outgoing) or came from (incoming)."""
    media: PhoneMedia
    rtp: RtpPort
    transport: Transport
    """How the call's SIP goes: the INVITE's transport."""
    contact: str
    """Our Contact in the call (over TLS at our TLS listener)."""
    offer: SessionDescription | None = None
    """Our SDP offer (outgoing calls)."""
    answer: bytes = b""
    """Our SDP answer (incoming calls), sent in the 200."""
    negotiated: NegotiatedMedia | None = None
    to_tag: str | None = None
    dialog: Dialog | None = None
    ack: SipRequest | None = None
    bye_key: TransactionKey | None = None
    state: CallState = CallState.CALLING
    status: int | None = None
    """The final status of the INVITE, sent or received."""
    answered_at: float | None = None
    ended_at: float | None = None
    ended_by: Literal["us", "peer"] | None = None
    end_reason: str = ""
    sound_before_answer: float = 0.0
    """Seconds of sound heard before the answer (early media: ringback)."""
    keys_pressed: list[str] = field(default_factory=list)
    log: list[tuple[float, str]] = field(default_factory=list)
    """What happened, with the phone's clock."""
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def call_id(self) -> str:
        """The SIP Call-ID."""
        return self.invite.call_id

    @property
    def sound_after_answer(self) -> float:
        """Seconds of sound heard since the answer."""
        return self.media.sound_seconds - self.sound_before_answer

    @property
    def talk_seconds(self) -> float:
        """Seconds between the answer and the end (0 if never answered)."""
        if self.answered_at is None:
            return 0.0
        return (self.ended_at if self.ended_at is not None else self.answered_at) - self.answered_at


# -- the transaction user -------------------------------------------------------------------


class Phone(TransactionUser):
    """The SIP user agent core of a phone: transaction events in, SIP and media out.

    ``core`` is the transaction layer, ``flush`` sends what it queued
    (``SipEndpoint.flush``), ``clock`` is the core's clock and
    ``open_rtp`` binds one RTP port per call; received datagrams come back
    through :meth:`receive_rtp` and the media clock calls :meth:`tick`.
    """

    server = USER_AGENT
    allow = ALLOW

    def __init__(
        self,
        name: str,
        core: TransactionLayer,
        *,
        local: Address,
        flush: Callable[[], None],
        clock: Callable[[], float],
        open_rtp: Callable[[], RtpPort],
        script: AnswerScript | None = None,
        voice: ToneSpec | None = None,
        streams: TcpStreams | None = None,
    ) -> None:
        """A phone called ``name`` (the user part of its Contact) at SIP address ``local``.

        ``streams`` (the endpoint) carries calls over TCP and TLS; without it
        the phone speaks UDP only.
        """
        super().__init__(core, local=local, user=name, flush=flush, clock=clock, streams=streams)
        self.name = name
        self.script = script
        """How received calls are answered; None refuses them with 486 Busy Here."""
        self.voice = voice
        self._open_rtp = open_rtp
        self.calls: list[PhoneCall] = []
        self._clients: dict[TransactionKey, PhoneCall] = {}
        self._servers: dict[TransactionKey, PhoneCall] = {}
        self._dialogs: dict[DialogId, PhoneCall] = {}
        self._ports: dict[RtpPort, PhoneCall] = {}
        self._talking: dict[PhoneCall, None] = {}

    def uri(self, user: str | None = None, *, tls: bool = False) -> str:
        """A SIP URI that reaches this phone, with ``user`` (else its name) as user part.

        With ``tls``, a ``sips:`` URI at its TLS listener.
        """
        if tls:
            return f"sips:{user or self.name}@{self.host}:{self._port('tls')}"
        return f"sip:{user or self.name}@{self.host}:{self.local[1]}"

    # -- what the user does --------------------------------------------------------------

    def dial(self, uri: str, *, caller: str) -> PhoneCall:
        """Call ``uri`` (a SIP URI with an IP address) showing ``caller`` as the From user.

        A ``sips:`` or ``transport=tls`` URI is dialed over TLS, the
        certificate of the phone called checked for the URI's host.
        Raises :class:`~callwhisper.errors.SipParseError` for a malformed URI,
        ValueError for a transport the phone does not speak, and
        :class:`LocalProtocolError` for a host name, or TLS without a
        certificate of our own.
        """
        transport = uri_transport(uri) or "udp"
        destination = uri_address(uri, transport)
        if not is_ip_literal(destination[0]):
            raise LocalProtocolError(f"{uri}: a phone dials IP addresses only")
        contact = self.contact_at(self._port(transport), transport, sips=is_sips(uri))
        self.use_stream(transport, destination, uri)
        rtp = self._open_rtp()
        offer = create_offer(
            self.local[0], rtp.local_address[1],
            session_id=new_session_id(), codecs=CODECS, username=self.name,
        )  # fmt: skip
        invite = make_request(
            "INVITE",
            uri,
            from_=NameAddr(f"sip:{caller}@{self.host}:{self.local[1]}"),
            to=NameAddr(uri),
            via=self._via(transport),
            contact=contact,
            body=offer.serialize(),
            content_type=SDP,
            extra=(("User-Agent", USER_AGENT), ("Allow", ALLOW)),
        )
        reliable = transport != "udp"
        key = self.core.send_request(invite, destination, self._clock(), reliable=reliable)
        call = PhoneCall(
            "outgoing", invite, key, destination, PhoneMedia(self.voice), rtp,
            transport, contact, offer,
        )  # fmt: skip
        self._add(call)
        self._clients[key] = call
        self._note(call, f"INVITE {uri}")
        self._send()
        return call

    def hang_up(self, call: PhoneCall) -> None:
        """End a call: BYE once answered, CANCEL while ringing out, 480 while ringing in."""
        state = call.state
        if state in (CallState.ENDING, CallState.ENDED):
            return
        if state is CallState.CONFIRMED:
            self._transition(call, "hang_up")
            self._bye(call)
        elif call.direction == "outgoing":
            self._transition(call, "hang_up")
            cancel = self.core.cancel(call.key, self._clock())
            if cancel is not None:
                self._clients[cancel] = call
            self._note(call, "CANCEL")
        else:
            self.respond(call.invite, 480, to_tag=call.to_tag)
            call.status = 480
            self._end(call, "declined by us", by="us")
        self._send()

    async def hang_up_after(self, call: PhoneCall, seconds: float) -> None:
        """Wait for the answer, stay ``seconds`` on the line, hang up; return once it has ended.

        A call refused or hung up by the other side meanwhile just ends. Bound
        the wait with ``asyncio.timeout`` if the other side may never answer.
        """
        await _first_set(call.answered, call.ended)
        if not call.ended.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await call.ended.wait()
            self.hang_up(call)
        await call.ended.wait()

    def press(self, call: PhoneCall, key: str) -> None:
        """Press a key on an answered call (RFC 4733 telephone-events)."""
        if call.state is not CallState.CONFIRMED:
            raise LocalProtocolError(f"cannot press {key!r}: the call is {call.state}")
        call.media.press(key)
        call.keys_pressed.append(key)
        self._note(call, f"pressed {key}")

    # -- media ----------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Send one packet on every call with media (the media clock's callback)."""
        for call in list(self._talking):
            packet = call.media.tick(now)
            destination = call.media.destination
            if packet is not None and destination is not None:
                call.rtp.send(packet, destination)

    def receive_rtp(self, port: RtpPort, data: bytes, source: Address, now: float) -> None:
        """A datagram arrived on a call's RTP port; the script may press its key now."""
        call = self._ports.get(port)
        if call is None:
            return
        for heard in call.media.receive(data, source, now):
            self._note(call, f"heard key {heard}")
        script, codec = self.script, call.media.codec
        if script is None or call.direction != "incoming" or call.state is not CallState.CONFIRMED:
            return
        if codec is None or codec.telephone_event is None:
            return  # keys travel as RFC 4733 events only: without them this phone cannot press
        key = script.key_to_press(call.media.sound_seconds, bool(call.keys_pressed))
        if key is not None:
            self.press(call, key)

    # -- events from the SIP core ---------------------------------------------------------

    def _transaction_event(
        self, event: ResponseReceived | InviteCancelled | TransactionFailed
    ) -> None:
        match event:
            case ResponseReceived(response=response, key=key):
                call = self._clients.get(key)
                if call is not None:
                    self._response(call, response, key)
            case InviteCancelled(key=key):
                call = self._servers.get(key)
                if call is not None:
                    # The transaction layer answered the CANCEL with 200 and the INVITE with 487.
                    call.status = 487
                    self._end(call, "cancelled by the caller", by="peer")
            case TransactionFailed(key=key, reason=reason):
                self._failed(key, reason)

    def _dialog_request(self, event: RequestReceived) -> bool:
        call = self._dialogs.get(DialogId.of_incoming_request(event.request))
        if call is None:
            return False
        self._in_dialog(call, event.request)
        return True

    def _invite(self, invite: SipRequest, source: Address, key: TransactionKey) -> None:
        if self.script is None:
            self.respond(invite, 486)
            return
        try:
            check_dialog_request(invite)
            offer = SessionDescription.parse(invite.body)
            create_answer(offer, self.local[0], 9, session_id=0, codecs=CODECS)
        except RemoteProtocolError as exc:  # no dialog could be made (400), or no common codec
            self.respond(invite, exc.status_hint or 488)
            return
        transport = via_transport(invite)
        contact = self.contact_at(self._port(transport), transport, sips=needs_sips(invite))
        rtp = self._open_rtp()
        answer, negotiated = create_answer(
            offer, self.local[0], rtp.local_address[1],
            session_id=new_session_id(), codecs=CODECS, username=self.name,
        )  # fmt: skip
        call = PhoneCall(
            "incoming", invite, key, source, PhoneMedia(self.voice), rtp, transport, contact,
            answer=answer.serialize(), negotiated=negotiated, to_tag=new_tag(),
        )  # fmt: skip
        self._add(call)
        self._servers[key] = call
        self._note(call, f"INVITE from {invite.from_.uri}")
        self.respond(invite, 180, to_tag=call.to_tag, extra=(("Contact", contact),))
        self._transition(call, "provisional")
        self._note(call, "180 Ringing sent")
        if self.script.ring_seconds > 0:
            asyncio.get_running_loop().call_later(self.script.ring_seconds, self._answer, call)
        else:
            self._answer(call)

    def _answer(self, call: PhoneCall) -> None:
        if call.state is not CallState.RINGING or call.negotiated is None:
            return  # cancelled while ringing
        response = self.respond(
            call.invite, 200, to_tag=call.to_tag, body=call.answer,
            extra=(("Contact", call.contact), ("Content-Type", SDP), ("Allow", ALLOW)),
        )  # fmt: skip
        call.status = 200
        call.dialog = Dialog.as_uas(call.invite, response, local_contact=call.contact)
        self._dialogs[call.dialog.id] = call
        negotiated = call.negotiated
        self._talk(call, codec_of(negotiated), (negotiated.remote_address, negotiated.remote_port))
        self._answered(call, "200 OK sent")
        self._send()

    def _in_dialog(self, call: PhoneCall, request: SipRequest) -> None:
        method = request.method
        dialog = call.dialog
        assert dialog is not None  # the call was found by its dialog
        if method == "ACK":
            if call.state is CallState.CONFIRMED:
                self._note(call, "ACK received")
            return
        try:
            dialog.receive_request(request)
        except RemoteProtocolError as exc:
            self.respond(request, exc.status_hint or 500)
            return
        if method == "BYE":
            self.respond(request, 200)
            if call.state is not CallState.ENDING:
                # Else it crossed our BYE (RFC 3261 15): the call ends on our BYE's outcome.
                self._end(call, "hung up by the other side", by="peer")
        elif method == "INVITE":
            self.respond(request, 488)  # this phone does not change its media mid-call
        elif method in ("OPTIONS", "INFO"):
            self.respond(request, 200, extra=(("Allow", ALLOW),))
        else:
            self.respond(request, 501, extra=(("Allow", ALLOW),))

    def _response(self, call: PhoneCall, response: SipResponse, key: TransactionKey) -> None:
        status = response.status
        if key == call.bye_key:
            if status >= 200:
                self._end(call, "hung up by us", by="us")
            return
        if key != call.key or response.cseq.method != "INVITE":
            return  # the 200 to our CANCEL: the INVITE's 487 says the rest
        if status < 200:
            if status in (180, 183) and call.state in (CallState.CALLING, CallState.RINGING):
                self._transition(call, "provisional")
                self._note(call, f"{status} {response.reason}")
                if response.body and not call.media.started:
                    self._negotiate(call, response)  # early media: the caller hears ringback
            return
        if status < 300:
            self._success(call, response)
            return
        call.status = status
        ending = call.state is CallState.ENDING
        reason = "cancelled by us" if ending else f"refused: {status} {response.reason}"
        self._end(call, reason, by="us" if ending else "peer")

    def _success(self, call: PhoneCall, response: SipResponse) -> None:
        if call.dialog is not None:
            # A retransmitted 2xx: our ACK was lost (RFC 3261 13.2.2.4).
            if call.ack is not None:
                self.core.send_stateless(call.ack, self._hop(call))
            return
        try:
            dialog = Dialog.as_uac(call.invite, response, local_contact=call.contact)
        except RemoteProtocolError as exc:
            self._end(call, f"unusable answer: {exc}", by="peer")
            return
        call.dialog = dialog
        self._dialogs[dialog.id] = call
        call.ack = dialog.create_ack(call.invite.cseq.seq, self._via(call.transport))
        self.core.send_stateless(call.ack, self._hop(call))
        call.status = response.status
        if call.state is CallState.ENDING:
            # RFC 3261 9.1: the 2xx crossed our CANCEL; the call exists, so end it.
            self._bye(call)
            return
        if not call.media.started and not self._negotiate(call, response):
            self._transition(call, "hang_up")
            self._bye(call)
            return
        self._answered(call, f"{response.status} {response.reason}")

    def _negotiate(self, call: PhoneCall, response: SipResponse) -> bool:
        assert call.offer is not None
        try:
            negotiated = negotiate_answer(call.offer, SessionDescription.parse(response.body))
        except SdpError as exc:
            self._note(call, f"unusable SDP in {response.status}: {exc}")
            return False
        call.negotiated = negotiated
        self._talk(call, codec_of(negotiated), (negotiated.remote_address, negotiated.remote_port))
        return True

    def _failed(self, key: TransactionKey, reason: str) -> None:
        call = self._clients.get(key)
        if call is not None:
            if key == call.key:
                self._end(call, f"failed: {reason}", by=None)
            elif key == call.bye_key:
                self._end(call, f"hung up by us (BYE: {reason})", by="us")
            return
        call = self._servers.get(key)
        if call is not None and call.state is CallState.CONFIRMED:
            # RFC 3261 13.3.1.4: no ACK for our 2xx means the session must be ended with BYE.
            self._transition(call, "hang_up")
            self._bye(call)

    # -- helpers ---------------------------------------------------------------------------

    def _add(self, call: PhoneCall) -> None:
        self.calls.append(call)
        self._ports[call.rtp] = call

    def _transition(self, call: PhoneCall, event: CallInput) -> None:
        new = CALL_TRANSITIONS[call.state].get(event)
        if new is None:
            raise LocalProtocolError(
                f"call {call.call_id}: {event} is not allowed when {call.state}"
            )
        call.state = new

    def _talk(self, call: PhoneCall, codec: LegCodec, remote: Address) -> None:
        call.media.start(codec, remote)
        self._talking[call] = None

    def _answered(self, call: PhoneCall, what: str) -> None:
        self._transition(call, "answer")
        call.answered_at = self._clock()
        call.sound_before_answer = call.media.sound_seconds
        call.answered.set()
        self._note(call, what)

    def _bye(self, call: PhoneCall) -> None:
        dialog = call.dialog
        assert dialog is not None
        bye = dialog.create_request("BYE", self._via(call.transport))
        dialog.terminate()
        reliable = call.transport != "udp"
        call.bye_key = self.core.send_request(
            bye, self._hop(call), self._clock(), reliable=reliable
        )
        self._clients[call.bye_key] = call
        self._note(call, "BYE sent")

    def _end(self, call: PhoneCall, reason: str, *, by: Literal["us", "peer"] | None) -> None:
        if call.state is CallState.ENDED:
            return
        self._transition(call, "end")
        call.ended_at = self._clock()
        call.ended_by = by
        call.end_reason = reason
        self._talking.pop(call, None)
        self._ports.pop(call.rtp, None)
        call.rtp.close()
        call.ended.set()
        self._note(call, f"ended: {reason}")

    def _hop(self, call: PhoneCall) -> Address:
        """Where in-dialog requests go: the dialog's next hop when it is an address, else the peer.

        The next hop is the first route, else the peer's Contact (RFC 3261
        12.2.1.1), reached over the call's transport.
        """
        dialog = call.dialog
        if dialog is not None:
            with contextlib.suppress(SipParseError):
                host, port = uri_address(dialog.next_hop, call.transport)
                if is_ip_literal(host):
                    self.use_stream(call.transport, (host, port), dialog.next_hop)
                    return host, port
        return call.peer

    def _port(self, transport: Transport) -> int:
        """Our port for ``transport``: the TLS listener's over TLS (raises without one)."""
        if transport == "udp":
            return self.local[1]
        if self._streams is None:
            raise LocalProtocolError(f"phone {self.name} has no {transport.upper()} transport")
        if transport == "tcp":
            return self.local[1]
        port = self._streams.tls_port
        if port is None:
            raise LocalProtocolError(f"phone {self.name} has no certificate: no TLS")
        return port

    def _via(self, transport: Transport) -> Via:
        return Via(
            transport.upper(),
            self.local[0],
            self._port(transport),
            {"branch": new_branch(), "rport": None},
        )

    def _note(self, call: PhoneCall, what: str) -> None:
        call.log.append((self._clock(), what))
        log.debug("%s %s: %s", self.name, call.call_id, what)


# -- the asyncio adapter --------------------------------------------------------------------


async def _first_set(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


class _UdpPort:
    """One call's RTP socket, read with ``loop.add_reader`` like the media engine's legs."""

    def __init__(
        self,
        host: str,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[RtpPort, bytes, Address, float], None],
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((host, 0))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._loop = loop
        self._deliver = deliver
        host, port = sock.getsockname()[:2]
        self.local_address: Address = (host, port)
        loop.add_reader(sock.fileno(), self._on_readable)

    def send(self, packet: bytes, destination: Address) -> None:
        if self._sock.fileno() < 0:
            return
        # A datagram the kernel refuses is a datagram lost, which RTP lives with.
        with contextlib.suppress(OSError):
            self._sock.sendto(packet, destination)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    def _on_readable(self) -> None:
        now = self._loop.time()
        for _ in range(64):
            if self._sock.fileno() < 0:
                return
            try:
                data, address = self._sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error from an earlier send
            self._deliver(self, data, (address[0], address[1]), now)


class UserAgent:
    """A phone on a UDP port of ``host``: :class:`Phone` on real sockets and a media clock.

    Use it as an async context manager, or :meth:`start` and :meth:`stop`::

        async with UserAgent("buyer", script=AnswerScript(press="1")) as buyer:
            uri = buyer.uri()          # give this to whoever calls it

    With a ``certificate`` (PEM, its ``key`` in it or beside it) the phone
    also listens for TLS on a free port and can dial ``sips:`` URIs; the
    peers it connects to over TLS are checked against ``ca_file`` (else the
    system's CAs).
    """

    def __init__(
        self,
        name: str,
        *,
        host: str = "127.0.0.1",
        script: AnswerScript | None = None,
        voice: ToneSpec | None = None,
        timers: TimerConfig = DEFAULT_TIMERS,
        certificate: Path | None = None,
        key: Path | None = None,
        ca_file: Path | None = None,
    ) -> None:
        """Prepare the phone; nothing is bound before :meth:`start`."""
        self.name = name
        self.host = host
        self.script = script
        self.voice = voice
        self.timers = timers
        self.transport = TransportConfig(
            host=host,
            port=0,
            tls_port=0,
            tls_certificate=certificate,
            tls_key=key,
            tls_ca_file=ca_file,
        )
        """Where and how its SIP listens."""
        self._phone: Phone | None = None
        self._endpoint: SipEndpoint | None = None
        self._clock = MediaClock(self._tick)
        self._ports: set[_UdpPort] = set()

    @property
    def phone(self) -> Phone:
        """The phone's core; raises if the agent is not started."""
        if self._phone is None:
            raise LocalProtocolError(f"user agent {self.name} is not started")
        return self._phone

    @property
    def calls(self) -> list[PhoneCall]:
        """Every call placed or received, in order."""
        return self.phone.calls

    async def start(self) -> None:
        """Bind the SIP port (a free one) and start the media clock."""
        if self._endpoint is not None:
            raise LocalProtocolError(f"user agent {self.name} is already started")
        loop = asyncio.get_running_loop()
        core = TransactionLayer(self.timers)
        endpoint = self._endpoint = SipEndpoint(core, self._on_event, self.transport)
        await endpoint.start()
        self._phone = Phone(
            self.name,
            core,
            local=endpoint.udp_address,
            flush=endpoint.flush,
            clock=loop.time,
            open_rtp=self._open_rtp,
            script=self.script,
            voice=self.voice,
            streams=endpoint,
        )
        self._clock.start()

    async def stop(self) -> None:
        """Hang up the calls still going, then close every socket and stop the clock."""
        phone = self._phone
        if phone is not None:
            for call in phone.calls:
                phone.hang_up(call)
        await self._clock.stop()
        for port in list(self._ports):
            port.close()
        self._ports.clear()
        if self._endpoint is not None:
            await self._endpoint.stop()
            self._endpoint = None
        self._phone = None

    async def __aenter__(self) -> UserAgent:
        """Start the agent."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop the agent."""
        await self.stop()

    def uri(self, user: str | None = None, *, tls: bool = False) -> str:
        """A SIP URI that reaches this phone (``sips:`` at its TLS listener with ``tls``)."""
        return self.phone.uri(user, tls=tls)

    def dial(self, uri: str, *, caller: str) -> PhoneCall:
        """Call ``uri`` showing ``caller`` as the From user."""
        return self.phone.dial(uri, caller=caller)

    def hang_up(self, call: PhoneCall) -> None:
        """End ``call`` (BYE, CANCEL or 480, as it stands)."""
        self.phone.hang_up(call)

    async def hang_up_after(self, call: PhoneCall, seconds: float) -> None:
        """Wait for the answer, stay ``seconds`` on the line, hang up; return once it has ended."""
        await self.phone.hang_up_after(call, seconds)

    def _on_event(self, event: TransactionEvent) -> None:
        if self._phone is not None:
            self._phone.handle_event(event)

    def _tick(self, now: float) -> None:
        if self._phone is not None:
            self._phone.tick(now)

    def _open_rtp(self) -> RtpPort:
        port = _UdpPort(self.host, asyncio.get_running_loop(), self._deliver)
        self._ports.add(port)
        return port

    def _deliver(self, port: RtpPort, data: bytes, source: Address, now: float) -> None:
        if self._phone is not None:
            self._phone.receive_rtp(port, data, source, now)
