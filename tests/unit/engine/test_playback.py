"""Playbacks: frames from an Audio or a list, once or looped, and codec silence."""

from __future__ import annotations

import pytest

from callwhisper.audio import Audio
from callwhisper.engine.playback import Playback, silence_frame
from callwhisper.media.g711 import alaw_encode, ulaw_encode
from callwhisper.media.tones import ringback


def test_plays_each_frame_once_then_ends() -> None:
    playback = Playback(1, [b"a", b"b"], "PCMU")
    assert [playback.next_frame() for _ in range(3)] == [b"a", b"b", None]
    assert playback.frames_played == 2


def test_loop_repeats_forever() -> None:
    playback = Playback(1, [b"a", b"b"], "PCMU", loop=True)
    assert [playback.next_frame() for _ in range(5)] == [b"a", b"b", b"a", b"b", b"a"]


def test_empty_loop_is_refused() -> None:
    with pytest.raises(ValueError, match="a looped playback needs at least one frame"):
        Playback(1, [], "PCMU", loop=True)


def test_audio_uses_its_frames_in_the_leg_codec() -> None:
    audio = Audio(bytes(range(200)) * 4)  # 400 samples: two full frames and a padded third
    ulaw = Playback(1, audio, "PCMU")
    alaw = Playback(2, audio, "PCMA")
    assert [ulaw.next_frame() for _ in range(3)] == list(audio.ulaw_frames)
    assert [alaw.next_frame() for _ in range(3)] == list(audio.alaw_frames)
    assert ulaw.next_frame() is None


def test_silence_frames_are_g711_zero() -> None:
    assert silence_frame("PCMU") == ulaw_encode(bytes(320))
    assert silence_frame("PCMA") == b"\xd5" * 160


def test_a_tone_source_plays_endlessly_from_its_first_frame() -> None:
    tone = ringback("uk", encode=alaw_encode)
    playback = Playback(1, tone, "PCMA")
    frames = [playback.next_frame() for _ in range(tone.period + 2)]
    assert frames == [tone.frame(n) for n in range(tone.period + 2)]
