"""The B2BUA's mapping of flow commands onto SIP, with fakes of the media engine and endpoint.

The SIP core is the real sans-I/O transaction layer; what it queues is
recorded by a fake endpoint instead of being sent. Media legs, the store and
speech are fakes. No socket, no sleep: the runner's task is let run by
yielding to the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

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

CALLER: Address = ("127.0.0.1", 5071)
BUYER_URI = "sip:buyer@127.0.0.1:5080"
BUYER: Address = ("127.0.0.1", 5080)
NOW = 1_750_000_000.0
BUYER_SDP = (
    "v=0\no=buyer 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
    "m=audio 7000 RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\n"
)


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
    """Two fake legs relaying to each other, not recorded."""

    def __init__(self, caller: FakeLeg, buyer: FakeLeg) -> None:
        self.caller = caller
        self.buyer = buyer
        self.recorder: Path | None = None


class FakeMedia:
    """The parts of :class:`MediaEngine` the runner uses."""

    def __init__(self) -> None:
        self.legs: dict[str, FakeLeg] = {}
        self.bridges: list[tuple[str, str]] = []

    def open_leg(
        self, codec: LegCodec, *, remote: Address | None = None, on_event: Any = None, name: str
    ) -> FakeLeg:
        leg = FakeLeg(name, codec, 20000 + 2 * len(self.legs), on_event)
        leg.remote = remote
        self.legs[name.rsplit("/", 1)[1]] = leg
        return leg

    def close_leg(self, leg: FakeLeg) -> None:
        leg.closed = True

    def bridge(
        self, caller: FakeLeg, buyer: FakeLeg, *, record_to: Path | None = None
    ) -> FakeBridge:
        self.bridges.append((caller.ident, buyer.ident))
        bridge = caller.bridge = buyer.bridge = FakeBridge(caller, buyer)
        return bridge


class FakeBackend:
    """Routes with the real ``decide`` on empty counters; grants every reservation."""

    def __init__(self, configuration: Configuration) -> None:
        self.configuration = configuration
        self.entries: list[Entry] = []
        self.ended: list[str] = []

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
        pass

    async def persist(self, call_id: str, entry: Entry) -> None:
        self.entries.append(entry)

    async def recording_started(self, call_id: str, path: Path) -> None:
        pass

    async def call_ended(
        self, call_id: str, attributes: CallAttributes, record: CallRecord, *, outcome: str
    ) -> None:
        self.ended.append(outcome)


class FakePrompts(Prompts):
    """Silence for every prompt, without a speech engine."""

    def __init__(self) -> None:
        pass

    async def speech(self, text: str, voice: TtsVoice) -> Audio:
        return Audio.silence(0.2)

    async def recording(self, path: str) -> Audio:
        return Audio.silence(0.2)


class FakeEndpoint:
    """Sends nothing: records what the core queued and delivers its events."""

    def __init__(self, core: TransactionLayer) -> None:
        self.core = core
        self.sent: list[tuple[SipMessage, Address]] = []
        self.handler: Callable[[Any], None] = lambda event: None

    def flush(self) -> None:
        while True:
            for data, destination in self.core.messages_to_send():
                self.sent.append((parse_message(data), destination))
            event = self.core.next_event()
            if event is None:
                return
            self.handler(event)

    def take(self) -> list[tuple[SipMessage, Address]]:
        sent, self.sent = self.sent, []
        return sent


def configuration() -> Configuration:
    return Configuration.model_validate(
        {
            "buyers": [
                {
                    "id": "acme",
                    "conversion": {"revenue": "20.00", "buffer_seconds": 60},
                    "whisper": {"text": "Press 1.", "wait_seconds": 1.0, "plays": 1},
                    "targets": [{"id": "main", "destination": BUYER_URI}],
                }
            ],
            "campaigns": [{"id": "test", "routing": {"tiers": [{"buyers": [{"buyer": "acme"}]}]}}],
            "numbers": [{"number": "sales", "campaign": "test"}],
        }
    )


class Harness:
    """A B2BUA on fakes, and helpers to play the caller's and buyer's side."""

    def __init__(self, tmp_path: Path) -> None:
        self.core = TransactionLayer()
        self.endpoint = FakeEndpoint(self.core)
        self.media = FakeMedia()
        self.backend = FakeBackend(configuration())
        self.b2bua = B2bua(
            self.core,
            cast(MediaEngine, self.media),
            self.backend,
            FakePrompts(),
            self.backend.configuration,
            RunnerSettings(tmp_path, cancel_linger_seconds=0.0),
            local=("127.0.0.1", 5060),
            media_address="127.0.0.1",
            flush=self.endpoint.flush,
            clock=lambda: 0.0,
            wall=lambda: NOW,
        )
        self.endpoint.handler = self.b2bua.handle_event

    def receive(self, text: str, source: Address) -> None:
        data = text.replace("\n", "\r\n").encode()
        self.core.receive_datagram(data, source, 0.0)
        self.endpoint.flush()

    async def settle(self) -> None:
        """Let the call's task run until it waits for something."""
        for _ in range(50):
            await asyncio.sleep(0)

    def sent_to(self, address: Address) -> list[SipMessage]:
        """What was sent to ``address`` since the last look (the rest is dropped)."""
        return [message for message, destination in self.endpoint.take() if destination == address]


def invite(user: str = "sales", codecs: str = "8 0 101") -> str:
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


def statuses(messages: list[SipMessage]) -> list[int]:
    return [m.status for m in messages if isinstance(m, SipResponse)]


async def dial_buyer(harness: Harness) -> SipRequest:
    """A call arrives and the B2BUA dials the buyer: the INVITE it sent."""
    harness.receive(invite(), CALLER)
    await harness.settle()
    buyer_invite = harness.sent_to(BUYER)[0]
    assert isinstance(buyer_invite, SipRequest)
    return buyer_invite


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    # Calls still in progress are ended as on a server stop.
    for task in harness.b2bua.tasks:
        task.cancel()
    await asyncio.gather(*harness.b2bua.tasks, return_exceptions=True)


async def test_unknown_number_is_refused_with_404(harness: Harness) -> None:
    harness.receive(invite(user="nobody"), CALLER)
    assert statuses(harness.sent_to(CALLER)) == [404]
    assert harness.media.legs == {}


async def test_an_invite_without_from_tag_is_refused_with_400_before_any_call(
    harness: Harness,
) -> None:
    """RFC 3261 12.1.1: its answer at the bridge could make no dialog, after the buyer accepted."""
    harness.receive(invite().replace(";tag=caller", ""), CALLER)
    assert statuses(harness.sent_to(CALLER)) == [400]
    assert harness.media.legs == {}
    assert not harness.b2bua.runners


async def test_offer_without_a_common_codec_is_refused_with_488_and_stored(
    harness: Harness,
) -> None:
    harness.receive(invite(codecs="18"), CALLER)
    assert statuses(harness.sent_to(CALLER)) == [488]
    await harness.settle()
    assert [(entry.kind, entry.data.get("status")) for entry in harness.backend.entries] == [
        ("arrived", None),
        ("leg_end", "488"),
        ("ended", None),
    ]
    assert harness.backend.ended == ["refused"]
    assert harness.media.legs == {}
    assert not harness.b2bua.tasks


async def test_invite_gets_183_with_sdp_and_ringback_then_the_buyer_is_dialed(
    harness: Harness,
) -> None:
    harness.receive(invite(), CALLER)
    await harness.settle()
    sent = harness.endpoint.take()
    to_caller = [m for m, d in sent if d == CALLER]
    assert statuses(to_caller) == [100, 183]
    early = to_caller[1]
    assert b"m=audio 20000 RTP/AVP 8 101" in early.body
    assert harness.media.legs["A"].played == ["ringback"]
    assert harness.media.legs["A"].codec.encoding == "PCMA"
    to_buyer = [m for m, d in sent if d == BUYER]
    assert len(to_buyer) == 1
    request = to_buyer[0]
    assert isinstance(request, SipRequest)
    assert request.method == "INVITE"
    assert request.uri == BUYER_URI
    assert request.from_.uri.startswith("sip:+14155550123@")
    assert b"m=audio 20002 RTP/AVP 0 8 101" in request.body


async def test_busy_buyer_is_reported_and_the_caller_is_rejected_without_answer(
    harness: Harness,
) -> None:
    buyer_invite = await dial_buyer(harness)
    harness.receive(response_to(buyer_invite, 486, "Busy Here"), BUYER)
    await harness.settle()
    assert statuses(harness.sent_to(CALLER)) == [480]
    leg_end = next(e for e in harness.backend.entries if e.kind == "leg_end" and e.leg == "B1")
    assert leg_end.data["reason"] == "busy"
    assert leg_end.data["status"] == "486"
    assert harness.backend.ended == ["no_buyer"]


async def test_an_ended_call_leaves_no_route_and_its_dialog_answers_481(
    harness: Harness,
) -> None:
    buyer_invite = await dial_buyer(harness)
    harness.receive(response_to(buyer_invite, 486, "Busy Here"), BUYER)
    await harness.settle()
    rejection = harness.sent_to(CALLER)
    assert statuses(rejection) == [480]
    to_tag = rejection[0].to.tag
    assert to_tag is not None
    b2bua = harness.b2bua
    assert b2bua.runners == set()
    assert (b2bua._clients, b2bua._dialogs, b2bua._invites, b2bua._keys) == ({}, {}, {}, {})
    harness.receive(
        "BYE sip:sales@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-caller-bye\n"
        "From: <sip:+14155550123@127.0.0.1:5071>;tag=caller\n"
        f"To: <sip:sales@127.0.0.1:5060>;tag={to_tag}\n"
        "Call-ID: call-1\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n",
        CALLER,
    )
    assert statuses(harness.sent_to(CALLER)) == [481]


async def test_buyer_answer_is_acked_and_whispered_then_key_1_bridges_and_answers_caller(
    harness: Harness,
) -> None:
    buyer_invite = await dial_buyer(harness)
    harness.receive(response_to(buyer_invite, 200, "OK", BUYER_SDP), BUYER)
    await harness.settle()
    acks = harness.sent_to(BUYER)
    assert [m.method for m in acks if isinstance(m, SipRequest)] == ["ACK"]
    buyer = harness.media.legs["B1"]
    assert buyer.remote == ("127.0.0.1", 7000)
    assert buyer.codec.encoding == "PCMU"
    assert buyer.played == ["prompt"]
    assert harness.media.legs["A"].played == ["ringback"]

    buyer.on_event(DigitEvent("B1", "1", 0.0))
    await harness.settle()
    assert statuses(harness.sent_to(CALLER)) == [200]
    assert harness.media.bridges == [(harness.media.legs["A"].ident, buyer.ident)]
    kinds = [e.kind for e in harness.backend.entries]
    assert kinds.index("accept") < kinds.index("bridge")


async def test_buyer_bye_after_the_bridge_is_answered_and_the_caller_hung_up(
    harness: Harness,
) -> None:
    buyer_invite = await dial_buyer(harness)
    harness.receive(response_to(buyer_invite, 200, "OK", BUYER_SDP), BUYER)
    await harness.settle()
    harness.media.legs["B1"].on_event(DigitEvent("B1", "1", 0.0))
    await harness.settle()
    assert statuses(harness.sent_to(CALLER)) == [200]
    bye = (
        "BYE sip:callwhisper@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-buyer-bye\n"
        f"From: {buyer_invite.headers.get('To')};tag=buyer\n"
        f"To: {buyer_invite.headers.get('From')}\n"
        f"Call-ID: {buyer_invite.call_id}\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
    harness.receive(bye, BUYER)
    await harness.settle()
    sent = harness.endpoint.take()
    assert statuses([m for m, d in sent if d == BUYER]) == [200]
    to_caller = [m for m, d in sent if d == CALLER and isinstance(m, SipRequest)]
    assert [m.method for m in to_caller] == ["BYE"]
    assert harness.media.legs["B1"].closed
    assert harness.media.legs["A"].closed
    assert harness.backend.ended == ["connected"]  # hung up before the 60 s buffer


async def test_caller_on_hold_gets_recvonly_and_no_media_until_it_resumes(
    harness: Harness,
) -> None:
    """RFC 3264 6.1: a re-INVITE with sendonly is answered recvonly and we stop sending."""
    buyer_invite = await dial_buyer(harness)
    harness.receive(response_to(buyer_invite, 200, "OK", BUYER_SDP), BUYER)
    await harness.settle()
    harness.media.legs["B1"].on_event(DigitEvent("B1", "1", 0.0))
    await harness.settle()
    (answer,) = harness.sent_to(CALLER)
    caller = harness.media.legs["A"]
    for cseq, (offered, answered, sends) in enumerate(
        [("sendonly", "recvonly", False), ("sendrecv", "sendrecv", True)], start=2
    ):
        sdp = invite().split("\n\n", 1)[1] + f"a={offered}\n"
        body = sdp.replace("\n", "\r\n")
        harness.receive(
            "INVITE sip:callwhisper@127.0.0.1:5060 SIP/2.0\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-caller-{cseq}\n"
            "From: <sip:+14155550123@127.0.0.1:5071>;tag=caller\n"
            f"To: <sip:sales@127.0.0.1:5060>;tag={answer.to.tag}\n"
            f"Call-ID: call-1\nCSeq: {cseq} INVITE\nContact: <sip:caller@127.0.0.1:5071>\n"
            f"Max-Forwards: 70\nContent-Type: application/sdp\nContent-Length: {len(body)}\n\n"
            + sdp,
            CALLER,
        )
        await harness.settle()
        (reply,) = harness.sent_to(CALLER)
        assert statuses([reply]) == [200]
        assert f"a={answered}\r\n".encode() in reply.body
        assert caller.sends is sends


async def test_caller_cancel_while_ringing_cancels_the_buyer_leg(harness: Harness) -> None:
    buyer_invite = await dial_buyer(harness)
    harness.receive(response_to(buyer_invite, 180, "Ringing"), BUYER)
    await harness.settle()
    harness.receive(
        "CANCEL sip:sales@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-caller-1\n"
        "From: <sip:+14155550123@127.0.0.1:5071>;tag=caller\nTo: <sip:sales@127.0.0.1:5060>\n"
        "Call-ID: call-1\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n",
        CALLER,
    )
    await harness.settle()
    sent = harness.endpoint.take()
    assert statuses([m for m, d in sent if d == CALLER]) == [200, 487]
    requests = [m for m, d in sent if d == BUYER and isinstance(m, SipRequest)]
    assert [m.method for m in requests] == ["CANCEL"]
    assert harness.media.legs["B1"].closed
    assert harness.backend.ended == ["caller_hangup"]


async def test_options_is_answered_without_a_call(harness: Harness) -> None:
    harness.receive(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-ping\n"
        "From: <sip:probe@127.0.0.1>;tag=p\nTo: <sip:127.0.0.1>\n"
        "Call-ID: ping\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n",
        CALLER,
    )
    answers = harness.sent_to(CALLER)
    assert statuses(answers) == [200]
    assert "INVITE" in (answers[0].headers.get("Allow") or "")
