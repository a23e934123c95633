"""The voicemail fallback on the B2BUA: answer, message, beep, record the caller, hang up.

The harness of ``b2bua_harness`` with a campaign whose fallback is a
voicemail, and a fake media engine that also records legs alone. The buyer
is busy, so the fallback runs at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from callwhisper.engine.media import PlaybackFinished as PlaybackEvent
from callwhisper.engine.runner import CallRunner, TimerInput
from callwhisper.media.g711 import alaw_decode
from callwhisper.sip.message import SipRequest
from tests.unit.engine.b2bua_harness import (
    BUYER,
    CALLER,
    FakeLeg,
    FakeMedia,
    Harness,
    caller_bye,
    document,
    response_to,
    statuses,
)

MAX_SECONDS = 30.0


class FakeRecording:
    """A leg recorded alone, until stopped."""

    def __init__(self, leg: FakeLeg, path: Path) -> None:
        self.leg = leg
        self.path = path
        self.stopped = False


class RecordingMedia(FakeMedia):
    """The fake media engine, able to record one leg and keeping what each leg played."""

    def __init__(self) -> None:
        super().__init__()
        self.recordings: list[FakeRecording] = []
        self.sources: dict[str, list[Any]] = {}

    def open_leg(
        self, codec: Any, *, remote: Any = None, on_event: Any = None, name: str
    ) -> FakeLeg:
        leg = super().open_leg(codec, remote=remote, on_event=on_event, name=name)
        sources = self.sources.setdefault(name.rsplit("/", 1)[1], [])
        play = leg.play

        def recorded_play(source: object, *, loop: bool = False) -> int:
            sources.append(source)
            return play(source, loop=loop)

        leg.play = recorded_play  # type: ignore[method-assign]
        return leg

    def record(self, leg: FakeLeg, path: Path) -> FakeRecording:
        recording = FakeRecording(leg, path)
        self.recordings.append(recording)
        return recording

    def stop_recording(self, recording: FakeRecording) -> None:
        recording.stopped = True


class VoicemailHarness(Harness):
    """The B2BUA on a campaign whose fallback takes a voicemail."""

    media: RecordingMedia

    def __init__(self, tmp_path: Path) -> None:
        configuration = document()
        configuration["campaigns"][0]["fallback"] = {
            "action": "voicemail",
            "message": "Leave a message.",
            "voicemail_max_seconds": MAX_SECONDS,
        }
        super().__init__(tmp_path, configuration, media=RecordingMedia())

    async def leave_message(self) -> CallRunner:
        """A call whose only buyer is busy, up to the start of the voicemail recording."""
        buyer_invite = await self.dial()
        self.receive(response_to(buyer_invite, 486, "Busy Here"), BUYER)
        await self.settle()
        caller = self.media.legs["A"]
        assert self.media.recordings == []  # the message plays first
        message = caller.playing
        assert message is not None
        caller.on_event(PlaybackEvent("A", message, 0.0))
        await self.settle()
        return next(iter(self.b2bua.runners))

    def hang_up_caller(self) -> None:
        """The caller sends its BYE, in the dialog our 200 made."""
        to_tag = next(
            m.to.tag
            for m, d in self.endpoint.sent
            if d == CALLER and not isinstance(m, SipRequest) and m.status == 200
        )
        self.receive(caller_bye(to_tag), CALLER)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[VoicemailHarness]:
    async with VoicemailHarness(tmp_path) as harness:
        yield harness


async def test_the_caller_is_answered_told_beeped_and_recorded(
    harness: VoicemailHarness, tmp_path: Path
) -> None:
    runner = await harness.leave_message()
    # Since the buyer's INVITE (100 and 183 came before): the answer, for the message.
    assert statuses([m for m, d in harness.endpoint.sent if d == CALLER]) == [200]
    caller = harness.media.legs["A"]
    [recording] = harness.media.recordings
    assert recording.leg is caller
    assert recording.path == tmp_path / f"{runner.call_id}.wav"
    assert harness.backend.recording_paths == [recording.path]
    # The spoken message, then the beep: 400 ms of 1 kHz in the caller's codec (PCMA).
    sources = harness.media.sources["A"]
    assert len(sources) == 2
    beep = sources[1]
    assert len(beep) == 20
    pcm = np.frombuffer(b"".join(alaw_decode(frame) for frame in beep), dtype="<i2")
    spectrum = np.abs(np.fft.rfft(pcm))
    assert np.argmax(spectrum) * 8000 / len(pcm) == pytest.approx(1000.0, abs=10)
    assert not recording.stopped


async def test_the_caller_hanging_up_ends_the_recording(harness: VoicemailHarness) -> None:
    await harness.leave_message()
    harness.hang_up_caller()
    await harness.settle()
    [recording] = harness.media.recordings
    assert recording.stopped
    assert harness.media.legs["A"].closed
    kinds = [(e.kind, e.leg) for e in harness.backend.entries]
    assert kinds.index(("recording_start", "A")) < kinds.index(("recording_stop", "A"))


async def test_the_longest_voicemail_ends_with_our_bye(harness: VoicemailHarness) -> None:
    runner = await harness.leave_message()
    harness.endpoint.take()
    runner.feed(TimerInput())  # the voicemail_max_seconds timer is due
    await harness.settle()
    [recording] = harness.media.recordings
    assert recording.stopped
    bye = [m for m, d in harness.endpoint.take() if d == CALLER and isinstance(m, SipRequest)]
    assert [m.method for m in bye] == ["BYE"]
    stop = next(e for e in harness.backend.entries if e.kind == "recording_stop")
    start = next(e for e in harness.backend.entries if e.kind == "recording_start")
    assert stop.at - start.at == MAX_SECONDS
