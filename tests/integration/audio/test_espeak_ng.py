"""Real speech from the espeak-ng program, alone and through the speech cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from callwhisper.audio import (
    Audio,
    TtsCache,
    TtsOptions,
    get_engine,
    region_name,
    say_amount,
    say_phone_number,
)
from callwhisper.audio.dsp import PEAK_CEILING_DBFS, TARGET_RMS_DBFS
from callwhisper.errors import AudioError

pytestmark = pytest.mark.integration

WHISPER = "Auto insurance lead from California, press 1 to accept."


def render(text: str, options: TtsOptions | None = None) -> Audio:
    """Speak ``text`` with espeak-ng."""
    return get_engine("espeak-ng").synthesize(text, options or TtsOptions())


def test_espeak_ng_whisper_is_speech_of_plausible_length() -> None:
    audio = render(WHISPER)
    assert 1.5 < audio.duration < 6.0
    assert not audio.levels.silent
    assert audio.levels.active_rms_dbfs == pytest.approx(TARGET_RMS_DBFS, abs=2.0)
    assert audio.levels.peak_dbfs <= PEAK_CEILING_DBFS + 0.01


def test_espeak_ng_short_sentence_lasts_half_a_second_to_five() -> None:
    audio = render("Press 1 to accept.")
    assert 0.5 < audio.duration < 5.0
    assert audio.levels.rms_dbfs > -40


def test_espeak_ng_frames_cover_the_whole_prompt() -> None:
    audio = render("Press 1.")
    frames = audio.frames("PCMU")
    assert all(len(frame) == 160 for frame in frames)
    assert len(frames) * 0.02 - 0.02 < audio.duration <= len(frames) * 0.02


def test_espeak_ng_faster_rate_is_shorter() -> None:
    slow = render(WHISPER, TtsOptions(rate_wpm=120))
    fast = render(WHISPER, TtsOptions(rate_wpm=240))
    assert fast.duration < 0.75 * slow.duration


def test_espeak_ng_speaks_text_starting_with_a_dash() -> None:
    assert not render("-v means nothing here").levels.silent


def test_espeak_ng_speaks_rendered_variables() -> None:
    text = (
        f"Lead from {region_name('TX')}, callback {say_phone_number('+1 415 555 0100')}, "
        f"payout {say_amount('$25.50')}."
    )
    audio = render(text)
    assert not audio.levels.silent
    assert audio.duration > 5.0


def test_espeak_ng_unknown_voice_is_an_audio_error() -> None:
    with pytest.raises(AudioError, match=r"exited with status 1: .*voice does not exist"):
        render("hello", TtsOptions(voice="zz"))


def test_espeak_ng_through_the_cache(tmp_path: Path) -> None:
    engine = get_engine("espeak-ng")
    cache = TtsCache(tmp_path)
    first = cache.render(engine, WHISPER, TtsOptions())
    assert cache.render(engine, WHISPER, TtsOptions()) is first
    restarted = TtsCache(tmp_path)
    assert restarted.render(engine, WHISPER, TtsOptions()) == first
    assert (cache.stats.misses, cache.stats.memory_hits) == (1, 1)
    assert restarted.stats.disk_hits == 1
