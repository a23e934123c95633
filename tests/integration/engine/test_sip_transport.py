"""The SIP endpoint over loopback UDP and TCP, driving the real transaction layer."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
from asyncio.trsock import TransportSocket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from callwhisper.engine.transport import SipEndpoint, TransportConfig, set_receive_buffer
from callwhisper.sip.message import (
    SipRequest,
    SipResponse,
    StreamFramer,
    make_response,
    parse_message,
)
from callwhisper.sip.transaction import (
    RequestReceived,
    State,
    TransactionEvent,
    TransactionFailed,
    TransactionLayer,
    server_key,
)
from tests.integration.peers.net import free_tcp_port, has_cap_net_admin

pytestmark = pytest.mark.integration


def request(method: str, branch: str, transport: str = "UDP") -> bytes:
    return (
        f"{method} sip:buyer@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:5999;branch=z9hG4bK{branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:caller@127.0.0.1>;tag=a1\r\n"
        "To: <sip:buyer@127.0.0.1>\r\n"
        f"Call-ID: {branch}@127.0.0.1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Contact: <sip:caller@127.0.0.1:5999>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class Answering:
    """A transaction user answering OPTIONS with 200 and leaving INVITEs ringing."""

    def __init__(self, layer: TransactionLayer) -> None:
        self.layer = layer
        self.events: list[TransactionEvent] = []

    def __call__(self, event: TransactionEvent) -> None:
        self.events.append(event)
        if isinstance(event, RequestReceived) and event.request.method == "OPTIONS":
            now = asyncio.get_running_loop().time()
            self.layer.send_response(make_response(event.request, 200), now)


@pytest.fixture
def layer() -> TransactionLayer:
    return TransactionLayer()


@pytest.fixture
def answering(layer: TransactionLayer) -> Answering:
    return Answering(layer)


@pytest.fixture
async def endpoint(layer: TransactionLayer, answering: Answering) -> AsyncIterator[SipEndpoint]:
    config = TransportConfig(port=0, max_datagram=4096, rate_per_source=1000, burst_per_source=10)
    sip = SipEndpoint(layer, answering, config)
    await sip.start()
    yield sip
    await sip.stop()


@pytest.fixture
def phone() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds: the endpoint and the core have nothing to await."""
    async with asyncio.timeout(3):
        while not condition():  # noqa: ASYNC110 - nothing to await
            await asyncio.sleep(0.01)


async def next_response(sock: socket.socket) -> SipResponse:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(3):
        data, _ = await loop.sock_recvfrom(sock, 65536)
    message = parse_message(data)
    assert isinstance(message, SipResponse)
    return message


async def test_udp_request_is_answered_through_the_transaction_layer(
    endpoint: SipEndpoint, phone: socket.socket
) -> None:
    phone.sendto(request("OPTIONS", "opt1"), endpoint.udp_address)
    response = await next_response(phone)
    assert (response.status, response.cseq.method) == (200, "OPTIONS")
    assert endpoint.counters.datagrams_in == 1
    assert endpoint.counters.datagrams_out == 1


async def test_the_core_timer_fires_without_any_input(
    endpoint: SipEndpoint, phone: socket.socket
) -> None:
    """RFC 3261 17.2.1: an INVITE the TU leaves unanswered gets 100 Trying after 200 ms."""
    loop = asyncio.get_running_loop()
    sent = loop.time()
    phone.sendto(request("INVITE", "inv1"), endpoint.udp_address)
    response = await next_response(phone)
    assert response.status == 100
    assert loop.time() - sent >= 0.19


async def test_oversized_and_flooding_datagrams_are_dropped_and_counted(
    endpoint: SipEndpoint, phone: socket.socket
) -> None:
    phone.sendto(b"X" * 5000, endpoint.udp_address)
    for n in range(15):
        phone.sendto(request("OPTIONS", f"flood{n}"), endpoint.udp_address)
    await until(lambda: endpoint.counters.datagrams_in >= 16)
    assert endpoint.counters.oversized == 1
    assert endpoint.counters.flooded == 5
    assert [(await next_response(phone)).status for _ in range(10)] == [200] * 10


async def test_a_burst_while_the_loop_is_busy_waits_in_the_receive_buffer(
    layer: TransactionLayer, answering: Answering, phone: socket.socket
) -> None:
    """3,000 requests that arrive while the loop is busy (sending them) are all read after.

    The system's default buffer (208 KiB on Linux) holds about 90 of them:
    the kernel would drop the rest before the endpoint could count them.
    """
    sip = SipEndpoint(layer, answering, TransportConfig(port=0, rate_per_source=1e6))
    await sip.start()
    try:
        sent = 3000
        for n in range(sent):
            phone.sendto(request("OPTIONS", f"burst{n}"), sip.udp_address)
        await until(lambda: sip.counters.datagrams_in >= sent)
        assert sip.counters.datagrams_in == sent
        assert sum(isinstance(event, RequestReceived) for event in answering.events) == sent
    finally:
        await sip.stop()


async def test_the_receive_buffer_granted_is_asked_for_or_a_warning_says_so(
    layer: TransactionLayer, answering: Answering, caplog: pytest.LogCaptureFixture
) -> None:
    asked = 4 * 1024 * 1024
    sip = SipEndpoint(layer, answering, TransportConfig(port=0, receive_buffer=asked))
    await sip.start()
    try:
        assert sip._udp is not None
        granted = sip._udp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    finally:
        await sip.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if granted >= asked:  # a process with CAP_NET_ADMIN, or a machine whose cap allows it
        assert warnings == []
    else:
        assert warnings == [
            f"SIP UDP receive buffer: {granted} bytes granted of {asked} asked; datagrams"
            " arriving while the server is busy beyond that are dropped (raise the sysctl"
            " net.core.rmem_max, or run with CAP_NET_ADMIN)"
        ]


async def test_asking_past_what_any_process_is_granted_logs_the_warning(
    layer: TransactionLayer, answering: Answering, caplog: pytest.LogCaptureFixture
) -> None:
    """1 GiB: past net.core.rmem_max unprivileged, and past the kernel's own cap (2**30 - 1)
    with CAP_NET_ADMIN."""
    asked = 1 << 30
    sip = SipEndpoint(layer, answering, TransportConfig(port=0, receive_buffer=asked))
    await sip.start()
    try:
        assert sip._udp is not None
        granted = sip._udp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    finally:
        await sip.stop()
    assert granted < asked
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"SIP UDP receive buffer: {granted} bytes granted of {asked} asked")


def rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


def test_without_force_the_receive_buffer_is_capped_by_the_system() -> None:
    cap = rmem_max()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert set_receive_buffer(sock, 64 * 1024, force=False) >= 64 * 1024
        assert set_receive_buffer(sock, cap + 1024 * 1024, force=False) == cap


@pytest.mark.skipif(not has_cap_net_admin(), reason="needs CAP_NET_ADMIN (run as root)")
def test_with_cap_net_admin_the_receive_buffer_passes_the_system_cap() -> None:
    asked = rmem_max() + 1024 * 1024
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert set_receive_buffer(sock, asked) == asked


GRANTED = "import socket, sys; from callwhisper.engine.transport import set_receive_buffer; " + (
    "print(set_receive_buffer(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), int(sys.argv[1])))"
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run a process without CAP_NET_ADMIN")
def test_a_process_refused_the_force_falls_back_to_the_system_cap() -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed (Debian package util-linux)")
    cap = rmem_max()
    drop = ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"]
    result = subprocess.run(
        [*drop, sys.executable, "-c", GRANTED, str(cap + 1024 * 1024)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == cap


async def test_tcp_request_is_answered_on_its_connection(endpoint: SipEndpoint) -> None:
    host, port = endpoint.tcp_address
    reader, writer = await asyncio.open_connection(host, port)
    try:
        # Fed in two pieces: the framer must join them.
        data = request("OPTIONS", "tcp1", "TCP")
        writer.write(data[:50])
        await writer.drain()
        writer.write(data[50:])
        async with asyncio.timeout(3):
            head = await reader.readuntil(b"\r\n\r\n")
        response = parse_message(head, stream=True)
        assert isinstance(response, SipResponse)
        assert (response.status, response.top_via.transport) == (200, "TCP")
        assert endpoint.counters.tcp_messages_in == 1
    finally:
        writer.close()
        await writer.wait_closed()


async def test_tcp_stream_without_framing_is_closed(endpoint: SipEndpoint) -> None:
    host, port = endpoint.tcp_address
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request("OPTIONS", "tcp2", "TCP").replace(b"Content-Length: 0\r\n", b""))
        await writer.drain()
        async with asyncio.timeout(3):
            assert await reader.read() == b""
        assert endpoint.counters.tcp_framing_errors == 1
    finally:
        writer.close()
        await writer.wait_closed()


def reset_on_close(sock: socket.socket | TransportSocket) -> None:
    """Have ``sock`` close with a TCP reset, as a phone that crashed or a NAT that forgot it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


async def test_a_connection_the_peer_resets_ends_like_one_it_closes(
    endpoint: SipEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    """A reset is the end of the stream, not an unhandled exception in the connection's task."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as peer:
        peer.setblocking(False)
        await loop.sock_connect(peer, endpoint.tcp_address)
        await until(lambda: bool(endpoint._streams))
        reset_on_close(peer)
    await until(lambda: not endpoint._streams and not endpoint._tasks)
    assert errors_logged(caplog) == []


async def test_an_outbound_connection_the_peer_resets_ends_quietly(
    endpoint: SipEndpoint, tcp_peer: TcpPeer, caplog: pytest.LogCaptureFixture
) -> None:
    """Its task ends without an exception that nobody would retrieve."""
    destination = await tcp_peer.start()
    await endpoint.connect(destination)
    await until(lambda: bool(tcp_peer.connections))
    writer = tcp_peer.connections[0][1]
    reset_on_close(writer.get_extra_info("socket"))
    writer.transport.abort()
    await until(lambda: not endpoint._streams and not endpoint._tasks)
    gc.collect()  # a task whose exception was never retrieved says so when it is collected
    assert errors_logged(caplog) == []


async def test_a_tcp_peer_leaving_its_error_answers_unread_is_disconnected(
    endpoint: SipEndpoint,
) -> None:
    """The 400s to bad requests count towards the write buffer's bound like any message, and
    past it the connection is dropped at once, not closed gracefully after a flush that never
    comes: the peer reads nothing."""
    loop = asyncio.get_running_loop()
    bad = request("OPTIONS", "bad1", "TCP").replace(b"Max-Forwards: 70", b"Max-Forwards: many")

    async def flood(peer: socket.socket) -> None:
        with contextlib.suppress(ConnectionError):  # the endpoint resets the connection
            while True:
                await loop.sock_sendall(peer, bad * 100)

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as peer:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.setblocking(False)
        await loop.sock_connect(peer, endpoint.tcp_address)
        sender = asyncio.create_task(flood(peer))
        try:
            async with asyncio.timeout(20):
                while not endpoint.counters.send_failed or endpoint._streams:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                await sender
        finally:
            sender.cancel()
    assert endpoint.counters.send_failed == 1
    assert endpoint.counters.tcp_framing_errors == 0


class TcpPeer:
    """A TCP SIP peer on loopback: keeps every connection and what arrived on it."""

    def __init__(self) -> None:
        self.connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.arrived = asyncio.Queue[tuple[int, bytes]]()
        self.server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> tuple[str, int]:
        """Listen on a free loopback port, over TLS with ``tls``."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.connections)
        self.connections.append((reader, writer))
        framer = StreamFramer()
        while data := await reader.read(65536):
            for message in framer.feed(data):
                await self.arrived.put((index, message))

    async def next(self) -> tuple[int, SipRequest]:
        async with asyncio.timeout(3):
            index, data = await self.arrived.get()
        message = parse_message(data, stream=True)
        assert isinstance(message, SipRequest)
        return index, message

    async def close(self) -> None:
        for _, writer in self.connections:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def tcp_peer() -> AsyncIterator[TcpPeer]:
    peer = TcpPeer()
    yield peer
    await peer.close()


def outgoing(method: str, branch: str) -> SipRequest:
    message = parse_message(request(method, branch, "TCP"))
    assert isinstance(message, SipRequest)
    return message


async def test_requests_to_a_tcp_destination_share_one_connection_and_get_answers(
    endpoint: SipEndpoint, layer: TransactionLayer, tcp_peer: TcpPeer
) -> None:
    destination = await tcp_peer.start()
    await endpoint.connect(destination)
    await endpoint.connect(destination)  # reused, not opened twice
    loop = asyncio.get_running_loop()
    key = layer.send_request(outgoing("OPTIONS", "out1"), destination, loop.time(), reliable=True)
    layer.send_request(outgoing("OPTIONS", "out2"), destination, loop.time(), reliable=True)
    endpoint.flush()
    first, second = await tcp_peer.next(), await tcp_peer.next()
    assert (first[0], second[0]) == (0, 0)
    assert [first[1].top_via.branch, second[1].top_via.branch] == ["z9hG4bKout1", "z9hG4bKout2"]
    assert endpoint.counters.tcp_connects == 1
    # The answer comes back on the same connection and completes the transaction.
    tcp_peer.connections[0][1].write(bytes(make_response(first[1], 200)))
    await until(lambda: layer.state_of(key) is State.TERMINATED)
    assert endpoint.counters.datagrams_out == 0


async def test_a_closed_tcp_connection_is_opened_again_on_the_next_send(
    endpoint: SipEndpoint, layer: TransactionLayer, tcp_peer: TcpPeer
) -> None:
    destination = await tcp_peer.start()
    await endpoint.connect(destination)
    loop = asyncio.get_running_loop()
    layer.send_request(outgoing("OPTIONS", "again1"), destination, loop.time(), reliable=True)
    endpoint.flush()
    await tcp_peer.next()
    writer = tcp_peer.connections[0][1]
    writer.close()
    await writer.wait_closed()
    await until(lambda: not endpoint._streams)  # the endpoint notices the close by itself
    layer.send_request(outgoing("OPTIONS", "again2"), destination, loop.time(), reliable=True)
    endpoint.flush()
    index, message = await tcp_peer.next()
    assert (index, message.top_via.branch) == (1, "z9hG4bKagain2")
    assert endpoint.counters.tcp_connects == 2
    assert endpoint.counters.datagrams_out == 0


async def test_a_refused_tcp_connection_raises_and_is_counted(endpoint: SipEndpoint) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[:2]
    with pytest.raises(OSError, match=r"TCP to 127\.0\.0\.1"):
        await endpoint.connect(closed)
    assert endpoint.counters.tcp_connect_failed == 1
    assert endpoint.counters.tcp_connects == 0


def invite_via_tcp(branch: str, sent_by_port: int) -> bytes:
    return request("INVITE", branch, "TCP").replace(b":5999;", f":{sent_by_port};".encode())


async def send_and_close(endpoint: SipEndpoint, data: bytes) -> None:
    """Send ``data`` on a new connection to the endpoint, close it, and wait for the endpoint
    to notice."""
    _, writer = await asyncio.open_connection(*endpoint.tcp_address)
    writer.write(data)
    await writer.drain()
    await until(lambda: endpoint.counters.tcp_messages_in > 0)
    writer.close()
    await writer.wait_closed()
    await until(lambda: not endpoint._streams)


async def next_response_on(peer: TcpPeer) -> tuple[int, SipResponse]:
    async with asyncio.timeout(3):
        index, data = await peer.arrived.get()
    message = parse_message(data, stream=True)
    assert isinstance(message, SipResponse)
    return index, message


async def test_a_response_whose_connection_closed_goes_over_a_new_one_to_the_sent_by_port(
    endpoint: SipEndpoint, layer: TransactionLayer, answering: Answering, tcp_peer: TcpPeer
) -> None:
    """RFC 3261 18.2.2: the caller hangs its connection up and listens on its Via's port;
    100 Trying (the core's, after 200 ms), 180 and 200 all reach it there, none over UDP."""
    _, listening = await tcp_peer.start()
    await send_and_close(endpoint, invite_via_tcp("gone1", listening))
    index, trying = await next_response_on(tcp_peer)
    assert (index, trying.status, trying.top_via.transport) == (0, 100, "TCP")
    invite = next(e.request for e in answering.events if isinstance(e, RequestReceived))
    now = asyncio.get_running_loop().time()
    layer.send_response(make_response(invite, 180, to_tag="t1"), now)
    layer.send_response(make_response(invite, 200, to_tag="t1"), now)
    endpoint.flush()
    assert [(i, r.status) for i, r in [await next_response_on(tcp_peer) for _ in range(2)]] == [
        (0, 180),
        (0, 200),
    ]
    assert endpoint.counters.tcp_connects == 1
    assert endpoint.counters.tcp_reconnects == 3
    assert endpoint.counters.datagrams_out == 0
    assert layer.state_of(server_key(invite, "INVITE"), server=True) is State.ACCEPTED


async def test_a_response_whose_new_connection_is_refused_is_a_transport_error(
    endpoint: SipEndpoint, layer: TransactionLayer, answering: Answering
) -> None:
    """RFC 3261 18.2.2 / 17.2.4: the response is lost, nothing goes over UDP, the transaction
    ends and the transaction user hears of it."""
    await send_and_close(endpoint, invite_via_tcp("gone2", free_tcp_port()))
    await until(lambda: any(isinstance(e, TransactionFailed) for e in answering.events))
    invite = answering.events[0]
    assert isinstance(invite, RequestReceived)
    assert invite.key is not None
    assert answering.events[1:] == [TransactionFailed(invite.key, "transport error")]
    assert layer.state_of(invite.key, server=True) is State.TERMINATED
    assert endpoint.counters.tcp_connect_failed == 1
    assert endpoint.counters.send_failed == 1
    assert endpoint.counters.datagrams_out == 0
