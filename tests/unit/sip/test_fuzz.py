"""Fuzz tests: bytes only ever raise SipParseError, and the transaction layer stays consistent."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from callwhisper.errors import LocalProtocolError, SipParseError
from callwhisper.sip.headers import NameAddr, Via, parse_cseq, parse_name_addr, parse_via
from callwhisper.sip.message import (
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    StreamFramer,
    error_response,
    make_request,
    make_response,
    parse_message,
)
from callwhisper.sip.transaction import (
    Address,
    RequestReceived,
    ResponseReceived,
    State,
    TransactionFailed,
    TransactionKey,
    TransactionLayer,
    server_key,
)
from tests.unit.sip import fixtures as fx

INTERESTING = [b"\r\n", b":", b";", b",", b"<", b">", b'"', b" ", b"\t", b"/", b"0", b"\xff", b"@"]

FUZZ = settings(
    # 300 in `make test`; the fuzz profile of tests/conftest.py asks for many more.
    max_examples=max(300, settings().max_examples),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A fixture with a few bytes replaced, inserted or deleted, or cut short."""
    data = bytearray(draw(st.sampled_from(fx.MESSAGES)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["replace", "insert", "delete", "cut"]))
        piece = draw(st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=4)))
        if op == "replace":
            data[pos : pos + len(piece)] = piece
        elif op == "insert":
            data[pos:pos] = piece
        elif op == "delete":
            del data[pos : pos + len(piece)]
        else:
            del data[pos:]
    return bytes(data)


messages = st.one_of(mutated(), st.binary(max_size=300))


def _parse_or_error(data: bytes) -> SipMessage | SipParseError:
    try:
        return parse_message(data)
    except SipParseError as exc:
        return exc


@FUZZ
@given(messages)
def test_parser_raises_only_sip_parse_error(data: bytes) -> None:
    """Anything else escaping parse_message fails the test; a parsed message round-trips."""
    result = _parse_or_error(data)
    if isinstance(result, SipParseError):
        assert result.status_hint in (400, 505, 513)
        answer = error_response(data, result)
        if answer is not None:
            reply = parse_message(answer)
            assert isinstance(reply, SipResponse)
            assert reply.status == result.status_hint
    else:
        assert parse_message(bytes(result)) == result
        # The typed values the parser kept are those its header lines give.
        lines = result.headers
        assert result.vias == [parse_via(value) for value in lines.values("Via")]
        assert result.cseq == parse_cseq(lines.get_all("CSeq")[0])
        assert result.from_ == parse_name_addr(lines.get_all("From")[0])
        assert result.to == parse_name_addr(lines.get_all("To")[0])
        assert result.call_id == lines.get_all("Call-ID")[0].strip()


@FUZZ
@given(messages, st.sampled_from([100, 180, 183, 200, 487]), st.sampled_from([None, "b2"]))
def test_a_built_response_keeps_the_typed_values_its_lines_give(
    data: bytes, status: int, to_tag: str | None
) -> None:
    """make_response carries typed values over (and the To it tags): reading its bytes agrees."""
    request = _parse_or_error(data)
    if not isinstance(request, SipRequest):
        return
    response = make_response(request, status, to_tag=to_tag, extra=(("Server", "test"),))
    again = parse_message(bytes(response))
    assert again == response
    assert isinstance(again, SipResponse)
    assert response.headers._typed.keys() >= {"via", "from", "to", "call-id", "cseq"}
    assert (response.vias, response.from_, response.to) == (again.vias, again.from_, again.to)
    assert (response.call_id, response.cseq) == (again.call_id, again.cseq)
    if status != 100 and request.to.tag is None:
        assert response.to.tag is not None
        assert to_tag is None or response.to.tag == to_tag


@FUZZ
@given(st.lists(messages, min_size=1, max_size=4), st.integers(1, 64))
def test_stream_framer_raises_only_sip_parse_error(parts: list[bytes], chunk: int) -> None:
    stream = b"".join(parts)
    framer = StreamFramer(max_size=4096)
    try:
        out: list[bytes] = []
        for i in range(0, len(stream), chunk):
            out.extend(framer.feed(stream[i : i + chunk]))
    except SipParseError:
        return
    assert sum(len(m) for m in out) <= len(stream)
    for raw in out:
        _parse_or_error(raw)


@FUZZ
@given(st.lists(st.tuples(messages, st.floats(0, 2)), min_size=1, max_size=8))
def test_transaction_layer_never_raises_on_received_datagrams(
    datagrams: list[tuple[bytes, float]],
) -> None:
    layer = TransactionLayer()
    now = 0.0
    for data, step in datagrams:
        now += step
        layer.receive_datagram(data, ("192.0.2.1", 5060), now)
        layer.handle_timer(now)
    deadline = layer.get_timer()
    fired = 0
    while deadline is not None:
        layer.handle_timer(deadline)
        deadline = layer.get_timer()
        fired += 1
        assert fired < 1000
    while layer.next_event() is not None:
        pass
    layer.messages_to_send()


PEER: Address = ("192.0.2.7", 5060)
STATUSES = [100, 180, 183, 200, 202, 302, 404, 408, 486, 487, 500, 603]
LIVE = (State.CALLING, State.TRYING, State.PROCEEDING)


def _peer_request(method: str, n: int, *, cseq: int = 1, to_tag: str = "") -> SipRequest:
    """A request from the peer; ``n`` makes its branch, Call-ID and From tag."""
    to = f"<sip:us@198.51.100.5>{f';tag={to_tag}' if to_tag else ''}"
    text = (
        f"{method} sip:us@198.51.100.5 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-peer-{n}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:them@192.0.2.7>;tag=them-{n}\r\nTo: {to}\r\n"
        f"Call-ID: call-{n}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def _our_request(method: str, n: int) -> SipRequest:
    return make_request(
        method,
        "sip:buyer@192.0.2.7",
        from_=NameAddr("sip:us@198.51.100.5", params={"tag": f"us-{n}"}),
        to=NameAddr("sip:buyer@192.0.2.7"),
        via=Via("UDP", "198.51.100.5", 5060, {"branch": f"z9hG4bK-us-{n}"}),
        call_id=f"ours-{n}",
    )


class TransactionLayerMachine(RuleBasedStateMachine):
    """Any interleaving of TU calls, peer messages and time keeps the layer consistent.

    Peer input never raises; the TU gets at most one final answer or failure
    per transaction (RFC 6026: every 2xx of an INVITE); no timer is left due;
    and once a well-behaved TU has answered and cancelled what it owns, every
    transaction ends: nothing leaks.
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer = TransactionLayer()
        self.now = 0.0
        self.n = 0
        self.ours: list[tuple[SipRequest, TransactionKey]] = []
        self.theirs: list[SipRequest] = []
        self.answers: dict[TransactionKey, list[int]] = {}
        self.failed: set[TransactionKey] = set()
        self.arrived: dict[TransactionKey, SipRequest] = {}
        """Requests of live server transactions (also those mutated bytes happened to make)."""

    def _drain(self) -> None:
        self.layer.messages_to_send()
        while (event := self.layer.next_event()) is not None:
            match event:
                case ResponseReceived(response=response, key=key):
                    assert key not in self.failed, f"{response.status} after the failure of {key}"
                    self.answers.setdefault(key, []).append(response.status)
                    finals = [s for s in self.answers[key] if s >= 200]
                    if key.method == "INVITE":
                        # RFC 6026 7.2: every 2xx, or one error response, never both.
                        assert all(s < 300 for s in finals) or len(finals) == 1, finals
                    else:
                        assert len(finals) <= 1, finals
                case TransactionFailed(key=key):
                    assert key not in self.failed, f"{key} failed twice"
                    self.failed.add(key)
                case RequestReceived(request=request, key=key) if key is not None:
                    # A retransmission reaches the TU again only once its transaction is over.
                    assert key not in self.arrived, f"{key} reached the TU twice"
                    self.arrived[key] = request
                    self.failed.discard(key)  # a new transaction: it may fail in its turn
        self.arrived = {
            key: request
            for key, request in self.arrived.items()
            if self.layer.state_of(key, server=True) is not State.TERMINATED
        }

    def _next(self) -> int:
        self.n += 1
        return self.n

    @rule(method=st.sampled_from(["INVITE", "OPTIONS", "BYE"]), reliable=st.booleans())
    def tu_sends_a_request(self, method: str, reliable: bool) -> None:
        request = _our_request(method, self._next())
        key = self.layer.send_request(request, PEER, self.now, reliable=reliable)
        self.ours.append((request, key))

    @precondition(lambda self: self.ours)
    @rule(data=st.data(), status=st.sampled_from(STATUSES), tag=st.sampled_from(["a", "b"]))
    def peer_answers(self, data: st.DataObject, status: int, tag: str) -> None:
        request, _ = data.draw(st.sampled_from(self.ours))
        self.layer.receive_datagram(
            bytes(make_response(request, status, to_tag=tag)), PEER, self.now
        )

    @precondition(lambda self: self.ours)
    @rule(data=st.data())
    def tu_cancels(self, data: st.DataObject) -> None:
        _, key = data.draw(st.sampled_from(self.ours))
        cancel = self.layer.cancel(key, self.now)
        if cancel is not None:
            request = _our_request("INVITE", 0)
            self.ours.append((request, cancel))

    @rule(method=st.sampled_from(["INVITE", "OPTIONS", "BYE", "INFO"]))
    def peer_sends_a_request(self, method: str) -> None:
        request = _peer_request(method, self._next())
        self.theirs.append(request)
        self.layer.receive_datagram(bytes(request), PEER, self.now)

    @precondition(lambda self: self.theirs)
    @rule(data=st.data())
    def peer_retransmits(self, data: st.DataObject) -> None:
        request = data.draw(st.sampled_from(self.theirs))
        self.layer.receive_datagram(bytes(request), PEER, self.now)

    @precondition(lambda self: self.theirs)
    @rule(data=st.data(), status=st.sampled_from(STATUSES))
    def tu_answers(self, data: st.DataObject, status: int) -> None:
        request = data.draw(st.sampled_from(self.theirs))
        key = server_key(request, request.method)
        state = self.layer.state_of(key, server=True)
        try:
            self.layer.send_response(make_response(request, status, to_tag="us"), self.now)
        except LocalProtocolError:
            # Only a TU answering what it may no longer answer is refused.
            assert state not in (State.TRYING, State.PROCEEDING) or (
                status < 200 and request.method != "INVITE" and state is State.TRYING
            ), (state, status)

    @precondition(lambda self: self.theirs)
    @rule(data=st.data(), same_branch=st.booleans())
    def peer_acks(self, data: st.DataObject, same_branch: bool) -> None:
        invite = data.draw(st.sampled_from(self.theirs))
        n = int(invite.call_id.removeprefix("call-"))
        ack = _peer_request("ACK", n, cseq=invite.cseq.seq, to_tag="us")
        if not same_branch:  # the ACK of a 2xx is a new transaction (RFC 3261 17.1.1.3)
            ack = SipRequest(
                "ACK",
                ack.uri,
                Headers(
                    [(k, v.replace("peer-", "ack-") if k == "Via" else v) for k, v in ack.headers]
                ),
            )
        self.layer.receive_datagram(bytes(ack), PEER, self.now)

    @precondition(lambda self: self.theirs)
    @rule(data=st.data())
    def peer_cancels(self, data: st.DataObject) -> None:
        request = data.draw(st.sampled_from(self.theirs))
        n = int(request.call_id.removeprefix("call-"))
        cancel = _peer_request("CANCEL", n, cseq=request.cseq.seq)
        self.layer.receive_datagram(bytes(cancel), PEER, self.now)

    @rule(data=mutated())
    def peer_sends_garbage(self, data: bytes) -> None:
        self.layer.receive_datagram(data, PEER, self.now)

    @rule(seconds=st.floats(0, 40))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.layer.handle_timer(self.now)

    @invariant()
    def no_timer_is_left_due(self) -> None:
        self._drain()
        deadline = self.layer.get_timer()
        assert deadline is None or deadline > self.now

    def teardown(self) -> None:
        """A well-behaved TU answers and cancels what it owns; then everything ends."""
        layer = self.layer
        for key, request in self.arrived.items():
            if layer.state_of(key, server=True) in LIVE:
                layer.send_response(make_response(request, 500, to_tag="us"), self.now)
        for _, key in self.ours:
            if key.method == "INVITE" and layer.state_of(key) in LIVE:
                layer.cancel(key, self.now)
        self._drain()
        for _ in range(10_000):
            deadline = layer.get_timer()
            if deadline is None:
                break
            self.now = deadline
            layer.handle_timer(deadline)
            self._drain()
        assert layer._client == {}
        assert layer._server == {}
        assert layer._awaiting_ack == {}


# A run is up to 30 steps: a tenth of the examples keeps `make test` quick.
TransactionLayerMachine.TestCase.settings = settings(
    FUZZ, max_examples=FUZZ.max_examples // 10, stateful_step_count=30
)
test_transaction_layer_state_machine = TransactionLayerMachine.TestCase
