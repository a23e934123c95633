"""The SIP and RTP state of the legs of one call, and the small helpers they need.

A :class:`CallerLeg` is our UAS side (the inbound INVITE we answer late, on
the bridge); a :class:`BuyerLeg` is one UAC attempt to reach a buyer. Both
hold their :class:`~callwhisper.engine.media.MediaLeg`, their transport (UDP,
TCP or TLS) with our address and Contact on it, and once established their
:class:`~callwhisper.sip.dialog.Dialog`. Only the call's runner changes them.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

from callwhisper.audio import Codec
from callwhisper.domain.buyer import Trunk
from callwhisper.engine.media import MediaLeg
from callwhisper.engine.playback import LegCodec
from callwhisper.errors import SipParseError
from callwhisper.media.sdp import NegotiatedMedia, SessionDescription
from callwhisper.sip.dialog import Dialog
from callwhisper.sip.headers import parse_name_addr, parse_uri
from callwhisper.sip.message import SipRequest
from callwhisper.sip.transaction import Address, TransactionKey

__all__ = [
    "BuyerLeg",
    "CallerLeg",
    "Transport",
    "caller_user",
    "codec_of",
    "contact_uri",
    "dialed_user",
    "is_ip_literal",
    "is_sips",
    "needs_sips",
    "new_session_id",
    "uri_address",
    "uri_host",
    "uri_transport",
    "via_transport",
]

DEFAULT_PORTS: Final = {"udp": 5060, "tcp": 5060, "tls": 5061}
"""The port a SIP URI without one means, by transport (RFC 3261 19.1.2, RFC 3263)."""

Transport = Literal["udp", "tcp", "tls"]
"""The SIP transports the engine speaks (RFC 3261 18, TLS 26.2)."""

_TRANSPORTS: Final[dict[str, Transport]] = {"udp": "udp", "tcp": "tcp", "tls": "tls"}


def codec_of(media: NegotiatedMedia) -> LegCodec:
    """The RTP format of a leg from what its offer/answer agreed."""
    encoding: Codec = "PCMU" if media.codec == "PCMU" else "PCMA"
    return LegCodec(encoding, media.payload_type, media.dtmf_payload_type)


def new_session_id() -> int:
    """A random SDP ``o=`` session id (RFC 4566 5.2 suggests an NTP timestamp; any unique int).

    Unique, not secret: the process's generator (reseeded in a forked child)
    rather than a system call per id.
    """
    return random.getrandbits(62)


@lru_cache(maxsize=1024)
def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address (not a name to resolve).

    Kept for the few hosts a server meets again and again (trunks, buyers, proxies).
    """
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_sips(uri: str) -> bool:
    """Whether ``uri`` is a SIPS URI (RFC 3261 19.1): TLS on every hop (RFC 5630 3.1.3)."""
    return uri[:5].lower() == "sips:"


@lru_cache(maxsize=1024)
def uri_address(uri: str, transport: Transport | None = None) -> tuple[str, int]:
    """Host and port a SIP URI names; raises SipParseError (ValueError for its transport).

    Without a port, the default of ``transport``, else of the URI's own
    transport: 5061 for ``sips:`` and ``transport=tls``, 5060 otherwise.
    Kept for the URIs met again (trunks' proxies, buyers' targets and contacts).
    """
    parsed = parse_uri(uri)
    if parsed.port is None:
        return parsed.host.strip("[]"), DEFAULT_PORTS[transport or uri_transport(uri) or "udp"]
    return parsed.host.strip("[]"), parsed.port


def uri_host(uri: str) -> str:
    """The host of a SIP URI, as a TLS peer's certificate must name it (RFC 5922 7.2)."""
    return parse_uri(uri).host.strip("[]")


@lru_cache(maxsize=1024)
def uri_transport(uri: str) -> Transport | None:
    """The transport a SIP URI asks for (RFC 3261 19.1.1), None when it leaves the choice.

    A ``sips:`` URI is TLS (``transport=tcp`` is how RFC 3261 writes TLS over
    TCP); ``transport=tls`` on a ``sip:`` URI, deprecated by RFC 5630 but
    common, is TLS too. Raises SipParseError for a malformed URI and
    ValueError for a transport the engine does not speak (SCTP, WebSocket)
    or a ``sips:`` URI over UDP.
    """
    value = parse_uri(uri).params.get("transport")
    name = None if value is None else value.lower()
    if is_sips(uri):
        if name not in (None, "tcp", "tls"):
            raise ValueError(f"transport {value} cannot carry a sips: URI (TLS over TCP)")
        return "tls"
    if name is None:
        return None
    transport = _TRANSPORTS.get(name)
    if transport is None:
        raise ValueError(f"transport {value} is not supported (udp, tcp or tls)")
    return transport


def contact_uri(
    user: str, host: str, port: int, transport: Transport, *, sips: bool = False
) -> str:
    """Our Contact on a leg, so that the peer's requests come back the way the leg goes.

    A SIPS dialog gets a ``sips:`` Contact (RFC 3261 8.1.1.8, 12.1.1), which
    means TLS; otherwise TCP and TLS say so in ``transport``.
    """
    if sips:
        return f"<sips:{user}@{host}:{port}>"
    if transport == "udp":
        return f"<sip:{user}@{host}:{port}>"
    return f"<sip:{user}@{host}:{port};transport={transport}>"


def needs_sips(request: SipRequest) -> bool:
    """Whether our Contact in the dialog ``request`` creates must be a SIPS URI (RFC 3261 12.1.1).

    It must when the Request-URI is one, or the top Record-Route, or the
    Contact when nothing was record-routed.
    """
    routes = request.record_route
    contacts = request.contacts
    first = routes[0].uri if routes else contacts[0].uri if contacts else ""
    return is_sips(request.uri) or is_sips(first)


def via_transport(request: SipRequest) -> Transport:
    """The transport ``request`` came over, as its top Via says (UDP for any other)."""
    return _TRANSPORTS.get(request.top_via.transport.lower(), "udp")


def dialed_user(request: SipRequest) -> Iterator[str]:
    """The users an INVITE may be for, in turn: the Request-URI's, then the To header's.

    The To header is only read when the Request-URI's user was not the one.
    """
    first = _user_of(request.uri)
    if first:
        yield first
    try:
        second = _user_of(request.to.uri)
    except SipParseError:
        return
    if second and second != first:
        yield second


def caller_user(request: SipRequest) -> str | None:
    """The caller's number or user from the From header (P-Asserted-Identity first)."""
    asserted = request.headers.get("P-Asserted-Identity")
    if asserted:
        try:
            return parse_uri(parse_name_addr(asserted).uri).user
        except SipParseError:
            pass
    try:
        return parse_uri(request.from_.uri).user
    except SipParseError:
        return None


def _user_of(uri: str) -> str | None:
    try:
        return parse_uri(uri).user
    except SipParseError:
        return None


@dataclass(eq=False, slots=True)
class CallerLeg:
    """The inbound leg "A": the caller's INVITE, our SDP answer and the caller's media."""

    invite: SipRequest
    source: Address
    """Where the INVITE came from: in-dialog requests go back there (symmetric, RFC 3581)."""
    to_tag: str
    answer: bytes
    """Our SDP, sent in the 183 and again in the 200 (RFC 3261 13.2.1: the same answer)."""
    media: MediaLeg
    session_id: int
    local: Address
    """Our address on this leg: the sent-by of our Via (the TLS listener's over TLS)."""
    contact: str
    """Our Contact on this leg (:func:`contact_uri`)."""
    session_version: int = 0
    dialog: Dialog | None = None
    early: bool = False
    """A 183 with our SDP was sent."""
    answered: bool = False
    final_sent: bool = False
    """A final response (2xx or error) went to the INVITE, or the caller cancelled it."""
    hung_up: bool = False
    ringback: int | None = None
    """The media playback id of ringback or hold music in progress."""

    @property
    def transport(self) -> Transport:
        """How the caller reached us (the INVITE's top Via); our requests go back the same way."""
        return via_transport(self.invite)


@dataclass(eq=False, slots=True)
class BuyerLeg:
    """One attempt to reach a buyer (a flow leg ``B1``, ``B2``...)."""

    id: str
    media: MediaLeg
    offer: SessionDescription
    session_id: int
    local: Address
    """Our address on this leg: the sent-by of our Via (over TLS, the listener's, else
    our end of the connection)."""
    trunk: Trunk | None
    """The trunk that carries this leg: its proxy takes the in-dialog requests too."""
    contact: str = ""
    """Our Contact on this leg (:func:`contact_uri`), set once its transport is known."""
    next_hop: Address | None = None
    """Where the INVITE and in-dialog requests go: the trunk's proxy or the URI's host."""
    invite: SipRequest | None = None
    key: TransactionKey | None = None
    dialog: Dialog | None = None
    ack: SipRequest | None = None
    auth_attempts: int = 0
    canceled: bool = False
    """We gave it up (CANCEL or never sent): later answers are hung up, failures ignored."""
    answered: bool = False
    final: bool = False
    """A final response (or a transaction failure) ended the INVITE transaction."""
    ended: bool = False
    transport: Transport = "udp"
    """The trunk's transport, else the target URI's (``sips:`` or ``transport``)."""
    session_version: int = 0
    """The o= version of our last SDP on this leg (RFC 3264 8: each new one is the next)."""
