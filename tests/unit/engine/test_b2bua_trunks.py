"""Buyer legs through trunks: the outbound proxy, TCP, and digest challenges to our INVITE.

The B2BUA runs on the real transaction layer with the fakes of
``b2bua_harness``; TCP connections are a fake that records what was asked
(the real ones are exercised in ``tests/integration/engine``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from callwhisper.engine.media import DigitReceived as DigitEvent
from callwhisper.sip.auth import DigestChallenge, digest_response
from callwhisper.sip.message import SipRequest
from tests.unit.engine.b2bua_harness import (
    BUYER,
    BUYER_SDP,
    CALLER,
    NUMBER,
    PROXY,
    FakeTcp,
    Harness,
    MakeHarness,
    caller_bye,
    caller_cancel,
    challenge,
    document,
    invite,
    requests,
    response_to,
    statuses,
)


def auth_params(value: str) -> dict[str, str]:
    """The parameters of a ``Digest ...`` credentials header, unquoted."""
    assert value.startswith("Digest ")
    return {
        name: quoted if quoted else bare
        for name, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', value[7:])
    }


def trunked(**trunk: Any) -> dict[str, Any]:
    """The buyer's number, through the trunk ``carrier`` whose proxy is at ``PROXY``."""
    return document(
        {"destination": NUMBER, "trunk": "carrier"},
        {"id": "carrier", "proxy": "sip:127.0.0.1:5090", **trunk},
    )


# -- outbound proxy ---------------------------------------------------------------------


async def test_a_target_uri_with_a_trunk_goes_to_the_proxy_with_the_target_as_request_uri(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(
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
    assert harness.tcp.opened == []


async def test_a_number_through_a_trunk_is_dialed_at_the_proxy_host(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(trunked(caller_id="+18005550199"))
    request = await harness.dial(PROXY)
    assert request.uri == f"sip:{NUMBER}@127.0.0.1:5090"
    assert request.from_.uri == "sip:+18005550199@127.0.0.1"


async def test_in_dialog_requests_of_a_proxied_leg_go_through_the_proxy(
    make_harness: MakeHarness,
) -> None:
    """The buyer's Contact names another host; the ACK still goes to the trunk's proxy."""
    harness = make_harness(trunked())
    request = await harness.dial(PROXY)
    harness.receive(response_to(request, 200, "OK", BUYER_SDP), PROXY)
    await harness.settle()
    acks = [m for m in harness.sent_to(PROXY) if isinstance(m, SipRequest)]
    assert [m.method for m in acks] == ["ACK"]
    assert acks[0].uri == "sip:buyer@127.0.0.1:5080"  # the remote target, through the proxy


# -- TCP ----------------------------------------------------------------------------------


async def test_a_tcp_target_is_connected_and_invited_over_tcp(make_harness: MakeHarness) -> None:
    harness = make_harness(document({"destination": "sip:buyer@127.0.0.1:5080;transport=tcp"}))
    request = await harness.dial(BUYER)
    assert harness.tcp.opened == [BUYER]
    assert request.uri == "sip:buyer@127.0.0.1:5080;transport=tcp"
    assert request.top_via.transport == "TCP"
    assert request.headers.get("Contact") == "<sip:callwhisper@127.0.0.1:5060;transport=tcp>"


async def test_an_invite_over_tcp_is_not_retransmitted(make_harness: MakeHarness) -> None:
    """RFC 3261 17.1.1.2: Timer A runs on unreliable transports only."""
    harness = make_harness(document({"destination": "sip:buyer@127.0.0.1:5080;transport=tcp"}))
    await harness.dial(BUYER)
    harness.core.handle_timer(4.0)
    harness.endpoint.flush()
    assert harness.sent_to(BUYER) == []


async def test_a_tcp_leg_is_acked_and_hung_up_over_tcp(make_harness: MakeHarness) -> None:
    harness = make_harness(document({"destination": "sip:buyer@127.0.0.1:5080;transport=tcp"}))
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


async def test_a_trunk_with_transport_tcp_is_reached_over_tcp(make_harness: MakeHarness) -> None:
    harness = make_harness(trunked(transport="tcp"))
    request = await harness.dial(PROXY)
    assert harness.tcp.opened == [PROXY]
    assert request.top_via.transport == "TCP"


async def test_a_refused_tcp_connection_fails_the_leg_as_a_transport_error(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(
        document({"destination": "sip:buyer@127.0.0.1:5080;transport=tcp"}),
        FakeTcp(refuse=True),
    )
    harness.receive(invite(), CALLER)
    await harness.settle()
    sent = harness.endpoint.take()
    assert [d for _, d in sent if d != CALLER] == []
    assert statuses([m for m, _ in sent]) == [100, 183, 480]
    leg_end = harness.leg_end("B1")
    assert leg_end["reason"] == "failed"
    assert leg_end["status"] == "transport error"


@pytest.mark.parametrize(
    "uri", ["sip:buyer@127.0.0.1:5080;transport=sctp", "sips:buyer@127.0.0.1:5080;transport=udp"]
)
async def test_a_transport_the_engine_does_not_speak_is_unroutable(
    make_harness: MakeHarness, uri: str
) -> None:
    harness = make_harness(document({"destination": uri}))
    harness.receive(invite(), CALLER)
    await harness.settle()
    assert harness.sent_to(BUYER) == []
    leg_end = harness.leg_end("B1")
    assert leg_end["status"] == "unroutable"


# -- digest authentication ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "asked", "answer", "algorithm"),
    [
        (407, "Proxy-Authenticate", "Proxy-Authorization", "MD5"),
        (401, "WWW-Authenticate", "Authorization", "SHA-256"),
    ],
)
async def test_a_challenged_invite_is_sent_again_with_credentials(
    make_harness: MakeHarness, status: int, asked: str, answer: str, algorithm: str
) -> None:
    harness = make_harness(trunked(username="acct-1234", password="s3cret"))
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
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(trunked())
    first = await harness.dial(PROXY)
    harness.receive(challenge(first, 407, 'Digest realm="carrier", nonce="n-1"'), PROXY)
    await harness.settle()
    leg_end = harness.leg_end("B1")
    assert (leg_end["reason"], leg_end["status"]) == ("rejected", "407")


async def test_credentials_the_trunk_keeps_refusing_are_tried_twice_only(
    make_harness: MakeHarness,
) -> None:
    """A wrong password must not loop: the third challenge ends the leg."""
    harness = make_harness(trunked(username="acct-1234", password="wrong"))
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
    leg_end = harness.leg_end("B1")
    assert (leg_end["reason"], leg_end["status"]) == ("rejected", "401")


async def test_an_unsupported_challenge_fails_the_leg(make_harness: MakeHarness) -> None:
    harness = make_harness(trunked(username="acct-1234", password="s3cret"))
    first = await harness.dial(PROXY)
    header = 'Digest realm="carrier", nonce="n-1", algorithm=SHA-1024'
    harness.receive(challenge(first, 401, header), PROXY)
    await harness.settle()
    assert [m.method for m in harness.sent_to(PROXY) if isinstance(m, SipRequest)] == ["ACK"]
    leg_end = harness.leg_end("B1")
    assert leg_end["status"] == "401"


async def test_a_200_to_the_authorized_invite_crossing_our_cancel_is_acked_and_hung_up(
    tmp_path: Path,
) -> None:
    """The INVITE sent again is a new transaction: the ended call waits for its answer too."""
    configuration = trunked(username="acct-1234", password="s3cret")
    async with Harness(tmp_path, configuration, cancel_linger_seconds=4.0) as harness:
        first = await harness.dial(PROXY)
        harness.receive(challenge(first, 407, 'Digest realm="carrier", nonce="n-1"'), PROXY)
        await harness.settle()
        second = harness.sent_to(PROXY)[-1]
        assert isinstance(second, SipRequest)
        harness.receive(response_to(second, 180, "Ringing"), PROXY)
        harness.receive(caller_cancel(), CALLER)
        await harness.settle()
        assert requests(harness.sent_to(PROXY)) == ["CANCEL"]
        harness.receive(response_to(second, 200, "OK", BUYER_SDP), PROXY)
        await harness.settle()
        assert requests(harness.sent_to(PROXY)) == ["ACK", "BYE"]
        assert not harness.b2bua.tasks


async def test_a_challenge_over_tcp_is_answered_on_tcp(make_harness: MakeHarness) -> None:
    harness = make_harness(trunked(username="acct-1234", password="s3cret", transport="tcp"))
    first = await harness.dial(PROXY)
    harness.receive_stream(challenge(first, 407, 'Digest realm="carrier", nonce="n-1"'), PROXY)
    await harness.settle()
    second = [m for m in harness.sent_to(PROXY) if isinstance(m, SipRequest)][-1]
    assert (second.method, second.top_via.transport) == ("INVITE", "TCP")
    assert second.headers.get("Proxy-Authorization") is not None
