"""The nf_tables netlink replies the kernel forwarder reads its counts from."""

from __future__ import annotations

from callwhisper.engine.nftables import element_packets

# NFT_MSG_NEWSETELEM replies of Linux 6.18 to a GETSETELEM of ports 20000 and 20002 in
# ``map to_addr { type inet_service : ipv4_addr; counter; }`` of table T9, after 3 and 1
# packets (captured after the netlink and nfgenmsg headers).
PORT_20000 = bytes.fromhex(
    "07000100543900000c000200746f5f61646472004c000300480001000c000100060001004e2000000c0002"
    "00080001000a0000012c0007000c000100636f756e746572001c0002000c00010000000000000000720c00"
    "02000000000000000003"
)
PORT_20002 = bytes.fromhex(
    "07000100543900000c000200746f5f61646472004c000300480001000c000100060001004e2200000c0002"
    "00080001000a0000022c0007000c000100636f756e746572001c0002000c00010000000000000000300c00"
    "02000000000000000001"
)


def test_the_packet_counter_of_each_element_is_read_by_port() -> None:
    assert element_packets(PORT_20000) == {20000: 3}
    assert element_packets(PORT_20002) == {20002: 1}


def test_an_element_without_a_counter_is_left_out() -> None:
    without = PORT_20000.replace(b"counter\x00", b"limit\x00\x00\x00")
    assert element_packets(without) == {}


def test_a_truncated_reply_yields_what_it_holds_and_does_not_raise() -> None:
    for cut in range(len(PORT_20000)):
        assert element_packets(PORT_20000[:cut]) in ({}, {20000: 3})
