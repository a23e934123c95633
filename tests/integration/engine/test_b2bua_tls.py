"""Calls over SIP TLS end to end (RFC 3261 26.2, SIPS: RFC 5630), with real TLS peers.

Each test starts a :class:`CallwhisperServer` with a TLS listener and our
own user agents (``engine/agent.py``) as the caller and the buyers, over
TLS with certificates made by ``openssl`` for the test (Debian's SIPp is
built without TLS). Every certificate is its own CA: the server and the
phones trust the test's certificate, and the one a test makes for another
name is trusted by nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from callwhisper.engine.agent import AnswerScript, PhoneCall, UserAgent
from callwhisper.engine.server import CallwhisperServer
from callwhisper.engine.transport import TransportConfig
from callwhisper.media.tones import ToneSpec
from tests.integration.engine.calls import NUMBER, configuration, finished_call, kinds, leg_ends
from tests.integration.engine.conftest import StartServer
from tests.integration.peers.net import LOOPBACK
from tests.integration.peers.tls import Certificate, make_certificate

pytestmark = pytest.mark.integration

CALLER_NUMBER = "+14155550123"
VOICE = ToneSpec((440.0,), (1000, 0), level_dbm0=-20.0)
"""What the caller and the buyers say: a steady tone, heard as sound across the bridge."""
CALL_DEADLINE = 25.0

Phones = Callable[..., Awaitable[UserAgent]]


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    """The test's certificate, for localhost and 127.0.0.1: the server's and the phones'."""
    return make_certificate(tmp_path / "tls")


def tls_files(certificate: Certificate) -> dict[str, Path]:
    """A phone's TLS settings: ``certificate`` shown, and trusted in the peers it connects to."""
    return {
        "certificate": certificate.certificate,
        "key": certificate.key,
        "ca_file": certificate.certificate,
    }


@pytest.fixture
def sip_transport(certificate: Certificate) -> TransportConfig:
    """The servers of ``start_server`` listen for TLS with the test's certificate, trusting it."""
    return TransportConfig(
        host=LOOPBACK,
        port=0,
        tls_port=0,
        tls_certificate=certificate.certificate,
        tls_key=certificate.key,
        tls_ca_file=certificate.certificate,
    )


@pytest.fixture
async def phones() -> AsyncIterator[Phones]:
    """``await phones(name, **options)``: a started :class:`UserAgent`, stopped at teardown."""
    started: list[UserAgent] = []

    async def start(name: str, **options: Any) -> UserAgent:
        agent = UserAgent(name, host=LOOPBACK, voice=VOICE, **options)
        await agent.start()
        started.append(agent)
        return agent

    yield start
    for agent in reversed(started):
        await agent.stop()


def pressing() -> AnswerScript:
    """A buyer that answers and presses 1 once it has heard some of the whisper."""
    return AnswerScript(press="1", press_after_sound=0.3)


def tls_uri(server: CallwhisperServer) -> str:
    """The tracking number at the server's TLS listener."""
    assert server.endpoint is not None
    host, port = server.endpoint.tls_address
    return f"sips:{NUMBER}@{host}:{port}"


def udp_uri(server: CallwhisperServer) -> str:
    host, port = server.sip_address
    return f"sip:{NUMBER}@{host}:{port}"


async def ended(call: PhoneCall) -> None:
    async with asyncio.timeout(CALL_DEADLINE):
        await call.ended.wait()


async def test_a_caller_over_tls_is_bridged_to_a_buyer_over_udp(
    start_server: StartServer, phones: Phones, certificate: Certificate
) -> None:
    """The caller's INVITE, ACK and BYE go over TLS to a sips: Contact; the buyer is on UDP."""
    buyer = await phones("acme", script=pressing())
    caller = await phones("caller", **tls_files(certificate))
    server = await start_server(configuration([("acme", buyer.uri())]))
    assert server.endpoint is not None

    call = caller.dial(tls_uri(server), caller=CALLER_NUMBER)
    async with asyncio.timeout(CALL_DEADLINE):
        await caller.hang_up_after(call, 1.0)

    assert (call.status, call.ended_by, call.end_reason) == (200, "us", "hung up by us")
    assert call.sound_after_answer > 0.5  # the buyer's voice, across the bridge
    assert call.dialog is not None
    tls_port = server.endpoint.tls_address[1]
    # RFC 3261 12.1.1: a SIPS Request-URI makes our Contact a SIPS URI, at the TLS listener.
    assert call.dialog.remote_target == f"sips:callwhisper@127.0.0.1:{tls_port}"
    [buyer_call] = buyer.calls
    assert buyer_call.invite.top_via.transport == "UDP"
    assert buyer_call.ended_by == "peer"
    record = await finished_call(server)
    assert record.outcome == "connected"
    assert ("bridge", "B1") in kinds(record)
    assert leg_ends(record)["A"]["by"] == "caller"


async def test_a_caller_over_udp_is_bridged_to_a_sips_buyer_that_hangs_up_over_tls(
    start_server: StartServer, phones: Phones, certificate: Certificate
) -> None:
    """Our INVITE goes over TLS, the buyer's certificate checked; its BYE comes to our listener."""
    buyer = await phones("acme", script=pressing(), **tls_files(certificate))
    caller = await phones("caller")
    server = await start_server(configuration([("acme", buyer.uri(tls=True))]))
    assert server.endpoint is not None

    call = caller.dial(udp_uri(server), caller=CALLER_NUMBER)
    async with asyncio.timeout(CALL_DEADLINE):
        await call.answered.wait()  # the buyer pressed 1: bridged
        await asyncio.sleep(1.0)
    [buyer_call] = buyer.calls
    buyer.hang_up(buyer_call)
    await ended(call)
    await ended(buyer_call)

    invite = buyer_call.invite
    tls_port = server.endpoint.tls_address[1]
    assert invite.uri == buyer.uri(tls=True)
    assert (invite.top_via.transport, invite.top_via.port) == ("TLS", tls_port)
    assert invite.headers.get("Contact") == f"<sips:callwhisper@127.0.0.1:{tls_port}>"
    # The buyer opened a TLS connection to that Contact, checked our certificate, got its 200.
    assert (buyer_call.ended_by, buyer_call.end_reason) == ("us", "hung up by us")
    assert buyer_call.sound_after_answer > 0.5  # the caller's voice, across the bridge
    assert (call.status, call.ended_by) == (200, "peer")
    record = await finished_call(server)
    assert record.outcome == "connected"
    assert leg_ends(record)["B1"]["by"] == "buyer"


async def test_a_buyer_whose_certificate_does_not_verify_is_skipped_for_the_next(
    start_server: StartServer, phones: Phones, certificate: Certificate, tmp_path: Path
) -> None:
    """RFC 3261 26.3.1: no INVITE reaches a peer we cannot authenticate; the hunt goes on."""
    untrusted = make_certificate(tmp_path / "untrusted")  # the same names, signed by nobody
    impostor = await phones("impostor", script=pressing(), **tls_files(untrusted))
    backup = await phones("backup", script=pressing(), **tls_files(certificate))
    caller = await phones("caller")
    document = configuration(
        [("impostor", impostor.uri(tls=True)), ("backup", backup.uri(tls=True))]
    )
    server = await start_server(document)
    assert server.endpoint is not None

    call = caller.dial(udp_uri(server), caller=CALLER_NUMBER)
    async with asyncio.timeout(CALL_DEADLINE):
        await caller.hang_up_after(call, 0.5)

    assert call.status == 200
    assert impostor.calls == []
    [backup_call] = backup.calls
    assert backup_call.invite.top_via.transport == "TLS"
    record = await finished_call(server)
    ends = leg_ends(record)
    assert (ends["B1"]["reason"], ends["B1"]["status"]) == ("failed", "transport error")
    assert ("bridge", "B2") in kinds(record)
    assert server.endpoint.counters.tcp_connect_failed == 1


async def test_a_caller_hanging_up_while_a_tls_buyer_rings_cancels_it_over_tls(
    start_server: StartServer, phones: Phones, certificate: Certificate
) -> None:
    buyer = await phones("acme", script=AnswerScript(ring_seconds=30.0), **tls_files(certificate))
    caller = await phones("caller")
    server = await start_server(configuration([("acme", buyer.uri(tls=True))]))

    call = caller.dial(udp_uri(server), caller=CALLER_NUMBER)
    async with asyncio.timeout(CALL_DEADLINE):
        while not buyer.calls:  # noqa: ASYNC110 - the phone has no event for a new call
            await asyncio.sleep(0.05)
    caller.hang_up(call)
    [buyer_call] = buyer.calls
    await ended(buyer_call)
    await ended(call)

    assert (buyer_call.status, buyer_call.end_reason) == (487, "cancelled by the caller")
    record = await finished_call(server)
    assert leg_ends(record)["B1"]["reason"] == "canceled"
