"""Kernel forwarding of bridged RTP with nftables, sans-I/O: which bridges, and the commands.

A bridged call whose legs relay G.711 unchanged (same codec, payload types
and telephone-event type, not recorded) can be forwarded by the kernel: a
packet from a latched peer to our leg is rewritten on arrival and sent on to
the other peer, from our other leg, without reaching a process. The engine
keeps relaying in user space from the bridge until the kernel takes over,
and again from the moment it gives the bridge back.

:func:`plan` decides whether a bridge can go to the kernel now;
:func:`table_definition`, :func:`add_commands` and :func:`remove_commands`
write the nftables text. The I/O (libnftables, a worker thread) is in
:mod:`callwhisper.engine.nftables`.

The table, for our media address M and RTP ports P (A:pa and B:pb the
latched caller and buyer, Ra and Rb our legs' ports):

* set ``offloaded`` of (peer address . peer port . our port): ``A . pa . Ra``
  and ``B . pb . Rb``, the packets to forward;
* maps keyed by our leg's port: ``to_addr`` (Ra: B), ``to_port`` (Ra: pb),
  ``from_port`` (Ra: Rb), and the same for Rb; each ``to_addr`` element
  counts the packets it forwarded (:class:`Forwarded`);
* chain ``prerouting`` (hook prerouting, priority raw, so before conntrack):
  a UDP packet to M:P whose key is in ``offloaded`` goes to ``relay``, which
  marks it untracked (no conntrack entry: the forwarding is stateless) and
  rewrites its destination address, source port and destination port, in
  that order, since every map is looked up by the original destination port;
  from loopback its source address becomes M too;
* chain ``forward`` (hook forward, priority raw): the relayed packets leaving
  for another host get M as their source. Set on arrival, a local source
  address would make them martians and be dropped;
* chain ``output`` (hook output, priority raw): a packet sent from this host
  to a relayed leg passes output before it loops back to prerouting; it is
  not tracked either, so that loopback peers (tests, benchmarks) take the
  same stateless path as remote ones.

RTP passes through unchanged: SSRC, sequence numbers and timestamps are the
other peer's, so each peer sees the SSRC change once, which RFC 3550
receivers take as a new source. Telephone-events are forwarded as any
packet, and no longer reported to the engine. RTCP that a peer sends to our
RTP port (RFC 5761) is forwarded too, where user space consumes it. The
legs' reception statistics stand still meanwhile; the packets the kernel
forwarded are counted when the engine takes the bridge back.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, get_args

from callwhisper.engine.playback import LegCodec

__all__ = [
    "KERNEL_FORWARDING_MODES",
    "KEY_PRESS_QUIET",
    "Done",
    "Forwarded",
    "KernelForwarding",
    "LegState",
    "Offload",
    "Refusal",
    "Removed",
    "add_commands",
    "address_problem",
    "plan",
    "remove_commands",
    "table_definition",
]

Address = tuple[str, int]

KernelForwarding = Literal["off", "auto", "on"]
"""``off``: user space relays every bridge; ``auto``: the kernel forwards bridges when the host
allows it, else user space (one warning at start); ``on``: the kernel, or no start."""
KERNEL_FORWARDING_MODES: Final[tuple[KernelForwarding, ...]] = get_args(KernelForwarding)

KEY_PRESS_QUIET: Final = 0.5
"""Seconds without a packet of a key press begun before the bridge (the accept key) before
the kernel may take over: its updates and repeated end packets must never reach the other
peer (RFC 4733 2.5.1.4 repeats the end packet; call-flow.md 1.2)."""


@dataclass(frozen=True, slots=True)
class LegState:
    """What the planner needs to know of one leg of a bridge."""

    port: int
    """Our leg's RTP port."""
    peer: Address | None
    """The address the peer's packets come from (latched), None before its first packet."""
    sends: bool
    """False while the peer has put us on hold: nothing may be sent to it (RFC 3264 6.1)."""
    codec: LegCodec
    key_press_seen: float | None
    """Loop time of the last packet of a key press begun before the bridge, None if none."""


@dataclass(frozen=True, slots=True)
class Offload:
    """One bridge forwarded by the kernel: each leg's port and its latched peer."""

    caller_port: int
    caller_peer: Address
    buyer_port: int
    buyer_peer: Address


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What the kernel forwarded of one offloaded bridge, read before its elements went."""

    caller: int
    """Packets from the caller's peer, sent on to the buyer's."""
    buyer: int
    """Packets from the buyer's peer, sent on to the caller's."""


Done = Callable[[str | None], None]
"""Called on the loop when the kernel has done what was asked: None, or why it failed."""
Removed = Callable[[Forwarded | None, str | None], None]
"""Called on the loop once a bridge is back: what the kernel forwarded (None if unknown), and
None or why the removal failed."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a bridge stays in user space for now."""

    reason: str
    final: bool
    """True when nothing can change it while the bridge lasts: do not ask again."""


def plan(caller: LegState, buyer: LegState, *, recorded: bool, now: float) -> Offload | Refusal:
    """Whether the kernel can forward this bridge at ``now``, and how; else why not."""
    if recorded:
        return Refusal("the call is recorded", final=True)
    if caller.codec != buyer.codec:
        return Refusal(
            f"the legs' formats differ ({_format(caller.codec)} and {_format(buyer.codec)})",
            final=True,
        )
    peers: list[Address] = []
    for name, leg in (("caller", caller), ("buyer", buyer)):
        if leg.peer is None:
            return Refusal(f"no packet from the {name} yet", final=False)
        if ":" in leg.peer[0]:
            return Refusal(f"the {name} is on IPv6", final=True)
        if not leg.sends:
            return Refusal(f"the {name} has put the call on hold", final=False)
        if leg.key_press_seen is not None and now - leg.key_press_seen < KEY_PRESS_QUIET:
            return Refusal(f"a key press of the {name} may still be going on", final=False)
        peers.append(leg.peer)
    return Offload(caller.port, peers[0], buyer.port, peers[1])


def _format(codec: LegCodec) -> str:
    return f"{codec.encoding}/{codec.payload_type}, telephone-event {codec.telephone_event}"


def address_problem(address: str) -> str | None:
    """Why the kernel cannot forward for media ``address``, or None if it can."""
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        return f"the media address {address!r} is not an IPv4 address (nftables table ip)"
    if parsed.is_unspecified:
        return (
            f"the media address is {address}: the kernel needs the one address peers send to, "
            "to use as the source of what it forwards"
        )
    return None


def table_definition(table: str, address: str, port_min: int, port_max: int) -> str:
    """The engine's table, owned by the netlink socket that creates it (gone when it closes)."""
    relayed = f"ip daddr {address} udp dport {port_min}-{port_max}"
    key = "ip saddr . udp sport . udp dport"
    return f"""table ip {table} {{
  flags owner
  set offloaded {{ type ipv4_addr . inet_service . inet_service; size 65535; }}
  map to_addr {{ type inet_service : ipv4_addr; size 65535; counter; }}
  map to_port {{ type inet_service : inet_service; size 65535; }}
  map from_port {{ type inet_service : inet_service; size 65535; }}
  chain prerouting {{
    type filter hook prerouting priority raw; policy accept;
    {relayed} {key} @offloaded goto relay
  }}
  chain relay {{
    notrack
    ip daddr set udp dport map @to_addr udp sport set udp dport map @from_port \
udp dport set udp dport map @to_port
    iif lo ip saddr set {address}
  }}
  chain forward {{
    type filter hook forward priority raw; policy accept;
    udp sport {port_min}-{port_max} ip daddr . udp dport . udp sport @offloaded \
ip saddr set {address}
  }}
  chain output {{
    type filter hook output priority raw; policy accept;
    oif lo {relayed} {key} @offloaded notrack
  }}
}}
"""


def add_commands(table: str, offload: Offload) -> str:
    """The elements that hand ``offload``'s bridge to the kernel, in one transaction."""
    (a, pa), ra = offload.caller_peer, offload.caller_port
    (b, pb), rb = offload.buyer_peer, offload.buyer_port
    return (
        f"add element ip {table} to_addr {{ {ra} : {b}, {rb} : {a} }}\n"
        f"add element ip {table} to_port {{ {ra} : {pb}, {rb} : {pa} }}\n"
        f"add element ip {table} from_port {{ {ra} : {rb}, {rb} : {ra} }}\n"
        f"add element ip {table} offloaded {{ {a} . {pa} . {ra}, {b} . {pb} . {rb} }}\n"
    )


def remove_commands(table: str, offload: Offload) -> str:
    """The elements :func:`add_commands` added, deleted in one transaction."""
    (a, pa), ra = offload.caller_peer, offload.caller_port
    (b, pb), rb = offload.buyer_peer, offload.buyer_port
    return (
        f"delete element ip {table} offloaded {{ {a} . {pa} . {ra}, {b} . {pb} . {rb} }}\n"
        f"delete element ip {table} to_addr {{ {ra}, {rb} }}\n"
        f"delete element ip {table} to_port {{ {ra}, {rb} }}\n"
        f"delete element ip {table} from_port {{ {ra}, {rb} }}\n"
    )
