"""Free loopback ports for the real peers, and what this process may do on the network.

Ports are found by binding to port 0 and releasing the socket; the peer
then binds the same number. Another process can in theory take the port in
between, which on a test machine is rare enough to accept.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"
"""Every peer listens on loopback only."""

Address = tuple[str, int]


def has_cap_net_admin() -> bool:
    """Whether this process holds CAP_NET_ADMIN (Linux): nftables, forced socket buffers."""
    status = Path("/proc/self/status").read_text()
    effective = next(line for line in status.splitlines() if line.startswith("CapEff:"))
    return bool(int(effective.split()[1], 16) >> 12 & 1)


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def free_port(*, tcp_too: bool = False) -> int:
    """A UDP port free on loopback (and free for TCP as well when ``tcp_too``)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            port: int = probe.getsockname()[1]
        if not tcp_too or _bindable(port, socket.SOCK_STREAM):
            return port
    raise RuntimeError("no free loopback port found")


def free_tcp_port() -> int:
    """A TCP port free on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def free_port_block(count: int, *, tcp_too: bool = False) -> int:
    """The first, even, port of ``count`` consecutive UDP ports free on loopback.

    RTP wants an even port with RTCP on the next one; SIPp's media socket
    also uses the ports just above ``-mp``. With ``tcp_too`` the ports are
    free for TCP as well: a SIP stack listening on both (baresip's
    ``sip_listen``) fails to start on a port that some TCP connection holds.
    """
    kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM) if tcp_too else (socket.SOCK_DGRAM,)
    for _ in range(200):
        first = free_port()
        first -= first % 2
        if first + count < 65536 and all(
            _bindable(port, kind) for port in range(first, first + count) for kind in kinds
        ):
            return first
    raise RuntimeError(f"no {count} consecutive free loopback UDP ports found")


def udp_port_in_use(port: int) -> bool:
    """Whether some process has bound this loopback UDP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
        return False


def tcp_port_in_use(port: int) -> bool:
    """Whether some process listens on (or has bound) this loopback TCP port."""
    return not _bindable(port, socket.SOCK_STREAM)


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02
) -> None:
    """Poll ``condition()`` until it is true; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.1f} s")
        time.sleep(interval)
