"""What every transaction user of ours answers by itself, on the real transaction layer."""

from __future__ import annotations

from callwhisper.engine.transaction_user import TransactionUser
from callwhisper.sip.message import SipMessage, SipRequest, SipResponse, parse_message
from callwhisper.sip.transaction import (
    Address,
    InviteCancelled,
    RequestReceived,
    ResponseReceived,
    TransactionFailed,
    TransactionKey,
    TransactionLayer,
)
from tests.unit.engine.b2bua_harness import FakeTcp

PEER: Address = ("127.0.0.1", 5071)


class Recorder(TransactionUser):
    """A TU that owns the dialog with local tag ``ours`` and records what reaches its hooks."""

    server = "recorder"
    allow = "INVITE, ACK, BYE, OPTIONS"

    def __init__(self, streams: FakeTcp | None = None) -> None:
        self.sent: list[SipMessage] = []
        self.seen: list[str] = []
        super().__init__(
            TransactionLayer(),
            local=("::1", 5062),
            user="rec",
            flush=self.flush,
            clock=lambda: 0.0,
            streams=streams,
        )

    def flush(self) -> None:
        while True:
            self.sent += [parse_message(data) for data, _ in self.core.messages_to_send()]
            event = self.core.next_event()
            if event is None:
                return
            self.handle_event(event)

    def receive(self, method: str, *, to_tag: str = "") -> list[SipMessage]:
        to = "<sip:rec@[::1]:5062>" + (f";tag={to_tag}" if to_tag else "")
        text = (
            f"{method} sip:rec@[::1]:5062 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-{method}-{len(self.seen)}\r\n"
            f"From: <sip:peer@127.0.0.1>;tag=peer\r\nTo: {to}\r\nCall-ID: c-1\r\n"
            f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        self.core.receive_datagram(text.encode(), PEER, 0.0)
        self.flush()
        sent, self.sent = self.sent, []
        return sent

    def _invite(self, request: SipRequest, source: Address, key: TransactionKey) -> None:
        self.seen.append(f"invite from {source[1]}")
        self.respond(request, 486)

    def _dialog_request(self, event: RequestReceived) -> bool:
        if event.request.to.tag != "ours":
            return False
        self.seen.append(f"in dialog {event.request.method}")
        return True

    def _transaction_event(
        self, event: ResponseReceived | InviteCancelled | TransactionFailed
    ) -> None:
        self.seen.append(type(event).__name__)


def only_response(sent: list[SipMessage]) -> SipResponse:
    assert len(sent) == 1, sent
    response = sent[0]
    assert isinstance(response, SipResponse)
    return response


def test_options_is_answered_200_with_what_we_allow_accept_and_our_contact() -> None:
    tu = Recorder()
    ok = only_response(tu.receive("OPTIONS"))
    assert ok.status == 200
    assert ok.headers.get("Allow") == "INVITE, ACK, BYE, OPTIONS"
    assert ok.headers.get("Accept") == "application/sdp"
    assert ok.headers.get("Contact") == "<sip:rec@[::1]:5062>"
    assert ok.headers.get("Server") == "recorder"
    assert tu.seen == []


def test_a_bye_outside_a_dialog_gets_481_and_another_method_405_with_allow() -> None:
    tu = Recorder()
    assert only_response(tu.receive("BYE")).status == 481
    refused = only_response(tu.receive("MESSAGE"))
    assert (refused.status, refused.headers.get("Allow")) == (405, "INVITE, ACK, BYE, OPTIONS")
    assert tu.receive("ACK") == []
    assert tu.seen == []


def test_requests_for_our_dialogs_reach_the_subclass_and_others_get_481() -> None:
    """RFC 3261 12.2.2; a stray ACK is answered by nothing."""
    tu = Recorder()
    assert tu.receive("BYE", to_tag="ours") == []
    assert only_response(tu.receive("BYE", to_tag="gone")).status == 481
    assert tu.receive("ACK", to_tag="gone") == []
    assert tu.seen == ["in dialog BYE"]


def test_a_new_invite_goes_to_the_subclass_with_its_source() -> None:
    tu = Recorder()
    assert [m.status for m in tu.receive("INVITE") if isinstance(m, SipResponse)] == [486]
    assert tu.seen == ["invite from 5071"]


def test_a_tcp_or_tls_destination_is_sent_to_over_its_stream_and_udp_stays_a_datagram() -> None:
    """RFC 5922 7.2: over TLS the certificate must name the URI's host, not the address."""
    streams = FakeTcp()
    tu = Recorder(streams)
    tu.use_stream("udp", ("192.0.2.1", 5060), "sip:a@192.0.2.1")
    tu.use_stream("tcp", ("192.0.2.2", 5060), "sip:b@192.0.2.2;transport=tcp")
    tu.use_stream("tls", ("192.0.2.3", 5061), "sips:c@Edge.Example:5061;lr")
    assert streams.tcp == {("192.0.2.2", 5060)}
    assert streams.tls == {("192.0.2.3", 5061): "Edge.Example"}
