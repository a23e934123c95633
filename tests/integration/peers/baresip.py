"""Run baresip as a real, headless SIP phone driven over ``ctrl_tcp``.

Each :class:`Baresip` instance gets its own configuration directory: SIP
on a free loopback port, its own RTP port range, a long generated WAV as
the microphone (``aufile``: the call ends when the file does), the G.711
codecs only, ``sndfile`` dumps of what it sent and heard per call, and
``ctrl_tcp`` on another free port. :class:`BaresipControl` speaks
``ctrl_tcp``'s netstring-framed JSON: commands get a response matched by
token, events (``CALL_INCOMING``, ``CALL_RINGING``, ``CALL_ESTABLISHED``,
``CALL_DTMF_START``, ``CALL_CLOSED``...) are kept in order and awaited
with :meth:`BaresipControl.wait_for`.

Facts of baresip 1.0.0 that shaped this (see the project's peer notes):
``sip_listen`` also takes the next port for SIP over TLS; ``stdio`` needs a
TTY, hence ``ctrl_tcp``; the commands (``dial``, ``accept``, ``hangup``,
``answermode``, ``sndcode``) come from ``menu.so``; ``sndcode`` sends
RFC 4733 events only; hanging up an unanswered incoming call sends 486.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from tests.integration.peers.net import (
    LOOPBACK,
    Address,
    free_port_block,
    free_tcp_port,
    udp_port_in_use,
)

MODULE_PATH: Final = Path("/usr/lib/baresip/modules")
"""Where Debian's ``baresip-core`` installs the modules."""

SAMPLE_RATE: Final = 8000
RTP_PORTS: Final = 8
"""RTP ports per instance (RTP and RTCP of a few calls)."""
STARTUP_SECONDS: Final = 5.0
START_ATTEMPTS: Final = 3
"""Starts tried per phone when a port turns out to be taken."""
MAX_FRAME: Final = 1 << 20
WAV_HEADER: Final = 44

AnswerMode = Literal["manual", "auto", "early"]


class BaresipError(RuntimeError):
    """baresip could not be started, or did not answer a command: the harness's fault."""


def write_tone_wav(
    path: Path,
    frequencies: Sequence[float] = (1000.0,),
    seconds: float = 60.0,
    level: float = 0.25,
) -> Path:
    """Write an 8 kHz mono 16-bit WAV of the sum of sine tones at ``frequencies``.

    ``level`` is the peak amplitude as a share of full scale.
    """
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    signal = sum(np.sin(2 * np.pi * f * t) for f in frequencies) / max(1, len(frequencies))
    samples = np.round(np.asarray(signal) * level * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
    return path


@dataclass(frozen=True, slots=True)
class BaresipEvent:
    """One ``ctrl_tcp`` event: ``type`` is ``CALL_ESTABLISHED``, ``CALL_DTMF_START``..."""

    type: str
    param: str
    """The event's argument: the peer URI, the digit, the close reason..."""
    call_id: str
    direction: str
    peer_uri: str
    raw: dict[str, Any] = field(repr=False, compare=False)
    received_at: float = field(compare=False)
    """``time.monotonic()`` of arrival."""


@dataclass(frozen=True, slots=True)
class BaresipResponse:
    """The response to one command."""

    ok: bool
    data: str


def encode_netstring(payload: bytes) -> bytes:
    """``LEN:payload,`` as ``ctrl_tcp`` frames messages."""
    return str(len(payload)).encode() + b":" + payload + b","


class NetstringDecoder:
    """Splits a byte stream into netstring payloads."""

    def __init__(self) -> None:
        """Start with an empty buffer."""
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the payloads completed by them."""
        self._buffer += data
        payloads: list[bytes] = []
        while True:
            colon = self._buffer.find(b":")
            if colon < 0:
                if len(self._buffer) > 10:
                    raise BaresipError(f"bad netstring prefix {self._buffer[:20]!r}")
                return payloads
            length_text = self._buffer[:colon]
            if not length_text.isdigit() or int(length_text) > MAX_FRAME:
                raise BaresipError(f"bad netstring length {length_text[:20]!r}")
            end = colon + 1 + int(length_text)
            if len(self._buffer) <= end:
                return payloads
            if self._buffer[end : end + 1] != b",":
                raise BaresipError("netstring not terminated by a comma")
            payloads.append(self._buffer[colon + 1 : end])
            self._buffer = self._buffer[end + 1 :]


class BaresipControl:
    """An asyncio ``ctrl_tcp`` client: commands, responses and the event history."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Wrap an open connection; use :meth:`connect`."""
        self._reader = reader
        self._writer = writer
        self._decoder = NetstringDecoder()
        self._tokens = itertools.count(1)
        self._pending: dict[str, asyncio.Future[BaresipResponse]] = {}
        self.events: list[BaresipEvent] = []
        """Every event received, in order."""
        self._consumed: set[int] = set()
        self._changed = asyncio.Event()
        self._reader_task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, address: Address) -> BaresipControl:
        """Open a connection to ``ctrl_tcp``."""
        reader, writer = await asyncio.open_connection(*address)
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while data := await self._reader.read(65536):
                for payload in self._decoder.feed(data):
                    self._dispatch(json.loads(payload))
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BaresipError("ctrl_tcp connection closed"))
            self._changed.set()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("response"):
            future = self._pending.pop(str(message.get("token", "")), None)
            if future is not None and not future.done():
                future.set_result(
                    BaresipResponse(bool(message.get("ok")), str(message.get("data", "")))
                )
        elif message.get("event"):
            self.events.append(
                BaresipEvent(
                    type=str(message.get("type", "")),
                    param=str(message.get("param", "")),
                    call_id=str(message.get("id", "")),
                    direction=str(message.get("direction", "")),
                    peer_uri=str(message.get("peeruri", "")),
                    raw=message,
                    received_at=time.monotonic(),
                )
            )
            self._changed.set()

    async def command(self, name: str, params: str = "", timeout: float = 5.0) -> BaresipResponse:  # noqa: ASYNC109
        """Send a command and return its response; raise :class:`BaresipError` if refused."""
        token = f"t{next(self._tokens)}"
        future: asyncio.Future[BaresipResponse] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        message = {"command": name, "params": params, "token": token}
        self._writer.write(encode_netstring(json.dumps(message).encode()))
        await self._writer.drain()
        try:
            async with asyncio.timeout(timeout):
                response = await future
        finally:
            self._pending.pop(token, None)
        if not response.ok:
            raise BaresipError(f"baresip refused {name} {params!r}: {response.data}")
        return response

    async def dial(self, uri: str) -> BaresipResponse:
        """Place a call."""
        return await self.command("dial", uri)

    async def accept(self) -> BaresipResponse:
        """Answer the incoming call."""
        return await self.command("accept")

    async def hangup(self) -> BaresipResponse:
        """Hang up the current call (CANCEL, BYE, or 486 for an unanswered incoming call)."""
        return await self.command("hangup")

    async def answermode(self, mode: AnswerMode) -> BaresipResponse:
        """Set how incoming calls are answered."""
        return await self.command("answermode", mode)

    async def send_dtmf(self, digits: str) -> BaresipResponse:
        """Press keys on the current call (RFC 4733 telephone-events)."""
        return await self.command("sndcode", digits)

    async def wait_for(
        self,
        event_type: str,
        timeout: float = 5.0,  # noqa: ASYNC109 - the bound is the point of the call
        where: Callable[[BaresipEvent], bool] | None = None,
    ) -> BaresipEvent:
        """The earliest event of this type (and matching ``where``) not returned before.

        Events that arrived before the call count: waiting for
        ``CALL_ESTABLISHED`` and then for ``CALL_RINGING`` finds both.
        """
        async with asyncio.timeout(timeout):
            while True:
                for index, event in enumerate(self.events):
                    if (
                        index not in self._consumed
                        and event.type == event_type
                        and (where is None or where(event))
                    ):
                        self._consumed.add(index)
                        return event
                if self._reader_task.done():
                    raise BaresipError(f"ctrl_tcp closed while waiting for {event_type}")
                self._changed.clear()
                await self._changed.wait()

    def types(self) -> list[str]:
        """The types of every event so far, in order."""
        return [event.type for event in self.events]

    async def close(self) -> None:
        """Close the connection and stop reading."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, BaresipError):
            await self._reader_task


@dataclass(frozen=True, slots=True)
class SoundDump:
    """The ``sndfile`` recordings of one call: what the phone sent and what it heard."""

    sent: Path
    heard: Path


@dataclass(frozen=True, slots=True)
class BaresipConfig:
    """Settings of one instance."""

    user: str = "phone"
    answermode: AnswerMode = "auto"
    source: Path | None = None
    """The microphone WAV (8 kHz mono S16LE); a 60 s 1 kHz tone if None."""
    tone: tuple[float, ...] = (1000.0,)
    """Frequencies of the generated microphone tone when ``source`` is None."""
    codecs: str = "PCMU,PCMA"
    extra_config: tuple[str, ...] = ()
    """More ``config`` lines."""


class Baresip:
    """One running ``baresip -f DIR`` process and its control connection."""

    def __init__(self, directory: Path, config: BaresipConfig) -> None:
        """Write the configuration and start the process; call :meth:`start` next."""
        executable = shutil.which("baresip")
        if executable is None:
            raise BaresipError("baresip is not installed (Debian package baresip-core)")
        self.directory = directory
        self.config = config
        directory.mkdir(parents=True, exist_ok=True)
        self.sound_dir = directory / "snd"
        self.sound_dir.mkdir(exist_ok=True)
        # sip_listen binds UDP and TCP, and the port after it for SIP over TLS.
        self.sip_port = free_port_block(2, tcp_too=True)
        self.rtp_port = free_port_block(RTP_PORTS)
        self.ctrl_port = free_tcp_port()
        source = config.source or write_tone_wav(directory / "microphone.wav", config.tone)
        self._write_config(source)
        self._log = (directory / "baresip.log").open("wb")
        self.process = subprocess.Popen(
            [executable, "-f", str(directory)],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._control: BaresipControl | None = None

    def _write_config(self, source: Path) -> None:
        lines = [
            "poll_method epoll",
            f"sip_listen {LOOPBACK}:{self.sip_port}",
            f"net_interface {LOOPBACK}",
            "call_local_timeout 120",
            "call_max_calls 4",
            f"audio_source aufile,{source}",
            f"ausrc_srate {SAMPLE_RATE}",
            f"auplay_srate {SAMPLE_RATE}",
            "ausrc_channels 1",
            "auplay_channels 1",
            f"rtp_ports {self.rtp_port}-{self.rtp_port + RTP_PORTS - 1}",
            f"module_path {MODULE_PATH}",
            "module g711.so",
            "module aufile.so",
            "module sndfile.so",
            "module uuid.so",
            "module_app account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen {LOOPBACK}:{self.ctrl_port}",
            f"snd_path {self.sound_dir}",
            *self.config.extra_config,
        ]
        (self.directory / "config").write_text("\n".join(lines) + "\n")
        account = (
            f"<sip:{self.config.user}@{LOOPBACK}:{self.sip_port}>;regint=0"
            f";answermode={self.config.answermode};audio_codecs={self.config.codecs}"
        )
        (self.directory / "accounts").write_text(account + "\n")

    async def start(self) -> None:
        """Wait until SIP and ``ctrl_tcp`` listen, then connect the control client."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if self.process.poll() is not None:
                raise BaresipError(f"baresip exited at start:\n{self.log()}")
            if udp_port_in_use(self.sip_port):
                try:
                    self._control = await BaresipControl.connect((LOOPBACK, self.ctrl_port))
                    return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise BaresipError(f"baresip did not start in {STARTUP_SECONDS} s:\n{self.log()}")
            await asyncio.sleep(0.02)

    @property
    def control(self) -> BaresipControl:
        """The ``ctrl_tcp`` client."""
        if self._control is None:
            raise BaresipError("baresip is not started")
        return self._control

    @property
    def address(self) -> Address:
        """Where this phone listens for SIP."""
        return (LOOPBACK, self.sip_port)

    @property
    def uri(self) -> str:
        """This phone's SIP URI."""
        return f"sip:{self.config.user}@{LOOPBACK}:{self.sip_port}"

    def dumps(self) -> list[SoundDump]:
        """The sound dumps of every call so far, oldest first."""
        sent = sorted(self.sound_dir.glob("dump-*-enc.wav"))
        return [
            SoundDump(path, path.with_name(path.name.replace("-enc.wav", "-dec.wav")))
            for path in sent
        ]

    async def wait_heard(self, seconds: float, timeout: float = 5.0) -> SoundDump:  # noqa: ASYNC109
        """Wait until the current call's dump holds ``seconds`` of heard audio; return it.

        Polls the file size (``sndfile`` writes as audio arrives, 16-bit mono).
        The WAV header is only complete once the call has closed: read the
        file after ``CALL_CLOSED``.
        """
        wanted = WAV_HEADER + int(seconds * SAMPLE_RATE) * 2
        deadline = time.monotonic() + timeout
        while True:
            dumps = self.dumps()
            if dumps and dumps[-1].heard.is_file() and dumps[-1].heard.stat().st_size >= wanted:
                return dumps[-1]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.uri} did not hear {seconds} s within {timeout} s")
            await asyncio.sleep(0.05)

    def log(self) -> str:
        """What baresip printed."""
        self._log.flush()
        path = self.directory / "baresip.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    async def close(self) -> None:
        """``quit``, then wait briefly for the exit, then kill; close the connection."""
        if self._control is not None:
            if self.process.poll() is None:
                with contextlib.suppress(BaresipError, OSError, TimeoutError):
                    await self._control.command("quit", timeout=1.0)
            await self._control.close()
            self._control = None
        deadline = time.monotonic() + 2.0
        while self.process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - a process exit is not awaitable
            await asyncio.sleep(0.02)
        self.kill()

    def kill(self) -> None:
        """Kill the process if it still runs and close its log."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


class BaresipLauncher:
    """Starts baresip phones in numbered directories and stops them all on :meth:`close`."""

    def __init__(self, workdir: Path) -> None:
        """Use ``workdir`` for every phone's configuration and dumps."""
        self.workdir = workdir
        self.phones: list[Baresip] = []

    async def start(self, config: BaresipConfig | None = None, **settings: Any) -> Baresip:
        """Start a phone from ``config`` or from :class:`BaresipConfig` keyword settings.

        A phone that cannot bind one of its ports is started again on new ones:
        a port found free can be taken by another process before baresip binds it.
        """
        config = config or BaresipConfig(**settings)
        name = f"baresip-{len(self.phones) + 1}-{config.user}"
        attempt = 1
        while True:
            suffix = "" if attempt == 1 else f"-attempt-{attempt}"
            phone = Baresip(self.workdir / (name + suffix), config)
            try:
                await phone.start()
                break
            except BaresipError as exc:
                await phone.close()
                if attempt == START_ATTEMPTS or "Address already in use" not in str(exc):
                    raise
                attempt += 1
        self.phones.append(phone)
        return phone

    async def close(self) -> None:
        """Stop every phone."""
        for phone in self.phones:
            await phone.close()
