"""The accept gate of one answered buyer leg (call-flow 7 to 10).

The gate plays the whisper to the buyer leg only, listens for keys and gives
its verdict: :attr:`AcceptGate.accepted`, or a :attr:`AcceptGate.declined`
reason. It owns one timer, the wait for a key after a prompt.
"""

from __future__ import annotations

from callwhisper.domain.whisper import WhisperConfig
from callwhisper.flow.commands import CollectDigits, PlayAudio, PlayText, StopPlayback
from callwhisper.flow.outbox import Outbox
from callwhisper.flow.reasons import DeclineReason
from callwhisper.flow.states import GATE_MOVES, GateState, check_move
from callwhisper.flow.template import render

NO_KEY = "#"
"""call-flow 8: ``#`` alone is no key."""


class AcceptGate:
    """Whisper, keys and verdict of one buyer leg.

    ``variables`` fill the whisper template (call-flow 7). Drive it with
    :meth:`start`, then :meth:`key`, :meth:`playback_finished`, :meth:`timer`
    (when :attr:`deadline` is due), :meth:`machine` or :meth:`hangup`.
    """

    def __init__(
        self, leg: str, whisper: WhisperConfig, variables: dict[str, str], out: Outbox
    ) -> None:
        self.leg = leg
        self.whisper = whisper
        self.state = GateState.PROMPTING
        self.deadline: float | None = None
        self.declined: DeclineReason | None = None
        self._text = render(whisper.text, variables, whisper.defaults) if whisper.text else None
        self._out = out
        self._plays = 0
        self._play_id = 0

    @property
    def accepted(self) -> bool:
        """Whether the buyer accepted."""
        return self.state is GateState.ACCEPTED

    def start(self, now: float) -> None:
        """Begin the whisper, right after the leg answered (call-flow 7)."""
        if self.whisper.accept_mode != "auto":
            self._out.send(CollectDigits(self.leg, 1, None, self.whisper.wait_seconds))
        self._play(now)

    def key(self, key: str, now: float) -> None:
        """A key from the buyer leg (call-flow 8)."""
        meaning = self._meaning(key)
        self._out.note(now, "key", self.leg, key=key, meaning=meaning)
        if meaning in ("none", "ignored"):
            return
        if self.state is GateState.PROMPTING:
            # call-flow 8: a key during the prompt interrupts it (barge-in).
            self._out.send(StopPlayback(self.leg, self._play_id))
            self._out.note(now, "whisper_end", self.leg, play=str(self._plays), how="interrupted")
        if meaning == "accept":
            self._move(GateState.ACCEPTED)
        elif meaning == "reject":
            self._decline("reject_key")
        elif self._plays < self.whisper.plays:
            # call-flow 8: a wrong key replays the prompt and counts as an attempt.
            self._play(now)
        else:
            self._decline("wrong_key")

    def playback_finished(self, play_id: int, now: float) -> None:
        """The whisper ``play_id`` ended; stale ids (stopped playbacks) are ignored."""
        if play_id != self._play_id or self.state is not GateState.PROMPTING:
            return
        self._out.note(now, "whisper_end", self.leg, play=str(self._plays), how="finished")
        if self.whisper.accept_mode == "auto":
            # call-flow 8: auto bridges when the announcement has played.
            self._move(GateState.ACCEPTED)
            return
        self._move(GateState.WAITING)
        self.deadline = now + self.whisper.wait_seconds

    def timer(self, now: float) -> None:
        """No key within the wait after the prompt: replay, or decline by ``timeout``."""
        self.deadline = None
        if self._plays < self.whisper.plays:
            self._play(now)
        else:
            # call-flow 10: a voicemail box presses nothing and ends here.
            self._decline("timeout")

    def machine(self) -> None:
        """Answering-machine detection says machine (call-flow 9)."""
        self._decline("machine")

    def hangup(self) -> None:
        """The buyer hung up during the whisper (call-flow 9)."""
        self._decline("buyer_hangup")

    def _meaning(self, key: str) -> str:
        mode = self.whisper.accept_mode
        if key == NO_KEY:
            return "none"
        if mode == "auto":
            return "ignored"
        if mode == "any_key" or key == self.whisper.accept_key:
            return "accept"
        if key == self.whisper.reject_key:
            return "reject"
        return "wrong"

    def _play(self, now: float) -> None:
        self._move(GateState.PROMPTING)
        self._plays += 1
        self._play_id = self._out.play_id()
        self.deadline = None
        if self._text is not None:
            self._out.send(PlayText(self.leg, self._play_id, self._text, self.whisper.voice))
        else:
            assert self.whisper.audio is not None
            self._out.send(PlayAudio(self.leg, self._play_id, self.whisper.audio))
        self._out.note(now, "whisper_start", self.leg, play=str(self._plays))

    def _decline(self, reason: DeclineReason) -> None:
        self._move(GateState.DECLINED)
        self.deadline = None
        self.declined = reason

    def _move(self, to: GateState) -> None:
        check_move(f"accept gate {self.leg}", GATE_MOVES, self.state, to)
        self.state = to
