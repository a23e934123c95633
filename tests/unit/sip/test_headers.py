"""Typed header values: URIs, name-addr, Via, CSeq and parameters."""

from __future__ import annotations

import pytest

from callwhisper.errors import SipParseError
from callwhisper.sip.headers import (
    HEADER_SPELLINGS,
    CSeq,
    canonical_name,
    header_key,
    parse_cseq,
    parse_name_addr,
    parse_params,
    parse_uri,
    parse_via,
    split_comma_list,
)


def test_sip_uri_parts_and_round_trip() -> None:
    text = "sips:+13125550143:pw@[2001:db8::1]:5061;transport=tls;lr?subject=lead"
    uri = parse_uri(text)
    assert (uri.scheme, uri.user, uri.password) == ("sips", "+13125550143", "pw")
    assert (uri.host, uri.port, uri.hostport) == ("[2001:db8::1]", 5061, "[2001:db8::1]:5061")
    assert uri.params == {"transport": "tls", "lr": None}
    assert uri.headers == "subject=lead"
    assert str(uri) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tel:+13125550143", "not a SIP URI: 'tel:+13125550143'"),
        ("sip:@host", "malformed SIP URI: 'sip:@host'"),
        ("sip:user@host:port", "malformed SIP URI host: 'host:port'"),
        ("sip:user@[::1", "malformed SIP URI host: '[::1'"),
    ],
)
def test_bad_uris_raise_exact_errors(text: str, message: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert str(info.value) == message


def test_name_addr_with_quoted_display_containing_brackets() -> None:
    addr = parse_name_addr('"Smith, <Bob> \\"B\\"" <sip:bob@example.com;user=phone>;tag=9a;x')
    assert addr.display == '"Smith, <Bob> \\"B\\""'
    assert addr.uri == "sip:bob@example.com;user=phone"
    assert addr.params == {"tag": "9a", "x": None}
    assert addr.tag == "9a"
    assert str(addr) == '"Smith, <Bob> \\"B\\"" <sip:bob@example.com;user=phone>;tag=9a;x'


def test_addr_spec_parameters_belong_to_the_header() -> None:
    addr = parse_name_addr("sip:alice@example.com;tag=1928")
    assert (addr.uri, addr.tag) == ("sip:alice@example.com", "1928")
    assert str(addr.with_tag("x")) == "<sip:alice@example.com>;tag=x"


def test_via_with_spaces_ipv6_and_flags() -> None:
    via = parse_via(
        "SIP / 2.0 / tcp  [2001:db8::9]:5070 ;branch=z9hG4bK77;rport;received=192.0.2.1"
    )
    assert (via.transport, via.host, via.port) == ("TCP", "[2001:db8::9]", 5070)
    assert via.branch == "z9hG4bK77"
    assert via.params["rport"] is None
    assert str(via) == "SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bK77;rport;received=192.0.2.1"


def test_comma_lists_respect_quotes_and_brackets() -> None:
    value = '"A, B" <sip:a@x;p=1,2>, <sip:b@y>;q=0.5 ,sip:c@z'
    assert split_comma_list(value) == ['"A, B" <sip:a@x;p=1,2>', "<sip:b@y>;q=0.5", "sip:c@z"]


def test_params_keep_quoted_values_and_lowercase_names() -> None:
    assert parse_params(';Expires=60;+sip.instance="<urn:uuid:1;2>"') == {
        "expires": "60",
        "+sip.instance": '"<urn:uuid:1;2>"',
    }
    with pytest.raises(SipParseError, match=r"^malformed parameters: 'x;a=1'$"):
        parse_params("x;a=1")


def test_cseq_and_canonical_names() -> None:
    assert parse_cseq(" 4711   INVITE ") == CSeq(4711, "INVITE")
    assert str(CSeq(1, "BYE")) == "1 BYE"
    assert [canonical_name(n) for n in ("v", "CALL-ID", "www-authenticate", "X-Lead")] == [
        "Via",
        "Call-ID",
        "WWW-Authenticate",
        "X-Lead",
    ]


def test_header_key_validates_tokens_and_expands_compact_forms() -> None:
    assert header_key("v") == ("via", "Via")
    assert header_key("X-Lead-Id") == ("x-lead-id", "X-Lead-Id")
    assert header_key("Bad Name") is None
    assert header_key("") is None


def test_header_key_reads_any_case_of_a_known_name_without_growing_its_table() -> None:
    size = len(HEADER_SPELLINGS)
    assert header_key("cAlL-iD") == header_key("Call-Id") == ("call-id", "Call-ID")
    assert header_key("V") == ("via", "Via")
    assert len(HEADER_SPELLINGS) == size


@pytest.mark.parametrize(
    ("usual", "general"),
    [
        (
            "SIP/2.0/udp 192.0.2.1:5060;branch=z9hG4bK1;rport",
            "SIP / 2.0 / udp 192.0.2.1:5060 ;branch=z9hG4bK1;rport",
        ),
        ("SIP/2.0/TCP host.example.com", "sip/2.0/TCP  host.example.com"),
        (
            "SIP/2.0/UDP 192.0.2.1:00080;Received=192.0.2.2",
            "SIP/2.0/UDP\t192.0.2.1:00080 ;Received=192.0.2.2",
        ),
    ],
)
def test_the_usual_via_form_parses_as_the_general_one(usual: str, general: str) -> None:
    assert parse_via(usual) == parse_via(general)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SIP/2.0/UDP 192.0.2.1:65536;branch=z9hG4bK1", "malformed Via sent-by: '192.0.2.1:65536'"),
        ("SIP/2.0/UDP 192.0.2.1;", "malformed parameter: ''"),
        ("SIP/2.0/UDP 192.0.2.1:", "malformed Via sent-by: '192.0.2.1:'"),
    ],
)
def test_bad_vias_raise_exact_errors(text: str, message: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_via(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("usual", "general"),
    [
        (
            "<sip:+13125550143@203.0.113.10>;tag=as58f4a1",
            " <sip:+13125550143@203.0.113.10> ;TAG=as58f4a1 ",
        ),
        (
            '"WIRELESS CALLER" <sip:+1312@203.0.113.10;user=phone>;tag=a;x',
            '"WIRELESS CALLER"  <sip:+1312@203.0.113.10;user=phone>; tag=a ;X',
        ),
        ('"A \\"B\\"" <sips:bob@[2001:db8::1]:5061>', '"A \\"B\\""\t<sips:bob@[2001:db8::1]:5061>'),
    ],
)
def test_the_usual_name_addr_forms_parse_as_the_general_ones(usual: str, general: str) -> None:
    assert parse_name_addr(usual) == parse_name_addr(general)


def test_the_usual_parameters_parse_as_the_general_ones() -> None:
    assert parse_params(";branch=z9hG4bK1;rport;a=b=c") == parse_params(
        " ; Branch=z9hG4bK1 ; rport;A = b=c "
    )
    assert parse_params(";branch=z9hG4bK1;rport;a=b=c") == {
        "branch": "z9hG4bK1",
        "rport": None,
        "a": "b=c",
    }
