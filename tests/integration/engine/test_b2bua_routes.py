"""Record-routed dialogs end to end: the engine's ACK and BYE reach the recorded proxy.

A SIPp peer (buyer or caller) writes a Record-Route naming a second SIPp,
``record-route-proxy-gets-ack-and-bye``, which stands where that proxy
would be. The peer itself fails its call if the ACK or the BYE comes to
it instead, and it is gone by the time the BYE is sent: only the proxy can
take them. The test then reads from the proxy's log that each request kept
the peer's Contact as its Request-URI and named the proxy in its Route
header (loose routing, RFC 3261 12.2.1.1), and from the caller's log that
our 200 OK echoed its Record-Route (12.1.1).
"""

from __future__ import annotations

import pytest

from tests.integration.engine.calls import (
    buyer,
    caller,
    configuration,
    finished_call,
    kinds,
    leg_ends,
)
from tests.integration.engine.conftest import StartServer
from tests.integration.peers.net import LOOPBACK
from tests.integration.peers.sipp import SipMessageSeen, SippLauncher, SippOptions, SippPeer

pytestmark = pytest.mark.integration

PEER_TIMEOUT = 20.0


def proxy(sipp: SippLauncher) -> SippPeer:
    """The stand-in for the proxy the peer's Record-Route names."""
    return sipp.uas("record-route-proxy-gets-ack-and-bye", SippOptions(timeout=PEER_TIMEOUT))


def routed_through(peer: SippPeer) -> tuple[str, ...]:
    """SIPp options that make a scenario record-route through ``peer``."""
    return ("-set", "proxy_port", str(peer.port))


def received(peer_messages: tuple[SipMessageSeen, ...]) -> list[SipMessageSeen]:
    return [message for message in peer_messages if message.direction == "received"]


async def test_the_ack_and_bye_to_a_record_routed_buyer_reach_its_proxy(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """The buyer's 2xx records a proxy: our ACK and BYE go there, not to the buyer's address."""
    edge = proxy(sipp)
    routed = sipp.uas(
        "buyer-behind-record-routing-proxy",
        SippOptions(pause_ms=300, timeout=PEER_TIMEOUT, extra_args=routed_through(edge)),
    )
    server = await start_server(configuration([("acme", routed.uri())]))
    calling = caller(sipp, server, pause_ms=1500)

    (await calling.wait_async()).assert_succeeded()
    buyer_result = await routed.wait_async()
    buyer_result.assert_succeeded()
    edge_result = await edge.wait_async()
    edge_result.assert_succeeded()
    assert buyer_result.seen("received") == ["INVITE"]
    requests = received(edge_result.messages)
    assert [m.kind for m in requests] == ["ACK", "BYE"], edge_result.describe()
    contact = f"sip:buyer@{LOOPBACK}:{routed.port};transport=UDP"
    for request in requests:
        assert request.start_line == f"{request.kind} {contact} SIP/2.0"
        assert request.header("Route") == f"<sip:{LOOPBACK}:{edge.port};lr>"

    call = await finished_call(server)
    assert ("bridge", "B1") in kinds(call)
    assert call.outcome == "connected"


async def test_a_record_routed_caller_gets_the_route_echoed_and_our_bye_through_its_proxy(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """Nobody accepts; the fallback message answers the caller, then our BYE goes to its proxy."""
    edge = proxy(sipp)
    busy = buyer(sipp, "buyer-busy")
    fallback = {"action": "message", "message": "Goodbye."}
    server = await start_server(
        configuration([("busy", busy.uri())], campaign={"fallback": fallback})
    )
    # Still on the call well after the message: a BYE coming here would fail it.
    calling = caller(
        sipp,
        server,
        "caller-record-routed-by-its-proxy",
        pause_ms=4000,
        extra_args=routed_through(edge),
    )

    caller_result = await calling.wait_async()
    caller_result.assert_succeeded()
    (await busy.wait_async()).assert_succeeded()
    edge_result = await edge.wait_async()
    edge_result.assert_succeeded()
    route = f"<sip:{LOOPBACK}:{edge.port};lr>"
    answer = next(m for m in received(caller_result.messages) if m.kind == "200")
    assert answer.header("Record-Route") == route
    assert "BYE" not in caller_result.seen("received")
    requests = received(edge_result.messages)
    assert [m.kind for m in requests] == ["BYE"], edge_result.describe()
    bye = requests[0]
    assert bye.start_line == f"BYE sip:caller@{LOOPBACK}:{calling.port};transport=UDP SIP/2.0"
    assert bye.header("Route") == route

    call = await finished_call(server)
    ends = leg_ends(call)
    assert (ends["A"]["reason"], ends["A"]["by"]) == ("hangup", "system")
    assert call.answered_at is not None
    assert call.outcome == "no_buyer"
