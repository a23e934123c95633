"""The public exception hierarchy of callwhisper.

Every error says whose fault it was: ours (``Local...``), the remote peer's
(``Remote...``) or the operator's configuration. Protocol errors carry the
protocol's own status code so the layer boundary can answer with it.

    CallwhisperError
    ├── ConfigError                 a configuration file or object is invalid
    ├── StoreError                  the database refused or failed an operation
    │   └── CapExceeded             a cap slot could not be reserved
    ├── FlowError                   the call flow was driven wrongly
    │   └── IllegalTransition       an event that the current state does not accept
    ├── ProtocolError               a wire protocol was violated
    │   ├── LocalProtocolError      we tried to do something the protocol forbids
    │   └── RemoteProtocolError     the peer sent something malformed or illegal
    │       ├── SipParseError       a SIP message could not be parsed (status 400)
    │       ├── SdpError            an SDP body is malformed or unacceptable (400/488)
    │       └── RtpError            an RTP/RTCP packet is malformed
    └── AudioError                  audio could not be read, converted or rendered
"""

from __future__ import annotations


class CallwhisperError(Exception):
    """Base class of every error raised on purpose by callwhisper."""


class ConfigError(CallwhisperError):
    """A configuration is invalid; ``problems`` lists every problem with its location."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems) if self.problems else "invalid configuration")


class StoreError(CallwhisperError):
    """The store could not carry out an operation."""


class CapExceeded(StoreError):
    """A cap slot could not be reserved because a limit is reached."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class FlowError(CallwhisperError):
    """The call flow was driven in a way it does not allow."""


class IllegalTransition(FlowError):
    """An event arrived that the current state does not accept; the state is unchanged."""

    def __init__(self, machine: str, state: str, event: str) -> None:
        self.machine = machine
        self.state = state
        self.event = event
        super().__init__(f"{machine}: event {event} is not allowed in state {state}")


class ProtocolError(CallwhisperError):
    """A wire protocol was violated. ``status_hint`` is the protocol status to answer with."""

    def __init__(self, message: str, status_hint: int | None = None) -> None:
        self.status_hint = status_hint
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """We were about to violate the protocol (a bug on our side, or a misuse of the API)."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol."""


class SipParseError(RemoteProtocolError):
    """A SIP message could not be parsed; answer ``400 Bad Request`` when it is a request."""

    def __init__(self, message: str, status_hint: int | None = 400) -> None:
        super().__init__(message, status_hint)


class SdpError(RemoteProtocolError):
    """An SDP body is malformed (400) or offers nothing we can use (488)."""


class RtpError(RemoteProtocolError):
    """An RTP or RTCP packet is malformed."""


class AudioError(CallwhisperError):
    """Audio could not be read, converted or rendered."""
