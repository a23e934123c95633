"""SIP over TLS (RFC 3261 26.2) between real TLS stacks on loopback, with certificates made
for each test: the endpoint listens and connects over TLS and checks certificates."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from callwhisper.engine.transport import SipEndpoint, TransportConfig
from callwhisper.errors import ConfigError
from callwhisper.sip.message import SipRequest, SipResponse, parse_message
from callwhisper.sip.transaction import (
    RequestReceived,
    ResponseReceived,
    State,
    TransactionLayer,
)
from tests.integration.engine.test_sip_transport import Answering, TcpPeer, request, until
from tests.integration.peers.tls import Certificate, make_certificate

pytestmark = pytest.mark.integration


@dataclass
class Side:
    """One SIP endpoint with its transaction layer and the events its user saw."""

    endpoint: SipEndpoint
    layer: TransactionLayer
    answering: Answering = field(repr=False)


MakeSide = Callable[..., Awaitable[Side]]


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return make_certificate(tmp_path / "tls")


@pytest.fixture
async def make_side() -> AsyncIterator[MakeSide]:
    """Start endpoints on free loopback ports with the TLS settings given; stopped at teardown."""
    started: list[SipEndpoint] = []

    async def make(**tls: Any) -> Side:
        layer = TransactionLayer()
        answering = Answering(layer)
        endpoint = SipEndpoint(layer, answering, TransportConfig(port=0, tls_port=0, **tls))
        await endpoint.start()
        started.append(endpoint)
        return Side(endpoint, layer, answering)

    yield make
    for endpoint in started:
        await endpoint.stop()


def listening(certificate: Certificate) -> dict[str, Path]:
    """The settings of an endpoint with a TLS listener that trusts ``certificate``."""
    return {
        "tls_certificate": certificate.certificate,
        "tls_key": certificate.key,
        "tls_ca_file": certificate.certificate,
    }


def trusting(certificate: Certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate.certificate))


def tls_request(method: str, branch: str, sent_by_port: int = 5999) -> bytes:
    return request(method, branch, "TLS").replace(b":5999;", f":{sent_by_port};".encode())


async def test_a_request_over_tls_is_answered_on_its_connection(
    make_side: MakeSide, certificate: Certificate
) -> None:
    """The client checks our certificate for localhost; the 200 comes back on its connection."""
    server = await make_side(**listening(certificate))
    host, port = server.endpoint.tls_address
    reader, writer = await asyncio.open_connection(
        host, port, ssl=trusting(certificate), server_hostname="localhost"
    )
    try:
        writer.write(tls_request("OPTIONS", "tls1"))
        await writer.drain()
        async with asyncio.timeout(3):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
    response = parse_message(head, stream=True)
    assert isinstance(response, SipResponse)
    assert (response.status, response.top_via.transport) == (200, "TLS")
    assert server.endpoint.counters.tcp_messages_in == 1
    assert server.endpoint.counters.datagrams_out == 0


async def test_two_endpoints_exchange_a_transaction_over_a_verified_tls_connection(
    make_side: MakeSide, certificate: Certificate
) -> None:
    """Our own UAC to our own UAS: OPTIONS out and its 200 back over one TLS connection."""
    server = await make_side(**listening(certificate))
    client = await make_side(tls_ca_file=certificate.certificate)
    destination = server.endpoint.tls_address
    await client.endpoint.connect(destination, tls=True, server_name="localhost")
    options = parse_message(tls_request("OPTIONS", "tls2"))
    assert isinstance(options, SipRequest)
    now = asyncio.get_running_loop().time()
    key = client.layer.send_request(options, destination, now, reliable=True)
    client.endpoint.flush()
    await until(lambda: client.layer.state_of(key) is State.TERMINATED)
    answers = [e for e in client.answering.events if isinstance(e, ResponseReceived)]
    assert [(e.response.status, e.key) for e in answers] == [(200, key)]
    received = [e for e in server.answering.events if isinstance(e, RequestReceived)]
    assert [e.request.method for e in received] == ["OPTIONS"]
    assert client.endpoint.counters.tcp_connects == 1
    assert client.endpoint.counters.datagrams_out == server.endpoint.counters.datagrams_out == 0


async def test_the_call_legs_learn_our_tls_port_our_end_of_a_connection_and_if_it_is_open(
    make_side: MakeSide, certificate: Certificate
) -> None:
    """What a leg's Via and Contact name over TLS, and where its next request may go."""
    server = await make_side(**listening(certificate))
    client = await make_side(tls_ca_file=certificate.certificate)
    assert server.endpoint.tls_port == server.endpoint.tls_address[1]
    assert client.endpoint.tls_port is None  # no certificate, no listener
    destination = server.endpoint.tls_address
    assert not client.endpoint.connected(destination)
    local = await client.endpoint.connect(destination, tls=True, server_name="localhost")
    assert local[0] == "127.0.0.1"
    assert local[1] not in (0, destination[1], client.endpoint.udp_address[1])
    assert await client.endpoint.connect(destination, tls=True) == local  # reused
    assert client.endpoint.connected(destination)
    await until(lambda: server.endpoint.connected(local))  # seen from the other side too
    assert client.endpoint.counters.tcp_connects == 1


async def test_a_certificate_no_trusted_ca_signed_fails_the_connection(
    make_side: MakeSide, certificate: Certificate
) -> None:
    """Verification is on by default: a self-signed certificate is refused with the system's CAs."""
    server = await make_side(**listening(certificate))
    client = await make_side()
    destination = server.endpoint.tls_address
    with pytest.raises(OSError, match=r"TLS to 127\.0\.0\.1:\d+: .*certificate verify failed"):
        await client.endpoint.connect(destination, tls=True, server_name="localhost")
    assert client.endpoint.counters.tcp_connect_failed == 1
    assert client.endpoint.counters.tcp_connects == 0


async def test_a_certificate_for_another_name_fails_the_connection(
    make_side: MakeSide, certificate: Certificate
) -> None:
    server = await make_side(**listening(certificate))
    client = await make_side(tls_ca_file=certificate.certificate)
    destination = server.endpoint.tls_address
    with pytest.raises(OSError, match=r"Hostname mismatch.*'buyer\.example'"):
        await client.endpoint.connect(destination, tls=True, server_name="buyer.example")
    # The address itself is a name the certificate bears (IP:127.0.0.1).
    await client.endpoint.connect(destination, tls=True)
    assert client.endpoint.counters.tcp_connects == 1


async def test_with_verification_off_any_certificate_is_accepted(
    make_side: MakeSide, certificate: Certificate
) -> None:
    server = await make_side(**listening(certificate))
    client = await make_side(tls_verify=False)
    await client.endpoint.connect(server.endpoint.tls_address, tls=True, server_name="any.example")
    assert client.endpoint.counters.tcp_connects == 1


async def test_a_response_whose_tls_connection_closed_goes_over_a_new_tls_connection(
    make_side: MakeSide, certificate: Certificate, tmp_path: Path
) -> None:
    """RFC 3261 18.2.2: over TLS to the Via's port, the peer's certificate checked for the
    Via's host, never over plain TCP or UDP. The peer's certificate bears that name and not
    the address the connection goes to: checked for the address, it would be refused."""
    caller = make_certificate(tmp_path / "caller", name="caller.example", ip="192.0.2.1")
    server = await make_side(**{**listening(certificate), "tls_ca_file": caller.certificate})
    peer = TcpPeer()
    peer_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    peer_tls.load_cert_chain(caller.certificate, caller.key)
    try:
        _, listening_port = await peer.start(peer_tls)
        invite = tls_request("INVITE", "tls3", listening_port).replace(
            b"127.0.0.1:" + str(listening_port).encode(),
            b"caller.example:" + str(listening_port).encode(),
        )
        assert re.search(rb"Via: SIP/2.0/TLS caller\.example:\d+;", invite)
        host, port = server.endpoint.tls_address
        _, writer = await asyncio.open_connection(
            host, port, ssl=trusting(certificate), server_hostname="localhost"
        )
        writer.write(invite)
        await writer.drain()
        await until(lambda: server.endpoint.counters.tcp_messages_in == 1)
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
        await until(lambda: not server.endpoint._streams)
        async with asyncio.timeout(3):
            index, data = await peer.arrived.get()  # 100 Trying, sent by the core after 200 ms
    finally:
        await peer.close()
    trying = parse_message(data, stream=True)
    assert isinstance(trying, SipResponse)
    assert (index, trying.status, trying.top_via.transport) == (0, 100, "TLS")
    assert server.endpoint.counters.tcp_reconnects == 1
    assert server.endpoint.counters.datagrams_out == 0


async def test_plain_text_on_the_tls_port_is_dropped_and_tls_still_served(
    make_side: MakeSide, certificate: Certificate
) -> None:
    server = await make_side(**listening(certificate))
    host, port = server.endpoint.tls_address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(tls_request("OPTIONS", "plain"))
    await writer.drain()
    async with asyncio.timeout(3):
        with contextlib.suppress(ConnectionError):
            assert await reader.read() == b""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    assert server.endpoint.counters.tcp_messages_in == 0
    tls_reader, tls_writer = await asyncio.open_connection(
        host, port, ssl=trusting(certificate), server_hostname="localhost"
    )
    tls_writer.write(tls_request("OPTIONS", "after"))
    async with asyncio.timeout(3):
        assert (await tls_reader.readline()).startswith(b"SIP/2.0 200 ")
    tls_writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await tls_writer.wait_closed()


async def test_a_key_that_does_not_match_the_certificate_stops_the_start(
    tmp_path: Path, certificate: Certificate
) -> None:
    other = make_certificate(tmp_path / "other", name="other.example")
    layer = TransactionLayer()
    config = TransportConfig(port=0, tls_certificate=certificate.certificate, tls_key=other.key)
    endpoint = SipEndpoint(layer, Answering(layer), config)
    with pytest.raises(ConfigError, match=r"the private key does not match the certificate"):
        await endpoint.start()
    with pytest.raises(RuntimeError, match="not started"):
        endpoint.udp_address  # noqa: B018 - nothing was bound
