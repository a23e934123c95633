"""SIP dialogs (RFC 3261 12): creation, in-dialog requests and matching.

A :class:`Dialog` is pure state: it is created from the request and response
that establish it, builds the requests we send inside it (BYE, re-INVITE,
ACK for 2xx) and checks the requests the peer sends. :class:`DialogId`
names the dialog a request belongs to.

Where a request goes is the dialog's to say too (:attr:`Dialog.next_hop`):
the first route of the route set the proxies recorded, else the remote
target. The transport layer only resolves that URI to an address.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal, NamedTuple

from callwhisper.errors import LocalProtocolError, RemoteProtocolError
from callwhisper.sip.headers import NameAddr, Via, parse_name_addr, parse_uri
from callwhisper.sip.message import SipMessage, SipRequest, SipResponse, make_request

__all__ = [
    "DIALOG_TRANSITIONS",
    "Dialog",
    "DialogId",
    "DialogState",
    "check_dialog_request",
    "learned_route_set",
    "loose_route",
    "route_uri",
]


class DialogState(StrEnum):
    """RFC 3261 12: a dialog is early (1xx with To tag), confirmed (2xx) or terminated."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


# The states as module constants, for the methods below: through the enum's metaclass
# every ``DialogState.X`` is a lookup of some 500 instructions, a module constant about 20.
_EARLY: Final = DialogState.EARLY
_CONFIRMED: Final = DialogState.CONFIRMED
_TERMINATED: Final = DialogState.TERMINATED

DialogInput = Literal["2xx", "error", "bye"]

DIALOG_TRANSITIONS: Final[Mapping[DialogState, Mapping[DialogInput, DialogState]]] = {
    # 12.3: a non-2xx final response ends an early dialog; BYE ends any (15).
    DialogState.EARLY: {
        "2xx": DialogState.CONFIRMED,
        "error": DialogState.TERMINATED,
        "bye": DialogState.TERMINATED,
    },
    DialogState.CONFIRMED: {"2xx": DialogState.CONFIRMED, "bye": DialogState.TERMINATED},
    DialogState.TERMINATED: {},
}

# 12.2.1.1: ACK and CANCEL reuse the CSeq number of the request they belong to.
_NO_NEW_CSEQ: Final = frozenset({"ACK", "CANCEL"})
# 12.2: requests that refresh the remote target.
_TARGET_REFRESH: Final = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


class DialogId(NamedTuple):
    """Call-ID, local tag and remote tag (RFC 3261 12).

    A tuple: in-dialog requests are routed by it, and a tuple's hash and
    equality cost a fraction of a dataclass's.
    """

    call_id: str
    local_tag: str
    remote_tag: str

    @classmethod
    def of_incoming_request(cls, request: SipMessage) -> DialogId:
        """The id seen from our side for a request the peer sent (To tag is ours)."""
        return cls(request.call_id, request.to.tag or "", request.from_.tag or "")


def _contact_uri(message: SipMessage) -> str | None:
    contacts = message.contacts
    return contacts[0].uri if contacts else None


def route_uri(route: str) -> str:
    """The URI of a Route value (``<sip:p1.example.com;lr>`` gives ``sip:p1.example.com;lr``)."""
    return parse_name_addr(route).uri


def learned_route_set(message: SipMessage, *, uac: bool) -> list[str]:
    """The route set a dialog learns from the Record-Route of ``message`` (RFC 3261 12.1).

    The UAS takes the request's list as it is (12.1.1); the UAC takes its
    response's list in reverse (12.1.2), so that the first route is the
    proxy nearest to us either way. Raises RemoteProtocolError (400) when
    a value is not a SIP URI: no request could be routed through it.
    """
    routes = message.record_route
    for route in routes:
        parse_uri(route.uri)
    return [str(route) for route in (reversed(routes) if uac else routes)]


def check_dialog_request(request: SipRequest) -> None:
    """Raise RemoteProtocolError (400) when our answer to ``request`` could not make a dialog.

    A UAS checks this before answering anything (12.1.1): a request without
    a From tag, or whose Record-Route is not a list of SIP URIs, would
    otherwise be answered with a 2xx whose dialog could not be kept.
    """
    if request.from_.tag is None:
        raise RemoteProtocolError("request without From tag cannot create a dialog", 400)
    learned_route_set(request, uac=False)


def loose_route(uri: str) -> str:
    """A pre-loaded Route value for ``uri``, with the ``lr`` parameter (RFC 3261 19.1.1).

    Raises SipParseError for a URI that is not a SIP URI.
    """
    parsed = parse_uri(uri)
    if "lr" not in parsed.params:
        parsed.params["lr"] = None
    return f"<{parsed}>"


@dataclass(slots=True)
class Dialog:
    """The state of one dialog (RFC 3261 12.1) and the requests sent within it."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: str
    local_seq: int | None
    remote_seq: int | None
    route_set: list[str] = field(default_factory=list)
    """The routes learned from Record-Route (12.1), nearest proxy first."""
    default_route: tuple[str, ...] = ()
    """A pre-existing route set (8.1.2: an outbound proxy), used while no route was learned.

    RFC 3261 12.2.1.1 alone would send a request straight to the remote
    target when the proxy did not record-route; a UAC configured with an
    outbound proxy keeps sending through it instead, with this Route.
    """
    local_contact: str | None = None
    state: DialogState = DialogState.EARLY

    @property
    def id(self) -> DialogId:
        """This dialog's identifier."""
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uac(
        cls,
        request: SipRequest,
        response: SipResponse,
        *,
        local_contact: str | None = None,
        default_route: Sequence[str] = (),
    ) -> Dialog:
        """The dialog our request's 1xx (with To tag) or 2xx creates (RFC 3261 12.1.2).

        ``default_route`` is the pre-loaded route of ``request`` to keep for
        in-dialog requests when the response records no route. Raises
        RemoteProtocolError for a response that cannot create a dialog.
        """
        remote_tag = response.to.tag
        if remote_tag is None or not 100 < response.status < 300:
            raise RemoteProtocolError(
                f"{response.status} response without To tag cannot create a dialog"
            )
        local_tag = request.from_.tag
        if local_tag is None:
            raise LocalProtocolError("our request has no From tag")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=request.from_,
            remote_uri=response.to,
            remote_target=_contact_uri(response) or request.uri,
            local_seq=request.cseq.seq,
            remote_seq=None,
            route_set=learned_route_set(response, uac=True),
            default_route=tuple(default_route),
            local_contact=local_contact,
            state=_CONFIRMED if response.status >= 200 else _EARLY,
        )

    @classmethod
    def as_uas(
        cls,
        request: SipRequest,
        response: SipResponse,
        *,
        local_contact: str | None = None,
    ) -> Dialog:
        """The dialog our 1xx or 2xx to ``request`` creates (RFC 3261 12.1.1).

        Raises RemoteProtocolError (400) for a request that cannot create one.
        """
        local_tag = response.to.tag
        if local_tag is None:
            raise LocalProtocolError("a dialog-creating response needs a To tag")
        check_dialog_request(request)
        remote_tag = request.from_.tag
        assert remote_tag is not None  # checked above
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=response.to,
            remote_uri=request.from_,
            remote_target=_contact_uri(request) or str(request.from_.uri),
            local_seq=None,
            remote_seq=request.cseq.seq,
            route_set=learned_route_set(request, uac=False),
            local_contact=local_contact,
            state=_CONFIRMED if response.status >= 200 else _EARLY,
        )

    def _apply(self, event: DialogInput) -> None:
        new = DIALOG_TRANSITIONS[self.state].get(event)
        if new is None:
            raise LocalProtocolError(f"dialog: event {event} is not allowed in state {self.state}")
        self.state = new

    def create_request(
        self,
        method: str,
        via: Via,
        *,
        cseq: int | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Iterable[tuple[str, str]] = (),
    ) -> SipRequest:
        """Build a request inside this dialog (RFC 3261 12.2.1.1).

        ``via`` should carry a fresh branch (``Via(..., params={"branch":
        new_branch()})``). ACK and CANCEL take ``cseq``, the number of the
        INVITE they belong to; other methods increment the local CSeq.
        """
        if self.state is _TERMINATED:
            raise LocalProtocolError(f"cannot send {method} in a terminated dialog")
        if method in _NO_NEW_CSEQ:
            if cseq is None:
                raise LocalProtocolError(f"{method} needs the CSeq number of its INVITE")
            number = cseq
        else:
            number = (self.local_seq or 0) + 1
            self.local_seq = number
        uri, routes = self._request_target()
        return make_request(
            method,
            uri,
            from_=self.local_uri.with_tag(self.local_tag),
            to=self.remote_uri.with_tag(self.remote_tag),
            via=via,
            call_id=self.call_id,
            cseq=number,
            contact=self.local_contact if method in _TARGET_REFRESH else None,
            routes=routes,
            body=body,
            content_type=content_type,
            extra=extra,
        )

    def create_ack(
        self, invite_cseq: int, via: Via, *, body: bytes = b"", content_type: str | None = None
    ) -> SipRequest:
        """The ACK for a 2xx to our INVITE (13.2.2.4): the INVITE's CSeq number, a new branch."""
        return self.create_request(
            "ACK", via, cseq=invite_cseq, body=body, content_type=content_type
        )

    @property
    def routes(self) -> list[str]:
        """The routes in-dialog requests follow: the learned ones, else the default route."""
        return self.route_set or list(self.default_route)

    @property
    def next_hop(self) -> str:
        """The URI whose address our requests in this dialog are sent to (8.1.2, 12.2.1.1).

        The first route when there is one, whether it is a loose router
        (a Route header, the Request-URI being the remote target) or a
        strict one (the Request-URI itself); else the remote target.
        """
        routes = self.routes
        return route_uri(routes[0]) if routes else self.remote_target

    def _request_target(self) -> tuple[str, list[str]]:
        """Request-URI and Route headers from the route set (12.2.1.1, 16.12.1.1)."""
        routes = self.routes
        if not routes:
            return self.remote_target, []
        uri = route_uri(routes[0])
        if "lr" in parse_uri(uri).params:
            return self.remote_target, routes
        # Strict routing: the first route becomes the Request-URI, the remote target the last.
        return uri, [*routes[1:], f"<{self.remote_target}>"]

    def receive_request(self, request: SipRequest) -> None:
        """Check and record a request the peer sent in this dialog (12.2.2).

        A CSeq lower than the last one is an error the TU answers with
        ``500 Server Internal Error``; a target refresh updates the remote target.
        A BYE that crosses ours finds the dialog already terminated and leaves
        it so: both sides hung up at once, and the TU answers it all the same.
        """
        seq = request.cseq.seq
        if request.method not in _NO_NEW_CSEQ:
            if self.remote_seq is not None and seq < self.remote_seq:
                raise RemoteProtocolError(
                    f"CSeq {seq} is lower than the last one ({self.remote_seq})", 500
                )
            self.remote_seq = seq
        if request.method in _TARGET_REFRESH:
            self.remote_target = _contact_uri(request) or self.remote_target
        if request.method == "BYE" and self.state is not _TERMINATED:
            self._apply("bye")

    def receive_response(self, response: SipResponse) -> None:
        """Apply a response to a request we sent in or for this dialog (12.1.2, 12.2.1.2).

        The 2xx that confirms an early dialog sets its route set anew
        (13.2.2.4): a proxy may record-route the 2xx differently from the
        1xx. Raises RemoteProtocolError for a Record-Route that is not a SIP URI.
        Only the INVITE's final response moves the state (12.1, 12.3): a 2xx
        to an UPDATE in an early dialog leaves it early, and the answer to our
        BYE finds the dialog already terminated and leaves it so.
        """
        if response.status < 200 or self.state is _TERMINATED:
            return
        method = response.cseq.method
        if response.status >= 300:
            if method == "INVITE" and self.state is _EARLY:
                self._apply("error")
            return
        if method == "INVITE":
            if self.state is _EARLY:
                self.route_set = learned_route_set(response, uac=True)
            self._apply("2xx")
        if method in _TARGET_REFRESH:
            self.remote_target = _contact_uri(response) or self.remote_target

    def terminate(self) -> None:
        """End the dialog after a BYE we sent or an early failure (15)."""
        if self.state is _EARLY:
            self._apply("error")
        else:
            self._apply("bye")
