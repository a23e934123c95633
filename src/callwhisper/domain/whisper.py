"""What the buyer hears before accepting a call, and how it accepts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from callwhisper.domain.base import Model

AcceptMode = Literal["press_key", "any_key", "auto"]
DtmfKey = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"]


class TtsVoice(Model):
    """How text is turned into speech."""

    engine: str = Field(default="espeak-ng", description="Text-to-speech engine, by name.")
    voice: str = Field(default="en-us", description="Voice or language of the engine.")
    rate: int = Field(default=165, ge=80, le=400, description="Speaking rate, words per minute.")


class WhisperConfig(Model):
    """The whisper played to a buyer leg only, and its accept gate.

    Either ``text`` (a template with ``{variables}``, spoken by ``voice``) or
    ``audio`` (a recording) is played. In ``press_key`` mode the buyer accepts
    with ``accept_key``, may decline with ``reject_key``, and a key pressed
    during the prompt interrupts it; after the prompt ends we wait
    ``wait_seconds`` for a key and replay it, ``plays`` times in all.
    """

    text: str | None = Field(
        default=None, description="Template such as 'Auto lead from {caller_state}, press 1'."
    )
    audio: str | None = Field(default=None, description="Path of a recording to play instead.")
    voice: TtsVoice = Field(default_factory=TtsVoice, description="Voice for text whispers.")
    accept_mode: AcceptMode = Field(
        default="press_key", description="press_key, any_key, or auto (bridge after playing)."
    )
    accept_key: DtmfKey = Field(default="1", description="Key that accepts (press_key mode).")
    reject_key: DtmfKey | None = Field(default="2", description="Key that declines, if any.")
    wait_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Seconds to wait for a key after the prompt ends."
    )
    plays: int = Field(default=2, ge=1, le=10, description="Times the prompt is played in all.")
    defaults: dict[str, str] = Field(
        default_factory=dict, description="Text used for a template variable the call lacks."
    )
    max_seconds: float = Field(
        default=5.0, gt=0, description="Longest whisper before the linter warns, in seconds."
    )

    @model_validator(mode="after")
    def _consistent(self) -> WhisperConfig:
        if self.text is None and self.audio is None:
            raise ValueError("a whisper needs text or audio")
        if self.text is not None and self.audio is not None:
            raise ValueError("a whisper has text or audio, not both")
        if self.reject_key is not None and self.reject_key == self.accept_key:
            raise ValueError("reject_key must differ from accept_key")
        if self.accept_mode == "press_key" and self.accept_key == "#":
            raise ValueError("'#' cannot be the accept key: it means no key")
        return self
