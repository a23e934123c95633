"""Fakes of a socket, an event loop and a SIP endpoint: media legs and SIP without network."""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable
from typing import Any, cast

from callwhisper.engine.media import LoopPoller, MediaConfig, MediaEngine
from callwhisper.sip.message import SipMessage, parse_message
from callwhisper.sip.transaction import TransactionEvent, TransactionLayer

Address = tuple[str, int]


class FakeSocket:
    """A non-blocking UDP socket that records what is sent and serves queued datagrams."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent: list[tuple[bytes, Address]] = []
        self.inbox: list[tuple[bytes, Address]] = []
        self._fd = 1000 + port

    def getsockname(self) -> Address:
        return ("127.0.0.1", self.port)

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        self._fd = -1

    def sendto(self, data: bytes, address: Address) -> int:
        self.sent.append((data, address))
        return len(data)

    def recvfrom(self, size: int) -> tuple[bytes, Address]:
        if not self.inbox:
            raise BlockingIOError
        data, address = self.inbox.pop(0)
        return data[:size], address


class FakeLoop:
    """The three loop methods the media engine's loop poller uses, on a virtual clock."""

    def __init__(self) -> None:
        self.now = 100.0
        self.readers: dict[int, Callable[[], None]] = {}

    def time(self) -> float:
        return self.now

    def add_reader(self, fd: int, callback: Callable[..., None], *args: Any) -> None:
        self.readers[fd] = functools.partial(callback, *args)

    def remove_reader(self, fd: int) -> bool:
        return self.readers.pop(fd, None) is not None


def fake_engine(
    config: MediaConfig | None = None,
) -> tuple[MediaEngine, FakeLoop, list[FakeSocket]]:
    """A media engine on a fake loop whose legs get fake sockets on ports 20000, 20002..."""
    engine = MediaEngine(config)
    loop = FakeLoop()
    sockets: list[FakeSocket] = []

    def bind() -> socket.socket:
        fake = FakeSocket(20000 + 2 * len(sockets))
        sockets.append(fake)
        return cast(socket.socket, fake)

    engine._loop = cast(asyncio.AbstractEventLoop, loop)
    engine._watcher = LoopPoller(engine._loop)
    engine._bind = bind  # type: ignore[method-assign]
    return engine, loop, sockets


class FakeEndpoint:
    """The SIP endpoint, sending nothing: records what the core queued and delivers its events.

    ``handler`` is the transaction user's ``handle_event``, set once the TU
    exists (it takes :meth:`flush` as its own).
    """

    def __init__(self, core: TransactionLayer) -> None:
        self.core = core
        self.sent: list[tuple[SipMessage, Address]] = []
        self.handler: Callable[[TransactionEvent], None] = lambda event: None

    def flush(self) -> None:
        while True:
            for data, destination in self.core.messages_to_send():
                self.sent.append((parse_message(data), destination))
            event = self.core.next_event()
            if event is None:
                return
            self.handler(event)

    def take(self) -> list[tuple[SipMessage, Address]]:
        """What was sent since the last look, and where."""
        sent, self.sent = self.sent, []
        return sent
