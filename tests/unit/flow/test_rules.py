"""One test (at least) per rule of call-flow.md, on virtual time."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pytest

from callwhisper.domain.campaign import Fallback, PayoutRule, TelephonyCosts
from callwhisper.domain.ivr import Ivr, IvrBranch, IvrNode
from callwhisper.domain.state import ConcurrencyLimit
from callwhisper.domain.whisper import TtsVoice
from callwhisper.flow import (
    AnswerCaller,
    Bridge,
    CancelLeg,
    CollectDigits,
    Command,
    DialLeg,
    DigitReceived,
    FlowSettings,
    ForwardCaller,
    HangupLeg,
    LegAnswered,
    LegFailed,
    LegHungUp,
    LegRinging,
    MachineDetected,
    PlayAudio,
    PlayText,
    RejectCaller,
    StartRecording,
    StartRingback,
    StopPlayback,
    StopRecording,
    StopRingback,
)
from tests.unit.flow.harness import CALLER_NUMBER, Harness, control, offer, whisper

TEXT = "Inbound call from CA. Press 1 to accept, 2 to decline."
VOICE = TtsVoice()


def dial(leg: str, buyer: str, timeout: float = 30) -> DialLeg:
    """The dial command of ``buyer``'s default offer."""
    return DialLeg(leg, f"sip:{buyer}@buyers.example", None, CALLER_NUMBER, timeout, buyer, None)


def prompt(leg: str, play_id: int) -> list[Command]:
    """What an answered press_key leg receives: digit collection and the whisper."""
    return [CollectDigits(leg, 1, None, 5.0), PlayText(leg, play_id, TEXT, VOICE)]


def ends(h: Harness) -> dict[str, tuple[str | None, str | None]]:
    """Each leg's end reason and who ended it."""
    return {leg: (r.end_reason, r.ended_by) for leg, r in h.session.record.legs.items()}


def concurrency_in_use(h: Harness) -> int:
    return sum(h.ledger.in_progress.values())


# -- 1. Caller side ---------------------------------------------------------------------------


def test_caller_is_not_answered_until_a_buyer_accepts() -> None:
    h = Harness(offer("acme"))
    # call-flow 1: ringing at once, no answer.
    assert control(h.arrive()) == [StartRingback(None), dial("B1", "acme")]
    assert control(h.send(LegRinging("B1"), at=1)) == []
    assert control(h.send(LegAnswered("B1"), at=4)) == prompt("B1", 1)
    assert control(h.send(DigitReceived("B1", "1"), at=6)) == [
        StopPlayback("B1", 1),
        StopRingback(),
        AnswerCaller(),
        Bridge("A", "B1"),
    ]
    assert h.session.record.legs["A"].answered_at == 6


def test_caller_hears_ringback_without_a_gap_across_the_cascade() -> None:
    h = Harness(offer("acme"), offer("bolt"), offer("crux"), offer("dyna"))
    h.arrive()
    h.send(LegFailed("B1", "busy"), at=1)
    h.run_until(31)  # B2 rings out
    h.send(LegAnswered("B3"), at=32)
    h.send(DigitReceived("B3", "2"), at=33)
    h.send(LegAnswered("B4"), at=40)
    h.finish_play("B4", at=43)
    h.send(DigitReceived("B4", "1"), at=44)
    heard_by_caller = [
        c
        for c in h.log
        if isinstance(c, StartRingback | StopRingback | AnswerCaller | Bridge)
        or (isinstance(c, PlayText | PlayAudio) and c.leg == "A")
    ]
    # call-flow 2: one ringback from the first attempt to the bridge; no whisper to the caller.
    assert heard_by_caller == [
        StartRingback(None),
        StopRingback(),
        AnswerCaller(),
        Bridge("A", "B4"),
    ]
    assert {c.leg for c in h.log if isinstance(c, PlayText)} == {"B3", "B4"}


def test_caller_is_answered_for_the_ivr_and_hears_ringback_in_band_after_it() -> None:
    node = IvrNode(
        id="insured", say="Press 1 if you are insured.", tag="insured",
        branches={"1": IvrBranch(action="route")},
    )  # fmt: skip
    settings = FlowSettings("auto", ivr=Ivr(start="insured", nodes=[node]))
    h = Harness(offer("acme"), settings=settings)
    # call-flow 3: audio has to reach the caller, so the IVR answers first.
    assert control(h.arrive()) == [
        AnswerCaller(),
        CollectDigits("A", 1, "#", 5.0),
        PlayText("A", 1, "Press 1 if you are insured.", VOICE),
    ]
    assert control(h.send(DigitReceived("A", "1"), at=2)) == [
        StopPlayback("A", 1),
        StartRingback(None),
        dial("B1", "acme"),
    ]
    h.send(LegAnswered("B1"), at=3)
    assert control(h.send(DigitReceived("B1", "1"), at=4)) == [
        StopPlayback("B1", 2),
        StopRingback(),
        Bridge("A", "B1"),
    ]


def test_caller_hangup_cancels_every_buyer_leg_at_once_and_stops_the_hunt() -> None:
    slot = (ConcurrencyLimit("buyer:all", 10),)
    offers = [offer(b, ring_mode="parallel", concurrency=slot) for b in ("acme", "bolt", "crux")]
    h = Harness(*offers, offer("dyna"), hold_caps=True)
    h.arrive()
    h.release_caps(2)
    h.send(LegRinging("B1"), at=1)
    h.send(LegAnswered("B2"), at=2)
    # call-flow 4: CANCEL the ringing leg, BYE the leg in its whisper.
    assert control(h.send(LegHungUp("A"), at=3)) == [CancelLeg("B1"), HangupLeg("B2", "canceled")]
    assert control(h.release_caps()) == []
    assert ends(h) == {
        "A": ("hangup", "caller"),
        "B1": ("canceled", "system"),
        "B2": ("canceled", "system"),
    }
    assert h.session.record.outcome == "caller_hangup"
    assert h.session.finished
    assert h.session.get_timer() is None
    assert concurrency_in_use(h) == 0


# -- 2. Buyer leg -----------------------------------------------------------------------------


def test_early_media_is_ringing_and_the_ring_timeout_cancels_the_leg() -> None:
    h = Harness(offer("acme"), offer("bolt"))
    h.arrive()
    # call-flow 5: a 183 with early media is not an answer: no whisper.
    assert control(h.send(LegRinging("B1", early_media=True), at=1)) == []
    assert h.session.get_timer() == 30
    assert control(h.run_until(30)) == [CancelLeg("B1"), dial("B2", "bolt")]
    assert ends(h)["B1"] == ("no_answer", "system")
    assert h.session.record.legs["B1"].answered_at is None


def test_each_ring_outcome_has_its_reason_code_and_costs_nothing() -> None:
    costs = TelephonyCosts(outbound_per_minute=Decimal("1.00"), increment_seconds=1)
    h = Harness(
        offer("acme"),
        offer("bolt"),
        offer("crux"),
        offer("dyna"),
        offer("emu", ring_mode="parallel", tier=1),
        offer("fox", ring_mode="parallel", tier=1),
        settings=FlowSettings("auto", costs=costs),
    )
    h.arrive()
    h.send(LegFailed("B1", "busy", 486), at=1)
    h.send(LegFailed("B2", "rejected", 603), at=2)
    h.send(LegFailed("B3", "failed"), at=3)
    h.run_until(33)  # B4 rings out
    h.send(LegAnswered("B5"), at=34)
    h.send(DigitReceived("B5", "1"), at=35)
    record = h.session.record
    # call-flow 6: each outcome with its own code; none is billable.
    assert {leg: record.legs[leg].end_reason for leg in ("B1", "B2", "B3", "B4", "B6")} == {
        "B1": "busy",
        "B2": "rejected",
        "B3": "failed",
        "B4": "no_answer",
        "B6": "canceled",
    }
    assert record.legs["B1"].status == "486"
    assert record.legs["B2"].status == "603"
    assert all(record.legs[leg].cost == 0 for leg in ("B1", "B2", "B3", "B4", "B6"))


def test_whisper_plays_to_the_buyer_leg_only_after_a_real_answer() -> None:
    h = Harness(offer("acme", ring_timeout=10))
    h.arrive()
    h.send(LegRinging("B1", early_media=True), at=1)
    # call-flow 7: the answer stops the ring timer and plays the whisper to this leg only.
    assert control(h.send(LegAnswered("B1"), at=8)) == prompt("B1", 1)
    assert h.session.get_timer() == 120  # only the hunt limit is left
    assert control(h.run_until(60)) == []
    assert h.session.record.legs["B1"].whisper_started_at == 8


def test_whisper_variables_are_spoken_as_the_driver_says_them() -> None:
    def speak(variables: Mapping[str, str]) -> dict[str, str]:
        return {**variables, "caller_state": "California"}

    settings = FlowSettings(campaign_id="auto", speak=speak)
    h = Harness(offer("acme"), settings=settings)
    h.arrive()
    [play] = [c for c in h.send(LegAnswered("B1"), at=1) if isinstance(c, PlayText)]
    spoken = "Inbound call from California. Press 1 to accept, 2 to decline."
    assert play == PlayText("B1", 1, spoken, VOICE)


# -- 8. Accept modes --------------------------------------------------------------------------


def test_press_key_accepts_with_the_accept_key_after_the_prompt() -> None:
    h = Harness(offer("acme"))
    h.arrive()
    h.send(LegAnswered("B1"), at=1)
    h.finish_play("B1", at=4)
    assert h.session.get_timer() == 9  # call-flow 8: wait 5 s after the prompt
    assert control(h.send(DigitReceived("B1", "1"), at=8)) == [
        StopRingback(),
        AnswerCaller(),
        Bridge("A", "B1"),
    ]


def test_no_key_after_the_prompt_replays_it_up_to_the_plays_in_all() -> None:
    gate = whisper(plays=3, wait_seconds=4)
    h = Harness(offer("acme", gate=gate), offer("bolt"))
    h.arrive()
    h.send(LegAnswered("B1"), at=1)
    h.finish_play("B1", at=3)
    assert control(h.run_until(7)) == [PlayText("B1", 2, TEXT, VOICE)]
    h.finish_play("B1", at=9)
    assert control(h.run_until(13)) == [PlayText("B1", 3, TEXT, VOICE)]
    h.finish_play("B1", at=15)
    assert control(h.run_until(19)) == [HangupLeg("B1", "timeout"), dial("B2", "bolt")]


def test_wrong_key_replays_the_prompt_and_counts_as_an_attempt() -> None:
    h = Harness(offer("acme"), offer("bolt"))
    h.arrive()
    h.send(LegAnswered("B1"), at=1)
    assert control(h.send(DigitReceived("B1", "7"), at=2)) == [
        StopPlayback("B1", 1),
        PlayText("B1", 2, TEXT, VOICE),
    ]
    assert control(h.send(DigitReceived("B1", "9"), at=3)) == [
        StopPlayback("B1", 2),
        HangupLeg("B1", "wrong_key"),
        dial("B2", "bolt"),
    ]
    assert [(k.key, k.meaning) for k in h.session.record.keys] == [("7", "wrong"), ("9", "wrong")]


def test_hash_alone_is_no_key() -> None:
    h = Harness(offer("acme"))
    h.arrive()
    h.send(LegAnswered("B1"), at=1)
    h.finish_play("B1", at=3)
    assert control(h.send(DigitReceived("B1", "#"), at=4)) == []
    assert h.session.get_timer() == 8
    assert h.session.record.keys[0].meaning == "none"


def test_any_key_mode_accepts_any_digit_but_hash() -> None:
    h = Harness(offer("acme", mode="any_key"))
    h.arrive()
    h.send(LegAnswered("B1"), at=1)
    assert control(h.send(DigitReceived("B1", "#"), at=2)) == []
    assert control(h.send(DigitReceived("B1", "7"), at=3)) == [
        StopPlayback("B1", 1),
        StopRingback(),
        AnswerCaller(),
        Bridge("A", "B1"),
    ]


def test_auto_mode_bridges_when_the_announcement_finishes() -> None:
    h = Harness(offer("acme", mode="auto"))
    h.arrive()
    assert control(h.send(LegAnswered("B1"), at=1)) == [PlayText("B1", 1, TEXT, VOICE)]
    assert control(h.send(DigitReceived("B1", "2"), at=2)) == []
    assert control(h.finish_play("B1", at=4)) == [StopRingback(), AnswerCaller(), Bridge("A", "B1")]


def test_audio_whisper_plays_the_recording() -> None:
    gate = whisper(text=None, audio="whispers/auto.wav")
    h = Harness(offer("acme", gate=gate))
    h.arrive()
    assert control(h.send(LegAnswered("B1"), at=1)) == [
        CollectDigits("B1", 1, None, 5.0),
        PlayAudio("B1", 1, "whispers/auto.wav"),
    ]


# -- 9, 10, 11. Declines and the cascade ------------------------------------------------------


def _decline_by(reason: str, h: Harness) -> None:
    h.send(LegAnswered("B1"), at=1)
    if reason == "timeout":
        h.finish_play("B1", at=3)
        h.run_until(8)
        h.finish_play("B1", at=10)
        h.run_until(15)
    elif reason == "wrong_key":
        h.send(DigitReceived("B1", "5"), at=2)
        h.send(DigitReceived("B1", "5"), at=3)
    elif reason == "reject_key":
        h.send(DigitReceived("B1", "2"), at=2)
    elif reason == "buyer_hangup":
        h.send(LegHungUp("B1"), at=2)
    else:
        h.send(MachineDetected("B1"), at=2)


@pytest.mark.parametrize(
    "reason", ["timeout", "wrong_key", "reject_key", "buyer_hangup", "machine"]
)
def test_each_decline_reason_is_recorded_the_leg_hung_up_and_the_hunt_goes_on(reason: str) -> None:
    h = Harness(offer("acme"), offer("bolt"))
    h.arrive()
    _decline_by(reason, h)
    record = h.session.record
    assert record.legs["B1"].decline_reason == reason
    hangups = [c for c in h.log if isinstance(c, HangupLeg)]
    if reason == "buyer_hangup":
        assert hangups == []
        assert ends(h)["B1"] == ("declined", "buyer")
    else:
        assert hangups == [HangupLeg("B1", reason)]
        assert ends(h)["B1"] == ("declined", "system")
    assert dial("B2", "bolt") in h.log
    assert not any(isinstance(c, AnswerCaller) for c in h.log)


def test_voicemail_answer_is_declined_by_timeout_and_next_buyer_is_dialed() -> None:
    h = Harness(offer("acme"), offer("bolt"))
    h.arrive()
    h.send(LegAnswered("B1"), at=3)  # the voicemail box picks up
    h.finish_play("B1", at=6)
    assert control(h.run_until(11)) == [PlayText("B1", 2, TEXT, VOICE)]
    h.finish_play("B1", at=14)
    # call-flow 10: it presses nothing, so the gate declines it by timeout.
    assert control(h.run_until(19)) == [HangupLeg("B1", "timeout"), dial("B2", "bolt")]
    assert h.session.record.legs["B1"].decline_reason == "timeout"
    assert h.session.record.legs["A"].answered_at is None


def test_candidates_are_tried_in_order_and_a_refused_reservation_is_skipped() -> None:
    h = Harness(offer("acme"), offer("bolt"), offer("crux"), offer("dyna"))
    h.ledger.in_progress["buyer:bolt"] = 3
    h.routing = type(h.routing)(
        (
            offer("acme"),
            offer("bolt", concurrency=(ConcurrencyLimit("buyer:bolt", 3),)),
            offer("crux"),
            offer("dyna"),
        )
    )
    h.arrive()
    h.send(LegFailed("B1", "rejected", 503), at=1)
    h.send(LegAnswered("B3"), at=2)
    h.send(MachineDetected("B3"), at=3)
    dials = [c.buyer_id for c in h.log if isinstance(c, DialLeg)]
    # call-flow 11: in order, each failure or decline moves on, the caller unanswered.
    assert dials == ["acme", "crux", "dyna"]
    assert h.session.record.skipped == [("bolt", "concurrency 3/3")]
    assert not any(isinstance(c, AnswerCaller) for c in h.log)


# -- 12. Retries and limits -------------------------------------------------------------------


def test_busy_or_failed_candidate_is_retried_but_not_one_that_rang_out() -> None:
    settings = FlowSettings("auto", retries_on_busy=1)
    h = Harness(offer("acme"), offer("bolt"), offer("crux"), settings=settings)
    h.arrive()
    h.send(LegFailed("B1", "busy"), at=1)
    h.send(LegFailed("B2", "busy"), at=2)
    h.send(LegFailed("B3", "failed"), at=3)
    h.send(LegFailed("B4", "failed"), at=4)
    h.run_until(34)
    dials = [(c.leg, c.buyer_id) for c in h.log if isinstance(c, DialLeg)]
    assert dials == [("B1", "acme"), ("B2", "acme"), ("B3", "bolt"), ("B4", "bolt"), ("B5", "crux")]
    assert ends(h)["B5"] == ("no_answer", "system")


def test_the_hunt_is_bounded_by_the_overall_limit() -> None:
    settings = FlowSettings("auto", hunt_timeout_seconds=60)
    h = Harness(offer("acme", ring_timeout=45), offer("bolt", ring_timeout=45), settings=settings)
    h.arrive()
    h.run_until(45)
    assert control(h.run_until(60)) == [
        CancelLeg("B2"),
        StopRingback(),
        RejectCaller(480, "hunt limit 60 s"),
    ]
    assert h.session.record.fallback == "reject"
    assert h.session.record.outcome == "no_buyer"


def test_the_hunt_offers_no_more_than_the_candidate_limit() -> None:
    settings = FlowSettings("auto", max_candidates=2)
    h = Harness(offer("acme"), offer("bolt"), offer("crux"), settings=settings)
    h.arrive()
    h.send(LegFailed("B1", "busy"), at=1)
    h.send(LegFailed("B2", "busy"), at=2)
    assert [c.buyer_id for c in h.log if isinstance(c, DialLeg)] == ["acme", "bolt"]
    assert isinstance(control(h.log)[-1], RejectCaller)
    assert control(h.log)[-1] == RejectCaller(480, "no buyer accepted")
    assert h.session.record.outcome == "no_buyer"


# -- 13, 14, 15. Parallel, fallback, bridge ---------------------------------------------------


def test_parallel_tier_first_to_accept_wins_and_the_others_are_canceled() -> None:
    parallel = [offer(b, ring_mode="parallel") for b in ("acme", "bolt", "crux")]
    h = Harness(*parallel, offer("dyna", tier=1))
    assert control(h.arrive()) == [
        StartRingback(None),
        dial("B1", "acme"),
        dial("B2", "bolt"),
        dial("B3", "crux"),
    ]
    h.send(LegAnswered("B1"), at=1)  # first to answer...
    h.send(LegAnswered("B2"), at=2)
    h.send(LegRinging("B3"), at=2)
    # ...declines, which does not stop the others (call-flow 13).
    assert control(h.send(DigitReceived("B1", "2"), at=3)) == [
        StopPlayback("B1", 1),
        HangupLeg("B1", "reject_key"),
    ]
    assert control(h.send(DigitReceived("B2", "1"), at=4)) == [
        StopPlayback("B2", 2),
        StopRingback(),
        AnswerCaller(),
        Bridge("A", "B2"),
        CancelLeg("B3"),
    ]
    assert "dyna" not in [c.buyer_id for c in h.log if isinstance(c, DialLeg)]


def _fallback_call(fallback: Fallback) -> Harness:
    h = Harness(offer("acme"), settings=FlowSettings("auto", fallback=fallback))
    h.arrive()
    h.send(LegFailed("B1", "busy"), at=1)
    return h


def test_fallback_reject_refuses_the_caller_unanswered() -> None:
    h = _fallback_call(Fallback(action="reject", sip_code=486))
    assert control(h.log)[-2:] == [StopRingback(), RejectCaller(486, "no buyer accepted")]
    assert h.session.record.legs["A"].answered_at is None
    assert h.session.record.outcome == "no_buyer"


def test_fallback_message_answers_plays_and_hangs_up() -> None:
    h = _fallback_call(Fallback(action="message", message="Please call back later."))
    assert control(h.log)[-3:] == [
        StopRingback(),
        AnswerCaller(),
        PlayText("A", 1, "Please call back later.", VOICE),
    ]
    assert control(h.finish_play("A", at=5)) == [HangupLeg("A", "message")]
    assert h.session.record.outcome == "no_buyer"


def test_fallback_voicemail_records_the_caller_up_to_its_limit() -> None:
    fallback = Fallback(action="voicemail", message="Leave a message.", voicemail_max_seconds=60)
    h = _fallback_call(fallback)
    assert control(h.finish_play("A", at=4)) == [StartRecording(("A",))]
    assert control(h.run_until(64)) == [StopRecording(), HangupLeg("A", "voicemail")]


def test_fallback_forward_dials_the_overflow_line_while_the_caller_hears_ringback() -> None:
    h = _fallback_call(Fallback(action="forward", forward_to="+18005550199"))
    # call-flow 2: no StopRingback; the caller is handed over only when the line answers.
    assert control(h.log)[-1:] == [
        ForwardCaller("overflow", "+18005550199", None, CALLER_NUMBER, 60)
    ]
    assert StopRingback() not in control(h.log)
    assert ends(h)["A"] == (None, None)
    assert control(h.send(LegAnswered("overflow"), at=3)) == [
        StopRingback(),
        AnswerCaller(),
        Bridge("A", "overflow"),
    ]


def test_accept_answers_bridges_and_cancels_the_others_in_the_same_instant() -> None:
    h = Harness(offer("acme", ring_mode="parallel"), offer("bolt", ring_mode="parallel"))
    h.arrive()
    h.send(LegRinging("B2"), at=1)
    h.send(LegAnswered("B1"), at=2)
    h.finish_play("B1", at=5)
    commands = h.send(DigitReceived("B1", "1"), at=6.25)
    assert control(commands) == [
        StopRingback(),
        AnswerCaller(),
        Bridge("A", "B1"),
        CancelLeg("B2"),
    ]
    record = h.session.record
    assert record.legs["B1"].accepted_at == record.legs["B1"].bridged_at == 6.25
    assert record.legs["A"].answered_at == record.legs["B2"].ended_at == 6.25


# -- 16-20. Timestamps, money, recording, revenue recovery ------------------------------------


def test_every_milestone_is_recorded_with_its_time() -> None:
    h = Harness(offer("acme"))
    h.arrive(at=100)
    h.send(LegRinging("B1"), at=101)
    h.send(LegAnswered("B1"), at=104)
    h.finish_play("B1", at=107)
    h.send(DigitReceived("B1", "1"), at=108.5)
    h.send(LegHungUp("B1"), at=300)
    record = h.session.record
    b1 = record.legs["B1"]
    assert record.arrived_at == 100
    assert (b1.dialed_at, b1.ringing_at, b1.answered_at) == (100, 101, 104)
    assert (b1.whisper_started_at, b1.whisper_ended_at) == (104, 107)
    assert [(k.at, k.key, k.meaning) for k in record.keys] == [(108.5, "1", "accept")]
    assert (b1.accepted_at, b1.bridged_at) == (108.5, 108.5)
    assert (b1.ended_at, b1.ended_by) == (300, "buyer")
    assert (record.legs["A"].ended_at, record.legs["A"].ended_by) == (300, "system")
    assert record.ended_at == 300


def test_revenue_counts_bridged_time_from_accept_and_never_for_a_duplicate() -> None:
    def call(hangup_at: float, no_convert: bool = False) -> Decimal:
        h = Harness(offer("acme", revenue="40", buffer=90, no_convert=no_convert))
        h.arrive()
        h.send(LegAnswered("B1"), at=10)
        h.send(DigitReceived("B1", "1"), at=30)
        h.send(LegHungUp("A"), at=hangup_at)
        return h.session.record.revenue

    # call-flow 17: 109 s after the answer but 89 s after accept is one second short.
    assert call(119) == Decimal(0)
    assert call(120) == Decimal(40)
    assert call(500, no_convert=True) == Decimal(0)


def test_every_answered_leg_costs_and_unanswered_legs_do_not() -> None:
    costs = TelephonyCosts(inbound_per_minute=Decimal("0.01"), outbound_per_minute=Decimal("0.02"))
    h = Harness(
        offer("acme"), offer("bolt"), offer("crux"), settings=FlowSettings("auto", costs=costs)
    )
    h.arrive()
    h.send(LegFailed("B1", "busy"), at=1)
    h.send(LegAnswered("B2"), at=5)
    h.send(DigitReceived("B2", "2"), at=12)  # declined, but it was answered
    h.send(LegAnswered("B3"), at=20)
    h.send(DigitReceived("B3", "1"), at=25)
    h.send(LegHungUp("B3"), at=150)
    legs = h.session.record.legs
    # call-flow 18: a 7 s decline bills one minute; 130 s bill three; 125 s of the caller three.
    assert {leg: r.cost for leg, r in legs.items()} == {
        "A": Decimal("0.0300"),
        "B1": Decimal("0.0000"),
        "B2": Decimal("0.0200"),
        "B3": Decimal("0.0600"),
    }
    assert h.session.record.cost == Decimal("0.1100")


def test_recording_starts_at_the_bridge_with_caller_left_and_buyer_right() -> None:
    h = Harness(offer("acme"), settings=FlowSettings("auto", recording=True))
    h.arrive()
    h.send(LegAnswered("B1"), at=1)
    assert not any(isinstance(c, StartRecording) for c in h.log)
    # call-flow 19: the whisper and the accept key are not in the recording.
    assert control(h.send(DigitReceived("B1", "1"), at=2)) == [
        StopPlayback("B1", 1),
        StopRingback(),
        AnswerCaller(),
        Bridge("A", "B1"),
        StartRecording(("A", "B1")),
    ]
    assert control(h.send(LegHungUp("A"), at=50)) == [
        StopRecording(),
        HangupLeg("B1", "caller hung up"),
    ]


def test_buyer_hangup_before_the_buffer_reoffers_the_caller_with_ringback() -> None:
    settings = FlowSettings(
        "auto", revenue_recovery_attempts=1, payout=PayoutRule(amount=Decimal(8), buffer_seconds=30)
    )
    h = Harness(offer("acme", revenue="40"), offer("bolt", revenue="25"), settings=settings)
    h.arrive()
    h.send(LegAnswered("B1"), at=1)
    h.send(DigitReceived("B1", "1"), at=2)
    # call-flow 20: acme leaves after 38 s of a 90 s buffer; bolt is offered, ringback again.
    assert control(h.send(LegHungUp("B1"), at=40)) == [StartRingback(None), dial("B2", "bolt")]
    h.send(LegAnswered("B2"), at=45)
    h.send(DigitReceived("B2", "1"), at=46)
    assert control(h.send(LegHungUp("B2"), at=200)) == [HangupLeg("A", "buyer hung up")]
    record = h.session.record
    assert record.bridged_legs == ["B1", "B2"]
    assert (record.converted_leg, record.revenue, record.payout) == ("B2", Decimal(25), Decimal(8))
    assert record.outcome == "converted"


def test_buyer_hangup_after_the_buffer_ends_the_call() -> None:
    settings = FlowSettings("auto", revenue_recovery_attempts=1)
    h = Harness(offer("acme"), offer("bolt"), settings=settings)
    h.arrive()
    h.send(LegAnswered("B1"), at=1)
    h.send(DigitReceived("B1", "1"), at=2)
    assert control(h.send(LegHungUp("B1"), at=92)) == [HangupLeg("A", "buyer hung up")]
    assert h.session.record.revenue == Decimal(40)
