"""The IVR that runs before routing: prompts, digits, branches and tags.

The caller has been answered (call-flow 3). Each node plays its prompt and
collects up to ``digits`` keys; a key during the prompt interrupts it; input
ends on ``finish_on_key``, on the last digit, or ``timeout_seconds`` after
the prompt (or the last key). The answer then picks a branch:

- an answer listed in ``branches`` takes that branch;
- on a node without branches (free input such as a ZIP code), any answer
  takes ``default``, or goes on to routing;
- no input or an unknown answer replays the node, ``retries`` times; after
  that ``default`` is taken, or the call is hung up.

The answer is stored as the node's ``tag`` and a branch's ``set_tags`` are
added: routing filters and whisper templates see them as call tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from callwhisper.domain.ivr import Ivr, IvrBranch, IvrNode
from callwhisper.flow.commands import CollectDigits, PlayAudio, PlayText, StopPlayback
from callwhisper.flow.outbox import Outbox
from callwhisper.flow.record import CALLER
from callwhisper.flow.states import IVR_MOVES, IvrState, check_move
from callwhisper.flow.template import render

_HANG_UP = IvrBranch(action="hangup")


@dataclass(frozen=True, slots=True)
class IvrResult:
    """Where the IVR ended: ``route``, ``hangup`` or ``reject``."""

    action: Literal["route", "hangup", "reject"]


class IvrRunner:
    """Runs an :class:`~callwhisper.domain.ivr.Ivr` on the caller's leg.

    Drive it with :meth:`start`, then :meth:`key`, :meth:`playback_finished`
    and :meth:`timer` (when :attr:`deadline` is due) until :attr:`result` is set.
    """

    def __init__(self, ivr: Ivr, variables: dict[str, str], out: Outbox) -> None:
        self.ivr = ivr
        self.state = IvrState.PROMPTING
        self.deadline: float | None = None
        self.result: IvrResult | None = None
        self._variables = variables
        self._out = out
        self._node = ivr.node(ivr.start)
        self._attempt = 0
        self._digits = ""
        self._play_id = 0
        self._closing: IvrResult | None = None

    def start(self, now: float) -> None:
        """Ask the first question."""
        self._prompt(self._node, now)

    def key(self, key: str, now: float) -> None:
        """A key from the caller."""
        if self.state not in (IvrState.PROMPTING, IvrState.COLLECTING):
            return
        self._out.note(now, "key", CALLER, key=key, meaning=f"ivr {self._node.id}")
        if self.state is IvrState.PROMPTING:
            self._out.send(StopPlayback(CALLER, self._play_id))
            self._move(IvrState.COLLECTING)
        if key == self._node.finish_on_key:
            self._answer(now)
            return
        self._digits += key
        if len(self._digits) >= self._node.digits:
            self._answer(now)
        else:
            self.deadline = now + self._node.timeout_seconds

    def playback_finished(self, play_id: int, now: float) -> None:
        """A prompt or closing message ended; stale ids are ignored."""
        if play_id != self._play_id:
            return
        if self.state is IvrState.PROMPTING:
            self._move(IvrState.COLLECTING)
            self.deadline = now + self._node.timeout_seconds
        elif self.state is IvrState.CLOSING:
            assert self._closing is not None
            self._finish(self._closing)

    def timer(self, now: float) -> None:
        """The input timeout: whatever was typed so far is the answer."""
        self.deadline = None
        self._answer(now)

    def _prompt(self, node: IvrNode, now: float) -> None:
        self._move(IvrState.PROMPTING)
        self._node = node
        self._digits = ""
        self.deadline = None
        self._out.send(CollectDigits(CALLER, node.digits, node.finish_on_key, node.timeout_seconds))
        self._play(node.say, node.play)
        self._out.note(now, "ivr_prompt", CALLER, node=node.id, attempt=str(self._attempt + 1))

    def _play(self, text: str | None, path: str | None) -> None:
        self._play_id = self._out.play_id()
        if text is not None:
            spoken = render(text, self._variables, {})
            self._out.send(PlayText(CALLER, self._play_id, spoken, self.ivr.voice))
        else:
            assert path is not None
            self._out.send(PlayAudio(CALLER, self._play_id, path))

    def _answer(self, now: float) -> None:
        node, answer = self._node, self._digits
        self.deadline = None
        self._out.note(now, "ivr_answer", CALLER, node=node.id, answer=answer)
        branch = node.branches.get(answer)
        if branch is None and answer and not node.branches:
            branch = node.default or IvrBranch(action="route")
        if branch is None and self._attempt < node.retries:
            self._attempt += 1
            self._prompt(node, now)
            return
        if branch is None:
            branch = node.default or _HANG_UP
        self._take(branch, answer, now)

    def _take(self, branch: IvrBranch, answer: str, now: float) -> None:
        tags = dict(branch.set_tags)
        if self._node.tag and answer:
            tags[self._node.tag] = answer
        for name, value in tags.items():
            self._variables[name] = value
            self._out.note(now, "tag", CALLER, name=name, value=value)
        self._attempt = 0
        action = branch.action
        if action == "goto":
            assert branch.node is not None
            self._prompt(self.ivr.node(branch.node), now)
        elif branch.message is not None:
            self._move(IvrState.CLOSING)
            self._closing = IvrResult(action)
            self._play(branch.message, None)
        else:
            self._finish(IvrResult(action))

    def _finish(self, result: IvrResult) -> None:
        self._move(IvrState.DONE)
        self.result = result

    def _move(self, to: IvrState) -> None:
        check_move("ivr", IVR_MOVES, self.state, to)
        self.state = to
