"""Rendered speech, cached in memory and on disk.

A whisper text is rendered once per (engine, options, text); afterwards it costs
a dictionary lookup (the in-memory LRU, which also keeps the G.711 encodings
already computed on the :class:`~callwhisper.audio.audio.Audio`), or after a
restart one file read.

Disk cache files are named after the SHA-256 of the key and hold a small header
with a CRC-32 of the PCM, so a truncated or damaged file is detected, removed
and rendered again. Files are written to a temporary name and renamed into
place, so a reader never sees half a file, even with several processes sharing
the directory. The directory is bounded in bytes: when a write pushes it over
``max_bytes`` the least recently used files (by modification time, which every
disk hit refreshes) are removed until it is back under
:data:`EVICT_TO_FRACTION` of the bound.

The cache is a convenience: a disk that is full, read-only or missing degrades
to rendering every time, with a warning in the log, never to a failed call.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import tempfile
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from callwhisper.audio.audio import Audio
from callwhisper.audio.dsp import SAMPLE_RATE
from callwhisper.audio.tts import TtsEngine, TtsOptions

log = logging.getLogger(__name__)

CACHE_FORMAT: Final = 1
"""Part of every key: bump it when rendering changes (e.g. the loudness target)."""

SUFFIX: Final = ".pcm"
TEMP_SUFFIX: Final = ".tmp"
EVICT_TO_FRACTION: Final = 0.9
"""Eviction goes below the bound, so that the next writes do not each trigger a scan."""

STALE_TEMP_SECONDS: Final = 3600.0
"""A temporary file this old was left by a crashed writer and may be removed."""

# magic, sample rate, PCM length, CRC-32 of the PCM
_HEADER: Final = struct.Struct("<8sIII")
_MAGIC: Final = b"CWPCM\x00\x00\x01"

_MemoryKey = tuple[str, str, TtsOptions]


def cache_key(engine: str, text: str, options: TtsOptions) -> str:
    """The hex SHA-256 naming the rendering of ``text`` by ``engine`` with ``options``."""
    material = json.dumps(
        {"format": CACHE_FORMAT, "engine": engine, "options": asdict(options), "text": text},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def encode_entry(audio: Audio) -> bytes:
    """Serialise ``audio`` in the cache file format."""
    return _HEADER.pack(_MAGIC, SAMPLE_RATE, len(audio.pcm), zlib.crc32(audio.pcm)) + audio.pcm


def decode_entry(data: bytes) -> Audio:
    """Parse a cache file; raise ValueError saying what is wrong with a damaged one."""
    if len(data) < _HEADER.size:
        raise ValueError(f"{len(data)} bytes is shorter than the header")
    magic, rate, length, crc = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("not a callwhisper speech cache file")
    if rate != SAMPLE_RATE:
        raise ValueError(f"sample rate {rate} Hz, expected {SAMPLE_RATE} Hz")
    pcm = data[_HEADER.size :]
    if len(pcm) != length:
        raise ValueError(f"{len(pcm)} bytes of PCM, header says {length}")
    if zlib.crc32(pcm) != crc:
        raise ValueError("checksum mismatch")
    return Audio(pcm)


@dataclass
class CacheStats:
    """Counters of where renders were served from, since the cache was made."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    discarded: int = 0
    """Damaged disk files removed."""
    evicted: int = 0
    """Disk files removed to stay under the size bound."""


class TtsCache:
    """Render speech through an in-memory LRU in front of a bounded disk cache.

    Thread-safe: meant to be called from worker threads. Two threads asking for
    the same uncached text at once may both render it; the result is the same.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 256 * 1024 * 1024,
        memory_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        """Cache in ``directory`` (created if missing).

        ``max_bytes`` bounds the disk files; ``memory_bytes`` bounds the PCM kept
        in memory; the G.711 encodings and frames kept with it, once both codecs
        have been played, add up to twice that again.
        """
        if max_bytes <= 0 or memory_bytes < 0:
            raise ValueError("max_bytes must be positive and memory_bytes not negative")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.memory_bytes = memory_bytes
        self.stats = CacheStats()
        # Keyed by the values themselves (TtsOptions is frozen, hence hashable): a
        # memory hit then costs one dictionary lookup, no hashing of a serialisation.
        self._memory: OrderedDict[_MemoryKey, Audio] = OrderedDict()
        self._memory_used = 0
        self._disk_used: int | None = None  # unknown until the first write scans
        self._lock = threading.Lock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("speech cache directory %s unusable: %s", self.directory, exc)

    def path_for(self, key: str) -> Path:
        """The disk file of ``key``."""
        return self.directory / f"{key}{SUFFIX}"

    def remembered(self, engine: TtsEngine, text: str, options: TtsOptions) -> Audio | None:
        """``text`` spoken by ``engine`` if it is in memory, else None; never blocks on I/O.

        An event loop can ask this first and send only misses to a worker thread.
        """
        memory_key = (engine.name, text, options)
        with self._lock:
            audio = self._memory.get(memory_key)
            if audio is not None:
                self._memory.move_to_end(memory_key)
                self.stats.memory_hits += 1
            return audio

    def render(self, engine: TtsEngine, text: str, options: TtsOptions) -> Audio:
        """Return ``text`` spoken by ``engine``, from a cache when possible."""
        audio = self.remembered(engine, text, options)
        if audio is not None:
            return audio
        memory_key = (engine.name, text, options)
        key = cache_key(engine.name, text, options)
        audio = self._read(key)
        if audio is None:
            audio = engine.synthesize(text, options)
            self._write(key, audio)
            with self._lock:
                self.stats.misses += 1
        else:
            with self._lock:
                self.stats.disk_hits += 1
        self._remember(memory_key, audio)
        return audio

    def forget_memory(self) -> None:
        """Empty the in-memory LRU (the disk cache is kept)."""
        with self._lock:
            self._memory.clear()
            self._memory_used = 0

    def _remember(self, key: _MemoryKey, audio: Audio) -> None:
        with self._lock:
            if key in self._memory or len(audio.pcm) > self.memory_bytes:
                return
            self._memory[key] = audio
            self._memory_used += len(audio.pcm)
            while self._memory_used > self.memory_bytes:
                _, old = self._memory.popitem(last=False)
                self._memory_used -= len(old.pcm)

    def _read(self, key: str) -> Audio | None:
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("speech cache: cannot read %s: %s", path, exc)
            return None
        try:
            audio = decode_entry(data)
        except ValueError as exc:
            log.warning("speech cache: discarding damaged %s: %s", path, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            with self._lock:
                self.stats.discarded += 1
            return None
        # Refresh the recency that eviction goes by; relatime mounts make atime useless.
        with contextlib.suppress(OSError):
            os.utime(path)
        return audio

    def _write(self, key: str, audio: Audio) -> None:
        data = encode_entry(audio)
        path = self.path_for(key)
        try:
            fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=TEMP_SUFFIX)
        except OSError as exc:
            log.warning("speech cache: cannot write in %s: %s", self.directory, exc)
            return
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            # No fsync: after a crash a torn file fails its checksum and is rendered again.
            os.replace(temp, path)
        except OSError as exc:
            log.warning("speech cache: cannot write %s: %s", path, exc)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            return
        with self._lock:
            over = self._disk_used is None or self._disk_used + len(data) > self.max_bytes
            if self._disk_used is not None:
                self._disk_used += len(data)
        if over:
            self._evict()

    def _evict(self) -> None:
        """Scan the directory and remove the least recently used files over the bound.

        The scan, not a count kept in memory, is the truth, because other
        processes may share the directory.
        """
        now = time.time()
        entries: list[tuple[float, int, str]] = []
        try:
            with os.scandir(self.directory) as scan:
                for entry in scan:
                    try:
                        stat = entry.stat()
                    except OSError:
                        continue  # removed by another process meanwhile
                    if entry.name.endswith(TEMP_SUFFIX):
                        if now - stat.st_mtime > STALE_TEMP_SECONDS:
                            with contextlib.suppress(OSError):
                                os.unlink(entry.path)
                    elif entry.name.endswith(SUFFIX):
                        entries.append((stat.st_mtime, stat.st_size, entry.path))
        except OSError as exc:
            log.warning("speech cache: cannot scan %s: %s", self.directory, exc)
            return
        total = sum(size for _, size, _ in entries)
        evicted = 0
        if total > self.max_bytes:
            goal = self.max_bytes * EVICT_TO_FRACTION
            for _, size, path in sorted(entries):
                if total <= goal:
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                total -= size
                evicted += 1
        with self._lock:
            self._disk_used = total
            self.stats.evicted += evicted
