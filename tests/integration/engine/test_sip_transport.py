"""The SIP endpoint over loopback UDP and TCP, driving the real transaction layer."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from callwhisper.engine.transport import SipEndpoint, TransportConfig
from callwhisper.sip.message import SipResponse, make_response, parse_message
from callwhisper.sip.transaction import RequestReceived, TransactionEvent, TransactionLayer

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
async def endpoint(layer: TransactionLayer) -> AsyncIterator[SipEndpoint]:
    config = TransportConfig(port=0, max_datagram=4096, rate_per_source=1000, burst_per_source=10)
    sip = SipEndpoint(layer, Answering(layer), config)
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
    async with asyncio.timeout(3):
        while endpoint.counters.datagrams_in < 16:  # noqa: ASYNC110 - counters are not awaitable
            await asyncio.sleep(0.01)
    assert endpoint.counters.oversized == 1
    assert endpoint.counters.flooded == 5
    assert [(await next_response(phone)).status for _ in range(10)] == [200] * 10


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
