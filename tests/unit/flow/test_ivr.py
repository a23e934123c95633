"""The IVR before routing: prompts, digits, retries, branches and tags."""

from __future__ import annotations

from callwhisper.domain.ivr import Ivr, IvrBranch, IvrNode
from callwhisper.domain.whisper import DtmfKey, TtsVoice
from callwhisper.flow import (
    CollectDigits,
    DigitReceived,
    FlowSettings,
    HangupLeg,
    LegAnswered,
    LegHungUp,
    PlayAudio,
    PlayText,
    RequestRouting,
    StartRingback,
    StopPlayback,
)
from tests.unit.flow.harness import Harness, control, offer, whisper

VOICE = TtsVoice()

INSURED = IvrNode(
    id="insured",
    say="Are you insured? Press 1 for yes, 2 for no.",
    branches={
        "1": IvrBranch(action="goto", node="zip", set_tags={"insured": "yes"}),
        "2": IvrBranch(action="route", set_tags={"insured": "no"}),
        "9": IvrBranch(action="hangup", message="Goodbye."),
        "0": IvrBranch(action="reject"),
    },
    retries=1,
)
ZIP = IvrNode(id="zip", play="prompts/zip.wav", digits=5, tag="zip")


def harness(*nodes: IvrNode, start: str = "insured") -> Harness:
    ivr = Ivr(start=start, nodes=list(nodes or (INSURED, ZIP)))
    gate = whisper(text="{insured} insured, zip {zip}, {caller_city}. Press 1.")
    return Harness(offer("acme", gate=gate), settings=FlowSettings("auto", ivr=ivr))


def test_answers_become_tags_that_routing_and_the_whisper_use() -> None:
    h = harness()
    h.arrive()
    assert control(h.send(DigitReceived("A", "1"), at=2)) == [
        StopPlayback("A", 1),
        CollectDigits("A", 5, "#", 5.0),
        PlayAudio("A", 2, "prompts/zip.wav"),
    ]
    digits: list[DtmfKey] = ["9", "4", "1", "0", "3"]
    for at, digit in enumerate(digits, start=3):
        h.send(DigitReceived("A", digit), at=at)
    requests = [c for c in h.log if isinstance(c, RequestRouting)]
    assert dict(requests[0].attributes.tags) == {"insured": "yes", "zip": "94103"}
    assert h.session.record.tags == {"insured": "yes", "zip": "94103"}
    assert h.session.record.ivr_answers == {"insured": "1", "zip": "94103"}
    assert control(h.send(LegAnswered("B1"), at=10))[-1] == PlayText(
        "B1", 3, "yes insured, zip 94103, San Francisco. Press 1.", VOICE
    )


def test_input_ends_on_the_finish_key_or_after_the_input_timeout() -> None:
    h = harness(ZIP, start="zip")
    h.arrive()
    h.finish_play("A", at=3)
    h.send(DigitReceived("A", "9"), at=4)
    assert h.session.get_timer() == 9  # the timeout restarts after each key
    assert control(h.send(DigitReceived("A", "#"), at=5))[0] == StartRingback(None)
    assert h.session.record.tags == {"zip": "9"}

    h = harness(ZIP, start="zip")
    h.arrive()
    h.finish_play("A", at=3)
    h.send(DigitReceived("A", "4"), at=4)
    assert control(h.run_until(9))[0] == StartRingback(None)
    assert h.session.record.tags == {"zip": "4"}


def test_no_input_replays_the_prompt_then_hangs_up_without_a_default() -> None:
    h = harness()
    h.arrive()
    h.finish_play("A", at=3)
    assert control(h.run_until(8)) == [
        CollectDigits("A", 1, "#", 5.0),
        PlayText("A", 2, INSURED.say or "", VOICE),
    ]
    h.finish_play("A", at=11)
    assert control(h.run_until(16)) == [HangupLeg("A", "ivr hangup")]
    assert h.session.record.outcome == "ivr_hangup"


def test_an_unknown_answer_is_retried_then_the_default_branch_is_taken() -> None:
    node = INSURED.model_copy(update={"default": IvrBranch(action="route")})
    h = harness(node, ZIP)
    h.arrive()
    assert control(h.send(DigitReceived("A", "7"), at=1))[-1] == PlayText(
        "A", 2, INSURED.say or "", VOICE
    )
    assert control(h.send(DigitReceived("A", "7"), at=2))[:2] == [
        StopPlayback("A", 2),
        StartRingback(None),
    ]
    assert [e.data["attempt"] for e in h.entries("ivr_prompt")] == ["1", "2"]


def test_hangup_branch_plays_its_message_then_hangs_up() -> None:
    h = harness()
    h.arrive()
    assert control(h.send(DigitReceived("A", "9"), at=1)) == [
        StopPlayback("A", 1),
        PlayText("A", 2, "Goodbye.", VOICE),
    ]
    assert control(h.finish_play("A", at=3)) == [HangupLeg("A", "ivr hangup")]
    assert h.session.record.outcome == "ivr_hangup"


def test_reject_branch_ends_the_call_as_refused() -> None:
    h = harness()
    h.arrive()
    assert control(h.send(DigitReceived("A", "0"), at=1)) == [
        StopPlayback("A", 1),
        HangupLeg("A", "ivr reject"),
    ]
    assert h.session.record.outcome == "refused"


def test_caller_hangup_during_the_ivr_ends_the_call() -> None:
    h = harness()
    h.arrive()
    assert control(h.send(LegHungUp("A"), at=2)) == []
    record = h.session.record
    assert (record.outcome, record.legs["A"].ended_by) == ("caller_hangup", "caller")
    assert h.session.get_timer() is None
