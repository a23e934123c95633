"""Requests the engine answers besides calls, end to end: OPTIONS probes and re-INVITEs.

A real SIPp sends them to a running :class:`CallwhisperServer`: OPTIONS
outside any dialog (over UDP and TCP), and hold, resume and an unusable
offer as re-INVITEs of a bridged caller.
"""

from __future__ import annotations

import re

import pytest

from tests.integration.engine.calls import buyer, caller, configuration, finished_call, kinds
from tests.integration.engine.conftest import StartServer
from tests.integration.peers.sipp import SippLauncher

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_options_is_answered_200_with_allow_and_no_call(
    sipp: SippLauncher, start_server: StartServer, transport: str
) -> None:
    server = await start_server(configuration([("acme", "sip:buyer@127.0.0.1:9")]))
    probe = caller(
        sipp, server, "caller-sends-options", transport="tcp" if transport == "tcp" else "udp"
    )
    result = await probe.wait_async()
    result.assert_succeeded()
    answer = next(m for m in result.messages if m.direction == "received" and m.kind == "200")
    assert "OPTIONS" in (answer.header("Allow") or "")
    assert answer.header("Server") == "callwhisper"
    assert server.store is not None
    assert await server.store.calls.list_calls() == []


async def test_a_bridged_caller_holds_resumes_and_offers_an_unknown_codec(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """sendonly -> 200 recvonly, sendrecv -> 200 sendrecv, G.729 only -> 488; the call goes on."""
    accepting = buyer(sipp, "buyer-accepts", pause_ms=300)
    server = await start_server(configuration([("acme", accepting.uri())]))
    calling = caller(sipp, server, "caller-holds-and-resumes", pause_ms=500)

    caller_result = await calling.wait_async()
    caller_result.assert_succeeded()
    (await accepting.wait_async()).assert_succeeded()
    answers = [m for m in caller_result.messages if m.direction == "received"]
    finals = [m.kind for m in answers if m.kind not in ("100", "180", "183")]
    assert finals == ["200", "200", "200", "488", "200"]
    session_versions = [
        int(found.group(1))
        for m in answers
        if (found := re.search(r"^o=\S+ \d+ (\d+) ", m.text, re.MULTILINE)) and m.kind == "200"
    ]
    # RFC 3264 8: each new answer of the same session has a higher version.
    assert session_versions == sorted(set(session_versions))
    assert len(session_versions) == 3
    # The 488 was ACKed: it was not retransmitted (RFC 3261 17.2.1, Timer G).
    assert caller_result.count("488") == 1

    call = await finished_call(server)
    assert call.outcome == "connected"
    assert ("bridge", "B1") in kinds(call)
