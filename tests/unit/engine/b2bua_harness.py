"""A B2BUA on fakes, and the SIP the caller and the buyer send it, for the ``test_b2bua*`` tests.

The SIP core is the real sans-I/O transaction layer; what it queues is
recorded by a fake endpoint instead of being sent. Media legs, the store,
speech and outbound TCP are fakes. No socket, no sleep: a call's task is let
run by yielding to the loop, and the flow's wall clock is a number the test
moves (:meth:`Harness.at`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, cast

from callwhisper.audio import Audio
from callwhisper.domain import CallAttributes, Configuration, RoutingCounters
from callwhisper.domain.state import Reservation
from callwhisper.domain.whisper import TtsVoice
from callwhisper.engine.b2bua import B2bua
from callwhisper.engine.backend import Prompts, utc
from callwhisper.engine.media import DigitReceived as DigitEvent
from callwhisper.engine.media import MediaEngine, MediaEvent
from callwhisper.engine.playback import LegCodec
from callwhisper.engine.runner import RunnerSettings
from callwhisper.flow import CallRecord, Entry
from callwhisper.routing import RoutingDecision, decide
from callwhisper.sip.message import SipMessage, SipRequest, SipResponse, parse_message
from callwhisper.sip.transaction import Address, TransactionLayer
from tests.unit.engine.fakes import FakeEndpoint

CALLER: Address = ("127.0.0.1", 5071)
BUYER_URI = "sip:buyer@127.0.0.1:5080"
BUYER: Address = ("127.0.0.1", 5080)
PROXY: Address = ("127.0.0.1", 5090)
"""A trunk's outbound proxy."""
LOCAL_END: Address = ("127.0.0.1", 40123)
"""Our end of a connection the B2BUA opens (FakeTcp)."""
NUMBER = "+14155550100"
"""A buyer's number, dialed through a trunk."""
NOW = 1_750_000_000.0
BUYER_SDP = (
    "v=0\no=buyer 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
    "m=audio 7000 RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\n"
)


# -- fakes --------------------------------------------------------------------------------


class FakeLeg:
    """A media leg that remembers what it was asked to play."""

    def __init__(self, name: str, codec: LegCodec, port: int, on_event: Any) -> None:
        self.ident = name
        self.codec = codec
        self.local_address = ("127.0.0.1", port)
        self.remote: Address | None = None
        self.on_event: Callable[[MediaEvent], None] = on_event
        self.closed = False
        self.bridge: object | None = None
        self.playing: int | None = None
        self.played: list[str] = []
        self.sends = True

    def set_remote(self, address: Address, *, relatch: bool = False) -> None:
        self.remote = address

    def play_ringback(self) -> int:
        self.played.append("ringback")
        self.playing = len(self.played)
        return self.playing

    def play(self, source: object, *, loop: bool = False) -> int:
        self.played.append("prompt")
        self.playing = len(self.played)
        return self.playing

    def stop_playback(self) -> None:
        self.playing = None


class FakeBridge:
    """Two fake legs relaying to each other; ``recorder`` is the file it records to, if any."""

    def __init__(self, caller: FakeLeg, buyer: FakeLeg, recorder: Path | None) -> None:
        self.caller = caller
        self.buyer = buyer
        self.recorder = recorder


class FakeMedia:
    """The parts of :class:`MediaEngine` the runner uses."""

    def __init__(self) -> None:
        self.legs: dict[str, FakeLeg] = {}
        self.bridges: list[tuple[str, str]] = []
        """The (caller, buyer) names of every bridge made, in order."""
        self.unbridged: list[FakeBridge] = []

    def open_leg(
        self, codec: LegCodec, *, remote: Address | None = None, on_event: Any = None, name: str
    ) -> FakeLeg:
        leg = FakeLeg(name, codec, 20000 + 2 * len(self.legs), on_event)
        leg.remote = remote
        self.legs[name.rsplit("/", 1)[1]] = leg
        return leg

    def close_leg(self, leg: FakeLeg) -> None:
        """Close the leg, ending its bridge as the engine does."""
        if isinstance(leg.bridge, FakeBridge):
            self.unbridge(leg.bridge)
        leg.closed = True

    def bridge(
        self, caller: FakeLeg, buyer: FakeLeg, *, record_to: Path | None = None
    ) -> FakeBridge:
        self.bridges.append((caller.ident, buyer.ident))
        bridge = caller.bridge = buyer.bridge = FakeBridge(caller, buyer, record_to)
        return bridge

    def unbridge(self, bridge: FakeBridge) -> None:
        self.unbridged.append(bridge)
        bridge.caller.bridge = bridge.buyer.bridge = None


class FakeBackend:
    """Routes with the real ``decide`` on empty counters; grants every reservation.

    Keeps what the store would be given: timeline entries, each call's
    outcome and final record, and where recordings go.
    """

    def __init__(self, configuration: Configuration) -> None:
        self.configuration = configuration
        self.entries: list[Entry] = []
        self.ended: list[str] = []
        self.records: list[CallRecord] = []
        self.recording_paths: list[Path] = []
        self.finished: list[str] = []
        """The reservations released, in order."""

    async def call_started(self, call_id: str, attributes: CallAttributes, at: float) -> None:
        pass

    async def route(self, call_id: str, attributes: CallAttributes, at: float) -> RoutingDecision:
        return decide(self.configuration, attributes, RoutingCounters(), utc(at))

    async def routed(self, call_id: str, decision: RoutingDecision) -> None:
        pass

    async def reserve(self, call_id: str, reservation: Reservation) -> str | None:
        return None

    async def commit(self, reservation_id: str, metrics: Any, revenue: Any) -> None:
        pass

    async def finish(self, reservation_id: str) -> None:
        self.finished.append(reservation_id)

    async def persist(self, call_id: str, entry: Entry) -> None:
        self.entries.append(entry)

    async def recording_started(self, call_id: str, path: Path) -> None:
        self.recording_paths.append(path)

    async def call_ended(
        self, call_id: str, attributes: CallAttributes, record: CallRecord, *, outcome: str
    ) -> None:
        self.ended.append(outcome)
        self.records.append(record)


class FakePrompts(Prompts):
    """Silence for every prompt, without a speech engine."""

    def __init__(self) -> None:
        pass

    async def speech(self, text: str, voice: TtsVoice) -> Audio:
        return Audio.silence(0.2)

    async def recording(self, path: str) -> Audio:
        return Audio.silence(0.2)


class FakeTcp:
    """Outbound TCP and TLS as the endpoint offers them: records connections, or refuses them.

    ``tls_port`` is our TLS listener's (None: no certificate); a connection
    the B2BUA opens is ``LOCAL_END`` on our side. ``refuse`` fails every
    connection, as a refused one or a certificate that does not verify would.
    """

    def __init__(self, *, refuse: bool = False, tls_port: int | None = None) -> None:
        self.refuse = refuse
        self.tls_port = tls_port
        self.opened: list[Address] = []
        """Where connections were opened, in order."""
        self.tcp: set[Address] = set()
        """Destinations sent to over TCP."""
        self.tls: dict[Address, str] = {}
        """Destinations sent to over TLS, with the name their certificate must bear."""
        self.open: set[Address] = set()
        """Connections open now, opened by either side (a test closes one by removing it)."""

    async def connect(
        self, destination: Address, *, tls: bool = False, server_name: str | None = None
    ) -> Address:
        if tls:
            self.use_tls(destination, server_name)
        else:
            self.use_tcp(destination)
        if self.refuse:
            raise ConnectionRefusedError(f"connection to {destination} refused")
        self.opened.append(destination)
        self.open.add(destination)
        return LOCAL_END

    def use_tcp(self, destination: Address) -> None:
        self.tcp.add(destination)

    def use_tls(self, destination: Address, server_name: str | None = None) -> None:
        self.tls[destination] = server_name or destination[0]

    def connected(self, destination: Address) -> bool:
        return destination in self.open


# -- configuration ------------------------------------------------------------------------


def document(
    target: dict[str, Any] | None = None, trunk: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One buyer with one target (``BUYER_URI`` unless given) and trunk, the number ``sales``."""
    return {
        "trunks": [trunk] if trunk else [],
        "buyers": [
            {
                "id": "acme",
                "conversion": {"revenue": "20.00", "buffer_seconds": 60},
                "whisper": {"text": "Press 1.", "wait_seconds": 1.0, "plays": 1},
                "targets": [{"id": "main", **(target or {"destination": BUYER_URI})}],
            }
        ],
        "campaigns": [{"id": "test", "routing": {"tiers": [{"buyers": [{"buyer": "acme"}]}]}}],
        "numbers": [{"number": "sales", "campaign": "test"}],
    }


def default_configuration() -> Configuration:
    """The buyer at ``BUYER_URI``, reached directly."""
    return Configuration.model_validate(document())


# -- the harness ----------------------------------------------------------------------------


class Harness:
    """A B2BUA on fakes, and helpers to play the caller's and buyer's side.

    Use it as an async context manager: on exit the calls still in progress
    are ended as on a server stop.
    """

    def __init__(
        self,
        tmp_path: Path,
        configuration: Configuration | dict[str, Any] | None = None,
        *,
        media: FakeMedia | None = None,
        tcp: FakeTcp | None = None,
        cancel_linger_seconds: float = 0.0,
    ) -> None:
        """A B2BUA serving ``configuration`` (the default one when None).

        By default an ended call waits for no final response to its CANCELs.
        """
        if isinstance(configuration, dict):
            configuration = Configuration.model_validate(configuration)
        self.clock = NOW
        """The flow's wall clock, moved by :meth:`at`."""
        self.core = TransactionLayer()
        self.endpoint = FakeEndpoint(self.core)
        self.media = media or FakeMedia()
        self.backend = FakeBackend(configuration or default_configuration())
        self.tcp = tcp or FakeTcp()
        self.b2bua = B2bua(
            self.core,
            cast(MediaEngine, self.media),
            self.backend,
            FakePrompts(),
            self.backend.configuration,
            RunnerSettings(tmp_path, cancel_linger_seconds=cancel_linger_seconds),
            local=("127.0.0.1", 5060),
            media_address="127.0.0.1",
            flush=self.endpoint.flush,
            clock=lambda: 0.0,
            wall=lambda: self.clock,
            tcp=self.tcp,
        )
        self.endpoint.handler = self.b2bua.handle_event

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """End the calls still in progress, as on a server stop."""
        for task in self.b2bua.tasks:
            task.cancel()
        await asyncio.gather(*self.b2bua.tasks, return_exceptions=True)

    def at(self, offset: float) -> None:
        """Move the wall clock to ``offset`` seconds after ``NOW``, when the call arrives."""
        self.clock = NOW + offset

    def receive(self, text: str, source: Address) -> None:
        """A datagram from ``source``: ``text`` with LF line ends."""
        data = text.replace("\n", "\r\n").encode()
        self.core.receive_datagram(data, source, 0.0)
        self.endpoint.flush()

    def receive_stream(self, text: str, source: Address) -> None:
        """A message framed from a TCP connection."""
        message = parse_message(text.replace("\n", "\r\n").encode(), stream=True)
        self.core.receive_message(message, source, 0.0, reliable=True)
        self.endpoint.flush()

    async def settle(self) -> None:
        """Let the call's task run until it waits for something."""
        for _ in range(50):
            await asyncio.sleep(0)

    def sent_to(self, address: Address) -> list[SipMessage]:
        """What was sent to ``address`` since the last look (the rest is dropped)."""
        return [message for message, destination in self.endpoint.take() if destination == address]

    def leg_end(self, leg: str) -> dict[str, str]:
        """The data of ``leg``'s stored ``leg_end`` entry (there must be exactly one)."""
        [end] = [e for e in self.backend.entries if e.kind == "leg_end" and e.leg == leg]
        return dict(end.data)

    async def dial(self, destination: Address = BUYER) -> SipRequest:
        """A call arrives: the one INVITE the B2BUA sent to ``destination``."""
        self.receive(invite(), CALLER)
        await self.settle()
        sent = self.sent_to(destination)
        assert len(sent) == 1, sent
        request = sent[0]
        assert isinstance(request, SipRequest)
        assert request.method == "INVITE"
        return request

    async def bridge(self) -> tuple[SipRequest, SipResponse]:
        """A call arrives, the buyer answers and presses 1: its INVITE, and the caller's 200."""
        buyer_invite = await self.dial()
        self.receive(response_to(buyer_invite, 200, "OK", BUYER_SDP), BUYER)
        await self.settle()
        self.media.legs["B1"].on_event(DigitEvent("B1", "1", 0.0))
        await self.settle()
        answer = self.sent_to(CALLER)
        assert statuses(answer) == [200]
        assert isinstance(answer[0], SipResponse)
        return buyer_invite, answer[0]


MakeHarness = Callable[..., Harness]
"""The ``make_harness`` fixture: ``make_harness(configuration, tcp=None)``, ended at teardown."""


# -- what the caller and the buyer send ------------------------------------------------------


def invite(user: str = "sales", codecs: str = "8 0 101") -> str:
    """The caller's INVITE to ``user``, offering ``codecs`` (payload types)."""
    sdp = (
        "v=0\no=caller 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
        f"m=audio 6000 RTP/AVP {codecs}\na=rtpmap:8 PCMA/8000\na=rtpmap:0 PCMU/8000\n"
        "a=rtpmap:101 telephone-event/8000\na=rtpmap:18 G729/8000\n"
    )
    body = sdp.replace("\n", "\r\n")
    return (
        f"INVITE sip:{user}@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-caller-1\n"
        "From: <sip:+14155550123@127.0.0.1:5071>;tag=caller\n"
        f"To: <sip:{user}@127.0.0.1:5060>\n"
        "Call-ID: call-1\nCSeq: 1 INVITE\nContact: <sip:caller@127.0.0.1:5071>\n"
        "Max-Forwards: 70\nContent-Type: application/sdp\n"
        f"Content-Length: {len(body)}\n\n" + sdp
    )


def response_to(request: SipRequest, status: int, reason: str, body: str = "") -> str:
    """The buyer's response to ``request``, with its To tag and its Contact ``BUYER_URI``."""
    headers = "\n".join(
        f"{name}: {value}" for name, value in request.headers if name in ("Via", "From", "Call-ID")
    )
    to = request.headers.get("To")
    cseq = request.headers.get("CSeq")
    payload = body.replace("\n", "\r\n")
    extra = "Content-Type: application/sdp\n" if body else ""
    return (
        f"SIP/2.0 {status} {reason}\n{headers}\nTo: {to};tag=buyer\nCSeq: {cseq}\n"
        f"Contact: <{BUYER_URI}>\n{extra}Content-Length: {len(payload)}\n\n" + body
    )


def challenge(request: SipRequest, status: int, header: str) -> str:
    """A 401 or 407 to ``request`` carrying ``header`` (WWW- or Proxy-Authenticate)."""
    reason = "Unauthorized" if status == 401 else "Proxy Authentication Required"
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    return response_to(request, status, reason).replace(
        "Content-Length: 0", f"{name}: {header}\nContent-Length: 0"
    )


def caller_bye(to_tag: str | None) -> str:
    """The caller's BYE after we answered it with ``to_tag``."""
    return (
        "BYE sip:callwhisper@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-caller-bye\n"
        "From: <sip:+14155550123@127.0.0.1:5071>;tag=caller\n"
        f"To: <sip:sales@127.0.0.1:5060>;tag={to_tag}\n"
        "Call-ID: call-1\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )


def caller_cancel() -> str:
    """The caller cancels its INVITE."""
    return (
        "CANCEL sip:sales@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-caller-1\n"
        "From: <sip:+14155550123@127.0.0.1:5071>;tag=caller\nTo: <sip:sales@127.0.0.1:5060>\n"
        "Call-ID: call-1\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )


def buyer_bye(request: SipRequest, via: str = "127.0.0.1:5080") -> str:
    """The buyer (or the line at ``via``) hangs up the dialog of our INVITE ``request``."""
    return (
        "BYE sip:callwhisper@127.0.0.1:5060 SIP/2.0\n"
        f"Via: SIP/2.0/UDP {via};branch=z9hG4bK-buyer-bye\n"
        f"From: {request.headers.get('To')};tag=buyer\n"
        f"To: {request.headers.get('From')}\n"
        f"Call-ID: {request.call_id}\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )


def statuses(messages: list[SipMessage]) -> list[int]:
    """The status codes of the responses among ``messages``."""
    return [m.status for m in messages if isinstance(m, SipResponse)]


def requests(messages: list[SipMessage]) -> list[str]:
    """The methods of the requests among ``messages``."""
    return [m.method for m in messages if isinstance(m, SipRequest)]
