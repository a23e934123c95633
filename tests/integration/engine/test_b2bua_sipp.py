"""The call server end to end over loopback, with real SIPp callers and buyers.

Each test starts a :class:`CallwhisperServer` on SQLite in ``tmp_path``,
SIPp buyers (UAS) and a SIPp caller (UAC), and checks both what the peers
saw and the call's stored timeline. Whisper waits are short so that each
test takes a few seconds.
"""

from __future__ import annotations

import pytest

from tests.integration.engine.calls import (
    buyer,
    caller,
    configuration,
    finished_call,
    kinds,
    leg_ends,
)
from tests.integration.engine.conftest import StartServer
from tests.integration.peers.sipp import SippLauncher

pytestmark = pytest.mark.integration


async def test_caller_is_bridged_to_a_buyer_who_presses_1(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """SIPp caller -> callwhisper -> SIPp buyer pressing 1: 200 OK, accept and bridge stored."""
    accepting = buyer(sipp, "buyer-accepts", pause_ms=300)
    server = await start_server(configuration([("acme", accepting.uri())]))
    calling = caller(sipp, server, pause_ms=1500)

    caller_result = await calling.wait_async()
    buyer_result = await accepting.wait_async()
    caller_result.assert_succeeded()
    buyer_result.assert_succeeded()
    assert caller_result.count("183") >= 1
    assert caller_result.count("200") == 2  # the INVITE's and the BYE's

    call = await finished_call(server)
    timeline = kinds(call)
    assert ("answer", "B1") in timeline
    assert timeline.index(("accept", "B1")) < timeline.index(("bridge", "B1"))
    assert call.outcome == "connected"
    assert [leg.outcome for leg in call.legs] == ["hangup"]
    assert call.answered_at is not None
    assert call.ended_at is not None


async def test_silent_voicemail_buyer_is_declined_and_the_next_buyer_takes_the_call(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """call-flow 10: a voicemail box presses nothing, is declined by timeout, the hunt goes on."""
    voicemail = buyer(sipp, "buyer-voicemail-silent")
    accepting = buyer(sipp, "buyer-accepts", pause_ms=300)
    document = configuration([("voicemail", voicemail.uri()), ("acme", accepting.uri())])
    server = await start_server(document)
    calling = caller(sipp, server, pause_ms=1000)

    (await calling.wait_async()).assert_succeeded()
    (await voicemail.wait_async()).assert_succeeded()
    (await accepting.wait_async()).assert_succeeded()

    call = await finished_call(server)
    declines = [event.data for event in call.events if event.kind == "decline"]
    assert declines == [{"reason": "timeout"}]
    assert ("bridge", "B2") in kinds(call)
    assert ("bridge", "B1") not in kinds(call)
    assert call.outcome == "connected"


async def test_busy_buyer_cascades_to_the_next(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """call-flow 6 and 11: 486 ends the leg as busy and the next buyer is dialed."""
    busy = buyer(sipp, "buyer-busy")
    accepting = buyer(sipp, "buyer-accepts", pause_ms=300)
    server = await start_server(configuration([("busy", busy.uri()), ("acme", accepting.uri())]))
    calling = caller(sipp, server, pause_ms=1000)

    (await calling.wait_async()).assert_succeeded()
    (await busy.wait_async()).assert_succeeded()
    (await accepting.wait_async()).assert_succeeded()

    call = await finished_call(server)
    ends = leg_ends(call)
    assert ends["B1"]["reason"] == "busy"
    assert ends["B1"]["status"] == "486"
    assert ("bridge", "B2") in kinds(call)
