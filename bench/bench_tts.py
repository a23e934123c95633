"""Benchmark: what a whisper costs cold, from the disk cache and from the memory cache.

Each figure is compared, in the same run, with a baseline that does the least
work possible for the same result: reading the cache file's bytes with no
checksum and no decoding. Run with ``python -m bench tts``; needs espeak-ng.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.stats import percentile
from callwhisper.audio import TtsCache, TtsOptions, cache_key, get_engine

WHISPER = "Auto insurance lead from California, press 1 to accept."
COLD_RENDERS = 20
LOOKUPS = 200


def time_calls(call: Callable[[], object], count: int) -> list[float]:
    """Seconds taken by each of ``count`` calls."""
    timings = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return timings


def report(label: str, timings: list[float], baseline: list[float] | None = None) -> None:
    """Print p50 and p99 in microseconds, and their ratio to ``baseline``."""
    p50, p99 = percentile(timings, 0.5), percentile(timings, 0.99)
    line = f"{label:<38} p50 {p50 * 1e6:>10.1f} us   p99 {p99 * 1e6:>10.1f} us"
    if baseline is not None:
        ratio = p50 / statistics.median(baseline)
        line += f"   x{ratio:.2f} of raw read"
    print(line)


def main() -> None:
    """Render, cache and look up a whisper with espeak-ng, and print the timings."""
    if shutil.which("espeak-ng") is None:
        print("skipped: needs espeak-ng (Debian: espeak-ng)")
        return
    engine = get_engine("espeak-ng")
    options = TtsOptions()
    with tempfile.TemporaryDirectory() as directory:
        # Cold: distinct texts, so every render runs espeak-ng and writes a file.
        cold_cache = TtsCache(Path(directory) / "cold")
        counter = iter(range(COLD_RENDERS))
        cold = time_calls(
            lambda: cold_cache.render(engine, f"{WHISPER} Lead {next(counter)}.", options),
            COLD_RENDERS,
        )

        cache = TtsCache(Path(directory) / "warm")
        audio = cache.render(engine, WHISPER, options)
        path = cache.path_for(cache_key(engine.name, WHISPER, options))

        raw = time_calls(path.read_bytes, LOOKUPS)
        memory = time_calls(lambda: cache.render(engine, WHISPER, options), LOOKUPS)
        disk_only = TtsCache(Path(directory) / "warm", memory_bytes=0)
        disk = time_calls(lambda: disk_only.render(engine, WHISPER, options), LOOKUPS)
        # A raw read repeated after all the others, to see drift within the run.
        raw_again = time_calls(path.read_bytes, LOOKUPS)
        encode = time_calls(lambda: type(audio)(audio.pcm).ulaw_frames, LOOKUPS)

    print(f"whisper: {WHISPER!r}, {audio.duration:.2f} s, {len(audio.pcm)} bytes of PCM")
    report(f"cold render (espeak-ng), n={COLD_RENDERS}", cold)
    report(f"raw file read (baseline), n={LOOKUPS}", raw)
    report(f"disk cache hit, n={LOOKUPS}", disk, raw)
    report(f"memory cache hit, n={LOOKUPS}", memory, raw)
    report(f"raw file read again, n={LOOKUPS}", raw_again, raw)
    report(f"mu-law 20 ms frames, first use, n={LOOKUPS}", encode)
    print(f"cold render / memory hit: x{statistics.median(cold) / statistics.median(memory):,.0f}")


if __name__ == "__main__":
    main()
