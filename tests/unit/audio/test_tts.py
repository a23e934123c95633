"""TTS options, the engine registry, and the espeak-ng engine driven by stand-in programs."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile

from callwhisper.audio import (
    DEFAULT_ENGINE,
    EspeakNgEngine,
    TtsOptions,
    available_engines,
    get_engine,
    register_engine,
)
from callwhisper.audio.dsp import TARGET_RMS_DBFS
from callwhisper.errors import AudioError, ConfigError
from tests.unit.audio.helpers import FakeEngine, tone


def fake_program(directory: Path, script: str) -> str:
    """A shell script standing in for espeak-ng; returns its path."""
    path = directory / "fake-espeak-ng"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_default_options() -> None:
    assert TtsOptions() == TtsOptions(language="en-US", voice=None, rate_wpm=160, pitch=50)


def test_bad_options_are_a_configuration_error_naming_every_field() -> None:
    with pytest.raises(ConfigError) as caught:
        TtsOptions(language=" ", voice="", rate_wpm=20, pitch=101)
    assert caught.value.problems == [
        "tts.language: must not be empty",
        "tts.voice: must not be empty; leave it unset for the default",
        "tts.rate_wpm: 20 is outside 80..450",
        "tts.pitch: 101 is outside 0..100",
    ]


def test_espeak_ng_is_registered_as_the_default() -> None:
    assert DEFAULT_ENGINE == "espeak-ng"
    assert "espeak-ng" in available_engines()
    assert isinstance(get_engine(), EspeakNgEngine)


def test_registered_engine_is_made_by_its_factory(fake_engine: FakeEngine) -> None:
    assert get_engine("fake") is fake_engine
    assert "fake" in available_engines()


def test_registering_a_taken_name_needs_replace(fake_engine: FakeEngine) -> None:
    other = FakeEngine()
    with pytest.raises(ValueError, match="'fake' is already registered"):
        register_engine("fake", lambda: other)
    register_engine("fake", lambda: other, replace=True)
    assert get_engine("fake") is other


def test_unknown_engine_is_a_configuration_error_listing_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown engine 'polly' \(known: .*espeak-ng"):
        get_engine("polly")


def test_espeak_command_line() -> None:
    command = EspeakNgEngine().command(TtsOptions(rate_wpm=150, pitch=40))
    assert command == ["--stdout", "--stdin", "-b", "1", "-v", "en-us", "-s", "150", "-p", "40"]


def test_espeak_voice_overrides_language_and_pitch_is_capped_at_99() -> None:
    command = EspeakNgEngine().command(TtsOptions(voice="en-gb+f3", pitch=100))
    assert command[5:] == ["en-gb+f3", "-s", "160", "-p", "99"]


def test_missing_program_says_how_to_install_it() -> None:
    engine = EspeakNgEngine("callwhisper-test-no-such-program")
    with pytest.raises(AudioError, match=r"not found; install it .*apt-get install espeak-ng"):
        engine.synthesize("hello", TtsOptions())


def test_blank_text_is_refused() -> None:
    with pytest.raises(AudioError, match="text is empty"):
        EspeakNgEngine().synthesize(" \n", TtsOptions())


def test_failing_program_reports_status_and_message(tmp_path: Path) -> None:
    program = fake_program(tmp_path, "echo 'Error: no such voice' >&2; exit 1")
    with pytest.raises(AudioError, match="exited with status 1: Error: no such voice"):
        EspeakNgEngine(program).synthesize("hello", TtsOptions())


def test_output_that_is_not_wav_is_an_audio_error(tmp_path: Path) -> None:
    program = fake_program(tmp_path, "echo garbage")
    with pytest.raises(AudioError, match="not a readable WAV"):
        EspeakNgEngine(program).synthesize("hello", TtsOptions())


def test_hanging_program_times_out(tmp_path: Path) -> None:
    program = fake_program(tmp_path, "exec sleep 10")
    with pytest.raises(AudioError, match=r"no result after 0\.2 s"):
        EspeakNgEngine(program, timeout=0.2).synthesize("hello", TtsOptions())


def test_text_goes_in_on_stdin_and_wav_is_conditioned(tmp_path: Path) -> None:
    wav = io.BytesIO()
    soundfile.write(wav, tone(440, 1.0, 22050, 0.05), 22050, format="WAV", subtype="PCM_16")
    (tmp_path / "out.wav").write_bytes(wav.getvalue())
    program = fake_program(tmp_path, f'cat > "{tmp_path}/stdin.txt"; cat "{tmp_path}/out.wav"')
    audio = EspeakNgEngine(program).synthesize("-v is not an option here", TtsOptions())
    assert (tmp_path / "stdin.txt").read_text() == "-v is not an option here"
    assert audio.sample_count == 8000
    assert audio.levels.active_rms_dbfs == pytest.approx(TARGET_RMS_DBFS, abs=0.1)
    assert np.abs(audio.samples).max() > 0
