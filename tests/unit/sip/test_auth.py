"""Digest authentication client (RFC 2617, RFC 7616, RFC 8760)."""

from __future__ import annotations

import hashlib

import pytest

from callwhisper.errors import RemoteProtocolError, SipParseError
from callwhisper.sip.auth import (
    DigestChallenge,
    DigestClient,
    authorization_value,
    digest_response,
    parse_challenge,
)
from callwhisper.sip.message import SipRequest, SipResponse, make_response, parse_message
from tests.unit.sip import fixtures as fx


def test_rfc2617_section_3_5_example() -> None:
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int",'
        ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert challenge.qop == ("auth", "auth-int")
    response = digest_response(
        challenge,
        username="Mufasa",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
        nc=1,
    )
    assert response == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_examples(algorithm: str, expected: str) -> None:
    challenge = DigestChallenge(
        realm="http-auth@example.org",
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        algorithm=algorithm,
        qop=("auth",),
    )
    response = digest_response(
        challenge,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert response == expected


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_sha256_sess_matches_the_formula() -> None:
    """RFC 7616 3.4.2: HA1 = H(H(user:realm:pass):nonce:cnonce).

    response = H(HA1:nonce:nc:cnonce:qop:H(method:uri)).
    """
    challenge = DigestChallenge("trunk", "n0nce", "SHA-256-sess", ("auth",))
    ha1 = sha256(f"{sha256('cw:trunk:s3cret')}:n0nce:c1")
    expected = sha256(f"{ha1}:n0nce:00000002:c1:auth:{sha256('INVITE:sip:b@x')}")
    got = digest_response(
        challenge,
        username="cw",
        password="s3cret",
        method="INVITE",
        uri="sip:b@x",
        cnonce="c1",
        nc=2,
    )
    assert got == expected


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_no_qop_uses_the_rfc2069_formula() -> None:
    challenge = DigestChallenge("trunk", "n0nce")
    expected = md5(f"{md5('cw:trunk:pw')}:n0nce:{md5('BYE:sip:b@x')}")
    value = authorization_value(
        challenge, username="cw", password="pw", method="BYE", uri="sip:b@x", cnonce="c"
    )
    assert value == (
        f'Digest username="cw", realm="trunk", nonce="n0nce", uri="sip:b@x",'
        f' response="{expected}", algorithm=MD5'
    )


def test_challenge_parse_errors_are_exact() -> None:
    with pytest.raises(SipParseError, match=r"^unsupported authentication scheme: 'Basic'$"):
        parse_challenge('Basic realm="x"')
    with pytest.raises(
        SipParseError, match=r"^challenge without realm or nonce: 'Digest realm=x'$"
    ):
        parse_challenge("Digest realm=x")


def test_client_answers_401_with_sha256_cseq_plus_one_and_new_branch() -> None:
    register = parse_message(fx.REGISTER)
    challenge = parse_message(fx.UNAUTHORIZED)
    assert isinstance(register, SipRequest)
    assert isinstance(challenge, SipResponse)
    client = DigestClient("callwhisper", "pa55", cnonce=lambda: "0a4f113b")
    again = client.authorize(register, challenge)
    assert again.cseq.seq == 2
    assert again.cseq.method == "REGISTER"
    assert again.top_via.branch != register.top_via.branch
    assert again.top_via.branch is not None
    assert again.top_via.branch.startswith("z9hG4bK")
    assert again.call_id == register.call_id
    assert again.headers.get("From") == register.headers.get("From")
    ha1 = sha256("callwhisper:trunk.example.net:pa55")
    ha2 = sha256("REGISTER:sip:registrar.trunk.example.net")
    nonce = "ea9c8e88df84f1cec4341ae6cbe5a359"
    response = sha256(f"{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}")
    assert again.headers.get("Authorization") == (
        f'Digest username="callwhisper", realm="trunk.example.net", nonce="{nonce}",'
        f' uri="sip:registrar.trunk.example.net", response="{response}", algorithm=SHA-256,'
        ' opaque="5ccc069c403ebaf9f0171e9517f40e41", qop=auth, nc=00000001, cnonce="0a4f113b"'
    )
    third = client.authorize(again, challenge)
    assert third.cseq.seq == 3
    assert "nc=00000002" in (third.headers.get("Authorization") or "")
    assert len(third.headers.get_all("Authorization")) == 1


def test_client_answers_407_with_proxy_authorization() -> None:
    invite = parse_message(fx.INVITE)
    assert isinstance(invite, SipRequest)
    challenge = make_response(
        invite,
        407,
        to_tag="p1",
        extra=[("Proxy-Authenticate", 'Digest realm="sbc", nonce="abc", qop="auth"')],
    )
    again = DigestClient("u", "p", cnonce=lambda: "c0ffee").authorize(invite, challenge)
    assert again.headers.get("Authorization") is None
    uri = "sip:+18005550100@198.51.100.5:5060"
    response = md5(f"{md5('u:sbc:p')}:abc:00000001:c0ffee:auth:{md5(f'INVITE:{uri}')}")
    assert again.headers.get_all("Proxy-Authorization") == [
        f'Digest username="u", realm="sbc", nonce="abc", uri="{uri}", response="{response}",'
        ' algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"'
    ]
    assert str(again.cseq) == "103 INVITE"
    assert again.body == invite.body
    assert [v.branch for v in again.vias][1:] == [v.branch for v in invite.vias][1:]


def test_client_refuses_unsupported_challenges() -> None:
    invite = parse_message(fx.INVITE)
    assert isinstance(invite, SipRequest)
    challenge = make_response(
        invite, 401, extra=[("WWW-Authenticate", 'Digest realm="x", nonce="n", algorithm=SHA-1')]
    )
    with pytest.raises(RemoteProtocolError, match=r"^no supported digest challenge in 401$"):
        DigestClient("u", "p").authorize(invite, challenge)
    with pytest.raises(RemoteProtocolError, match=r"^486 is not an authentication challenge$"):
        DigestClient("u", "p").authorize(invite, make_response(invite, 486))
