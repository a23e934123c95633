"""The fallback "forward" on the B2BUA: the overflow line is dialed, then bridged to the caller.

Same fakes as ``test_b2bua.py``: the real transaction layer, fake media,
store and speech, and a wall clock the test moves. The campaign's only buyer
is busy, so the fallback hands the caller to the overflow line, which the
engine dials itself and reports to the call flow as a leg of the call: the
stored timeline follows the call to its end, with each leg's cost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from callwhisper.domain import Configuration
from callwhisper.engine.runner import TimerInput
from callwhisper.flow import CallRecord
from callwhisper.sip.message import SipMessage, SipRequest
from callwhisper.sip.transaction import Address
from tests.unit.engine.b2bua_harness import (
    BUYER,
    BUYER_SDP,
    BUYER_URI,
    CALLER,
    NOW,
    Harness,
    buyer_bye,
    caller_bye,
    caller_cancel,
    document,
    requests,
    response_to,
    statuses,
)

OVERFLOW_URI = "sip:overflow@127.0.0.1:5090"
OVERFLOW: Address = ("127.0.0.1", 5090)
OVERFLOW_NUMBER = "+18885550101"
TRUNKS = {"carrier": "sip:127.0.0.1:5091", "backup": "sip:127.0.0.1:5090"}
"""Two trunks; ``backup``'s proxy is where the overflow line's INVITE is looked for."""
TELEPHONY = {"inbound_per_minute": "0.60", "outbound_per_minute": "1.20", "increment_seconds": 6}
"""1 cent a second in, 2 cents out, billed in 6 s increments."""


def forwarding(
    sip_code: int = 486,
    forward_to: str = OVERFLOW_URI,
    trunks: tuple[str, ...] = (),
    fallback: dict[str, Any] | None = None,
) -> Configuration:
    """The harness's campaign, forwarding to the overflow line when nobody accepts."""
    configuration = document()
    configuration["telephony"] = TELEPHONY
    configuration["trunks"] = [{"id": name, "proxy": TRUNKS[name]} for name in trunks]
    configuration["campaigns"][0]["fallback"] = {
        "action": "forward",
        "forward_to": forward_to,
        "sip_code": sip_code,
        "ring_timeout_seconds": 45,
        **(fallback or {}),
    }
    return Configuration.model_validate(configuration)


class ForwardHarness(Harness):
    """The B2BUA on a forwarding campaign, and the stored call in the test's terms."""

    def record(self) -> CallRecord:
        """The record the call ended with."""
        [record] = self.backend.records
        return record

    def timeline(self, leg: str | None = None) -> list[tuple[float, str, str | None]]:
        """The stored timeline as (seconds since arrival, kind, leg), of ``leg`` if given."""
        return [
            (round(entry.at - NOW, 3), entry.kind, entry.leg)
            for entry in self.backend.entries
            if leg is None or entry.leg == leg
        ]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[ForwardHarness]:
    async with ForwardHarness(tmp_path, forwarding()) as harness:
        yield harness


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


async def overflow_invite(harness: ForwardHarness) -> SipRequest:
    """The call arrives at 0 s, the only buyer is busy at 1 s: the INVITE to the overflow."""
    harness.at(0)
    buyer_invite = await harness.dial()
    harness.at(1)
    harness.receive(response_to(buyer_invite, 486, "Busy Here"), BUYER)
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert requests(to_overflow) == ["INVITE"]
    # The caller is not answered nor turned away while the overflow rings.
    assert statuses(to_caller) == []
    invite_sent = to_overflow[0]
    assert isinstance(invite_sent, SipRequest)
    return invite_sent


async def bridged(harness: ForwardHarness) -> SipRequest:
    """The overflow rings at 2 s and answers at 10 s: bridged to the caller, who gets a 200."""
    overflow_invite_sent = await overflow_invite(harness)
    harness.at(2)
    harness.receive(overflow_says(overflow_invite_sent, 180, "Ringing"), OVERFLOW)
    harness.at(10)
    harness.receive(overflow_says(overflow_invite_sent, 200, "OK", BUYER_SDP), OVERFLOW)
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert requests(to_overflow) == ["ACK"]
    assert statuses(to_caller) == [200]
    return overflow_invite_sent


async def test_the_overflow_is_dialed_for_the_caller_who_keeps_hearing_ringback(
    harness: ForwardHarness,
) -> None:
    invite_sent = await overflow_invite(harness)
    assert invite_sent.uri == OVERFLOW_URI
    assert invite_sent.from_.uri.startswith("sip:+14155550123@")  # the caller's own number
    # call-flow 2: the ringback started for the buyer plays on, without a gap.
    caller = harness.media.legs["A"]
    assert caller.played == ["ringback"]
    assert caller.playing == 1
    assert harness.timeline()[-2:] == [(1, "fallback", None), (1, "dial", "overflow")]
    dial = harness.backend.entries[-1]
    assert dict(dial.data) == {"destination": OVERFLOW_URI}
    assert harness.b2bua.tasks  # the call goes on, and is not ended in the record
    assert harness.backend.ended == []


async def test_the_overflow_answering_is_bridged_at_once_and_its_hang_up_recorded(
    harness: ForwardHarness,
) -> None:
    invite_sent = await bridged(harness)
    overflow = harness.media.legs["overflow"]
    assert overflow.played == []  # no whisper, no accept gate
    assert harness.media.bridges == [(harness.media.legs["A"].ident, overflow.ident)]

    harness.at(135.5)
    harness.receive(buyer_bye(invite_sent, via="127.0.0.1:5090"), OVERFLOW)
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert statuses(to_overflow) == [200]
    assert requests(to_caller) == ["BYE"]
    assert harness.media.legs["A"].closed
    assert overflow.closed
    assert not harness.b2bua.tasks

    # The stored timeline follows the forwarded call to its end (call-flow 16).
    assert harness.timeline("overflow") == [
        (1, "dial", "overflow"),
        (2, "ringing", "overflow"),
        (10, "answer", "overflow"),
        (10, "bridge", "overflow"),
        (135.5, "leg_end", "overflow"),
    ]
    assert (10, "caller_answered", "A") in harness.timeline("A")
    assert harness.timeline()[-1] == (135.5, "ended", None)
    # 125.5 s answered on each side, billed as 126 s (call-flow 18).
    assert harness.leg_end("overflow") == {"reason": "hangup", "by": "overflow", "cost": "2.5200"}
    assert harness.leg_end("A") == {"reason": "hangup", "by": "system", "cost": "1.2600"}
    record = harness.record()
    assert record.legs["A"].answered_at == NOW + 10
    assert record.ended_at is not None
    assert record.ended_at - NOW == 135.5
    assert (record.revenue, record.payout, record.cost) == (
        Decimal(0),
        Decimal(0),
        Decimal("3.78"),
    )
    assert harness.backend.ended == ["no_buyer"]


async def test_the_caller_hanging_up_a_forwarded_call_hangs_up_the_overflow(
    harness: ForwardHarness,
) -> None:
    await bridged(harness)
    runner = next(iter(harness.b2bua.runners))
    harness.at(70)
    harness.receive(caller_bye(runner.caller.to_tag), CALLER)
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert statuses(to_caller) == [200]
    assert requests(to_overflow) == ["BYE"]
    assert harness.leg_end("A") == {"reason": "hangup", "by": "caller", "cost": "0.6000"}
    assert harness.leg_end("overflow") == {"reason": "hangup", "by": "system", "cost": "1.2000"}
    assert harness.record().cost == Decimal("1.80")
    assert harness.backend.ended == ["no_buyer"]


async def test_an_overflow_that_is_busy_too_gets_the_caller_the_fallback_code(
    harness: ForwardHarness,
) -> None:
    invite_sent = await overflow_invite(harness)
    harness.at(3)
    harness.receive(overflow_says(invite_sent, 486, "Busy Here"), OVERFLOW)
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert requests(to_overflow) == ["ACK"]
    assert statuses(to_caller) == [486]
    assert harness.media.legs["A"].closed
    assert harness.leg_end("overflow") == {"reason": "busy", "status": "486", "cost": "0.0000"}
    assert harness.leg_end("A") == {"reason": "rejected", "by": "system", "cost": "0.0000"}
    assert harness.record().legs["A"].answered_at is None
    assert harness.backend.ended == ["no_buyer"]
    assert not harness.b2bua.tasks


async def test_an_overflow_ringing_past_its_timeout_is_canceled_and_the_caller_let_go(
    harness: ForwardHarness,
) -> None:
    invite_sent = await overflow_invite(harness)
    harness.receive(overflow_says(invite_sent, 180, "Ringing"), OVERFLOW)
    runner = next(iter(harness.b2bua.runners))
    harness.at(46)  # dialed at 1 s, rings 45 s
    runner.feed(TimerInput())
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert requests(to_overflow) == ["CANCEL"]
    assert statuses(to_caller) == [486]
    assert harness.leg_end("overflow") == {"reason": "no_answer", "by": "system", "cost": "0.0000"}
    assert harness.timeline()[-1] == (46, "ended", None)


async def test_the_caller_cancelling_while_the_overflow_rings_cancels_it(
    harness: ForwardHarness,
) -> None:
    invite_sent = await overflow_invite(harness)
    harness.receive(overflow_says(invite_sent, 180, "Ringing"), OVERFLOW)
    harness.at(8)
    harness.receive(caller_cancel(), CALLER)
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert statuses(to_caller) == [200, 487]
    assert requests(to_overflow) == ["CANCEL"]
    assert harness.media.legs["overflow"].closed
    assert harness.leg_end("overflow") == {"reason": "canceled", "by": "system", "cost": "0.0000"}
    assert harness.leg_end("A") == {"reason": "hangup", "by": "caller", "cost": "0.0000"}
    assert harness.backend.ended == ["no_buyer"]


@pytest.mark.parametrize(
    ("trunks", "fallback"),
    [
        (("carrier", "backup"), {"trunk": "backup"}),  # the trunk the fallback names
        (("backup",), {}),  # unnamed: the configuration's only trunk
    ],
)
async def test_a_number_overflow_is_dialed_through_its_trunk(
    tmp_path: Path, trunks: tuple[str, ...], fallback: dict[str, str]
) -> None:
    configuration = forwarding(forward_to=OVERFLOW_NUMBER, trunks=trunks, fallback=fallback)
    async with ForwardHarness(tmp_path, configuration) as harness:
        invite_sent = await overflow_invite(harness)
        # The trunk is the outbound proxy; the Request-URI names the number at it.
        assert invite_sent.uri == f"sip:{OVERFLOW_NUMBER}@127.0.0.1:5090"
        assert harness.sent_to(("127.0.0.1", 5091)) == []
