"""The SIP transaction layer, sans-I/O (RFC 3261 17, with the RFC 6026 Accepted states).

:class:`TransactionLayer` is the whole public surface, shaped like aioquic's
connection: feed it what arrives (``receive_datagram`` / ``receive_message``)
and what the TU wants to send (``send_request``, ``send_response``,
``cancel``), then collect ``messages_to_send()`` and ``next_event()``, and
call ``handle_timer(now)`` when ``get_timer()`` says so. It never reads a
clock, opens a socket or sleeps.

The four machines' states and legal transitions live in :data:`TRANSITIONS`;
an input missing from the table raises :class:`LocalProtocolError` and leaves
the state unchanged. Inputs the peer can cause (a late response, a
retransmitted request) are all in the table, so a peer can never make the
layer raise.

Two UAS/UAC core rules are hosted here too because they share the same
window as the RFC 6026 Accepted state: a 2xx to INVITE is retransmitted until
its ACK arrives (RFC 3261 13.3.1.4), and CANCEL is answered with 200 and the
INVITE with 487 (9.2).
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Final, Literal, NamedTuple, TypeAlias

from callwhisper.errors import LocalProtocolError, SipParseError
from callwhisper.sip.headers import BRANCH_MAGIC_COOKIE
from callwhisper.sip.message import (
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    error_response,
    make_response,
    new_tag,
    parse_message,
)
from callwhisper.sip.timers import DEFAULT_TIMERS, TimerConfig

__all__ = [
    "TRANSITIONS",
    "Address",
    "InviteCancelled",
    "Kind",
    "RequestReceived",
    "ResponseReceived",
    "State",
    "TransactionEvent",
    "TransactionFailed",
    "TransactionKey",
    "TransactionLayer",
    "build_ack_for_error",
    "build_cancel",
]

Address: TypeAlias = tuple[str, int]


class State(StrEnum):
    """Transaction states (RFC 3261 17.1 and 17.2; Accepted from RFC 6026 7)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


# The states as module constants, for the methods below: through the enum's metaclass
# every ``State.X`` is a lookup of some 500 instructions, a module constant about 20.
_CALLING: Final = State.CALLING
_TRYING: Final = State.TRYING
_PROCEEDING: Final = State.PROCEEDING
_COMPLETED: Final = State.COMPLETED
_ACCEPTED: Final = State.ACCEPTED
_TERMINATED: Final = State.TERMINATED


class Kind(StrEnum):
    """The four transaction machines (RFC 3261 17.1.1, 17.1.2, 17.2.1, 17.2.2)."""

    INVITE_CLIENT = "INVITE client"
    NON_INVITE_CLIENT = "non-INVITE client"
    INVITE_SERVER = "INVITE server"
    NON_INVITE_SERVER = "non-INVITE server"


Input = Literal[
    "recv_1xx",
    "recv_2xx",
    "recv_3xx_6xx",
    "recv_request",
    "recv_ack",
    "send_1xx",
    "send_2xx",
    "send_3xx_6xx",
    "transport_error",
    "timer_A",
    "timer_B",
    "timer_D",
    "timer_E",
    "timer_F",
    "timer_G",
    "timer_H",
    "timer_I",
    "timer_J",
    "timer_K",
    "timer_L",
    "timer_M",
    "timer_trying",
    "timer_2xx",
    "timer_cancel",
]

_S = State
# Timer names: A-M are RFC 3261 17 / RFC 6026 8.11; "trying" is the 200 ms
# 100 Trying rule (17.2.1), "2xx" the 2xx retransmission (13.3.1.4) and
# "cancel" the 64*T1 wait for a final response after CANCEL (9.1).
TRANSITIONS: Final[Mapping[Kind, Mapping[State, Mapping[Input, State]]]] = {
    Kind.INVITE_CLIENT: {
        _S.CALLING: {
            "recv_1xx": _S.PROCEEDING,
            "recv_2xx": _S.ACCEPTED,
            "recv_3xx_6xx": _S.COMPLETED,
            "timer_A": _S.CALLING,
            "timer_B": _S.TERMINATED,
            "transport_error": _S.TERMINATED,
        },
        _S.PROCEEDING: {
            "recv_1xx": _S.PROCEEDING,
            "recv_2xx": _S.ACCEPTED,
            "recv_3xx_6xx": _S.COMPLETED,
            "timer_cancel": _S.TERMINATED,
            "transport_error": _S.TERMINATED,
        },
        _S.COMPLETED: {
            "recv_1xx": _S.COMPLETED,
            "recv_2xx": _S.COMPLETED,
            "recv_3xx_6xx": _S.COMPLETED,
            "timer_D": _S.TERMINATED,
            "transport_error": _S.TERMINATED,
        },
        _S.ACCEPTED: {
            "recv_1xx": _S.ACCEPTED,
            "recv_2xx": _S.ACCEPTED,
            "recv_3xx_6xx": _S.ACCEPTED,
            "timer_M": _S.TERMINATED,
            "transport_error": _S.TERMINATED,
        },
        _S.TERMINATED: {},
    },
    Kind.NON_INVITE_CLIENT: {
        _S.TRYING: {
            "recv_1xx": _S.PROCEEDING,
            "recv_2xx": _S.COMPLETED,
            "recv_3xx_6xx": _S.COMPLETED,
            "timer_E": _S.TRYING,
            "timer_F": _S.TERMINATED,
            "transport_error": _S.TERMINATED,
        },
        _S.PROCEEDING: {
            "recv_1xx": _S.PROCEEDING,
            "recv_2xx": _S.COMPLETED,
            "recv_3xx_6xx": _S.COMPLETED,
            "timer_E": _S.PROCEEDING,
            "timer_F": _S.TERMINATED,
            "transport_error": _S.TERMINATED,
        },
        _S.COMPLETED: {
            "recv_1xx": _S.COMPLETED,
            "recv_2xx": _S.COMPLETED,
            "recv_3xx_6xx": _S.COMPLETED,
            "timer_K": _S.TERMINATED,
            "transport_error": _S.TERMINATED,
        },
        _S.TERMINATED: {},
    },
    Kind.INVITE_SERVER: {
        _S.PROCEEDING: {
            "recv_request": _S.PROCEEDING,
            "recv_ack": _S.PROCEEDING,
            "send_1xx": _S.PROCEEDING,
            "send_2xx": _S.ACCEPTED,
            "send_3xx_6xx": _S.COMPLETED,
            "timer_trying": _S.PROCEEDING,
            "transport_error": _S.TERMINATED,
        },
        _S.COMPLETED: {
            "recv_request": _S.COMPLETED,
            "recv_ack": _S.CONFIRMED,
            "timer_G": _S.COMPLETED,
            "timer_H": _S.TERMINATED,
            "transport_error": _S.TERMINATED,
        },
        _S.CONFIRMED: {
            "recv_request": _S.CONFIRMED,
            "recv_ack": _S.CONFIRMED,
            "timer_I": _S.TERMINATED,
            "transport_error": _S.TERMINATED,
        },
        _S.ACCEPTED: {
            "recv_request": _S.ACCEPTED,
            "recv_ack": _S.ACCEPTED,
            "send_2xx": _S.ACCEPTED,
            "timer_2xx": _S.ACCEPTED,
            "timer_L": _S.TERMINATED,
            "transport_error": _S.TERMINATED,
        },
        _S.TERMINATED: {},
    },
    Kind.NON_INVITE_SERVER: {
        _S.TRYING: {
            "recv_request": _S.TRYING,
            "send_1xx": _S.PROCEEDING,
            "send_2xx": _S.COMPLETED,
            "send_3xx_6xx": _S.COMPLETED,
            "transport_error": _S.TERMINATED,
        },
        _S.PROCEEDING: {
            "recv_request": _S.PROCEEDING,
            "send_1xx": _S.PROCEEDING,
            "send_2xx": _S.COMPLETED,
            "send_3xx_6xx": _S.COMPLETED,
            "transport_error": _S.TERMINATED,
        },
        _S.COMPLETED: {
            "recv_request": _S.COMPLETED,
            "timer_J": _S.TERMINATED,
            "transport_error": _S.TERMINATED,
        },
        _S.TERMINATED: {},
    },
}

_INITIAL: Final[Mapping[Kind, State]] = {
    Kind.INVITE_CLIENT: _S.CALLING,
    Kind.NON_INVITE_CLIENT: _S.TRYING,
    Kind.INVITE_SERVER: _S.PROCEEDING,
    Kind.NON_INVITE_SERVER: _S.TRYING,
}


class TransactionKey(NamedTuple):
    """Identifies a transaction: top Via branch and method, plus sent-by on the server side.

    RFC 3261 17.1.3 and 17.2.3; ACK is matched under method INVITE and CANCEL
    has its own key. For RFC 2543 peers (no magic cookie) ``branch`` holds
    the fallback identity built from Call-ID, From tag, CSeq and top Via.
    A tuple: every message looks its transaction up by one, and a tuple's
    hash and equality cost a fraction of a dataclass's.
    """

    branch: str
    method: str
    sent_by: str = ""


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU; ``key`` is None for an ACK, which has no transaction."""

    request: SipRequest
    source: Address
    key: TransactionKey | None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response the client transaction passes up (1xx, every 2xx, the first final)."""

    response: SipResponse
    key: TransactionKey


@dataclass(frozen=True, slots=True)
class InviteCancelled:
    """The peer cancelled a pending INVITE: 200 went to the CANCEL and 487 to the INVITE."""

    key: TransactionKey
    cancel: SipRequest


@dataclass(frozen=True, slots=True)
class TransactionFailed:
    """A transaction ended without its expected answer.

    ``reason`` is ``"Timer B"``/``"Timer F"`` (no response: treat as 408),
    ``"Timer H"`` (no ACK for our error response), ``"no ACK for 2xx"``
    (13.3.1.4: the session should be ended with BYE), ``"no final response
    after CANCEL"`` (9.1) or ``"transport error"``.
    """

    key: TransactionKey
    reason: str


TransactionEvent: TypeAlias = (
    RequestReceived | ResponseReceived | InviteCancelled | TransactionFailed
)


StatusClass = Literal["1xx", "2xx", "3xx_6xx"]
_RECV: Final[Mapping[StatusClass, Input]] = {
    "1xx": "recv_1xx",
    "2xx": "recv_2xx",
    "3xx_6xx": "recv_3xx_6xx",
}
_SEND: Final[Mapping[StatusClass, Input]] = {
    "1xx": "send_1xx",
    "2xx": "send_2xx",
    "3xx_6xx": "send_3xx_6xx",
}


def _status_class(status: int) -> StatusClass:
    if status < 200:
        return "1xx"
    return "2xx" if status < 300 else "3xx_6xx"


def server_key(message: SipMessage, method: str) -> TransactionKey:
    """The server transaction a request or our response to it belongs to (17.2.3)."""
    via = message.top_via
    branch = via.branch
    if branch is not None and branch.startswith(BRANCH_MAGIC_COOKIE):
        return TransactionKey(branch, method, via.sent_by)
    # RFC 2543 peers: Call-ID, From tag, CSeq number and top Via identify it.
    fallback = "|".join((message.call_id, message.from_.tag or "", str(message.cseq.seq), str(via)))
    return TransactionKey(fallback, method)


def client_key(message: SipMessage) -> TransactionKey:
    """The client transaction a response matches (17.1.3): top branch and CSeq method."""
    return TransactionKey(message.top_via.branch or "", message.cseq.method)


def _copy_headers(request: SipRequest, names: tuple[str, ...]) -> Headers:
    """The request's top Via, then its lines named in ``names``, in their order."""
    headers = Headers()
    headers.add("Via", str(request.top_via))
    for name, value in request.headers:
        if name in names:
            headers.add(name, value)
    return headers


def build_ack_for_error(request: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK an INVITE client transaction sends for a 300-699 response (17.1.1.3)."""
    headers = _copy_headers(request, ("Route", "From", "Call-ID"))
    headers.add("To", response.headers.get("To") or "")
    headers.add("CSeq", f"{request.cseq.seq} ACK")
    headers.add("Max-Forwards", "70")
    return SipRequest("ACK", request.uri, headers)


def build_cancel(request: SipRequest) -> SipRequest:
    """A CANCEL for a pending request (9.1): same URI, Call-ID, From, To, CSeq number, top Via."""
    headers = _copy_headers(request, ("Route", "From", "To", "Call-ID"))
    headers.add("CSeq", f"{request.cseq.seq} CANCEL")
    headers.add("Max-Forwards", "70")
    return SipRequest("CANCEL", request.uri, headers)


# The states in which a transaction still sends its request or first response.
_LIVE: Final = frozenset({_CALLING, _TRYING, _PROCEEDING})


class _Transaction(ABC):
    """State, timers and retransmission buffer shared by the four machines.

    A transaction keeps its request only while it may still build from it
    (CANCEL, the ACK of an error response, 100 Trying, 487); once it has a
    final response it keeps only bytes to resend and what matches the peer's
    retransmissions, so the 64*T1 it may wait in Accepted or Completed holds
    a few small objects, not the parsed messages.
    """

    __slots__ = ("interval", "key", "layer", "peer", "reliable", "state", "timers")

    kind: ClassVar[Kind]

    def __init__(
        self, layer: TransactionLayer, key: TransactionKey, peer: Address, reliable: bool
    ) -> None:
        self.layer = layer
        self.key = key
        self.peer = peer
        self.reliable = reliable
        self.state = _INITIAL[self.kind]
        self.timers: dict[Input, float] = {}
        # A transaction runs at most one retransmission timer (A, E, G or 2xx).
        self.interval = layer.config.t1

    @property
    def config(self) -> TimerConfig:
        return self.layer.config

    def _transition(self, event: Input) -> State:
        """Apply ``event`` from the table and return the previous state."""
        new = TRANSITIONS[self.kind][self.state].get(event)
        if new is None:
            raise LocalProtocolError(
                f"{self.kind} transaction: event {event} is not allowed in state {self.state}"
            )
        old, self.state = self.state, new
        if new not in _LIVE:
            self._settle()
        if new is _TERMINATED:
            self.timers.clear()
            self.layer._forget(self)
        return old

    @abstractmethod
    def _settle(self) -> None:
        """Drop what only a live transaction needs (see the class docstring)."""

    def _start(self, name: Input, delay: float, now: float) -> None:
        if delay <= 0:
            self.handle_timer(name, now)
            return
        deadline = now + delay
        self.timers[name] = deadline
        self.layer._schedule(deadline, self, name)

    def _stop(self, *names: Input) -> None:
        for name in names:
            self.timers.pop(name, None)

    def _send(self, data: bytes) -> None:
        self.layer._outbox.append((data, self.peer))

    def _double(self, cap: float | None) -> float:
        """The next retransmission interval: doubled, capped at ``cap`` (T2)."""
        interval = self.interval * 2
        if cap is not None:
            interval = min(interval, cap)
        self.interval = interval
        return interval

    def transport_error(self) -> None:
        """The transport could not deliver our message (17.1.4, 17.2.4)."""
        self._transition("transport_error")
        self.layer._events.append(TransactionFailed(self.key, "transport error"))

    @abstractmethod
    def handle_timer(self, name: Input, now: float) -> None:
        """React to the expiry of timer ``name``."""


class _ClientTransaction(_Transaction):
    __slots__ = ("data",)

    retransmit_timer: ClassVar[Input]
    """Timer A or E: resends the request on unreliable transports."""
    timeout_timer: ClassVar[Input]
    """Timer B or F: gives up when no final response comes."""

    def __init__(
        self,
        layer: TransactionLayer,
        key: TransactionKey,
        request: SipRequest,
        peer: Address,
        reliable: bool,
    ) -> None:
        super().__init__(layer, key, peer, reliable)
        self.data: bytes | None = bytes(request)

    def _settle(self) -> None:
        self.data = None

    def _send_request(self) -> None:
        assert self.data is not None  # sent and resent only while live
        self._send(self.data)

    def start(self, now: float) -> None:
        """Send the request and start the initial timers."""
        self._send_request()
        if not self.reliable:
            # RFC 3261 17.1.1.2, 17.1.2.2: the first retransmission is T1 later.
            self._start(self.retransmit_timer, self.config.t1, now)
        self._start(self.timeout_timer, self.config.timeout, now)

    @abstractmethod
    def receive_response(self, response: SipResponse, now: float) -> None:
        """Process a response matched to this transaction."""


class InviteClientTransaction(_ClientTransaction):
    """RFC 3261 17.1.1 (Figure 5) with the RFC 6026 Accepted state."""

    __slots__ = ("ack", "pending_cancel", "request")

    kind = Kind.INVITE_CLIENT
    retransmit_timer = "timer_A"
    timeout_timer = "timer_B"

    def __init__(
        self,
        layer: TransactionLayer,
        key: TransactionKey,
        request: SipRequest,
        peer: Address,
        reliable: bool,
    ) -> None:
        super().__init__(layer, key, request, peer, reliable)
        self.request: SipRequest | None = request
        self.pending_cancel: SipRequest | None = None
        self.ack: bytes | None = None

    def _settle(self) -> None:
        super()._settle()
        self.request = None
        self.pending_cancel = None

    def receive_response(self, response: SipResponse, now: float) -> None:
        status = _status_class(response.status)
        request = self.request  # a final response settles the transaction, which drops it
        old = self._transition(_RECV[status])
        live = old in (_CALLING, _PROCEEDING)
        if status == "1xx":
            if live:
                self._stop("timer_A", "timer_B")
                self.layer._events.append(ResponseReceived(response, self.key))
                if self.pending_cancel is not None:
                    self.layer._send_cancel(self, self.pending_cancel, now)
                    self.pending_cancel = None
        elif status == "2xx":
            if live or old is _ACCEPTED:
                # RFC 6026 7.2: every 2xx goes to the TU, which ACKs each one.
                self.layer._events.append(ResponseReceived(response, self.key))
            if live:
                self._stop("timer_A", "timer_B", "timer_cancel")
                self._start("timer_M", self.config.timeout, now)
        elif live:
            assert request is not None  # kept while live
            self._stop("timer_A", "timer_B", "timer_cancel")
            self.ack = bytes(build_ack_for_error(request, response))
            self._send(self.ack)
            self.layer._events.append(ResponseReceived(response, self.key))
            self._start("timer_D", self.config.timer_d(self.reliable), now)
        elif old is _COMPLETED and self.ack is not None:
            # RFC 3261 17.1.1.2: a retransmitted final response is ACKed again.
            self._send(self.ack)

    def handle_timer(self, name: Input, now: float) -> None:
        self._transition(name)
        if name == "timer_A":
            self._send_request()
            # RFC 3261 17.1.1.2: Timer A doubles, unbounded (Timer B ends it).
            self._start("timer_A", self._double(None), now)
        elif name == "timer_B":
            self.layer._events.append(TransactionFailed(self.key, "Timer B"))
        elif name == "timer_cancel":
            self.layer._events.append(TransactionFailed(self.key, "no final response after CANCEL"))


class NonInviteClientTransaction(_ClientTransaction):
    """RFC 3261 17.1.2 (Figure 6)."""

    __slots__ = ()

    kind = Kind.NON_INVITE_CLIENT
    retransmit_timer = "timer_E"
    timeout_timer = "timer_F"

    def receive_response(self, response: SipResponse, now: float) -> None:
        status = _status_class(response.status)
        old = self._transition(_RECV[status])
        if old is _COMPLETED:
            return
        self.layer._events.append(ResponseReceived(response, self.key))
        if status != "1xx":
            self._stop("timer_E", "timer_F")
            self._start("timer_K", self.config.timer_k(self.reliable), now)

    def handle_timer(self, name: Input, now: float) -> None:
        self._transition(name)
        if name == "timer_E":
            self._send_request()
            # RFC 3261 17.1.2.2: doubles up to T2 in Trying, stays at T2 in Proceeding.
            t2 = self.config.t2
            interval = t2 if self.state is _PROCEEDING else self._double(t2)
            self._start("timer_E", interval, now)
        elif name == "timer_F":
            self.layer._events.append(TransactionFailed(self.key, "Timer F"))


class _ServerTransaction(_Transaction):
    __slots__ = ("last_response", "to_tag")

    def __init__(
        self, layer: TransactionLayer, key: TransactionKey, peer: Address, reliable: bool
    ) -> None:
        super().__init__(layer, key, peer, reliable)
        self.last_response: bytes | None = None
        self.to_tag: str | None = None

    def _remember(self, response: SipResponse) -> None:
        self.last_response = bytes(response)
        self.to_tag = self.to_tag or response.to.tag
        self._send(self.last_response)

    @abstractmethod
    def receive_request(self, request: SipRequest, now: float) -> None:
        """Process a retransmission of the request."""

    @abstractmethod
    def send_response(self, response: SipResponse, now: float) -> None:
        """Send the TU's response."""


class InviteServerTransaction(_ServerTransaction):
    """RFC 3261 17.2.1 (Figure 7) with the RFC 6026 Accepted state and 13.3.1.4."""

    __slots__ = ("ack_key", "acked", "request")

    kind = Kind.INVITE_SERVER

    def __init__(
        self,
        layer: TransactionLayer,
        key: TransactionKey,
        request: SipRequest,
        peer: Address,
        reliable: bool,
    ) -> None:
        super().__init__(layer, key, peer, reliable)
        self.request: SipRequest | None = request
        self.ack_key = _ack_key(request)
        self.acked = False

    def _settle(self) -> None:
        self.request = None

    def start(self, now: float) -> None:
        """Arm the 100 Trying timer (17.2.1)."""
        self._start("timer_trying", self.config.trying_delay, now)

    def _send_trying(self) -> None:
        assert self.request is not None  # 100 Trying is only sent in Proceeding
        self._remember(make_response(self.request, 100))

    def receive_request(self, request: SipRequest, now: float) -> None:
        old = self._transition("recv_request")
        if old is _PROCEEDING:
            # 17.2.1: resend the latest provisional response (or 100 Trying now).
            if self.last_response is None:
                self._stop("timer_trying")
                self._send_trying()
            else:
                self._send(self.last_response)
        elif old is _COMPLETED and self.last_response is not None:
            self._send(self.last_response)
        # Confirmed and Accepted absorb retransmissions (17.2.1, RFC 6026 7.1).

    def receive_ack(self, ack: SipRequest, source: Address, now: float) -> None:
        old = self._transition("recv_ack")
        if old is _COMPLETED:
            self._stop("timer_G", "timer_H")
            self._start("timer_I", self.config.timer_k(self.reliable), now)
        elif old is _ACCEPTED and not self.acked:
            # 13.3.1.4: the ACK ends 2xx retransmission; the TU gets the first one.
            self.acked = True
            self._stop("timer_2xx")
            self.last_response = None
            self.layer._events.append(RequestReceived(ack, source, None))

    def send_response(self, response: SipResponse, now: float) -> None:
        status = _status_class(response.status)
        old = self._transition(_SEND[status])
        self._stop("timer_trying")
        self._remember(response)
        if status == "2xx" and old is _PROCEEDING:
            self.layer._awaiting_ack[self.ack_key] = self
            self._start("timer_2xx", self.config.t1, now)
            self._start("timer_L", self.config.timeout, now)
        elif status == "3xx_6xx":
            if not self.reliable:
                self._start("timer_G", self.config.t1, now)
            self._start("timer_H", self.config.timeout, now)

    def handle_timer(self, name: Input, now: float) -> None:
        self._transition(name)
        if name == "timer_trying":
            self._send_trying()
        elif name in ("timer_G", "timer_2xx") and self.last_response is not None:
            # 17.2.1 and 13.3.1.4: retransmit, doubling up to T2.
            self._send(self.last_response)
            self._start(name, self._double(self.config.t2), now)
        elif name == "timer_H":
            self.layer._events.append(TransactionFailed(self.key, "Timer H"))
        elif name == "timer_L" and not self.acked:
            self.layer._events.append(TransactionFailed(self.key, "no ACK for 2xx"))


class NonInviteServerTransaction(_ServerTransaction):
    """RFC 3261 17.2.2 (Figure 8)."""

    __slots__ = ()

    kind = Kind.NON_INVITE_SERVER

    def _settle(self) -> None:
        """Nothing to drop: a non-INVITE server transaction never keeps its request."""

    def receive_request(self, request: SipRequest, now: float) -> None:
        old = self._transition("recv_request")
        if old is not _TRYING and self.last_response is not None:
            self._send(self.last_response)

    def send_response(self, response: SipResponse, now: float) -> None:
        status = _status_class(response.status)
        self._transition(_SEND[status])
        self._remember(response)
        if status != "1xx":
            self._start("timer_J", self.config.timer_j(self.reliable), now)

    def handle_timer(self, name: Input, now: float) -> None:
        self._transition(name)


def _ack_key(message: SipMessage) -> tuple[str, int, str]:
    # 13.3.1.4 / 17.2.3: the ACK for a 2xx is a new transaction; it is tied
    # to its INVITE by Call-ID, CSeq number and From tag.
    return (message.call_id, message.cseq.seq, message.from_.tag or "")


class TransactionLayer:
    """Matches messages to transactions and runs their timers (RFC 3261 17).

    Outgoing messages are queued with their destination: requests go where
    the TU said, responses go back to the address the request came from
    (RFC 3581 symmetric response routing). ``reliable`` means a stream
    transport (TCP/TLS): no retransmissions and zero-length wait timers.
    """

    def __init__(self, config: TimerConfig = DEFAULT_TIMERS) -> None:
        self.config = config
        self._client: dict[TransactionKey, _ClientTransaction] = {}
        self._server: dict[TransactionKey, _ServerTransaction] = {}
        self._awaiting_ack: dict[tuple[str, int, str], InviteServerTransaction] = {}
        self._heap: list[tuple[float, int, _Transaction, Input]] = []
        self._seq = 0
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: list[TransactionEvent] = []

    # Inputs from the transport.

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        """Parse and process one UDP datagram; a malformed request is answered, never raised.

        RFC 3261 16.3 / 21.4.1: a request that cannot be parsed gets a 400
        (or 505/513) when enough of it can be read; otherwise it is dropped,
        like a malformed response. Keep-alive CRLFs (RFC 5626 4.4.1) are ignored.
        """
        if not data.strip():
            return
        try:
            message = parse_message(data)
        except SipParseError as exc:
            answer = error_response(data, exc)
            if answer is not None:
                self._outbox.append((answer, source))
            return
        self.receive_message(message, source, now)

    def receive_message(
        self, message: SipMessage, source: Address, now: float, *, reliable: bool = False
    ) -> None:
        """Process one parsed message from ``source`` (17.1.3, 17.2.3)."""
        if isinstance(message, SipResponse):
            client = self._client.get(client_key(message))
            if client is not None:
                client.receive_response(message, now)
            # Stray responses are dropped (17.1.3; RFC 6026 7.2 covers 2xx).
            return
        method = message.method
        if method == "ACK":
            self._receive_ack(message, source, now)
        elif method == "CANCEL":
            self._receive_cancel(message, source, now, reliable)
        else:
            key = server_key(message, method)
            server = self._server.get(key)
            if server is not None:
                server.receive_request(message, now)
                return
            if method == "INVITE":
                invite = InviteServerTransaction(self, key, message, source, reliable)
                self._server[key] = invite
                self._events.append(RequestReceived(message, source, key))
                invite.start(now)
            else:
                self._server[key] = NonInviteServerTransaction(self, key, source, reliable)
                self._events.append(RequestReceived(message, source, key))

    def _receive_ack(self, ack: SipRequest, source: Address, now: float) -> None:
        server = self._server.get(server_key(ack, "INVITE"))
        if server is None:
            server = self._awaiting_ack.get(_ack_key(ack))
        if isinstance(server, InviteServerTransaction):
            server.receive_ack(ack, source, now)
        else:
            # An ACK with nothing to match still goes to the TU core (17.2.3).
            self._events.append(RequestReceived(ack, source, None))

    def _receive_cancel(
        self, cancel: SipRequest, source: Address, now: float, reliable: bool
    ) -> None:
        key = server_key(cancel, "CANCEL")
        existing = self._server.get(key)
        if existing is not None:
            existing.receive_request(cancel, now)
            return
        server = NonInviteServerTransaction(self, key, source, reliable)
        self._server[key] = server
        invite = self._server.get(server_key(cancel, "INVITE"))
        if not isinstance(invite, InviteServerTransaction):
            server.send_response(make_response(cancel, 481), now)
            return
        # RFC 3261 9.2: the CANCEL's 200 and the INVITE's 487 carry the same To tag.
        invite.to_tag = invite.to_tag or new_tag()
        server.send_response(make_response(cancel, 200, to_tag=invite.to_tag), now)
        if invite.state is _PROCEEDING:
            assert invite.request is not None  # kept until the final response
            invite.send_response(make_response(invite.request, 487, to_tag=invite.to_tag), now)
            self._events.append(InviteCancelled(invite.key, cancel))

    def transport_error(self, key: TransactionKey, *, server: bool = False) -> None:
        """The transport failed to send for this transaction (17.1.4, 17.2.4)."""
        table: Mapping[TransactionKey, _Transaction] = self._server if server else self._client
        transaction = table.get(key)
        if transaction is not None:
            transaction.transport_error()

    # Inputs from the TU.

    def send_request(
        self, request: SipRequest, destination: Address, now: float, *, reliable: bool = False
    ) -> TransactionKey:
        """Start a client transaction for ``request`` (not ACK) and return its key."""
        if request.method == "ACK":
            raise LocalProtocolError("ACK is not sent in a transaction; use send_stateless")
        key = client_key(request)
        if key in self._client:
            raise LocalProtocolError(f"a client transaction with branch {key.branch} exists")
        cls = InviteClientTransaction if request.method == "INVITE" else NonInviteClientTransaction
        transaction = cls(self, key, request, destination, reliable)
        self._client[key] = transaction
        transaction.start(now)
        return key

    def send_response(self, response: SipResponse, now: float) -> None:
        """Send the TU's response through the server transaction of its request."""
        server = self._server.get(server_key(response, response.cseq.method))
        if server is None:
            raise LocalProtocolError(
                f"no server transaction for {response.status} to {response.cseq.method}"
            )
        server.send_response(response, now)

    def send_stateless(self, message: SipMessage, destination: Address) -> None:
        """Send outside any transaction: the ACK for a 2xx (13.2.2.4, 17.1.1.3)."""
        self._outbox.append((bytes(message), destination))

    def cancel(self, key: TransactionKey, now: float) -> TransactionKey | None:
        """Cancel a pending INVITE client transaction (9.1); returns the CANCEL's key.

        The CANCEL waits for the first provisional response if none has
        arrived yet. Returns None when the INVITE already has a final
        response (or is gone): there is nothing left to cancel.
        """
        invite = self._client.get(key)
        if not isinstance(invite, InviteClientTransaction):
            return None
        if invite.state not in (_CALLING, _PROCEEDING):
            return None
        cancel_key = TransactionKey(key.branch, "CANCEL")
        if cancel_key in self._client or invite.pending_cancel is not None:
            return cancel_key
        assert invite.request is not None  # kept until the final response
        cancel = build_cancel(invite.request)
        if invite.state is _CALLING:
            invite.pending_cancel = cancel
        else:
            self._send_cancel(invite, cancel, now)
        return cancel_key

    def _send_cancel(self, invite: InviteClientTransaction, cancel: SipRequest, now: float) -> None:
        self.send_request(cancel, invite.peer, now, reliable=invite.reliable)
        invite._start("timer_cancel", self.config.timeout, now)

    # Outputs.

    def messages_to_send(self) -> list[tuple[bytes, Address]]:
        """The bytes to send and where, in order; the queue is emptied."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> TransactionEvent | None:
        """The next event for the TU, or None."""
        return self._events.pop(0) if self._events else None

    def get_timer(self) -> float | None:
        """The earliest time ``handle_timer`` must be called, or None."""
        heap = self._heap
        while heap:
            deadline, _, transaction, name = heap[0]
            if transaction.timers.get(name) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, transaction, name = heapq.heappop(heap)
            if transaction.timers.get(name) != deadline:
                continue
            del transaction.timers[name]
            transaction.handle_timer(name, now)

    def state_of(self, key: TransactionKey, *, server: bool = False) -> State:
        """The state of a live transaction; Terminated once it is gone."""
        transaction = (self._server if server else self._client).get(key)
        return _TERMINATED if transaction is None else transaction.state

    # Callbacks from transactions.

    def _schedule(self, deadline: float, transaction: _Transaction, name: Input) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, transaction, name))

    def _forget(self, transaction: _Transaction) -> None:
        if isinstance(transaction, _ClientTransaction):
            self._client.pop(transaction.key, None)
        else:
            self._server.pop(transaction.key, None)
            if (
                isinstance(transaction, InviteServerTransaction)
                and self._awaiting_ack.get(transaction.ack_key) is transaction
            ):
                del self._awaiting_ack[transaction.ack_key]
