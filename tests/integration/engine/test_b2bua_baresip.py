"""The call server end to end over loopback, with real baresip phones as caller and buyer.

Each test starts a :class:`CallwhisperServer` on SQLite in ``tmp_path`` and
two baresip phones driven over ``ctrl_tcp``, each with a tone of its own as
its microphone: the caller sends 1 kHz, the buyer 1.5 kHz, so that who hears
whom is told apart by frequency. baresip's ``sndfile`` dump of what a phone
heard is then checked segment by segment: the whisper (espeak-ng speech) for
the buyer before it presses 1, ringback for the caller until the bridge, and
the other party's tone afterwards.

baresip writes a received frame to its dump as the packet arrives, so a dump
has no gaps for stretches in which the server sends nothing (the buyer's
wait for a key after the whisper): positions in a dump are measured by its
size at the moment of interest, not by the wall clock. baresip 1.0 also
stops writing the dumps of a phone whose stream its own re-INVITE updated
(hold and resume): what the holding phone is sent is read from the
server's packet counters instead.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import pytest

from callwhisper.audio import get_engine
from callwhisper.domain import TtsVoice
from callwhisper.engine.server import CallwhisperServer
from callwhisper.whisper import tts_options
from tests.integration.engine.calls import NUMBER, configuration, finished_call, kinds, leg_ends
from tests.integration.engine.conftest import StartServer
from tests.integration.peers.audio import (
    SILENCE_DBFS,
    Audio,
    classify,
    from_pcm16,
    has_tone,
    is_silent,
    is_speech_like,
    load_wav,
)
from tests.integration.peers.baresip import (
    SAMPLE_RATE,
    WAV_HEADER,
    Baresip,
    BaresipEvent,
    BaresipLauncher,
    SoundDump,
)

pytestmark = pytest.mark.integration

CALLER_TONE: Final = (1000.0,)
BUYER_TONE: Final = (1500.0,)
RINGBACK: Final = (440.0, 480.0)
"""North American ringback (ITU-T E.180), the engine's default."""
WHISPER_TEXT: Final = "New call from the test campaign. Press 1 to accept."
WHISPER: Final[dict[str, Any]] = {
    "text": WHISPER_TEXT,
    # Generous: on a loaded machine the key must still come before the gate times out.
    "wait_seconds": 15.0,
    "plays": 1,
    "voice": {"engine": "espeak-ng", "voice": "en-us", "rate": 165},
}
ENVELOPE_SECONDS: Final = 0.02
QUIET_SECONDS: Final = 0.6
"""Longer than the pause between the whisper's two sentences."""
TIMEOUT: Final = 20.0
"""Bound of every wait on a peer: far above what a call step takes, even on a busy machine."""


@pytest.fixture(scope="module")
def whisper_speech() -> Audio:
    """The whisper text as the engine renders it, with the voice the configuration names."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng; `make test` does)")
    voice = TtsVoice.model_validate(WHISPER["voice"])
    spoken = get_engine(voice.engine).synthesize(WHISPER_TEXT, tts_options(voice))
    return from_pcm16(spoken.pcm)


def envelope(audio: Audio) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The RMS level of each 20 ms frame: the syllable rhythm, whatever the codec did."""
    return np.array(
        [np.sqrt(np.mean(segment.samples**2)) for segment in audio.segments(ENVELOPE_SECONDS)]
    )


def envelope_match(heard: Audio, reference: Audio) -> float:
    """How well ``heard`` follows ``reference``'s loudness contour: about 1 for the same speech.

    Both are cut to their audible part, then the shorter contour slides along
    the longer one; the best normalised correlation wins. Level and codec do
    not matter; other speech or a tone scores low.
    """
    shorter, longer = sorted((audible(envelope(heard)), audible(envelope(reference))), key=len)
    if len(shorter) < 10 or shorter.std() == 0:
        return 0.0
    shorter = (shorter - shorter.mean()) / shorter.std()
    best = 0.0
    for offset in range(len(longer) - len(shorter) + 1):
        window = longer[offset : offset + len(shorter)]
        if window.std() > 0:
            best = max(best, float(np.mean(shorter * (window - window.mean()) / window.std())))
    return best


def audible(levels: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The levels from the first to the last frame above the silence threshold."""
    loud = np.flatnonzero(levels > 10 ** (SILENCE_DBFS / 20))
    return levels[loud[0] : loud[-1] + 1] if len(loud) else levels[:0]


def mostly_tone(audio: Audio, tone: tuple[float, ...]) -> bool:
    """Whether at least 1 s was heard and 90% of its 100 ms segments are ``tone``.

    A segment or two may straddle a change of source (the bridge, a resume).
    """
    kinds = classify(audio, tone)
    return len(kinds) >= 10 and kinds.count("tone") >= 0.9 * len(kinds)


def heard_so_far(phone: Baresip) -> int:
    """How many samples the phone's current call has heard (its dump's size)."""
    dump = phone.dumps()[-1]
    return max(0, dump.heard.stat().st_size - WAV_HEADER) // 2


def heard_audio(dump: SoundDump) -> Audio:
    """What a phone heard on a closed call (the header is complete by then)."""
    audio = load_wav(dump.heard)
    assert audio.rate == SAMPLE_RATE
    return audio


def seconds(samples: int) -> float:
    return samples / SAMPLE_RATE


async def phones_and_server(
    baresip: BaresipLauncher, start_server: StartServer, *, answermode: str
) -> tuple[Baresip, Baresip, CallwhisperServer]:
    """The buyer (answering as ``answermode``), the caller, and a server whose buyer it is."""
    buyer = await baresip.start(user="buyer", answermode=answermode, tone=BUYER_TONE)
    caller = await baresip.start(user="caller", tone=CALLER_TONE)
    server = await start_server(configuration([("acme", buyer.uri)], whisper=WHISPER))
    return buyer, caller, server


async def dial(caller: Baresip, server: CallwhisperServer) -> None:
    host, port = server.sip_address
    await caller.control.dial(f"sip:{NUMBER}@{host}:{port}")


async def answer_and_hear_the_whisper(
    buyer: Baresip, whisper: Audio, *, answered: bool = False
) -> int:
    """Answer the incoming call (unless ``answered``), listen to the whole whisper.

    Returns the position in the buyer's dump where the whisper has ended.
    """
    if not answered:
        await buyer.control.wait_for("CALL_INCOMING", timeout=TIMEOUT)
        await buyer.control.accept()
        await buyer.control.wait_for("CALL_ESTABLISHED", timeout=TIMEOUT)
    # The engine's own rendering may be a little shorter than this one (trimmed silence).
    await buyer.wait_heard(whisper.duration - 0.5, timeout=TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    size, since = heard_so_far(buyer), time.monotonic()
    # Over when nothing came for a while (the server sends nothing while it waits for a key)
    # or what came last was silence.
    while time.monotonic() - since < QUIET_SECONDS and not tail_is_silent(buyer):
        assert time.monotonic() < deadline, "the whisper never ended"
        await asyncio.sleep(0.05)
        if heard_so_far(buyer) != size:
            size, since = heard_so_far(buyer), time.monotonic()
    return heard_so_far(buyer)


async def press_1(buyer: Baresip, caller: Baresip) -> BaresipEvent:
    """The buyer presses 1: the caller's ``CALL_ESTABLISHED``, which the bridge brings."""
    await buyer.control.send_dtmf("1")
    return await caller.control.wait_for("CALL_ESTABLISHED", timeout=TIMEOUT)


async def hang_up(phone: Baresip, other: Baresip) -> BaresipEvent:
    """``phone`` hangs up and both calls close: the other phone's ``CALL_CLOSED``."""
    await phone.control.hangup()
    await phone.control.wait_for("CALL_CLOSED", timeout=TIMEOUT)
    return await other.control.wait_for("CALL_CLOSED", timeout=TIMEOUT)


async def bridged_after_the_whisper(
    caller: Baresip, buyer: Baresip, server: CallwhisperServer, whisper: Audio
) -> int:
    """The caller dials; the buyer answers, hears the whole whisper and presses 1: bridged.

    Returns the position in the buyer's dump where it pressed.
    """
    await dial(caller, server)
    key_at = await answer_and_hear_the_whisper(buyer, whisper)
    await press_1(buyer, caller)
    return key_at


def tail_is_silent(phone: Baresip) -> bool:
    """Whether the last ``QUIET_SECONDS`` the phone heard were silence."""
    dump = phone.dumps()[-1]
    samples = int(QUIET_SECONDS * SAMPLE_RATE)
    with dump.heard.open("rb") as wav:
        wav.seek(0, 2)
        start = max(WAV_HEADER, wav.tell() - 2 * samples)
        wav.seek(start - start % 2)
        tail = from_pcm16(wav.read(2 * samples))
    return len(tail.samples) == samples and is_silent(tail)


async def wait_for_state(condition: Callable[[], bool]) -> None:
    """Wait until ``condition`` on the server's state holds (a re-INVITE handled...)."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "the server never got to the awaited state"
        await asyncio.sleep(0.02)


async def wait_for_entry(server: CallwhisperServer, kind: str) -> None:
    """Wait until the call's stored timeline has an entry of this kind."""
    assert server.store is not None
    deadline = time.monotonic() + TIMEOUT
    while True:
        calls = await server.store.calls.list_calls(with_events=True)
        if any(event.kind == kind for call in calls for event in call.events):
            return
        assert time.monotonic() < deadline, f"no {kind} entry was stored"
        await asyncio.sleep(0.05)


async def test_baresip_buyer_hears_the_whisper_presses_1_and_is_bridged_to_the_caller(
    baresip: BaresipLauncher, start_server: StartServer, whisper_speech: Audio
) -> None:
    """A real phone as buyer: whisper speech, RFC 4733 key 1, then the caller's voice."""
    buyer, caller, server = await phones_and_server(baresip, start_server, answermode="manual")

    key_at = await bridged_after_the_whisper(caller, buyer, server, whisper_speech)
    await buyer.wait_heard(seconds(key_at) + 2.0, timeout=TIMEOUT)
    await hang_up(caller, buyer)

    call = await finished_call(server)
    timeline = kinds(call)
    assert timeline.index(("whisper_start", "B1")) < timeline.index(("key", "B1"))
    assert timeline.index(("accept", "B1")) < timeline.index(("bridge", "B1"))
    assert [event.data["key"] for event in call.events if event.kind == "key"] == ["1"]
    assert call.outcome == "connected"
    assert [leg.outcome for leg in call.legs] == ["hangup"]
    # call-flow 1.2: the buyer's key press is not relayed to the caller.
    assert "CALL_DTMF_START" not in caller.control.types()

    (dump,) = buyer.dumps()
    heard = heard_audio(dump)
    before = heard.slice(0, seconds(key_at))
    assert is_speech_like(before)
    assert envelope_match(before, whisper_speech) > 0.8
    assert not any(has_tone(segment, CALLER_TONE) for segment in before.segments())
    assert mostly_tone(heard.slice(seconds(key_at) + 0.5), CALLER_TONE)


async def test_baresip_caller_hears_ringback_until_the_bridge_then_the_buyer(
    baresip: BaresipLauncher, start_server: StartServer, whisper_speech: Audio
) -> None:
    """A real phone as caller: 183 and ringback, 200 OK only at the bridge, audio both ways."""
    buyer, caller, server = await phones_and_server(baresip, start_server, answermode="manual")

    await dial(caller, server)
    progress = await caller.control.wait_for("CALL_PROGRESS", timeout=TIMEOUT)
    key_at = await answer_and_hear_the_whisper(buyer, whisper_speech)
    caller_at_key = heard_so_far(caller)
    pressed = time.monotonic()
    established = await press_1(buyer, caller)
    caller_at_bridge = heard_so_far(caller)
    await caller.wait_heard(seconds(caller_at_bridge) + 2.0, timeout=TIMEOUT)
    await buyer.wait_heard(seconds(key_at) + 2.0, timeout=TIMEOUT)
    await hang_up(buyer, caller)

    # call-flow 1.1: early media first, the answer only once the buyer has accepted.
    assert progress.received_at < established.received_at
    assert established.received_at >= pressed
    assert caller.control.types().count("CALL_ESTABLISHED") == 1
    call = await finished_call(server)
    assert ("caller_answered", "A") in kinds(call)
    assert kinds(call).index(("accept", "B1")) < kinds(call).index(("caller_answered", "A"))
    assert call.outcome == "connected"
    assert leg_ends(call)["B1"]["reason"] == "hangup"

    (caller_dump,) = caller.dumps()
    heard = heard_audio(caller_dump)
    # call-flow 1.2: until the bridge, ringback and its pauses only: no whisper, no buyer.
    before = classify(heard.slice(0, seconds(caller_at_key)), RINGBACK)
    assert set(before) <= {"tone", "silence"}
    assert before.count("tone") >= 10
    assert not is_speech_like(heard.slice(0, seconds(caller_at_key)))
    assert mostly_tone(heard.slice(seconds(caller_at_bridge) + 0.5), BUYER_TONE)

    (buyer_dump,) = buyer.dumps()
    heard_by_buyer = heard_audio(buyer_dump)
    assert is_speech_like(heard_by_buyer.slice(0, seconds(key_at)))
    assert mostly_tone(heard_by_buyer.slice(seconds(key_at) + 0.5), CALLER_TONE)


async def test_baresip_caller_hanging_up_during_the_whisper_ends_the_buyer_leg_unbridged(
    baresip: BaresipLauncher, start_server: StartServer
) -> None:
    """call-flow 4: the caller's CANCEL during the whisper sends the buyer a BYE; no bridge."""
    buyer, caller, server = await phones_and_server(baresip, start_server, answermode="auto")

    await dial(caller, server)
    await buyer.control.wait_for("CALL_ESTABLISHED", timeout=TIMEOUT)
    await buyer.wait_heard(1.0, timeout=TIMEOUT)
    closed = await hang_up(caller, buyer)

    assert closed.param == "Connection reset by peer"  # baresip's words for a BYE received
    assert "CALL_ESTABLISHED" not in caller.control.types()
    assert "CALL_DTMF_START" not in buyer.control.types()
    call = await finished_call(server)
    timeline = kinds(call)
    assert ("whisper_start", "B1") in timeline
    assert not {("accept", "B1"), ("bridge", "B1"), ("caller_answered", "A")} & set(timeline)
    assert call.outcome == "caller_hangup"
    assert call.answered_at is None
    ends = leg_ends(call)
    assert ends["A"]["by"] == "caller"
    assert (ends["B1"]["reason"], ends["B1"]["by"]) == ("canceled", "system")


async def test_baresip_caller_on_hold_gets_no_media_and_is_heard_again_on_resume(
    baresip: BaresipLauncher, start_server: StartServer, whisper_speech: Audio
) -> None:
    """RFC 3264 6.1: baresip's hold re-INVITE (sendonly) stops our media to it; resume restarts."""
    buyer, caller, server = await phones_and_server(baresip, start_server, answermode="manual")

    key_at = await bridged_after_the_whisper(caller, buyer, server, whisper_speech)
    assert server.media is not None
    to_caller = next(leg for name, leg in server.media.legs.items() if name.endswith("/A"))
    from_buyer = next(leg for name, leg in server.media.legs.items() if name.endswith("/B1"))
    await buyer.wait_heard(seconds(key_at) + 1.0, timeout=TIMEOUT)

    await caller.control.command("hold")
    await wait_for_state(lambda: not to_caller.sends)
    sent, received = to_caller.counters.packets_out, from_buyer.counters.packets_in
    await asyncio.sleep(1.0)
    assert to_caller.counters.packets_out == sent
    assert from_buyer.counters.packets_in >= received + 10  # the buyer went on talking
    held_at = heard_so_far(buyer)

    await caller.control.command("resume")
    await wait_for_state(lambda: to_caller.sends)
    await buyer.wait_heard(seconds(held_at) + 2.0, timeout=TIMEOUT)
    assert to_caller.counters.packets_out > sent
    await hang_up(caller, buyer)

    call = await finished_call(server)
    assert call.outcome == "connected"
    (dump,) = buyer.dumps()
    assert mostly_tone(heard_audio(dump).slice(seconds(held_at) + 0.5), CALLER_TONE)


async def test_buyer_answering_early_rings_and_is_whispered_only_after_its_200(
    baresip: BaresipLauncher, start_server: StartServer, whisper_speech: Audio
) -> None:
    """call-flow 5: baresip's early answer (180, then 183 with SDP) rings; the 200 OK answers."""
    buyer, caller, server = await phones_and_server(baresip, start_server, answermode="early")

    await dial(caller, server)
    # baresip reports nothing over ctrl_tcp for a call it answers early: the server tells.
    await wait_for_entry(server, "ringing")
    await asyncio.sleep(1.0)  # a while in early media, which must not start the whisper
    await buyer.control.accept()
    await buyer.control.wait_for("CALL_ESTABLISHED", timeout=TIMEOUT)
    key_at = await answer_and_hear_the_whisper(buyer, whisper_speech, answered=True)
    await press_1(buyer, caller)
    await hang_up(caller, buyer)

    call = await finished_call(server)
    (ringing,) = [event for event in call.events if event.kind == "ringing"]
    (answer,) = [event for event in call.events if event.kind == "answer"]
    assert (answer.at - ringing.at).total_seconds() >= 1.0
    assert ringing.data == {"early_media": "no"}  # the 180 came first
    timeline = kinds(call)
    # ... then the 183 with SDP: early media noted once, still no whisper before the 200.
    assert timeline.index(("early_media", "B1")) < timeline.index(("answer", "B1"))
    assert timeline.index(("answer", "B1")) < timeline.index(("whisper_start", "B1"))
    assert call.outcome == "connected"
    (dump,) = buyer.dumps()
    assert envelope_match(heard_audio(dump).slice(0, seconds(key_at)), whisper_speech) > 0.8
