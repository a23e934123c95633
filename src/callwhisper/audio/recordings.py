"""Import uploaded recordings (whispers, IVR prompts) as playable :class:`Audio`.

Any WAV, MP3, OGG Vorbis or FLAC file, at any sample rate and channel count,
goes through the conditioning chain of :mod:`callwhisper.audio.dsp`: mono, 8 kHz,
telephony loudness, 16-bit. Decoding is libsndfile's, through ``soundfile``,
which recognises the format from the content, not from the file name.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO, Final

import numpy as np
import soundfile

from callwhisper.audio.audio import Audio
from callwhisper.audio.dsp import condition, measure, to_mono
from callwhisper.errors import AudioError

MAX_SECONDS: Final = 600.0
"""Longest recording accepted; a prompt is seconds long, this only stops mistakes."""

SUPPORTED_FORMATS: Final = frozenset({"WAV", "WAVEX", "MP3", "OGG", "FLAC"})
"""libsndfile container names accepted; others it can read (AIFF, AU...) are refused
so that what works is what is documented and tested."""


def import_recording(path: str | os.PathLike[str], *, max_seconds: float = MAX_SECONDS) -> Audio:
    """Read the recording at ``path`` and condition it for the telephone.

    Raises :class:`~callwhisper.errors.AudioError` naming the file when it cannot
    be read, is not audio in a supported format, is empty, silent, corrupt or
    longer than ``max_seconds``.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            return _import(file, name, max_seconds)
    except OSError as exc:
        raise AudioError(f"{name}: cannot read the file: {exc.strerror or exc}") from exc


def import_recording_bytes(data: bytes, name: str, *, max_seconds: float = MAX_SECONDS) -> Audio:
    """Like :func:`import_recording` for an upload held in memory; ``name`` is for messages."""
    return _import(io.BytesIO(data), name, max_seconds)


def _import(file: BinaryIO, name: str, max_seconds: float) -> Audio:
    try:
        with soundfile.SoundFile(file) as sound:
            if sound.format not in SUPPORTED_FORMATS:
                raise AudioError(
                    f"{name}: {sound.format_info} is not supported; "
                    "use WAV, MP3, OGG Vorbis or FLAC"
                )
            rate = int(sound.samplerate)
            # Read one frame past the limit rather than trusting the header: a
            # streamed WAV may declare a placeholder length.
            limit = int(max_seconds * rate)
            samples = sound.read(frames=limit + 1, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as exc:
        raise AudioError(f"{name}: not a readable audio file ({exc.error_string})") from exc
    except (RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{name}: not a readable audio file ({exc})") from exc
    if len(samples) > limit:
        raise AudioError(f"{name}: longer than the {max_seconds:g} s allowed")
    if len(samples) == 0:
        raise AudioError(f"{name}: contains no audio")
    samples = np.asarray(samples)
    if measure(to_mono(samples), rate).silent:
        raise AudioError(f"{name}: contains only silence")
    return Audio.from_samples(condition(samples, rate))
