"""The scenarios against each other, SIPp to SIPp, as a B2BUA will face them."""

from __future__ import annotations

import pytest

from tests.integration.peers.sipp import SippLauncher, SippOptions

pytestmark = pytest.mark.integration


def test_caller_basic_is_answered_by_buyer_accepts(sipp: SippLauncher) -> None:
    buyer = sipp.uas("buyer-accepts", SippOptions(pause_ms=200))
    caller = sipp.uac("caller-basic", buyer.address, SippOptions(pause_ms=800))
    caller_result, buyer_result = caller.wait(), buyer.wait()
    caller_result.assert_succeeded()
    buyer_result.assert_succeeded()
    assert caller_result.seen("sent") == ["INVITE", "ACK", "BYE"]
    assert caller_result.seen("received") == ["180", "200", "200"]
    assert buyer_result.seen("received") == ["INVITE", "ACK", "BYE"]
    answer = next(m for m in caller_result.messages if m.kind == "200")
    assert "m=audio" in answer.text
    assert "RTP/AVP 8 101" in answer.text


@pytest.mark.parametrize(
    ("buyer_scenario", "hold_ms"),
    [("buyer-presses-reject-key", 600), ("buyer-wrong-key-then-accept", 2200)],
)
def test_buyers_pressing_keys_stay_until_the_bye(
    sipp: SippLauncher, buyer_scenario: str, hold_ms: int
) -> None:
    buyer = sipp.uas(buyer_scenario, SippOptions(pause_ms=100))
    caller = sipp.uac("caller-basic", buyer.address, SippOptions(pause_ms=hold_ms))
    caller.wait().assert_succeeded()
    buyer_result = buyer.wait()
    buyer_result.assert_succeeded()
    assert buyer_result.seen("received") == ["INVITE", "ACK", "BYE"]


def test_caller_cancels_while_ringing_against_buyer_never_answers(sipp: SippLauncher) -> None:
    buyer = sipp.uas("buyer-never-answers")
    caller = sipp.uac(
        "caller-cancels-while-ringing", buyer.address, SippOptions(recv_timeout_ms=300)
    )
    caller_result, buyer_result = caller.wait(), buyer.wait()
    caller_result.assert_succeeded()
    buyer_result.assert_succeeded()
    assert caller_result.seen("sent") == ["INVITE", "CANCEL", "ACK"]
    assert caller_result.seen("received") == ["180", "200", "487"]
    assert buyer_result.seen("sent") == ["180", "200", "487"]
    invite, cancel, ack = (m for m in caller_result.messages if m.direction == "sent")
    terminated = next(m for m in buyer_result.messages if m.kind == "487")
    # RFC 3261 9.1 and 17.1.1.3: CANCEL and the ACK of the 487 repeat the INVITE's branch.
    assert invite.header("Via") == cancel.header("Via") == ack.header("Via")
    assert cancel.header("CSeq") == "1 CANCEL"
    assert terminated.header("CSeq") == "1 INVITE"
    assert ack.header("To") == terminated.header("To")


def test_the_cancel_timer_is_the_recv_timeout(sipp: SippLauncher) -> None:
    """The CANCEL leaves about -recv_timeout after the last provisional response."""
    buyer = sipp.uas("buyer-never-answers")
    caller = sipp.uac(
        "caller-cancels-while-ringing", buyer.address, SippOptions(recv_timeout_ms=1000)
    )
    result = caller.wait()
    result.assert_succeeded()
    ringing = next(m for m in result.messages if m.kind == "180")
    cancel = next(m for m in result.messages if m.kind == "CANCEL")
    assert 0.9 <= cancel.time - ringing.time <= 1.5


def test_caller_loses_half_of_200_is_saved_by_2xx_retransmission(sipp: SippLauncher) -> None:
    # SIPp sends a 200 ten times in 28 s (T1 doubling up to T2), however its
    # timers are set: the peers get longer than that, so only ten copies of one
    # 200 all lost (1 call in 1,024) fail the test; two calls keep that to 1 run
    # in 512.
    calls = 2
    buyer = sipp.uas("buyer-voicemail-silent", SippOptions(calls=calls, timeout=40.0))
    caller = sipp.uac(
        "caller-loses-half-of-200",
        buyer.address,
        SippOptions(calls=calls, rate=100, pause_ms=100, timeout=40.0),
    )
    caller_result, buyer_result = caller.wait(), buyer.wait()
    caller_result.assert_succeeded(calls)
    buyer_result.assert_succeeded(calls)
    lost = caller_result.step_count("_200_Lost")
    assert lost == caller_result.lost.count("200")
    # Every dropped 200 was sent again, and one copy of each call's 200 got through.
    assert caller_result.step_count("_200_Recv") == 2 * calls
    assert buyer_result.retransmissions >= lost
