"""Prompts for the telephone: text-to-speech, recordings import, loudness, G.711 frames.

Every sound ends as an :class:`Audio`, 8 kHz mono 16-bit PCM at a common
loudness, with its mu-law and A-law 20 ms frames computed once:

- :mod:`~callwhisper.audio.tts`: engines by name (``espeak-ng`` by default);
- :mod:`~callwhisper.audio.cache`: rendered speech cached in memory and on disk;
- :mod:`~callwhisper.audio.recordings`: WAV, MP3, OGG and FLAC uploads;
- :mod:`~callwhisper.audio.speech`: template variables made speakable;
- :mod:`~callwhisper.audio.dsp`: the conditioning chain and level measurement.
"""

from callwhisper.audio.audio import FRAME_SAMPLES, Audio, Codec
from callwhisper.audio.cache import CacheStats, TtsCache, cache_key
from callwhisper.audio.dsp import SAMPLE_RATE, Levels
from callwhisper.audio.recordings import import_recording, import_recording_bytes
from callwhisper.audio.speech import (
    int_to_words,
    parse_amount,
    region_name,
    say_amount,
    say_digits,
    say_phone_number,
    say_zip_code,
)
from callwhisper.audio.tts import (
    DEFAULT_ENGINE,
    EngineFactory,
    EspeakNgEngine,
    TtsEngine,
    TtsOptions,
    available_engines,
    get_engine,
    register_engine,
    unregister_engine,
)

__all__ = [
    "DEFAULT_ENGINE",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "Audio",
    "CacheStats",
    "Codec",
    "EngineFactory",
    "EspeakNgEngine",
    "Levels",
    "TtsCache",
    "TtsEngine",
    "TtsOptions",
    "available_engines",
    "cache_key",
    "get_engine",
    "import_recording",
    "import_recording_bytes",
    "int_to_words",
    "parse_amount",
    "region_name",
    "register_engine",
    "say_amount",
    "say_digits",
    "say_phone_number",
    "say_zip_code",
    "unregister_engine",
]
