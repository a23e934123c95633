"""The shared 20 ms media clock: one task drives every playback of the process.

One task ticking for all streams costs a few microseconds per packet where a
task per stream costs two to three times as much (timer heap, wake-ups), and
it keeps every stream of the process on the same packet boundaries.

:class:`TickSchedule` is the pure part (which ticks are due at ``now``);
:class:`MediaClock` is the asyncio task around it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

__all__ = ["PTIME", "MediaClock", "TickSchedule"]

PTIME: Final = 0.020
"""Packet time of every stream we generate, in seconds (RFC 3551 4.5: G.711 default)."""

log = logging.getLogger(__name__)


class TickSchedule:
    """Deadlines of a periodic tick on a monotonic clock, without drift.

    Deadlines are ``start + n * interval``, never "last wake-up + interval",
    so the lateness of one wake-up is not carried into the next. A late
    wake-up runs the missed ticks at once (the receivers' jitter buffers
    absorb a short burst, and our RTP timestamps stay in step with real
    time); beyond ``max_burst`` missed ticks the schedule jumps ahead instead,
    because a burst that long would only overflow the peers' buffers.
    """

    def __init__(self, start: float, interval: float = PTIME, max_burst: int = 5) -> None:
        """Schedule the first tick at ``start``."""
        if interval <= 0:
            raise ValueError(f"tick interval must be positive, got {interval}")
        self.interval = interval
        self.max_burst = max_burst
        self._origin = start
        self._index = 0
        self.skipped = 0
        """Ticks dropped because the process was stalled for more than ``max_burst`` ticks."""

    @property
    def deadline(self) -> float:
        """When the next tick is due."""
        return self._origin + self._index * self.interval

    def due(self, now: float) -> int:
        """How many ticks to run at ``now``; the schedule moves past them."""
        if now < self.deadline:
            return 0
        behind = int((now - self.deadline) / self.interval) + 1
        if behind > self.max_burst:
            # Stalled too long: run one tick now and restart the grid from here.
            self.skipped += behind - 1
            self._origin = now + self.interval
            self._index = 0
            return 1
        self._index += behind
        return behind


class MediaClock:
    """One asyncio task calling ``on_tick(now)`` every :data:`PTIME` seconds.

    ``on_tick`` must not raise; an exception is logged and the clock goes on,
    since one faulty playback must not silence every call of the process.
    """

    def __init__(self, on_tick: Callable[[float], None], interval: float = PTIME) -> None:
        """Prepare the clock; nothing runs before :meth:`start`."""
        self._on_tick = on_tick
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the clock task is running."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start ticking on the running loop."""
        if self._task is not None:
            raise RuntimeError("media clock already started")
        loop = asyncio.get_running_loop()
        schedule = TickSchedule(loop.time() + self.interval, self.interval)
        self._task = loop.create_task(self._run(loop, schedule), name="media-clock")

    async def stop(self) -> None:
        """Cancel the clock task and wait for it to end."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            # Re-raise if we were cancelled ourselves, not just the clock task.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    async def _run(self, loop: asyncio.AbstractEventLoop, schedule: TickSchedule) -> None:
        while True:
            await asyncio.sleep(max(0.0, schedule.deadline - loop.time()))
            now = loop.time()
            for _ in range(schedule.due(now)):
                try:
                    self._on_tick(now)
                except Exception:
                    log.exception("media clock tick failed")
