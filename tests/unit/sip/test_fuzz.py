"""Property tests: random and mutated bytes only ever raise SipParseError, and never hang."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callwhisper.errors import SipParseError
from callwhisper.sip.message import (
    SipMessage,
    SipResponse,
    StreamFramer,
    error_response,
    parse_message,
)
from callwhisper.sip.transaction import TransactionLayer
from tests.unit.sip import fixtures as fx

INTERESTING = [b"\r\n", b":", b";", b",", b"<", b">", b'"', b" ", b"\t", b"/", b"0", b"\xff", b"@"]

FUZZ = settings(
    max_examples=300,
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
