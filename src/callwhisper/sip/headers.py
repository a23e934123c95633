"""Typed SIP header values: URIs, name-addr, Via, CSeq and parameters (RFC 3261 19, 20, 25).

Every ``parse_*`` function takes the header value as text and raises
:class:`~callwhisper.errors.SipParseError` with an exact message; every type
renders back to wire text with ``str()``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple, TypeAlias

from callwhisper.errors import SipParseError

__all__ = [
    "BRANCH_MAGIC_COOKIE",
    "HEADER_SPELLINGS",
    "CSeq",
    "NameAddr",
    "Params",
    "SipURI",
    "Via",
    "canonical_name",
    "format_params",
    "header_key",
    "header_names",
    "is_token",
    "parse_cseq",
    "parse_name_addr",
    "parse_params",
    "parse_uri",
    "parse_via",
    "split_comma_list",
]

# RFC 3261 8.1.1.7: a branch starting with this cookie is RFC 3261 compliant.
BRANCH_MAGIC_COOKIE: Final = "z9hG4bK"

Params: TypeAlias = dict[str, str | None]

# RFC 3261 7.3.3 and the extensions that registered a compact form.
_COMPACT: Final[dict[str, str]] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN: Final[tuple[str, ...]] = (
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "In-Reply-To",
    "Max-Forwards",
    "Min-Expires",
    "MIME-Version",
    "Organization",
    "P-Asserted-Identity",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reply-To",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Session-Expires",
    "Subject",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
)

_CANONICAL: Final[dict[str, str]] = {name.lower(): name for name in _KNOWN} | _COMPACT


# RFC 3261 25.1 ``token``; one compiled match is cheaper than a per-character loop.
_TOKEN: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


# The methods of RFC 3261 and its extensions, all tokens: every message names one or two,
# and a set lookup costs a fraction of the match.
_METHODS: Final = frozenset(
    {
        "ACK",
        "BYE",
        "CANCEL",
        "INFO",
        "INVITE",
        "MESSAGE",
        "NOTIFY",
        "OPTIONS",
        "PRACK",
        "PUBLISH",
        "REFER",
        "REGISTER",
        "SUBSCRIBE",
        "UPDATE",
    }
)


def is_token(text: str) -> bool:
    """Whether ``text`` is a non-empty RFC 3261 25.1 token (a method, a header name)."""
    return text in _METHODS or _TOKEN.fullmatch(text) is not None


def canonical_name(name: str) -> str:
    """The full, conventionally cased name of a header; unknown names are kept as written."""
    return _CANONICAL.get(name.lower(), name)


def _spellings() -> dict[str, tuple[str, str]]:
    """``header_key`` answers for the spellings peers use for known names, computed once.

    The canonical, lowercase and capitalized (``Call-Id``) spellings and the
    compact forms in either case. The table is fixed, so no peer can grow it
    by writing names in new cases.
    """
    table: dict[str, tuple[str, str]] = {}
    for lower, full in _CANONICAL.items():
        capitalized = "-".join(part.capitalize() for part in lower.split("-"))
        for spelling in (full, lower, lower.upper(), capitalized):
            table[spelling] = (full.lower(), full)
    return table


HEADER_SPELLINGS: Final[Mapping[str, tuple[str, str]]] = _spellings()
"""``(lowercase key, canonical name)`` by the usual spellings of known header names."""


def header_names(name: str) -> tuple[str, str]:
    """``(lowercase key, canonical name)`` for a header name our code writes (not checked)."""
    hit = HEADER_SPELLINGS.get(name)
    if hit is None:
        full = canonical_name(name)
        hit = (full.lower(), full)
    return hit


def header_key(name: str) -> tuple[str, str] | None:
    """``(lowercase key, canonical name)`` for a header name as written, None if not a token."""
    hit = HEADER_SPELLINGS.get(name)
    if hit is not None:
        return hit
    if not is_token(name):
        return None
    full = canonical_name(name)
    return (full.lower(), full)


def _split_outside(value: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is outside double quotes and angle brackets."""
    if '"' not in value and ("<" not in value or sep not in value):
        return value.split(sep)
    parts: list[str] = []
    start = 0
    quoted = False
    angle = 0
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle += 1
        elif ch == ">" and angle:
            angle -= 1
        elif ch == sep and not angle:
            parts.append(value[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise SipParseError(f"unterminated quoted string in {value!r}")
    parts.append(value[start:])
    return parts


def split_comma_list(value: str) -> list[str]:
    """Split a header value holding several comma-separated values (RFC 3261 7.3.1)."""
    return [part.strip() for part in _split_outside(value, ",") if part.strip()]


# Parameters as nearly every peer writes them (``;branch=z9hG4bK1;rport``): lowercase
# token names, values without quotes, brackets, semicolons or whitespace. The general
# path of parse_params would give the same; _usual_params gets there with one split.
# Possessive: a name stops at "=" or ";" and a value at ";", so no match ever needs to
# give characters back, and the pattern only ends the ones it is part of.
_USUAL_PARAMS: Final = r"(?:;[a-z0-9\-.!%*_+`'~]++(?:=[^;\"<>\s]*+)?+)*+"
_USUAL_PARAMS_MATCH: Final = re.compile(_USUAL_PARAMS)


def _usual_params(text: str) -> Params:
    params: Params = {}
    if text:
        for part in text[1:].split(";"):
            name, eq, value = part.partition("=")
            params[name] = value if eq else None
    return params


# RFC 3261 25.1 ``gen-value``: a token or a host (IPv6 references included, so any
# character but the delimiters), or one quoted string.
_PARAM_VALUE: Final = re.compile(r'[^\s"<>;,]*|"(?:[^"\\]|\\.)*"', re.DOTALL)


def parse_params(text: str) -> Params:
    """Parse ``;name=value;flag`` generic parameters (RFC 3261 25.1 ``generic-param``).

    Names are lowercased; values are kept as written (quotes included).
    """
    if _USUAL_PARAMS_MATCH.fullmatch(text) is not None:
        return _usual_params(text)
    params: Params = {}
    if not text.strip():
        return params
    parts = _split_outside(text, ";")
    if parts[0].strip():
        raise SipParseError(f"malformed parameters: {text!r}")
    for part in parts[1:]:
        name, eq, val = part.partition("=")
        name = name.strip().lower()
        val = val.strip()
        # A name is a token and a value a token, a host or one quoted string: anything
        # else (a "<" in a name, say) would not read back the same once written out.
        if not _TOKEN.fullmatch(name) or (eq and not _PARAM_VALUE.fullmatch(val)):
            raise SipParseError(f"malformed parameter: {part!r}")
        params[name] = val if eq else None
    return params


def format_params(params: Params) -> str:
    """Render parameters back to ``;name=value`` text."""
    # A loop adding to one string costs about half a join over a generator, for the one to
    # three parameters of a header.
    text = ""
    for name, value in params.items():
        text += f";{name}" if value is None else f";{name}={value}"
    return text


_NOT_IN_HOST: Final = frozenset(' \t<>"@;,')


def _split_host_port(text: str, what: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` with IPv6 references in brackets (RFC 3261 25.1 ``hostport``)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"malformed {what}: {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"malformed {what}: {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_raw = text.partition(":")
        port_text = port_text_raw if colon else None
    if not host or not _NOT_IN_HOST.isdisjoint(host):
        raise SipParseError(f"malformed {what}: {text!r}")
    if port_text is None:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise SipParseError(f"malformed {what}: {text!r}")
    return host, int(port_text)


@dataclass(slots=True)
class SipURI:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 19.1)."""

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: Params = field(default_factory=dict)
    headers: str = ""
    password: str | None = None

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            userinfo = self.user
            if self.password is not None:
                userinfo += f":{self.password}"
            userinfo += "@"
        port = f":{self.port}" if self.port is not None else ""
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{userinfo}{self.host}{port}{format_params(self.params)}{headers}"

    @property
    def hostport(self) -> str:
        """``host[:port]`` as written in the URI."""
        return self.host if self.port is None else f"{self.host}:{self.port}"


def parse_uri(text: str) -> SipURI:
    """Parse a SIP or SIPS URI (RFC 3261 19.1.1); other schemes raise SipParseError."""
    scheme, colon, rest = text.strip().partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips"):
        raise SipParseError(f"not a SIP URI: {text!r}")
    rest, _, headers = rest.partition("?")
    at = rest.rfind("@")
    user: str | None = None
    password: str | None = None
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, pcolon, pw = userinfo.partition(":")
        password = pw if pcolon else None
        if not user:
            raise SipParseError(f"malformed SIP URI: {text!r}")
    hostport, semi, params_text = rest.partition(";")
    host, port = _split_host_port(hostport, "SIP URI host")
    params = parse_params(";" + params_text) if semi else {}
    return SipURI(scheme, user, host, port, params, headers, password)


@dataclass(slots=True)
class NameAddr:
    """A ``name-addr`` or ``addr-spec`` with header parameters (From, To, Contact, Route)."""

    uri: str
    display: str = ""
    params: Params = field(default_factory=dict)

    def __str__(self) -> str:
        params = format_params(self.params) if self.params else ""
        if self.display:
            return f"{self.display} <{self.uri}>{params}"
        return f"<{self.uri}>{params}"

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 19.3), if any."""
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with the ``tag`` parameter set."""
        return NameAddr(self.uri, self.display, {**self.params, "tag": tag})


# ``<sip:uri>;tag=1`` or ``"Name" <sip:uri>``, with usual parameters: one match gives
# what the general path of parse_name_addr would.
_USUAL_NAME_ADDR: Final = re.compile(
    r'(?:("(?:[^"\\]|\\.)*+") )?<([A-Za-z][A-Za-z0-9+\-.]*+:[^\s<>"]++)>(' + _USUAL_PARAMS + ")",
    re.DOTALL,
)


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``"Display" <uri>;params`` or ``uri;params`` (RFC 3261 20.10, 20.20, 20.39).

    Without angle brackets, everything after the first ``;`` is a header
    parameter, not a URI parameter (RFC 3261 20).
    """
    usual = _USUAL_NAME_ADDR.fullmatch(text)
    if usual is not None:
        display, uri, params = usual.groups()
        return NameAddr(uri, display or "", _usual_params(params))
    value = text.strip()
    display = ""
    search_from = 0
    if value.startswith('"'):
        i = 1
        while i < len(value) and value[i] != '"':
            i += 2 if value[i] == "\\" else 1
        if i >= len(value):
            raise SipParseError(f"unterminated display name in {text!r}")
        search_from = i + 1
    lt = value.find("<", search_from)
    if lt >= 0:
        display = value[:lt].strip()
        gt = value.find(">", lt)
        if gt < 0:
            raise SipParseError(f"missing '>' in {text!r}")
        uri = value[lt + 1 : gt].strip()
        params = parse_params(value[gt + 1 :])
    else:
        if search_from:
            raise SipParseError(f"missing '<' after display name in {text!r}")
        uri, semi, rest = value.partition(";")
        uri = uri.strip()
        params = parse_params(";" + rest) if semi else {}
        if " " in uri or "," in uri or "?" in uri:
            raise SipParseError(f"malformed address: {text!r}")
    if not _is_absolute_uri(uri):
        raise SipParseError(f"malformed address: {text!r}")
    return NameAddr(uri, display, params)


# RFC 3986 3.1 ``scheme ":"`` and a rest without the delimiters that end an address.
_ABSOLUTE_URI: Final = re.compile(r'[A-Za-z][A-Za-z0-9+\-.]*:[^ \t<>"]+')


def _is_absolute_uri(uri: str) -> bool:
    """``scheme ":" rest`` with an RFC 3986 scheme and no delimiter characters."""
    return _ABSOLUTE_URI.fullmatch(uri) is not None


@dataclass(slots=True)
class Via:
    """One Via header value (RFC 3261 20.42)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=dict)

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"

    @property
    def sent_by(self) -> str:
        """``host[:port]`` of the sender."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter (RFC 3261 8.1.1.7)."""
        return self.params.get("branch")


# The usual via-parm, ``SIP/2.0/UDP host[:port][;params]`` with usual parameters: one
# match parses what the general path below would, field for field.
_USUAL_VIA: Final = re.compile(
    r"SIP/2\.0/([A-Za-z]++) ([A-Za-z0-9.\-]++)(?::([0-9]{1,5}))?(" + _USUAL_PARAMS + ")"
)


def parse_via(text: str) -> Via:
    """Parse one ``via-parm``: ``SIP/2.0/UDP host:port;branch=...`` (RFC 3261 20.42)."""
    usual = _USUAL_VIA.fullmatch(text)
    if usual is not None:
        transport, host, port_text, params_text = usual.groups()
        port = None if port_text is None else int(port_text)
        if port is None or port <= 65535:
            return Via(transport.upper(), host, port, _usual_params(params_text))
    parts = text.split("/", 2)
    if len(parts) != 3 or parts[0].strip().upper() != "SIP" or parts[1].strip() != "2.0":
        raise SipParseError(f"malformed Via: {text!r}")
    words = parts[2].split(None, 1)
    if len(words) != 2:
        raise SipParseError(f"malformed Via: {text!r}")
    transport = words[0].upper()
    sent_by, semi, params_text = words[1].partition(";")
    host, port = _split_host_port(sent_by.strip(), "Via sent-by")
    params = parse_params(";" + params_text) if semi else {}
    return Via(transport, host, port, params)


class CSeq(NamedTuple):
    """The CSeq header (RFC 3261 20.16): a sequence number and a method.

    A tuple, made cheaply for every message parsed.
    """

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(text: str) -> CSeq:
    """Parse ``314159 INVITE``; the number must be below 2**31 (RFC 3261 8.1.1.5)."""
    words = text.split()
    if (
        len(words) != 2
        or not (words[0].isascii() and words[0].isdigit())
        or len(words[0]) > 10
        or not is_token(words[1])
    ):
        raise SipParseError(f"malformed CSeq: {text!r}")
    seq = int(words[0])
    if seq >= 2**31:
        raise SipParseError(f"CSeq number out of range: {text!r}")
    return CSeq(seq, words[1])
