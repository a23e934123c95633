"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for G.711 audio, sans-I/O.

* :class:`SessionDescription` parses and serializes a body, keeping the
  attributes it does not interpret so a parse/serialize round trip is exact
  for the lines it models (v, o, s, c, b, t, m, a). Other lines (i, u, e, p,
  r, z, k) are accepted and dropped: we never forward a peer's SDP.
* :func:`create_offer`, :func:`create_answer` and :func:`negotiate_answer`
  implement offer/answer for our media: PCMU and PCMA at 8 kHz plus RFC 4733
  telephone-event, and give the outcome as a :class:`NegotiatedMedia`.

Malformed SDP raises :class:`SdpError` with ``status_hint`` 400; SDP that is
well formed but shares no codec with us raises it with 488 (Not Acceptable Here).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

from callwhisper.errors import LocalProtocolError, SdpError

__all__ = [
    "SUPPORTED_CODECS",
    "Attribute",
    "Connection",
    "Direction",
    "Media",
    "NegotiatedMedia",
    "Origin",
    "RtpMap",
    "SessionDescription",
    "create_answer",
    "create_offer",
    "negotiate_answer",
]

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
_DIRECTIONS: Final[tuple[Direction, ...]] = ("sendrecv", "sendonly", "recvonly", "inactive")

SUPPORTED_CODECS: Final = {"PCMU": 0, "PCMA": 8}
"""Codecs we speak, by name, with their static payload types (RFC 3551 6)."""

DTMF_PAYLOAD_TYPE: Final = 101
DTMF_EVENTS: Final = "0-16"
"""Events we offer (RFC 4733 3.2): the 16 DTMF digits and flash."""
RTP_AVP: Final = "RTP/AVP"
_CLOCK_RATE: Final = 8000
_DEFAULT_PTIME: Final = 20
_STATIC_PAYLOAD_TYPES: Final = {0: "PCMU", 8: "PCMA"}
_UNSPECIFIED_ADDRESSES: Final = frozenset({"0.0.0.0", "::"})
_CACHED_VALUE_LENGTH: Final = 64
"""Longest a=rtpmap value whose parse is kept (real ones are about 20 characters)."""


def _error(message: str) -> SdpError:
    return SdpError(message, status_hint=400)


def _number(text: str, what: str, limit: int | None = None) -> int:
    if not (text.isascii() and text.isdigit()) or (limit is not None and int(text) > limit):
        bound = f" in 0-{limit}" if limit is not None else ""
        raise _error(f"SDP {what} {text!r} is not a number{bound}")
    return int(text)


def _fields(value: str, kind: str, count: int) -> list[str]:
    fields = value.split()
    if len(fields) != count:
        raise _error(f"SDP {kind}= line needs {count} fields, got {len(fields)}: {value!r}")
    return fields


@dataclass(frozen=True, slots=True)
class Origin:
    """The o= line (RFC 4566 5.2)."""

    username: str
    session_id: str
    session_version: int
    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    @classmethod
    def parse(cls, value: str) -> Origin:
        """Parse the value of an o= line."""
        username, session_id, version, nettype, addrtype, address = _fields(value, "o", 6)
        return cls(
            username, session_id, _number(version, "o= session version"), address, nettype, addrtype
        )

    def serialize(self) -> str:
        """The value of the o= line."""
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """A c= line (RFC 4566 5.7); multicast TTL or count stay part of ``address``."""

    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    @classmethod
    def parse(cls, value: str) -> Connection:
        """Parse the value of a c= line."""
        nettype, addrtype, address = _fields(value, "c", 3)
        return cls(address, nettype, addrtype)

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """A connection for a unicast IPv4 or IPv6 address."""
        return cls(address, "IN", "IP6" if ":" in address else "IP4")

    def serialize(self) -> str:
        """The value of the c= line."""
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Attribute:
    """An a= line: a property (``value`` None) or ``name:value``."""

    name: str
    value: str | None = None

    def serialize(self) -> str:
        """The value of the a= line."""
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """An a=rtpmap value (RFC 4566 6): encoding name, clock rate, optional channels."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        """Parse ``<payload type> <encoding>/<clock rate>[/<channels>]``."""
        pt, _, spec = value.partition(" ")
        parts = spec.strip().split("/")
        if not pt or len(parts) not in (2, 3) or not parts[0]:
            raise _error(f"SDP a=rtpmap value {value!r} is malformed")
        channels = _number(parts[2], "a=rtpmap channel count") if len(parts) == 3 else None
        return cls(
            _number(pt, "a=rtpmap payload type", 127),
            parts[0],
            _number(parts[1], "a=rtpmap clock rate"),
            channels,
        )

    def serialize(self) -> str:
        """The value of the a=rtpmap line."""
        channels = "" if self.channels is None else f"/{self.channels}"
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{channels}"


def _direction_of(attributes: tuple[Attribute, ...]) -> Direction | None:
    for attribute in attributes:
        if attribute.value is None and attribute.name in _DIRECTIONS:
            return attribute.name
    return None


@dataclass(frozen=True, slots=True)
class Media:
    """One media description: the m= line and its c=, b= and a= lines (RFC 4566 5.14)."""

    kind: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()

    def attribute(self, name: str) -> str | None:
        """The value of the first a=``name`` line, or None if there is none (or no value)."""
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute.value
        return None

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """The a=rtpmap lines by payload type."""
        maps = (_rtpmap(a.value) for a in self.attributes if a.name == "rtpmap" and a.value)
        return {m.payload_type: m for m in maps}

    def fmtp(self, payload_type: int) -> str | None:
        """The a=fmtp parameters of a payload type, or None."""
        prefix = f"{payload_type} "
        for attribute in self.attributes:
            if attribute.name == "fmtp" and attribute.value and attribute.value.startswith(prefix):
                return attribute.value[len(prefix) :].strip()
        return None

    @property
    def ptime(self) -> int | None:
        """The a=ptime value in milliseconds, or None."""
        value = self.attribute("ptime")
        return None if value is None else _number(value.split(".")[0], "a=ptime")

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, or None if absent."""
        return _direction_of(self.attributes)

    def serialize_lines(self) -> list[str]:
        """The lines of this media description, without line endings."""
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        lines = [f"m={self.kind} {port} {self.proto} {' '.join(self.formats)}"]
        if self.connection is not None:
            lines.append(f"c={self.connection.serialize()}")
        lines += [f"b={b}" for b in self.bandwidths]
        lines += [f"a={a.serialize()}" for a in self.attributes]
        return lines


def _parse_media(value: str) -> Media:
    fields = value.split()
    if len(fields) < 4:
        raise _error(f"SDP m= line needs media, port, protocol and formats: {value!r}")
    kind, port_text, proto, *formats = fields
    port_text, slash, count_text = port_text.partition("/")
    port = _number(port_text, "m= port", 65535)
    count = _number(count_text, "m= port count") if slash else None
    return Media(kind, port, proto, tuple(formats), count)


@lru_cache(maxsize=256)
def _cached_rtpmap(value: str) -> RtpMap:
    return RtpMap.parse(value)


def _rtpmap(value: str) -> RtpMap:
    """``RtpMap.parse``, kept for the few values peers really send (a bounded cache)."""
    if len(value) > _CACHED_VALUE_LENGTH:
        return RtpMap.parse(value)
    return _cached_rtpmap(value)


def _parse_attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    attribute = Attribute(name, rest if colon else None)
    if name == "rtpmap":
        _rtpmap(rest)  # validate now, so later lookups cannot fail
    elif name == "ptime":
        _number(rest.split(".")[0], "a=ptime")
    return attribute


class _MediaLines:
    """A media description being parsed: its m= line and the lines after it so far."""

    __slots__ = ("attributes", "bandwidths", "connection", "m_line")

    def __init__(self, m_line: Media) -> None:
        self.m_line = m_line
        self.connection: Connection | None = None
        self.bandwidths: list[str] = []
        self.attributes: list[Attribute] = []

    def media(self) -> Media:
        m_line = self.m_line
        return Media(
            m_line.kind,
            m_line.port,
            m_line.proto,
            m_line.formats,
            m_line.port_count,
            self.connection,
            tuple(self.bandwidths),
            tuple(self.attributes),
        )


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A session description (RFC 4566): session-level lines and media descriptions."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    times: tuple[tuple[int, int], ...] = ((0, 0),)
    bandwidths: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    media: tuple[Media, ...] = ()

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, or None if absent."""
        return _direction_of(self.attributes)

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse an SDP body; raise :class:`SdpError` (status 400) if it is malformed.

        RFC 4566 5: lines end in CRLF, but a bare LF is accepted too.
        """
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                raise _error("SDP body is not valid UTF-8") from None
        lines = [line.rstrip("\r") for line in data.split("\n")]
        lines = [line for line in lines if line]
        if not lines:
            raise _error("SDP body is empty")
        if not lines[0].startswith("v="):
            raise _error(f"SDP must begin with a v= line, got {lines[0][:40]!r}")
        if lines[0] != "v=0":
            raise _error(f"SDP version {lines[0][2:]!r} is not supported, expected 0")
        origin: Origin | None = None
        session_name: str | None = None
        connection: Connection | None = None
        times: list[tuple[int, int]] = []
        bandwidths: list[str] = []
        attributes: list[Attribute] = []
        # Each media description's m= line, then its c=, b= and a= lines as they come;
        # its Media is made once at the end rather than copied at every line.
        media: list[_MediaLines] = []
        for number, line in enumerate(lines[1:], start=2):
            kind, equals, value = line[:1], line[1:2], line[2:]
            if equals != "=" or not ("a" <= kind <= "z"):
                raise _error(f"SDP line {number} is not <type>=<value>: {line[:40]!r}")
            if kind == "m":
                media.append(_MediaLines(_parse_media(value)))
            elif media:
                current = media[-1]
                if kind == "c":
                    current.connection = Connection.parse(value)
                elif kind == "b":
                    current.bandwidths.append(value)
                elif kind == "a":
                    current.attributes.append(_parse_attribute(value))
                elif kind in "vost":
                    raise _error(f"SDP {kind}= line {number} comes after the first m= line")
            elif kind == "v":
                raise _error(f"SDP has more than one v= line (line {number})")
            elif kind == "o":
                if origin is not None:
                    raise _error(f"SDP has more than one o= line (line {number})")
                origin = Origin.parse(value)
            elif kind == "s":
                session_name = value
            elif kind == "c":
                connection = Connection.parse(value)
            elif kind == "b":
                bandwidths.append(value)
            elif kind == "t":
                start, stop = _fields(value, "t", 2)
                times.append((_number(start, "t= start time"), _number(stop, "t= stop time")))
            elif kind == "a":
                attributes.append(_parse_attribute(value))
        if origin is None:
            raise _error("SDP has no o= line")
        if session_name is None:
            raise _error("SDP has no s= line")
        if not times:
            raise _error("SDP has no t= line")
        return cls(
            origin,
            session_name,
            connection,
            tuple(times),
            tuple(bandwidths),
            tuple(attributes),
            tuple(lines.media() for lines in media),
        )

    def serialize(self) -> bytes:
        """The body, with CRLF line endings, encoded as UTF-8."""
        lines = ["v=0", f"o={self.origin.serialize()}", f"s={self.session_name}"]
        if self.connection is not None:
            lines.append(f"c={self.connection.serialize()}")
        lines += [f"b={b}" for b in self.bandwidths]
        lines += [f"t={start} {stop}" for start, stop in self.times]
        lines += [f"a={a.serialize()}" for a in self.attributes]
        for media in self.media:
            lines += media.serialize_lines()
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The outcome of offer/answer for the audio stream, from our point of view."""

    remote_address: str
    remote_port: int
    codec: str
    """``PCMU`` or ``PCMA``."""
    payload_type: int
    clock_rate: int
    dtmf_payload_type: int | None
    """RFC 4733 telephone-event payload type, or None if the peer did not agree to it."""
    ptime: int
    """Packet time in milliseconds the peer wants to receive."""
    direction: Direction
    """What we may do: ``sendonly`` means we send and do not expect media."""

    @property
    def sends(self) -> bool:
        """Whether we may send media to the peer."""
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        """Whether the peer may send media to us."""
        return self.direction in ("sendrecv", "recvonly")


def _flags(direction: Direction) -> tuple[bool, bool]:
    return direction in ("sendrecv", "sendonly"), direction in ("sendrecv", "recvonly")


def _direction(send: bool, receive: bool) -> Direction:
    if send:
        return "sendrecv" if receive else "sendonly"
    return "recvonly" if receive else "inactive"


def _peer_flags(session: SessionDescription, media: Media, address: str) -> tuple[bool, bool]:
    """What the peer does (send, receive), with RFC 3264 8.4 hold by c=0.0.0.0 as no receiving."""
    send, receive = _flags(media.direction or session.direction or "sendrecv")
    return send, receive and address not in _UNSPECIFIED_ADDRESSES


def _media_address(session: SessionDescription, media: Media) -> str:
    connection = media.connection or session.connection
    if connection is None:
        raise _error("SDP audio stream has no c= line, at media or session level")
    return connection.address


def _codec_of(rtpmaps: dict[int, RtpMap], payload_type: int) -> tuple[str, int, int | None] | None:
    rtpmap = rtpmaps.get(payload_type)
    if rtpmap is not None:
        return rtpmap.encoding, rtpmap.clock_rate, rtpmap.channels
    static = _STATIC_PAYLOAD_TYPES.get(payload_type)
    return None if static is None else (static, _CLOCK_RATE, None)


_PAYLOAD_TYPES: Final = {str(number): number for number in range(128)}
"""Every payload type in its usual spelling (no leading zeros), for a dictionary lookup."""


def _payload_type(fmt: str) -> int:
    known = _PAYLOAD_TYPES.get(fmt)
    if known is not None:
        return known
    if not (fmt.isascii() and fmt.isdigit()) or int(fmt) > 127:
        raise _error(f"SDP m= format {fmt!r} is not an RTP payload type")
    return int(fmt)


def _pick_codec(
    media: Media, rtpmaps: dict[int, RtpMap], codecs: tuple[str, ...]
) -> tuple[str, int] | None:
    """The first format of ``media`` that is one of ``codecs`` (G.711 at 8 kHz, mono)."""
    for fmt in media.formats:
        payload_type = _payload_type(fmt)
        codec = _codec_of(rtpmaps, payload_type)
        if codec is None:
            continue
        name, clock_rate, channels = codec
        if name.upper() in codecs and clock_rate == _CLOCK_RATE and channels in (None, 1):
            return name.upper(), payload_type
    return None


def _dtmf_payload_type(media: Media, rtpmaps: dict[int, RtpMap]) -> int | None:
    for fmt in media.formats:
        codec = _codec_of(rtpmaps, _payload_type(fmt))
        if codec is not None and codec[0].lower() == "telephone-event" and codec[1] == _CLOCK_RATE:
            return int(fmt)
    return None


def _check_codecs(codecs: tuple[str, ...]) -> None:
    unknown = [c for c in codecs if c not in SUPPORTED_CODECS]
    if unknown or not codecs:
        raise LocalProtocolError(f"codecs must be among {', '.join(SUPPORTED_CODECS)}: {codecs}")


def _audio_media(
    port: int,
    codecs: tuple[tuple[str, int], ...],
    dtmf_payload_type: int | None,
    ptime: int,
    direction: Direction,
) -> Media:
    formats, attributes = _audio_lines(codecs, dtmf_payload_type, ptime, direction)
    return Media("audio", port, RTP_AVP, formats, attributes=attributes)


@lru_cache(maxsize=64)
def _audio_lines(
    codecs: tuple[tuple[str, int], ...],
    dtmf_payload_type: int | None,
    ptime: int,
    direction: Direction,
) -> tuple[tuple[str, ...], tuple[Attribute, ...]]:
    """Our m= line's formats and a= lines: the same few for every call, so made once each."""
    formats = [str(pt) for _, pt in codecs]
    attributes = [Attribute("rtpmap", f"{pt} {name}/{_CLOCK_RATE}") for name, pt in codecs]
    if dtmf_payload_type is not None:
        formats.append(str(dtmf_payload_type))
        attributes.append(Attribute("rtpmap", f"{dtmf_payload_type} telephone-event/{_CLOCK_RATE}"))
        attributes.append(Attribute("fmtp", f"{dtmf_payload_type} {DTMF_EVENTS}"))
    attributes += [Attribute("ptime", str(ptime)), Attribute(direction)]
    return tuple(formats), tuple(attributes)


@lru_cache(maxsize=16)
def _connection(address: str) -> Connection:
    """Our c= line at ``address`` (one of the few addresses we listen on)."""
    return Connection.for_address(address)


def _our_description(
    address: str, session_id: int, session_version: int, username: str, media: tuple[Media, ...]
) -> SessionDescription:
    """Our description: origin and connection at ``address``, session name ``username``."""
    connection = _connection(address)
    origin = Origin(username, str(session_id), session_version, address, "IN", connection.addrtype)
    return SessionDescription(origin, username, connection, media=media)


def create_offer(
    address: str,
    port: int,
    *,
    session_id: int,
    session_version: int = 0,
    codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    direction: Direction = "sendrecv",
    ptime: int = _DEFAULT_PTIME,
    username: str = "callwhisper",
) -> SessionDescription:
    """Our offer: the ``codecs`` in order of preference plus telephone-event 101 (0-16).

    Put a call on hold with ``direction="sendonly"`` (RFC 3264 8.4) and a new
    ``session_version``.
    """
    _check_codecs(codecs)
    media = _audio_media(
        port, tuple((c, SUPPORTED_CODECS[c]) for c in codecs), DTMF_PAYLOAD_TYPE, ptime, direction
    )
    return _our_description(address, session_id, session_version, username, (media,))


def create_answer(
    offer: SessionDescription,
    address: str,
    port: int,
    *,
    session_id: int,
    session_version: int = 0,
    codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    direction: Direction = "sendrecv",
    ptime: int = _DEFAULT_PTIME,
    username: str = "callwhisper",
) -> tuple[SessionDescription, NegotiatedMedia]:
    """Answer a remote offer (RFC 3264 6) and say what was agreed.

    The first RTP/AVP audio stream with a codec we support is accepted with
    the first such codec in the offerer's order, and telephone-event at the
    offerer's payload type if offered; every other stream is rejected with
    port 0. The answer's direction is ``direction`` narrowed by what the
    offer allows (sendonly is answered recvonly, inactive inactive...).
    Raises :class:`SdpError` 488 if no stream can be accepted.
    """
    _check_codecs(codecs)
    negotiated: NegotiatedMedia | None = None
    answered: list[Media] = []
    for media in offer.media:
        choice = None
        if negotiated is None and media.kind == "audio" and media.port and media.proto == RTP_AVP:
            rtpmaps = media.rtpmaps
            choice = _pick_codec(media, rtpmaps, codecs)
        if choice is None:
            # RFC 3264 6: a rejected stream keeps its m= line with port 0.
            answered.append(Media(media.kind, 0, media.proto, media.formats))
            continue
        remote_address = _media_address(offer, media)
        peer_send, peer_receive = _peer_flags(offer, media, remote_address)
        want_send, want_receive = _flags(direction)
        ours = _direction(want_send and peer_receive, want_receive and peer_send)
        codec, payload_type = choice
        dtmf = _dtmf_payload_type(media, rtpmaps)
        answered.append(_audio_media(port, ((codec, payload_type),), dtmf, ptime, ours))
        negotiated = NegotiatedMedia(
            remote_address,
            media.port,
            codec,
            payload_type,
            _CLOCK_RATE,
            dtmf,
            media.ptime or _DEFAULT_PTIME,
            ours,
        )
    if negotiated is None:
        raise SdpError(
            f"SDP offer has no RTP/AVP audio stream with a codec we support ({', '.join(codecs)})",
            status_hint=488,
        )
    answer = _our_description(address, session_id, session_version, username, tuple(answered))
    return answer, negotiated


def negotiate_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia:
    """What was agreed, given our ``offer`` and the peer's ``answer`` to it (RFC 3264 7).

    Raises :class:`SdpError`: 400 if the answer does not match the offer's
    structure, 488 if it accepts no audio stream with a codec we offered.
    """
    if len(answer.media) != len(offer.media):
        raise _error(
            f"SDP answer has {len(answer.media)} m= lines, the offer had {len(offer.media)}"
        )
    for ours, theirs in zip(offer.media, answer.media, strict=True):
        if theirs.kind != "audio" or not theirs.port or ours.kind != "audio":
            continue
        rtpmaps = ours.rtpmaps
        offered = tuple(
            mapped[0].upper()
            for fmt in ours.formats
            if (mapped := _codec_of(rtpmaps, _payload_type(fmt))) is not None
            and mapped[0].upper() in SUPPORTED_CODECS
        )
        their_maps = theirs.rtpmaps
        choice = _pick_codec(theirs, their_maps, offered)
        if choice is None:
            raise SdpError(
                f"SDP answer accepts none of the codecs we offered ({', '.join(offered)})",
                status_hint=488,
            )
        remote_address = _media_address(answer, theirs)
        peer_send, peer_receive = _peer_flags(answer, theirs, remote_address)
        our_send, our_receive = _flags(ours.direction or offer.direction or "sendrecv")
        codec, payload_type = choice
        return NegotiatedMedia(
            remote_address,
            theirs.port,
            codec,
            payload_type,
            _CLOCK_RATE,
            _dtmf_payload_type(theirs, their_maps),
            theirs.ptime or _DEFAULT_PTIME,
            _direction(our_send and peer_receive, our_receive and peer_send),
        )
    raise SdpError("SDP answer rejected every audio stream", status_hint=488)
