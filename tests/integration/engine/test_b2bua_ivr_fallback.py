"""The IVR path and the fallbacks end to end: real SIPp callers, buyers and overflow line.

call-flow.md rule 3: a campaign with an IVR answers the caller first (200 OK,
no early media), asks its questions, stores the answers as call tags, and
only then routes, with ringback played in-band. Rule 14: when nobody
accepts, the campaign's fallback rejects the caller unanswered with its SIP
code, or answers and plays a message, or forwards the caller to an
overflow line. Each test checks what the SIPp peers saw and what was
stored: the timeline, the tags, the leg ends and the outcome. IVR waits are
short; waits for the peers are generous, for a loaded machine.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from callwhisper.audio import cache_key
from callwhisper.engine.server import CallwhisperServer
from callwhisper.flow.billing import leg_cost
from callwhisper.store import CallRecord
from tests.integration.engine.caller_media import (
    CallerMedia,
    caller_on_socket,
    decode_pcma,
    sipp_voice,
    speech_segments,
)
from tests.integration.engine.calls import (
    DEFAULT_VOICE,
    buyer,
    caller,
    configuration,
    event_time,
    finished_call,
    kinds,
    leg_ends,
    speech,
)
from tests.integration.engine.conftest import StartServer
from tests.integration.peers.rtp import RtpSink
from tests.integration.peers.sipp import (
    SippLauncher,
    SippPeer,
    SippResult,
)

pytestmark = pytest.mark.integration

PROMPT = "Press 1 for sales, 2 to leave."
WHISPER = {"text": "{interest} caller. Press 1.", "wait_seconds": 3.0, "plays": 1}
"""A whisper that speaks a tag the IVR sets."""
GOODBYE = "Thank you for calling. All our agents are busy, please call again later."


def ivr(
    *,
    timeout_seconds: float = 3.0,
    retries: int = 1,
    on_2: str = "hangup",
) -> dict[str, Any]:
    """One question: 1 routes the call, 2 ends it; no answer takes the default hang-up."""
    return {
        "start": "interest",
        "nodes": [
            {
                "id": "interest",
                "say": PROMPT,
                "digits": 1,
                "timeout_seconds": timeout_seconds,
                "retries": retries,
                "tag": "choice",
                "branches": {
                    "1": {"action": "route", "set_tags": {"interest": "sales"}},
                    "2": {"action": on_2, "set_tags": {"interest": "none"}, "message": "Bye."},
                },
                "default": {
                    "action": "hangup",
                    "set_tags": {"interest": "unknown"},
                    "message": "Goodbye.",
                },
            }
        ],
    }


def untouched(peer: SippPeer) -> SippResult:
    """Stop a peer that should never have been called, and return what it saw."""
    peer.kill()
    return peer.result()


def finals_and_provisionals(result: SippResult) -> list[str]:
    """The responses a caller received to its INVITE, in order (100 Trying left out)."""
    return [
        message.kind
        for message in result.messages
        if message.direction == "received"
        and message.kind[:1].isdigit()
        and message.kind != "100"
        and message.header("CSeq") == "1 INVITE"
    ]


# SIPp stamps a message when it writes its log line, after the send: a peer's
# "sent" time can be later than the moment another peer received what we relayed
# from it (seen: 10 µs). Orderings between two SIPp processes allow this much.
SIPP_LOG_SLACK = 0.005


def received_at(result: SippResult, kind: str, direction: str = "received") -> float:
    """When the peer first logged a message of ``kind``, in POSIX seconds."""
    return next(m.time for m in result.messages if m.direction == direction and m.kind == kind)


def rendered(server: CallwhisperServer, text: str) -> bool:
    """Whether the engine spoke ``text`` with the default voice (it is in the speech cache)."""
    assert server.b2bua is not None
    cache = server.b2bua.prompts.tts_cache
    return cache.path_for(cache_key("espeak-ng", text, DEFAULT_VOICE)).is_file()


def entries(call: CallRecord, kind: str) -> list[dict[str, Any]]:
    """The data of every ``kind`` entry of the timeline, in order."""
    return [dict(event.data) for event in call.events if event.kind == kind]


# -- the IVR ------------------------------------------------------------------------------


async def test_an_ivr_answers_first_then_routes_on_key_1_and_the_buyer_hears_the_tag(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """call-flow 3 and 7: 200 OK before any dial; key 1 sets tags, routes; the whisper says them."""
    accepting = buyer(sipp, "buyer-accepts", pause_ms=300)
    document = configuration([("acme", accepting.uri())], whisper=WHISPER, campaign={"ivr": ivr()})
    server = await start_server(document)
    calling = caller(sipp, server, "caller-presses-1-in-ivr", pause_ms=7000)

    answered = await calling.wait_async()
    answered.assert_succeeded()
    accepted = await accepting.wait_async()
    accepted.assert_succeeded()
    # Answered at once: no ringing and no early media before the IVR's 200 OK.
    assert finals_and_provisionals(answered)[0] == "200", answered.describe()
    assert "183" not in answered.seen("received")
    assert "180" not in answered.seen("received")
    assert received_at(answered, "200") < received_at(accepted, "INVITE")
    assert accepted.seen("received") == ["INVITE", "ACK", "BYE"]

    call = await finished_call(server)
    timeline = kinds(call)
    assert timeline.index(("caller_answered", "A")) < timeline.index(("ivr_prompt", "A"))
    assert timeline.index(("ivr_answer", "A")) < timeline.index(("dial", "B1"))
    assert entries(call, "key")[0] == {"key": "1", "meaning": "ivr interest"}
    assert entries(call, "ivr_answer") == [{"node": "interest", "answer": "1"}]
    assert {e["name"]: e["value"] for e in entries(call, "tag")} == {
        "interest": "sales",
        "choice": "1",
    }
    # call-flow 3: once routing starts the answered caller hears ringback in-band.
    assert timeline.index(("ivr_answer", "A")) < timeline.index(("ringback", "A"))
    assert timeline.index(("accept", "B1")) < timeline.index(("bridge", "B1"))
    assert rendered(server, "sales caller. Press 1.")
    assert rendered(server, PROMPT)
    ends = leg_ends(call)
    assert (ends["A"]["reason"], ends["A"]["by"]) == ("hangup", "caller")
    assert [leg.outcome for leg in call.legs] == ["hangup"]
    assert call.outcome == "connected"
    assert call.answered_at is not None
    # The IVR's answers are call tags, stored on the call like the tracking number's.
    assert dict(call.tags) == {"interest": "sales", "choice": "1"}


@pytest.mark.parametrize(("action", "outcome"), [("hangup", "ivr_hangup"), ("reject", "refused")])
async def test_an_ivr_branch_that_ends_the_call_dials_nobody_and_hangs_up_the_caller(
    sipp: SippLauncher, start_server: StartServer, action: str, outcome: str
) -> None:
    """call-flow 3: key 2 takes a hangup (or reject) branch: a closing message, our BYE, no dial."""
    idle = buyer(sipp, "buyer-accepts", pause_ms=300)
    document = configuration([("acme", idle.uri())], campaign={"ivr": ivr(on_2=action)})
    server = await start_server(document)
    calling = caller(sipp, server, "caller-presses-2-in-ivr")

    left = await calling.wait_async()
    left.assert_succeeded()
    assert finals_and_provisionals(left) == ["200"], left.describe()
    assert left.seen("received")[-1] == "BYE"
    assert left.seen("sent") == ["INVITE", "ACK", "200"]

    call = await finished_call(server)
    assert untouched(idle).seen("received") == []
    assert ("dial", "B1") not in kinds(call)
    assert call.legs == ()
    assert entries(call, "ivr_answer") == [{"node": "interest", "answer": "2"}]
    assert rendered(server, "Bye.")  # the branch's closing message
    ends = leg_ends(call)
    assert (ends["A"]["reason"], ends["A"]["by"]) == ("hangup", "system")
    assert call.outcome == outcome
    assert call.answered_at is not None
    assert dict(call.tags) == {"interest": "none", "choice": "2"}


async def test_an_unanswered_ivr_question_is_asked_again_then_takes_the_default_branch(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """IVR retries: no key, the prompt is replayed once, then the default branch hangs up."""
    idle = buyer(sipp, "buyer-accepts", pause_ms=300)
    document = configuration(
        [("acme", idle.uri())], campaign={"ivr": ivr(timeout_seconds=0.5, retries=1)}
    )
    server = await start_server(document)
    calling = caller(sipp, server, "caller-waits-for-our-bye")

    silent = await calling.wait_async()
    silent.assert_succeeded()
    assert finals_and_provisionals(silent) == ["200"], silent.describe()
    assert silent.seen("received")[-1] == "BYE"

    call = await finished_call(server)
    assert untouched(idle).seen("received") == []
    prompts = [event for event in call.events if event.kind == "ivr_prompt"]
    assert [event.data["attempt"] for event in prompts] == ["1", "2"]
    assert entries(call, "ivr_answer") == [
        {"node": "interest", "answer": ""},
        {"node": "interest", "answer": ""},
    ]
    # The replay waited for the whole prompt and then the input timeout (0.5 s).
    prompt_seconds = speech(server, PROMPT).duration
    assert prompt_seconds > 1.0
    assert (prompts[1].at - prompts[0].at).total_seconds() >= prompt_seconds + 0.5 - 0.05
    assert entries(call, "key") == []
    assert rendered(server, "Goodbye.")
    assert call.legs == ()
    ends = leg_ends(call)
    assert (ends["A"]["reason"], ends["A"]["by"]) == ("hangup", "system")
    assert call.outcome == "ivr_hangup"
    assert dict(call.tags) == {"interest": "unknown"}


# -- fallbacks ----------------------------------------------------------------------------


async def test_fallback_reject_turns_the_caller_away_with_its_code_unanswered(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """call-flow 14: the only buyer is busy; the caller gets 486, never a 200 OK, unbilled."""
    busy = buyer(sipp, "buyer-busy")
    fallback = {"action": "reject", "sip_code": 486}
    server = await start_server(
        configuration([("busy", busy.uri())], campaign={"fallback": fallback})
    )
    calling = caller(sipp, server, "caller-turned-away-with-486")

    turned_away = await calling.wait_async()
    turned_away.assert_succeeded()
    (await busy.wait_async()).assert_succeeded()
    responses = finals_and_provisionals(turned_away)
    assert "200" not in responses
    assert responses[-1] == "486"
    assert "183" in responses  # ringback while the buyer was tried
    assert turned_away.seen("sent") == ["INVITE", "ACK"]

    call = await finished_call(server)
    assert entries(call, "fallback") == [{"action": "reject", "reason": "no buyer accepted"}]
    ends = leg_ends(call)
    assert (ends["B1"]["reason"], ends["B1"]["status"]) == ("busy", "486")
    assert (ends["A"]["reason"], ends["A"]["by"]) == ("rejected", "system")
    assert call.answered_at is None
    assert call.outcome == "no_buyer"
    assert not call.converted


async def test_fallback_message_answers_the_caller_plays_it_and_hangs_up(
    sipp: SippLauncher, start_server: StartServer, rtp_sink: RtpSink, tmp_path: Path
) -> None:
    """call-flow 14: nobody accepts; the caller is answered, hears the message, gets our BYE."""
    busy = buyer(sipp, "buyer-busy")
    fallback = {"action": "message", "message": GOODBYE}
    server = await start_server(
        configuration([("busy", busy.uri())], campaign={"fallback": fallback})
    )
    ear = CallerMedia(rtp_sink)
    listener = asyncio.create_task(ear.run())
    try:
        scenario = caller_on_socket(tmp_path, rtp_sink.port, "caller-waits-for-our-bye")
        calling = caller(sipp, server, scenario)
        told = await calling.wait_async()
        told.assert_succeeded()
        (await busy.wait_async()).assert_succeeded()
    finally:
        listener.cancel()
    responses = finals_and_provisionals(told)
    assert responses[-1] == "200"
    assert responses.count("200") == 1
    assert told.seen("received")[-1] == "BYE"

    call = await finished_call(server)
    assert entries(call, "fallback") == [{"action": "message", "reason": "no buyer accepted"}]
    answered = event_time(call, "caller_answered", "A")
    hung_up = event_time(call, "leg_end", "A")
    message_seconds = speech(server, GOODBYE).duration
    # The whole message was played before our BYE, and the caller heard speech.
    assert hung_up - answered >= message_seconds - 0.2
    heard = decode_pcma(ear.after(answered))
    assert len(speech_segments(heard)) >= 0.5 * message_seconds * 10
    assert speech_segments(decode_pcma(ear.before(answered))) == []
    ends = leg_ends(call)
    assert (ends["A"]["reason"], ends["A"]["by"]) == ("hangup", "system")
    assert (ends["B1"]["reason"], ends["B1"]["status"]) == ("busy", "486")
    assert call.answered_at is not None
    assert call.outcome == "no_buyer"


TELEPHONY = {"inbound_per_minute": "0.60", "outbound_per_minute": "1.20", "increment_seconds": 1}
"""1 cent a second for the caller's leg, 2 cents for a leg we dial, billed by the second."""


def forwarding(overflow: SippPeer, busy: SippPeer, **campaign: Any) -> dict[str, Any]:
    """The busy buyer's campaign forwarding to ``overflow``, with telephony costs."""
    fallback = {"action": "forward", "forward_to": overflow.uri()}
    document = configuration([("busy", busy.uri())], campaign={"fallback": fallback, **campaign})
    document["telephony"] = TELEPHONY
    return document


def assert_forwarded(call: CallRecord, overflow: SippResult, forward_to: str) -> None:
    """The overflow line took the whole call, and the store kept it to the caller's hang-up.

    Both SIPp callers hang up after a pause: the caller's leg ends by the
    caller, ours to the overflow line by us, and each answered minute costs
    (call-flow 16 and 18), with no revenue nor payout: the overflow is no buyer.
    """
    assert overflow.seen("received") == ["INVITE", "ACK", "BYE"]
    # The overflow sees the caller's own number, not ours.
    invite = next(m for m in overflow.messages if m.kind == "INVITE")
    assert (invite.header("From") or "").startswith("<sip:caller@")
    assert entries(call, "fallback") == [{"action": "forward", "reason": "no buyer accepted"}]
    assert [kind for kind, leg in kinds(call) if leg == "overflow"] == [
        "dial",
        "ringing",
        "answer",
        "bridge",
        "leg_end",
    ]
    assert entries(call, "dial")[-1] == {"destination": forward_to}
    ends = leg_ends(call)
    assert (ends["B1"]["reason"], ends["B1"]["status"]) == ("busy", "486")
    assert (ends["overflow"]["reason"], ends["overflow"]["by"]) == ("hangup", "system")
    assert (ends["A"]["reason"], ends["A"]["by"]) == ("hangup", "caller")
    busy_leg, overflow_leg = call.legs
    assert (busy_leg.buyer_id, busy_leg.outcome, busy_leg.cost) == ("busy", "busy", Decimal(0))
    assert (overflow_leg.buyer_id, overflow_leg.reservation_id) == (None, None)
    assert (overflow_leg.outcome, overflow_leg.reason) == ("hangup", "system")
    # The overflow line's answer is the bridge; the call lasts until the caller's BYE.
    answered = event_time(call, "answer", "overflow")
    assert event_time(call, "bridge", "overflow") == answered
    assert overflow_leg.answered_at is not None
    assert overflow_leg.ended_at is not None
    assert call.answered_at is not None
    assert call.ended_at == overflow_leg.ended_at
    assert call.ended_at.timestamp() == event_time(call, "leg_end", "A")
    talked = call.ended_at.timestamp() - answered
    assert talked > 1.0
    assert overflow_leg.cost == leg_cost(
        answered, call.ended_at.timestamp(), Decimal("1.20"), increment_seconds=1
    )
    caller_leg_cost = leg_cost(
        call.answered_at.timestamp(), call.ended_at.timestamp(), Decimal("0.60"), 1
    )
    assert Decimal(ends["A"]["cost"]) == caller_leg_cost
    assert call.cost == overflow_leg.cost + caller_leg_cost > 0
    assert (call.revenue, call.payout) == (Decimal(0), Decimal(0))
    assert call.outcome == "no_buyer"
    assert not call.converted


async def test_fallback_forward_bridges_the_caller_to_the_overflow_line_without_a_whisper(
    sipp: SippLauncher, start_server: StartServer, rtp_sink: RtpSink, tmp_path: Path
) -> None:
    """call-flow 14: the only buyer is busy; the overflow is dialed, answers, talks, is bridged.

    The overflow presses no key: an accept gate would have declined it. The
    caller, never answered before, gets its 200 OK once the overflow answers
    (answer-on-bridge) and hears the overflow's voice. The caller's socket
    talks from the first packet it hears, so that the engine latches onto it.
    """
    busy = buyer(sipp, "buyer-busy")
    overflow = buyer(sipp, "overflow-answers-and-talks")
    server = await start_server(forwarding(overflow, busy))
    ear = CallerMedia(rtp_sink, talk=True)
    listener = asyncio.create_task(ear.run())
    try:
        scenario = caller_on_socket(tmp_path, rtp_sink.port)
        calling = caller(sipp, server, scenario, pause_ms=4000)
        forwarded = await calling.wait_async()
        forwarded.assert_succeeded()
        (await busy.wait_async()).assert_succeeded()
        answering = await overflow.wait_async()
        answering.assert_succeeded()
    finally:
        listener.cancel()
    responses = finals_and_provisionals(forwarded)
    assert "183" in responses  # ringback while the buyer, then the overflow, were tried
    assert responses[-1] == "200"
    assert responses.count("200") == 1
    overflow_answered = received_at(answering, "200", "sent")
    assert received_at(forwarded, "200") >= overflow_answered - SIPP_LOG_SLACK

    call = await finished_call(server)
    assert_forwarded(call, answering, overflow.uri())
    # call-flow 1: the caller, unanswered until then, is answered when the overflow answers.
    assert call.answered_at is not None
    assert call.answered_at.timestamp() == event_time(call, "answer", "overflow")
    # The overflow's voice (g711a.pcap) reached the caller, byte for byte.
    voice = sipp_voice()
    heard = [packet for packet in ear.after(overflow_answered) if packet.payload in voice]
    assert len(heard) >= 50, len(ear.after(overflow_answered))  # 1.5 s of 30 ms packets
    assert not [packet for packet in ear.before(overflow_answered) if packet.payload in voice]


async def test_fallback_forward_after_an_ivr_bridges_the_answered_caller_to_the_overflow(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """call-flow 3 and 14: a caller answered for the IVR cannot be redirected; it is forwarded.

    The caller answers 1, the only buyer is busy, and the overflow line is
    dialed and bridged; the caller's BYE ends the overflow's call too.
    """
    busy = buyer(sipp, "buyer-busy")
    overflow = buyer(sipp, "overflow-answers-and-talks")
    server = await start_server(forwarding(overflow, busy, ivr=ivr()))
    calling = caller(sipp, server, "caller-presses-1-in-ivr", pause_ms=5000)

    forwarded = await calling.wait_async()
    forwarded.assert_succeeded()
    (await busy.wait_async()).assert_succeeded()
    answering = await overflow.wait_async()
    answering.assert_succeeded()
    assert finals_and_provisionals(forwarded) == ["200"]
    assert forwarded.seen("sent") == ["INVITE", "ACK", "BYE"]
    # Our BYE to the overflow follows the caller's.
    assert received_at(answering, "BYE") >= received_at(forwarded, "BYE", "sent") - SIPP_LOG_SLACK

    call = await finished_call(server)
    assert_forwarded(call, answering, overflow.uri())
    # Answered once, for the IVR, long before the overflow: its minutes cost from then.
    assert call.answered_at is not None
    assert call.answered_at.timestamp() < event_time(call, "dial", "B1")
    assert dict(call.tags) == {"interest": "sales", "choice": "1"}
