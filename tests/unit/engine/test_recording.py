"""Two-channel call recording: placement by RTP timestamp, silence for gaps, late packets."""

from __future__ import annotations

import builtins
import errno
import wave
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pytest

from callwhisper.engine.recording import BUYER, CALLER, CallRecorder
from callwhisper.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode


def frame(value: int, encoder: Callable[[bytes], bytes] = ulaw_encode) -> bytes:
    """One 20 ms G.711 frame of a constant sample value."""
    return encoder(np.full(160, value, dtype="<i2").tobytes())


def decoded(
    payload: bytes, decoder: Callable[[bytes], bytes] = ulaw_decode
) -> npt.NDArray[np.int16]:
    return np.frombuffer(decoder(payload), dtype="<i2")


def read_stereo(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        data = wav.readframes(wav.getnframes())
    return np.frombuffer(data, dtype="<i2").reshape(-1, 2)


def test_caller_is_left_and_buyer_is_right(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "call.wav", start=10.0)
    for n in range(3):
        recorder.add(CALLER, 1, 1000 + 160 * n, frame(1000), "PCMU", 10.0 + 0.02 * n)
        recorder.add(BUYER, 2, 5000 + 160 * n, frame(-2000, alaw_encode), "PCMA", 10.0 + 0.02 * n)
    recorder.close(recorder.take(10.06, final=True))
    samples = read_stereo(tmp_path / "call.wav")
    assert samples.shape == (480, 2)
    assert (samples[:, 0] == np.tile(decoded(frame(1000)), 3)).all()
    assert (samples[:, 1] == np.tile(decoded(frame(-2000, alaw_encode), alaw_decode), 3)).all()


def test_a_lost_packet_leaves_silence_of_its_length(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "call.wav", start=0.0)
    recorder.add(CALLER, 1, 0, frame(1000), "PCMU", 0.0)
    recorder.add(CALLER, 1, 320, frame(1000), "PCMU", 0.04)  # the packet at 160 never came
    recorder.close(recorder.take(0.06, final=True))
    left = read_stereo(tmp_path / "call.wav")[:, 0]
    assert len(left) == 480
    assert (left[160:320] == 0).all()
    assert (left[:160] == decoded(frame(1000))).all()
    assert (left[320:] == decoded(frame(1000))).all()


def test_a_late_start_is_placed_at_its_arrival_time(tmp_path: Path) -> None:
    """The buyer's first packet arriving 100 ms into the bridge starts 800 samples in."""
    recorder = CallRecorder(tmp_path / "call.wav", start=0.0)
    recorder.add(CALLER, 1, 0, frame(500), "PCMU", 0.0)
    recorder.add(BUYER, 2, 777, frame(500), "PCMU", 0.1)
    recorder.close(recorder.take(0.2, final=True))
    right = read_stereo(tmp_path / "call.wav")[:, 1]
    assert len(right) == 960
    assert (right[:800] == 0).all()
    assert (right[800:960] == decoded(frame(500))).all()


def test_periodic_writes_keep_a_margin_for_late_packets(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "call.wav", start=0.0)
    for n in range(50):  # one second of caller audio
        recorder.add(CALLER, 1, 160 * n, frame(700), "PCMU", 0.02 * n)
    recorder.write(recorder.take(1.0))
    recorder.add(BUYER, 2, 0, frame(-700), "PCMU", 0.9)  # reaches the part still held back
    recorder.close(recorder.take(1.0, final=True))
    samples = read_stereo(tmp_path / "call.wav")
    assert samples.shape == (8000, 2)
    assert (samples[7200:7360, 1] == decoded(frame(-700))).all()
    assert (samples[:7200, 1] == 0).all()
    assert (samples[:, 0] == np.tile(decoded(frame(700)), 50)).all()


def test_a_packet_later_than_the_margin_keeps_only_its_unwritten_part(tmp_path: Path) -> None:
    """The samples before the written end are dropped; the rest land at their own place."""
    recorder = CallRecorder(tmp_path / "call.wav", start=0.0)
    for n in range(50):
        recorder.add(CALLER, 1, 160 * n, frame(700), "PCMU", 0.02 * n)
    recorder.write(recorder.take(1.0))  # samples up to 6000 are in the file
    recorder.add(BUYER, 2, 0, frame(-700), "PCMU", 0.74)  # placed at 5920-6080
    recorder.close(recorder.take(1.0, final=True))
    right = read_stereo(tmp_path / "call.wav")[:, 1]
    assert len(right) == 8000
    assert not right[:6000].any()
    assert (right[6000:6080] == decoded(frame(-700))[80:]).all()
    assert not right[6080:].any()


def test_a_timestamp_jump_re_anchors_on_arrival(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "call.wav", start=0.0)
    recorder.add(CALLER, 1, 0, frame(300), "PCMU", 0.0)
    recorder.add(CALLER, 1, 4_000_000, frame(300), "PCMU", 0.02)
    recorder.close(recorder.take(0.04, final=True))
    left = read_stereo(tmp_path / "call.wav")[:, 0]
    assert (left == np.tile(decoded(frame(300)), 2)).all()  # the jump placed it at 0.02 s


class _DiskFull:
    """Makes every ``writeframes`` fail as a full disk does, and keeps the files wave opens."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.files: list[IO[bytes]] = []
        self.monkeypatch = monkeypatch
        real_open = builtins.open

        def tracking_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            opened = real_open(file, mode, *args, **kwargs)
            if str(file).endswith(".wav"):
                self.files.append(opened)
            return opened

        monkeypatch.setattr(builtins, "open", tracking_open)

    def fill(self) -> None:
        def failing(self: wave.Wave_write, data: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        self.monkeypatch.setattr(wave.Wave_write, "writeframes", failing)


def test_a_failed_write_then_abandon_closes_the_file_keeping_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = _DiskFull(monkeypatch)
    recorder = CallRecorder(tmp_path / "call.wav", start=0.0)
    recorder.add(CALLER, 1, 0, frame(1000), "PCMU", 0.0)
    recorder.write(recorder.take(1.0))
    disk.fill()
    recorder.add(CALLER, 1, 8000, frame(500), "PCMU", 1.0)
    with pytest.raises(OSError, match="No space left on device"):
        recorder.write(recorder.take(2.0))
    assert [f.closed for f in disk.files] == [False]
    recorder.abandon()
    assert [f.closed for f in disk.files] == [True]
    samples = read_stereo(tmp_path / "call.wav")
    assert samples.shape == (160, 2)
    assert np.array_equal(samples[:, 0], decoded(frame(1000)))
    assert not samples[:, 1].any()


def test_close_closes_the_file_even_when_the_last_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = _DiskFull(monkeypatch)
    recorder = CallRecorder(tmp_path / "call.wav", start=0.0)
    recorder.add(CALLER, 1, 0, frame(1000), "PCMU", 0.0)
    disk.fill()
    with pytest.raises(OSError, match="No space left on device"):
        recorder.close(recorder.take(0.02, final=True))
    assert [f.closed for f in disk.files] == [True]


def test_a_one_channel_recording_is_a_mono_wav_of_the_caller(tmp_path: Path) -> None:
    """A voicemail: what the caller said alone, lost packets as silence."""
    recorder = CallRecorder(tmp_path / "voicemail.wav", start=0.0, channels=1)
    recorder.add(CALLER, 7, 0, frame(1000), "PCMU", 0.0)
    recorder.add(CALLER, 7, 320, frame(-500, alaw_encode), "PCMA", 0.04)
    recorder.close(recorder.take(0.06, final=True))
    with wave.open(str(tmp_path / "voicemail.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert len(samples) == 480
    assert (samples[:160] == decoded(frame(1000))).all()
    assert (samples[160:320] == 0).all()
    assert (samples[320:] == decoded(frame(-500, alaw_encode), alaw_decode)).all()
