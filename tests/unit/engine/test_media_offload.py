"""Bridges and kernel forwarding, against a fake of our forwarder: when, and back again."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from callwhisper.engine.media import (
    LEAK_GRACE,
    LEAK_PACKETS,
    KernelForwarder,
    MediaConfig,
    MediaEngine,
    MediaLeg,
)
from callwhisper.engine.nftables import KernelForwardingUnavailable
from callwhisper.engine.offload import (
    KEY_PRESS_QUIET,
    Done,
    Forwarded,
    KernelForwarding,
    Offload,
    Removed,
)
from callwhisper.engine.playback import PCMA, PCMU, LegCodec
from callwhisper.errors import ConfigError, LocalProtocolError
from callwhisper.media.dtmf import TelephoneEvent
from callwhisper.media.rtp import RtpPacket
from tests.unit.engine.fakes import fake_engine

CALLER_PEER = ("192.0.2.10", 4000)
BUYER_PEER = ("198.51.100.7", 5004)
OFFLOAD = Offload(20000, CALLER_PEER, 20002, BUYER_PEER)


class FakeForwarder:
    """Our kernel forwarder, in memory: what was asked, done when the test says so."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Offload]] = []
        self._pending: list[Done] = []
        self.closed = False
        self.forwarded: Forwarded | None = None
        """What the kernel says it forwarded of each bridge taken back."""

    def install(self, offload: Offload, done: Done) -> None:
        self.asked.append(("install", offload))
        self._pending.append(done)

    def remove(self, offload: Offload, done: Removed) -> None:
        self.asked.append(("remove", offload))
        self._pending.append(lambda error: done(self.forwarded, error))

    async def close(self) -> None:
        self.closed = True

    def finish(self, error: str | None = None) -> None:
        """The worker has run every command asked so far."""
        pending, self._pending = self._pending, []
        for done in pending:
            done(error)

    def take(self) -> list[tuple[str, Offload]]:
        asked, self.asked = self.asked, []
        return asked


class Call:
    """A caller and a buyer leg on fake sockets, an engine that forwards in the kernel."""

    def __init__(
        self,
        caller_codec: LegCodec = PCMU,
        buyer_codec: LegCodec = PCMU,
        *,
        relatch_after: int | None = None,
    ) -> None:
        config = MediaConfig(relatch_after=relatch_after)
        self.engine, self.loop, self.sockets = fake_engine(config)
        self.forwarder = FakeForwarder()
        self.engine._forwarder = self.forwarder
        self.caller = self.engine.open_leg(caller_codec, remote=CALLER_PEER, name="caller")
        self.buyer = self.engine.open_leg(buyer_codec, remote=BUYER_PEER, name="buyer")
        self.seq = 0

    def send(self, leg: MediaLeg, peer: tuple[str, int], *packets: bytes) -> None:
        sock = self.sockets[0 if leg is self.caller else 1]
        sock.inbox.extend((packet, peer) for packet in packets)
        self.loop.readers[sock.fileno()]()

    def audio(self, count: int = 1) -> list[bytes]:
        packets = []
        for _ in range(count):
            self.seq += 1
            packets.append(RtpPacket(0, self.seq, self.seq * 160, 7, b"\x11" * 160).serialize())
        return packets

    def latch_both(self) -> None:
        self.send(self.caller, CALLER_PEER, *self.audio())
        self.send(self.buyer, BUYER_PEER, *self.audio())

    def check(self, after: float = 0.0) -> None:
        """The engine's periodic look at the waiting bridges, ``after`` seconds later."""
        self.loop.now += after
        self.engine._offload(self.loop.now)

    def offloaded(self) -> None:
        """Latch both peers and let the kernel take the bridge over."""
        self.latch_both()
        self.check()
        assert self.forwarder.take() == [("install", OFFLOAD)]
        self.forwarder.finish()

    @property
    def relayed(self) -> tuple[int, int]:
        """Packets the engine sent to the caller and to the buyer."""
        return len(self.sockets[0].sent), len(self.sockets[1].sent)


def test_a_bridge_goes_to_the_kernel_once_both_peers_have_sent() -> None:
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.check()
    call.send(call.caller, CALLER_PEER, *call.audio())
    call.check()
    assert call.forwarder.take() == []
    call.send(call.buyer, BUYER_PEER, *call.audio())
    call.check()
    assert call.forwarder.take() == [("install", OFFLOAD)]
    assert not bridge.kernel_forwarded
    call.forwarder.finish()
    assert bridge.kernel_forwarded
    call.check(10.0)
    assert call.forwarder.take() == []


def test_user_space_relays_until_the_kernel_has_taken_over_and_what_was_queued_after() -> None:
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.latch_both()
    call.check()
    call.send(call.caller, CALLER_PEER, *call.audio(2))
    assert call.relayed == (1, 3)
    call.forwarder.finish()
    call.send(call.caller, CALLER_PEER, *call.audio(2))
    call.send(call.buyer, BUYER_PEER, *call.audio())
    assert call.relayed == (2, 5)
    assert bridge.kernel_forwarded
    assert call.forwarder.take() == [("install", OFFLOAD)]


def test_a_bridge_whose_peers_keep_reaching_us_comes_back_to_user_space(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the grace for what was queued, the kernel has stopped forwarding it."""
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.offloaded()
    call.loop.now += LEAK_GRACE
    call.send(call.caller, CALLER_PEER, *call.audio(LEAK_PACKETS - 1))
    assert bridge.kernel_forwarded
    with caplog.at_level(logging.WARNING, "callwhisper.engine.media"):
        call.send(call.caller, CALLER_PEER, *call.audio())
    assert not bridge.kernel_forwarded
    assert call.forwarder.take() == [("remove", OFFLOAD)]
    assert caplog.messages == [
        "the kernel no longer forwards the bridge of caller and buyer (its peers' packets reach "
        "the engine), relaying in user space"
    ]
    assert call.relayed == (1, 1 + LEAK_PACKETS)
    call.check(10.0)
    assert call.forwarder.take() == []


def test_packets_queued_before_the_kernel_took_over_do_not_count_as_leaks() -> None:
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.offloaded()
    call.loop.now += LEAK_GRACE / 2
    call.send(call.caller, CALLER_PEER, *call.audio(LEAK_PACKETS))
    assert bridge.kernel_forwarded
    assert call.forwarder.take() == []
    assert call.relayed == (1, 1 + LEAK_PACKETS)  # relayed all the same


def test_strangers_on_an_offloaded_leg_are_rejected_and_do_not_count_as_leaks() -> None:
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.offloaded()
    call.loop.now += LEAK_GRACE
    call.send(call.caller, ("203.0.113.66", 9), *call.audio(LEAK_PACKETS))
    assert bridge.kernel_forwarded
    assert call.caller.counters.rejected == LEAK_PACKETS
    assert call.relayed == (1, 1)


def test_hanging_up_takes_the_bridge_back_from_the_kernel_and_counts_what_it_forwarded() -> None:
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.offloaded()
    call.engine.close_leg(call.caller)
    assert not bridge.kernel_forwarded
    assert call.forwarder.take() == [("remove", OFFLOAD)]
    call.forwarder.forwarded = Forwarded(caller=1500, buyer=1498)
    call.forwarder.finish()
    counted = (call.caller.stats().kernel_forwarded, call.buyer.stats().kernel_forwarded)
    assert counted == (1500, 1498)
    assert (call.caller.stats().packets_in, call.buyer.stats().packets_out) == (1, 1)
    call.check(10.0)
    assert call.forwarder.take() == []


def test_a_bridge_ended_while_the_kernel_took_it_is_removed_once_it_is_in() -> None:
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.latch_both()
    call.check()
    call.engine.unbridge(bridge)
    call.forwarder.finish()
    assert call.forwarder.take() == [("install", OFFLOAD), ("remove", OFFLOAD)]
    assert not bridge.kernel_forwarded
    call.check(10.0)
    assert call.forwarder.take() == []


def test_a_bridge_ended_before_its_peers_sent_is_never_offered_to_the_kernel() -> None:
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.engine.unbridge(bridge)
    call.latch_both()
    call.check()
    assert call.forwarder.take() == []
    assert call.engine._waiting == {}


def test_a_call_on_hold_comes_back_and_goes_to_the_kernel_again_when_resumed() -> None:
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.offloaded()
    call.buyer.sends = False
    assert call.forwarder.take() == [("remove", OFFLOAD)]
    routes = (call.caller._route, call.buyer._route)
    assert [route is not None and route.fast for route in routes] == [True, True]
    call.send(call.caller, CALLER_PEER, *call.audio())
    assert call.relayed == (1, 1)  # not to the buyer that holds (RFC 3264 6.1)
    call.check(10.0)
    assert call.forwarder.take() == []
    call.buyer.sends = True
    call.check()
    assert call.forwarder.take() == [("install", OFFLOAD)]
    call.forwarder.finish()
    assert bridge.kernel_forwarded


def test_a_call_held_while_the_kernel_took_it_comes_back_and_goes_again_when_resumed() -> None:
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.latch_both()
    call.check()
    call.buyer.sends = False
    call.forwarder.finish()
    assert not bridge.kernel_forwarded
    assert call.forwarder.take() == [("install", OFFLOAD), ("remove", OFFLOAD)]
    call.forwarder.finish()
    call.buyer.sends = True
    call.check()
    assert call.forwarder.take() == [("install", OFFLOAD)]


def test_leaks_are_counted_afresh_each_time_the_kernel_takes_the_bridge() -> None:
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.offloaded()
    call.loop.now += LEAK_GRACE
    call.send(call.caller, CALLER_PEER, *call.audio(LEAK_PACKETS - 1))
    call.buyer.sends = False
    call.buyer.sends = True
    call.check()
    assert call.forwarder.take() == [("remove", OFFLOAD), ("install", OFFLOAD)]
    call.forwarder.finish()
    call.loop.now += LEAK_GRACE
    call.send(call.caller, CALLER_PEER, *call.audio())
    assert bridge.kernel_forwarded


def test_a_peer_moved_by_a_reinvite_goes_back_to_the_kernel_from_its_new_address() -> None:
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.offloaded()
    moved = ("198.51.100.8", 6000)
    call.buyer.set_remote(moved, relatch=True)
    assert call.forwarder.take() == [("remove", OFFLOAD)]
    call.check()
    assert call.forwarder.take() == []
    call.send(call.buyer, moved, *call.audio())
    call.check()
    assert call.forwarder.take() == [("install", Offload(20000, CALLER_PEER, 20002, moved))]
    call.forwarder.finish()
    assert bridge.kernel_forwarded


def test_a_peer_that_relatches_elsewhere_takes_the_bridge_back() -> None:
    call = Call(relatch_after=2)
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.offloaded()
    moved = ("192.0.2.10", 4002)
    call.send(call.caller, moved, *call.audio(2))
    assert not bridge.kernel_forwarded
    assert call.forwarder.take() == [("remove", OFFLOAD)]
    call.check()
    assert call.forwarder.take() == [("install", Offload(20000, moved, 20002, BUYER_PEER))]


def test_a_recorded_bridge_stays_in_user_space_for_good(tmp_path: Path) -> None:
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer, record_to=tmp_path / "call.wav")
    call.latch_both()
    call.check()
    assert call.forwarder.take() == []
    assert call.engine._waiting == {}
    assert not bridge.kernel_forwarded


def test_a_transcoded_bridge_stays_in_user_space_for_good() -> None:
    call = Call(PCMU, PCMA)
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.latch_both()
    call.check()
    assert call.forwarder.take() == []
    assert call.engine._waiting == {}
    assert not bridge.kernel_forwarded


def dtmf(digit: int, ts: int, *, end: bool) -> bytes:
    payload = TelephoneEvent(digit, end, 10, 800).serialize()
    return RtpPacket(101, 900 + ts // 160, ts, 9, payload).serialize()


def test_the_kernel_waits_until_the_accept_key_has_been_quiet() -> None:
    """Its repeated end packets must not reach the caller (call-flow.md 1.2)."""
    call = Call()
    call.send(call.buyer, BUYER_PEER, dtmf(1, 8000, end=False))
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.send(call.caller, CALLER_PEER, *call.audio())
    call.check(KEY_PRESS_QUIET / 2)
    call.send(call.buyer, BUYER_PEER, dtmf(1, 8000, end=True))
    call.check(KEY_PRESS_QUIET / 2)
    assert call.forwarder.take() == []
    call.check(KEY_PRESS_QUIET / 2)
    assert call.forwarder.take() == [("install", OFFLOAD)]
    assert call.relayed == (0, 1)  # the rest of the key never reached the caller
    call.forwarder.finish()
    assert bridge.kernel_forwarded


def test_a_failed_install_leaves_the_bridge_in_user_space(
    caplog: pytest.LogCaptureFixture,
) -> None:
    call = Call()
    bridge = call.engine.bridge(call.caller, call.buyer)
    call.latch_both()
    call.check()
    with caplog.at_level(logging.WARNING, "callwhisper.engine.media"):
        call.forwarder.finish("Error: Could not process rule: No such file or directory")
    assert caplog.messages == [
        "kernel forwarding of the bridge of caller and buyer failed, relaying in user space: "
        "Error: Could not process rule: No such file or directory"
    ]
    assert not bridge.kernel_forwarded
    call.send(call.caller, CALLER_PEER, *call.audio())
    assert call.relayed == (1, 2)
    call.forwarder.take()
    call.check(10.0)
    assert call.forwarder.take() == []


def test_without_kernel_forwarding_bridges_are_never_planned() -> None:
    engine, _, _ = fake_engine()
    caller, buyer = engine.open_leg(PCMU), engine.open_leg(PCMU)
    bridge = engine.bridge(caller, buyer)
    assert bridge._kernel is None
    assert engine._waiting == {}


class Opener:
    """Opens our fake forwarder, or fails as an unusable host would."""

    def __init__(self, problem: str | None = None) -> None:
        self.problem = problem
        self.opened: list[tuple[str, int, int]] = []
        self.forwarder = FakeForwarder()

    async def __call__(self, address: str, port_min: int, port_max: int) -> KernelForwarder:
        self.opened.append((address, port_min, port_max))
        if self.problem is not None:
            raise KernelForwardingUnavailable(self.problem)
        return self.forwarder


LACKS = "the process lacks CAP_NET_ADMIN"


async def test_on_refuses_to_start_naming_what_is_missing() -> None:
    engine = MediaEngine(MediaConfig(kernel_forwarding="on"), open_forwarder=Opener(LACKS))
    with pytest.raises(ConfigError) as raised:
        await engine.start()
    assert raised.value.problems == [f"media kernel forwarding is on but unavailable: {LACKS}"]
    with pytest.raises(LocalProtocolError, match="media engine is not started"):
        engine.loop  # noqa: B018


async def test_auto_falls_back_to_user_space_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    opener = Opener(LACKS)
    engine = MediaEngine(MediaConfig("127.0.0.1", 32000, 32099, kernel_forwarding="auto"),
                         open_forwarder=opener)  # fmt: skip
    with caplog.at_level(logging.WARNING, "callwhisper.engine.media"):
        await engine.start()
    try:
        assert opener.opened == [("127.0.0.1", 32000, 32099)]
        assert caplog.messages == [
            f"media kernel forwarding unavailable, relaying in user space: {LACKS}"
        ]
        bridge = engine.bridge(engine.open_leg(PCMU), engine.open_leg(PCMU))
        assert bridge._kernel is None
    finally:
        await engine.stop()


@pytest.mark.parametrize(("mode", "opened"), [("off", []), ("on", [("127.0.0.1", 20000, 30000)])])
async def test_the_forwarder_is_opened_only_when_asked_and_closed_with_the_engine(
    mode: KernelForwarding, opened: list[tuple[str, int, int]]
) -> None:
    opener = Opener()
    engine = MediaEngine(MediaConfig(kernel_forwarding=mode), open_forwarder=opener)
    await engine.start()
    await engine.stop()
    assert opener.opened == opened
    assert opener.forwarder.closed == bool(opened)


def test_an_unknown_forwarding_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="must be one of off, auto, on, not 'yes'"):
        MediaConfig(kernel_forwarding="yes")  # type: ignore[arg-type]
