"""Digest authentication, client side (RFC 3261 22, RFC 2617, RFC 7616, RFC 8760).

When a trunk answers our INVITE with 401 or 407, :class:`DigestClient`
builds the same request again with credentials, a CSeq one higher and a new
branch (RFC 3261 22.2: it is a new transaction).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from callwhisper.errors import RemoteProtocolError, SipParseError
from callwhisper.sip.headers import Via, split_comma_list
from callwhisper.sip.message import Headers, SipRequest, SipResponse, new_branch

__all__ = [
    "DigestChallenge",
    "DigestClient",
    "authorization_value",
    "digest_response",
    "parse_challenge",
]

# RFC 7616 3.7 / RFC 8760 2: algorithm name to hashlib name.
_ALGORITHMS: Final[dict[str, str]] = {
    "MD5": "md5",
    "SHA-256": "sha256",
    "SHA-512-256": "sha512_256",
}


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """One ``Digest`` challenge from WWW-Authenticate or Proxy-Authenticate (RFC 7616 3.3)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False

    @property
    def supported(self) -> bool:
        """Whether we can answer it: a known algorithm, and ``auth`` or no qop."""
        base = self.algorithm.upper().removesuffix("-SESS")
        return base in _ALGORITHMS and (not self.qop or "auth" in self.qop)


def parse_challenge(value: str) -> DigestChallenge:
    """Parse a ``Digest realm=..., nonce=..., ...`` challenge (RFC 7616 3.3)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipParseError(f"unsupported authentication scheme: {scheme!r}")
    params: dict[str, str] = {}
    for item in split_comma_list(rest):
        name, eq, raw = item.partition("=")
        if not eq:
            raise SipParseError(f"malformed challenge parameter: {item!r}")
        params[name.strip().lower()] = _unquote(raw)
    if "realm" not in params or "nonce" not in params:
        raise SipParseError(f"challenge without realm or nonce: {value!r}")
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    return DigestChallenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=params.get("algorithm", "MD5"),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


def digest_response(
    challenge: DigestChallenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
) -> str:
    """The ``response`` value (RFC 7616 3.4.1; RFC 2617 3.2.2.1 without qop).

    A1 = username:realm:password (then H(A1):nonce:cnonce for -sess),
    A2 = method:uri; with qop=auth the response is
    H(H(A1):nonce:nc:cnonce:qop:H(A2)), without qop H(H(A1):nonce:H(A2)).
    """
    algorithm = challenge.algorithm.upper()
    name = _ALGORITHMS.get(algorithm.removesuffix("-SESS"))
    if name is None:
        raise RemoteProtocolError(f"unsupported digest algorithm: {challenge.algorithm!r}")

    def h(text: str) -> str:
        return hashlib.new(name, text.encode()).hexdigest()

    ha1 = h(f"{username}:{challenge.realm}:{password}")
    if algorithm.endswith("-SESS"):
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    if "auth" in challenge.qop:
        return h(f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    return h(f"{ha1}:{challenge.nonce}:{ha2}")


def authorization_value(
    challenge: DigestChallenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
) -> str:
    """The Authorization / Proxy-Authorization header value (RFC 7616 3.4)."""
    response = digest_response(
        challenge,
        username=username,
        password=password,
        method=method,
        uri=uri,
        cnonce=cnonce,
        nc=nc,
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if "auth" in challenge.qop:
        parts += ["qop=auth", f"nc={nc:08x}", f"cnonce={_quote(cnonce)}"]
    return "Digest " + ", ".join(parts)


class DigestClient:
    """Answers 401/407 challenges with one set of credentials, counting nonce use (nc)."""

    def __init__(
        self,
        username: str,
        password: str,
        *,
        cnonce: Callable[[], str] = lambda: secrets.token_hex(8),
    ) -> None:
        self.username = username
        self.password = password
        self._cnonce = cnonce
        self._nonce_count: dict[str, int] = {}

    def authorize(self, request: SipRequest, challenge: SipResponse) -> SipRequest:
        """The request to send again after a 401 or 407 (RFC 3261 22.2, 8.1.3.5).

        Uses the first challenge we support (RFC 8760 2.4: the server lists
        its preferred algorithm first), keeps the headers and body, sets
        CSeq+1 and a fresh branch in the top Via.
        """
        if challenge.status == 401:
            asked, answer = "WWW-Authenticate", "Authorization"
        elif challenge.status == 407:
            asked, answer = "Proxy-Authenticate", "Proxy-Authorization"
        else:
            raise RemoteProtocolError(f"{challenge.status} is not an authentication challenge")
        offered = []
        for value in challenge.headers.get_all(asked):
            try:
                offered.append(parse_challenge(value))
            except SipParseError:
                continue
        usable = next((c for c in offered if c.supported), None)
        if usable is None:
            raise RemoteProtocolError(f"no supported digest challenge in {challenge.status}")
        nc = self._nonce_count.get(usable.nonce, 0) + 1
        self._nonce_count[usable.nonce] = nc
        value = authorization_value(
            usable,
            username=self.username,
            password=self.password,
            method=request.method,
            uri=request.uri,
            cnonce=self._cnonce(),
            nc=nc,
        )
        old = request.top_via
        top = str(Via(old.transport, old.host, old.port, {**old.params, "branch": new_branch()}))
        headers = Headers()
        replaced = False
        for name, existing in request.headers:
            if name == "Via" and not replaced:
                replaced = True
                headers.add(name, ", ".join([top, *split_comma_list(existing)[1:]]))
            elif name == "CSeq":
                headers.add(name, f"{request.cseq.seq + 1} {request.method}")
            elif name != answer:
                headers.add(name, existing)
        headers.add(answer, value)
        return SipRequest(request.method, request.uri, headers, request.body)
