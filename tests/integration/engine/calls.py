"""Helpers shared by the end-to-end engine tests: configurations and stored-call checks.

The tests in this folder start a real :class:`CallwhisperServer` (fixture
``start_server`` in ``conftest.py``) and real peers (SIPp, baresip) on
loopback, then check both what the peers saw and the call's stored record.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from callwhisper.audio import Audio, get_engine
from callwhisper.domain import TtsVoice
from callwhisper.engine.server import CallwhisperServer
from callwhisper.store import CallRecord
from callwhisper.whisper import tts_options
from tests.integration.peers.sipp import ScenarioName, SippLauncher, SippOptions, SippPeer

NUMBER = "sales"
"""The tracking number the callers dial: a SIP user part."""
PEER_TIMEOUT = 40.0
"""SIPp's own limit for one run: far above what any test needs, on a loaded machine too."""
DEFAULT_VOICE = tts_options(TtsVoice())
"""The options the engine speaks with where a configuration leaves the voice as it is."""


def configuration(
    buyers: list[tuple[str, str]],
    *,
    whisper: dict[str, Any] | None = None,
    campaign: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One campaign whose tiers try ``(buyer id, SIP URI)`` in order, with a short whisper.

    ``whisper`` replaces every buyer's whisper settings; ``campaign`` adds or
    replaces keys of the campaign (``ring_timeout_seconds``, ``fallback``...).
    """
    buyer_whisper = whisper or {"text": "Press 1.", "wait_seconds": 1.0, "plays": 1}
    document: dict[str, Any] = {
        "version": 1,
        "buyers": [
            {
                "id": buyer,
                "conversion": {"revenue": "20.00", "buffer_seconds": 60},
                "whisper": buyer_whisper,
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
    if campaign:
        document["campaigns"][0].update(campaign)
    return document


def buyer(sipp: SippLauncher, scenario: ScenarioName, pause_ms: int | None = None) -> SippPeer:
    """A SIPp UAS listening for one call (a buyer or the overflow line)."""
    return sipp.uas(scenario, SippOptions(pause_ms=pause_ms, timeout=PEER_TIMEOUT))


def caller(
    sipp: SippLauncher,
    server: CallwhisperServer,
    scenario: ScenarioName | Path = "caller-basic",
    **options: Any,
) -> SippPeer:
    """A SIPp caller dialing the tracking number; ``options`` are more :class:`SippOptions`."""
    settings = SippOptions(service=NUMBER, timeout=PEER_TIMEOUT, **options)
    return sipp.uac(scenario, server.sip_address, settings)


async def finished_calls(
    server: CallwhisperServer, count: int, wait_seconds: float = 15.0
) -> list[CallRecord]:
    """The ``count`` calls of the test, once their runners are done and their records written."""
    assert server.b2bua is not None
    assert server.store is not None
    tasks = set(server.b2bua.tasks)
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=wait_seconds)
        assert not pending, f"{len(pending)} of the calls did not end"
    calls = await server.store.calls.list_calls(with_events=True)
    assert len(calls) == count
    return calls


async def finished_call(server: CallwhisperServer, wait_seconds: float = 15.0) -> CallRecord:
    """The one call of the test, once its runner is done and its record written."""
    [call] = await finished_calls(server, 1, wait_seconds)
    return call


def kinds(call: CallRecord) -> list[tuple[str, str | None]]:
    """The stored timeline as (kind, leg) pairs."""
    return [(event.kind, event.leg_id) for event in call.events]


def leg_ends(call: CallRecord) -> dict[str | None, dict[str, Any]]:
    """The data of each leg's ``leg_end`` timeline entry, by leg id."""
    return {event.leg_id: dict(event.data) for event in call.events if event.kind == "leg_end"}


def event_time(call: CallRecord, kind: str, leg: str) -> float:
    """When the call's first ``kind`` entry of ``leg`` happened, in POSIX seconds."""
    return next(e.at for e in call.events if e.kind == kind and e.leg_id == leg).timestamp()


def speech(server: CallwhisperServer, text: str) -> Audio:
    """``text`` as the engine speaks it with the default voice (from its speech cache)."""
    assert server.b2bua is not None
    return server.b2bua.prompts.tts_cache.render(get_engine("espeak-ng"), text, DEFAULT_VOICE)
