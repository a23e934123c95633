"""baresip as a real phone: against SIPp scenarios, a Python RTP listener, and itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.peers.audio import has_tone, is_speech_like, load_wav
from tests.integration.peers.baresip import BaresipLauncher
from tests.integration.peers.rtp import TELEPHONE_EVENT, RtpSink
from tests.integration.peers.sipp import SippLauncher, SippOptions, scenario_path

pytestmark = pytest.mark.integration


async def test_baresip_answers_caller_basic_and_hears_the_callers_voice(
    sipp: SippLauncher, baresip: BaresipLauncher
) -> None:
    phone = await baresip.start(user="buyer", answermode="auto")
    caller = sipp.uac("caller-basic", phone.address, SippOptions(pause_ms=2000))
    established = await phone.control.wait_for("CALL_ESTABLISHED")
    assert established.direction == "incoming"
    await phone.control.wait_for("CALL_CLOSED", timeout=5)
    (await caller.wait_async()).assert_succeeded()
    (dump,) = phone.dumps()
    heard = load_wav(dump.heard)
    assert heard.duration > 1.0
    assert is_speech_like(heard)
    assert has_tone(load_wav(dump.sent).slice(0.2, 1.2), [1000.0])


async def test_baresip_dials_buyer_accepts_and_receives_key_1(
    sipp: SippLauncher, baresip: BaresipLauncher
) -> None:
    buyer = sipp.uas("buyer-accepts", SippOptions(pause_ms=300))
    phone = await baresip.start(user="engine")
    await phone.control.dial(buyer.uri())
    await phone.control.wait_for("CALL_RINGING")
    await phone.control.wait_for("CALL_ESTABLISHED")
    key = await phone.control.wait_for("CALL_DTMF_START")
    assert key.param == "1"
    await phone.control.hangup()
    await phone.control.wait_for("CALL_CLOSED")
    result = await buyer.wait_async()
    result.assert_succeeded()
    assert result.seen("received") == ["INVITE", "ACK", "BYE"]


async def test_baresip_receives_5_then_1_from_buyer_wrong_key_then_accept(
    sipp: SippLauncher, baresip: BaresipLauncher
) -> None:
    buyer = sipp.uas("buyer-wrong-key-then-accept", SippOptions(pause_ms=100))
    phone = await baresip.start(user="engine")
    await phone.control.dial(buyer.uri())
    first = await phone.control.wait_for("CALL_DTMF_START", timeout=5)
    second = await phone.control.wait_for("CALL_DTMF_START", timeout=5)
    assert (first.param, second.param) == ("5", "1")
    assert 1.3 <= second.received_at - first.received_at <= 2.5
    await phone.control.hangup()
    (await buyer.wait_async()).assert_succeeded()


async def test_buyer_busy_rejects_baresip_with_486(
    sipp: SippLauncher, baresip: BaresipLauncher
) -> None:
    buyer = sipp.uas("buyer-busy")
    phone = await baresip.start(user="engine")
    await phone.control.dial(buyer.uri())
    closed = await phone.control.wait_for("CALL_CLOSED")
    assert "486" in closed.param
    result = await buyer.wait_async()
    result.assert_succeeded()
    assert result.seen("received") == ["INVITE", "ACK"]


async def test_baresip_cancels_buyer_never_answers(
    sipp: SippLauncher, baresip: BaresipLauncher
) -> None:
    buyer = sipp.uas("buyer-never-answers")
    phone = await baresip.start(user="engine")
    await phone.control.dial(buyer.uri())
    await phone.control.wait_for("CALL_RINGING")
    await phone.control.hangup()
    result = await buyer.wait_async()
    result.assert_succeeded()
    assert result.seen("received") == ["INVITE", "CANCEL", "ACK"]


async def test_buyer_hangs_up_on_baresip_during_the_whisper(
    sipp: SippLauncher, baresip: BaresipLauncher
) -> None:
    buyer = sipp.uas("buyer-hangs-up-during-whisper", SippOptions(pause_ms=500))
    phone = await baresip.start(user="engine")
    await phone.control.dial(buyer.uri())
    established = await phone.control.wait_for("CALL_ESTABLISHED")
    closed = await phone.control.wait_for("CALL_CLOSED", timeout=5)
    assert 0.4 <= closed.received_at - established.received_at <= 2.0
    result = await buyer.wait_async()
    result.assert_succeeded()
    assert result.seen("sent") == ["180", "200", "BYE"]


async def test_caller_no_common_codec_gets_488_from_a_g711_phone(
    sipp: SippLauncher, baresip: BaresipLauncher
) -> None:
    phone = await baresip.start(user="buyer", answermode="auto")
    caller = sipp.uac("caller-no-common-codec", phone.address)
    result = await caller.wait_async()
    result.assert_succeeded()
    assert result.seen("received")[-1] == "488"
    assert result.seen("sent") == ["INVITE", "ACK"]
    assert "CALL_ESTABLISHED" not in phone.control.types()


async def test_caller_retransmits_invite_makes_one_call_on_a_real_stack(
    sipp: SippLauncher, baresip: BaresipLauncher
) -> None:
    phone = await baresip.start(user="buyer", answermode="auto")
    caller = sipp.uac("caller-retransmits-invite", phone.address, SippOptions(pause_ms=500))
    result = await caller.wait_async()
    result.assert_succeeded()
    assert result.seen("sent")[:2] == ["INVITE", "INVITE"]
    await phone.control.wait_for("CALL_CLOSED")
    assert phone.control.types().count("CALL_ESTABLISHED") == 1


async def test_caller_cancels_during_whisper_needs_early_media(
    sipp: SippLauncher, baresip: BaresipLauncher
) -> None:
    """Against a phone answering with 183 and early media, the caller CANCELs after it."""
    phone = await baresip.start(user="buyer", answermode="early")
    caller = sipp.uac(
        "caller-cancels-during-whisper", phone.address, SippOptions(recv_timeout_ms=500)
    )
    result = await caller.wait_async()
    result.assert_succeeded()
    received = result.seen("received")
    assert "183" in received
    assert received[-2:] == ["200", "487"]
    await phone.control.wait_for("CALL_CLOSED")


async def test_baresip_sends_rfc4733_key_1_to_a_python_rtp_listener(
    sipp: SippLauncher, baresip: BaresipLauncher, rtp_sink: RtpSink, tmp_path: Path
) -> None:
    # The silent buyer, answering with the listener's port as its media address.
    scenario = tmp_path / "buyer-answers-to-rtp-sink.xml"
    text = scenario_path("buyer-voicemail-silent").read_text()
    scenario.write_text(text.replace("m=audio [media_port]", f"m=audio {rtp_sink.port}"))
    buyer = sipp.uas(scenario)
    phone = await baresip.start(user="engine")
    await phone.control.dial(buyer.uri())
    await phone.control.wait_for("CALL_ESTABLISHED")
    await phone.control.send_dtmf("1")
    await rtp_sink.receive_until(lambda _: rtp_sink.digits() == "1", timeout=3)
    events = rtp_sink.received(TELEPHONE_EVENT)
    assert events[0].marker
    assert len({packet.timestamp for packet in events}) == 1
    assert {packet.payload_type for packet in rtp_sink.received()} <= {8, TELEPHONE_EVENT}
    await phone.control.hangup()
    (await buyer.wait_async()).assert_succeeded()


async def test_baresip_calls_baresip_keys_and_tone_cross(baresip: BaresipLauncher) -> None:
    buyer = await baresip.start(user="buyer", answermode="manual", tone=(440.0, 480.0))
    engine = await baresip.start(user="engine", tone=(1000.0,))
    await engine.control.dial(buyer.uri)
    incoming = await buyer.control.wait_for("CALL_INCOMING")
    assert incoming.direction == "incoming"
    await buyer.control.accept()
    await engine.control.wait_for("CALL_ESTABLISHED")
    await buyer.control.wait_for("CALL_ESTABLISHED")
    await buyer.control.send_dtmf("1")
    key = await engine.control.wait_for("CALL_DTMF_START")
    assert key.param == "1"
    await engine.control.wait_for("CALL_DTMF_END")
    buyer_dump = await buyer.wait_heard(1.0)
    engine_dump = await engine.wait_heard(1.0)
    await engine.control.hangup()
    await engine.control.wait_for("CALL_CLOSED")
    await buyer.control.wait_for("CALL_CLOSED")
    heard_by_buyer, heard_by_engine = load_wav(buyer_dump.heard), load_wav(engine_dump.heard)
    assert has_tone(heard_by_engine.slice(0.3, 0.8), [440.0, 480.0])
    assert has_tone(heard_by_buyer.slice(0.3, 0.8), [1000.0])
    assert not has_tone(heard_by_buyer.slice(0.3, 0.8), [440.0, 480.0])
