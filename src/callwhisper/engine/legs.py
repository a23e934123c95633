"""The SIP and RTP state of the legs of one call, and the small helpers they need.

A :class:`CallerLeg` is our UAS side (the inbound INVITE we answer late, on
the bridge); a :class:`BuyerLeg` is one UAC attempt to reach a buyer. Both
hold their :class:`~callwhisper.engine.media.MediaLeg` and, once established,
their :class:`~callwhisper.sip.dialog.Dialog`. Only the call's runner changes
them.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from typing import Literal

from callwhisper.audio import Codec
from callwhisper.engine.media import MediaLeg
from callwhisper.engine.playback import LegCodec
from callwhisper.errors import SipParseError
from callwhisper.flow import DialLeg
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
    "contact_for",
    "dialed_user",
    "is_ip_literal",
    "new_session_id",
    "uri_address",
    "uri_transport",
]

DEFAULT_SIP_PORT = 5060

Transport = Literal["udp", "tcp"]
"""The SIP transports the engine speaks (RFC 3261 18)."""


def codec_of(media: NegotiatedMedia) -> LegCodec:
    """The RTP format of a leg from what its offer/answer agreed."""
    encoding: Codec = "PCMU" if media.codec == "PCMU" else "PCMA"
    return LegCodec(encoding, media.payload_type, media.dtmf_payload_type)


def new_session_id() -> int:
    """A random SDP ``o=`` session id (RFC 4566 5.2 suggests an NTP timestamp; any unique int)."""
    return secrets.randbits(62)


def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address (not a name to resolve)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def uri_address(uri: str) -> tuple[str, int]:
    """Host and port a SIP URI names (5060 by default); raises SipParseError."""
    parsed = parse_uri(uri)
    return parsed.host.strip("[]"), parsed.port or DEFAULT_SIP_PORT


def uri_transport(uri: str) -> Transport | None:
    """The ``transport`` parameter of a SIP URI (RFC 3261 19.1.1), None when absent.

    Raises SipParseError for a malformed URI and ValueError for a transport
    the engine does not speak (TLS, SCTP, WebSocket).
    """
    value = parse_uri(uri).params.get("transport")
    if value is None:
        return None
    name = value.lower()
    if name == "udp":
        return "udp"
    if name == "tcp":
        return "tcp"
    raise ValueError(f"transport {value} is not supported (udp or tcp)")


def contact_for(contact: str, transport: Transport) -> str:
    """Our Contact for a leg: on TCP it says so, so that the peer's requests come back on TCP."""
    if transport == "udp":
        return contact
    return contact.removesuffix(">") + f";transport={transport}>"


def dialed_user(request: SipRequest) -> list[str]:
    """The users an INVITE may be for: the Request-URI's, then the To header's."""
    users: list[str] = []
    for text in (request.uri, request.to.uri):
        try:
            user = parse_uri(text).user
        except SipParseError:
            continue
        if user and user not in users:
            users.append(user)
    return users


def caller_user(request: SipRequest) -> str | None:
    """The caller's number or user from the From header (P-Asserted-Identity first)."""
    asserted = request.headers.get("P-Asserted-Identity")
    for text in (asserted, request.headers.get("From")):
        if not text:
            continue
        try:
            return parse_uri(parse_name_addr(text).uri).user
        except SipParseError:
            continue
    return None


@dataclass(eq=False, slots=True)
class CallerLeg:
    """The inbound leg "A": the caller's INVITE, our SDP answer and the caller's media."""

    invite: SipRequest
    source: Address
    """Where the INVITE came from: in-dialog requests go back there (symmetric, RFC 3581)."""
    server_key: TransactionKey
    to_tag: str
    answer: bytes
    """Our SDP, sent in the 183 and again in the 200 (RFC 3261 13.2.1: the same answer)."""
    offer: SessionDescription
    media: MediaLeg
    session_id: int
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
        return "tcp" if self.invite.top_via.transport.upper() == "TCP" else "udp"


@dataclass(eq=False, slots=True)
class BuyerLeg:
    """One attempt to reach a buyer (a flow leg ``B1``, ``B2``...)."""

    id: str
    command: DialLeg
    media: MediaLeg
    offer: SessionDescription
    session_id: int
    request_uri: str
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
    proxied: bool = False
    """A trunk carries this leg: in-dialog requests go through the proxy too."""
    transport: Transport = "udp"
    """The trunk's transport, else the target URI's ``transport`` parameter."""
    session_version: int = 0
    """The o= version of our last SDP on this leg (RFC 3264 8: each new one is the next)."""
