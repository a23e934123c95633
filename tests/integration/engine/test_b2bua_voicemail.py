"""The voicemail fallback end to end: nobody takes the call, the caller leaves a message.

A real SIPp caller dials a campaign whose only buyer is busy; the fallback
answers the caller, speaks the message (espeak-ng), beeps and records what
the caller says (SIPp plays a capture of speech) until the caller hangs up.
The recording is a mono WAV whose path is stored on the call.
"""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from tests.integration.engine.calls import (
    buyer,
    caller,
    configuration,
    event_time,
    finished_call,
    kinds,
    speech,
)
from tests.integration.engine.conftest import StartServer
from tests.integration.peers.audio import is_speech_like, load_wav
from tests.integration.peers.sipp import SippLauncher

pytestmark = pytest.mark.integration

HOLD_MS = 6000
"""How long the caller stays after the answer: the message, the beep, then its words."""


async def test_a_caller_nobody_takes_leaves_a_voicemail_recorded_to_a_mono_wav(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    busy = buyer(sipp, "buyer-busy")
    fallback = {"action": "voicemail", "message": "Please leave a message."}
    server = await start_server(
        configuration([("busy", busy.uri())], campaign={"fallback": fallback})
    )
    calling = caller(sipp, server, pause_ms=HOLD_MS)

    caller_result = await calling.wait_async()
    caller_result.assert_succeeded()
    (await busy.wait_async()).assert_succeeded()
    assert caller_result.count("200") == 2  # answered for the voicemail; its BYE answered

    call = await finished_call(server)
    timeline = kinds(call)
    assert timeline.index(("recording_start", "A")) < timeline.index(("recording_stop", "A"))
    # The recording starts once the whole message has been spoken to the caller.
    message_seconds = speech(server, "Please leave a message.").duration
    answered = event_time(call, "caller_answered", "A")
    assert event_time(call, "recording_start", "A") - answered >= message_seconds - 0.05
    assert [e.data["action"] for e in call.events if e.kind == "fallback"] == ["voicemail"]
    assert call.recording_path is not None
    path = Path(call.recording_path)
    assert path.name == f"{call.id}.wav"
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
    message = load_wav(path)
    # From the end of the spoken message until the caller's BYE: a few seconds of speech.
    assert 1.0 < message.duration < HOLD_MS / 1000
    assert is_speech_like(message), f"{path} does not hold the caller's speech"
