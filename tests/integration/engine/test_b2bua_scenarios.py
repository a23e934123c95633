"""Every SIPp scenario against the call server: what the peers saw and what was stored.

Each test starts a :class:`CallwhisperServer` on SQLite, SIPp buyers (UAS)
and a SIPp caller (UAC) from ``tests/integration/sip/scenarios``, and checks
both sides: the SIP messages each peer sent and received, and the call's
stored timeline, leg ends and outcome. Whisper waits and ring timeouts are
short; waits for the peers are generous, for a loaded machine.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from callwhisper.engine.server import CallwhisperServer
from callwhisper.store import CallRecord
from tests.integration.engine.calls import NUMBER, configuration, finished_call, kinds, leg_ends
from tests.integration.engine.conftest import StartServer
from tests.integration.peers.sipp import ScenarioName, SippLauncher, SippOptions, SippPeer

pytestmark = pytest.mark.integration

PEER_TIMEOUT = 30.0
"""SIPp's own limit for one run: far above what any test needs."""


def buyer(sipp: SippLauncher, scenario: ScenarioName, pause_ms: int | None = None) -> SippPeer:
    """A SIPp buyer listening for one call."""
    return sipp.uas(scenario, SippOptions(pause_ms=pause_ms, timeout=PEER_TIMEOUT))


def caller(
    sipp: SippLauncher,
    server: CallwhisperServer,
    scenario: ScenarioName = "caller-basic",
    **options: Any,
) -> SippPeer:
    """A SIPp caller dialing the tracking number."""
    settings = SippOptions(service=NUMBER, timeout=PEER_TIMEOUT, **options)
    return sipp.uac(scenario, server.sip_address, settings)


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
    calling = caller(sipp, server, "caller-cancels-during-whisper", recv_timeout_ms=2500)

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
