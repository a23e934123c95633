"""What a buyer hears: a whisper rendered to text and audio for one call's variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from callwhisper.audio import Audio, TtsCache, TtsOptions, get_engine, import_recording
from callwhisper.domain.whisper import TtsVoice, WhisperConfig
from callwhisper.flow.template import render


class Speaker(Protocol):
    """Turns whisper text into speech; raises :class:`~callwhisper.errors.AudioError`."""

    def speak(self, text: str, voice: TtsVoice) -> Audio:
        """``text`` spoken with ``voice``."""
        ...


def tts_options(voice: TtsVoice) -> TtsOptions:
    """The engine options of a configured whisper or IVR voice."""
    return TtsOptions(voice=voice.voice, rate_wpm=voice.rate)


class CachedSpeaker:
    """A :class:`Speaker` using the engine each voice names, through a :class:`TtsCache`."""

    def __init__(self, cache: TtsCache) -> None:
        """Render through ``cache``: each distinct text and voice is synthesized once."""
        self.cache = cache

    def speak(self, text: str, voice: TtsVoice) -> Audio:
        """``text`` spoken by the engine ``voice.engine``, from the cache when possible."""
        return self.cache.render(get_engine(voice.engine), text, tts_options(voice))


@dataclass(frozen=True, slots=True)
class RenderedWhisper:
    """A whisper as one call plays it: its text (None for a recording) and its audio."""

    text: str | None
    audio: Audio

    @property
    def duration(self) -> float:
        """Seconds of one play of the whisper."""
        return self.audio.duration


def whisper_text(whisper: WhisperConfig, variables: dict[str, str]) -> str | None:
    """The text the flow speaks for ``whisper`` with ``variables``; None for a recording."""
    if whisper.text is None:
        return None
    return render(whisper.text, variables, whisper.defaults)


def audio_path(whisper: WhisperConfig, base_dir: Path | None) -> Path:
    """The recording of an audio whisper; a relative path is taken from ``base_dir``."""
    assert whisper.audio is not None
    path = Path(whisper.audio)
    return base_dir / path if base_dir is not None and not path.is_absolute() else path


def render_whisper(
    whisper: WhisperConfig,
    variables: dict[str, str],
    speaker: Speaker,
    base_dir: Path | None = None,
) -> RenderedWhisper:
    """``whisper`` rendered for a call whose (spoken) variables are ``variables``.

    Raises :class:`~callwhisper.errors.AudioError` when the speech cannot be
    rendered or the recording cannot be read, and
    :class:`~callwhisper.errors.ConfigError` for an unknown TTS engine.
    """
    text = whisper_text(whisper, variables)
    if text is None:
        return RenderedWhisper(None, import_recording(audio_path(whisper, base_dir)))
    return RenderedWhisper(text, speaker.speak(text, whisper.voice))
