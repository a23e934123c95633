"""The helpers of the call legs: which transport and port a URI means, and our Contact."""

from __future__ import annotations

import pytest

from callwhisper.engine.legs import (
    Transport,
    caller_user,
    contact_uri,
    dialed_user,
    needs_sips,
    uri_address,
    uri_host,
    uri_transport,
    via_transport,
)
from callwhisper.errors import SipParseError
from callwhisper.sip.message import SipRequest, parse_message


def request(
    uri: str = "sip:sales@127.0.0.1",
    *,
    via: str = "UDP",
    contact: str | None = "sip:caller@127.0.0.1:5071",
    record_route: str | None = None,
    to: str = "<sip:sales@127.0.0.1>",
    from_: str = "<sip:caller@127.0.0.1>;tag=a",
    asserted: str | None = None,
) -> SipRequest:
    lines = [
        f"INVITE {uri} SIP/2.0",
        f"Via: SIP/2.0/{via} 127.0.0.1:5071;branch=z9hG4bK-1",
        f"From: {from_}",
        f"To: {to}",
        "Call-ID: c1",
        "CSeq: 1 INVITE",
    ]
    if asserted is not None:
        lines.append(f"P-Asserted-Identity: {asserted}")
    if contact is not None:
        lines.append(f"Contact: <{contact}>")
    if record_route is not None:
        lines.append(f"Record-Route: <{record_route}>")
    parsed = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(parsed, SipRequest)
    return parsed


@pytest.mark.parametrize(
    ("uri", "transport"),
    [
        ("sip:b@example.com", None),
        ("sip:b@example.com;transport=UDP", "udp"),
        ("sip:b@example.com;transport=tcp", "tcp"),
        ("sip:b@example.com;transport=tls", "tls"),
        ("sips:b@example.com", "tls"),
        ("SIPS:b@example.com", "tls"),
        ("sips:b@example.com;transport=tcp", "tls"),  # RFC 3261's way of writing TLS over TCP
    ],
)
def test_the_transport_a_uri_asks_for(uri: str, transport: Transport | None) -> None:
    assert uri_transport(uri) == transport


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("sip:b@example.com;transport=sctp", "transport sctp is not supported"),
        ("sips:b@example.com;transport=udp", "transport udp cannot carry a sips: URI"),
    ],
)
def test_a_transport_the_engine_cannot_use_is_a_value_error(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        uri_transport(uri)


@pytest.mark.parametrize(
    ("uri", "transport", "address"),
    [
        ("sip:b@192.0.2.1", None, ("192.0.2.1", 5060)),
        ("sip:b@192.0.2.1;transport=tcp", None, ("192.0.2.1", 5060)),
        ("sip:b@192.0.2.1;transport=tls", None, ("192.0.2.1", 5061)),
        ("sips:b@192.0.2.1", None, ("192.0.2.1", 5061)),
        ("sips:b@[2001:db8::1]", None, ("2001:db8::1", 5061)),
        ("sip:b@192.0.2.1", "tls", ("192.0.2.1", 5061)),  # a leg's own transport decides
        ("sips:b@192.0.2.1:5070", None, ("192.0.2.1", 5070)),
    ],
)
def test_a_uri_without_a_port_means_the_default_port_of_its_transport(
    uri: str, transport: Transport | None, address: tuple[str, int]
) -> None:
    """RFC 3261 19.1.2: 5060 for UDP and TCP, 5061 for TLS."""
    assert uri_address(uri, transport) == address


def test_the_host_a_certificate_must_name_is_the_uri_host_without_brackets() -> None:
    assert uri_host("sips:b@Buyer.Example:5061;lr") == "Buyer.Example"
    assert uri_host("sips:[2001:db8::1]") == "2001:db8::1"
    with pytest.raises(SipParseError):
        uri_host("tel:+14155550100")


@pytest.mark.parametrize(
    ("transport", "sips", "contact"),
    [
        ("udp", False, "<sip:callwhisper@192.0.2.1:5060>"),
        ("tcp", False, "<sip:callwhisper@192.0.2.1:5060;transport=tcp>"),
        ("tls", False, "<sip:callwhisper@192.0.2.1:5060;transport=tls>"),
        ("tls", True, "<sips:callwhisper@192.0.2.1:5060>"),
    ],
)
def test_our_contact_says_how_the_leg_goes(transport: Transport, sips: bool, contact: str) -> None:
    assert contact_uri("callwhisper", "192.0.2.1", 5060, transport, sips=sips) == contact


def test_a_dialog_is_secure_when_the_request_uri_is_sips() -> None:
    """RFC 3261 12.1.1."""
    assert needs_sips(request("sips:sales@127.0.0.1"))
    assert not needs_sips(request("sip:sales@127.0.0.1;transport=tls"))


def test_without_record_route_the_contact_decides_and_with_one_the_top_route() -> None:
    assert needs_sips(request(contact="sips:caller@127.0.0.1"))
    assert not needs_sips(request(contact=None))
    assert needs_sips(request(record_route="sips:127.0.0.1:5072;lr"))
    assert not needs_sips(
        request(contact="sips:caller@127.0.0.1", record_route="sip:127.0.0.1;transport=tls;lr")
    )


@pytest.mark.parametrize(
    ("via", "transport"), [("UDP", "udp"), ("TCP", "tcp"), ("TLS", "tls"), ("SCTP", "udp")]
)
def test_the_transport_a_request_came_over_is_its_top_via(via: str, transport: Transport) -> None:
    assert via_transport(request(via=via)) == transport


@pytest.mark.parametrize(
    ("uri", "to", "users"),
    [
        ("sip:sales@127.0.0.1", "<sip:sales@127.0.0.1>", ["sales"]),
        ("sip:+18005550100@127.0.0.1", "<sip:sales@127.0.0.1>", ["+18005550100", "sales"]),
        ("sip:127.0.0.1", "<sip:sales@127.0.0.1>", ["sales"]),
        ("sip:sales@127.0.0.1", "<tel:+18005550100>", ["sales"]),
    ],
)
def test_an_invite_is_for_the_request_uri_user_then_the_to_user(
    uri: str, to: str, users: list[str]
) -> None:
    assert list(dialed_user(request(uri, to=to))) == users


@pytest.mark.parametrize(
    ("from_", "asserted", "user"),
    [
        ("<sip:+14155550123@127.0.0.1>;tag=a", None, "+14155550123"),
        (
            '"Caller" <sip:+14155550123@127.0.0.1>;tag=a',
            "<sip:+14155550999@carrier>",
            "+14155550999",
        ),
        ("<sip:+14155550123@127.0.0.1>;tag=a", "not a name-addr <", "+14155550123"),
        ("<sip:anonymous@anonymous.invalid>;tag=a", None, "anonymous"),
        ("<tel:+14155550123>;tag=a", None, None),
    ],
)
def test_the_caller_is_the_asserted_identity_else_the_from_user(
    from_: str, asserted: str | None, user: str | None
) -> None:
    assert caller_user(request(from_=from_, asserted=asserted)) == user
