"""Every SIPp scenario against the call server: what the peers saw and what was stored.

Each test starts a :class:`CallwhisperServer` on SQLite, SIPp buyers (UAS)
and a SIPp caller (UAC) from ``tests/integration/sip/scenarios``, and checks
both sides: the SIP messages each peer sent and received, and the call's
stored timeline, leg ends and outcome. Whisper waits and ring timeouts are
short; waits for the peers are generous, for a loaded machine.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from callwhisper.sip.timers import TimerConfig
from callwhisper.store import CallRecord
from tests.integration.engine.caller_media import (
    PCMA,
    RINGBACK_HZ,
    CallerMedia,
    caller_on_socket,
    decode_pcma,
    sipp_voice,
    speech_segments,
)
from tests.integration.engine.calls import (
    PEER_TIMEOUT,
    buyer,
    caller,
    configuration,
    event_time,
    finished_call,
    finished_calls,
    kinds,
    leg_ends,
    speech,
)
from tests.integration.engine.conftest import StartServer
from tests.integration.peers.audio import from_pcm16, tone_cadence
from tests.integration.peers.rtp import RtpSink
from tests.integration.peers.sipp import (
    SippLauncher,
    SippOptions,
)

pytestmark = pytest.mark.integration


def decline_reasons(call: CallRecord) -> dict[str | None, str]:
    """The decline reason of each declined leg."""
    return {event.leg_id: event.data["reason"] for event in call.events if event.kind == "decline"}


def keys(call: CallRecord) -> list[tuple[str | None, str, str]]:
    """The keys pressed during the whispers: leg, key and the meaning the gate gave it."""
    return [(e.leg_id, e.data["key"], e.data["meaning"]) for e in call.events if e.kind == "key"]


def assert_not_billed(call: CallRecord) -> None:
    """No bridge, no accept, no money: nothing about the call can be invoiced."""
    timeline = {kind for kind, _ in kinds(call)}
    assert not timeline & {"accept", "bridge", "conversion", "payout"}, kinds(call)
    assert call.answered_at is None
    assert not call.converted
    assert call.revenue == call.payout == Decimal(0)
    assert all(leg.accepted_at is None for leg in call.legs)


async def test_reject_key_declines_the_buyer_and_the_next_one_takes_the_call(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """call-flow 8-9: key 2 declines (reject_key), the buyer gets our BYE, the hunt goes on."""
    rejecting = buyer(sipp, "buyer-presses-reject-key", pause_ms=500)
    accepting = buyer(sipp, "buyer-accepts", pause_ms=300)
    whisper = {"text": "Press 1.", "wait_seconds": 5.0, "plays": 1}
    document = configuration(
        [("rejecting", rejecting.uri()), ("acme", accepting.uri())], whisper=whisper
    )
    server = await start_server(document)
    calling = caller(sipp, server, pause_ms=800)

    (await calling.wait_async()).assert_succeeded()
    rejected = await rejecting.wait_async()
    rejected.assert_succeeded()
    (await accepting.wait_async()).assert_succeeded()
    assert rejected.seen("received") == ["INVITE", "ACK", "BYE"]
    assert rejected.seen("sent") == ["180", "200", "200"]

    call = await finished_call(server)
    assert keys(call) == [("B1", "2", "reject"), ("B2", "1", "accept")]
    assert decline_reasons(call) == {"B1": "reject_key"}
    # call-flow 1: the caller's 200 OK, its only one, came after the second buyer's accept,
    # never during the cascade (both clocks are this machine's wall clock).
    answers = [
        m for m in calling.result().messages if m.kind == "200" and m.direction == "received"
    ]
    assert [m.header("CSeq") for m in answers] == ["1 INVITE", "2 BYE"]
    assert answers[0].time >= event_time(call, "accept", "B2") - 0.002
    ends = leg_ends(call)
    assert (ends["B1"]["reason"], ends["B1"]["by"]) == ("declined", "system")
    assert ("accept", "B1") not in kinds(call)
    assert ("bridge", "B1") not in kinds(call)
    assert ("bridge", "B2") in kinds(call)
    assert call.outcome == "connected"
    assert [(leg.buyer_id, leg.outcome) for leg in call.legs] == [
        ("rejecting", "declined"),
        ("acme", "hangup"),
    ]


async def test_a_wrong_key_replays_the_whisper_then_1_accepts(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """call-flow 8: a key that is neither accept nor reject replays the prompt; 1 then accepts."""
    pressing = buyer(sipp, "buyer-wrong-key-then-accept", pause_ms=300)
    whisper = {"text": "Press 1.", "wait_seconds": 4.0, "plays": 2}
    server = await start_server(configuration([("acme", pressing.uri())], whisper=whisper))
    calling = caller(sipp, server, pause_ms=800)

    (await calling.wait_async()).assert_succeeded()
    pressed = await pressing.wait_async()
    pressed.assert_succeeded()
    assert pressed.seen("received") == ["INVITE", "ACK", "BYE"]

    call = await finished_call(server)
    assert keys(call) == [("B1", "5", "wrong"), ("B1", "1", "accept")]
    starts = [event.data["play"] for event in call.events if event.kind == "whisper_start"]
    assert starts == ["1", "2"]
    assert decline_reasons(call) == {}
    timeline = kinds(call)
    assert timeline.index(("accept", "B1")) < timeline.index(("bridge", "B1"))
    assert call.outcome == "connected"
    assert [leg.outcome for leg in call.legs] == ["hangup"]


async def test_a_buyer_who_never_answers_is_cancelled_at_the_ring_timeout(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """call-flow 5-6: the ring timeout CANCELs the leg (487 ACKed) and the next buyer is dialed."""
    ringing = buyer(sipp, "buyer-never-answers")
    accepting = buyer(sipp, "buyer-accepts", pause_ms=300)
    document = configuration(
        [("ringing", ringing.uri()), ("acme", accepting.uri())],
        campaign={"ring_timeout_seconds": 2},
    )
    server = await start_server(document)
    calling = caller(sipp, server, pause_ms=800)

    (await calling.wait_async()).assert_succeeded()
    unanswered = await ringing.wait_async()
    unanswered.assert_succeeded()
    (await accepting.wait_async()).assert_succeeded()
    # The scenario's last step is the ACK of its 487: success means it arrived.
    assert unanswered.seen("received") == ["INVITE", "CANCEL", "ACK"]
    assert unanswered.seen("sent") == ["180", "200", "487"]
    invite, cancel, ack = (m for m in unanswered.messages if m.direction == "received")
    # RFC 3261 9.1 and 17.1.1.3: the CANCEL and the ACK of the 487 repeat the INVITE's branch.
    assert invite.header("Via") == cancel.header("Via") == ack.header("Via")
    ring_time = cancel.time - invite.time
    assert 1.5 <= ring_time <= 10.0

    call = await finished_call(server)
    ends = leg_ends(call)
    assert (ends["B1"]["reason"], ends["B1"]["by"]) == ("no_answer", "system")
    assert "status" not in ends["B1"]  # our own CANCEL's 487 is not the buyer's answer
    assert ("answer", "B1") not in kinds(call)
    assert ("bridge", "B2") in kinds(call)
    assert call.outcome == "connected"


async def test_the_caller_cancelling_while_a_buyer_rings_cancels_the_buyer(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """call-flow 4: the caller's CANCEL gets 200 and 487, and the ringing buyer our CANCEL."""
    ringing = buyer(sipp, "buyer-never-answers")
    server = await start_server(configuration([("ringing", ringing.uri())]))
    calling = caller(sipp, server, "caller-cancels-while-ringing", recv_timeout_ms=1500)

    cancelled = await calling.wait_async()
    cancelled.assert_succeeded()
    unanswered = await ringing.wait_async()
    unanswered.assert_succeeded()
    assert cancelled.seen("sent") == ["INVITE", "CANCEL", "ACK"]
    received = cancelled.seen("received")
    assert received[-2:] == ["200", "487"]
    assert "183" in received
    assert received.count("200") == 1  # the CANCEL's: the caller was never answered
    assert unanswered.seen("received") == ["INVITE", "CANCEL", "ACK"]
    assert unanswered.seen("sent") == ["180", "200", "487"]

    call = await finished_call(server)
    ends = leg_ends(call)
    assert (ends["A"]["reason"], ends["A"]["by"]) == ("hangup", "caller")
    assert (ends["B1"]["reason"], ends["B1"]["by"]) == ("canceled", "system")
    assert call.outcome == "caller_hangup"
    assert ("answer", "B1") not in kinds(call)
    assert_not_billed(call)


async def test_the_caller_cancelling_during_the_whisper_gets_the_buyer_a_bye(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """call-flow 4: a CANCEL while the buyer hears the whisper: BYE to the buyer, no bridge."""
    listening = buyer(sipp, "buyer-voicemail-silent")
    whisper = {"text": "Press 1.", "wait_seconds": 15.0, "plays": 1}
    server = await start_server(configuration([("acme", listening.uri())], whisper=whisper))
    calling = caller(sipp, server, "caller-cancels-during-whisper", recv_timeout_ms=3000)

    cancelled = await calling.wait_async()
    cancelled.assert_succeeded()
    silent = await listening.wait_async()
    silent.assert_succeeded()
    assert cancelled.seen("sent") == ["INVITE", "CANCEL", "ACK"]
    assert cancelled.seen("received")[-2:] == ["200", "487"]
    assert silent.seen("received") == ["INVITE", "ACK", "BYE"]

    call = await finished_call(server)
    timeline = kinds(call)
    assert ("answer", "B1") in timeline
    assert ("whisper_start", "B1") in timeline
    assert timeline.index(("whisper_start", "B1")) < timeline.index(("leg_end", "A"))
    ends = leg_ends(call)
    assert (ends["A"]["reason"], ends["A"]["by"]) == ("hangup", "caller")
    assert (ends["B1"]["reason"], ends["B1"]["by"]) == ("canceled", "system")
    assert decline_reasons(call) == {}
    assert call.outcome == "caller_hangup"
    assert_not_billed(call)


async def test_a_buyer_hanging_up_during_the_whisper_is_a_decline(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """call-flow 9: the buyer's BYE during the whisper declines (buyer_hangup); the hunt goes on."""
    leaving = buyer(sipp, "buyer-hangs-up-during-whisper", pause_ms=500)
    accepting = buyer(sipp, "buyer-accepts", pause_ms=300)
    whisper = {"text": "Press 1.", "wait_seconds": 5.0, "plays": 1}
    document = configuration(
        [("leaving", leaving.uri()), ("acme", accepting.uri())], whisper=whisper
    )
    server = await start_server(document)
    calling = caller(sipp, server, pause_ms=800)

    (await calling.wait_async()).assert_succeeded()
    left = await leaving.wait_async()
    left.assert_succeeded()
    (await accepting.wait_async()).assert_succeeded()
    assert left.seen("sent") == ["180", "200", "BYE"]
    assert left.seen("received") == ["INVITE", "ACK", "200"]

    call = await finished_call(server)
    assert decline_reasons(call) == {"B1": "buyer_hangup"}
    ends = leg_ends(call)
    assert (ends["B1"]["reason"], ends["B1"]["by"]) == ("declined", "buyer")
    assert ("bridge", "B1") not in kinds(call)
    assert ("bridge", "B2") in kinds(call)
    assert call.outcome == "connected"


AUTO_ACCEPT = {"text": "Hello.", "accept_mode": "auto", "plays": 1}
"""A plain announcement: the bridge follows the whisper, no key needed (call-flow 8)."""


@pytest.mark.parametrize("sip_timers", [TimerConfig(t2=0.5)])
async def test_lost_200s_to_the_caller_are_retransmitted_until_the_ack(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """RFC 3261 13.3.1.4: our 2xx is sent again until the caller's ACK; every call survives.

    SIPp drops each 200 OK it receives with probability 1/2, so with this
    many calls at least one is dropped in all but about 1 run in 1,000,000.
    With T2 at T1 our 2xx goes out every 0.5 s for 64*T1, 64 copies: all of
    one call's lost (which ends it, as RFC 3261 says) would take 2**-64.
    With the default T2 (4 s) it is 11 copies, and about 1 call in 2,048 failed.
    """
    calls = 20
    buyers = sipp.uas("buyer-voicemail-silent", SippOptions(calls=calls, timeout=PEER_TIMEOUT))
    server = await start_server(configuration([("acme", buyers.uri())], whisper=AUTO_ACCEPT))
    callers = caller(sipp, server, "caller-loses-half-of-200", calls=calls, pause_ms=300)

    lossy = await callers.wait_async()
    lossy.assert_succeeded(calls)
    (await buyers.wait_async()).assert_succeeded(calls)
    lost = lossy.lost.count("200")
    assert lost >= 1, lossy.describe()
    assert lossy.step_count("_200_Lost") == lost
    # Each INVITE's 200 got through once after its lost copies, and each BYE's 200 once.
    assert lossy.step_count("_200_Recv") == 2 * calls
    assert lossy.count("ACK", "sent") == calls

    stored = await finished_calls(server, calls, wait_seconds=PEER_TIMEOUT)
    for call in stored:
        assert call.outcome == "connected", kinds(call)
        assert [leg.outcome for leg in call.legs] == ["hangup"]
        assert leg_ends(call)["A"]["by"] == "caller"
        assert call.answered_at is not None


async def test_a_retransmitted_invite_is_one_call_with_one_buyer_leg(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """RFC 3261 17.2.1: the copy of the INVITE is absorbed by its server transaction."""
    answering = buyer(sipp, "buyer-voicemail-silent")
    server = await start_server(configuration([("acme", answering.uri())], whisper=AUTO_ACCEPT))
    calling = caller(sipp, server, "caller-retransmits-invite", pause_ms=500)

    twice = await calling.wait_async()
    twice.assert_succeeded()
    (await answering.wait_async()).assert_succeeded()
    assert twice.count("INVITE", "sent") == 2
    assert twice.count("200") == 2  # the INVITE's and the BYE's
    assert answering.result().count("INVITE") == 1

    call = await finished_call(server)
    assert len(call.legs) == 1
    assert [kind for kind, _ in kinds(call)].count("arrived") == 1
    assert [kind for kind, _ in kinds(call)].count("dial") == 1
    assert call.outcome == "connected"


async def test_an_offer_without_a_common_codec_is_refused_with_488(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """RFC 3261 21.4.26: GSM only gets 488 at once; no buyer is dialed; the call is stored."""
    idle = sipp.uas("buyer-accepts", SippOptions(timeout=PEER_TIMEOUT))
    server = await start_server(configuration([("acme", idle.uri())]))
    calling = caller(sipp, server, "caller-no-common-codec")

    refused = await calling.wait_async()
    refused.assert_succeeded()
    assert refused.seen("received") in (["100", "488"], ["488"])
    assert refused.seen("sent") == ["INVITE", "ACK"]

    call = await finished_call(server)
    idle.kill()
    assert idle.result().seen("received") == []
    assert call.legs == ()
    assert call.outcome == "refused"
    assert ("dial", "B1") not in kinds(call)
    assert_not_billed(call)


# -- media: what the caller hears ---------------------------------------------------------

WHISPER_TEXT = "Caller from Texas. Press 1."


async def test_until_the_bridge_the_caller_hears_ringback_and_never_the_whisper(
    sipp: SippLauncher, start_server: StartServer, rtp_sink: RtpSink, tmp_path: Path
) -> None:
    """call-flow 1-2: the caller's early media is ringback only, never the buyer's whisper.

    The buyer listens to the whole spoken whisper before pressing 1, so a
    whisper leaking to the caller would fill seconds of the capture with
    speech; the same analysis run on the rendered whisper proves it would
    see it.
    """
    listening = buyer(sipp, "buyer-accepts", pause_ms=4500)
    whisper = {"text": WHISPER_TEXT, "wait_seconds": 5.0, "plays": 1}
    server = await start_server(configuration([("acme", listening.uri())], whisper=whisper))
    ear = CallerMedia(rtp_sink)
    listener = asyncio.create_task(ear.run())
    try:
        scenario = caller_on_socket(tmp_path, rtp_sink.port)
        calling = caller(sipp, server, scenario, pause_ms=500)
        (await calling.wait_async()).assert_succeeded()
        (await listening.wait_async()).assert_succeeded()
    finally:
        listener.cancel()
    call = await finished_call(server)
    whisper_end = next(e for e in call.events if e.kind == "whisper_end")
    assert whisper_end.data["how"] == "finished"  # the buyer heard all of it first

    early = ear.before(event_time(call, "bridge", "B1"))
    assert {packet.payload_type for packet in early} == {PCMA}
    heard = decode_pcma(early)
    assert speech_segments(heard) == []
    assert heard.duration >= 2.5
    on, first = tone_cadence(heard, RINGBACK_HZ)[0]
    assert on
    assert 1.5 <= first <= 2.1  # the first ring of the 2 s on, 4 s off cadence

    spoken = speech(server, WHISPER_TEXT)
    assert len(speech_segments(from_pcm16(spoken.pcm))) >= 10


async def test_after_the_bridge_audio_flows_both_ways(
    sipp: SippLauncher, start_server: StartServer, rtp_sink: RtpSink, tmp_path: Path
) -> None:
    """call-flow 15: once bridged, the buyer hears the caller and the caller hears the buyer.

    The buyer (SIPp with ``-rtp_echo``) sends its voice (g711a.pcap) and
    echoes whatever reaches it; the caller (a Python socket) talks distinct
    frames. The caller receiving the buyer's voice proves buyer to caller;
    receiving its own frames back proves they reached the buyer.
    """
    talking = sipp.uas(
        "buyer-accepts",
        SippOptions(pause_ms=300, timeout=PEER_TIMEOUT, extra_args=("-rtp_echo",)),
    )
    server = await start_server(configuration([("acme", talking.uri())]))
    mouth = CallerMedia(rtp_sink, talk=True)
    speaker = asyncio.create_task(mouth.run())
    try:
        scenario = caller_on_socket(tmp_path, rtp_sink.port)
        calling = caller(sipp, server, scenario, pause_ms=2500)
        (await calling.wait_async()).assert_succeeded()
        (await talking.wait_async()).assert_succeeded()
    finally:
        speaker.cancel()
    call = await finished_call(server)
    bridged = event_time(call, "bridge", "B1")

    voice = sipp_voice()
    before, after = mouth.before(bridged), mouth.after(bridged)
    assert not [packet for packet in before if packet.payload in voice | mouth.said]
    # call-flow 2: the buyer's accept key is not relayed to the caller.
    assert {packet.payload_type for packet in after} == {PCMA}
    from_buyer = [packet for packet in after if packet.payload in voice]
    echoed = [packet for packet in after if packet.payload in mouth.said]
    assert len(from_buyer) >= 20, len(after)  # 0.6 s of the buyer's voice
    assert len(echoed) >= 20, len(after)  # 0.4 s of the caller's own frames, back
