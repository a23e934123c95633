"""The SIP call server: store, configuration, media engine, SIP endpoint and calls.

:class:`CallwhisperServer` has an explicit lifecycle in the style of
uvicorn's ``Server``::

    server = CallwhisperServer(ServerConfig(database_url=..., configuration_file=...))
    await server.serve_forever()      # start(), wait for SIGINT/SIGTERM, shutdown()

or, driven by hand (tests, an embedding application)::

    await server.start()
    ...
    await server.shutdown()

``shutdown`` stops taking calls (new INVITEs get 503), lets the calls in
progress finish for up to ``drain_timeout`` seconds, then cancels them (their
legs are hung up and they are recorded as interrupted), and closes the SIP
endpoint, the media engine and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from callwhisper.audio import TtsCache
from callwhisper.config.loader import load_configuration_file
from callwhisper.domain import Configuration
from callwhisper.engine.b2bua import B2bua
from callwhisper.engine.backend import Prompts, StoreBackend
from callwhisper.engine.media import MediaConfig, MediaEngine
from callwhisper.engine.runner import RunnerSettings
from callwhisper.engine.transport import SipEndpoint, TransportConfig
from callwhisper.errors import LocalProtocolError
from callwhisper.sip.timers import DEFAULT_TIMERS, TimerConfig
from callwhisper.sip.transaction import TransactionEvent, TransactionLayer
from callwhisper.store import ResidentCounters, Store, create_store

__all__ = ["CallwhisperServer", "ServerConfig"]

log = logging.getLogger(__name__)

GC_THRESHOLDS: Final = (200_000, 10, 100)
"""The collector's thresholds while serving (Python's defaults: 700, 10, 10).

A young pass after 200,000 net allocations of tracked objects, a middle one
every 10 young ones and a full one every 100 middle ones at most. A call's
objects are freed by reference counting when it ends (a test holds every
call to that), so a pass finds nothing to free, yet it walks every object
allocated since the last one, which under load is mostly the state of the
calls in progress: at 200 calls/s, thresholds of 5,000 made 36 young passes
of about 8 ms and a middle one of 44 ms in a 20 s step of
``python -m bench sip`` (freeing nothing, about 9 % of the server's CPU,
every call in progress waiting meanwhile); these made none. What a pass
would free comes from a reference cycle some error path left: it waits at
most for this many new objects.
"""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the call server needs to start."""

    database_url: str | None = None
    """Store URL; else ``CALLWHISPER_DATABASE_URL``, else SQLite in ``data_dir``."""
    data_dir: Path = Path("var")
    """Where the SQLite store, recordings and the speech cache live by default."""
    configuration_file: Path | None = None
    """A YAML configuration applied to the store at start-up; the store's own when unset."""
    sip: TransportConfig = field(default_factory=TransportConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    recordings_dir: Path | None = None
    """Where bridged calls are recorded; ``data_dir/recordings`` when unset."""
    tts_cache_dir: Path | None = None
    """Where rendered speech is cached; ``data_dir/tts-cache`` when unset."""
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    """Codecs we accept from callers and offer to buyers, in order of preference."""
    from_domain: str | None = None
    """Host part of our From header towards buyers; the SIP address when unset."""
    drain_timeout: float = 30.0
    """Seconds calls in progress may go on after a stop is asked, before they are cancelled."""
    sip_timers: TimerConfig = DEFAULT_TIMERS
    resident_counters: bool | None = None
    """Decide routing counters and cap reservations in memory, writing them behind.

    Only for a server that is the database's one user: ``None`` (the default)
    chooses it for SQLite, whose file one server owns, and not for PostgreSQL,
    which several servers may share (there the SQL ledger decides).
    """


class CallwhisperServer:
    """Runs SIP calls through the call flow until stopped."""

    def __init__(self, config: ServerConfig) -> None:
        """Prepare the server; nothing is opened before :meth:`start`."""
        self.config = config
        self.store: Store | None = None
        self.media: MediaEngine | None = None
        self.endpoint: SipEndpoint | None = None
        self.b2bua: B2bua | None = None
        self.started = False
        self._stop = asyncio.Event()

    @property
    def sip_address(self) -> tuple[str, int]:
        """The bound SIP address (UDP and TCP)."""
        if self.endpoint is None:
            raise LocalProtocolError("the server is not started")
        return self.endpoint.udp_address

    async def start(self) -> None:
        """Open the store (migrated), load the configuration, start media and SIP."""
        if self.started:
            raise LocalProtocolError("the server is already started")
        config = self.config
        store = self.store = create_store(config.database_url, data_dir=config.data_dir)
        try:
            await store.migrate()
            configuration = await self._load_configuration(store)
            closed = await store.calls.close_interrupted_calls(datetime.now(UTC))
            if closed:
                log.warning("closed %d calls left in flight by a previous run", closed)
            resident = None
            if self._resident_counters(store):
                # After the interrupted calls released their reservations: none is in flight.
                resident = await ResidentCounters.load(store.database, datetime.now(UTC))
            media = self.media = MediaEngine(config.media)
            await media.start()
            recordings = config.recordings_dir or config.data_dir / "recordings"
            await asyncio.to_thread(recordings.mkdir, parents=True, exist_ok=True)
            tts_dir = config.tts_cache_dir or config.data_dir / "tts-cache"
            prompts = Prompts(await asyncio.to_thread(TtsCache, tts_dir))
            core = TransactionLayer(config.sip_timers)
            loop = asyncio.get_running_loop()
            endpoint = self.endpoint = SipEndpoint(core, self._on_sip_event, config.sip)
            await endpoint.start()
            self.b2bua = B2bua(
                core,
                media,
                StoreBackend(store, configuration, resident),
                prompts,
                configuration,
                RunnerSettings(recordings, codecs=config.codecs, from_domain=config.from_domain),
                local=endpoint.udp_address,
                media_address=config.media.address,
                flush=endpoint.flush,
                clock=loop.time,
                wall=time.time,
                tcp=endpoint,
            )
        except BaseException:
            await self._close()
            raise
        self.started = True
        host, port = endpoint.udp_address
        log.info("callwhisper listening for SIP on %s:%d (UDP and TCP)", host, port)
        if config.sip.tls_certificate is not None:
            log.info("callwhisper listening for SIP over TLS on %s:%d", *endpoint.tls_address)

    def _resident_counters(self, store: Store) -> bool:
        chosen = self.config.resident_counters
        resident = store.dialect == "sqlite" if chosen is None else chosen
        log.info(
            "routing counters and cap reservations: %s",
            "in memory, written behind (single node)" if resident else "in the database",
        )
        return resident

    async def _load_configuration(self, store: Store) -> Configuration:
        path = self.config.configuration_file
        if path is not None:
            configuration = await asyncio.to_thread(load_configuration_file, path)
            report = await store.config.apply_configuration(configuration)
            if report.changed:
                log.info("applied %s as revision %s", path, report.revision)
        return await store.config.load_configuration()

    def _on_sip_event(self, event: TransactionEvent) -> None:
        # Events before the user agent exists (between bind and start-up's end) are dropped;
        # UDP peers retransmit.
        if self.b2bua is not None:
            self.b2bua.handle_event(event)

    async def reload_configuration(self, configuration: Configuration) -> None:
        """Route new calls with ``configuration`` (applied to the store first)."""
        if self.store is None or self.b2bua is None:
            raise LocalProtocolError("the server is not started")
        await self.store.config.apply_configuration(configuration)
        loaded = await self.store.config.load_configuration()
        self.b2bua.configuration = loaded
        backend = self.b2bua.backend
        if isinstance(backend, StoreBackend):
            backend.use_configuration(loaded)

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to shut down (signal handlers call this)."""
        self._stop.set()

    async def serve_forever(self) -> None:
        """Start, serve until SIGINT or SIGTERM (or :meth:`request_stop`), then shut down.

        Once started, what is loaded lives as long as the process (modules,
        the numbering and geography data routing reads, the configuration):
        it is frozen out of the garbage collector's full passes, which would
        otherwise walk it all and stall every call for 100 ms and more.

        The collector then runs less often (:data:`GC_THRESHOLDS`): a call's
        objects are freed by reference counting when it ends, so the default
        thresholds mostly paid for passes that found nothing, and every pass
        stalls the calls in progress.
        """
        if not self.started:
            await self.start()
        gc.collect()
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.request_stop)
                installed.append(signum)
        try:
            await self._stop.wait()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            await self.shutdown()
            gc.set_threshold(*thresholds)

    async def shutdown(self) -> None:
        """Stop taking calls, drain the calls in progress, then close everything."""
        b2bua = self.b2bua
        if b2bua is not None:
            b2bua.accepting = False
            tasks = set(b2bua.tasks)
            if tasks:
                log.info("waiting up to %gs for %d calls", self.config.drain_timeout, len(tasks))
                _, pending = await asyncio.wait(tasks, timeout=self.config.drain_timeout)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        await self._close()
        self.started = False

    async def _close(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.stop()
            self.endpoint = None
        if self.media is not None:
            await self.media.stop()
            self.media = None
        if self.store is not None:
            await self.store.close()
            self.store = None
        self.b2bua = None
