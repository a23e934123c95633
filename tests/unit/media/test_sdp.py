"""SDP (RFC 4566) parsing and serialization, and offer/answer (RFC 3264) for G.711."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callwhisper.errors import LocalProtocolError, SdpError
from callwhisper.media.sdp import (
    Attribute,
    Connection,
    Media,
    NegotiatedMedia,
    Origin,
    RtpMap,
    SessionDescription,
    create_answer,
    create_offer,
    negotiate_answer,
)


def sdp(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


# What SIPp's built-in uac_pcap scenario offers (PCMA and telephone-event).
SIPP_OFFER = sdp(
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 6000 RTP/AVP 8 101",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-11,16",
)

# A softphone-style offer: Opus first, media-level c=, dynamic telephone-event, video too.
PHONE_OFFER = sdp(
    "v=0",
    "o=- 1700000000 1700000001 IN IP4 203.0.113.5",
    "s=phone",
    "b=AS:128",
    "t=0 0",
    "a=group:BUNDLE 0",
    "m=audio 40000 RTP/AVP 96 0 8 9 97",
    "c=IN IP4 203.0.113.9",
    "b=AS:64",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 useinbandfec=1",
    "a=rtpmap:97 telephone-event/8000",
    "a=fmtp:97 0-15",
    "a=ptime:30",
    "a=sendrecv",
    "m=video 40002 RTP/AVP 99",
    "a=rtpmap:99 H264/90000",
)


def test_parses_the_sipp_offer() -> None:
    session = SessionDescription.parse(SIPP_OFFER)
    assert session == SessionDescription(
        origin=Origin("user1", "53655765", 2353687637, "127.0.0.1"),
        session_name="-",
        connection=Connection("127.0.0.1"),
        times=((0, 0),),
        media=(
            Media(
                "audio",
                6000,
                "RTP/AVP",
                ("8", "101"),
                attributes=(
                    Attribute("rtpmap", "8 PCMA/8000"),
                    Attribute("rtpmap", "101 telephone-event/8000"),
                    Attribute("fmtp", "101 0-11,16"),
                ),
            ),
        ),
    )
    audio = session.media[0]
    assert audio.rtpmaps == {8: RtpMap(8, "PCMA", 8000), 101: RtpMap(101, "telephone-event", 8000)}
    assert audio.fmtp(101) == "0-11,16"
    assert audio.fmtp(8) is None
    assert audio.ptime is None
    assert audio.direction is None


def test_parses_media_level_details() -> None:
    session = SessionDescription.parse(PHONE_OFFER)
    audio, video = session.media
    assert session.connection is None
    assert session.bandwidths == ("AS:128",)
    assert session.attributes == (Attribute("group", "BUNDLE 0"),)
    assert audio.connection == Connection("203.0.113.9")
    assert audio.bandwidths == ("AS:64",)
    assert audio.rtpmaps[96] == RtpMap(96, "opus", 48000, 2)
    assert (audio.ptime, audio.direction) == (30, "sendrecv")
    assert video.kind == "video"
    assert video.attribute("rtpmap") == "99 H264/90000"


@pytest.mark.parametrize("body", [SIPP_OFFER, PHONE_OFFER])
def test_serialize_gives_back_the_parsed_bytes(body: bytes) -> None:
    assert SessionDescription.parse(body).serialize() == body


def test_bare_lf_line_endings_and_str_input_are_accepted() -> None:
    text = SIPP_OFFER.decode().replace("\r\n", "\n")
    assert SessionDescription.parse(text) == SessionDescription.parse(SIPP_OFFER)


def test_ignores_lines_it_does_not_model() -> None:
    body = sdp(
        "v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=x", "i=info", "t=0 0", "r=7d 1h 0 25h", "k=prompt"
    )
    assert SessionDescription.parse(body).serialize() == sdp(
        "v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=x", "t=0 0"
    )


def test_port_count_round_trips() -> None:
    body = sdp("v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=x", "t=0 0", "m=audio 5000/2 RTP/AVP 0")
    session = SessionDescription.parse(body)
    assert (session.media[0].port, session.media[0].port_count) == (5000, 2)
    assert session.serialize() == body


HEAD = ("v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=x", "t=0 0")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "SDP body is empty"),
        (b"\r\n\r\n", "SDP body is empty"),
        (b"\xff\xfe", "SDP body is not valid UTF-8"),
        (
            sdp("o=- 1 2 IN IP4 192.0.2.1"),
            "SDP must begin with a v= line, got 'o=- 1 2 IN IP4 192.0.2.1'",
        ),
        (sdp("v=1"), "SDP version '1' is not supported, expected 0"),
        (sdp("v=0", "o=- 1 2 IN IP4"), "SDP o= line needs 6 fields, got 5: '- 1 2 IN IP4'"),
        (sdp("v=0", "o=- 1 two IN IP4 a"), "SDP o= session version 'two' is not a number"),
        (sdp("v=0", "s=x", "t=0 0"), "SDP has no o= line"),
        (sdp("v=0", "o=- 1 2 IN IP4 a", "t=0 0"), "SDP has no s= line"),
        (sdp("v=0", "o=- 1 2 IN IP4 a", "s=x"), "SDP has no t= line"),
        (sdp(*HEAD, "v=0"), "SDP has more than one v= line (line 5)"),
        (sdp(*HEAD, "o=- 1 2 IN IP4 a"), "SDP has more than one o= line (line 5)"),
        (sdp(*HEAD, "garbage"), "SDP line 5 is not <type>=<value>: 'garbage'"),
        (sdp(*HEAD, "A=b"), "SDP line 5 is not <type>=<value>: 'A=b'"),
        (sdp(*HEAD[:3], "t=0"), "SDP t= line needs 2 fields, got 1: '0'"),
        (sdp(*HEAD[:3], "t=now 0"), "SDP t= start time 'now' is not a number"),
        (sdp(*HEAD, "c=IN IP4"), "SDP c= line needs 3 fields, got 2: 'IN IP4'"),
        (
            sdp(*HEAD, "m=audio 5000 RTP/AVP"),
            "SDP m= line needs media, port, protocol and formats: 'audio 5000 RTP/AVP'",
        ),
        (sdp(*HEAD, "m=audio 70000 RTP/AVP 0"), "SDP m= port '70000' is not a number in 0-65535"),
        (sdp(*HEAD, "m=audio x RTP/AVP 0"), "SDP m= port 'x' is not a number in 0-65535"),
        (sdp(*HEAD, "m=audio 5000/x RTP/AVP 0"), "SDP m= port count 'x' is not a number"),
        (sdp(*HEAD, "m=audio 5000 RTP/AVP 0", "c=IN"), "SDP c= line needs 3 fields, got 1: 'IN'"),
        (
            sdp(*HEAD, "m=audio 5000 RTP/AVP 0", "s=late"),
            "SDP s= line 6 comes after the first m= line",
        ),
        (sdp(*HEAD, "a=rtpmap:0 PCMU"), "SDP a=rtpmap value '0 PCMU' is malformed"),
        (sdp(*HEAD, "a=rtpmap:0"), "SDP a=rtpmap value '0' is malformed"),
        (
            sdp(*HEAD, "a=rtpmap:200 X/8000"),
            "SDP a=rtpmap payload type '200' is not a number in 0-127",
        ),
        (sdp(*HEAD, "a=rtpmap:0 PCMU/fast"), "SDP a=rtpmap clock rate 'fast' is not a number"),
        (
            sdp(*HEAD, "a=rtpmap:0 PCMU/8000/two"),
            "SDP a=rtpmap channel count 'two' is not a number",
        ),
        (
            sdp(*HEAD, "m=audio 5000 RTP/AVP 0", "a=ptime:soon"),
            "SDP a=ptime 'soon' is not a number",
        ),
    ],
)
def test_malformed_sdp_raises_exact_400(body: bytes, message: str) -> None:
    with pytest.raises(SdpError) as caught:
        SessionDescription.parse(body)
    assert str(caught.value) == message
    assert caught.value.status_hint == 400


def test_every_truncation_parses_or_raises_sdp_error() -> None:
    """Feeding the body byte by byte: each prefix is valid SDP or an SdpError, never a crash."""
    statuses = set()
    for end in range(len(PHONE_OFFER) + 1):
        try:
            SessionDescription.parse(PHONE_OFFER[:end])
        except SdpError as error:
            statuses.add(error.status_hint)
    assert statuses == {400}


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: sdp(*HEAD) + b)))
def test_arbitrary_bytes_parse_and_round_trip_or_raise_sdp_error(data: bytes) -> None:
    try:
        session = SessionDescription.parse(data)
    except SdpError:
        return
    assert SessionDescription.parse(session.serialize()) == session


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(
            [
                "c=IN IP4 192.0.2.1",
                "c=IN",
                "m=audio 5000 RTP/AVP 0 8",
                "m=audio 0 RTP/AVP x",
                "a=rtpmap:0 PCMU/8000",
                "a=rtpmap:x",
                "a=ptime:20",
                "a=sendonly",
                "b=AS:64",
                "t=0 0",
                "s=again",
                "o=- 1 2 IN IP4 a",
                "z=",
                "=",
                "",
            ]
        ),
        max_size=8,
    )
)
def test_line_soup_parses_and_round_trips_or_raises_sdp_error(extra: list[str]) -> None:
    body = sdp(*HEAD, *extra)
    try:
        session = SessionDescription.parse(body)
    except SdpError:
        return
    assert SessionDescription.parse(session.serialize()) == session


OUR_ADDRESS = "198.51.100.10"


def test_create_offer_exact_bytes() -> None:
    offer = create_offer(OUR_ADDRESS, 20000, session_id=42, session_version=1)
    assert offer.serialize() == sdp(
        "v=0",
        "o=callwhisper 42 1 IN IP4 198.51.100.10",
        "s=callwhisper",
        "c=IN IP4 198.51.100.10",
        "t=0 0",
        "m=audio 20000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    )


def test_create_offer_for_hold_and_ipv6() -> None:
    offer = create_offer("2001:db8::1", 20000, session_id=1, codecs=("PCMA",), direction="sendonly")
    assert offer.connection == Connection("2001:db8::1", "IN", "IP6")
    assert offer.media[0].formats == ("8", "101")
    assert offer.media[0].direction == "sendonly"


def test_create_offer_refuses_unknown_codecs() -> None:
    with pytest.raises(LocalProtocolError, match=r"^codecs must be among PCMU, PCMA: \('G722',\)$"):
        create_offer(OUR_ADDRESS, 20000, session_id=1, codecs=("G722",))


def test_answer_to_the_sipp_offer() -> None:
    offer = SessionDescription.parse(SIPP_OFFER)
    answer, negotiated = create_answer(offer, OUR_ADDRESS, 30000, session_id=7)
    assert negotiated == NegotiatedMedia(
        remote_address="127.0.0.1",
        remote_port=6000,
        codec="PCMA",
        payload_type=8,
        clock_rate=8000,
        dtmf_payload_type=101,
        ptime=20,
        direction="sendrecv",
    )
    assert answer.serialize() == sdp(
        "v=0",
        "o=callwhisper 7 0 IN IP4 198.51.100.10",
        "s=callwhisper",
        "c=IN IP4 198.51.100.10",
        "t=0 0",
        "m=audio 30000 RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    )


def test_answer_picks_the_first_offered_codec_we_support_and_rejects_other_streams() -> None:
    offer = SessionDescription.parse(PHONE_OFFER)
    answer, negotiated = create_answer(offer, OUR_ADDRESS, 30000, session_id=7)
    assert (negotiated.codec, negotiated.payload_type) == ("PCMU", 0)
    assert (negotiated.remote_address, negotiated.remote_port) == ("203.0.113.9", 40000)
    assert (negotiated.dtmf_payload_type, negotiated.ptime) == (97, 30)
    audio, video = answer.media
    assert audio.formats == ("0", "97")
    assert video == Media("video", 0, "RTP/AVP", ("99",))


def test_answer_respects_our_codec_restriction() -> None:
    offer = SessionDescription.parse(PHONE_OFFER)
    _, negotiated = create_answer(offer, OUR_ADDRESS, 30000, session_id=7, codecs=("PCMA",))
    assert (negotiated.codec, negotiated.payload_type) == ("PCMA", 8)


def test_answer_accepts_g711_at_a_dynamic_payload_type() -> None:
    body = sdp(*HEAD, "c=IN IP4 192.0.2.1", "m=audio 5000 RTP/AVP 120", "a=rtpmap:120 pcmu/8000/1")
    _, negotiated = create_answer(SessionDescription.parse(body), OUR_ADDRESS, 1, session_id=1)
    assert (negotiated.codec, negotiated.payload_type, negotiated.dtmf_payload_type) == (
        "PCMU",
        120,
        None,
    )


def test_answer_follows_an_rtpmap_that_remaps_a_static_payload_type() -> None:
    body = sdp(*HEAD, "c=IN IP4 192.0.2.1", "m=audio 5000 RTP/AVP 0 8", "a=rtpmap:0 G722/8000")
    _, negotiated = create_answer(SessionDescription.parse(body), OUR_ADDRESS, 1, session_id=1)
    assert negotiated.codec == "PCMA"


@pytest.mark.parametrize(
    ("offered", "ours", "answered"),
    [
        ("sendrecv", "sendrecv", "sendrecv"),
        ("sendonly", "sendrecv", "recvonly"),
        ("recvonly", "sendrecv", "sendonly"),
        ("inactive", "sendrecv", "inactive"),
        ("sendrecv", "recvonly", "recvonly"),
        ("sendonly", "sendonly", "inactive"),
    ],
)
def test_answer_direction_follows_rfc3264(offered: str, ours: str, answered: str) -> None:
    body = sdp(*HEAD, "c=IN IP4 192.0.2.1", "m=audio 5000 RTP/AVP 0", f"a={offered}")
    answer, negotiated = create_answer(
        SessionDescription.parse(body),
        OUR_ADDRESS,
        1,
        session_id=1,
        direction=ours,  # type: ignore[arg-type]
    )
    assert negotiated.direction == answered
    assert answer.media[0].direction == answered


def test_session_level_direction_applies_to_media() -> None:
    body = sdp(*HEAD, "c=IN IP4 192.0.2.1", "a=sendonly", "m=audio 5000 RTP/AVP 0")
    _, negotiated = create_answer(SessionDescription.parse(body), OUR_ADDRESS, 1, session_id=1)
    assert negotiated.direction == "recvonly"
    assert (negotiated.sends, negotiated.receives) == (False, True)


def test_hold_by_unspecified_address_means_we_do_not_send() -> None:
    """RFC 3264 8.4: c=0.0.0.0 is the older way to put a stream on hold."""
    body = sdp(*HEAD, "c=IN IP4 0.0.0.0", "m=audio 5000 RTP/AVP 0")
    _, negotiated = create_answer(SessionDescription.parse(body), OUR_ADDRESS, 1, session_id=1)
    assert (negotiated.remote_address, negotiated.direction) == ("0.0.0.0", "recvonly")


def test_offer_without_a_shared_codec_is_488() -> None:
    body = sdp(*HEAD, "c=IN IP4 192.0.2.1", "m=audio 5000 RTP/AVP 9 96", "a=rtpmap:96 opus/48000/2")
    with pytest.raises(SdpError) as caught:
        create_answer(SessionDescription.parse(body), OUR_ADDRESS, 1, session_id=1)
    assert caught.value.status_hint == 488
    assert str(caught.value) == (
        "SDP offer has no RTP/AVP audio stream with a codec we support (PCMU, PCMA)"
    )


@pytest.mark.parametrize(
    "media",
    [
        "m=audio 0 RTP/AVP 0",  # a disabled stream
        "m=audio 5000 RTP/SAVP 0",  # SRTP, which we do not do
        "m=video 5000 RTP/AVP 0",
    ],
)
def test_offer_without_a_usable_audio_stream_is_488(media: str) -> None:
    body = sdp(*HEAD, "c=IN IP4 192.0.2.1", media)
    with pytest.raises(SdpError) as caught:
        create_answer(SessionDescription.parse(body), OUR_ADDRESS, 1, session_id=1)
    assert caught.value.status_hint == 488


def test_second_audio_stream_is_rejected() -> None:
    body = sdp(*HEAD, "c=IN IP4 192.0.2.1", "m=audio 5000 RTP/AVP 0", "m=audio 5002 RTP/AVP 8")
    answer, negotiated = create_answer(SessionDescription.parse(body), OUR_ADDRESS, 1, session_id=1)
    assert negotiated.remote_port == 5000
    assert [m.port for m in answer.media] == [1, 0]


def test_offer_stream_without_connection_is_400() -> None:
    body = sdp(*HEAD, "m=audio 5000 RTP/AVP 0")
    with pytest.raises(SdpError) as caught:
        create_answer(SessionDescription.parse(body), OUR_ADDRESS, 1, session_id=1)
    assert (str(caught.value), caught.value.status_hint) == (
        "SDP audio stream has no c= line, at media or session level",
        400,
    )


def test_non_numeric_rtp_format_is_400() -> None:
    body = sdp(*HEAD, "c=IN IP4 192.0.2.1", "m=audio 5000 RTP/AVP PCMU")
    with pytest.raises(SdpError, match=r"^SDP m= format 'PCMU' is not an RTP payload type$"):
        create_answer(SessionDescription.parse(body), OUR_ADDRESS, 1, session_id=1)


def test_our_offer_answered_by_ourselves_agrees_both_ways() -> None:
    offer = create_offer(OUR_ADDRESS, 20000, session_id=1)
    answer, answerer_view = create_answer(
        SessionDescription.parse(offer.serialize()), "192.0.2.50", 30000, session_id=2
    )
    offerer_view = negotiate_answer(offer, SessionDescription.parse(answer.serialize()))
    assert offerer_view == NegotiatedMedia(
        "192.0.2.50", 30000, "PCMU", 0, 8000, 101, 20, "sendrecv"
    )
    assert answerer_view == replace(offerer_view, remote_address=OUR_ADDRESS, remote_port=20000)


def test_negotiate_answer_from_a_peer_that_chose_pcma_without_dtmf() -> None:
    offer = create_offer(OUR_ADDRESS, 20000, session_id=1)
    answer = sdp(
        "v=0",
        "o=peer 9 9 IN IP4 192.0.2.60",
        "s=-",
        "c=IN IP4 192.0.2.60",
        "t=0 0",
        "m=audio 7078 RTP/AVP 8",
        "a=ptime:30",
        "a=recvonly",
    )
    negotiated = negotiate_answer(offer, SessionDescription.parse(answer))
    assert negotiated == NegotiatedMedia("192.0.2.60", 7078, "PCMA", 8, 8000, None, 30, "sendonly")


def test_negotiate_answer_to_our_hold_offer() -> None:
    offer = create_offer(OUR_ADDRESS, 20000, session_id=1, direction="sendonly")
    answer, _ = create_answer(
        SessionDescription.parse(offer.serialize()), "192.0.2.5", 1, session_id=2
    )
    assert answer.media[0].direction == "recvonly"
    assert negotiate_answer(offer, answer).direction == "sendonly"


@pytest.mark.parametrize(
    ("media", "message", "status"),
    [
        (
            ("m=audio 7078 RTP/AVP 9",),
            "SDP answer accepts none of the codecs we offered (PCMU, PCMA)",
            488,
        ),
        (("m=audio 0 RTP/AVP 0",), "SDP answer rejected every audio stream", 488),
        ((), "SDP answer has 0 m= lines, the offer had 1", 400),
    ],
)
def test_unusable_answers(media: tuple[str, ...], message: str, status: int) -> None:
    offer = create_offer(OUR_ADDRESS, 20000, session_id=1)
    answer = SessionDescription.parse(sdp(*HEAD, "c=IN IP4 192.0.2.60", *media))
    with pytest.raises(SdpError) as caught:
        negotiate_answer(offer, answer)
    assert (str(caught.value), caught.value.status_hint) == (message, status)


def test_payload_types_spelled_with_leading_zeros_mean_the_same() -> None:
    offer = SessionDescription.parse(
        sdp(
            *HEAD,
            "c=IN IP4 192.0.2.9",
            "m=audio 6000 RTP/AVP 008 0101",
            "a=rtpmap:0101 telephone-event/8000",
        )
    )
    _, negotiated = create_answer(offer, "192.0.2.1", 4000, session_id=1)
    assert (negotiated.codec, negotiated.payload_type, negotiated.dtmf_payload_type) == (
        "PCMA",
        8,
        101,
    )


def test_the_rtpmap_cache_stays_bounded_whatever_a_peer_sends() -> None:
    from callwhisper.media import sdp as module

    for number in range(2_000):
        SessionDescription.parse(sdp(*HEAD, "m=audio 6000 RTP/AVP 0", f"a=rtpmap:0 X{number}/8000"))
    long_name = "Y" * 100
    parsed = SessionDescription.parse(
        sdp(*HEAD, "m=audio 6000 RTP/AVP 0", f"a=rtpmap:0 {long_name}/8000")
    )
    assert parsed.media[0].rtpmaps[0].encoding == long_name
    info = module._cached_rtpmap.cache_info()
    assert info.maxsize is not None
    assert info.currsize <= info.maxsize
