"""The caller's media in Python, for the engine tests that check what a SIPp caller hears.

A SIPp caller scenario rewritten by :func:`caller_on_socket` names a Python
RTP socket in its SDP; :class:`CallerMedia` keeps what the engine sends
there, and may talk in the caller's place. Ringback, speech and the voice
SIPp plays are then told apart by the helpers below.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from callwhisper.media.g711 import alaw_decode
from callwhisper.media.rtp import RtpPacket
from tests.integration.peers.audio import Audio, classify, from_pcm16
from tests.integration.peers.rtp import RtpSink
from tests.integration.peers.sipp import SIPP_PCAP_DIR, ScenarioName, scenario_path
from tests.unit.media.pcap import read_udp

RINGBACK_HZ = (440.0, 480.0)
"""North American ringback (``callwhisper.media.tones``), the engine's default."""
PCMA = 8


def caller_on_socket(tmp_path: Path, port: int, scenario: ScenarioName = "caller-basic") -> Path:
    """``scenario`` whose SDP names ``port``, a Python RTP socket, instead of SIPp's own.

    The test then receives what the engine sends the caller and may speak in
    the caller's place from that socket (symmetric RTP latches it). SIPp's own
    media port stays bound, so the scenario must be rewritten rather than run
    with ``-mp``.
    """
    text = scenario_path(scenario).read_text()
    media_line = "m=audio [media_port] "
    assert text.count(media_line) == 1
    variant = tmp_path / f"{scenario}-on-socket.xml"
    variant.write_text(text.replace(media_line, f"m=audio {port} "))
    return variant


class CallerMedia:
    """The caller's RTP endpoint in Python: keeps what it receives, optionally talks.

    Arrival times are wall-clock seconds, the clock of the engine's timeline.
    With ``talk``, it sends a distinct PCMA frame every 20 ms from the moment
    the engine's first packet reveals the engine's address, until cancelled.
    """

    def __init__(self, sink: RtpSink, *, talk: bool = False) -> None:
        self.sink = sink
        self.talk = talk
        self.heard: list[tuple[float, RtpPacket]] = []
        self.said: set[bytes] = set()
        self._noise = np.random.default_rng(7)

    async def run(self) -> None:
        """Receive (and talk) until cancelled."""
        loop = asyncio.get_running_loop()
        talking: asyncio.Task[None] | None = None
        try:
            while True:
                data, source = await loop.sock_recvfrom(self.sink.socket, 2048)
                self.heard.append((time.time(), RtpPacket.parse(data)))
                if self.talk and talking is None:
                    talking = asyncio.create_task(self._talk(source))
        finally:
            if talking is not None:
                talking.cancel()

    async def _talk(self, engine: tuple[str, int]) -> None:
        ssrc, sequence, timestamp = 0x5EED, 1000, 80_000
        loop = asyncio.get_running_loop()
        while True:
            payload = self._noise.integers(0, 256, 160, dtype=np.uint8).tobytes()
            self.said.add(payload)
            packet = RtpPacket(PCMA, sequence, timestamp, ssrc, payload)
            await loop.sock_sendto(self.sink.socket, packet.serialize(), engine)
            sequence, timestamp = sequence + 1, timestamp + 160
            await asyncio.sleep(0.02)

    def before(self, at: float) -> list[RtpPacket]:
        """Packets that arrived before ``at``, in RTP sequence order (one stream)."""
        packets = [packet for arrived, packet in self.heard if arrived < at]
        return sorted(packets, key=lambda packet: packet.sequence_number)

    def after(self, at: float) -> list[RtpPacket]:
        """Packets that arrived from ``at`` on, in arrival order."""
        return [packet for arrived, packet in self.heard if arrived >= at]


def decode_pcma(packets: list[RtpPacket]) -> Audio:
    """The audio of PCMA packets laid end to end."""
    return from_pcm16(alaw_decode(b"".join(packet.payload for packet in packets)))


def speech_segments(audio: Audio) -> list[int]:
    """Indices of the 100 ms segments that are neither ringback nor silence."""
    return [i for i, kind in enumerate(classify(audio, RINGBACK_HZ)) if kind == "broadband"]


def sipp_voice() -> set[bytes]:
    """The RTP payloads of the voice a SIPp peer plays (``g711a.pcap``): known byte for byte."""
    return {
        RtpPacket.parse(datagram.payload).payload
        for datagram in read_udp(SIPP_PCAP_DIR / "g711a.pcap")
    }
