"""The Audio value: PCM layout, duration, and G.711 frames encoded once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import callwhisper.audio.audio as audio_module
from callwhisper.audio import FRAME_SAMPLES, Audio
from callwhisper.media.g711 import alaw_encode, ulaw_encode
from tests.unit.audio.helpers import tone

ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def ramp(count: int) -> Audio:
    """Distinct, non-silent samples so that any misplaced byte shows."""
    return Audio.from_samples(
        (np.arange(count, dtype=np.int64) * 97 % 20000 - 10000).astype(np.int16)
    )


def test_pcm_is_little_endian_int16() -> None:
    audio = Audio.from_samples(np.array([1, -2, 0x1234], dtype=np.int16))
    assert audio.pcm == b"\x01\x00\xfe\xff\x34\x12"
    assert audio.samples.tolist() == [1, -2, 0x1234]


def test_duration_counts_8khz_samples() -> None:
    audio = Audio(bytes(2 * 12000))
    assert audio.sample_count == 12000
    assert audio.duration == 1.5


def test_odd_byte_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="whole 16-bit samples"):
        Audio(b"\x00\x00\x00")


def test_stereo_samples_are_rejected() -> None:
    with pytest.raises(ValueError, match="mono"):
        Audio.from_samples(np.zeros((10, 2), dtype=np.int16))


def test_audio_is_immutable_and_compares_by_pcm() -> None:
    first, second = Audio(b"\x01\x00"), Audio(b"\x01\x00")
    assert first == second
    assert hash(first) == hash(second)
    with pytest.raises(AttributeError):
        first.pcm = b""  # type: ignore[misc]


def test_silence_has_the_requested_length_and_is_silent() -> None:
    audio = Audio.silence(0.25)
    assert audio.sample_count == 2000
    assert audio.levels.silent


def test_concatenation_joins_pcm() -> None:
    assert (Audio(b"\x01\x00") + Audio(b"\x02\x00")).pcm == b"\x01\x00\x02\x00"


def test_repr_shows_duration_not_bytes() -> None:
    assert repr(Audio.silence(1.0)) == "Audio(1.000 s, 8000 samples)"


def test_levels_of_a_half_scale_tone() -> None:
    audio = Audio.from_samples((tone(1000, 1.0, 8000, 0.5) * 32768).astype(np.int16))
    assert audio.levels.duration == 1.0
    assert audio.levels.rms_dbfs == pytest.approx(-9.03, abs=0.05)
    assert not audio.levels.silent


def test_ulaw_and_alaw_are_the_codec_output() -> None:
    audio = ramp(500)
    assert audio.ulaw == ulaw_encode(audio.pcm)
    assert audio.alaw == alaw_encode(audio.pcm)
    assert len(audio.ulaw) == len(audio.alaw) == 500


def test_encodings_are_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counting_ulaw(pcm: bytes) -> bytes:
        calls.append(len(pcm))
        return ulaw_encode(pcm)

    monkeypatch.setattr(audio_module, "ulaw_encode", counting_ulaw)
    audio = ramp(400)
    first = audio.ulaw_frames
    assert audio.ulaw_frames is first
    assert audio.frames("PCMU") is first
    assert audio.ulaw is audio.ulaw
    # one call for the prompt, one for the padding byte
    assert calls == [800, 2]


def test_frames_are_20ms_with_codec_silence_padding() -> None:
    audio = ramp(400)
    for frames, encoded, silence in (
        (audio.ulaw_frames, audio.ulaw, ULAW_SILENCE),
        (audio.alaw_frames, audio.alaw, ALAW_SILENCE),
    ):
        assert [len(frame) for frame in frames] == [FRAME_SAMPLES] * 3
        assert b"".join(frames)[:400] == encoded
        assert frames[2][80:] == bytes([silence]) * 80


def test_whole_frames_get_no_padding_frame() -> None:
    audio = ramp(2 * FRAME_SAMPLES)
    assert b"".join(audio.frames("PCMA")) == audio.alaw
    assert len(audio.frames("PCMA")) == 2


def test_empty_audio_has_no_frames() -> None:
    assert Audio(b"").frames("PCMU") == ()


def test_unknown_codec_is_rejected() -> None:
    with pytest.raises(ValueError, match="unsupported codec 'G722'"):
        ramp(10).frames("G722")  # type: ignore[arg-type]


@given(st.binary(max_size=2000).filter(lambda data: len(data) % 2 == 0))
def test_frames_of_any_length_rebuild_the_encoding(pcm: bytes) -> None:
    audio = Audio(pcm)
    frames = audio.frames("PCMU")
    assert all(len(frame) == FRAME_SAMPLES for frame in frames)
    assert len(frames) == -(-audio.sample_count // FRAME_SAMPLES)
    joined = b"".join(frames)
    assert joined[: audio.sample_count] == audio.ulaw
    assert joined[audio.sample_count :] == bytes([ULAW_SILENCE]) * (len(joined) - len(pcm) // 2)
