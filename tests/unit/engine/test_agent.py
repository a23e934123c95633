"""Our own user agent: its RTP core, its answer script and its SIP behaviour, without sockets.

The SIP core is the real sans-I/O transaction layer; what it queues is
recorded instead of sent, and the other side's messages are fed to it as
datagrams. RTP ports are fakes that record what is sent. Time is a number.
"""

from __future__ import annotations

import asyncio

import pytest

from callwhisper.engine.agent import (
    AnswerScript,
    CallState,
    Phone,
    PhoneCall,
    PhoneMedia,
    is_sound,
)
from callwhisper.engine.playback import PCMU, LegCodec
from callwhisper.errors import LocalProtocolError
from callwhisper.media.dtmf import DigitEnded, DigitStarted, DtmfReceiver, DtmfSender
from callwhisper.media.g711 import ULAW_SILENCE, ulaw_encode
from callwhisper.media.rtp import OutgoingStream, RtpPacket
from callwhisper.media.sdp import SessionDescription
from callwhisper.media.tones import ToneSource, ToneSpec
from callwhisper.sip.message import (
    SipMessage,
    SipRequest,
    SipResponse,
    make_response,
)
from callwhisper.sip.transaction import Address, TransactionLayer
from tests.unit.engine.b2bua_harness import FakeTcp
from tests.unit.engine.fakes import FakeEndpoint

PEER: Address = ("127.0.0.1", 5060)
PEER_RTP: Address = ("127.0.0.1", 40000)
LOCAL: Address = ("127.0.0.1", 5080)
TONE = ToneSpec((600.0,), (1000, 0), level_dbm0=-20.0)
SILENCE = bytes([ULAW_SILENCE]) * 160


def tone_frame(level_dbm0: float) -> bytes:
    return ToneSource(ToneSpec((1000.0,), (1000, 0), level_dbm0), encode=ulaw_encode).frame(0)


def rtp(payload: bytes, seq: int, payload_type: int = 0, ssrc: int = 7) -> bytes:
    return RtpPacket(payload_type, seq, seq * 160, ssrc, payload).serialize()


# -- PhoneMedia ---------------------------------------------------------------------------


def test_a_frame_of_tone_is_sound_and_silence_or_a_faint_hiss_is_not() -> None:
    assert is_sound(tone_frame(-20.0), "PCMU")
    assert not is_sound(tone_frame(-50.0), "PCMU")
    assert not is_sound(SILENCE, "PCMU")
    assert not is_sound(b"", "PCMU")


def test_media_sends_nothing_before_the_offer_answer_tells_where() -> None:
    media = PhoneMedia(TONE)
    assert media.tick(0.0) is None
    assert media.receive(rtp(SILENCE, 1), PEER_RTP, 0.0) == []
    assert media.ignored == 1


def test_media_sends_its_voice_in_the_negotiated_codec_every_tick() -> None:
    media = PhoneMedia(TONE)
    media.start(LegCodec("PCMA", 8), PEER_RTP)
    packets = [RtpPacket.parse(media.tick(0.02 * n) or b"") for n in range(3)]
    assert [p.payload_type for p in packets] == [8, 8, 8]
    assert [p.marker for p in packets] == [True, False, False]
    assert [(p.sequence_number - packets[0].sequence_number) % 65536 for p in packets] == [0, 1, 2]
    assert [(p.timestamp - packets[0].timestamp) % 2**32 for p in packets] == [0, 160, 320]
    assert all(is_sound(p.payload, "PCMA") for p in packets)
    assert media.destination == PEER_RTP


def test_a_silent_phone_sends_silence() -> None:
    media = PhoneMedia()
    media.start(PCMU, PEER_RTP)
    assert RtpPacket.parse(media.tick(0.0) or b"").payload == SILENCE


def test_a_pressed_key_goes_out_as_one_rfc_4733_event_then_the_voice_resumes() -> None:
    media = PhoneMedia(TONE)
    media.start(PCMU, PEER_RTP)
    media.tick(0.0)
    media.press("1")
    packets = [RtpPacket.parse(media.tick(0.02 * n) or b"") for n in range(1, 11)]
    events = [p for p in packets if p.payload_type == 101]
    assert len(events) == 8  # 6 updates of 20 ms (the last one the end), the end sent 3 times
    assert packets[-2].payload_type == packets[-1].payload_type == 0
    receiver = DtmfReceiver()
    heard = [e for p in events for e in receiver.receive(p, 0.0)]
    assert heard == [
        DigitStarted("1", events[0].timestamp),
        DigitEnded("1", events[0].timestamp, 960, 120),
    ]


def test_keys_cannot_be_pressed_before_media_nor_without_telephone_events() -> None:
    media = PhoneMedia()
    with pytest.raises(LocalProtocolError, match="no media yet"):
        media.press("1")
    media.start(LegCodec("PCMU", 0, None), PEER_RTP)
    with pytest.raises(LocalProtocolError, match="telephone-events"):
        media.press("1")
    with pytest.raises(LocalProtocolError, match="not a DTMF digit"):
        PhoneMedia().press("x")


def test_media_counts_frames_heard_and_which_were_sound() -> None:
    media = PhoneMedia()
    media.start(PCMU, PEER_RTP)
    loud = tone_frame(-20.0)
    for seq, payload in enumerate([SILENCE, loud, loud, SILENCE]):
        assert media.receive(rtp(payload, seq), PEER_RTP, 0.02 * seq) == []
    assert (media.frames_heard, media.sound_frames) == (4, 2)
    assert media.sound_seconds == pytest.approx(0.04)


def test_media_reports_each_key_the_peer_presses_once() -> None:
    media = PhoneMedia()
    media.start(PCMU, PEER_RTP)
    sender = DtmfSender(OutgoingStream(9, 1, 1000), 101, "5", duration_ms=60)
    keys = []
    n = 0
    while (packet := sender.tick(0.02 * n)) is not None:
        keys += media.receive(packet, PEER_RTP, 0.02 * n)
        n += 1
    assert keys == ["5"]
    assert media.keys_heard == ["5"]


def test_media_ignores_other_sources_garbage_and_unknown_payloads() -> None:
    media = PhoneMedia()
    media.start(PCMU, PEER_RTP)
    media.receive(rtp(SILENCE, 1), PEER_RTP, 0.0)
    media.receive(rtp(tone_frame(-20.0), 2), ("127.0.0.1", 40002), 0.02)  # not the latched peer
    media.receive(b"\x00garbage", PEER_RTP, 0.04)
    media.receive(rtp(SILENCE, 3, payload_type=96), PEER_RTP, 0.06)
    assert (media.frames_heard, media.sound_frames, media.ignored) == (1, 0, 3)


# -- AnswerScript -----------------------------------------------------------------------------


def test_a_voicemail_box_never_presses() -> None:
    assert AnswerScript().key_to_press(60.0, pressed=False) is None


def test_a_buyer_presses_once_after_hearing_enough_of_the_whisper() -> None:
    script = AnswerScript(press="1", press_after_sound=1.0)
    assert script.key_to_press(0.98, pressed=False) is None
    assert script.key_to_press(1.0, pressed=False) == "1"
    assert script.key_to_press(2.0, pressed=True) is None


def test_a_script_refuses_a_key_that_is_not_a_digit_and_negative_waits() -> None:
    with pytest.raises(LocalProtocolError, match="not a DTMF digit"):
        AnswerScript(press="x")
    with pytest.raises(ValueError, match="must not be negative"):
        AnswerScript(ring_seconds=-1.0)


# -- Phone: SIP --------------------------------------------------------------------------------


class FakePort:
    """An RTP port that records what is sent."""

    def __init__(self, port: int) -> None:
        self.local_address: Address = ("127.0.0.1", port)
        self.sent: list[tuple[bytes, Address]] = []
        self.closed = False

    def send(self, packet: bytes, destination: Address) -> None:
        self.sent.append((packet, destination))

    def close(self) -> None:
        self.closed = True


class Harness:
    """A phone on the real transaction layer, with the far side played by hand."""

    def __init__(self, script: AnswerScript | None = None, streams: FakeTcp | None = None) -> None:
        self.now = 100.0
        self.core = TransactionLayer()
        self.endpoint = FakeEndpoint(self.core)
        self.ports: list[FakePort] = []
        self.streams = streams
        self.phone = Phone(
            "buyer",
            self.core,
            local=LOCAL,
            flush=self.endpoint.flush,
            clock=lambda: self.now,
            open_rtp=self.open_rtp,
            script=script,
            streams=streams,
        )
        self.endpoint.handler = self.phone.handle_event

    @property
    def sent(self) -> list[tuple[SipMessage, Address]]:
        """What was sent since the last :meth:`take`, and where."""
        return self.endpoint.sent

    def open_rtp(self) -> FakePort:
        port = FakePort(30000 + 2 * len(self.ports))
        self.ports.append(port)
        return port

    def feed(self, message: SipMessage | str) -> None:
        data = bytes(message) if isinstance(message, SipMessage) else message.encode()
        self.core.receive_datagram(data, PEER, self.now)
        self.endpoint.flush()

    def take(self) -> list[SipMessage]:
        return [message for message, _ in self.endpoint.take()]

    def statuses(self) -> list[int]:
        return [m.status for m in self.take() if isinstance(m, SipResponse)]


OFFER = (
    "v=0\r\no=server 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
)


def invite(
    body: str = OFFER, branch: str = "z9hG4bK-1", to_tag: str = "", method: str = "INVITE"
) -> str:
    to = "<sip:buyer@127.0.0.1:5080>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:buyer@127.0.0.1:5080 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:+14155550123@127.0.0.1>;tag=caller\r\n"
        f"To: {to}\r\n"
        "Call-ID: call-1@127.0.0.1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Contact: <sip:callwhisper@127.0.0.1:5060>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )


def in_dialog(method: str, to_tag: str, cseq: int, branch: str) -> str:
    return (
        f"{method} sip:buyer@127.0.0.1:5080 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:+14155550123@127.0.0.1>;tag=caller\r\n"
        f"To: <sip:buyer@127.0.0.1:5080>;tag={to_tag}\r\n"
        "Call-ID: call-1@127.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )


def state(call: PhoneCall) -> CallState:
    """The call's state, read afresh (mypy would keep the narrowing of an earlier assert)."""
    return call.state


def answered_call(h: Harness) -> tuple[PhoneCall, SipResponse]:
    h.feed(invite())
    responses = [m for m in h.take() if isinstance(m, SipResponse)]
    (call,) = h.phone.calls
    return call, responses[-1]


def test_an_incoming_call_rings_then_is_answered_with_an_sdp_answer() -> None:
    h = Harness(AnswerScript())
    call, ok = answered_call(h)
    assert ok.status == 200
    answer = SessionDescription.parse(ok.body)
    assert answer.media[0].port == 30000
    assert answer.media[0].formats == ("0", "101")
    assert ok.headers.get("Contact") == "<sip:buyer@127.0.0.1:5080>"
    assert state(call) is CallState.CONFIRMED
    assert call.answered.is_set()
    assert call.media.destination == PEER_RTP
    assert call.media.codec == PCMU


def test_an_incoming_call_gets_180_before_the_200_with_the_same_to_tag() -> None:
    h = Harness(AnswerScript())
    h.feed(invite())
    responses = [m for m in h.take() if isinstance(m, SipResponse)]
    assert [r.status for r in responses] == [180, 200]
    assert responses[0].to.tag == responses[1].to.tag is not None


def test_the_buyer_presses_its_key_once_it_has_heard_the_whisper() -> None:
    h = Harness(AnswerScript(press="1", press_after_sound=0.06))
    call, _ = answered_call(h)
    port = h.ports[0]
    loud = tone_frame(-20.0)
    for seq in range(2):
        h.phone.receive_rtp(port, rtp(loud, seq), PEER_RTP, h.now)
    assert call.keys_pressed == []
    h.phone.receive_rtp(port, rtp(loud, 2), PEER_RTP, h.now)
    h.phone.receive_rtp(port, rtp(loud, 3), PEER_RTP, h.now)
    assert call.keys_pressed == ["1"]
    h.phone.tick(h.now)
    packet, destination = port.sent[-1]
    assert RtpPacket.parse(packet).payload_type == 101
    assert destination == PEER_RTP


def test_a_buyer_whose_peer_refuses_telephone_events_cannot_press() -> None:
    h = Harness(AnswerScript(press="1", press_after_sound=0.0))
    h.feed(invite(OFFER.replace(" 0 8 101", " 0 8")))
    (call,) = h.phone.calls
    h.phone.receive_rtp(h.ports[0], rtp(tone_frame(-20.0), 1), PEER_RTP, h.now)
    assert call.keys_pressed == []
    assert state(call) is CallState.CONFIRMED


def test_a_voicemail_box_only_listens() -> None:
    h = Harness(AnswerScript())
    call, _ = answered_call(h)
    for seq in range(100):
        h.phone.receive_rtp(h.ports[0], rtp(tone_frame(-20.0), seq), PEER_RTP, h.now)
    assert call.keys_pressed == []
    assert call.media.sound_seconds == pytest.approx(2.0)


def test_a_bye_from_the_other_side_is_answered_and_ends_the_call() -> None:
    h = Harness(AnswerScript())
    call, ok = answered_call(h)
    h.feed(in_dialog("ACK", ok.to.tag or "", 1, "z9hG4bK-ack"))
    h.now += 3.0
    h.feed(in_dialog("BYE", ok.to.tag or "", 2, "z9hG4bK-bye"))
    assert h.statuses() == [200]
    assert state(call) is CallState.ENDED
    assert call.ended_by == "peer"
    assert call.talk_seconds == pytest.approx(3.0)
    assert h.ports[0].closed
    assert [what for _, what in call.log][-2:] == [
        "ACK received",
        "ended: hung up by the other side",
    ]


def test_a_bye_crossing_ours_is_answered_and_the_call_ends_on_our_bye() -> None:
    """RFC 3261 15: both sides hang up at once; each BYE gets its 200."""
    h = Harness(AnswerScript())
    call, ok = answered_call(h)
    h.phone.hang_up(call)
    (bye,) = h.take()
    assert isinstance(bye, SipRequest)
    h.feed(in_dialog("BYE", ok.to.tag or "", 2, "z9hG4bK-bye"))
    assert h.statuses() == [200]
    assert state(call) is CallState.ENDING
    h.feed(make_response(bye, 200))
    assert state(call) is CallState.ENDED
    assert (call.ended_by, call.end_reason) == ("us", "hung up by us")


def test_our_bye_follows_the_route_the_callers_proxy_recorded() -> None:
    """RFC 3261 12.2.1.1: the first route is the next hop, with a Route header for it."""
    h = Harness(AnswerScript())
    route = "<sip:127.0.0.1:5099;lr>"
    h.feed(invite().replace("Max-Forwards", f"Record-Route: {route}\r\nMax-Forwards"))
    (call,) = h.phone.calls
    assert state(call) is CallState.CONFIRMED
    h.take()
    h.phone.hang_up(call)
    ((bye, destination),) = h.sent
    assert isinstance(bye, SipRequest)
    assert destination == ("127.0.0.1", 5099)
    assert (bye.method, bye.uri) == ("BYE", "sip:callwhisper@127.0.0.1:5060")
    assert bye.headers.get_all("Route") == [route]


async def test_an_incoming_call_cancelled_while_ringing_ends_unanswered() -> None:
    h = Harness(AnswerScript(ring_seconds=30.0))
    h.feed(invite())
    assert h.statuses() == [180]
    (call,) = h.phone.calls
    h.feed(invite(body="", method="CANCEL"))
    assert sorted(h.statuses()) == [200, 487]
    assert (call.state, call.status, call.ended_by) == (CallState.ENDED, 487, "peer")
    assert call.answered_at is None
    assert h.ports[0].closed


def test_a_phone_without_an_answer_script_is_busy() -> None:
    h = Harness()
    h.feed(invite())
    assert h.statuses() == [486]
    assert h.phone.calls == []


def test_requests_for_an_unknown_dialog_get_481() -> None:
    h = Harness(AnswerScript())
    h.feed(in_dialog("BYE", "nobody", 2, "z9hG4bK-stray"))
    assert h.statuses() == [481]


def test_an_offer_without_a_common_codec_gets_488() -> None:
    h = Harness(AnswerScript())
    h.feed(invite(OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP 9").replace("a=rtpmap:0", "a=x:0")))
    assert h.statuses() == [488]
    assert h.phone.calls == []


def test_an_invite_that_could_make_no_dialog_gets_400() -> None:
    h = Harness(AnswerScript())
    h.feed(invite().replace(";tag=caller", ""))
    assert h.statuses() == [400]
    assert h.phone.calls == []


def test_info_and_options_in_a_call_get_200_and_another_method_501() -> None:
    h = Harness(AnswerScript())
    call, ok = answered_call(h)
    answers = []
    for cseq, method in enumerate(["INFO", "OPTIONS", "NOTIFY"], start=2):
        h.feed(in_dialog(method, ok.to.tag or "", cseq, f"z9hG4bK-{cseq}"))
        (reply,) = h.take()
        assert isinstance(reply, SipResponse)
        answers.append((method, reply.status, reply.headers.get("Allow")))
    allow = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
    assert answers == [("INFO", 200, allow), ("OPTIONS", 200, allow), ("NOTIFY", 501, allow)]
    assert state(call) is CallState.CONFIRMED


def test_a_reinvite_is_refused_and_the_call_goes_on() -> None:
    h = Harness(AnswerScript())
    call, ok = answered_call(h)
    reinvite = invite(branch="z9hG4bK-re", to_tag=ok.to.tag or "")
    h.feed(reinvite.replace("CSeq: 1 INVITE", "CSeq: 2 INVITE"))
    assert h.statuses() == [488]
    assert state(call) is CallState.CONFIRMED


# -- Phone: placing calls ------------------------------------------------------------------


def dial(h: Harness) -> tuple[PhoneCall, SipRequest]:
    call = h.phone.dial("sip:+18005550100@127.0.0.1:5060", caller="+14155550123")
    (sent,) = h.take()
    assert isinstance(sent, SipRequest)
    return call, sent


def answer_sdp(port: int = 40000) -> bytes:
    return OFFER.replace("40000", str(port)).replace(" 0 8 101", " 0 101").encode()


def test_dialing_sends_an_invite_with_our_offer_to_the_uri() -> None:
    h = Harness()
    call, sent = dial(h)
    assert sent.method == "INVITE"
    assert sent.uri == "sip:+18005550100@127.0.0.1:5060"
    assert sent.from_.uri == "sip:+14155550123@127.0.0.1:5080"
    offer = SessionDescription.parse(sent.body)
    assert offer.media[0].port == 30000
    assert offer.media[0].formats == ("0", "8", "101")
    assert state(call) is CallState.CALLING


def test_early_media_starts_the_media_then_the_200_is_acked_and_the_call_confirmed() -> None:
    h = Harness()
    call, sent = dial(h)
    h.feed(make_response(sent, 180, to_tag="srv"))
    assert state(call) is CallState.RINGING
    assert not call.media.started
    h.feed(
        make_response(sent, 183, to_tag="srv", body=answer_sdp(), content_type="application/sdp")
    )
    assert call.media.destination == PEER_RTP
    h.phone.receive_rtp(h.ports[0], rtp(tone_frame(-20.0), 1), PEER_RTP, h.now)
    h.now += 2.0
    ok = make_response(
        sent, 200, to_tag="srv", body=answer_sdp(), content_type="application/sdp",
        contact="<sip:callwhisper@127.0.0.1:5070>",
    )  # fmt: skip
    h.feed(ok)
    ack, destination = h.sent[-1]
    assert isinstance(ack, SipRequest)
    assert ack.method == "ACK"
    assert destination == ("127.0.0.1", 5070)
    assert state(call) is CallState.CONFIRMED
    assert call.sound_before_answer == pytest.approx(0.02)
    assert call.answered_at == 102.0


def test_hanging_up_an_answered_call_sends_bye_and_ends_on_its_200() -> None:
    h = Harness()
    call, sent = dial(h)
    h.feed(
        make_response(sent, 200, to_tag="srv", body=answer_sdp(), content_type="application/sdp")
    )
    h.take()
    h.phone.hang_up(call)
    (bye,) = h.take()
    assert isinstance(bye, SipRequest)
    assert bye.method == "BYE"
    assert state(call) is CallState.ENDING
    h.feed(make_response(bye, 200))
    assert state(call) is CallState.ENDED
    assert call.ended_by == "us"
    assert h.ports[0].closed


def test_hanging_up_while_ringing_cancels_and_ends_on_the_487() -> None:
    h = Harness()
    call, sent = dial(h)
    h.feed(make_response(sent, 180, to_tag="srv"))
    h.phone.hang_up(call)
    (cancel,) = h.take()
    assert isinstance(cancel, SipRequest)
    assert cancel.method == "CANCEL"
    h.feed(make_response(cancel, 200, to_tag="srv"))
    h.feed(make_response(sent, 487, to_tag="srv"))
    assert state(call) is CallState.ENDED
    assert (call.status, call.end_reason, call.ended_by) == (487, "cancelled by us", "us")


async def test_hang_up_after_waits_for_the_answer_then_sends_bye() -> None:
    h = Harness()
    call, sent = dial(h)
    talk = asyncio.create_task(h.phone.hang_up_after(call, 0.0))
    await asyncio.sleep(0)
    assert h.take() == []
    ok = make_response(sent, 200, to_tag="srv", body=answer_sdp(), content_type="application/sdp")
    h.feed(ok)
    for _ in range(50):  # let the task run: yields to the loop, no time is waited
        if any(isinstance(m, SipRequest) and m.method == "BYE" for m, _ in h.sent):
            break
        await asyncio.sleep(0)
    bye = h.take()[-1]
    assert isinstance(bye, SipRequest)
    assert bye.method == "BYE"
    assert not talk.done()
    h.feed(make_response(bye, 200))
    await talk
    assert call.ended_by == "us"


async def test_hang_up_after_returns_when_the_call_is_refused() -> None:
    h = Harness()
    call, sent = dial(h)
    talk = asyncio.create_task(h.phone.hang_up_after(call, 60.0))
    await asyncio.sleep(0)
    h.feed(make_response(sent, 486))
    await talk
    sent_requests = [m.method for m in h.take() if isinstance(m, SipRequest)]
    assert sent_requests == ["ACK"]  # the transaction layer's ACK of the 486, no BYE
    assert (call.status, call.ended_by) == (486, "peer")


def test_a_refused_call_ends_with_the_status() -> None:
    h = Harness()
    call, sent = dial(h)
    h.feed(make_response(sent, 480))
    assert (call.state, call.status, call.ended_by) == (CallState.ENDED, 480, "peer")
    assert call.end_reason == "refused: 480 Temporarily Unavailable"
    assert call.ended.is_set()


def test_a_phone_dials_ip_addresses_only() -> None:
    with pytest.raises(LocalProtocolError, match="IP addresses only"):
        Harness().phone.dial("sip:sales@example.com", caller="me")


# -- Phone: over TLS ---------------------------------------------------------------------------

TLS_PORT = 5081
"""The phone's TLS listener."""


def tls_phone(script: AnswerScript | None = None) -> Harness:
    return Harness(script, FakeTcp(tls_port=TLS_PORT))


def test_a_sips_uri_is_dialed_over_tls_from_our_tls_listener() -> None:
    h = tls_phone()
    call = h.phone.dial("sips:sales@127.0.0.1:5061", caller="+14155550123")
    [(sent, destination)] = h.endpoint.take()
    assert destination == ("127.0.0.1", 5061)
    assert isinstance(sent, SipRequest)
    via = sent.top_via
    assert (via.transport, via.port) == ("TLS", TLS_PORT)
    assert sent.headers.get("Contact") == "<sips:buyer@127.0.0.1:5081>"
    assert h.streams is not None
    assert h.streams.tls == {("127.0.0.1", 5061): "127.0.0.1"}
    h.core.handle_timer(h.now + 4.0)  # no Timer A over TLS
    h.endpoint.flush()
    assert h.take() == []
    h.feed(
        make_response(
            sent, 200, to_tag="srv", body=answer_sdp(), content_type="application/sdp",
            contact="<sip:callwhisper@127.0.0.1:5061;transport=tls>",
        )
    )  # fmt: skip
    [(ack, to)] = h.endpoint.take()
    assert isinstance(ack, SipRequest)
    assert (ack.method, ack.top_via.transport, to) == ("ACK", "TLS", ("127.0.0.1", 5061))
    assert state(call) is CallState.CONFIRMED


def test_a_call_received_over_tls_is_answered_and_hung_up_over_tls() -> None:
    h = tls_phone(AnswerScript())
    over_tls = invite().replace("SIP/2.0/UDP", "SIP/2.0/TLS")
    h.feed(over_tls.replace("127.0.0.1:5060>", "127.0.0.1:5061;transport=tls>"))
    responses = [m for m in h.take() if isinstance(m, SipResponse)]
    assert [r.status for r in responses] == [180, 200]
    contact = "<sip:buyer@127.0.0.1:5081;transport=tls>"
    assert [r.headers.get("Contact") for r in responses] == [contact, contact]
    (call,) = h.phone.calls
    h.phone.hang_up(call)
    [(bye, to)] = h.endpoint.take()
    assert isinstance(bye, SipRequest)
    assert (bye.method, bye.top_via.transport, to) == ("BYE", "TLS", ("127.0.0.1", 5061))
    assert h.streams is not None
    assert h.streams.tls == {("127.0.0.1", 5061): "127.0.0.1"}


def test_a_phone_without_a_certificate_cannot_dial_over_tls() -> None:
    h = Harness(streams=FakeTcp())
    with pytest.raises(LocalProtocolError, match="no certificate"):
        h.phone.dial("sips:sales@127.0.0.1", caller="me")
    assert h.phone.calls == []
