"""A tiny pure reader of classic pcap files: Ethernet / IPv4 / UDP payloads only.

Enough to pull RTP out of the captures SIPp ships; anything else in a
capture is skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

SIPP_PCAP_DIR = Path("/usr/share/sip-tester")
"""Where Debian's ``sip-tester`` package installs SIPp's sample captures."""

_GLOBAL_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
_MAGIC_LE = 0xA1B2C3D4
_LINKTYPE_ETHERNET = 1
_ETHERTYPE_IPV4 = 0x0800
_IPPROTO_UDP = 17


@dataclass(frozen=True)
class UdpDatagram:
    """One UDP payload with its capture time and endpoints."""

    time: float
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


def _address(raw: bytes) -> str:
    return ".".join(str(octet) for octet in raw)


def read_udp(path: Path) -> list[UdpDatagram]:
    """Every UDP-over-IPv4-over-Ethernet datagram of a little-endian microsecond pcap."""
    data = path.read_bytes()
    magic, _major, _minor, _zone, _sigfigs, _snaplen, linktype = _GLOBAL_HEADER.unpack_from(data)
    if magic != _MAGIC_LE or linktype != _LINKTYPE_ETHERNET:
        raise ValueError(f"{path.name}: not a little-endian Ethernet pcap")
    datagrams = []
    offset = _GLOBAL_HEADER.size
    while offset < len(data):
        seconds, micros, captured, _original = _RECORD_HEADER.unpack_from(data, offset)
        offset += _RECORD_HEADER.size
        frame = data[offset : offset + captured]
        offset += captured
        if struct.unpack_from("!H", frame, 12)[0] != _ETHERTYPE_IPV4:
            continue
        ip = frame[14:]
        header_length = (ip[0] & 0x0F) * 4
        total_length = struct.unpack_from("!H", ip, 2)[0]
        if ip[9] != _IPPROTO_UDP:
            continue
        udp = ip[header_length:total_length]
        source_port, destination_port, udp_length = struct.unpack_from("!HHH", udp)
        datagrams.append(
            UdpDatagram(
                seconds + micros / 1e6,
                (_address(ip[12:16]), source_port),
                (_address(ip[16:20]), destination_port),
                udp[8:udp_length],
            )
        )
    return datagrams
