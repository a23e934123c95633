"""The fallback "forward" on the B2BUA: the overflow line is dialed, then bridged to the caller.

Same fakes as ``test_b2bua.py``: the real transaction layer, fake media,
store and speech. The campaign's only buyer is busy, so the fallback hands
the caller to the overflow line, which the engine dials itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callwhisper.domain import Configuration
from callwhisper.sip.message import SipMessage, SipRequest
from callwhisper.sip.transaction import Address
from tests.unit.engine.test_b2bua import (
    BUYER,
    BUYER_SDP,
    BUYER_URI,
    CALLER,
    Harness,
    configuration,
    dial_buyer,
    response_to,
    statuses,
)

OVERFLOW_URI = "sip:overflow@127.0.0.1:5090"
OVERFLOW: Address = ("127.0.0.1", 5090)


OVERFLOW_NUMBER = "+18885550101"
TRUNKS = {"carrier": "sip:127.0.0.1:5091", "backup": "sip:127.0.0.1:5090"}
"""Two trunks; ``backup``'s proxy is where the overflow line's INVITE is looked for."""


def forwarding(
    sip_code: int = 480,
    forward_to: str = OVERFLOW_URI,
    trunks: tuple[str, ...] = (),
    fallback: dict[str, Any] | None = None,
) -> Configuration:
    """The harness's campaign, forwarding to the overflow line when nobody accepts."""
    document = configuration().model_dump(mode="json")
    document["trunks"] = [{"id": name, "proxy": TRUNKS[name]} for name in trunks]
    document["campaigns"][0]["fallback"] = {
        "action": "forward",
        "forward_to": forward_to,
        "sip_code": sip_code,
        **(fallback or {}),
    }
    return Configuration.model_validate(document)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    harness.b2bua.configuration = harness.backend.configuration = forwarding(sip_code=486)
    yield harness
    for task in harness.b2bua.tasks:
        task.cancel()


def requests(messages: list[SipMessage]) -> list[str]:
    return [message.method for message in messages if isinstance(message, SipRequest)]


def overflow_says(invite: SipRequest, status: int, reason: str, body: str = "") -> str:
    """The overflow line's response to ``invite`` (its Contact is its own address)."""
    return response_to(invite, status, reason, body).replace(BUYER_URI, OVERFLOW_URI)


def sent(harness: Harness) -> tuple[list[SipMessage], list[SipMessage]]:
    """What was sent to the caller and to the overflow line since the last look."""
    messages = harness.endpoint.take()
    return (
        [message for message, destination in messages if destination == CALLER],
        [message for message, destination in messages if destination == OVERFLOW],
    )


async def overflow_invite(harness: Harness) -> SipRequest:
    """The only buyer is busy: the INVITE the engine then sends the overflow line."""
    buyer_invite = await dial_buyer(harness)
    harness.receive(response_to(buyer_invite, 486, "Busy Here"), BUYER)
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert requests(to_overflow) == ["INVITE"]
    # The caller is not answered nor turned away while the overflow rings.
    assert statuses(to_caller) == []
    invite = to_overflow[0]
    assert isinstance(invite, SipRequest)
    return invite


async def test_the_overflow_is_dialed_for_the_caller_who_keeps_hearing_ringback(
    harness: Harness,
) -> None:
    invite = await overflow_invite(harness)
    assert invite.uri == OVERFLOW_URI
    assert invite.from_.uri.startswith("sip:+14155550123@")  # the caller's own number
    assert harness.media.legs["A"].played == ["ringback", "ringback"]
    assert harness.media.legs["A"].playing is not None
    fallback = next(e for e in harness.backend.entries if e.kind == "fallback")
    assert fallback.data["action"] == "forward"
    assert harness.b2bua.tasks  # the call goes on after the session's end


async def test_the_overflow_answering_is_bridged_at_once_without_a_whisper(
    harness: Harness,
) -> None:
    invite = await overflow_invite(harness)
    harness.receive(overflow_says(invite, 200, "OK", BUYER_SDP), OVERFLOW)
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert requests(to_overflow) == ["ACK"]
    assert statuses(to_caller) == [200]
    overflow = harness.media.legs["overflow"]
    assert overflow.played == []  # no whisper, no accept gate
    assert harness.media.bridges == [(harness.media.legs["A"].ident, overflow.ident)]

    bye = (
        "BYE sip:callwhisper@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-overflow-bye\n"
        f"From: {invite.headers.get('To')};tag=buyer\n"
        f"To: {invite.headers.get('From')}\n"
        f"Call-ID: {invite.call_id}\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
    harness.receive(bye, OVERFLOW)
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert statuses(to_overflow) == [200]
    assert requests(to_caller) == ["BYE"]
    assert harness.media.legs["A"].closed
    assert overflow.closed
    assert harness.backend.ended == ["no_buyer"]
    kinds = [entry.kind for entry in harness.backend.entries]
    assert kinds[-1] == "ended"  # nothing written after the session's end
    assert not harness.b2bua.tasks


async def test_an_overflow_that_is_busy_too_gets_the_caller_the_fallback_code(
    harness: Harness,
) -> None:
    invite = await overflow_invite(harness)
    harness.receive(overflow_says(invite, 486, "Busy Here"), OVERFLOW)
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert requests(to_overflow) == ["ACK"]
    assert statuses(to_caller) == [486]
    assert harness.media.legs["A"].closed
    assert harness.backend.ended == ["no_buyer"]
    assert not harness.b2bua.tasks


async def test_the_caller_cancelling_while_the_overflow_rings_cancels_it(
    harness: Harness,
) -> None:
    invite = await overflow_invite(harness)
    harness.receive(overflow_says(invite, 180, "Ringing"), OVERFLOW)
    harness.receive(
        "CANCEL sip:sales@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-caller-1\n"
        "From: <sip:+14155550123@127.0.0.1:5071>;tag=caller\n"
        "To: <sip:sales@127.0.0.1:5060>\n"
        "Call-ID: call-1\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n",
        CALLER,
    )
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert statuses(to_caller) == [200, 487]
    assert requests(to_overflow) == ["CANCEL"]
    assert harness.media.legs["overflow"].closed
    assert harness.backend.ended == ["no_buyer"]


@pytest.mark.parametrize(
    ("trunks", "fallback"),
    [
        (("carrier", "backup"), {"trunk": "backup"}),  # the trunk the fallback names
        (("backup",), {}),  # unnamed: the configuration's only trunk
    ],
)
async def test_a_number_overflow_is_dialed_through_its_trunk(
    harness: Harness, trunks: tuple[str, ...], fallback: dict[str, str]
) -> None:
    harness.b2bua.configuration = harness.backend.configuration = forwarding(
        forward_to=OVERFLOW_NUMBER, trunks=trunks, fallback=fallback
    )
    invite = await overflow_invite(harness)
    # The trunk is the outbound proxy; the Request-URI names the number at it.
    assert invite.uri == f"sip:{OVERFLOW_NUMBER}@127.0.0.1:5090"
    assert harness.sent_to(("127.0.0.1", 5091)) == []
