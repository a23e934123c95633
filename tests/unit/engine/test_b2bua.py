"""The B2BUA's mapping of flow commands onto SIP, with fakes of the media engine and endpoint.

The harness (``b2bua_harness``) runs the real sans-I/O transaction layer
and records what it queues instead of sending it; media legs, the store and
speech are fakes. No socket, no sleep.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callwhisper.domain import Configuration
from callwhisper.engine.media import DigitReceived as DigitEvent
from callwhisper.engine.media import PlaybackFinished as PlaybackEvent
from callwhisper.engine.runner import TimerInput
from callwhisper.media.sdp import SessionDescription, create_answer
from callwhisper.sip.message import SipMessage, SipRequest, SipResponse
from callwhisper.sip.transaction import TransactionKey
from tests.unit.engine.b2bua_harness import (
    BUYER,
    BUYER_SDP,
    BUYER_URI,
    CALLER,
    FakeBridge,
    Harness,
    buyer_bye,
    caller_bye,
    caller_cancel,
    document,
    invite,
    requests,
    response_to,
    statuses,
)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Harness(tmp_path) as harness:
        yield harness


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


async def test_our_answer_is_the_one_sdp_makes_for_the_callers_offer_at_our_port(
    harness: Harness,
) -> None:
    """A stream we cannot take keeps its m= line at port 0; ours is at the caller's RTP port."""
    head, sdp = invite().split("\n\n", 1)
    sdp += "m=video 6002 RTP/AVP 96\n"
    body = sdp.replace("\n", "\r\n")
    head = re.sub(r"Content-Length: \d+", f"Content-Length: {len(body)}", head)
    harness.receive(f"{head}\n\n{sdp}", CALLER)
    await harness.settle()
    [_, early] = [m for m, d in harness.endpoint.take() if d == CALLER]
    ours = SessionDescription.parse(early.body).origin
    expected, _ = create_answer(
        SessionDescription.parse(body),
        "127.0.0.1",
        20000,
        session_id=int(ours.session_id),
        codecs=("PCMU", "PCMA"),
    )
    assert early.body == expected.serialize()
    assert b"m=video 0 RTP/AVP 96" in early.body


async def test_a_new_configuration_is_used_by_the_next_call(harness: Harness) -> None:
    """The settings made for a campaign are not kept past a configuration change."""
    await harness.dial()
    changed = document()
    changed["campaigns"][0]["routing"]["hunt_timeout_seconds"] = 5
    configuration = Configuration.model_validate(changed)
    harness.b2bua.configuration = configuration
    harness.receive(invite().replace("call-1", "call-2").replace("caller-1", "caller-2"), CALLER)
    await harness.settle()
    first, second = sorted(harness.b2bua.runners, key=lambda runner: runner.caller.invite.call_id)
    assert first.session.settings.hunt_timeout_seconds == 120
    assert second.session.settings.hunt_timeout_seconds == 5


async def test_busy_buyer_is_reported_and_the_caller_is_rejected_without_answer(
    harness: Harness,
) -> None:
    buyer_invite = await harness.dial()
    harness.receive(response_to(buyer_invite, 486, "Busy Here"), BUYER)
    await harness.settle()
    assert statuses(harness.sent_to(CALLER)) == [480]
    leg_end = harness.leg_end("B1")
    assert leg_end["reason"] == "busy"
    assert leg_end["status"] == "486"
    assert harness.backend.ended == ["no_buyer"]


async def test_an_ended_call_leaves_no_route_and_its_dialog_answers_481(
    harness: Harness,
) -> None:
    buyer_invite = await harness.dial()
    harness.receive(response_to(buyer_invite, 486, "Busy Here"), BUYER)
    await harness.settle()
    rejection = harness.sent_to(CALLER)
    assert statuses(rejection) == [480]
    to_tag = rejection[0].to.tag
    assert to_tag is not None
    b2bua = harness.b2bua
    assert b2bua.runners == set()
    assert (b2bua._clients, b2bua._dialogs, b2bua._invites, b2bua._keys) == ({}, {}, {}, {})
    harness.receive(caller_bye(to_tag), CALLER)
    assert statuses(harness.sent_to(CALLER)) == [481]


async def test_buyer_answer_is_acked_and_whispered_then_key_1_bridges_and_answers_caller(
    harness: Harness,
) -> None:
    buyer_invite = await harness.dial()
    harness.receive(response_to(buyer_invite, 200, "OK", BUYER_SDP), BUYER)
    await harness.settle()
    assert requests(harness.sent_to(BUYER)) == ["ACK"]
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


async def test_a_recorded_campaign_records_the_bridge_until_the_caller_hangs_up(
    tmp_path: Path,
) -> None:
    """call-flow 19: the bridge is made again with a recorder, and made plain at the end."""
    configuration = document()
    configuration["campaigns"][0]["recording"] = True
    async with Harness(tmp_path, configuration) as harness:
        _, answer = await harness.bridge()
        [runner] = harness.b2bua.runners
        path = tmp_path / f"{runner.call_id}.wav"
        caller, buyer = harness.media.legs["A"], harness.media.legs["B1"]
        assert harness.media.bridges == [(caller.ident, buyer.ident)] * 2
        [plain] = harness.media.unbridged
        assert plain.recorder is None
        assert isinstance(caller.bridge, FakeBridge)
        assert caller.bridge.recorder == path
        assert harness.backend.recording_paths == [path]
        harness.receive(caller_bye(answer.to.tag), CALLER)
        await harness.settle()
        assert [bridge.recorder for bridge in harness.media.unbridged] == [None, path]
        assert (caller.closed, buyer.closed) == (True, True)
        assert [leg.bridge for leg in (caller, buyer)] == [None, None]
        kinds = [entry.kind for entry in harness.backend.entries]
        assert kinds.index("recording_start") < kinds.index("recording_stop")


async def test_buyer_bye_after_the_bridge_is_answered_and_the_caller_hung_up(
    harness: Harness,
) -> None:
    buyer_invite, _ = await harness.bridge()
    harness.receive(buyer_bye(buyer_invite), BUYER)
    await harness.settle()
    sent = harness.endpoint.take()
    assert statuses([m for m, d in sent if d == BUYER]) == [200]
    assert requests([m for m, d in sent if d == CALLER]) == ["BYE"]
    assert harness.media.legs["B1"].closed
    assert harness.media.legs["A"].closed
    assert harness.backend.ended == ["connected"]  # hung up before the 60 s buffer


async def test_a_buyer_bye_crossing_our_decline_is_answered_and_the_call_goes_on(
    tmp_path: Path,
) -> None:
    """RFC 3261 15: the buyer hangs up as its whisper times out; the fallback still runs."""
    configuration = document()
    configuration["campaigns"][0]["fallback"] = {"action": "message", "message": "Goodbye."}
    async with Harness(tmp_path, configuration) as harness:
        buyer_invite = await harness.dial()
        harness.receive(response_to(buyer_invite, 200, "OK", BUYER_SDP), BUYER)
        await harness.settle()
        assert requests(harness.sent_to(BUYER)) == ["ACK"]
        whisper = harness.media.legs["B1"]
        assert whisper.playing is not None
        whisper.on_event(PlaybackEvent("B1", whisper.playing, 0.0))
        await harness.settle()
        runner = next(iter(harness.b2bua.runners))
        runner.feed(TimerInput())  # the accept gate's wait is over: declined
        await harness.settle()
        assert requests(harness.sent_to(BUYER)) == ["BYE"]
        harness.receive(buyer_bye(buyer_invite), BUYER)
        await harness.settle()
        assert statuses(harness.sent_to(BUYER)) == [200]
        caller = harness.media.legs["A"]
        assert caller.playing is not None  # the fallback's message
        caller.on_event(PlaybackEvent("A", caller.playing, 0.0))
        await harness.settle()
        assert harness.leg_end("B1") == {"reason": "declined", "by": "system", "cost": "0.0000"}
        assert harness.backend.ended == ["no_buyer"]


def caller_reinvite(to_tag: str | None, cseq: int, attribute: str | None) -> str:
    """The caller's re-INVITE in the dialog our 200 made: offerless when ``attribute`` is None."""
    sdp = "" if attribute is None else invite().split("\n\n", 1)[1] + f"a={attribute}\n"
    body = sdp.replace("\n", "\r\n")
    return (
        "INVITE sip:callwhisper@127.0.0.1:5060 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-caller-{cseq}\n"
        "From: <sip:+14155550123@127.0.0.1:5071>;tag=caller\n"
        f"To: <sip:sales@127.0.0.1:5060>;tag={to_tag}\n"
        f"Call-ID: call-1\nCSeq: {cseq} INVITE\nContact: <sip:caller@127.0.0.1:5071>\n"
        "Max-Forwards: 70\n"
        + ("Content-Type: application/sdp\n" if sdp else "")
        + f"Content-Length: {len(body)}\n\n"
        + sdp
    )


def buyer_reinvite(request: SipRequest, cseq: int, attribute: str) -> str:
    """The buyer's re-INVITE in the dialog of our INVITE ``request``, its SDP with ``attribute``."""
    sdp = BUYER_SDP + f"a={attribute}\n"
    body = sdp.replace("\n", "\r\n")
    return (
        "INVITE sip:callwhisper@127.0.0.1:5060 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-buyer-{cseq}\n"
        f"From: {request.headers.get('To')};tag=buyer\n"
        f"To: {request.headers.get('From')}\n"
        f"Call-ID: {request.call_id}\nCSeq: {cseq} INVITE\nContact: <{BUYER_URI}>\n"
        f"Max-Forwards: 70\nContent-Type: application/sdp\nContent-Length: {len(body)}\n\n" + sdp
    )


def origin_version(message: SipMessage) -> int:
    """The version of the o= line of a message's SDP."""
    return SessionDescription.parse(message.body).origin.session_version


async def test_caller_on_hold_gets_recvonly_and_no_media_until_it_resumes(
    harness: Harness,
) -> None:
    """RFC 3264 6.1: a re-INVITE with sendonly is answered recvonly and we stop sending."""
    _, answer = await harness.bridge()
    caller = harness.media.legs["A"]
    for cseq, (offered, answered, sends) in enumerate(
        [("sendonly", "recvonly", False), ("sendrecv", "sendrecv", True)], start=2
    ):
        harness.receive(caller_reinvite(answer.to.tag, cseq, offered), CALLER)
        await harness.settle()
        (reply,) = harness.sent_to(CALLER)
        assert statuses([reply]) == [200]
        assert f"a={answered}\r\n".encode() in reply.body
        assert caller.sends is sends


async def test_each_new_sdp_of_ours_to_the_caller_has_the_next_version(
    harness: Harness,
) -> None:
    """RFC 3264 8: an offerless re-INVITE's offer counts too, so a later answer is newer still."""
    _, answer = await harness.bridge()
    assert origin_version(answer) == 0
    versions = []
    for cseq, attribute in enumerate([None, "sendonly", "sendrecv"], start=2):
        harness.receive(caller_reinvite(answer.to.tag, cseq, attribute), CALLER)
        await harness.settle()
        (reply,) = harness.sent_to(CALLER)
        assert statuses([reply]) == [200]
        versions.append(origin_version(reply))
    assert versions == [1, 2, 3]


async def test_a_buyer_putting_the_call_on_hold_and_back_gets_answers_of_new_versions(
    harness: Harness,
) -> None:
    """RFC 3264 8: our recvonly and then sendrecv answers differ, so their versions must too."""
    buyer_invite, _ = await harness.bridge()
    assert origin_version(buyer_invite) == 0
    buyer = harness.media.legs["B1"]
    answers = []
    for cseq, attribute in enumerate(["sendonly", "sendrecv"], start=2):
        harness.receive(buyer_reinvite(buyer_invite, cseq, attribute), BUYER)
        await harness.settle()
        (reply,) = harness.sent_to(BUYER)
        assert statuses([reply]) == [200]
        answers.append((SessionDescription.parse(reply.body).media[0].direction, buyer.sends))
        assert origin_version(reply) == cseq - 1
    assert answers == [("recvonly", False), ("sendrecv", True)]


async def test_caller_cancel_while_ringing_cancels_the_buyer_leg(harness: Harness) -> None:
    buyer_invite = await harness.dial()
    harness.receive(response_to(buyer_invite, 180, "Ringing"), BUYER)
    await harness.settle()
    harness.receive(caller_cancel(), CALLER)
    await harness.settle()
    sent = harness.endpoint.take()
    assert statuses([m for m, d in sent if d == CALLER]) == [200, 487]
    assert requests([m for m, d in sent if d == BUYER]) == ["CANCEL"]
    assert harness.media.legs["B1"].closed
    assert harness.backend.ended == ["caller_hangup"]


async def test_a_200_crossing_our_cancel_after_the_call_ended_is_acked_and_hung_up(
    tmp_path: Path,
) -> None:
    """RFC 3261 9.1: the ended call waits for the buyer's answer, else its phone stays off hook."""
    async with Harness(tmp_path, cancel_linger_seconds=4.0) as harness:
        buyer_invite = await harness.dial()
        harness.receive(response_to(buyer_invite, 180, "Ringing"), BUYER)
        harness.receive(caller_cancel(), CALLER)
        await harness.settle()
        assert requests(harness.sent_to(BUYER)) == ["CANCEL"]
        harness.receive(response_to(buyer_invite, 200, "OK", BUYER_SDP), BUYER)
        await harness.settle()
        assert requests(harness.sent_to(BUYER)) == ["ACK", "BYE"]
        assert harness.backend.ended == ["caller_hangup"]
        assert not harness.b2bua.tasks


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
    assert answers[0].headers.get("Allow") == "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
    assert harness.media.legs == {}
    assert not harness.b2bua.tasks


async def test_other_requests_in_a_call_are_answered_and_leave_it_up(harness: Harness) -> None:
    """OPTIONS, INFO and NOTIFY get 200, a method we do not implement 501, each with Allow."""
    _, answer = await harness.bridge()
    answers = []
    for cseq, method in enumerate(["OPTIONS", "INFO", "NOTIFY", "MESSAGE"], start=2):
        harness.receive(
            caller_bye(answer.to.tag)
            .replace("BYE sip:", f"{method} sip:")
            .replace("branch=z9hG4bK-caller-bye", f"branch=z9hG4bK-caller-{cseq}")
            .replace("CSeq: 2 BYE", f"CSeq: {cseq} {method}"),
            CALLER,
        )
        await harness.settle()
        (reply,) = harness.sent_to(CALLER)
        assert isinstance(reply, SipResponse)
        answers.append((method, reply.status, reply.headers.get("Allow")))
    allow = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
    assert answers == [
        ("OPTIONS", 200, allow),
        ("INFO", 200, allow),
        ("NOTIFY", 200, allow),
        ("MESSAGE", 501, allow),
    ]
    assert not harness.media.legs["A"].closed
    assert harness.backend.ended == []


async def test_a_server_stop_while_the_buyer_rings_refuses_the_caller_and_cancels_the_buyer(
    harness: Harness,
) -> None:
    buyer_invite = await harness.dial()
    harness.receive(response_to(buyer_invite, 180, "Ringing"), BUYER)
    await harness.settle()
    harness.endpoint.take()
    [runner] = harness.b2bua.runners
    await harness.close()
    sent = harness.endpoint.take()
    assert statuses([m for m, d in sent if d == CALLER]) == [500]
    assert requests([m for m, d in sent if d == BUYER]) == ["CANCEL"]
    assert harness.media.legs["A"].closed
    assert harness.media.legs["B1"].closed
    interrupted = harness.backend.entries[-1]
    assert (interrupted.kind, dict(interrupted.data)) == (
        "interrupted",
        {"outcome": "interrupted", "reason": "server stopping"},
    )
    assert harness.backend.finished == [f"{runner.call_id}/B1"]
    assert harness.backend.ended == ["interrupted"]
    assert harness.b2bua.runners == set()


async def test_a_server_stop_after_the_bridge_hangs_up_both_sides(harness: Harness) -> None:
    await harness.bridge()
    [runner] = harness.b2bua.runners
    await harness.close()
    sent = harness.endpoint.take()
    assert requests([m for m, d in sent if d == CALLER]) == ["BYE"]
    assert requests([m for m, d in sent if d == BUYER]) == ["BYE"]
    assert statuses([m for m, _ in sent]) == []
    assert harness.backend.finished == [f"{runner.call_id}/B1"]
    assert harness.backend.ended == ["interrupted"]


async def test_a_caller_our_responses_cannot_reach_any_more_has_hung_up(
    harness: Harness,
) -> None:
    """RFC 3261 18.2.2: its connection closed and a new one failed, so the buyer is cancelled."""
    buyer_invite = await harness.dial()
    harness.receive(response_to(buyer_invite, 180, "Ringing"), BUYER)
    await harness.settle()
    harness.endpoint.take()

    harness.core.transport_error(
        TransactionKey("z9hG4bK-caller-1", "INVITE", "127.0.0.1:5071"), server=True
    )
    harness.endpoint.flush()
    await harness.settle()

    sent = harness.endpoint.take()
    assert [m for m, d in sent if d == CALLER] == []
    assert requests([m for m, d in sent if d == BUYER]) == ["CANCEL"]
    assert harness.media.legs["A"].closed
    assert harness.backend.ended == ["caller_hangup"]
