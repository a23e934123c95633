"""Recordings import: every supported format, rate and channel count, and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from callwhisper.audio import SAMPLE_RATE, import_recording, import_recording_bytes
from callwhisper.audio.dsp import PEAK_CEILING_DBFS, TARGET_RMS_DBFS
from callwhisper.errors import AudioError
from tests.unit.audio.helpers import tone


def write(path: Path, samples: np.ndarray, rate: int, subtype: str | None = None) -> Path:
    """Write ``samples`` with the format given by the file extension."""
    soundfile.write(path, samples, rate, subtype=subtype)
    return path


def dominant_frequency(samples: np.ndarray) -> float:
    """Frequency of the strongest FFT bin at 8 kHz."""
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE)[int(spectrum.argmax())])


@pytest.mark.parametrize(
    ("name", "rate", "channels", "subtype"),
    [
        ("stereo-44k.wav", 44100, 2, "PCM_16"),
        ("mono-16k.wav", 16000, 1, "PCM_24"),
        ("mono-8k-float.wav", 8000, 1, "FLOAT"),
        ("stereo-44k.mp3", 44100, 2, None),
        ("mono-16k.mp3", 16000, 1, None),
        ("stereo-48k.ogg", 48000, 2, "VORBIS"),
        ("mono-22k.ogg", 22050, 1, "VORBIS"),
        ("stereo-96k.flac", 96000, 2, "PCM_24"),
        ("mono-11k.flac", 11025, 1, "PCM_16"),
    ],
)
def test_import_gives_8khz_at_telephony_loudness(
    tmp_path: Path, name: str, rate: int, channels: int, subtype: str | None
) -> None:
    mono = tone(1000, 1.5, rate, 0.05)
    samples = np.stack([mono] * channels, axis=1) if channels > 1 else mono
    audio = import_recording(write(tmp_path / name, samples, rate, subtype))
    # MP3 adds encoder delay and padding; the other formats are sample exact
    assert audio.duration == pytest.approx(1.5, abs=0.1 if name.endswith(".mp3") else 0.001)
    assert audio.levels.active_rms_dbfs == pytest.approx(TARGET_RMS_DBFS, abs=0.5)
    assert audio.levels.peak_dbfs <= PEAK_CEILING_DBFS + 0.01
    assert dominant_frequency(audio.samples) == pytest.approx(1000, abs=2)


def test_format_is_recognised_from_content_not_name(tmp_path: Path) -> None:
    flac = write(tmp_path / "prompt.flac", tone(440, 1.0, 16000), 16000)
    misnamed = tmp_path / "prompt.wav"
    flac.rename(misnamed)
    assert import_recording(misnamed).duration == 1.0


def test_import_from_bytes(tmp_path: Path) -> None:
    data = write(tmp_path / "p.ogg", tone(440, 1.0, 44100), 44100).read_bytes()
    assert import_recording_bytes(data, "upload.ogg").duration == 1.0


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    left = tone(1000, 1.0, 16000, 0.5)
    right = tone(300, 1.0, 16000, 0.05)
    audio = import_recording(write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000))
    assert dominant_frequency(audio.samples) == 1000
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert spectrum[300] > spectrum[1000] / 20


def test_loud_square_wave_is_limited_not_wrapped(tmp_path: Path) -> None:
    square = np.where(np.arange(16000) % 40 < 20, 1.0, -1.0)
    audio = import_recording(write(tmp_path / "loud.wav", square, 16000))
    assert audio.levels.peak_dbfs <= PEAK_CEILING_DBFS + 0.01
    assert audio.levels.active_rms_dbfs < TARGET_RMS_DBFS + 0.5


def test_text_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "whisper.wav"
    path.write_text("Auto insurance lead, press 1\n")
    with pytest.raises(AudioError, match=r"whisper\.wav: not a readable audio file"):
        import_recording(path)


def test_empty_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp3"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.mp3: not a readable audio file"):
        import_recording(path)


def test_corrupt_flac_is_refused_by_name(tmp_path: Path) -> None:
    path = write(tmp_path / "prompt.flac", tone(440, 2.0, 44100), 44100)
    data = path.read_bytes()
    path.write_bytes(data[:200] + bytes(range(256)) * 8 + data[2248:])
    with pytest.raises(AudioError, match=r"prompt\.flac: not a readable audio file"):
        import_recording(path)


def test_audio_file_without_samples_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "none.wav", np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(AudioError, match=r"none\.wav: contains no audio"):
        import_recording(path)


def test_silent_recording_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "quiet.wav", np.zeros(8000, dtype=np.float32), 8000)
    with pytest.raises(AudioError, match=r"quiet\.wav: contains only silence"):
        import_recording(path)


def test_channels_that_cancel_out_are_silence(tmp_path: Path) -> None:
    left = tone(440, 1.0, 8000)
    path = write(tmp_path / "inverted.wav", np.stack([left, -left], axis=1), 8000)
    with pytest.raises(AudioError, match="contains only silence"):
        import_recording(path)


def test_too_long_recording_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "long.wav", tone(440, 2.0, 8000), 8000)
    with pytest.raises(AudioError, match=r"long\.wav: longer than the 1 s allowed"):
        import_recording(path, max_seconds=1)


def test_format_outside_the_supported_list_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "prompt.aiff", tone(440, 1.0, 8000), 8000)
    with pytest.raises(AudioError, match=r"prompt\.aiff: AIFF .* is not supported"):
        import_recording(path)


def test_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"absent\.wav: cannot read the file"):
        import_recording(tmp_path / "absent.wav")
