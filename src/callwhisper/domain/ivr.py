"""Interactive voice response: questions asked to the caller before routing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from callwhisper.domain.base import Identifier, Model
from callwhisper.domain.whisper import TtsVoice

IvrAction = Literal["goto", "route", "hangup", "reject"]


class IvrBranch(Model):
    """Where an answer leads: another node, routing, a hang-up or a rejection."""

    action: IvrAction = Field(description="goto (another node), route, hangup or reject.")
    node: Identifier | None = Field(default=None, description="Target node of a goto.")
    set_tags: dict[str, str] = Field(
        default_factory=dict, description="Tags set on the call when this branch is taken."
    )
    message: str | None = Field(
        default=None, description="Text spoken before a hangup or rejection."
    )

    @model_validator(mode="after")
    def _node_for_goto(self) -> IvrBranch:
        if (self.action == "goto") != (self.node is not None):
            raise ValueError("node is required with action goto, and only with it")
        return self


class IvrNode(Model):
    """One prompt: say or play it, collect digits, and branch on the answer."""

    id: Identifier = Field(description="Node id, referred to by goto branches.")
    say: str | None = Field(default=None, description="Prompt text (spoken with the IVR voice).")
    play: str | None = Field(default=None, description="Prompt recording path.")
    digits: int = Field(default=1, ge=1, le=20, description="Most digits to collect.")
    finish_on_key: Literal["#", "*"] | None = Field(
        default="#", description="Key that ends the input early."
    )
    timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Seconds to wait for input after the prompt."
    )
    retries: int = Field(
        default=2, ge=0, le=10, description="Replays on no input or an unknown answer."
    )
    tag: str | None = Field(default=None, description="Tag that stores the caller's answer.")
    branches: dict[str, IvrBranch] = Field(
        default_factory=dict, description="Answer (digits) to branch."
    )
    default: IvrBranch | None = Field(
        default=None, description="Branch for any other answer, and after the retries."
    )

    @model_validator(mode="after")
    def _prompt(self) -> IvrNode:
        if (self.say is None) == (self.play is None):
            raise ValueError("an IVR node needs exactly one of say or play")
        return self


class Ivr(Model):
    """The questions asked before routing; answers become call tags."""

    start: Identifier = Field(description="Id of the first node.")
    nodes: list[IvrNode] = Field(min_length=1, description="The prompts.")
    voice: TtsVoice = Field(default_factory=TtsVoice, description="Voice of spoken prompts.")

    @model_validator(mode="after")
    def _references(self) -> Ivr:
        ids = [node.id for node in self.nodes]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate node ids: {', '.join(duplicates)}")
        if self.start not in ids:
            raise ValueError(f"start node {self.start!r} does not exist")
        for node in self.nodes:
            branches = list(node.branches.values()) + ([node.default] if node.default else [])
            for branch in branches:
                if branch.node is not None and branch.node not in ids:
                    raise ValueError(f"node {node.id!r} goes to unknown node {branch.node!r}")
        return self

    def node(self, node_id: str) -> IvrNode:
        """The node with id ``node_id``."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)
