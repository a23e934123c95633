"""The kernel forwarding planner: which bridges the kernel may forward, and the nft text."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callwhisper.engine.offload import (
    KEY_PRESS_QUIET,
    LegState,
    Offload,
    Refusal,
    add_commands,
    address_problem,
    plan,
    remove_commands,
    table_definition,
)
from callwhisper.engine.playback import PCMA, PCMU, LegCodec

CALLER = LegState(20000, ("192.0.2.10", 4000), sends=True, codec=PCMU, key_press_seen=None)
BUYER = LegState(20002, ("198.51.100.7", 5004), sends=True, codec=PCMU, key_press_seen=None)
OFFLOAD = Offload(20000, ("192.0.2.10", 4000), 20002, ("198.51.100.7", 5004))


def test_a_plain_bridge_of_latched_peers_goes_to_the_kernel() -> None:
    assert plan(CALLER, BUYER, recorded=False, now=10.0) == OFFLOAD


def test_a_recorded_bridge_never_does() -> None:
    assert plan(CALLER, BUYER, recorded=True, now=10.0) == Refusal("the call is recorded", True)


@pytest.mark.parametrize(
    "codec",
    [PCMA, LegCodec("PCMU", 96), LegCodec("PCMU", 0, 96), LegCodec("PCMU", 0, None)],
)
def test_legs_that_differ_in_codec_payload_type_or_event_type_never_do(codec: LegCodec) -> None:
    """The kernel cannot transcode or renumber payload types."""
    refusal = plan(CALLER, replace(BUYER, codec=codec), recorded=False, now=10.0)
    assert refusal == Refusal(
        "the legs' formats differ (PCMU/0, telephone-event 101 and "
        f"{codec.encoding}/{codec.payload_type}, telephone-event {codec.telephone_event})",
        final=True,
    )


def test_a_peer_not_heard_from_yet_is_waited_for() -> None:
    refusal = plan(CALLER, replace(BUYER, peer=None), recorded=False, now=10.0)
    assert refusal == Refusal("no packet from the buyer yet", final=False)


def test_an_ipv6_peer_never_is() -> None:
    refusal = plan(replace(CALLER, peer=("2001:db8::1", 4000)), BUYER, recorded=False, now=10.0)
    assert refusal == Refusal("the caller is on IPv6", final=True)


def test_a_call_on_hold_waits_for_the_resume() -> None:
    """Nothing may be sent to a peer that holds (RFC 3264 6.1); the kernel would."""
    refusal = plan(replace(CALLER, sends=False), BUYER, recorded=False, now=10.0)
    assert refusal == Refusal("the caller has put the call on hold", final=False)


def test_a_key_press_begun_before_the_bridge_must_be_quiet_first() -> None:
    """The rest of the accept key must not reach the caller through the kernel."""
    buyer = replace(BUYER, key_press_seen=10.0)
    assert plan(CALLER, buyer, recorded=False, now=10.0 + KEY_PRESS_QUIET - 0.01) == Refusal(
        "a key press of the buyer may still be going on", final=False
    )
    assert plan(CALLER, buyer, recorded=False, now=10.0 + KEY_PRESS_QUIET) == OFFLOAD


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("203.0.113.5", None),
        ("127.0.0.1", None),
        (
            "0.0.0.0",
            "the media address is 0.0.0.0: the kernel needs the one address peers send to, "
            "to use as the source of what it forwards",
        ),
        ("::1", "the media address '::1' is not an IPv4 address (nftables table ip)"),
        ("media.example", "the media address 'media.example' is not an IPv4 address (nftables "
         "table ip)"),
    ],
)  # fmt: skip
def test_the_media_address_must_be_one_ipv4_address(address: str, problem: str | None) -> None:
    assert address_problem(address) == problem


def test_one_bridge_is_four_maps_and_set_entries_added_and_deleted_together() -> None:
    assert add_commands("cw", OFFLOAD) == (
        "add element ip cw to_addr { 20000 : 198.51.100.7, 20002 : 192.0.2.10 }\n"
        "add element ip cw to_port { 20000 : 5004, 20002 : 4000 }\n"
        "add element ip cw from_port { 20000 : 20002, 20002 : 20000 }\n"
        "add element ip cw offloaded { 192.0.2.10 . 4000 . 20000, 198.51.100.7 . 5004 . 20002 }\n"
    )
    assert remove_commands("cw", OFFLOAD) == (
        "delete element ip cw offloaded { 192.0.2.10 . 4000 . 20000, 198.51.100.7 . 5004 . 20002 "
        "}\n"
        "delete element ip cw to_addr { 20000, 20002 }\n"
        "delete element ip cw to_port { 20000, 20002 }\n"
        "delete element ip cw from_port { 20000, 20002 }\n"
    )


def test_the_table_matches_only_our_address_and_port_range_and_is_owned() -> None:
    table = table_definition("cw", "203.0.113.5", 20000, 30000)
    lines = [line.strip() for line in table.splitlines()]
    assert lines[:2] == ["table ip cw {", "flags owner"]
    assert "map to_addr { type inet_service : ipv4_addr; size 65535; counter; }" in lines
    assert (
        "ip daddr 203.0.113.5 udp dport 20000-30000 ip saddr . udp sport . udp dport @offloaded "
        "goto relay" in lines
    )
    # The maps are keyed by the original destination port: it is rewritten last.
    assert (
        "ip daddr set udp dport map @to_addr udp sport set udp dport map @from_port "
        "udp dport set udp dport map @to_port" in lines
    )
    assert "iif lo ip saddr set 203.0.113.5" in lines
    assert (
        "udp sport 20000-30000 ip daddr . udp dport . udp sport @offloaded ip saddr set "
        "203.0.113.5" in lines
    )
    hooks = [line for line in lines if line.startswith("type filter hook")]
    assert hooks == [
        "type filter hook prerouting priority raw; policy accept;",
        "type filter hook forward priority raw; policy accept;",
        "type filter hook output priority raw; policy accept;",
    ]
