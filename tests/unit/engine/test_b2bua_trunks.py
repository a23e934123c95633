"""Buyer legs through trunks: the outbound proxy, TCP, and digest challenges to our INVITE.

The B2BUA runs on the real transaction layer with the fakes of
``test_b2bua``; TCP connections are a fake that records what was asked
(the real ones are exercised in ``tests/integration/engine``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from callwhisper.domain import Configuration
from callwhisper.engine.b2bua import B2bua
from callwhisper.engine.media import DigitReceived as DigitEvent
from callwhisper.engine.media import MediaEngine
from callwhisper.engine.runner import RunnerSettings
from callwhisper.sip.auth import DigestChallenge, digest_response
from callwhisper.sip.message import SipRequest, parse_message
from callwhisper.sip.transaction import Address
from tests.unit.engine.test_b2bua import (
    BUYER,
    BUYER_SDP,
    CALLER,
    NOW,
    FakeBackend,
    FakePrompts,
    Harness,
    invite,
    response_to,
    statuses,
)

PROXY: Address = ("127.0.0.1", 5090)
NUMBER = "+14155550100"


class FakeTcp:
    """Outbound TCP as the endpoint offers it: records connections, or refuses them."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.connected: list[Address] = []
        self.tcp: set[Address] = set()

    async def connect(self, destination: Address) -> None:
        if self.refuse:
            raise ConnectionRefusedError(f"connection to {destination} refused")
        self.connected.append(destination)
        self.tcp.add(destination)

    def use_tcp(self, destination: Address) -> None:
        self.tcp.add(destination)


def document(target: dict[str, Any], trunk: dict[str, Any] | None = None) -> dict[str, Any]:
    """One buyer with one target (and trunk), one campaign, the number ``sales``."""
    return {
        "trunks": [trunk] if trunk else [],
        "buyers": [
            {
                "id": "acme",
                "conversion": {"revenue": "20.00", "buffer_seconds": 60},
                "whisper": {"text": "Press 1.", "wait_seconds": 1.0, "plays": 1},
                "targets": [{"id": "main", **target}],
            }
        ],
        "campaigns": [{"id": "test", "routing": {"tiers": [{"buyers": [{"buyer": "acme"}]}]}}],
        "numbers": [{"number": "sales", "campaign": "test"}],
    }


class TrunkHarness(Harness):
    """The B2BUA harness on a configuration of our own, with fake outbound TCP."""

    def __init__(self, tmp_path: Path, configuration: dict[str, Any], tcp: FakeTcp) -> None:
        super().__init__(tmp_path)
        self.tcp = tcp
        self.backend = FakeBackend(Configuration.model_validate(configuration))
        self.b2bua = B2bua(
            self.core,
            cast(MediaEngine, self.media),
            self.backend,
            FakePrompts(),
            self.backend.configuration,
            RunnerSettings(tmp_path, cancel_linger_seconds=0.0),
            local=("127.0.0.1", 5060),
            media_address="127.0.0.1",
            flush=self.endpoint.flush,
            clock=lambda: 0.0,
            wall=lambda: NOW,
            tcp=tcp,
        )
        self.endpoint.handler = self.b2bua.handle_event

    def receive_stream(self, text: str, source: Address) -> None:
        """A message framed from a TCP connection."""
        message = parse_message(text.replace("\n", "\r\n").encode(), stream=True)
        self.core.receive_message(message, source, 0.0, reliable=True)
        self.endpoint.flush()

    async def dial(self, destination: Address) -> SipRequest:
        """A call arrives; the INVITE the B2BUA sent to ``destination``."""
        self.receive(invite(), CALLER)
        await self.settle()
        sent = self.sent_to(destination)
        assert len(sent) == 1, sent
        request = sent[0]
        assert isinstance(request, SipRequest)
        assert request.method == "INVITE"
        return request


@pytest.fixture
async def calls(tmp_path: Path) -> AsyncIterator[list[TrunkHarness]]:
    """Harnesses made by a test; their calls are ended at teardown."""
    made: list[TrunkHarness] = []
    yield made
    for harness in made:
        for task in harness.b2bua.tasks:
            task.cancel()
        await asyncio.gather(*harness.b2bua.tasks, return_exceptions=True)


@pytest.fixture
def make(tmp_path: Path, calls: list[TrunkHarness]) -> Any:
    """``make(configuration, tcp=None)``: a harness serving that configuration."""

    def build(configuration: dict[str, Any], tcp: FakeTcp | None = None) -> TrunkHarness:
        harness = TrunkHarness(tmp_path, configuration, tcp or FakeTcp())
        calls.append(harness)
        return harness

    return build


def auth_params(value: str) -> dict[str, str]:
    """The parameters of a ``Digest ...`` credentials header, unquoted."""
    assert value.startswith("Digest ")
    return {
        name: quoted if quoted else bare
        for name, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', value[7:])
    }


# -- outbound proxy ---------------------------------------------------------------------


async def test_a_target_uri_with_a_trunk_goes_to_the_proxy_with_the_target_as_request_uri(
    make: Any,
) -> None:
    harness = make(
        document(
            {"destination": "sip:agent@buyer.example.com", "trunk": "edge"},
            {"id": "edge", "proxy": "sip:127.0.0.1:5090", "from_domain": "calls.example.org"},
        )
    )
    request = await harness.dial(PROXY)
    assert request.uri == "sip:agent@buyer.example.com"
    assert request.to.uri == "sip:agent@buyer.example.com"
    assert request.from_.uri == "sip:+14155550123@calls.example.org"
    assert request.top_via.transport == "UDP"
    assert harness.tcp.connected == []


async def test_a_number_through_a_trunk_is_dialed_at_the_proxy_host(make: Any) -> None:
    harness = make(
        document(
            {"destination": NUMBER, "trunk": "carrier"},
            {"id": "carrier", "proxy": "sip:127.0.0.1:5090", "caller_id": "+18005550199"},
        )
    )
    request = await harness.dial(PROXY)
    assert request.uri == f"sip:{NUMBER}@127.0.0.1:5090"
    assert request.from_.uri == "sip:+18005550199@127.0.0.1"


async def test_in_dialog_requests_of_a_proxied_leg_go_through_the_proxy(make: Any) -> None:
    """The buyer's Contact names another host; the ACK still goes to the trunk's proxy."""
    harness = make(
        document(
            {"destination": NUMBER, "trunk": "carrier"},
            {"id": "carrier", "proxy": "sip:127.0.0.1:5090"},
        )
    )
    request = await harness.dial(PROXY)
    harness.receive(response_to(request, 200, "OK", BUYER_SDP), PROXY)
    await harness.settle()
    acks = [m for m in harness.sent_to(PROXY) if isinstance(m, SipRequest)]
    assert [m.method for m in acks] == ["ACK"]
    assert acks[0].uri == "sip:buyer@127.0.0.1:5080"  # the remote target, through the proxy


# -- TCP ----------------------------------------------------------------------------------


async def test_a_tcp_target_is_connected_and_invited_over_tcp(make: Any) -> None:
    harness = make(document({"destination": "sip:buyer@127.0.0.1:5080;transport=tcp"}))
    request = await harness.dial(BUYER)
    assert harness.tcp.connected == [BUYER]
    assert request.uri == "sip:buyer@127.0.0.1:5080;transport=tcp"
    assert request.top_via.transport == "TCP"
    assert request.headers.get("Contact") == "<sip:callwhisper@127.0.0.1:5060;transport=tcp>"


async def test_an_invite_over_tcp_is_not_retransmitted(make: Any) -> None:
    """RFC 3261 17.1.1.2: Timer A runs on unreliable transports only."""
    harness = make(document({"destination": "sip:buyer@127.0.0.1:5080;transport=tcp"}))
    await harness.dial(BUYER)
    harness.core.handle_timer(4.0)
    harness.endpoint.flush()
    assert harness.sent_to(BUYER) == []


async def test_a_tcp_leg_is_acked_and_hung_up_over_tcp(make: Any) -> None:
    harness = make(document({"destination": "sip:buyer@127.0.0.1:5080;transport=tcp"}))
    request = await harness.dial(BUYER)
    harness.receive_stream(response_to(request, 200, "OK", BUYER_SDP), BUYER)
    await harness.settle()
    ack = harness.sent_to(BUYER)[0]
    assert isinstance(ack, SipRequest)
    assert (ack.method, ack.top_via.transport) == ("ACK", "TCP")
    assert BUYER in harness.tcp.tcp  # the remote target, sent to over TCP
    harness.media.legs["B1"].on_event(DigitEvent("B1", "1", 0.0))
    await harness.settle()
    answer = harness.sent_to(CALLER)
    assert statuses(answer) == [200]
    harness.receive(caller_bye(answer[0].to.tag), CALLER)
    await harness.settle()
    bye = harness.sent_to(BUYER)
    assert [(m.method, m.top_via.transport) for m in bye if isinstance(m, SipRequest)] == [
        ("BYE", "TCP")
    ]
    harness.core.handle_timer(4.0)  # Timer E does not run on TCP (RFC 3261 17.1.2.2)
    harness.endpoint.flush()
    assert harness.sent_to(BUYER) == []


def caller_bye(to_tag: str | None) -> str:
    """The caller's BYE after we answered it."""
    return (
        "BYE sip:callwhisper@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-caller-bye\n"
        "From: <sip:+14155550123@127.0.0.1:5071>;tag=caller\n"
        f"To: <sip:sales@127.0.0.1:5060>;tag={to_tag}\n"
        "Call-ID: call-1\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )


async def test_a_trunk_with_transport_tcp_is_reached_over_tcp(make: Any) -> None:
    harness = make(
        document(
            {"destination": NUMBER, "trunk": "carrier"},
            {"id": "carrier", "proxy": "sip:127.0.0.1:5090", "transport": "tcp"},
        )
    )
    request = await harness.dial(PROXY)
    assert harness.tcp.connected == [PROXY]
    assert request.top_via.transport == "TCP"


async def test_a_refused_tcp_connection_fails_the_leg_as_a_transport_error(make: Any) -> None:
    harness = make(
        document({"destination": "sip:buyer@127.0.0.1:5080;transport=tcp"}),
        FakeTcp(refuse=True),
    )
    harness.receive(invite(), CALLER)
    await harness.settle()
    sent = harness.endpoint.take()
    assert [d for _, d in sent if d != CALLER] == []
    assert statuses([m for m, _ in sent]) == [100, 183, 480]
    leg_end = next(e for e in harness.backend.entries if e.kind == "leg_end" and e.leg == "B1")
    assert leg_end.data["reason"] == "failed"
    assert leg_end.data["status"] == "transport error"


@pytest.mark.parametrize(
    "uri", ["sip:buyer@127.0.0.1:5080;transport=sctp", "sips:buyer@127.0.0.1:5080"]
)
async def test_a_transport_the_engine_does_not_speak_is_unroutable(make: Any, uri: str) -> None:
    harness = make(document({"destination": uri}))
    harness.receive(invite(), CALLER)
    await harness.settle()
    assert harness.sent_to(BUYER) == []
    leg_end = next(e for e in harness.backend.entries if e.kind == "leg_end" and e.leg == "B1")
    assert leg_end.data["status"] == "unroutable"


# -- digest authentication ---------------------------------------------------------------


def challenge(request: SipRequest, status: int, header: str) -> str:
    """A 401 or 407 to ``request`` carrying ``header`` (WWW- or Proxy-Authenticate)."""
    reason = "Unauthorized" if status == 401 else "Proxy Authentication Required"
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    return response_to(request, status, reason).replace(
        "Content-Length: 0", f"{name}: {header}\nContent-Length: 0"
    )


def trunked(**trunk: Any) -> dict[str, Any]:
    return document(
        {"destination": NUMBER, "trunk": "carrier"},
        {"id": "carrier", "proxy": "sip:127.0.0.1:5090", **trunk},
    )


@pytest.mark.parametrize(
    ("status", "asked", "answer", "algorithm"),
    [
        (407, "Proxy-Authenticate", "Proxy-Authorization", "MD5"),
        (401, "WWW-Authenticate", "Authorization", "SHA-256"),
    ],
)
async def test_a_challenged_invite_is_sent_again_with_credentials(
    make: Any, status: int, asked: str, answer: str, algorithm: str
) -> None:
    harness = make(trunked(username="acct-1234", password="s3cret"))
    first = await harness.dial(PROXY)
    header = f'Digest realm="carrier", nonce="n-1", algorithm={algorithm}, qop="auth"'
    harness.receive(challenge(first, status, header), PROXY)
    await harness.settle()
    sent = [m for m in harness.sent_to(PROXY) if isinstance(m, SipRequest)]
    assert [m.method for m in sent] == ["ACK", "INVITE"]  # the 4xx is ACKed (17.1.1.3)
    second = sent[1]
    assert second.call_id == first.call_id
    assert second.from_.tag == first.from_.tag
    assert second.cseq.seq == first.cseq.seq + 1
    assert second.top_via.branch != first.top_via.branch
    assert second.body == first.body
    credentials = auth_params(second.headers.get(answer) or "")
    expected = digest_response(
        DigestChallenge("carrier", "n-1", algorithm, ("auth",)),
        username="acct-1234",
        password="s3cret",
        method="INVITE",
        uri=first.uri,
        cnonce=credentials["cnonce"],
        nc=1,
    )
    assert credentials["response"] == expected
    assert (credentials["username"], credentials["uri"], credentials["nc"]) == (
        "acct-1234",
        first.uri,
        "00000001",
    )
    # The answer to the authorized INVITE is the buyer's answer.
    harness.receive(response_to(second, 200, "OK", BUYER_SDP), PROXY)
    await harness.settle()
    assert [m.method for m in harness.sent_to(PROXY) if isinstance(m, SipRequest)] == ["ACK"]
    assert harness.media.legs["B1"].played == ["prompt"]


async def test_a_trunk_without_credentials_fails_a_challenged_leg_as_rejected(
    make: Any,
) -> None:
    harness = make(trunked())
    first = await harness.dial(PROXY)
    harness.receive(challenge(first, 407, 'Digest realm="carrier", nonce="n-1"'), PROXY)
    await harness.settle()
    leg_end = next(e for e in harness.backend.entries if e.kind == "leg_end" and e.leg == "B1")
    assert (leg_end.data["reason"], leg_end.data["status"]) == ("rejected", "407")


async def test_credentials_the_trunk_keeps_refusing_are_tried_twice_only(make: Any) -> None:
    """A wrong password must not loop: the third challenge ends the leg."""
    harness = make(trunked(username="acct-1234", password="wrong"))
    request = await harness.dial(PROXY)
    for attempt in range(3):
        nonce = f'Digest realm="carrier", nonce="n-{attempt}"'
        harness.receive(challenge(request, 401, nonce), PROXY)
        await harness.settle()
        invites = [
            m for m in harness.sent_to(PROXY) if isinstance(m, SipRequest) and m.method == "INVITE"
        ]
        if attempt < 2:
            assert len(invites) == 1
            request = invites[0]
        else:
            assert invites == []
    leg_end = next(e for e in harness.backend.entries if e.kind == "leg_end" and e.leg == "B1")
    assert (leg_end.data["reason"], leg_end.data["status"]) == ("rejected", "401")


async def test_an_unsupported_challenge_fails_the_leg(make: Any) -> None:
    harness = make(trunked(username="acct-1234", password="s3cret"))
    first = await harness.dial(PROXY)
    header = 'Digest realm="carrier", nonce="n-1", algorithm=SHA-1024'
    harness.receive(challenge(first, 401, header), PROXY)
    await harness.settle()
    assert [m.method for m in harness.sent_to(PROXY) if isinstance(m, SipRequest)] == ["ACK"]
    leg_end = next(e for e in harness.backend.entries if e.kind == "leg_end" and e.leg == "B1")
    assert leg_end.data["status"] == "401"


async def test_a_challenge_over_tcp_is_answered_on_tcp(make: Any) -> None:
    harness = make(trunked(username="acct-1234", password="s3cret", transport="tcp"))
    first = await harness.dial(PROXY)
    harness.receive_stream(challenge(first, 407, 'Digest realm="carrier", nonce="n-1"'), PROXY)
    await harness.settle()
    second = [m for m in harness.sent_to(PROXY) if isinstance(m, SipRequest)][-1]
    assert (second.method, second.top_via.transport) == ("INVITE", "TCP")
    assert second.headers.get("Proxy-Authorization") is not None
