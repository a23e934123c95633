"""The four transaction machines and the layer, driven on virtual time (RFC 3261 17)."""

from __future__ import annotations

import gc
from types import FunctionType, ModuleType

import pytest

from callwhisper.errors import LocalProtocolError
from callwhisper.sip.headers import NameAddr, Via
from callwhisper.sip.message import (
    Headers,
    SipRequest,
    SipResponse,
    make_request,
    make_response,
    new_branch,
    parse_message,
)
from callwhisper.sip.timers import TimerConfig
from callwhisper.sip.transaction import (
    TRANSITIONS,
    InviteCancelled,
    Kind,
    RequestReceived,
    ResponseReceived,
    State,
    TransactionEvent,
    TransactionFailed,
    TransactionKey,
    TransactionLayer,
    build_ack_for_error,
    build_cancel,
)
from tests.unit.sip import fixtures as fx

BUYER = ("192.0.2.80", 5060)
CALLER = ("203.0.113.10", 5060)


def outgoing(method: str = "INVITE") -> SipRequest:
    return make_request(
        method,
        "sip:agent@buyer.example.com",
        from_=NameAddr("sip:+18005550100@198.51.100.5"),
        to=NameAddr("sip:agent@buyer.example.com"),
        via=Via("UDP", "198.51.100.5", 5060, {"branch": new_branch()}),
        call_id="leg-b-1@198.51.100.5",
        cseq=1,
    )


def incoming(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def events(layer: TransactionLayer) -> list[TransactionEvent]:
    out = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def sent(layer: TransactionLayer) -> list[bytes]:
    return [data for data, _ in layer.messages_to_send()]


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, bytes]]:
    """Fire every timer up to ``end``; return (time, bytes) of what was sent."""
    out: list[tuple[float, bytes]] = []
    while (deadline := layer.get_timer()) is not None and deadline <= end:
        layer.handle_timer(deadline)
        out.extend((deadline, data) for data, _ in layer.messages_to_send())
    return out


def test_transition_table_covers_every_machine() -> None:
    for kind in Kind:
        assert TRANSITIONS[kind][State.TERMINATED] == {}
        reachable = {target for edges in TRANSITIONS[kind].values() for target in edges.values()}
        assert reachable <= set(TRANSITIONS[kind])


# INVITE client (17.1.1).


def test_invite_client_timer_a_doubles_and_timer_b_fires_at_32s() -> None:
    layer = TransactionLayer()
    invite = outgoing()
    key = layer.send_request(invite, BUYER, 0.0)
    assert layer.messages_to_send() == [(bytes(invite), BUYER)]
    assert layer.state_of(key) is State.CALLING
    assert layer.get_timer() == 0.5
    times = [t for t, data in run_until(layer, 40.0) if data == bytes(invite)]
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert events(layer) == [TransactionFailed(key, "Timer B")]
    assert layer.state_of(key) is State.TERMINATED
    assert layer.get_timer() is None


def test_invite_client_over_tcp_does_not_retransmit() -> None:
    layer = TransactionLayer()
    key = layer.send_request(outgoing(), BUYER, 10.0, reliable=True)
    layer.messages_to_send()
    assert layer.get_timer() == 42.0
    assert run_until(layer, 100.0) == []
    assert events(layer) == [TransactionFailed(key, "Timer B")]


def test_timer_values_follow_configured_t1() -> None:
    layer = TransactionLayer(TimerConfig(t1=0.1))
    key = layer.send_request(outgoing(), BUYER, 0.0)
    layer.messages_to_send()
    times = [t for t, _ in run_until(layer, 10.0)]
    assert times == pytest.approx([0.1, 0.3, 0.7, 1.5, 3.1, 6.3])
    assert events(layer) == [TransactionFailed(key, "Timer B")]


def test_invite_client_provisional_stops_retransmission_and_error_is_acked() -> None:
    layer = TransactionLayer()
    invite = outgoing()
    key = layer.send_request(invite, BUYER, 0.0)
    layer.messages_to_send()
    ringing = make_response(invite, 180, to_tag="b1")
    layer.receive_message(ringing, BUYER, 0.3)
    assert layer.state_of(key) is State.PROCEEDING
    assert events(layer) == [ResponseReceived(ringing, key)]
    assert run_until(layer, 60.0) == []

    busy = make_response(invite, 486, to_tag="b1")
    layer.receive_message(busy, BUYER, 5.0)
    assert events(layer) == [ResponseReceived(busy, key)]
    assert layer.state_of(key) is State.COMPLETED
    [(ack_bytes, where)] = layer.messages_to_send()
    assert where == BUYER
    ack = incoming(ack_bytes)
    assert ack.method == "ACK"
    assert ack.uri == invite.uri
    assert ack.headers.get_all("Via") == invite.headers.get_all("Via")
    assert ack.headers.get("From") == invite.headers.get("From")
    assert ack.headers.get("To") == "<sip:agent@buyer.example.com>;tag=b1"
    assert ack.headers.get("CSeq") == "1 ACK"
    assert ack.call_id == invite.call_id

    # 17.1.1.2: a retransmitted final response is absorbed and ACKed again.
    layer.receive_message(busy, BUYER, 6.0)
    assert sent(layer) == [ack_bytes]
    assert events(layer) == []
    assert layer.get_timer() == 37.0
    run_until(layer, 37.0)
    assert layer.state_of(key) is State.TERMINATED


def test_invite_client_error_over_tcp_terminates_at_once() -> None:
    layer = TransactionLayer()
    invite = outgoing()
    key = layer.send_request(invite, BUYER, 0.0, reliable=True)
    layer.messages_to_send()
    decline = make_response(invite, 603, to_tag="b1")
    layer.receive_message(decline, BUYER, 1.0)
    assert layer.state_of(key) is State.TERMINATED
    assert events(layer) == [ResponseReceived(decline, key)]
    assert sent(layer) == [bytes(build_ack_for_error(invite, decline))]
    assert layer.get_timer() is None


def test_invite_client_passes_every_2xx_to_the_tu_and_sends_no_ack() -> None:
    layer = TransactionLayer()
    invite = outgoing()
    key = layer.send_request(invite, BUYER, 0.0)
    layer.messages_to_send()
    ok = make_response(invite, 200, to_tag="b1")
    layer.receive_message(ok, BUYER, 1.0)
    layer.receive_message(ok, BUYER, 1.5)
    assert events(layer) == [ResponseReceived(ok, key), ResponseReceived(ok, key)]
    assert layer.state_of(key) is State.ACCEPTED
    assert layer.messages_to_send() == []
    assert layer.get_timer() == 33.0
    run_until(layer, 33.0)
    assert layer.state_of(key) is State.TERMINATED


def test_stray_response_is_dropped() -> None:
    layer = TransactionLayer()
    layer.receive_datagram(fx.OK_INVITE, BUYER, 0.0)
    assert events(layer) == []
    assert layer.messages_to_send() == []


# Non-INVITE client (17.1.2).


def test_non_invite_client_timer_e_caps_at_t2_and_timer_f_fires() -> None:
    layer = TransactionLayer()
    options = outgoing("OPTIONS")
    key = layer.send_request(options, BUYER, 0.0)
    layer.messages_to_send()
    times = [t for t, _ in run_until(layer, 40.0)]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert events(layer) == [TransactionFailed(key, "Timer F")]


def test_non_invite_client_in_proceeding_retransmits_every_t2() -> None:
    layer = TransactionLayer()
    bye = outgoing("BYE")
    key = layer.send_request(bye, BUYER, 0.0)
    layer.messages_to_send()
    run_until(layer, 0.5)
    trying = make_response(bye, 100)
    layer.receive_message(trying, BUYER, 1.0)
    assert layer.state_of(key) is State.PROCEEDING
    times = [t for t, _ in run_until(layer, 12.0)]
    assert times == [1.5, 5.5, 9.5]
    ok = make_response(bye, 200, to_tag="b1")
    layer.receive_message(ok, BUYER, 12.0)
    layer.receive_message(ok, BUYER, 12.1)
    assert events(layer) == [ResponseReceived(trying, key), ResponseReceived(ok, key)]
    assert layer.state_of(key) is State.COMPLETED
    assert layer.get_timer() == 17.0
    run_until(layer, 17.0)
    assert layer.state_of(key) is State.TERMINATED


def test_transport_error_ends_a_client_transaction() -> None:
    layer = TransactionLayer()
    key = layer.send_request(outgoing("OPTIONS"), BUYER, 0.0, reliable=True)
    layer.transport_error(key)
    assert events(layer) == [TransactionFailed(key, "transport error")]
    assert layer.state_of(key) is State.TERMINATED


# INVITE server (17.2.1).


def receive_invite(
    layer: TransactionLayer, data: bytes = fx.INVITE
) -> tuple[SipRequest, TransactionKey]:
    layer.receive_datagram(data, CALLER, 0.0)
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    assert event.key is not None
    return event.request, event.key


def test_invite_server_sends_100_trying_after_200ms_of_silence() -> None:
    layer = TransactionLayer()
    _, key = receive_invite(layer)
    assert layer.state_of(key, server=True) is State.PROCEEDING
    assert layer.messages_to_send() == []
    assert layer.get_timer() == 0.2
    [(when, data)] = run_until(layer, 0.2)
    trying = parse_message(data)
    assert isinstance(trying, SipResponse)
    assert (when, trying.status, trying.to.tag) == (0.2, 100, None)


def test_invite_server_skips_100_when_the_tu_answers_first() -> None:
    layer = TransactionLayer()
    invite, _ = receive_invite(layer)
    ringing = make_response(invite, 180, to_tag="cw-a-1")
    layer.send_response(ringing, 0.01)
    assert sent(layer) == [bytes(ringing)]
    assert run_until(layer, 0.3) == []


def test_retransmitted_invite_is_absorbed_by_resending_the_last_provisional() -> None:
    layer = TransactionLayer()
    invite, _ = receive_invite(layer)
    ringing = make_response(invite, 180, to_tag="cw-a-1")
    layer.send_response(ringing, 0.01)
    layer.messages_to_send()
    layer.receive_datagram(fx.INVITE, CALLER, 0.5)
    assert events(layer) == []
    assert layer.messages_to_send() == [(bytes(ringing), CALLER)]


def test_retransmitted_invite_before_any_answer_gets_100_at_once() -> None:
    layer = TransactionLayer()
    receive_invite(layer)
    layer.receive_datagram(fx.INVITE, CALLER, 0.1)
    [data] = sent(layer)
    assert data.startswith(b"SIP/2.0 100 Trying\r\n")
    assert run_until(layer, 0.3) == []


def test_invite_server_error_is_retransmitted_until_ack() -> None:
    layer = TransactionLayer()
    invite, key = receive_invite(layer)
    busy = make_response(invite, 486, to_tag="cw-a-1")
    layer.send_response(busy, 1.0)
    assert sent(layer) == [bytes(busy)]
    assert layer.state_of(key, server=True) is State.COMPLETED
    times = [t for t, data in run_until(layer, 14.0) if data == bytes(busy)]
    # RFC 3261 17.2.1: Timer G starts at T1 and doubles up to T2.
    assert times == [1.5, 2.5, 4.5, 8.5, 12.5]
    layer.receive_datagram(fx.INVITE, CALLER, 13.0)
    assert sent(layer) == [bytes(busy)]
    ack = fx.ACK.replace(b"---ack01", b"---a1b2c3d4e5f6")
    layer.receive_datagram(ack, CALLER, 13.5)
    assert layer.state_of(key, server=True) is State.CONFIRMED
    assert events(layer) == []
    assert layer.get_timer() == 18.5
    assert run_until(layer, 18.5) == []
    assert layer.state_of(key, server=True) is State.TERMINATED


def test_invite_server_timer_h_reports_a_missing_ack() -> None:
    layer = TransactionLayer()
    invite, key = receive_invite(layer)
    layer.send_response(make_response(invite, 486, to_tag="t"), 0.0)
    run_until(layer, 40.0)
    assert events(layer) == [TransactionFailed(key, "Timer H")]
    assert layer.state_of(key, server=True) is State.TERMINATED


def test_2xx_is_retransmitted_until_the_ack_arrives() -> None:
    layer = TransactionLayer()
    invite, key = receive_invite(layer)
    ok = make_response(invite, 200, to_tag="cw-a-1", body=fx.SDP_ANSWER)
    layer.send_response(ok, 1.0)
    assert sent(layer) == [bytes(ok)]
    assert layer.state_of(key, server=True) is State.ACCEPTED
    # RFC 3261 13.3.1.4: T1, doubling up to T2.
    assert [t for t, _ in run_until(layer, 14.0)] == [1.5, 2.5, 4.5, 8.5, 12.5]
    # RFC 6026 7.1: a retransmitted INVITE is absorbed in Accepted.
    layer.receive_datagram(fx.INVITE, CALLER, 14.0)
    assert events(layer) == []
    assert layer.messages_to_send() == []
    # The ACK for a 2xx has its own branch (fx.ACK), and goes to the TU once.
    layer.receive_datagram(fx.ACK, CALLER, 15.0)
    layer.receive_datagram(fx.ACK, CALLER, 15.1)
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    assert (event.request.method, event.key, event.source) == ("ACK", None, CALLER)
    assert run_until(layer, 32.0) == []
    assert layer.state_of(key, server=True) is State.ACCEPTED
    run_until(layer, 33.0)
    assert layer.state_of(key, server=True) is State.TERMINATED
    assert events(layer) == []


def test_2xx_without_ack_gives_up_after_64_t1() -> None:
    layer = TransactionLayer()
    invite, key = receive_invite(layer)
    layer.send_response(make_response(invite, 200, to_tag="cw-a-1"), 0.0)
    layer.messages_to_send()
    times = [t for t, _ in run_until(layer, 40.0)]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert events(layer) == [TransactionFailed(key, "no ACK for 2xx")]


def test_illegal_tu_event_raises_and_keeps_the_state() -> None:
    layer = TransactionLayer()
    invite, key = receive_invite(layer)
    layer.send_response(make_response(invite, 200, to_tag="cw-a-1"), 0.0)
    with pytest.raises(LocalProtocolError) as info:
        layer.send_response(make_response(invite, 486, to_tag="cw-a-1"), 0.1)
    assert str(info.value) == (
        "INVITE server transaction: event send_3xx_6xx is not allowed in state Accepted"
    )
    assert layer.state_of(key, server=True) is State.ACCEPTED


def test_response_without_transaction_is_a_local_error() -> None:
    layer = TransactionLayer()
    with pytest.raises(LocalProtocolError, match=r"^no server transaction for 200 to INVITE$"):
        layer.send_response(make_response(incoming(fx.INVITE), 200), 0.0)


# CANCEL (9.2).


def test_cancel_gets_200_and_the_invite_gets_487() -> None:
    layer = TransactionLayer()
    invite, key = receive_invite(layer)
    layer.send_response(make_response(invite, 180, to_tag="cw-a-1"), 0.0)
    layer.messages_to_send()
    layer.receive_datagram(fx.CANCEL, CALLER, 2.0)
    [event] = events(layer)
    assert isinstance(event, InviteCancelled)
    assert event.key == key
    assert event.cancel.method == "CANCEL"
    ok_data, terminated_data = sent(layer)
    ok, terminated = parse_message(ok_data), parse_message(terminated_data)
    assert isinstance(ok, SipResponse)
    assert isinstance(terminated, SipResponse)
    assert (ok.status, ok.cseq.method, ok.to.tag) == (200, "CANCEL", "cw-a-1")
    assert (terminated.status, terminated.reason) == (487, "Request Terminated")
    assert (terminated.cseq.method, terminated.to.tag) == ("INVITE", "cw-a-1")
    assert layer.state_of(key, server=True) is State.COMPLETED
    # A retransmitted CANCEL gets the same 200 again.
    layer.receive_datagram(fx.CANCEL, CALLER, 2.1)
    assert sent(layer) == [ok_data]


def test_cancel_before_any_response_uses_one_to_tag_for_both() -> None:
    layer = TransactionLayer()
    receive_invite(layer)
    layer.receive_datagram(fx.CANCEL, CALLER, 0.1)
    ok, terminated = (parse_message(data) for data in sent(layer))
    assert isinstance(ok, SipResponse)
    assert isinstance(terminated, SipResponse)
    assert (ok.status, ok.cseq.method, terminated.status) == (200, "CANCEL", 487)
    assert ok.to.tag is not None
    assert ok.to.tag == terminated.to.tag


def test_cancel_after_the_final_response_has_no_effect() -> None:
    layer = TransactionLayer()
    invite, key = receive_invite(layer)
    layer.send_response(make_response(invite, 200, to_tag="cw-a-1"), 0.0)
    layer.messages_to_send()
    layer.receive_datagram(fx.CANCEL, CALLER, 0.1)
    [data] = sent(layer)
    assert data.startswith(b"SIP/2.0 200 OK\r\n")
    assert b"CSeq: 102 CANCEL" in data
    assert events(layer) == []
    assert layer.state_of(key, server=True) is State.ACCEPTED


def test_cancel_matching_nothing_gets_481() -> None:
    layer = TransactionLayer()
    layer.receive_datagram(fx.CANCEL, CALLER, 0.0)
    [data] = sent(layer)
    assert data.startswith(b"SIP/2.0 481 Call/Transaction Does Not Exist\r\n")


def test_our_cancel_waits_for_a_provisional_response() -> None:
    layer = TransactionLayer()
    invite = outgoing()
    key = layer.send_request(invite, BUYER, 0.0)
    layer.messages_to_send()
    cancel_key = layer.cancel(key, 0.1)
    assert cancel_key == TransactionKey(key.branch, "CANCEL")
    assert layer.messages_to_send() == []
    assert layer.cancel(key, 0.2) == cancel_key
    layer.receive_message(make_response(invite, 180, to_tag="b1"), BUYER, 0.3)
    [cancel_data] = sent(layer)
    cancel = incoming(cancel_data)
    assert cancel.method == "CANCEL"
    assert cancel.uri == invite.uri
    assert cancel.headers.get_all("Via") == invite.headers.get_all("Via")
    assert cancel.headers.get("To") == invite.headers.get("To")
    assert cancel.headers.get("From") == invite.headers.get("From")
    assert cancel.headers.get("CSeq") == "1 CANCEL"
    layer.receive_message(make_response(cancel, 200, to_tag="b1"), BUYER, 0.4)
    layer.receive_message(make_response(invite, 487, to_tag="b1"), BUYER, 0.5)
    statuses = [
        (e.response.status, e.key.method) for e in events(layer) if isinstance(e, ResponseReceived)
    ]
    assert statuses == [(180, "INVITE"), (200, "CANCEL"), (487, "INVITE")]
    assert layer.cancel(key, 0.6) is None


def test_our_cancel_gives_up_when_no_final_response_comes() -> None:
    layer = TransactionLayer()
    invite = outgoing()
    key = layer.send_request(invite, BUYER, 0.0, reliable=True)
    ringing = make_response(invite, 180, to_tag="b1")
    layer.receive_message(ringing, BUYER, 1.0)
    cancel_key = layer.cancel(key, 2.0)
    assert cancel_key is not None
    run_until(layer, 33.9)
    assert events(layer) == [ResponseReceived(ringing, key)]
    assert layer.state_of(key) is State.PROCEEDING
    # RFC 3261 9.1: 64*T1 after the CANCEL, both give up.
    run_until(layer, 34.0)
    assert events(layer) == [
        TransactionFailed(cancel_key, "Timer F"),
        TransactionFailed(key, "no final response after CANCEL"),
    ]
    assert layer.state_of(key) is State.TERMINATED


# Non-INVITE server (17.2.2).


def test_non_invite_server_absorbs_and_answers_retransmissions() -> None:
    layer = TransactionLayer()
    layer.receive_datagram(fx.BYE, CALLER, 0.0)
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    assert event.key is not None
    layer.receive_datagram(fx.BYE, CALLER, 0.4)
    assert layer.messages_to_send() == []
    ok = make_response(event.request, 200)
    layer.send_response(ok, 0.5)
    layer.receive_datagram(fx.BYE, CALLER, 1.0)
    assert sent(layer) == [bytes(ok), bytes(ok)]
    assert events(layer) == []
    assert layer.state_of(event.key, server=True) is State.COMPLETED
    with pytest.raises(LocalProtocolError):
        layer.send_response(ok, 1.1)
    assert layer.get_timer() == 32.5
    run_until(layer, 32.5)
    assert layer.state_of(event.key, server=True) is State.TERMINATED


def test_non_invite_server_over_tcp_terminates_with_its_final_response() -> None:
    layer = TransactionLayer()
    layer.receive_message(incoming(fx.REGISTER), CALLER, 0.0, reliable=True)
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    assert event.key is not None
    layer.send_response(make_response(event.request, 200), 0.1)
    assert layer.state_of(event.key, server=True) is State.TERMINATED


def test_malformed_datagram_is_answered_with_400_and_never_raises() -> None:
    layer = TransactionLayer()
    layer.receive_datagram(fx.BYE.replace(b"Max-Forwards: 70", b"Max-Forwards: -"), CALLER, 0.0)
    [(data, where)] = layer.messages_to_send()
    assert where == CALLER
    assert data.startswith(b"SIP/2.0 400 Bad Request\r\n")
    assert b"Warning: 399 callwhisper \"invalid Max-Forwards: '-'\"" in data
    # A CSeq we cannot read could not be matched by the peer: no answer.
    layer.receive_datagram(fx.BYE.replace(b"CSeq: 103 BYE", b"CSeq: 103"), CALLER, 0.0)
    layer.receive_datagram(b"\r\n\r\n", CALLER, 0.0)
    layer.receive_datagram(b"\x16\x03\x01garbage", CALLER, 0.0)
    assert layer.messages_to_send() == []
    assert events(layer) == []


def test_request_after_an_empty_via_line_is_matched_by_its_first_via_value() -> None:
    layer = TransactionLayer()
    layer.receive_datagram(fx.BYE.replace(b"Via: SIP", b"Via: ,\r\nVia: SIP"), CALLER, 0.0)
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    assert event.key == TransactionKey("z9hG4bK-524287-1---bye01", "BYE", "203.0.113.10:5060")


def test_rfc2543_requests_without_magic_cookie_still_match() -> None:
    layer = TransactionLayer()
    old = fx.INVITE.replace(b"branch=z9hG4bK-524287-1---a1b2c3d4e5f6", b"branch=1")
    _, key = receive_invite(layer, old)
    layer.receive_datagram(old, CALLER, 0.1)
    assert events(layer) == []
    cancel = fx.CANCEL.replace(b"branch=z9hG4bK-524287-1---a1b2c3d4e5f6", b"branch=1")
    layer.receive_datagram(cancel, CALLER, 0.2)
    assert events(layer) == [InviteCancelled(key, incoming(cancel))]


def test_transport_error_is_accepted_in_every_live_state() -> None:
    for kind in Kind:
        for state, edges in TRANSITIONS[kind].items():
            if state is not State.TERMINATED:
                assert edges.get("transport_error") is State.TERMINATED, (kind, state)


def test_transport_error_after_2xx_forgets_the_ack_wait() -> None:
    layer = TransactionLayer()
    invite, key = receive_invite(layer)
    layer.send_response(make_response(invite, 200, to_tag="cw-a-1"), 0.0)
    layer.transport_error(key, server=True)
    assert events(layer) == [TransactionFailed(key, "transport error")]
    layer.receive_datagram(fx.ACK, CALLER, 0.1)
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    assert event.key is None
    assert layer.get_timer() is None


# What transactions keep while they wait out their timers.


def reachable_messages(layer: TransactionLayer) -> list[object]:
    """The messages and headers the layer still references, however deep."""
    found: list[object] = []
    seen: set[int] = set()
    stack: list[object] = [layer]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | ModuleType | FunctionType):
            continue
        seen.add(id(obj))
        if isinstance(obj, SipRequest | SipResponse | Headers):
            found.append(obj)
        stack.extend(gc.get_referents(obj))
    return found


def test_accepted_and_completed_transactions_keep_no_message() -> None:
    """For 64*T1 after a final response a transaction holds bytes to resend, not parsed messages."""
    layer = TransactionLayer()
    invite, server_key = receive_invite(layer)
    ours = outgoing()
    client_key = layer.send_request(ours, BUYER, 0.0)
    layer.receive_datagram(fx.BYE, CALLER, 0.0)
    [bye] = [e for e in events(layer) if isinstance(e, RequestReceived)]
    assert bye.key is not None
    assert len(reachable_messages(layer)) == 4  # the INVITEs and their Headers: CANCEL needs them
    layer.send_response(make_response(invite, 200, to_tag="cw-a-1", body=fx.SDP_ANSWER), 0.1)
    layer.send_response(make_response(bye.request, 200), 0.1)
    layer.receive_message(make_response(ours, 200, to_tag="b1"), BUYER, 0.1)
    layer.receive_datagram(fx.ACK, CALLER, 0.2)
    events(layer)
    assert layer.state_of(server_key, server=True) is State.ACCEPTED
    assert layer.state_of(client_key) is State.ACCEPTED
    assert layer.state_of(bye.key, server=True) is State.COMPLETED
    assert reachable_messages(layer) == []
    # They still do their work: a retransmitted BYE gets its 200 again.
    layer.messages_to_send()
    layer.receive_datagram(fx.BYE, CALLER, 0.3)
    [data] = sent(layer)
    assert data.startswith(b"SIP/2.0 200 OK\r\n")


def test_a_finished_call_leaves_no_reference_cycle() -> None:
    """Everything the layer made is freed by reference counting, never by the cycle collector."""
    gc.collect()
    gc.disable()
    try:
        layer = TransactionLayer()
        invite, _ = receive_invite(layer)
        layer.send_response(make_response(invite, 486, to_tag="cw-a-1"), 0.0)
        layer.receive_datagram(fx.ACK.replace(b"---ack01", b"---a1b2c3d4e5f6"), CALLER, 0.1)
        ours = outgoing()
        layer.send_request(ours, BUYER, 0.0)
        layer.receive_message(make_response(ours, 200, to_tag="b1"), BUYER, 0.1)
        layer.receive_datagram(fx.BYE.replace(b"Max-Forwards: 70", b"Max-Forwards: x"), CALLER, 0.2)
        run_until(layer, 100.0)
        events(layer)
        del layer, invite, ours
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        ours_in_garbage = [o for o in gc.garbage if type(o).__module__.startswith("callwhisper")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert ours_in_garbage == []


# Builders (9.1, 17.1.1.3).

ROUTED_INVITE = (
    b"INVITE sip:agent@buyer.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bK-cw-1\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-up-1\r\n"
    b"Max-Forwards: 69\r\n"
    b"Route: <sip:proxy1.buyer.example.com;lr>\r\n"
    b"From: <sip:+18005550100@198.51.100.5>;tag=f1\r\n"
    b"To: <sip:agent@buyer.example.com>\r\n"
    b"Call-ID: leg-b-1@198.51.100.5\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Route: <sip:proxy2.buyer.example.com;lr>\r\n"
    b"Contact: <sip:cw@198.51.100.5:5060>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def test_ack_for_error_has_top_via_routes_and_the_responses_to() -> None:
    invite = incoming(ROUTED_INVITE)
    busy = make_response(invite, 486, to_tag="b1")
    assert bytes(build_ack_for_error(invite, busy)) == (
        b"ACK sip:agent@buyer.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bK-cw-1\r\n"
        b"Route: <sip:proxy1.buyer.example.com;lr>\r\n"
        b"From: <sip:+18005550100@198.51.100.5>;tag=f1\r\n"
        b"Call-ID: leg-b-1@198.51.100.5\r\n"
        b"Route: <sip:proxy2.buyer.example.com;lr>\r\n"
        b"To: <sip:agent@buyer.example.com>;tag=b1\r\n"
        b"CSeq: 7 ACK\r\n"
        b"Max-Forwards: 70\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )


def test_cancel_has_top_via_routes_and_the_requests_to() -> None:
    assert bytes(build_cancel(incoming(ROUTED_INVITE))) == (
        b"CANCEL sip:agent@buyer.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bK-cw-1\r\n"
        b"Route: <sip:proxy1.buyer.example.com;lr>\r\n"
        b"From: <sip:+18005550100@198.51.100.5>;tag=f1\r\n"
        b"To: <sip:agent@buyer.example.com>\r\n"
        b"Call-ID: leg-b-1@198.51.100.5\r\n"
        b"Route: <sip:proxy2.buyer.example.com;lr>\r\n"
        b"CSeq: 7 CANCEL\r\n"
        b"Max-Forwards: 70\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )
