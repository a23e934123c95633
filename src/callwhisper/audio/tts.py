"""Text-to-speech engines behind one small interface, chosen by name.

An engine turns text into an :class:`~callwhisper.audio.audio.Audio`; the name
used in configuration (``tts.engine: espeak-ng``) picks it from the registry:

    engine = get_engine("espeak-ng")
    audio = engine.synthesize("Press 1 to accept", TtsOptions(rate_wpm=150))

Engines are synchronous and may take a few hundred milliseconds: call them from
a worker thread (``asyncio.to_thread``), and through
:class:`~callwhisper.audio.cache.TtsCache` so each text is rendered only once.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import soundfile

from callwhisper.audio.audio import Audio
from callwhisper.audio.dsp import condition
from callwhisper.errors import AudioError, ConfigError

DEFAULT_ENGINE: Final = "espeak-ng"
"""Engine used when the configuration names none."""


@dataclass(frozen=True)
class TtsOptions:
    """How to speak a text; every field takes part in the cache key."""

    language: str = "en-US"
    """BCP 47 language tag; engines pick their default voice for it."""
    voice: str | None = None
    """Engine-specific voice name (e.g. ``en-us+f3`` for espeak-ng); None for the default."""
    rate_wpm: int = 160
    """Speaking rate in words per minute; 160 is unhurried but not slow."""
    pitch: int = 50
    """Relative pitch from 0 (lowest) to 100 (highest); 50 is the voice's own."""

    def __post_init__(self) -> None:
        """Reject values no engine could honour, naming each bad field."""
        problems = []
        if not self.language.strip():
            problems.append("tts.language: must not be empty")
        if self.voice is not None and not self.voice.strip():
            problems.append("tts.voice: must not be empty; leave it unset for the default")
        if not 80 <= self.rate_wpm <= 450:
            problems.append(f"tts.rate_wpm: {self.rate_wpm} is outside 80..450")
        if not 0 <= self.pitch <= 100:
            problems.append(f"tts.pitch: {self.pitch} is outside 0..100")
        if problems:
            raise ConfigError(problems)


class TtsEngine(Protocol):
    """A text-to-speech engine."""

    @property
    def name(self) -> str:
        """The registry name, also part of the cache key."""
        ...

    def synthesize(self, text: str, options: TtsOptions) -> Audio:
        """Render ``text``; raise :class:`~callwhisper.errors.AudioError` on failure."""
        ...


EngineFactory = Callable[[], TtsEngine]
"""Makes an engine; called by :func:`get_engine` each time it is asked for one."""

_factories: dict[str, EngineFactory] = {}


def register_engine(name: str, factory: EngineFactory, *, replace: bool = False) -> None:
    """Make an engine available under ``name``.

    Registering a taken name is an error unless ``replace`` is true, so that two
    plugins cannot silently shadow each other.
    """
    if name in _factories and not replace:
        raise ValueError(f"a TTS engine named {name!r} is already registered")
    _factories[name] = factory


def unregister_engine(name: str) -> None:
    """Remove the engine registered under ``name``, if any."""
    _factories.pop(name, None)


def available_engines() -> list[str]:
    """The registered engine names, sorted."""
    return sorted(_factories)


def get_engine(name: str = DEFAULT_ENGINE) -> TtsEngine:
    """Make the engine registered under ``name``; an unknown name is a configuration error."""
    try:
        factory = _factories[name]
    except KeyError:
        known = ", ".join(available_engines()) or "none"
        raise ConfigError([f"tts.engine: unknown engine {name!r} (known: {known})"]) from None
    return factory()


class EspeakNgEngine:
    """Speech from the ``espeak-ng`` program (Debian package ``espeak-ng``).

    The text goes in on standard input, never on the command line, so a text that
    starts with ``-`` cannot be taken for an option. espeak-ng writes a 22050 Hz
    WAV, which goes through the same conditioning as uploaded recordings.
    """

    name: Final = "espeak-ng"

    def __init__(self, program: str = "espeak-ng", *, timeout: float = 30.0) -> None:
        """Use ``program`` (a name looked up on PATH, or a path); give up after ``timeout`` s."""
        self.program = program
        self.timeout = timeout

    def command(self, options: TtsOptions) -> list[str]:
        """The argument list for ``options``, without the program itself."""
        return [
            "--stdout",
            "--stdin",
            "-b",
            "1",  # the text is UTF-8
            "-v",
            options.voice or options.language.lower(),
            "-s",
            str(options.rate_wpm),
            # espeak-ng pitch runs 0..99 with 50 as the voice's own pitch
            "-p",
            str(min(options.pitch, 99)),
        ]

    def synthesize(self, text: str, options: TtsOptions) -> Audio:
        """Run espeak-ng on ``text`` and condition its output to 8 kHz."""
        if not text.strip():
            raise AudioError("espeak-ng: nothing to say, the text is empty")
        program = shutil.which(self.program)
        if program is None:
            raise AudioError(
                f"espeak-ng: program {self.program!r} not found; "
                "install it (Debian/Ubuntu: apt-get install espeak-ng)"
            )
        try:
            run = subprocess.run(
                [program, *self.command(options)],
                input=text.encode(),
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise AudioError(f"espeak-ng: no result after {self.timeout:g} s") from None
        except OSError as exc:
            raise AudioError(f"espeak-ng: cannot run {program}: {exc}") from exc
        if run.returncode != 0:
            detail = run.stderr.decode(errors="replace").strip() or "no message"
            raise AudioError(f"espeak-ng: exited with status {run.returncode}: {detail}")
        return _decode_wav(run.stdout)


def _decode_wav(wav: bytes) -> Audio:
    """Decode espeak-ng's WAV output (its length fields are placeholders when streamed)."""
    try:
        samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=False)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"espeak-ng: output is not a readable WAV: {exc}") from exc
    if samples.size == 0:
        raise AudioError("espeak-ng: produced no audio")
    return Audio.from_samples(condition(np.asarray(samples), int(rate)))


register_engine(EspeakNgEngine.name, EspeakNgEngine)
