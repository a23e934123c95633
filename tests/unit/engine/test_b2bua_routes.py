"""In-dialog requests follow the dialog's route set (RFC 3261 8.1.2, 12.2.1.1, 16.12).

The B2BUA runs on the real transaction layer with the fakes of
``b2bua_harness``: each test reads where the ACK, BYE and CANCEL were sent, and
with which Request-URI and Route headers. Host names are resolved from a
table instead of the system's resolver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
    NUMBER,
    PROXY,
    Harness,
    MakeHarness,
    buyer_bye,
    caller_bye,
    caller_cancel,
    challenge,
    document,
    invite,
    response_to,
)

NEAR: Address = ("127.0.0.1", 5099)
"""The buyer's proxy nearest to us: the last Record-Route of the buyer's 2xx."""
CALLER_PROXY: Address = ("127.0.0.1", 5072)
"""The caller's carrier proxy, which record-routed the INVITE that came from CALLER."""
CALLER_CONTACT = "sip:caller@127.0.0.1:5071"
CARRIER = {"id": "carrier", "proxy": "sip:127.0.0.1:5090"}
"""A trunk whose proxy is at PROXY."""

Sent = list[tuple[Address, SipMessage]]
Make = Callable[..., Harness]


@dataclass
class Names:
    """The host names that resolve, and the names looked up, in order (addresses are not)."""

    table: dict[str, str] = field(default_factory=dict)
    looked_up: list[str] = field(default_factory=list)

    async def resolve(self, host: str, port: int) -> Address:
        if is_ip_literal(host):
            return host, port
        self.looked_up.append(host)
        if host not in self.table:
            raise OSError(f"{host} does not resolve")
        return self.table[host], port


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> Names:
    found = Names()
    monkeypatch.setattr(runner, "_resolve", found.resolve)
    return found


@pytest.fixture
def make(make_harness: MakeHarness, names: Names) -> Make:
    """``make(target, trunk=None)``: a harness for one buyer target; calls end at teardown."""

    def build(target: dict[str, Any], trunk: dict[str, Any] | None = None) -> Harness:
        return make_harness(document(target, trunk))

    return build


def with_record_route(message: str, *routes: str) -> str:
    """``message`` with one Record-Route line per value, top first, before its From."""
    lines = "".join(f"Record-Route: {route}\n" for route in routes)
    return message.replace("\nFrom:", f"\n{lines}From:", 1)


def take(harness: Harness, kind: str) -> Sent:
    """What was sent of this method or status since the last look (the rest is dropped)."""
    out: Sent = []
    for message, destination in harness.endpoint.take():
        name = message.method if isinstance(message, SipRequest) else str(message.status)
        if name == kind:
            out.append((destination, message))
    return out


def only_request(sent: Sent) -> tuple[Address, SipRequest]:
    assert len(sent) == 1, sent
    destination, message = sent[0]
    assert isinstance(message, SipRequest)
    return destination, message


def kinds(sent: Sent) -> list[tuple[Address, str]]:
    """(destination, method or status) of each message."""
    return [(d, m.method if isinstance(m, SipRequest) else str(m.status)) for d, m in sent]


def pick(sent: Sent, kind: str) -> tuple[Address, SipMessage]:
    """The one message of this method or status among ``sent``."""
    found = [(d, m) for (d, m), (_, name) in zip(sent, kinds(sent), strict=True) if name == kind]
    assert len(found) == 1, kinds(sent)
    return found[0]


async def call(harness: Harness, caller_invite: str = "") -> tuple[Address, SipRequest]:
    """A call arrives: the INVITE the B2BUA sent to the buyer, and where it went."""
    harness.receive(caller_invite or invite(), CALLER)
    await harness.settle()
    return only_request(take(harness, "INVITE"))


async def answer(
    harness: Harness, request: SipRequest, *routes: str, source: Address = BUYER
) -> tuple[Address, SipRequest]:
    """The buyer answers through proxies recording ``routes``: our ACK and where it went."""
    text = with_record_route(response_to(request, 200, "OK", BUYER_SDP), *routes)
    harness.receive(text, source)
    await harness.settle()
    return only_request(take(harness, "ACK"))


async def accept(harness: Harness) -> SipResponse:
    """The buyer presses 1: the 200 the caller gets."""
    harness.media.legs["B1"].on_event(DigitEvent("B1", "1", 0.0))
    await harness.settle()
    sent = take(harness, "200")
    assert len(sent) == 1, sent
    destination, response = sent[0]
    assert destination == CALLER
    assert isinstance(response, SipResponse)
    return response


async def caller_hangs_up(harness: Harness, answered: SipResponse) -> tuple[Address, SipRequest]:
    """The caller's BYE: the BYE we send the buyer, and where it went."""
    harness.receive(caller_bye(answered.to.tag), CALLER)
    await harness.settle()
    return only_request(take(harness, "BYE"))


# -- the buyer's side: our UAC leg ------------------------------------------------------------


async def test_the_ack_and_bye_go_to_the_record_route_not_to_the_buyer(make: Make) -> None:
    harness = make({"destination": BUYER_URI})
    to, request = await call(harness)
    assert to == BUYER
    to, ack = await answer(harness, request, "<sip:127.0.0.1:5099;lr>")
    # Loose routing: sent to the route, the Request-URI is the remote target (the Contact).
    assert to == NEAR
    assert ack.uri == BUYER_URI
    assert ack.headers.get_all("Route") == ["<sip:127.0.0.1:5099;lr>"]
    to, bye = await caller_hangs_up(harness, await accept(harness))
    assert to == NEAR
    assert bye.uri == BUYER_URI
    assert bye.headers.get_all("Route") == ["<sip:127.0.0.1:5099;lr>"]
    assert harness.sent_to(BUYER) == []


async def test_the_proxy_nearest_to_us_is_the_last_record_route_of_the_2xx(make: Make) -> None:
    harness = make({"destination": BUYER_URI})
    _, request = await call(harness)
    to, ack = await answer(
        harness, request, "<sip:127.0.0.1:5098;lr>", "<sip:127.0.0.1:5099;lr;ftag=x>"
    )
    assert to == NEAR
    assert ack.headers.get_all("Route") == [
        "<sip:127.0.0.1:5099;lr;ftag=x>",
        "<sip:127.0.0.1:5098;lr>",
    ]


async def test_a_strict_router_is_the_request_uri_and_the_target_the_last_route(
    make: Make,
) -> None:
    harness = make({"destination": BUYER_URI})
    _, request = await call(harness)
    to, ack = await answer(harness, request, "<sip:127.0.0.1:5099>")
    assert to == NEAR
    assert ack.uri == "sip:127.0.0.1:5099"
    assert ack.headers.get_all("Route") == [f"<{BUYER_URI}>"]


async def test_a_route_named_by_host_is_resolved_once_for_the_ack_and_the_bye(
    make: Make, names: Names
) -> None:
    names.table["edge.buyer.test"] = "127.0.0.1"
    harness = make({"destination": BUYER_URI})
    _, request = await call(harness)
    to, _ = await answer(harness, request, "<sip:edge.buyer.test:5099;lr>")
    assert to == NEAR
    to, _ = await caller_hangs_up(harness, await accept(harness))
    assert to == NEAR
    assert names.looked_up == ["edge.buyer.test"]


async def test_a_route_whose_name_does_not_resolve_leaves_the_requests_where_the_invite_went(
    make: Make, names: Names
) -> None:
    harness = make({"destination": BUYER_URI})
    _, request = await call(harness)
    to, ack = await answer(harness, request, "<sip:edge.buyer.invalid;lr>")
    assert to == BUYER
    assert ack.headers.get_all("Route") == ["<sip:edge.buyer.invalid;lr>"]
    assert names.looked_up == ["edge.buyer.invalid"]


async def test_a_retransmitted_2xx_is_acked_through_the_route_again(make: Make) -> None:
    """RFC 3261 13.2.2.4: our ACK was lost; the same ACK goes to the same first route."""
    harness = make({"destination": BUYER_URI})
    _, request = await call(harness)
    _, first = await answer(harness, request, "<sip:127.0.0.1:5099;lr>")
    to, again = await answer(harness, request, "<sip:127.0.0.1:5099;lr>")
    assert (to, bytes(again)) == (NEAR, bytes(first))


# -- trunks: the outbound proxy (RFC 3261 8.1.2) ---------------------------------------------


async def test_a_trunk_by_default_is_the_destination_only_without_a_route_header(
    make: Make,
) -> None:
    harness = make({"destination": NUMBER, "trunk": "carrier"}, CARRIER)
    to, request = await call(harness)
    assert to == PROXY
    assert request.headers.get_all("Route") == []
    to, ack = await answer(harness, request, source=PROXY)
    assert to == PROXY
    assert ack.headers.get_all("Route") == []


async def test_a_trunk_with_route_header_preloads_the_proxy_on_every_request(
    make: Make,
) -> None:
    """The proxy records no route: it stays the first route of the ACK and the BYE."""
    harness = make({"destination": NUMBER, "trunk": "carrier"}, {**CARRIER, "route_header": True})
    to, request = await call(harness)
    assert to == PROXY
    assert request.uri == f"sip:{NUMBER}@127.0.0.1:5090"
    assert request.headers.get_all("Route") == ["<sip:127.0.0.1:5090;lr>"]
    to, ack = await answer(harness, request, source=PROXY)
    assert to == PROXY
    assert ack.uri == BUYER_URI
    assert ack.headers.get_all("Route") == ["<sip:127.0.0.1:5090;lr>"]
    to, bye = await caller_hangs_up(harness, await accept(harness))
    assert to == PROXY
    assert bye.headers.get_all("Route") == ["<sip:127.0.0.1:5090;lr>"]


async def test_a_trunk_whose_edge_record_routes_another_address_is_followed_there(
    make: Make,
) -> None:
    """The learned route set replaces the pre-loaded route (RFC 3261 12.1.2)."""
    harness = make({"destination": NUMBER, "trunk": "carrier"}, {**CARRIER, "route_header": True})
    _, request = await call(harness)
    to, ack = await answer(harness, request, "<sip:127.0.0.1:5099;lr>", source=PROXY)
    assert to == NEAR
    assert ack.headers.get_all("Route") == ["<sip:127.0.0.1:5099;lr>"]


async def test_cancel_and_the_ack_of_a_challenge_go_where_the_invite_went_with_its_route(
    make: Make,
) -> None:
    """RFC 3261 9.1 and 17.1.1.3: both copy the INVITE's Route and follow it to the proxy."""
    trunk = {**CARRIER, "route_header": True, "username": "acct", "password": "pw"}
    harness = make({"destination": NUMBER, "trunk": "carrier"}, trunk)
    _, first = await call(harness)
    harness.receive(challenge(first, 407, 'Digest realm="carrier", nonce="n-1"'), PROXY)
    await harness.settle()
    sent = [(d, m) for m, d in harness.endpoint.take()]
    assert kinds(sent) == [(PROXY, "ACK"), (PROXY, "INVITE")]
    ack, second = (m for _, m in sent)
    assert isinstance(ack, SipRequest)
    assert isinstance(second, SipRequest)
    assert ack.headers.get_all("Route") == ["<sip:127.0.0.1:5090;lr>"]
    assert second.headers.get_all("Route") == ["<sip:127.0.0.1:5090;lr>"]
    harness.receive(response_to(second, 180, "Ringing"), PROXY)
    harness.receive(caller_cancel(), CALLER)
    await harness.settle()
    to, cancel = only_request(take(harness, "CANCEL"))
    assert to == PROXY
    assert cancel.uri == second.uri
    assert cancel.headers.get_all("Route") == ["<sip:127.0.0.1:5090;lr>"]


# -- the caller's side: our UAS leg ------------------------------------------------------------


async def test_our_answers_echo_the_callers_record_route_and_our_bye_follows_it(
    make: Make,
) -> None:
    harness = make({"destination": BUYER_URI})
    route = "<sip:127.0.0.1:5072;lr;ftag=caller>"
    harness.receive(with_record_route(invite(), route), CALLER)
    await harness.settle()
    sent = [(d, m) for m, d in harness.endpoint.take()]
    to, early = pick(sent, "183")
    assert (to, early.headers.get_all("Record-Route")) == (CALLER, [route])
    _, request = pick(sent, "INVITE")
    assert isinstance(request, SipRequest)
    await answer(harness, request)
    answered = await accept(harness)
    # RFC 3261 12.1.1: the dialog-creating 2xx copies the request's Record-Route.
    assert answered.headers.get_all("Record-Route") == [route]
    harness.receive(buyer_bye(request), BUYER)
    await harness.settle()
    to, bye = only_request(take(harness, "BYE"))
    assert to == CALLER_PROXY
    assert bye.uri == CALLER_CONTACT
    assert bye.headers.get_all("Route") == [route]


async def test_a_caller_over_tcp_routed_through_another_proxy_is_hung_up_over_tcp(
    make: Make,
) -> None:
    harness = make({"destination": BUYER_URI})
    route = "<sip:127.0.0.1:5072;transport=tcp;lr>"
    text = with_record_route(invite().replace("SIP/2.0/UDP", "SIP/2.0/TCP"), route)
    harness.receive_stream(text, CALLER)
    await harness.settle()
    _, request = only_request(take(harness, "INVITE"))
    await answer(harness, request)
    await accept(harness)
    harness.receive(buyer_bye(request), BUYER)
    await harness.settle()
    to, bye = only_request(take(harness, "BYE"))
    assert (to, bye.top_via.transport) == (CALLER_PROXY, "TCP")
    assert CALLER_PROXY in harness.tcp.tcp


async def test_an_invite_whose_record_route_is_not_a_sip_uri_is_refused_with_400(
    make: Make,
) -> None:
    harness = make({"destination": BUYER_URI})
    harness.receive(with_record_route(invite(), "<tel:+14155550123>"), CALLER)
    await harness.settle()
    refused = take(harness, "400")
    assert [d for d, _ in refused] == [CALLER]
    assert harness.media.legs == {}
    assert not harness.b2bua.tasks
