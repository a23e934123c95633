"""A plain Python RTP listener: proves what a peer really put on the wire."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

from callwhisper.media.dtmf import DigitEnded, DigitStarted, DtmfEvent, DtmfReceiver
from callwhisper.media.rtp import RtpPacket
from tests.integration.peers.net import LOOPBACK, Address, free_port_block

TELEPHONE_EVENT = 101
"""The telephone-event payload type every scenario and phone here uses."""


class RtpSink:
    """A UDP socket on an even loopback port that keeps every RTP packet it receives."""

    def __init__(self) -> None:
        """Bind the socket (RTP port even, RTCP port above it left free)."""
        self.port = free_port_block(2)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setblocking(False)
        self.socket.bind((LOOPBACK, self.port))
        self.packets: list[tuple[float, RtpPacket]] = []
        """Arrival time (``time.monotonic()``) and packet, in arrival order."""

    @property
    def address(self) -> Address:
        """Where to send RTP."""
        return (LOOPBACK, self.port)

    async def receive_until(
        self,
        done: Callable[[list[RtpPacket]], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[RtpPacket]:
        """Receive until ``done(packets)`` holds; raise TimeoutError after ``timeout``."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not done(self.received()):
                data = await loop.sock_recv(self.socket, 2048)
                self.packets.append((time.monotonic(), RtpPacket.parse(data)))
        return self.received()

    def received(self, payload_type: int | None = None) -> list[RtpPacket]:
        """The packets so far, of one payload type if given."""
        return [
            packet
            for _, packet in self.packets
            if payload_type is None or packet.payload_type == payload_type
        ]

    def dtmf(self, payload_type: int = TELEPHONE_EVENT) -> list[DtmfEvent]:
        """The key presses in the telephone-event packets so far (RFC 4733)."""
        receiver = DtmfReceiver()
        events: list[DtmfEvent] = []
        for arrived, packet in self.packets:
            if packet.payload_type == payload_type:
                events += receiver.receive(packet, arrived)
        return events

    def digits(self, payload_type: int = TELEPHONE_EVENT) -> str:
        """The digits pressed and released so far, in order."""
        return "".join(
            event.digit for event in self.dtmf(payload_type) if isinstance(event, DigitEnded)
        )

    def started_digits(self, payload_type: int = TELEPHONE_EVENT) -> str:
        """The digits whose press has begun so far, in order."""
        return "".join(
            event.digit for event in self.dtmf(payload_type) if isinstance(event, DigitStarted)
        )

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()
