"""Parsing, serialization, stream framing and builders of SIP messages."""

from __future__ import annotations

import os

import pytest

from callwhisper.errors import SipParseError
from callwhisper.sip.headers import CSeq, NameAddr, Via
from callwhisper.sip.message import (
    Headers,
    SipRequest,
    SipResponse,
    StreamFramer,
    error_response,
    make_request,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)
from tests.unit.sip import fixtures as fx


def request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def test_invite_with_sdp_is_parsed_into_typed_fields() -> None:
    invite = request(fx.INVITE)
    assert invite.method == "INVITE"
    assert invite.uri == "sip:+18005550100@198.51.100.5:5060"
    assert invite.call_id == "6d1c0f3b2a9e4c7d@203.0.113.10"
    assert (invite.cseq.seq, invite.cseq.method) == (102, "INVITE")
    assert invite.from_.display == '"WIRELESS CALLER"'
    assert invite.from_.tag == "as58f4a1"
    assert invite.to.tag is None
    assert [v.branch for v in invite.vias] == ["z9hG4bK-524287-1---a1b2c3d4e5f6", "z9hG4bK3e7a91"]
    assert invite.top_via.sent_by == "203.0.113.10:5060"
    assert invite.top_via.params["rport"] is None
    assert [c.uri for c in invite.contacts] == ["sip:+13125550143@203.0.113.10:5060;transport=udp"]
    assert invite.content_type == "application/sdp"
    assert invite.body == fx.SDP_OFFER
    assert invite.headers.values("Allow")[:3] == ["INVITE", "ACK", "CANCEL"]


def test_compact_forms_case_and_folding_are_normalized() -> None:
    invite = request(fx.INVITE_COMPACT)
    assert invite.call_id == "compact-1@203.0.113.10"
    assert invite.headers.get("call-id") == invite.headers.get("i") == "compact-1@203.0.113.10"
    assert invite.headers.get("Subject") == "lead from web form"
    assert invite.to.uri == "sip:+18005550100@198.51.100.5"
    assert [(v.transport, v.sent_by) for v in invite.vias] == [
        ("UDP", "203.0.113.10:5060"),
        ("TCP", "192.0.2.44"),
    ]
    assert invite.body == fx.SDP_OFFER
    names = [name for name, _ in invite.headers]
    assert names[:4] == ["Via", "Max-Forwards", "From", "To"]
    assert "Content-Length" in names


def test_a_value_that_starts_on_a_continuation_line_has_no_leading_space() -> None:
    """Found by the long fuzz run: ``Call-ID:`` then the value folded onto the next line."""
    folded = fx.OK_INVITE.replace(b"Call-ID: ", b"Call-ID:\r\n ", 1)
    ok = parse_message(folded)
    unfolded = parse_message(fx.OK_INVITE)
    assert ok.headers.get("Call-ID") == unfolded.headers.get("Call-ID") == unfolded.call_id
    assert parse_message(bytes(ok)) == ok == unfolded


def test_top_via_is_the_first_via_value_across_lines() -> None:
    """An empty first Via line made top_via raise IndexError, out of the transaction layer."""
    bye = request(fx.BYE.replace(b"Via: SIP", b"Via: ,\r\nVia: SIP"))
    assert bye.headers.get("Via") == ","
    assert bye.top_via == bye.vias[0]
    assert bye.top_via.branch == "z9hG4bK-524287-1---bye01"


def test_typed_values_are_parsed_once_and_follow_changes_of_their_header() -> None:
    bye = request(fx.BYE)
    from_ = bye.from_
    assert bye.cseq == CSeq(103, "BYE")
    bye.headers.set("CSeq", "104 BYE")
    bye.headers.prepend("Via", "SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKtop")
    assert bye.cseq == CSeq(104, "BYE")
    assert [v.branch for v in bye.vias] == ["z9hG4bKtop", "z9hG4bK-524287-1---bye01"]
    assert bye.top_via.host == "192.0.2.9"
    assert bye.from_ is from_
    bye.headers.remove("To")
    with pytest.raises(SipParseError, match=r"^missing To header$"):
        _ = bye.to


def test_response_status_and_reason() -> None:
    ok = parse_message(fx.OK_INVITE)
    assert isinstance(ok, SipResponse)
    assert (ok.status, ok.reason) == (200, "OK")
    assert [str(r) for r in ok.record_route] == [
        "<sip:proxy2.buyer.example.com;lr>",
        "<sip:proxy1.buyer.example.com;lr>",
    ]


@pytest.mark.parametrize("data", fx.MESSAGES)
def test_round_trip_through_bytes(data: bytes) -> None:
    """parse(bytes(parse(x))) == parse(x), and canonical bytes come back unchanged."""
    message = parse_message(data)
    again = parse_message(bytes(message))
    assert again == message
    assert bytes(again) == bytes(message)


def test_messages_are_equal_only_to_messages_of_the_same_kind() -> None:
    bye, ok = parse_message(fx.BYE), parse_message(fx.OK_INVITE)
    assert bye == parse_message(fx.BYE)
    assert bye != parse_message(fx.CANCEL)
    assert bye != ok
    assert ok != bye
    assert bye != fx.BYE


@pytest.mark.parametrize("data", [fx.INVITE, fx.RINGING, fx.OK_INVITE, fx.BYE, fx.REGISTER])
def test_canonical_fixtures_serialize_to_the_same_bytes(data: bytes) -> None:
    assert bytes(parse_message(data)) == data


def test_compact_message_serializes_with_full_names() -> None:
    out = bytes(parse_message(fx.INVITE_COMPACT))
    assert b"\r\nCall-ID: compact-1@203.0.113.10\r\n" in out
    assert b"\r\nContent-Length: 232\r\n\r\n" in out
    assert b"\r\nSubject: lead from web form\r\n" in out


def test_serialization_recomputes_content_length() -> None:
    message = parse_message(fx.OK_INVITE)
    message.body = b"v=0\r\n"
    assert b"\r\nContent-Length: 5\r\n\r\nv=0\r\n" in bytes(message)


def test_leading_crlf_is_ignored() -> None:
    assert parse_message(b"\r\n\r\n" + fx.BYE) == parse_message(fx.BYE)


def test_datagram_without_content_length_takes_the_rest_as_body() -> None:
    data = fx.INVITE.replace(b"Content-Length: 232\r\n", b"")
    assert request(data).body == fx.SDP_OFFER


def test_datagram_bytes_after_content_length_are_dropped() -> None:
    assert request(fx.INVITE + b"garbage").body == fx.SDP_OFFER


def test_stream_parse_requires_content_length() -> None:
    data = fx.BYE.replace(b"Content-Length: 0\r\n", b"")
    with pytest.raises(SipParseError, match=r"^missing Content-Length on stream transport$"):
        parse_message(data, stream=True)


def _drop(name: bytes) -> bytes:
    lines = [line for line in fx.BYE.split(b"\r\n") if not line.startswith(name)]
    return b"\r\n".join(lines)


MALFORMED: list[tuple[str, bytes, str, int]] = [
    ("empty", b"\r\n\r\n", "empty message", 400),
    ("no blank line", fx.BYE[:-4], "missing empty line after headers", 400),
    (
        "request line",
        fx.BYE.replace(b" SIP/2.0\r\n", b"SIP/2.0\r\n", 1),
        "malformed request line: 'BYE sip:+18005550100@198.51.100.5:5060SIP/2.0'",
        400,
    ),
    (
        "version",
        fx.BYE.replace(b"5060 SIP/2.0", b"5060 SIP/3.0", 1),
        "unsupported SIP version: 'SIP/3.0'",
        505,
    ),
    (
        "response version",
        fx.RINGING.replace(b"SIP/2.0 180", b"SIP/1.0 180"),
        "unsupported SIP version: 'SIP/1.0'",
        505,
    ),
    ("status", fx.RINGING.replace(b" 180 ", b" 18x "), "invalid status code: '18x'", 400),
    ("status range", fx.RINGING.replace(b" 180 ", b" 780 "), "invalid status code: '780'", 400),
    ("method", fx.BYE.replace(b"BYE sip", b"B@E sip"), "invalid method: 'B@E'", 400),
    (
        "request uri",
        fx.BYE.replace(b"BYE sip:+18005550100@198.51.100.5:5060", b"BYE nowhere"),
        "malformed Request-URI: 'nowhere'",
        400,
    ),
    (
        "header line",
        fx.BYE.replace(b"Max-Forwards: 70", b"Max-Forwards 70"),
        "malformed header line: 'Max-Forwards 70'",
        400,
    ),
    (
        "continuation first",
        fx.BYE.replace(b"SIP/2.0\r\nVia", b"SIP/2.0\r\n x\r\nVia", 1),
        "continuation line before first header: ' x'",
        400,
    ),
    (
        "bare LF",
        fx.BYE.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n"),
        "bare CR or LF in header block",
        400,
    ),
    ("utf8", fx.BYE.replace(b"WIRELESS", b"WIRE\xffLESS"), "header block is not valid UTF-8", 400),
    ("no Call-ID", _drop(b"Call-ID"), "missing Call-ID header", 400),
    ("no Via", _drop(b"Via"), "missing Via header", 400),
    ("no From", _drop(b"From"), "missing From header", 400),
    ("no To", _drop(b"To"), "missing To header", 400),
    ("no CSeq", _drop(b"CSeq"), "missing CSeq header", 400),
    (
        "cseq",
        fx.BYE.replace(b"CSeq: 103 BYE", b"CSeq: abc BYE"),
        "malformed CSeq: 'abc BYE'",
        400,
    ),
    (
        "cseq range",
        fx.BYE.replace(b"CSeq: 103 BYE", b"CSeq: 2147483648 BYE"),
        "CSeq number out of range: '2147483648 BYE'",
        400,
    ),
    (
        "cseq method",
        fx.BYE.replace(b"CSeq: 103 BYE", b"CSeq: 103 INVITE"),
        "CSeq method 'INVITE' does not match request method 'BYE'",
        400,
    ),
    (
        "via",
        fx.BYE.replace(b"Via: SIP/2.0/UDP 203.0.113.10:5060", b"Via: SIP/2.0 203.0.113.10:5060"),
        "malformed Via: 'SIP/2.0 203.0.113.10:5060;branch=z9hG4bK-524287-1---bye01;rport'",
        400,
    ),
    (
        "via port",
        fx.BYE.replace(b"203.0.113.10:5060;branch", b"203.0.113.10:99999;branch"),
        "malformed Via sent-by: '203.0.113.10:99999'",
        400,
    ),
    (
        "to",
        fx.BYE.replace(
            b"To: <sip:+18005550100@198.51.100.5>", b"To: <sip:+18005550100@198.51.100.5"
        ),
        "missing '>' in '<sip:+18005550100@198.51.100.5;tag=cw-a-1'",
        400,
    ),
    (
        "from display",
        fx.BYE.replace(b'From: "WIRELESS CALLER"', b'From: "WIRELESS CALLER'),
        "unterminated display name in "
        "'\"WIRELESS CALLER <sip:+13125550143@203.0.113.10>;tag=as58f4a1'",
        400,
    ),
    (
        "content length",
        fx.BYE.replace(b"Content-Length: 0", b"Content-Length: -1"),
        "invalid Content-Length: '-1'",
        400,
    ),
    (
        "content length conflict",
        fx.BYE.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 4"),
        "conflicting Content-Length headers",
        400,
    ),
    (
        "short body",
        fx.BYE.replace(b"Content-Length: 0", b"Content-Length: 10"),
        "Content-Length 10 exceeds body size 0",
        400,
    ),
    (
        "max forwards",
        fx.BYE.replace(b"Max-Forwards: 70", b"Max-Forwards: many"),
        "invalid Max-Forwards: 'many'",
        400,
    ),
]


@pytest.mark.parametrize(
    ("data", "message", "status"),
    [pytest.param(d, m, s, id=i) for i, d, m, s in MALFORMED],
)
def test_malformed_message_raises_exact_error(data: bytes, message: str, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert str(info.value) == message
    assert info.value.status_hint == status


def test_oversized_message_is_refused_with_513() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(fx.INVITE, max_size=100)
    assert str(info.value) == f"message too large: {len(fx.INVITE)} bytes (limit 100)"
    assert info.value.status_hint == 513


# Stream framing.


def test_framer_yields_whole_messages_fed_one_byte_at_a_time() -> None:
    stream = fx.INVITE + b"\r\n\r\n" + fx.BYE + fx.OK_INVITE
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(stream)):
        out.extend(framer.feed(stream[i : i + 1]))
    assert out == [fx.INVITE, fx.BYE, fx.OK_INVITE]
    assert [bytes(parse_message(raw, stream=True)) for raw in out] == out


@pytest.mark.parametrize("chunk", [2, 3, 7, 64, 1000])
def test_framer_accepts_any_chunk_size(chunk: int) -> None:
    stream = fx.INVITE_COMPACT + fx.CANCEL + fx.REGISTER
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(0, len(stream), chunk):
        out.extend(framer.feed(stream[i : i + chunk]))
    assert out == [fx.INVITE_COMPACT, fx.CANCEL, fx.REGISTER]


def test_framer_returns_nothing_until_the_body_is_complete() -> None:
    framer = StreamFramer()
    assert framer.feed(fx.INVITE[:-1]) == []
    assert framer.feed(fx.INVITE[-1:]) == [fx.INVITE]


def test_framer_needs_content_length_and_stays_failed() -> None:
    framer = StreamFramer()
    data = fx.BYE.replace(b"Content-Length: 0\r\n", b"")
    with pytest.raises(SipParseError, match=r"^missing Content-Length on stream transport$"):
        framer.feed(data)
    with pytest.raises(SipParseError, match=r"^missing Content-Length on stream transport$"):
        framer.feed(fx.BYE)


def test_framer_rejects_endless_headers() -> None:
    framer = StreamFramer(max_size=200)
    framer.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    with pytest.raises(SipParseError) as info:
        framer.feed(b"X-Filler: " + b"a" * 200)
    assert str(info.value) == "message headers exceed 200 bytes"
    assert info.value.status_hint == 513


def test_framer_rejects_announced_oversized_body() -> None:
    framer = StreamFramer(max_size=1000)
    data = fx.BYE.replace(b"Content-Length: 0", b"Content-Length: 10000")
    with pytest.raises(SipParseError) as info:
        framer.feed(data)
    assert str(info.value) == f"message too large: {len(data) + 10000} bytes (limit 1000)"


# Error responses for unparseable requests.


def answer_to(data: bytes) -> bytes:
    """The error response to a request the parser refuses."""
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    answer = error_response(data, info.value)
    assert answer is not None
    return answer


def test_error_response_copies_headers_and_explains_in_warning() -> None:
    answer = answer_to(fx.BYE.replace(b"Max-Forwards: 70", b"Max-Forwards: many"))
    lines = answer.split(b"\r\n")
    assert lines[0] == b"SIP/2.0 400 Bad Request"
    assert lines[1] == b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-524287-1---bye01;rport"
    assert lines[4:7] == [
        b"Call-ID: 6d1c0f3b2a9e4c7d@203.0.113.10",
        b"CSeq: 103 BYE",
        b"Warning: 399 callwhisper \"invalid Max-Forwards: 'many'\"",
    ]
    reply = parse_message(answer)
    assert isinstance(reply, SipResponse)
    assert reply.to.tag == "cw-a-1"


def test_error_response_adds_to_tag_and_uses_status_hint() -> None:
    answer = answer_to(fx.INVITE.replace(b"5060 SIP/2.0", b"5060 SIP/3.0", 1))
    assert answer.startswith(b"SIP/2.0 505 Version Not Supported\r\n")
    assert b"Via: SIP/2.0/UDP 192.0.2.44:5060;received=192.0.2.44;branch=z9hG4bK3e7a91" in answer
    to_line = next(line for line in answer.split(b"\r\n") if line.startswith(b"To:"))
    assert to_line.startswith(b"To: <sip:+18005550100@198.51.100.5>;tag=")


def test_error_response_reads_compact_and_odd_cased_header_names() -> None:
    answer = answer_to(fx.INVITE_COMPACT.replace(b"max-forwards: 70", b"max-forwards: x"))
    reply = parse_message(answer)
    assert isinstance(reply, SipResponse)
    assert (reply.status, reply.call_id, str(reply.cseq)) == (
        400,
        "compact-1@203.0.113.10",
        "1 INVITE",
    )
    assert (reply.top_via.branch, reply.from_.tag) == ("z9hG4bKc0ffee01", "77aa")
    assert reply.to.uri == "sip:+18005550100@198.51.100.5"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            _drop(b"Call-ID").replace(b"Max-Forwards: 70", b"Max-Forwards: x"), id="no-call-id"
        ),
        pytest.param(fx.ACK.replace(b"Max-Forwards: 70", b"Max-Forwards: x"), id="ack"),
        pytest.param(
            fx.BYE.replace(b"Via: SIP/2.0/UDP", b"Via: ,\r\nX-Via: SIP/2.0/UDP").replace(
                b"Max-Forwards: 70", b"Max-Forwards: x"
            ),
            id="no-via-value",
        ),
        pytest.param(fx.RINGING.replace(b" 180 ", b" 18x "), id="response"),
        pytest.param(b"\x00\x01garbage", id="garbage"),
    ],
)
def test_error_response_drops_what_cannot_be_answered(data: bytes) -> None:
    assert error_response(data, SipParseError("x")) is None


# Builders.


def test_make_response_copies_rfc3261_8_2_6_headers() -> None:
    invite = request(fx.INVITE)
    ringing = make_response(invite, 180, to_tag="cw-a-1", contact="<sip:cw@198.51.100.5>")
    assert ringing.reason == "Ringing"
    assert ringing.headers.get_all("Via") == invite.headers.get_all("Via")
    assert ringing.headers.get("From") == invite.headers.get("From")
    assert ringing.headers.get("Call-ID") == invite.call_id
    assert ringing.headers.get("CSeq") == "102 INVITE"
    assert ringing.headers.get("To") == "<sip:+18005550100@198.51.100.5>;tag=cw-a-1"
    assert ringing.headers.get_all("Record-Route") == ["<sip:203.0.113.10;lr;ftag=as58f4a1>"]
    assert ringing.headers.get("Contact") == "<sip:cw@198.51.100.5>"
    assert "Max-Forwards" not in ringing.headers


def test_make_response_shares_the_typed_values_of_the_lines_it_copies() -> None:
    invite = request(fx.INVITE)
    extra_via = "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKextra"
    ringing = make_response(invite, 180, to_tag="cw-a-1", extra=(("Via", extra_via),))
    assert (ringing.cseq, ringing.from_, ringing.call_id) == (
        invite.cseq,
        invite.from_,
        invite.call_id,
    )
    assert ringing.cseq is invite.cseq
    assert ringing.from_ is invite.from_
    # Its own To (with our tag) and the Via lines it has beyond the request's are its own.
    assert ringing.to.tag == "cw-a-1"
    assert invite.to.tag is None
    assert [v.branch for v in ringing.vias] == [
        "z9hG4bK-524287-1---a1b2c3d4e5f6",
        "z9hG4bK3e7a91",
        "z9hG4bKextra",
    ]
    assert len(invite.vias) == 2
    # A To that already has its tag is copied, and so is its value.
    bye = request(fx.BYE)
    assert make_response(bye, 200).to is bye.to


def test_make_response_100_trying_has_no_to_tag_and_183_carries_sdp() -> None:
    invite = request(fx.INVITE)
    assert make_response(invite, 100).to.tag is None
    progress = make_response(
        invite, 183, to_tag="t1", body=fx.SDP_ANSWER, content_type="application/sdp"
    )
    wire = bytes(progress)
    assert wire.startswith(b"SIP/2.0 183 Session Progress\r\n")
    assert wire.endswith(
        b"Content-Type: application/sdp\r\nContent-Length: 204\r\n\r\n" + fx.SDP_ANSWER
    )
    assert parse_message(wire) == progress


def test_make_request_builds_a_parseable_invite_with_fresh_identifiers() -> None:
    via = Via("UDP", "198.51.100.5", 5060, {"branch": new_branch(), "rport": None})
    invite = make_request(
        "INVITE",
        "sip:agent@buyer.example.com",
        from_=NameAddr("sip:+18005550100@198.51.100.5"),
        to=NameAddr("sip:agent@buyer.example.com"),
        via=via,
        contact="<sip:cw@198.51.100.5:5060>",
        body=fx.SDP_OFFER,
        content_type="application/sdp",
    )
    again = parse_message(bytes(invite))
    assert again == invite
    assert invite.from_.tag is not None
    assert len(invite.from_.tag) == 16
    assert invite.top_via.branch is not None
    assert invite.top_via.branch.startswith("z9hG4bK")
    assert invite.cseq.seq == 1
    assert len(invite.call_id) == 24
    assert set(invite.call_id) <= set("0123456789abcdef")
    assert invite.headers.get("Max-Forwards") == "70"
    assert new_branch() != new_branch()


def test_tags_branches_and_call_ids_are_fresh_random_hex_across_batches() -> None:
    """More values than one read of random bytes gives: each of its size, none repeated."""
    tags = [new_tag() for _ in range(300)]
    branches = [new_branch() for _ in range(300)]
    call_ids = [new_call_id() for _ in range(300)]
    hex_digits = set("0123456789abcdef")
    assert all(len(tag) == 16 and set(tag) <= hex_digits for tag in tags)
    assert all(
        b.startswith("z9hG4bK") and len(b) == 23 and set(b[7:]) <= hex_digits for b in branches
    )
    assert all(len(c) == 24 and set(c) <= hex_digits for c in call_ids)
    assert len(set(tags) | {b[7:] for b in branches}) == 600
    assert len(set(call_ids)) == 300


def test_a_forked_child_does_not_hand_out_the_tags_its_parent_will() -> None:
    """The random bytes read ahead stay with the parent; the child reads its own."""
    new_tag()  # the parent now holds unread values
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, "".join(new_tag() for _ in range(64)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    child = {text[i : i + 16] for i in range(0, len(text), 16)}
    assert len(child) == 64
    assert child.isdisjoint(new_tag() for _ in range(64))


def test_headers_are_case_insensitive_and_ordered() -> None:
    headers = Headers([("v", "a"), ("X-Custom", "1"), ("VIA", "b")])
    assert headers.get_all("Via") == ["a", "b"]
    assert headers.get("x-custom") == "1"
    headers.set("via", "c")
    assert list(headers) == [("Via", "c"), ("X-Custom", "1")]
    headers.prepend("Via", "top")
    headers.remove("X-CUSTOM")
    assert list(headers) == [("Via", "top"), ("Via", "c")]
    assert "x-custom" not in headers
