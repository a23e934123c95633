"""Buyer legs through trunks, end to end: TCP, digest challenges and outbound proxies.

Each test starts a :class:`CallwhisperServer` on SQLite in ``tmp_path``, a
SIPp caller and SIPp buyers or trunks (UAS, over UDP or one TCP connection,
``-t t1``), and checks what the peers saw and the calls' stored records.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from callwhisper.engine.server import CallwhisperServer
from tests.integration.engine.calls import (
    NUMBER,
    configuration,
    finished_call,
    finished_calls,
    kinds,
    leg_ends,
)
from tests.integration.engine.conftest import StartServer
from tests.integration.peers.sipp import SippLauncher, SippOptions, SippPeer, SippResult

pytestmark = pytest.mark.integration

TARGET_NUMBER = "+14155550100"
USERNAME = "acct-1234"
PASSWORD = "s3cret"


def caller(sipp: SippLauncher, server: CallwhisperServer, *, calls: int = 1) -> SippPeer:
    """SIPp's basic caller dialing the tracking number, holding a bridged call 1.5 s."""
    options = SippOptions(calls=calls, rate=2, pause_ms=1500, service=NUMBER, timeout=25.0)
    return sipp.uac("caller-basic", server.sip_address, options)


def through_trunk(peer: SippPeer, destination: str, **trunk: Any) -> dict[str, Any]:
    """One buyer whose target is ``destination``, reached through a trunk at ``peer``."""
    document = configuration([("acme", destination)])
    transport = ";transport=tcp" if peer.options.transport == "tcp" else ""
    document["trunks"] = [
        {"id": "carrier", "proxy": f"sip:{peer.address[0]}:{peer.port}{transport}", **trunk}
    ]
    document["buyers"][0]["targets"][0]["trunk"] = "carrier"
    return document


def invites(result: SippResult) -> list[str]:
    """The INVITEs a SIPp UAS received, as logged."""
    return [m.text for m in result.messages if m.direction == "received" and m.kind == "INVITE"]


def via_transport(message: str) -> str:
    found = re.search(r"^Via: SIP/2\.0/(\w+) ", message, re.MULTILINE)
    assert found is not None, message
    return found.group(1)


async def test_a_buyer_over_tcp_takes_two_calls_on_one_connection(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """``;transport=tcp``: INVITE, ACK, key 1, bridge and BYE all over one TCP connection."""
    buyer = sipp.uas(
        "buyer-accepts", SippOptions(calls=2, pause_ms=300, timeout=25.0, transport="tcp")
    )
    assert buyer.uri().endswith(";transport=tcp")
    server = await start_server(configuration([("acme", buyer.uri())]))
    calling = caller(sipp, server, calls=2)

    (await calling.wait_async()).assert_succeeded(calls=2)
    buyer_result = await buyer.wait_async()
    buyer_result.assert_succeeded(calls=2)
    assert [via_transport(text) for text in invites(buyer_result)] == ["TCP", "TCP"]
    received = [m.kind for m in buyer_result.messages if m.direction == "received"]
    assert sorted(received) == ["ACK", "ACK", "BYE", "BYE", "INVITE", "INVITE"]

    calls = await finished_calls(server, 2, wait_seconds=20)
    assert [call.outcome for call in calls] == ["connected", "connected"]
    assert all(("bridge", "B1") in kinds(call) for call in calls)
    assert server.endpoint is not None
    assert server.endpoint.counters.tcp_connects == 1


@pytest.mark.parametrize(
    ("algorithm", "transport"), [("MD5", "udp"), ("SHA-256", "udp"), ("MD5", "tcp")]
)
async def test_a_trunk_that_challenges_the_invite_gets_valid_credentials(
    sipp: SippLauncher, start_server: StartServer, algorithm: str, transport: str
) -> None:
    """401 -> the INVITE again with Authorization, which SIPp verifies; then the call bridges."""
    trunk = sipp.uas(
        "buyer-challenges-invite",
        SippOptions(
            pause_ms=300,
            timeout=20.0,
            transport="tcp" if transport == "tcp" else "udp",
            extra_args=("-set", "algorithm", algorithm),
        ),
    )
    document = through_trunk(trunk, TARGET_NUMBER, username=USERNAME, password=PASSWORD)
    server = await start_server(document)
    calling = caller(sipp, server)

    (await calling.wait_async()).assert_succeeded()
    trunk_result = await trunk.wait_async()
    trunk_result.assert_succeeded()
    first, second = invites(trunk_result)
    assert "Authorization" not in first
    credentials = re.search(r"^Authorization: Digest (.*)$", second, re.MULTILINE)
    assert credentials is not None, second
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', credentials.group(1)))
    assert params["algorithm"] == algorithm
    assert (params["username"], params["qop"], params["nc"]) == (USERNAME, "auth", "00000001")
    assert params["opaque"] == "op-1"
    # SIPp checked the response already; check it here too, for the algorithm named.
    name = {"MD5": "md5", "SHA-256": "sha256"}[algorithm]

    def h(text: str) -> str:
        return hashlib.new(name, text.encode()).hexdigest()

    ha1 = h(f"{USERNAME}:{params['realm']}:{PASSWORD}")
    ha2 = h(f"INVITE:{params['uri']}")
    expected = h(f"{ha1}:{params['nonce']}:00000001:{params['cnonce']}:auth:{ha2}")
    assert params["response"] == expected

    call = await finished_call(server)
    assert call.outcome == "connected"
    assert ("bridge", "B1") in kinds(call)


async def test_wrong_credentials_end_the_leg_and_the_hunt_goes_on(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """The trunk refuses the credentials with 403: the leg is rejected, the next buyer bridges."""
    trunk = sipp.uas(
        "buyer-challenges-invite",
        SippOptions(timeout=20.0, extra_args=("-set", "algorithm", "MD5")),
    )
    backup = sipp.uas("buyer-accepts", SippOptions(pause_ms=300, timeout=20.0))
    document = through_trunk(trunk, TARGET_NUMBER, username=USERNAME, password="wrong")
    document["buyers"].append(
        {
            "id": "backup",
            "conversion": {"revenue": "10.00"},
            "whisper": document["buyers"][0]["whisper"],
            "targets": [{"id": "main", "destination": backup.uri()}],
        }
    )
    document["campaigns"][0]["routing"]["tiers"].append({"buyers": [{"buyer": "backup"}]})
    server = await start_server(document)
    calling = caller(sipp, server)

    (await calling.wait_async()).assert_succeeded()
    (await backup.wait_async()).assert_succeeded()
    trunk_result = await trunk.wait_async()
    assert trunk_result.failed_calls == 1, trunk_result.describe()
    # Challenged once, then refused: the second INVITE did carry (wrong) credentials.
    first, second = invites(trunk_result)
    assert "Authorization" not in first
    assert re.search(rf'^Authorization: Digest .*username="{USERNAME}"', second, re.MULTILINE)
    assert trunk_result.seen("sent") == ["401", "403"]
    assert trunk_result.seen("received") == ["INVITE", "ACK", "INVITE", "ACK"]  # both ACKed

    call = await finished_call(server)
    ends = leg_ends(call)
    assert (ends["B1"]["reason"], ends["B1"]["status"]) == ("rejected", "403")
    assert ("bridge", "B2") in kinds(call)


async def test_a_target_behind_an_outbound_proxy_keeps_its_request_uri(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """The INVITE goes to the trunk's proxy with the target's URI; ACK and BYE follow it."""
    proxy = sipp.uas("buyer-accepts", SippOptions(pause_ms=300, timeout=20.0))
    # A name that does not resolve: only the proxy's address may be used.
    target = "sip:agent@pbx.acme.invalid"
    server = await start_server(through_trunk(proxy, target))
    calling = caller(sipp, server)

    (await calling.wait_async()).assert_succeeded()
    proxy_result = await proxy.wait_async()
    proxy_result.assert_succeeded()
    received = [m for m in proxy_result.messages if m.direction == "received"]
    assert [m.kind for m in received] == ["INVITE", "ACK", "BYE"]
    assert received[0].start_line == f"INVITE {target} SIP/2.0"
    assert received[0].header("To") == f"<{target}>"

    call = await finished_call(server)
    assert call.outcome == "connected"


async def test_a_caller_over_tcp_is_answered_and_hung_up_on_its_connection(
    sipp: SippLauncher, start_server: StartServer
) -> None:
    """A carrier sending calls over TCP: 183, 200 and the BYE's 200 all on its connection."""
    buyer = sipp.uas("buyer-accepts", SippOptions(pause_ms=300, timeout=20.0))
    server = await start_server(configuration([("acme", buyer.uri())]))
    options = SippOptions(pause_ms=1500, service=NUMBER, timeout=20.0, transport="tcp")
    calling = sipp.uac("caller-basic", server.sip_address, options)

    caller_result = await calling.wait_async()
    caller_result.assert_succeeded()
    (await buyer.wait_async()).assert_succeeded()
    answer = next(
        m for m in caller_result.messages if m.direction == "received" and m.kind == "200"
    )
    assert answer.header("Contact") == (
        f"<sip:callwhisper@{server.sip_address[0]}:{server.sip_address[1]};transport=tcp>"
    )
    assert server.endpoint is not None
    assert server.endpoint.counters.tcp_messages_in >= 3  # INVITE, ACK, BYE

    call = await finished_call(server)
    assert call.outcome == "connected"
