"""The SIP transports' pure parts: the flood guard on virtual time, where lost connections lead,
and the endpoint's timer handle on a loop the test drives."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from callwhisper.engine.transport import (
    SipEndpoint,
    SourceRateLimiter,
    StreamTarget,
    TransportConfig,
    client_tls_context,
    reconnect_target,
    server_tls_context,
)
from callwhisper.errors import ConfigError
from callwhisper.sip.message import SipMessage
from callwhisper.sip.transaction import Address, TransactionEvent, TransactionKey


def test_a_source_gets_its_burst_then_is_refused() -> None:
    limiter = SourceRateLimiter(rate=10, burst=3)
    assert [limiter.allow("192.0.2.1", 0.0) for _ in range(4)] == [True, True, True, False]


def test_tokens_come_back_at_the_rate() -> None:
    limiter = SourceRateLimiter(rate=10, burst=3)
    for _ in range(3):
        limiter.allow("192.0.2.1", 0.0)
    assert not limiter.allow("192.0.2.1", 0.05)
    assert limiter.allow("192.0.2.1", 0.1)
    assert not limiter.allow("192.0.2.1", 0.1)


def test_sources_have_separate_buckets() -> None:
    limiter = SourceRateLimiter(rate=1, burst=1)
    assert limiter.allow("192.0.2.1", 0.0)
    assert not limiter.allow("192.0.2.1", 0.0)
    assert limiter.allow("192.0.2.2", 0.0)


def test_the_table_forgets_the_least_recent_source() -> None:
    """Spoofed floods evict old entries: the evicted host starts again with a full bucket."""
    limiter = SourceRateLimiter(rate=1, burst=1, max_sources=2)
    assert limiter.allow("192.0.2.1", 0.0)
    assert limiter.allow("192.0.2.2", 0.0)
    assert limiter.allow("192.0.2.3", 0.0)
    assert limiter.allow("192.0.2.1", 0.0)
    assert not limiter.allow("192.0.2.3", 0.0)


def test_a_source_seen_again_is_kept_over_one_seen_since() -> None:
    """The table evicts by last datagram, not by first: a busy source keeps its bucket."""
    limiter = SourceRateLimiter(rate=1, burst=1, max_sources=2)
    assert limiter.allow("192.0.2.1", 0.0)
    assert limiter.allow("192.0.2.2", 0.0)
    assert not limiter.allow("192.0.2.1", 0.0)
    assert limiter.allow("192.0.2.3", 0.0)  # evicts 192.0.2.2
    assert not limiter.allow("192.0.2.1", 0.0)
    assert limiter.allow("192.0.2.2", 0.0)


class TimerCore:
    """A SIP core whose earliest deadline the test sets; it notes when its timers are run."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.ran: list[float] = []

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        raise AssertionError("no datagrams here")

    def receive_message(
        self, message: SipMessage, source: Address, now: float, *, reliable: bool = False
    ) -> None:
        raise AssertionError("no messages here")

    def messages_to_send(self) -> list[tuple[bytes, Address]]:
        return []

    def next_event(self) -> TransactionEvent | None:
        return None

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.ran.append(now)
        if self.deadline is not None and self.deadline <= now:
            self.deadline = None

    def transport_error(self, key: TransactionKey, *, server: bool = False) -> None:
        raise AssertionError("no transport errors here")


class Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualLoop:
    """The two methods of an event loop the endpoint's timer uses; the test moves time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.handles: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        self.handles.append(handle)
        return handle

    def live(self) -> list[float]:
        return [h.when for h in self.handles if not h.cancelled]

    def run_until(self, now: float) -> None:
        self.now = now
        for handle in list(self.handles):
            if not handle.cancelled and handle.when <= now:
                handle.cancelled = True
                handle.callback()


def timer_endpoint() -> tuple[SipEndpoint, TimerCore, ManualLoop]:
    core = TimerCore()
    endpoint = SipEndpoint(core, lambda event: None)
    loop = ManualLoop()
    endpoint._loop = cast(asyncio.AbstractEventLoop, loop)
    return endpoint, core, loop


def test_the_timer_handle_is_armed_again_only_for_an_earlier_deadline() -> None:
    """A later deadline (the earliest timer was stopped) keeps the handle armed before it."""
    endpoint, core, loop = timer_endpoint()
    endpoint.flush()
    assert loop.live() == []
    core.deadline = 1.0
    endpoint.flush()
    core.deadline = 2.0
    endpoint.flush()
    assert [h.when for h in loop.handles] == [1.0]
    core.deadline = 0.5
    endpoint.flush()
    assert [h.when for h in loop.handles] == [1.0, 0.5]
    assert loop.live() == [0.5]


def test_a_handle_that_fires_early_runs_the_core_and_is_armed_for_its_deadline() -> None:
    endpoint, core, loop = timer_endpoint()
    core.deadline = 1.0
    endpoint.flush()
    core.deadline = 2.0
    endpoint.flush()
    loop.run_until(1.0)
    assert core.ran == [1.0]
    assert loop.live() == [2.0]
    loop.run_until(2.0)
    assert core.ran == [1.0, 2.0]
    assert loop.live() == []


def response(via: str, status: int = 200) -> bytes:
    """A response to an OPTIONS whose request carried ``via`` (its top Via), as we send it."""
    return (
        f"SIP/2.0 {status} OK\r\n"
        f"Via: {via}\r\n"
        "Via: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKproxy\r\n"
        "From: <sip:caller@example.com>;tag=a1\r\n"
        "To: <sip:buyer@example.com>;tag=b2\r\n"
        "Call-ID: c1@example.com\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


SOURCE = ("192.0.2.7", 40312)
"""Where the request came from: the peer's address and its connection's ephemeral port."""


def test_a_response_over_tcp_goes_to_the_sent_by_port_of_the_source_address() -> None:
    """RFC 3261 18.2.2: the source address stands for received, the port is sent-by's."""
    via = "SIP/2.0/TCP pbx.example.com:5080;branch=z9hG4bKa"
    assert reconnect_target(response(via), SOURCE) == StreamTarget(("192.0.2.7", 5080))


def test_a_response_over_tcp_without_a_sent_by_port_goes_to_5060() -> None:
    data = response("SIP/2.0/tcp 192.0.2.7;branch=z9hG4bKa")
    assert reconnect_target(data, SOURCE) == StreamTarget(("192.0.2.7", 5060))


def test_a_response_over_tls_goes_over_tls_to_5061_checking_the_sent_by_name() -> None:
    """RFC 3261 18.2.2 and 26.2: a request over TLS has its response on a TLS connection."""
    data = response("SIP/2.0/TLS pbx.example.com;branch=z9hG4bKa")
    assert reconnect_target(data, SOURCE) == StreamTarget(("192.0.2.7", 5061), "pbx.example.com")
    data = response("SIP/2.0/TLS [2001:db8::7]:5071;branch=z9hG4bKa")
    assert reconnect_target(data, SOURCE) == StreamTarget(("192.0.2.7", 5071), "2001:db8::7")


def test_a_received_parameter_the_peer_wrote_is_not_followed() -> None:
    """Only this hop writes received (18.2.1): one in the request came from the peer."""
    via = "SIP/2.0/TCP 192.0.2.7:5070;received=203.0.113.66;branch=z9hG4bKa"
    assert reconnect_target(response(via), SOURCE) == StreamTarget(("192.0.2.7", 5070))


def test_a_response_over_udp_has_no_new_connection() -> None:
    """The proxy's TCP Via below the top one does not count."""
    via = "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKa"
    data = response(via).replace(b"SIP/2.0/UDP 198", b"SIP/2.0/TCP 198")
    assert reconnect_target(data, SOURCE) is None


def test_a_request_has_no_new_connection() -> None:
    request = (
        b"BYE sip:caller@192.0.2.7 SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKb\r\n"
        b"From: <sip:buyer@example.com>;tag=b2\r\nTo: <sip:caller@example.com>;tag=a1\r\n"
        b"Call-ID: c1@example.com\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    assert reconnect_target(request, SOURCE) is None


def test_a_response_that_does_not_parse_has_no_new_connection() -> None:
    data = response("SIP/2.0/TCP 192.0.2.7:5070;branch=z9hG4bKa").replace(b"CSeq: 1", b"CSeq: x")
    assert reconnect_target(data, SOURCE) is None


def test_without_tls_files_there_is_no_tls_listener() -> None:
    assert server_tls_context(TransportConfig()) is None


def test_a_tls_key_without_a_certificate_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"TLS key key\.pem: no TLS certificate is configured"):
        server_tls_context(TransportConfig(tls_key=Path("key.pem")))


def test_a_missing_or_unreadable_certificate_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=r"missing\.pem: no such file or directory"):
        server_tls_context(TransportConfig(tls_certificate=missing))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(
        ConfigError, match=r"garbage\.pem: not PEM, or without the matching private"
    ):
        server_tls_context(TransportConfig(tls_certificate=garbage))
    with pytest.raises(ConfigError, match=r"TLS CA file .*garbage\.pem: no PEM certificate in it"):
        client_tls_context(TransportConfig(tls_ca_file=garbage))


def test_outbound_tls_verifies_the_peer_by_default() -> None:
    """RFC 3261 26.3.1: the certificate must chain to a trusted CA and bear the name asked."""
    context = client_tls_context(TransportConfig())
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    unverified = client_tls_context(TransportConfig(tls_verify=False))
    assert (unverified.verify_mode, unverified.check_hostname) == (ssl.CERT_NONE, False)
