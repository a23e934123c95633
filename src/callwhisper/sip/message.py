"""SIP messages: parsing, serialization, stream framing and builders (RFC 3261 7, 8, 18.3).

``parse_message(data)`` turns one datagram (or one framed stream message) into
a :class:`SipRequest` or :class:`SipResponse`; ``bytes(message)`` turns it back.
:class:`StreamFramer` cuts a TCP byte stream into messages by Content-Length.
Every problem raises :class:`~callwhisper.errors.SipParseError` with an exact
message and a status hint (400, 505 for a wrong version, 513 when too large);
:func:`error_response` answers a request that could not be parsed.

Header values are kept as text; each typed value (``message.cseq``,
``message.top_via``...) is parsed once, by the parser's checks or on first
access, and kept with the headers until their lines change.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Final, TypeVar

from callwhisper.errors import SipParseError
from callwhisper.sip.headers import (
    BRANCH_MAGIC_COOKIE,
    HEADER_SPELLINGS,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    header_key,
    header_names,
    is_token,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_comma_list,
)

__all__ = [
    "MAX_MESSAGE_SIZE",
    "REASON_PHRASES",
    "Headers",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "StreamFramer",
    "error_response",
    "make_request",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
]

# RFC 3261 18.1.1 bounds UDP messages by the path MTU; a larger cap still
# leaves room for big SDP bodies over TCP while bounding memory per message.
MAX_MESSAGE_SIZE: Final = 65535

# RFC 3261 21.
REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# RFC 3261 8.1.1: the headers every request and response must carry.
_MANDATORY: Final = ("Via", "From", "To", "Call-ID", "CSeq")
_MANDATORY_KEYS: Final = tuple((name, name.lower()) for name in _MANDATORY)

_T = TypeVar("_T")


class Headers:
    """An ordered, case-insensitive multimap of header names to raw values.

    Compact forms are expanded on the way in (``v`` becomes ``Via``), so
    ``headers.get("via")`` and ``headers.get("v")`` find the same header.
    """

    __slots__ = ("_items", "_typed")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        # The typed values parsed from these lines, by lowercase key, for the
        # message's accessors; a change of a header's lines drops its value.
        self._typed: dict[str, object] = {}
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append a header line."""
        key, full = header_names(name)
        self._items.append((key, full, value))
        if self._typed:
            self._typed.pop(key, None)

    def prepend(self, name: str, value: str) -> None:
        """Insert a header line before all others (a new top Via, RFC 3261 8.1.1.7)."""
        key, full = header_names(name)
        self._items.insert(0, (key, full, value))
        self._typed.pop(key, None)

    def get(self, name: str) -> str | None:
        """The value of the first header line with this name, or None."""
        key = header_names(name)[0]
        for k, _, value in self._items:
            if k == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """The values of every header line with this name, in order."""
        key = header_names(name)[0]
        return [value for k, _, value in self._items if k == key]

    def values(self, name: str) -> list[str]:
        """Every value of a list header, split on commas across lines (RFC 3261 7.3.1)."""
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(split_comma_list(value))
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every line with this name by one line, kept at the first one's place."""
        key, full = header_names(name)
        self._typed.pop(key, None)
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                self._items[i] = (key, full, value)
                self._items[i + 1 :] = [item for item in self._items[i + 1 :] if item[0] != key]
                return
        self._items.append((key, full, value))

    def remove(self, name: str) -> None:
        """Remove every line with this name."""
        key = header_names(name)[0]
        self._items = [item for item in self._items if item[0] != key]
        self._typed.pop(key, None)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, value) for _, name, value in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


class _Message(ABC):
    """What requests and responses share: headers, body and typed accessors.

    A typed value is parsed from its header once and kept with the headers
    (until they change); the values are shared by every reader, so treat
    them as read-only.
    """

    __slots__ = ("body", "headers")

    def __init__(self, headers: Headers, body: bytes) -> None:
        self.headers = headers
        self.body = body

    def _typed(self, key: str, name: str, parser: Callable[[str], _T]) -> _T:
        typed = self.headers._typed
        if key in typed:
            return typed[key]  # type: ignore[return-value]
        raw = self.headers.get(key)
        if raw is None:
            raise SipParseError(f"missing {name} header")
        value = parser(raw)
        typed[key] = value
        return value

    def _typed_list(self, key: str, parser: Callable[[str], _T]) -> tuple[_T, ...]:
        typed = self.headers._typed
        if key in typed:
            return typed[key]  # type: ignore[return-value]
        values = tuple(parser(value) for value in self.headers.values(key))
        typed[key] = values
        return values

    @abstractmethod
    def _start_line(self) -> str:
        """The request or status line, without CRLF."""

    def _identity(self) -> tuple[str, list[tuple[str, str]], bytes]:
        # Content-Length is derived from the body, so it takes no part in equality.
        headers = [(k, v) for k, _, v in self.headers._items if k != "content-length"]
        return self._start_line(), headers, self.body

    def __eq__(self, other: object) -> bool:
        # A request never equals a response.
        if not isinstance(other, type(self)):
            return NotImplemented
        return self._identity() == other._identity()

    __hash__ = None  # type: ignore[assignment]

    @property
    def call_id(self) -> str:
        """The Call-ID (RFC 3261 20.8)."""
        return self._typed("call-id", "Call-ID", str.strip)

    @property
    def cseq(self) -> CSeq:
        """The CSeq (RFC 3261 20.16)."""
        return self._typed("cseq", "CSeq", parse_cseq)

    @property
    def from_(self) -> NameAddr:
        """The From header (RFC 3261 20.20)."""
        return self._typed("from", "From", parse_name_addr)

    @property
    def to(self) -> NameAddr:
        """The To header (RFC 3261 20.39)."""
        return self._typed("to", "To", parse_name_addr)

    @property
    def top_via(self) -> Via:
        """The first Via value (RFC 3261 20.42), across lines as for :attr:`vias`."""
        vias = self._typed_list("via", parse_via)
        if not vias:
            raise SipParseError("missing Via header")
        return vias[0]

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first, across lines and commas."""
        return list(self._typed_list("via", parse_via))

    @property
    def contacts(self) -> list[NameAddr]:
        """The Contact values (RFC 3261 20.10); empty for none or ``*``."""
        return [c for c in self._typed_list("contact", _contact) if c is not None]

    @property
    def record_route(self) -> list[NameAddr]:
        """The Record-Route values, top first (RFC 3261 20.30)."""
        return list(self._typed_list("record-route", parse_name_addr))

    @property
    def content_type(self) -> str | None:
        """The media type of the body, lowercased and without parameters."""
        raw = self.headers.get("Content-Type")
        return None if raw is None else raw.partition(";")[0].strip().lower()

    def __bytes__(self) -> bytes:
        length = str(len(self.body))
        lines = [self._start_line()]
        wrote_length = False
        for key, name, value in self.headers._items:
            if key == "content-length":
                if wrote_length:
                    continue
                value = length
                wrote_length = True
            lines.append(f"{name}: {value}")
        if not wrote_length:
            lines.append(f"Content-Length: {length}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode() + self.body


def _contact(value: str) -> NameAddr | None:
    """One Contact value; None for the ``*`` of a REGISTER that removes every binding."""
    return None if value == "*" else parse_name_addr(value)


class SipRequest(_Message):
    """A SIP request (RFC 3261 7.1)."""

    __slots__ = ("method", "uri")

    def __init__(self, method: str, uri: str, headers: Headers, body: bytes = b"") -> None:
        # What _Message.__init__ does, without the cost of super() for every message.
        self.headers = headers
        self.body = body
        self.method = method
        self.uri = uri

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"


class SipResponse(_Message):
    """A SIP response (RFC 3261 7.2)."""

    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str, headers: Headers, body: bytes = b"") -> None:
        # What _Message.__init__ does, without the cost of super() for every message.
        self.headers = headers
        self.body = body
        self.status = status
        self.reason = reason

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


SipMessage = SipRequest | SipResponse


def _content_length(values: list[str]) -> int | None:
    if not values:
        return None
    text = values[0].strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise SipParseError(f"invalid Content-Length: {values[0]!r}")
    if len(values) > 1 and any(v.strip() != text for v in values[1:]):
        raise SipParseError("conflicting Content-Length headers")
    return int(text)


def _skip_crlf(data: bytes | bytearray) -> int:
    # RFC 3261 7.5: CRLFs before the start line are ignored.
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    return start


def parse_message(
    data: bytes, *, stream: bool = False, max_size: int = MAX_MESSAGE_SIZE
) -> SipMessage:
    """Parse one SIP message.

    For a datagram (``stream=False``) a missing Content-Length means the body
    runs to the end of the datagram and bytes past Content-Length are dropped
    (RFC 3261 18.3); on a stream Content-Length is mandatory and must match.
    """
    if len(data) > max_size:
        raise SipParseError(f"message too large: {len(data)} bytes (limit {max_size})", 513)
    start = _skip_crlf(data) if data.startswith(b"\r\n") else 0
    if start == len(data):
        raise SipParseError("empty message")
    head_end = data.find(b"\r\n\r\n", start)
    if head_end < 0:
        raise SipParseError("missing empty line after headers")
    try:
        head = data[start:head_end].decode()
    except UnicodeDecodeError:
        raise SipParseError("header block is not valid UTF-8") from None
    lines = head.split("\r\n")
    if head.count("\r") != len(lines) - 1 or head.count("\n") != len(lines) - 1:
        raise SipParseError("bare CR or LF in header block")
    headers = Headers()
    items = headers._items
    known = HEADER_SPELLINGS
    # The first value of each header, kept on the way (a folded line redoes it below).
    first: dict[str, str] = {}
    folded = False
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        names = known.get(name)
        if names is None or not colon:
            if line[:1] in (" ", "\t"):
                # RFC 3261 7.3.1: a line starting with whitespace continues the previous one.
                if not items:
                    raise SipParseError(f"continuation line before first header: {line!r}")
                key, full, value = items[-1]
                # The whitespace becomes one SP; a value that only starts here gets none.
                items[-1] = (key, full, f"{value} {line.strip()}" if value else line.strip())
                folded = True
                continue
            names = header_key(name.rstrip()) if colon else None
            if names is None:
                raise SipParseError(f"malformed header line: {line!r}")
        value = value.strip()
        items.append((names[0], names[1], value))
        first.setdefault(names[0], value)

    message = _parse_start_line(lines[0], headers)
    if folded or len(first) != len(items):
        first, vias, lengths = _index(items)
    else:
        # No header twice: at most one Via and one Content-Length line, found in first.
        via = first.get("via")
        vias = [] if via is None else [via]
        length_text = first.get("content-length")
        lengths = [] if length_text is None else [length_text]
    length = _content_length(lengths)
    body = data[head_end + 4 :]
    if length is None:
        if stream:
            raise SipParseError("missing Content-Length on stream transport")
    elif length > len(body):
        raise SipParseError(f"Content-Length {length} exceeds body size {len(body)}")
    elif stream and length < len(body):
        raise SipParseError(f"Content-Length {length} is less than body size {len(body)}")
    else:
        body = body[:length]
    message.body = body
    _validate(message, first, vias)
    return message


def _index(items: list[tuple[str, str, str]]) -> tuple[dict[str, str], list[str], list[str]]:
    """The first value of each header, the Via lines and the Content-Length values."""
    first: dict[str, str] = {}
    vias: list[str] = []
    lengths: list[str] = []
    for key, _, value in items:
        if key not in first:
            first[key] = value
        if key == "via":
            vias.append(value)
        elif key == "content-length":
            lengths.append(value)
    return first, vias, lengths


def _parse_start_line(line: str, headers: Headers) -> SipMessage:
    if line.startswith("SIP/"):
        version, _, rest = line.partition(" ")
        if version != "SIP/2.0":
            raise SipParseError(f"unsupported SIP version: {version!r}", 505)
        code, _, reason = rest.partition(" ")
        if len(code) != 3 or not (code.isascii() and code.isdigit()) or code[0] not in "123456":
            raise SipParseError(f"invalid status code: {code!r}")
        return SipResponse(int(code), reason.strip(), headers)
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError(f"malformed request line: {line!r}")
    method, uri, version = parts
    if not is_token(method):
        raise SipParseError(f"invalid method: {method!r}")
    if version != "SIP/2.0":
        raise SipParseError(f"unsupported SIP version: {version!r}", 505)
    if ":" not in uri or uri.startswith(":"):
        raise SipParseError(f"malformed Request-URI: {uri!r}")
    return SipRequest(method, uri, headers)


def _validate(message: SipMessage, first: dict[str, str], via_lines: list[str]) -> None:
    """Check the headers every later layer relies on (RFC 3261 8.1.1, 8.2.2).

    The typed values parsed on the way are kept for the message's accessors.
    """
    for name, key in _MANDATORY_KEYS:
        if key not in first:
            raise SipParseError(f"missing {name} header")
    call_id = first["call-id"].strip()
    if not call_id:
        raise SipParseError("empty Call-ID header")
    cseq = parse_cseq(first["cseq"])
    from_ = parse_name_addr(first["from"])
    to = parse_name_addr(first["to"])
    if len(via_lines) == 1 and "," not in via_lines[0] and '"' not in via_lines[0]:
        # One Via line without commas or quotes: split_comma_list would only strip it.
        value = via_lines[0].strip()
        vias: tuple[Via, ...] = (parse_via(value),) if value else ()
    else:
        vias = tuple(parse_via(value) for line in via_lines for value in split_comma_list(line))
    if not vias:
        raise SipParseError("missing Via header")
    if isinstance(message, SipRequest) and cseq.method != message.method:
        raise SipParseError(
            f"CSeq method {cseq.method!r} does not match request method {message.method!r}"
        )
    max_forwards = first.get("max-forwards")
    if max_forwards is not None and not (
        max_forwards.isascii() and max_forwards.isdigit() and len(max_forwards) <= 3
    ):
        raise SipParseError(f"invalid Max-Forwards: {max_forwards!r}")
    typed = message.headers._typed
    typed["call-id"] = call_id
    typed["cseq"] = cseq
    typed["from"] = from_
    typed["to"] = to
    typed["via"] = vias


class StreamFramer:
    """Cuts a stream (TCP, TLS) into SIP messages by Content-Length (RFC 3261 18.3).

    Feed it bytes in chunks of any size; it returns each complete message's
    bytes, ready for ``parse_message(raw, stream=True)``. A framing error
    (no or bad Content-Length, a message over ``max_size``) leaves the stream
    unusable: the error is raised again on every later ``feed`` and the
    connection should be closed.
    """

    __slots__ = ("_buffer", "_error", "_max_size", "_need", "_scan")

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max_size = max_size
        self._need: int | None = None
        self._scan = 0
        self._error: SipParseError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the messages they complete, in order."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        try:
            return self._drain()
        except SipParseError as exc:
            self._error = exc
            raise

    def _drain(self) -> list[bytes]:
        buffer = self._buffer
        out: list[bytes] = []
        while True:
            if self._need is None:
                skip = _skip_crlf(buffer)
                if skip:
                    del buffer[:skip]
                    self._scan = 0
                if buffer == b"\r":
                    return out
                end = buffer.find(b"\r\n\r\n", max(0, self._scan - 3))
                if end < 0:
                    if len(buffer) > self._max_size:
                        raise SipParseError(f"message headers exceed {self._max_size} bytes", 513)
                    self._scan = len(buffer)
                    return out
                length = _framing_length(bytes(buffer[:end]))
                self._need = end + 4 + length
                if self._need > self._max_size:
                    raise SipParseError(
                        f"message too large: {self._need} bytes (limit {self._max_size})", 513
                    )
            if len(buffer) < self._need:
                return out
            out.append(bytes(buffer[: self._need]))
            del buffer[: self._need]
            self._need = None
            self._scan = 0


def _framing_length(head: bytes) -> int:
    values = []
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            values.append(value.decode("latin-1"))
    length = _content_length(values)
    if length is None:
        raise SipParseError("missing Content-Length on stream transport")
    return length


# Tags, branches and Call-IDs are cut from one os.urandom read per batch (the kernel's
# CSPRNG, as secrets uses) rather than one system call each; a forked child drops its
# parent's batches, whose values the parent hands out too.
_RANDOM_BATCH: Final = 64


def _random_batch(nbytes: int) -> Iterator[str]:
    # hex() puts a space after every nbytes bytes: split() then cuts the values in C.
    return iter(os.urandom(nbytes * _RANDOM_BATCH).hex(" ", nbytes).split())


class _RandomHex:
    """Random hex values of ``nbytes`` bytes each, cut from one system read per batch."""

    __slots__ = ("_batch", "_nbytes")

    def __init__(self, nbytes: int) -> None:
        self._nbytes = nbytes
        self._batch: Iterator[str] = iter(())

    def __call__(self) -> str:
        token = next(self._batch, None)
        if token is None:
            # Another thread may refill at the same time: each batch's values are handed out once.
            self._batch = batch = _random_batch(self._nbytes)
            token = next(batch)
        return token

    def forget(self) -> None:
        """Drop the values read ahead (a forked child must not reuse its parent's)."""
        self._batch = iter(())


_random_hex_8: Final = _RandomHex(8)
_random_hex_12: Final = _RandomHex(12)


def _forget_random() -> None:
    _random_hex_8.forget()
    _random_hex_12.forget()


os.register_at_fork(after_in_child=_forget_random)


def new_branch() -> str:
    """A fresh Via branch with the RFC 3261 magic cookie (8.1.1.7) and 64 random bits."""
    return BRANCH_MAGIC_COOKIE + _random_hex_8()


def new_tag() -> str:
    """A fresh From/To tag with 64 random bits (RFC 3261 19.3)."""
    return _random_hex_8()


def new_call_id() -> str:
    """A fresh, globally unique Call-ID: 96 random bits, no host (RFC 3261 8.1.1.4)."""
    return _random_hex_12()


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    contact: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
) -> SipResponse:
    """Build a response to ``request`` (RFC 3261 8.2.6).

    Via lines, From, Call-ID and CSeq are copied; To is copied and gets
    ``to_tag`` (or a fresh tag) when it has none, except on 100 Trying
    (8.2.6.2). Record-Route is copied into 101-299 responses to dialog-
    creating requests (12.1.1).
    """
    copied = request.headers._typed
    keys = _COPIED_WITH_ROUTES if 100 < status < 300 and request.method == "INVITE" else _COPIED
    typed: dict[str, object] = {key: copied[key] for key in _COPIED_TYPED if key in copied}
    to = copied.get("to")
    if not isinstance(to, NameAddr):
        to = request.to if status != 100 and request.headers.get("To") is not None else None
    if status != 100 and to is not None and to.tag is None:
        to = to.with_tag(to_tag or new_tag())
        to_value = str(to)
        items = [
            (key, name, to_value) if key == "to" else (key, name, value)
            for key, name, value in request.headers._items
            if key in keys
        ]
    else:
        items = [line for line in request.headers._items if line[0] in keys]
    if to is not None:
        # Read from its line, a To we tagged is this value again (a test checks that).
        typed["to"] = to
    headers = Headers()
    headers._items = items
    # The lines are the request's (or the To we made), so are their typed values.
    headers._typed = typed
    if contact is not None:
        items.append(("contact", "Contact", contact))
    for name, value in extra:
        key, full = header_names(name)
        items.append((key, full, value))
        # A line that joins a copied header (a second Via, say) has its value read anew.
        typed.pop(key, None)
    if content_type is not None:
        items.append(("content-type", "Content-Type", content_type))
    return SipResponse(status, reason or REASON_PHRASES.get(status, ""), headers, body)


# RFC 3261 8.2.6.2: what a response copies from its request as it is; To gets a tag, and
# Record-Route is copied into 101-299 responses to INVITE (12.1.1).
_COPIED: Final = frozenset({"via", "from", "to", "call-id", "cseq"})
_COPIED_WITH_ROUTES: Final = _COPIED | {"record-route"}
_COPIED_TYPED: Final = ("via", "from", "call-id", "cseq")


def make_request(
    method: str,
    uri: str,
    *,
    from_: NameAddr,
    to: NameAddr,
    via: Via,
    call_id: str | None = None,
    cseq: int = 1,
    contact: str | None = None,
    max_forwards: int = 70,
    routes: Iterable[str] = (),
    body: bytes = b"",
    content_type: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
) -> SipRequest:
    """Build an out-of-dialog request (RFC 3261 8.1.1); From gets a fresh tag if it has none."""
    if from_.tag is None:
        from_ = from_.with_tag(new_tag())
    items = [("via", "Via", str(via)), ("max-forwards", "Max-Forwards", str(max_forwards))]
    items += [("route", "Route", route) for route in routes]
    items += (
        ("from", "From", str(from_)),
        ("to", "To", str(to)),
        ("call-id", "Call-ID", call_id or new_call_id()),
        ("cseq", "CSeq", f"{cseq} {method}"),
    )
    if contact is not None:
        items.append(("contact", "Contact", contact))
    items += [(*header_names(name), value) for name, value in extra]
    if content_type is not None:
        items.append(("content-type", "Content-Type", content_type))
    headers = Headers()
    headers._items = items
    return SipRequest(method, uri, headers, body)


def error_response(
    data: bytes, error: SipParseError, *, agent: str = "callwhisper"
) -> bytes | None:
    """The response to a request that failed to parse, or None to drop it silently.

    RFC 3261 21.4.1: answer ``400 Bad Request`` (or ``error.status_hint``)
    when the request line and the Via, From, To, Call-ID and CSeq lines can be
    read, with the problem in a Warning (20.43, code 399). Responses and ACKs
    are never answered (17.1.1.3, 17.2.1); anything else unreadable is dropped.
    """
    start = _skip_crlf(data)
    end = data.find(b"\r\n\r\n", start)
    lines = data[start : end if end >= 0 else len(data)].split(b"\r\n")
    request_line = lines[0].split(b" ")
    if len(request_line) != 3 or lines[0].startswith(b"SIP/") or request_line[0] == b"ACK":
        return None
    found: dict[str, list[bytes]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        full = canonical_name(name.strip().decode("latin-1"))
        if full not in _MANDATORY or not colon or b"\r" in value or b"\n" in value:
            continue
        found.setdefault(full, []).append(value.strip())
    if any(name not in found for name in _MANDATORY):
        return None
    if any(b"ACK" in cseq.upper().split() for cseq in found["CSeq"]):
        return None
    if not _answerable(found):
        return None
    status = error.status_hint or 400
    reason = REASON_PHRASES.get(status, "Bad Request")
    text = str(error).replace("\\", "\\\\").replace('"', '\\"')
    out = [f"SIP/2.0 {status} {reason}".encode()]
    out.extend(b"Via: " + via for via in found["Via"])
    out.append(b"From: " + found["From"][0])
    to = found["To"][0]
    if b";tag=" not in to.lower().replace(b" ", b""):
        to += b";tag=" + new_tag().encode()
    out.append(b"To: " + to)
    out.append(b"Call-ID: " + found["Call-ID"][0])
    out.append(b"CSeq: " + found["CSeq"][0])
    out.append(f'Warning: 399 {agent} "{text}"'.encode())
    out.append(b"Content-Length: 0")
    return b"\r\n".join(out) + b"\r\n\r\n"


def _answerable(found: dict[str, list[bytes]]) -> bool:
    """Whether the copied headers are well-formed enough to route and match a response."""
    try:
        vias = [parse_via(v) for via in found["Via"] for v in split_comma_list(via.decode())]
        parse_name_addr(found["From"][0].decode())
        parse_name_addr(found["To"][0].decode())
        parse_cseq(found["CSeq"][0].decode())
        call_id = found["Call-ID"][0].decode()
    except (SipParseError, UnicodeDecodeError):
        return False
    # Without a Via value the response has nowhere to go (RFC 3261 18.2.2).
    return bool(vias and call_id)
