"""Dialogs: creation from 1xx/2xx, in-dialog requests and matching (RFC 3261 12)."""

from __future__ import annotations

import pytest

from callwhisper.errors import LocalProtocolError, RemoteProtocolError, SipParseError
from callwhisper.sip.dialog import (
    Dialog,
    DialogId,
    DialogState,
    check_dialog_request,
    learned_route_set,
    loose_route,
)
from callwhisper.sip.headers import NameAddr, Via
from callwhisper.sip.message import (
    SipRequest,
    SipResponse,
    make_request,
    make_response,
    new_branch,
    parse_message,
)
from tests.unit.sip import fixtures as fx

CONTACT = "<sip:cw@198.51.100.5:5060>"


def via() -> Via:
    return Via("UDP", "198.51.100.5", 5060, {"branch": new_branch()})


def buyer_invite() -> SipRequest:
    """The INVITE that fixtures RINGING, OK_INVITE and TERMINATED_487 answer."""
    return make_request(
        "INVITE",
        "sip:agent@buyer.example.com",
        from_=NameAddr("sip:+18005550100@198.51.100.5", params={"tag": "cw1"}),
        to=NameAddr("sip:agent@buyer.example.com"),
        via=Via("UDP", "198.51.100.5", 5060, {"branch": "z9hG4bKb0b0b0", "rport": None}),
        call_id="leg-b-1@198.51.100.5",
        contact=CONTACT,
    )


def state(dialog: Dialog) -> DialogState:
    """The dialog's state, read afresh (keeps mypy from narrowing it across calls)."""
    return dialog.state


def response(data: bytes) -> SipResponse:
    message = parse_message(data)
    assert isinstance(message, SipResponse)
    return message


def request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def test_uac_dialog_from_2xx_and_its_ack_and_bye() -> None:
    dialog = Dialog.as_uac(buyer_invite(), response(fx.OK_INVITE), local_contact=CONTACT)
    assert dialog.id == DialogId("leg-b-1@198.51.100.5", "cw1", "1928301774")
    assert state(dialog) is DialogState.CONFIRMED
    assert dialog.remote_target == "sip:agent@192.0.2.80:5060"
    # 12.1.2: the route set is the Record-Route list in reverse order.
    assert dialog.route_set == [
        "<sip:proxy1.buyer.example.com;lr>",
        "<sip:proxy2.buyer.example.com;lr>",
    ]
    ack = dialog.create_ack(1, via())
    assert ack.uri == "sip:agent@192.0.2.80:5060"
    assert ack.headers.get_all("Route") == dialog.route_set
    assert ack.headers.get("CSeq") == "1 ACK"
    assert ack.headers.get("From") == "<sip:+18005550100@198.51.100.5>;tag=cw1"
    assert ack.headers.get("To") == "<sip:agent@buyer.example.com>;tag=1928301774"
    assert ack.headers.get("Contact") is None
    bye = dialog.create_request("BYE", via())
    assert bye.headers.get("CSeq") == "2 BYE"
    assert parse_message(bytes(bye)) == bye
    dialog.terminate()
    assert state(dialog) is DialogState.TERMINATED
    with pytest.raises(LocalProtocolError, match=r"^cannot send BYE in a terminated dialog$"):
        dialog.create_request("BYE", via())


def test_early_dialog_from_180_is_confirmed_by_200() -> None:
    dialog = Dialog.as_uac(buyer_invite(), response(fx.RINGING))
    assert state(dialog) is DialogState.EARLY
    dialog.receive_response(response(fx.OK_INVITE))
    assert state(dialog) is DialogState.CONFIRMED


def test_early_dialog_ends_with_an_error_response() -> None:
    dialog = Dialog.as_uac(buyer_invite(), response(fx.RINGING))
    dialog.receive_response(response(fx.TERMINATED_487))
    assert state(dialog) is DialogState.TERMINATED


def test_only_the_invites_2xx_confirms_an_early_dialog() -> None:
    """12.1: a 200 to an UPDATE in the early dialog refreshes the target; the dialog stays early."""
    dialog = Dialog.as_uac(buyer_invite(), response(fx.RINGING))
    update = dialog.create_request("UPDATE", via())
    dialog.receive_response(make_response(update, 200, contact="<sip:moved@192.0.2.99>"))
    assert state(dialog) is DialogState.EARLY
    assert dialog.remote_target == "sip:moved@192.0.2.99"
    dialog.receive_response(response(fx.OK_INVITE))
    assert state(dialog) is DialogState.CONFIRMED


def test_the_answer_to_our_bye_finds_the_dialog_terminated_and_leaves_it_so() -> None:
    """15: the BYE ended the dialog when we sent it; its 200 (or 481) is no error of ours."""
    dialog = Dialog.as_uac(buyer_invite(), response(fx.OK_INVITE))
    bye = dialog.create_request("BYE", via())
    dialog.terminate()
    dialog.receive_response(make_response(bye, 200))
    dialog.receive_response(make_response(bye, 481))
    assert state(dialog) is DialogState.TERMINATED
    assert dialog.local_seq == 2


def test_provisional_without_to_tag_creates_no_dialog() -> None:
    trying = make_response(buyer_invite(), 100)
    with pytest.raises(RemoteProtocolError, match=r"^100 response without To tag"):
        Dialog.as_uac(buyer_invite(), trying)


def test_uas_dialog_matches_the_callers_bye() -> None:
    invite = request(fx.INVITE)
    ok = make_response(invite, 200, to_tag="cw-a-1", contact=CONTACT)
    dialog = Dialog.as_uas(invite, ok, local_contact=CONTACT)
    assert dialog.id == DialogId("6d1c0f3b2a9e4c7d@203.0.113.10", "cw-a-1", "as58f4a1")
    assert dialog.route_set == ["<sip:203.0.113.10;lr;ftag=as58f4a1>"]
    assert dialog.remote_target == "sip:+13125550143@203.0.113.10:5060;transport=udp"
    assert (dialog.local_seq, dialog.remote_seq) == (None, 102)
    bye = request(fx.BYE)
    assert DialogId.of_incoming_request(bye) == dialog.id
    # The INVITE has no To tag yet: it belongs to no dialog of ours.
    assert DialogId.of_incoming_request(request(fx.INVITE)) != dialog.id
    dialog.receive_request(bye)
    assert dialog.remote_seq == 103
    assert state(dialog) is DialogState.TERMINATED


def test_out_of_order_cseq_is_refused_with_500() -> None:
    invite = request(fx.INVITE)
    dialog = Dialog.as_uas(invite, make_response(invite, 200, to_tag="cw-a-1"))
    old = request(fx.BYE.replace(b"CSeq: 103 BYE", b"CSeq: 101 BYE"))
    with pytest.raises(RemoteProtocolError) as info:
        dialog.receive_request(old)
    assert str(info.value) == "CSeq 101 is lower than the last one (102)"
    assert info.value.status_hint == 500
    assert state(dialog) is DialogState.CONFIRMED


def test_a_bye_crossing_ours_leaves_the_dialog_terminated_without_an_error() -> None:
    """RFC 3261 15: both sides hung up at once; the peer's BYE is no error of ours."""
    invite = request(fx.INVITE)
    dialog = Dialog.as_uas(invite, make_response(invite, 200, to_tag="cw-a-1"))
    dialog.create_request("BYE", via())
    dialog.terminate()
    dialog.receive_request(request(fx.BYE))
    assert state(dialog) is DialogState.TERMINATED
    assert dialog.remote_seq == 103


def test_reinvite_refreshes_the_target_both_ways() -> None:
    invite = request(fx.INVITE)
    dialog = Dialog.as_uas(
        invite, make_response(invite, 200, to_tag="cw-a-1"), local_contact=CONTACT
    )
    reinvite = dialog.create_request(
        "INVITE", via(), body=fx.SDP_ANSWER, content_type="application/sdp"
    )
    assert reinvite.headers.get("CSeq") == "1 INVITE"
    assert reinvite.headers.get("Contact") == CONTACT
    assert reinvite.uri == dialog.remote_target
    assert reinvite.headers.get_all("Route") == ["<sip:203.0.113.10;lr;ftag=as58f4a1>"]
    again = dialog.create_request(
        "INVITE",
        Via("UDP", "198.51.100.5", 5060, {"branch": "z9hG4bKre2"}),
        body=fx.SDP_ANSWER,
        content_type="application/sdp",
        extra=[("Allow", "INVITE, ACK, BYE")],
    )
    assert bytes(again) == (
        b"INVITE sip:+13125550143@203.0.113.10:5060;transport=udp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bKre2\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:203.0.113.10;lr;ftag=as58f4a1>\r\n"
        b"From: <sip:+18005550100@198.51.100.5>;tag=cw-a-1\r\n"
        b'To: "WIRELESS CALLER" <sip:+13125550143@203.0.113.10>;tag=as58f4a1\r\n'
        b"Call-ID: 6d1c0f3b2a9e4c7d@203.0.113.10\r\n"
        b"CSeq: 2 INVITE\r\n"
        b"Contact: <sip:cw@198.51.100.5:5060>\r\n"
        b"Allow: INVITE, ACK, BYE\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: 204\r\n"
        b"\r\n" + fx.SDP_ANSWER
    )
    theirs = request(
        fx.INVITE.replace(b"CSeq: 102 INVITE", b"CSeq: 104 INVITE")
        .replace(
            b"To: <sip:+18005550100@198.51.100.5>",
            b"To: <sip:+18005550100@198.51.100.5>;tag=cw-a-1",
        )
        .replace(
            b"Contact: <sip:+13125550143@203.0.113.10:5060;transport=udp>",
            b"Contact: <sip:moved@203.0.113.99>",
        )
    )
    assert DialogId.of_incoming_request(theirs) == dialog.id
    dialog.receive_request(theirs)
    assert dialog.remote_target == "sip:moved@203.0.113.99"


def test_strict_router_becomes_the_request_uri() -> None:
    invite = request(fx.INVITE.replace(b";lr;ftag=as58f4a1", b";ftag=as58f4a1"))
    dialog = Dialog.as_uas(invite, make_response(invite, 200, to_tag="t"))
    bye = dialog.create_request("BYE", via())
    assert bye.uri == "sip:203.0.113.10;ftag=as58f4a1"
    assert bye.headers.get_all("Route") == ["<sip:+13125550143@203.0.113.10:5060;transport=udp>"]


def test_ack_needs_the_invite_cseq() -> None:
    dialog = Dialog.as_uac(buyer_invite(), response(fx.OK_INVITE))
    with pytest.raises(LocalProtocolError, match=r"^ACK needs the CSeq number of its INVITE$"):
        dialog.create_request("ACK", via())


def test_forked_early_dialogs_are_told_apart_by_to_tag() -> None:
    first = Dialog.as_uac(buyer_invite(), response(fx.RINGING))
    other = response(fx.RINGING.replace(b"tag=1928301774", b"tag=fork2"))
    second = Dialog.as_uac(buyer_invite(), other)
    assert first.id == DialogId("leg-b-1@198.51.100.5", "cw1", "1928301774")
    assert second.id == DialogId("leg-b-1@198.51.100.5", "cw1", "fork2")


# -- where in-dialog requests go (RFC 3261 8.1.2, 12.2.1.1, 16.12) -------------------------


def test_uac_next_hop_is_the_proxy_nearest_to_us() -> None:
    """12.1.2: the last Record-Route of the 2xx is the first route; the ACK goes there."""
    dialog = Dialog.as_uac(buyer_invite(), response(fx.OK_INVITE))
    assert dialog.next_hop == "sip:proxy1.buyer.example.com;lr"
    ack = dialog.create_ack(1, via())
    # Loose routing: the Request-URI stays the remote target, every route a Route header.
    assert ack.uri == "sip:agent@192.0.2.80:5060"
    assert ack.headers.get_all("Route") == [
        "<sip:proxy1.buyer.example.com;lr>",
        "<sip:proxy2.buyer.example.com;lr>",
    ]


def test_uas_next_hop_is_the_first_record_route_of_the_request() -> None:
    """12.1.1: the caller's proxy record-routed the INVITE; our BYE goes back through it."""
    invite = request(fx.INVITE)
    dialog = Dialog.as_uas(invite, make_response(invite, 200, to_tag="cw-a-1"))
    assert dialog.next_hop == "sip:203.0.113.10;lr;ftag=as58f4a1"
    bye = dialog.create_request("BYE", via())
    assert bye.uri == "sip:+13125550143@203.0.113.10:5060;transport=udp"
    assert bye.headers.get_all("Route") == ["<sip:203.0.113.10;lr;ftag=as58f4a1>"]


def test_uas_keeps_the_record_route_order_of_several_proxies() -> None:
    invite = request(
        fx.INVITE.replace(
            b"Record-Route: <sip:203.0.113.10;lr;ftag=as58f4a1>\r\n",
            b"Record-Route: <sip:203.0.113.10;lr>, <sip:192.0.2.44:5070;lr>\r\n"
            b"Record-Route: <sip:192.0.2.1;lr;transport=tcp>\r\n",
        )
    )
    dialog = Dialog.as_uas(invite, make_response(invite, 200, to_tag="t"))
    assert dialog.route_set == [
        "<sip:203.0.113.10;lr>",
        "<sip:192.0.2.44:5070;lr>",
        "<sip:192.0.2.1;lr;transport=tcp>",
    ]
    assert dialog.next_hop == "sip:203.0.113.10;lr"


def test_without_routes_the_next_hop_is_the_remote_target() -> None:
    invite = request(
        fx.INVITE.replace(b"Record-Route: <sip:203.0.113.10;lr;ftag=as58f4a1>\r\n", b"")
    )
    dialog = Dialog.as_uas(invite, make_response(invite, 200, to_tag="t"))
    assert dialog.route_set == []
    assert dialog.next_hop == "sip:+13125550143@203.0.113.10:5060;transport=udp"
    bye = dialog.create_request("BYE", via())
    assert bye.uri == dialog.remote_target
    assert bye.headers.get_all("Route") == []


def test_strict_router_is_the_next_hop_and_the_request_uri() -> None:
    """16.12.1.1 (RFC 2543 proxies): the Request-URI is the route, the remote target goes last."""
    ok = fx.OK_INVITE.replace(b"proxy1.buyer.example.com;lr", b"proxy1.buyer.example.com:5070")
    dialog = Dialog.as_uac(buyer_invite(), response(ok))
    assert dialog.next_hop == "sip:proxy1.buyer.example.com:5070"
    bye = dialog.create_request("BYE", via())
    assert bye.uri == "sip:proxy1.buyer.example.com:5070"
    assert bye.headers.get_all("Route") == [
        "<sip:proxy2.buyer.example.com;lr>",
        "<sip:agent@192.0.2.80:5060>",
    ]


def test_default_route_is_used_while_no_route_was_learned() -> None:
    """8.1.2: an outbound proxy pre-loaded on the INVITE stays in the path of in-dialog requests."""
    ok = fx.OK_INVITE.replace(b"Record-Route: <sip:proxy2.buyer.example.com;lr>\r\n", b"")
    ok = ok.replace(b"Record-Route: <sip:proxy1.buyer.example.com;lr>\r\n", b"")
    proxy = loose_route("sip:sbc.carrier.example.net:5080;transport=tcp")
    assert proxy == "<sip:sbc.carrier.example.net:5080;transport=tcp;lr>"
    dialog = Dialog.as_uac(buyer_invite(), response(ok), default_route=[proxy])
    assert dialog.route_set == []
    assert dialog.next_hop == "sip:sbc.carrier.example.net:5080;transport=tcp;lr"
    bye = dialog.create_request("BYE", via())
    assert bye.uri == "sip:agent@192.0.2.80:5060"
    assert bye.headers.get_all("Route") == [proxy]


def test_a_learned_route_set_replaces_the_default_route() -> None:
    proxy = loose_route("sip:sbc.carrier.example.net")
    dialog = Dialog.as_uac(buyer_invite(), response(fx.OK_INVITE), default_route=[proxy])
    assert dialog.next_hop == "sip:proxy1.buyer.example.com;lr"
    assert dialog.create_ack(1, via()).headers.get_all("Route") == [
        "<sip:proxy1.buyer.example.com;lr>",
        "<sip:proxy2.buyer.example.com;lr>",
    ]


def test_loose_route_keeps_an_lr_parameter_already_there() -> None:
    assert loose_route("sip:10.0.0.1:5060;lr") == "<sip:10.0.0.1:5060;lr>"
    with pytest.raises(SipParseError, match=r"^not a SIP URI: 'tel:\+14155550100'$"):
        loose_route("tel:+14155550100")


def test_the_2xx_sets_the_route_set_of_an_early_dialog_anew() -> None:
    """13.2.2.4: the 180 was record-routed by one proxy, the 200 by two."""
    ringing = fx.RINGING.replace(
        b"Contact:", b"Record-Route: <sip:proxy9.buyer.example.com;lr>\r\nContact:", 1
    )
    dialog = Dialog.as_uac(buyer_invite(), response(ringing))
    assert dialog.route_set == ["<sip:proxy9.buyer.example.com;lr>"]
    dialog.receive_response(response(fx.OK_INVITE))
    assert dialog.route_set == [
        "<sip:proxy1.buyer.example.com;lr>",
        "<sip:proxy2.buyer.example.com;lr>",
    ]
    assert dialog.next_hop == "sip:proxy1.buyer.example.com;lr"


def test_a_route_that_is_not_a_sip_uri_creates_no_dialog() -> None:
    """A request could never be sent through it: the INVITE is refused with 400."""
    invite = request(fx.INVITE.replace(b"<sip:203.0.113.10;lr;ftag=as58f4a1>", b"<tel:+1555>"))
    with pytest.raises(RemoteProtocolError, match=r"^not a SIP URI: 'tel:\+1555'$") as info:
        learned_route_set(invite, uac=False)
    assert info.value.status_hint == 400
    with pytest.raises(RemoteProtocolError, match=r"^not a SIP URI"):
        Dialog.as_uas(invite, make_response(invite, 200, to_tag="t"))
    ok = response(fx.OK_INVITE.replace(b"<sip:proxy2.buyer.example.com;lr>", b"garbage"))
    with pytest.raises(RemoteProtocolError, match=r"^malformed address: 'garbage'$"):
        Dialog.as_uac(buyer_invite(), ok)


def test_a_request_without_from_tag_can_create_no_dialog() -> None:
    """Checked before answering: the 2xx would make a dialog nobody could match."""
    invite = request(fx.INVITE.replace(b";tag=as58f4a1", b""))
    with pytest.raises(RemoteProtocolError, match=r"^request without From tag") as info:
        check_dialog_request(invite)
    assert info.value.status_hint == 400
    with pytest.raises(RemoteProtocolError, match=r"^request without From tag"):
        Dialog.as_uas(invite, make_response(invite, 200, to_tag="t"))
    check_dialog_request(request(fx.INVITE))
