"""Call legs over TLS (RFC 3261 26.2, SIPS: RFC 5630): our Via, Contact and next hops.

The B2BUA runs on the real transaction layer with the fakes of
``b2bua_harness``; outbound connections are a :class:`FakeTcp` that records
which destinations go over TLS and the name their certificate must bear
(real TLS peers are in ``tests/integration/engine/test_b2bua_tls.py``). Our
TLS listener is on port 5061 unless a test says there is none.
"""

from __future__ import annotations

from typing import Any

import pytest

from callwhisper.engine import runner
from callwhisper.engine.legs import is_ip_literal
from callwhisper.engine.media import DigitReceived as DigitEvent
from callwhisper.sip.message import SipMessage, SipRequest, SipResponse
from callwhisper.sip.transaction import Address
from tests.unit.engine.b2bua_harness import (
    BUYER,
    BUYER_SDP,
    BUYER_URI,
    CALLER,
    LOCAL_END,
    NUMBER,
    PROXY,
    FakeTcp,
    Harness,
    MakeHarness,
    buyer_bye,
    caller_bye,
    caller_cancel,
    challenge,
    document,
    invite,
    requests,
    response_to,
    statuses,
)
from tests.unit.engine.test_b2bua import caller_reinvite

TLS_PORT = 5061
CALLER_CONTACT: Address = ("127.0.0.1", 5075)
"""Where the caller's Contact says it takes TLS connections (its INVITE came from CALLER)."""
CALLER_PROXY: Address = ("127.0.0.1", 5072)
THROUGH_CARRIER = {"destination": NUMBER, "trunk": "carrier"}
"""A target: the buyer's number, through the trunk ``carrier``."""


def over_tls(text: str) -> str:
    """A message of the caller's, sent over TLS."""
    return text.replace("SIP/2.0/UDP", "SIP/2.0/TLS")


def tls_invite(
    request_uri: str = "sip:sales@127.0.0.1:5061",
    contact: str = "sip:caller@127.0.0.1:5075;transport=tls",
    record_route: str | None = None,
) -> str:
    """The caller's INVITE over TLS to ``request_uri``, with its ``contact``."""
    text = over_tls(invite())
    text = text.replace("INVITE sip:sales@127.0.0.1:5060 ", f"INVITE {request_uri} ", 1)
    text = text.replace("Contact: <sip:caller@127.0.0.1:5071>", f"Contact: <{contact}>", 1)
    if record_route is not None:
        text = text.replace("Max-Forwards:", f"Record-Route: <{record_route}>\nMax-Forwards:", 1)
    return text


def two_buyers(first: str, second: str = BUYER_URI) -> dict[str, Any]:
    """Buyer ``acme`` at ``first``, then ``backup`` at ``second`` when acme's leg fails."""
    configuration = document({"destination": first})
    configuration["buyers"].append(
        {
            "id": "backup",
            "conversion": {"revenue": "10.00"},
            "whisper": configuration["buyers"][0]["whisper"],
            "targets": [{"id": "main", "destination": second}],
        }
    )
    configuration["campaigns"][0]["routing"]["tiers"].append({"buyers": [{"buyer": "backup"}]})
    return configuration


def tls_harness(
    make_harness: MakeHarness,
    configuration: dict[str, Any] | None = None,
    tcp: FakeTcp | None = None,
) -> Harness:
    return make_harness(configuration or document(), tcp or FakeTcp(tls_port=TLS_PORT))


def picked(sent: list[tuple[SipMessage, Address]], what: str) -> list[tuple[SipMessage, Address]]:
    """The messages among ``sent`` that are requests of method ``what`` or responses ``what``."""
    return [
        (m, d)
        for m, d in sent
        if (m.method if isinstance(m, SipRequest) else str(m.status)) == what
    ]


async def call_over_tls(harness: Harness, text: str) -> tuple[SipRequest, SipResponse]:
    """A caller over TLS: the buyer's INVITE, and once the buyer accepts, the caller's 200."""
    harness.tcp.open.add(CALLER)
    harness.receive_stream(text, CALLER)
    await harness.settle()
    [(buyer_invite, _)] = picked(harness.endpoint.take(), "INVITE")
    assert isinstance(buyer_invite, SipRequest)
    harness.receive(response_to(buyer_invite, 200, "OK", BUYER_SDP), BUYER)
    await harness.settle()
    harness.media.legs["B1"].on_event(DigitEvent("B1", "1", 0.0))
    await harness.settle()
    [(answer, to)] = picked(harness.endpoint.take(), "200")
    assert isinstance(answer, SipResponse)
    assert to == CALLER
    return buyer_invite, answer


# -- the caller's side ------------------------------------------------------------------------


async def test_a_caller_over_tls_is_answered_with_a_tls_contact_at_our_tls_listener(
    make_harness: MakeHarness,
) -> None:
    harness = tls_harness(make_harness)
    harness.receive_stream(tls_invite(), CALLER)
    await harness.settle()
    [(early, to)] = picked(harness.endpoint.take(), "183")
    assert to == CALLER
    assert early.headers.get("Contact") == "<sip:callwhisper@127.0.0.1:5061;transport=tls>"


@pytest.mark.parametrize(
    ("request_uri", "contact", "record_route"),
    [
        ("sips:sales@127.0.0.1", "sip:caller@127.0.0.1:5075;transport=tls", None),
        ("sip:sales@127.0.0.1;transport=tls", "sips:caller@127.0.0.1:5075", None),
        ("sip:sales@127.0.0.1;transport=tls", "sip:caller@127.0.0.1;transport=tls",
         "sips:127.0.0.1:5072;lr"),
    ],
)  # fmt: skip
async def test_a_secure_dialog_gets_a_sips_contact(
    make_harness: MakeHarness, request_uri: str, contact: str, record_route: str | None
) -> None:
    """RFC 3261 12.1.1: a SIPS Request-URI, top Record-Route, or Contact without one."""
    harness = tls_harness(make_harness)
    _, answer = await call_over_tls(harness, tls_invite(request_uri, contact, record_route))
    assert answer.headers.get("Contact") == "<sips:callwhisper@127.0.0.1:5061>"


async def test_a_plain_top_record_route_leaves_the_contact_plain_whatever_the_callers_contact(
    make_harness: MakeHarness,
) -> None:
    harness = tls_harness(make_harness)
    text = tls_invite(
        contact="sips:caller@127.0.0.1:5075", record_route="sip:127.0.0.1:5072;transport=tls;lr"
    )
    _, answer = await call_over_tls(harness, text)
    assert answer.headers.get("Contact") == "<sip:callwhisper@127.0.0.1:5061;transport=tls>"


async def test_a_sips_request_that_did_not_come_over_tls_is_refused_with_416(
    make_harness: MakeHarness,
) -> None:
    """RFC 5630 3.1.3: SIPS means TLS on every hop, the last one included."""
    harness = tls_harness(make_harness)
    harness.receive(tls_invite("sips:sales@127.0.0.1").replace("/TLS ", "/UDP "), CALLER)
    await harness.settle()
    assert statuses([m for m, _ in harness.endpoint.take()]) == [416]
    assert harness.media.legs == {}
    assert not harness.b2bua.tasks


async def test_a_tls_caller_without_a_tls_listener_of_ours_is_refused_with_416(
    make_harness: MakeHarness,
) -> None:
    """Only a Via that lies can say TLS then: we could not give it a Contact it can reach."""
    harness = tls_harness(make_harness, tcp=FakeTcp())
    harness.receive_stream(tls_invite(), CALLER)
    await harness.settle()
    assert statuses([m for m, _ in harness.endpoint.take()]) == [416]
    assert not harness.b2bua.tasks


async def test_an_invite_whose_contact_does_not_parse_is_refused_with_400_before_any_call(
    make_harness: MakeHarness,
) -> None:
    """Whether the dialog must be secure depends on it (RFC 3261 12.1.1): it is read at once."""
    harness = tls_harness(make_harness)
    harness.receive_stream(tls_invite(contact="sip:caller@127.0.0.1:5075;transport=tls>x<"), CALLER)
    await harness.settle()
    assert statuses([m for m, _ in harness.endpoint.take()]) == [400]
    assert harness.media.legs == {}
    assert not harness.b2bua.tasks


async def test_our_bye_to_a_tls_caller_goes_on_its_open_connection_once(
    make_harness: MakeHarness,
) -> None:
    harness = tls_harness(make_harness)
    buyer_invite, _ = await call_over_tls(harness, tls_invite())
    harness.receive(buyer_bye(buyer_invite), BUYER)
    await harness.settle()
    [(bye, to)] = picked(harness.endpoint.take(), "BYE")
    assert to == CALLER
    assert isinstance(bye, SipRequest)
    via = bye.top_via
    assert (via.transport, via.host, via.port) == ("TLS", "127.0.0.1", TLS_PORT)
    harness.core.handle_timer(4.0)  # Timer E does not run over TLS (RFC 3261 17.1.2.2)
    harness.endpoint.flush()
    assert picked(harness.endpoint.take(), "BYE") == []
    assert harness.tcp.tls == {}  # the caller's own connection: nothing to open


async def test_when_the_callers_connection_closed_our_bye_opens_one_to_its_contact(
    make_harness: MakeHarness,
) -> None:
    """RFC 3261 12.2.1.1: the remote target, over TLS with its host as the certificate's name."""
    harness = tls_harness(make_harness)
    buyer_invite, _ = await call_over_tls(harness, tls_invite())
    harness.tcp.open.discard(CALLER)
    harness.receive(buyer_bye(buyer_invite), BUYER)
    await harness.settle()
    [(bye, to)] = picked(harness.endpoint.take(), "BYE")
    assert to == CALLER_CONTACT
    assert isinstance(bye, SipRequest)
    assert bye.top_via.transport == "TLS"
    assert harness.tcp.tls == {CALLER_CONTACT: "127.0.0.1"}


async def test_a_tls_caller_routed_through_a_proxy_is_hung_up_over_tls_through_it(
    make_harness: MakeHarness,
) -> None:
    harness = tls_harness(make_harness)
    text = tls_invite(record_route="sip:127.0.0.1:5072;transport=tls;lr")
    buyer_invite, _ = await call_over_tls(harness, text)
    harness.receive(buyer_bye(buyer_invite), BUYER)
    await harness.settle()
    [(bye, to)] = picked(harness.endpoint.take(), "BYE")
    assert to == CALLER_PROXY
    assert isinstance(bye, SipRequest)
    assert bye.top_via.transport == "TLS"
    assert harness.tcp.tls == {CALLER_PROXY: "127.0.0.1"}


async def test_our_answer_to_a_tls_callers_reinvite_keeps_the_tls_contact(
    make_harness: MakeHarness,
) -> None:
    harness = tls_harness(make_harness)
    _, answer = await call_over_tls(harness, tls_invite())
    harness.receive_stream(over_tls(caller_reinvite(answer.to.tag, 2, "sendonly")), CALLER)
    await harness.settle()
    [(reply, to)] = picked(harness.endpoint.take(), "200")
    assert to == CALLER
    assert reply.headers.get("Contact") == "<sip:callwhisper@127.0.0.1:5061;transport=tls>"


# -- the buyer's side -------------------------------------------------------------------------


async def test_a_sips_target_is_invited_over_tls_with_its_host_as_the_certificates_name(
    make_harness: MakeHarness,
) -> None:
    harness = tls_harness(make_harness, document({"destination": "sips:buyer@127.0.0.1:5080"}))
    request = await harness.dial(BUYER)
    assert harness.tcp.opened == [BUYER]
    assert harness.tcp.tls == {BUYER: "127.0.0.1"}
    assert request.uri == "sips:buyer@127.0.0.1:5080"
    via = request.top_via
    assert (via.transport, via.host, via.port) == ("TLS", "127.0.0.1", TLS_PORT)
    assert request.headers.get("Contact") == "<sips:callwhisper@127.0.0.1:5061>"
    harness.core.handle_timer(4.0)  # Timer A does not run over TLS (RFC 3261 17.1.1.2)
    harness.endpoint.flush()
    assert harness.sent_to(BUYER) == []


async def test_a_target_named_by_host_is_verified_for_that_name_on_port_5061(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 5922 7.2: the name asked for is the URI's host, not the address it resolved to."""

    async def resolve(host: str, port: int) -> Address:
        assert is_ip_literal(host) or host == "buyer.example"
        return "127.0.0.1", port

    monkeypatch.setattr(runner, "_resolve", resolve)
    target = "sip:agent@buyer.example;transport=tls"
    harness = tls_harness(make_harness, document({"destination": target}))
    request = await harness.dial(("127.0.0.1", 5061))
    assert harness.tcp.tls == {("127.0.0.1", 5061): "buyer.example"}
    assert request.headers.get("Contact") == "<sip:callwhisper@127.0.0.1:5061;transport=tls>"


async def test_without_a_tls_listener_our_via_and_contact_name_our_end_of_the_connection(
    make_harness: MakeHarness,
) -> None:
    """Our certificate is optional for dialing: the buyer reaches us over the connection."""
    harness = tls_harness(make_harness, document({"destination": "sips:buyer@127.0.0.1:5080"}))
    harness.tcp.tls_port = None
    request = await harness.dial(BUYER)
    assert (request.top_via.host, request.top_via.port) == LOCAL_END
    assert request.headers.get("Contact") == "<sips:callwhisper@127.0.0.1:40123>"


async def test_a_tls_leg_is_acked_at_its_contact_over_tls_and_hung_up_there(
    make_harness: MakeHarness,
) -> None:
    harness = tls_harness(make_harness, document({"destination": "sips:buyer@127.0.0.1:5080"}))
    request = await harness.dial(BUYER)
    answered = response_to(request, 200, "OK", BUYER_SDP).replace(
        f"Contact: <{BUYER_URI}>", "Contact: <sips:buyer@127.0.0.2:5062>"
    )
    harness.receive_stream(answered, BUYER)
    await harness.settle()
    elsewhere = ("127.0.0.2", 5062)
    [(ack, to)] = picked(harness.endpoint.take(), "ACK")
    assert to == elsewhere
    assert isinstance(ack, SipRequest)
    assert (ack.uri, ack.top_via.transport) == ("sips:buyer@127.0.0.2:5062", "TLS")
    assert harness.tcp.tls == {BUYER: "127.0.0.1", elsewhere: "127.0.0.2"}
    harness.media.legs["B1"].on_event(DigitEvent("B1", "1", 0.0))
    await harness.settle()
    [(answer, _)] = picked(harness.endpoint.take(), "200")
    harness.receive(caller_bye(answer.to.tag), CALLER)
    await harness.settle()
    [(bye, to)] = picked(harness.endpoint.take(), "BYE")
    assert to == elsewhere
    assert isinstance(bye, SipRequest)
    assert bye.top_via.transport == "TLS"


async def test_a_ringing_tls_leg_is_cancelled_over_tls_where_the_invite_went(
    make_harness: MakeHarness,
) -> None:
    harness = tls_harness(make_harness, document({"destination": "sips:buyer@127.0.0.1:5080"}))
    request = await harness.dial(BUYER)
    harness.receive_stream(response_to(request, 180, "Ringing"), BUYER)
    await harness.settle()
    harness.receive(caller_cancel(), CALLER)
    await harness.settle()
    [(cancel, to)] = picked(harness.endpoint.take(), "CANCEL")
    assert to == BUYER
    assert isinstance(cancel, SipRequest)
    assert cancel.top_via == request.top_via  # RFC 3261 9.1: the INVITE's Via, TLS
    assert harness.tcp.tls == {BUYER: "127.0.0.1"}


@pytest.mark.parametrize(
    ("proxy", "transport", "hop", "request_uri", "contact"),
    [
        ("sips:127.0.0.1:5090", "udp", PROXY, f"sips:{NUMBER}@127.0.0.1:5090",
         "<sips:callwhisper@127.0.0.1:5061>"),
        ("sip:127.0.0.1", "tls", ("127.0.0.1", 5061), f"sip:{NUMBER}@127.0.0.1:5061",
         "<sip:callwhisper@127.0.0.1:5061;transport=tls>"),
        ("sip:127.0.0.1:5090;transport=tls", "udp", PROXY, f"sip:{NUMBER}@127.0.0.1:5090",
         "<sip:callwhisper@127.0.0.1:5061;transport=tls>"),
    ],
)  # fmt: skip
async def test_a_number_through_a_tls_trunk(
    make_harness: MakeHarness,
    proxy: str,
    transport: str,
    hop: Address,
    request_uri: str,
    contact: str,
) -> None:
    """A sips: proxy gives the number a sips: Request-URI; a proxy without a port is at 5061."""
    trunk = {"id": "carrier", "proxy": proxy, "transport": transport}
    harness = tls_harness(make_harness, document(THROUGH_CARRIER, trunk))
    request = await harness.dial(hop)
    assert harness.tcp.tls == {hop: "127.0.0.1"}
    assert (request.uri, request.top_via.transport) == (request_uri, "TLS")
    assert request.headers.get("Contact") == contact


async def test_a_challenge_over_tls_is_answered_over_tls(make_harness: MakeHarness) -> None:
    trunk = {"id": "carrier", "proxy": "sips:127.0.0.1:5090", "username": "u", "password": "p"}
    harness = tls_harness(make_harness, document(THROUGH_CARRIER, trunk))
    first = await harness.dial(PROXY)
    harness.receive_stream(challenge(first, 407, 'Digest realm="carrier", nonce="n-1"'), PROXY)
    await harness.settle()
    sent = harness.sent_to(PROXY)
    assert requests(sent) == ["ACK", "INVITE"]
    second = sent[1]
    assert isinstance(second, SipRequest)
    assert second.top_via.transport == "TLS"
    assert second.headers.get("Proxy-Authorization") is not None
    assert harness.tcp.opened == [PROXY]


async def test_a_sips_target_through_a_trunk_that_is_not_tls_is_unroutable(
    make_harness: MakeHarness,
) -> None:
    """RFC 5630 3.1.3: a SIPS request goes over TLS on every hop."""
    trunk = {"id": "edge", "proxy": "sip:127.0.0.1:5090"}
    configuration = document({"destination": "sips:agent@127.0.0.1:5080", "trunk": "edge"}, trunk)
    harness = tls_harness(make_harness, configuration)
    harness.receive(invite(), CALLER)
    await harness.settle()
    assert harness.sent_to(PROXY) == []
    assert harness.leg_end("B1")["status"] == "unroutable"


async def test_a_tls_connection_that_fails_fails_the_leg_and_the_next_buyer_is_dialed(
    make_harness: MakeHarness,
) -> None:
    """A refused connection, a failed handshake or an unverified certificate alike."""
    configuration = two_buyers("sips:buyer@127.0.0.1:5085")
    harness = tls_harness(make_harness, configuration, FakeTcp(refuse=True, tls_port=TLS_PORT))
    request = await harness.dial(BUYER)
    assert request.uri == BUYER_URI
    assert harness.tcp.tls == {("127.0.0.1", 5085): "127.0.0.1"}
    leg_end = harness.leg_end("B1")
    assert (leg_end["reason"], leg_end["status"]) == ("failed", "transport error")
