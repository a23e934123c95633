"""The call server end to end over loopback, with real SIPp callers and buyers.

Each test starts a :class:`CallwhisperServer` on SQLite in ``tmp_path``,
SIPp buyers (UAS) and a SIPp caller (UAC), and checks both what the peers
saw and the call's stored timeline. Whisper waits are short so that each
test takes a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from callwhisper.engine.media import MediaConfig
from callwhisper.engine.server import CallwhisperServer, ServerConfig
from callwhisper.engine.transport import TransportConfig
from callwhisper.store import CallRecord
from tests.integration.peers.net import LOOPBACK
from tests.integration.peers.sipp import SIPP_PCAP_DIR, SippLauncher, SippOptions, SippPeer

pytestmark = pytest.mark.integration

NUMBER = "sales"
"""The tracking number SIPp's caller dials (``-s``): a SIP user part."""


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SippLauncher]:
    """SIPp peers, all killed at teardown."""
    if shutil.which("sipp") is None or not SIPP_PCAP_DIR.is_dir():
        pytest.skip("sipp and its sample captures are needed (Debian package sip-tester)")
    launcher = SippLauncher(tmp_path / "sipp")
    yield launcher
    launcher.close()


def configuration(buyers: list[tuple[str, str]]) -> dict[str, Any]:
    """One campaign whose tiers try ``(buyer id, SIP URI)`` in order, with a short whisper."""
    return {
        "version": 1,
        "buyers": [
            {
                "id": buyer,
                "conversion": {"revenue": "20.00", "buffer_seconds": 60},
                "whisper": {"text": "Press 1.", "wait_seconds": 1.0, "plays": 1},
                "targets": [{"id": "main", "destination": uri}],
            }
            for buyer, uri in buyers
        ],
        "campaigns": [
            {
                "id": "test",
                "routing": {
                    "tiers": [{"buyers": [{"buyer": buyer}]} for buyer, _ in buyers],
                    "hunt_timeout_seconds": 30,
                },
            }
        ],
        "numbers": [{"number": NUMBER, "campaign": "test"}],
    }


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[Any]:
    """A factory starting a server on a configuration; shut down at teardown."""
    servers: list[CallwhisperServer] = []

    async def start(document: dict[str, Any]) -> CallwhisperServer:
        path = tmp_path / "callwhisper.yaml"
        path.write_text(json.dumps(document))  # JSON is YAML
        server = CallwhisperServer(
            ServerConfig(
                data_dir=tmp_path / "var",
                configuration_file=path,
                sip=TransportConfig(host=LOOPBACK, port=0),
                media=MediaConfig(address=LOOPBACK, port_min=42000, port_max=42999),
                drain_timeout=5.0,
            )
        )
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown()


async def finished_call(server: CallwhisperServer) -> CallRecord:
    """The one call of the test, once its runner is done and its record written."""
    assert server.b2bua is not None
    assert server.store is not None
    tasks = set(server.b2bua.tasks)
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=15.0)
        assert not pending, "the call did not end"
    calls = await server.store.calls.list_calls(with_events=True)
    assert len(calls) == 1
    return calls[0]


def kinds(call: CallRecord) -> list[tuple[str, str | None]]:
    """The stored timeline as (kind, leg) pairs."""
    return [(event.kind, event.leg_id) for event in call.events]


async def place_call(sipp: SippLauncher, server: CallwhisperServer, hold_ms: int) -> SippPeer:
    """Start SIPp's basic caller dialing the tracking number."""
    options = SippOptions(pause_ms=hold_ms, service=NUMBER, timeout=20.0)
    return sipp.uac("caller-basic", server.sip_address, options)


async def test_caller_is_bridged_to_a_buyer_who_presses_1(
    sipp: SippLauncher, start_server: Any
) -> None:
    """SIPp caller -> callwhisper -> SIPp buyer pressing 1: 200 OK, accept and bridge stored."""
    buyer = sipp.uas("buyer-accepts", SippOptions(pause_ms=300, timeout=20.0))
    server = await start_server(configuration([("acme", buyer.uri())]))
    caller = await place_call(sipp, server, hold_ms=1500)

    caller_result = await caller.wait_async()
    buyer_result = await buyer.wait_async()
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
    sipp: SippLauncher, start_server: Any
) -> None:
    """call-flow 10: a voicemail box presses nothing, is declined by timeout, the hunt goes on."""
    voicemail = sipp.uas("buyer-voicemail-silent", SippOptions(timeout=20.0))
    accepting = sipp.uas("buyer-accepts", SippOptions(pause_ms=300, timeout=20.0))
    document = configuration([("voicemail", voicemail.uri()), ("acme", accepting.uri())])
    server = await start_server(document)
    caller = await place_call(sipp, server, hold_ms=1000)

    (await caller.wait_async()).assert_succeeded()
    (await voicemail.wait_async()).assert_succeeded()
    (await accepting.wait_async()).assert_succeeded()

    call = await finished_call(server)
    declines = [event.data for event in call.events if event.kind == "decline"]
    assert declines == [{"reason": "timeout"}]
    assert ("bridge", "B2") in kinds(call)
    assert ("bridge", "B1") not in kinds(call)
    assert call.outcome == "connected"


async def test_busy_buyer_cascades_to_the_next(sipp: SippLauncher, start_server: Any) -> None:
    """call-flow 6 and 11: 486 ends the leg as busy and the next buyer is dialed."""
    busy = sipp.uas("buyer-busy", SippOptions(timeout=20.0))
    accepting = sipp.uas("buyer-accepts", SippOptions(pause_ms=300, timeout=20.0))
    server = await start_server(configuration([("busy", busy.uri()), ("acme", accepting.uri())]))
    caller = await place_call(sipp, server, hold_ms=1000)

    (await caller.wait_async()).assert_succeeded()
    (await busy.wait_async()).assert_succeeded()
    (await accepting.wait_async()).assert_succeeded()

    call = await finished_call(server)
    ends = {event.leg_id: event.data for event in call.events if event.kind == "leg_end"}
    assert ends["B1"]["reason"] == "busy"
    assert ends["B1"]["status"] == "486"
    assert ("bridge", "B2") in kinds(call)
