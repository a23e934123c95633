"""Typed header values: URIs, name-addr, Via, CSeq and parameters."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from unittest import mock

import pytest

from callwhisper.errors import SipParseError
from callwhisper.sip import headers
from callwhisper.sip.headers import (
    HEADER_SPELLINGS,
    CSeq,
    NameAddr,
    Params,
    Via,
    canonical_name,
    header_key,
    is_token,
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


@pytest.mark.parametrize(
    "text",
    [
        ";<ag=cw-a-1",  # a name that is not a token: written back with a tag, it would
        ";tag=a<b",  # swallow the tag (";<ag=cw-a-1;tag=x" reads as one parameter)
        ';tag="a"b',
        ";tag=a b",
        ';tag=a"b"',
    ],
)
def test_params_that_would_not_read_back_the_same_are_malformed(text: str) -> None:
    with pytest.raises(SipParseError, match=r"^malformed parameter"):
        parse_params(text)
    with pytest.raises(SipParseError, match=r"^malformed"):
        parse_name_addr("<sip:bob@example.com>" + text)


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


def test_the_methods_is_token_knows_by_name_are_tokens_by_the_grammar() -> None:
    """is_token answers the usual methods from a set: the token match must agree."""
    assert all(headers._TOKEN.fullmatch(method) for method in headers._METHODS)
    assert not is_token("INVITE ")
    assert not is_token("")
    assert is_token("invite")


def test_header_key_reads_any_case_of_a_known_name_without_growing_its_table() -> None:
    size = len(HEADER_SPELLINGS)
    assert header_key("cAlL-iD") == header_key("Call-Id") == ("call-id", "Call-ID")
    assert header_key("V") == ("via", "Via")
    assert len(HEADER_SPELLINGS) == size


def test_every_spelling_the_parser_looks_up_names_what_the_general_lookup_would() -> None:
    """parse_message reads known names from HEADER_SPELLINGS before trying header_key's checks."""
    for spelling, names in HEADER_SPELLINGS.items():
        full = canonical_name(spelling)
        assert (is_token(spelling), names) == (True, (full.lower(), full)), spelling


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


# Via, name-addr and parameter values in parts, each part with its usual spellings
# (read by the parsers' one-match shortcuts) and unusual ones (which must send the
# value the general way, to the same result).
_EDGE = (("",), (" ", "\t", "\r\n "))
_PARAMS = (
    ("", ";branch=z9hG4bK1;rport", ";tag=a", ";lr;transport=tcp", ";a=b=c;x"),
    (";TAG=a", ";", "; x", ";x ", ';q="a;b"', ";v=<x>", ";=v", ";a\x1c=b", ";a=\xa0", ",x", "x"),
)
_VIA = (
    _EDGE,
    (("SIP/2.0/",), ("sip/2.0/", "SIP / 2.0 / ", "SIP/2.1/", "SIP/2.0")),
    (("UDP", "tcp", "TLS"), ("", "U-DP", "UDP2")),
    ((" ",), ("  ", "\t", "")),
    (("192.0.2.1", "host.example.com"), ("[2001:db8::1]", "", "a b", "é.example", "h@x")),
    (("", ":5060", ":00080", ":65535"), (":65536", ":", ":5o60", ": 5060")),
    _PARAMS,
    _EDGE,
)
_NAME_ADDR = (
    _EDGE,
    (("", '"Al" ', '"A, <b> \\"c\\"" '), ('"x"', '"open ', "Al ", '"a\\\\" ', '"a\\" ')),
    (("<",), ("",)),
    (("sip:a@b", "sips:+1312@[::1]:5061;user=phone", "tel:+1312"), ("sip:a b", "", "1:a", "a>b")),
    ((">",), ("", ">>")),
    _PARAMS,
    _EDGE,
)


def _variants(parts: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]) -> Iterator[str]:
    """Every usual spelling of the parts, and each with one part made unusual."""
    for base in itertools.product(*(usual for usual, _ in parts)):
        yield "".join(base)
        for i, (_, unusual) in enumerate(parts):
            for odd in unusual:
                yield "".join((*base[:i], odd, *base[i + 1 :]))


def _outcome(parse: Callable[[str], Via | NameAddr | Params], text: str) -> object:
    try:
        return parse(text)
    except SipParseError as exc:
        return str(exc)


def test_the_usual_form_shortcuts_agree_with_the_general_parsers() -> None:
    """Each value gives the same Via, name-addr or parameters, or the same error, without them."""
    texts = list(dict.fromkeys(itertools.chain(*map(_variants, (_VIA, _NAME_ADDR, (_PARAMS,))))))
    for shortcut in (headers._USUAL_VIA, headers._USUAL_NAME_ADDR, headers._USUAL_PARAMS_MATCH):
        assert any(shortcut.fullmatch(text) for text in texts), shortcut.pattern
    parsers = (parse_via, parse_name_addr, parse_params)
    fast = [[_outcome(parse, text) for parse in parsers] for text in texts]
    never = re.compile(r"(?!)")
    with mock.patch.multiple(
        headers, _USUAL_VIA=never, _USUAL_NAME_ADDR=never, _USUAL_PARAMS_MATCH=never
    ):
        general = [[_outcome(parse, text) for parse in parsers] for text in texts]
    assert [text for text, a, b in zip(texts, fast, general, strict=True) if a != b] == []
