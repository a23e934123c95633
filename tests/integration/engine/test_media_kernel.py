"""Kernel forwarding of bridged RTP with the real kernel: nftables rules of the engine's own table.

Needs libnftables (Debian package libnftables1, ``make test`` installs it)
and CAP_NET_ADMIN (the tests run as root on dev and CI machines). Every rule
lives in the table the engine creates and owns: the kernel deletes it with
the engine, and nothing else of the machine's ruleset is touched.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator

import pytest

from callwhisper.engine.media import Bridge, MediaConfig, MediaEngine, MediaLeg
from callwhisper.engine.playback import PCMU
from callwhisper.media.rtp import RtpPacket
from tests.integration.peers.net import has_cap_net_admin

pytestmark = pytest.mark.integration

Address = tuple[str, int]
HOST = "127.0.0.1"
PHONE_HOSTS = ("127.0.0.2", "127.0.0.3")
"""The phones' own addresses: a rule that sent a packet back to the host it came from would
deliver nothing, where with one address for both it would go unnoticed."""
PORTS = (34000, 34999)


def _missing() -> str | None:
    """What this machine lacks for kernel forwarding, None if nothing."""
    if not sys.platform.startswith("linux"):
        return "nftables is Linux only"
    try:
        ctypes.CDLL("libnftables.so.1")
    except OSError:
        return "libnftables is not installed (Debian package libnftables1; `make test` does)"
    if not has_cap_net_admin():
        return "needs CAP_NET_ADMIN (run as root)"
    return None


MISSING = _missing()
needs_kernel = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    media = MediaEngine(MediaConfig(HOST, *PORTS, kernel_forwarding="on"))
    await media.start()
    yield media
    await media.stop()


@pytest.fixture
def peers() -> Iterator[tuple[socket.socket, socket.socket]]:
    """The caller's and the buyer's phones."""
    pair = []
    for host in PHONE_HOSTS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        pair.append(sock)
    yield pair[0], pair[1]
    for sock in pair:
        sock.close()


def address(sock: socket.socket) -> Address:
    host, port = sock.getsockname()
    return (host, port)


def audio(ssrc: int, seq: int) -> bytes:
    return RtpPacket(0, seq, 160 * seq, ssrc, bytes([seq % 256]) * 160).serialize()


def drain(*socks: socket.socket) -> None:
    for sock in socks:
        while True:
            try:
                sock.recv(2048)
            except BlockingIOError:
                break


async def receive(sock: socket.socket, count: int) -> list[tuple[bytes, Address]]:
    """The next ``count`` datagrams at ``sock`` and where they came from, within 3 s."""
    loop = asyncio.get_running_loop()
    received: list[tuple[bytes, Address]] = []
    async with asyncio.timeout(3):
        while len(received) < count:
            data, (host, port) = await loop.sock_recvfrom(sock, 2048)
            received.append((data, (host, port)))
    return received


async def forwarded(
    engine: MediaEngine, phone_a: socket.socket, phone_b: socket.socket
) -> tuple[MediaLeg, MediaLeg, Bridge, int]:
    """A bridged call whose phones talk until the kernel has taken it over; what each sent."""
    caller = engine.open_leg(PCMU, remote=address(phone_a))
    buyer = engine.open_leg(PCMU, remote=address(phone_b))
    bridge = engine.bridge(caller, buyer)
    seq = 0
    async with asyncio.timeout(5):
        while not bridge.kernel_forwarded:
            seq += 1
            phone_a.sendto(audio(0xA, seq), caller.local_address)
            phone_b.sendto(audio(0xB, seq), buyer.local_address)
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)  # what user space relayed before has arrived
    drain(phone_a, phone_b)
    return caller, buyer, bridge, seq


@needs_kernel
async def test_the_kernel_forwards_a_bridged_call_byte_for_byte_from_our_ports(
    engine: MediaEngine, peers: tuple[socket.socket, socket.socket]
) -> None:
    phone_a, phone_b = peers
    caller, buyer, bridge, sent = await forwarded(engine, phone_a, phone_b)
    before = (caller.stats(), buyer.stats())
    from_a = [audio(0xA, 1000 + n) for n in range(20)]
    from_b = [audio(0xB, 3000 + n) for n in range(20)]
    for a, b in zip(from_a, from_b, strict=True):
        phone_a.sendto(a, caller.local_address)
        phone_b.sendto(b, buyer.local_address)
    assert await receive(phone_b, 20) == [(data, buyer.local_address) for data in from_a]
    assert await receive(phone_a, 20) == [(data, caller.local_address) for data in from_b]
    assert (caller.stats(), buyer.stats()) == before  # user space saw none of it
    engine.unbridge(bridge)
    async with asyncio.timeout(3):
        # Counted in the engine's worker thread as it takes the bridge back.
        while caller.counters.kernel_forwarded == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    for leg in (caller, buyer):
        assert leg.counters.packets_in + leg.counters.kernel_forwarded == sent + 20


@needs_kernel
async def test_after_unbridge_the_packets_reach_the_engine_again(
    engine: MediaEngine, peers: tuple[socket.socket, socket.socket]
) -> None:
    phone_a, phone_b = peers
    caller, _, bridge, _ = await forwarded(engine, phone_a, phone_b)
    engine.unbridge(bridge)
    assert not bridge.kernel_forwarded
    packets_in = caller.counters.packets_in
    seq = 5000
    async with asyncio.timeout(3):
        while caller.counters.packets_in == packets_in:  # the kernel lets go within milliseconds
            seq += 1
            phone_a.sendto(audio(0xA, seq), caller.local_address)
            await asyncio.sleep(0.01)
    drain(phone_b)
    phone_a.sendto(audio(0xA, seq + 1), caller.local_address)
    async with asyncio.timeout(3):
        while caller.counters.packets_in == packets_in + 1:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    with pytest.raises(BlockingIOError):
        phone_b.recv(2048)  # no longer bridged: relayed by nobody


NFT = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")


def _nft(*args: str) -> str:
    """Read the ruleset with the nft program (never to change it)."""
    assert NFT is not None
    return subprocess.run([NFT, *args], check=True, capture_output=True, text=True).stdout


def _our_tables() -> list[str]:
    prefix = f"table ip callwhisper_{os.getpid()}_"
    return [
        line.split()[-1] for line in _nft("list", "tables").splitlines() if line.startswith(prefix)
    ]


@needs_kernel
@pytest.mark.skipif(NFT is None, reason="nft is not installed (Debian package nftables)")
async def test_hang_up_empties_the_table_and_the_table_goes_with_the_engine(
    peers: tuple[socket.socket, socket.socket],
) -> None:
    media = MediaEngine(MediaConfig(HOST, *PORTS, kernel_forwarding="on"))
    await media.start()
    try:
        (table,) = _our_tables()
        phone_a, phone_b = peers
        caller, buyer, _, _ = await forwarded(media, phone_a, phone_b)
        (host_a, port_a), (host_b, port_b) = address(phone_a), address(phone_b)
        listed = _nft("list", "set", "ip", table, "offloaded")
        assert f"{host_a} . {port_a} . {caller.local_address[1]}" in listed
        assert f"{host_b} . {port_b} . {buyer.local_address[1]}" in listed
        media.close_leg(caller)
        media.close_leg(buyer)
        async with asyncio.timeout(3):
            # The removal runs in the engine's worker thread: nothing to await but the kernel.
            # Every set and map of the table is emptied, not only the one that matches packets.
            while "elements" in _nft("list", "table", "ip", table):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        await media.stop()
    assert _our_tables() == []


FALLBACK = textwrap.dedent(
    """
    import asyncio, logging, socket, sys
    from callwhisper.engine.media import MediaConfig, MediaEngine
    from callwhisper.engine.playback import PCMU
    from callwhisper.errors import ConfigError
    from callwhisper.media.rtp import RtpPacket

    async def main(mode):
        engine = MediaEngine(MediaConfig("127.0.0.1", 35000, 35099, kernel_forwarding=mode))
        try:
            await engine.start()
        except ConfigError as exc:
            print("refused:", exc)
            return
        phones = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        for phone in phones:
            phone.bind(("127.0.0.1", 0))
        legs = [engine.open_leg(PCMU, remote=phone.getsockname()) for phone in phones]
        bridge = engine.bridge(*legs)
        for seq in range(20):
            for phone, leg in zip(phones, legs):
                phone.sendto(RtpPacket(0, seq, 160 * seq, 7, bytes(160)).serialize(),
                             leg.local_address)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        print("relayed", [leg.counters.packets_out for leg in legs], bridge.kernel_forwarded)
        await engine.stop()

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    asyncio.run(main(sys.argv[1]))
    """
)
WITHOUT_CAP_NET_ADMIN = {
    "capability dropped": ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"],
    "user namespace": ["unshare", "--user", "--map-root-user", "--"],
}
REASONS = {
    "capability dropped": "the process lacks CAP_NET_ADMIN, which nftables needs",
    "user namespace": "Operation not permitted (the process needs CAP_NET_ADMIN)",
}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run a process without CAP_NET_ADMIN")
@pytest.mark.parametrize("how", list(WITHOUT_CAP_NET_ADMIN))
@pytest.mark.parametrize("mode", ["auto", "on"])
def test_without_cap_net_admin_auto_relays_in_user_space_and_on_refuses(
    how: str, mode: str
) -> None:
    wrapper = WITHOUT_CAP_NET_ADMIN[how]
    if shutil.which(wrapper[0]) is None:
        pytest.skip(f"{wrapper[0]} is not installed (Debian package util-linux)")
    result = subprocess.run(
        [*wrapper, sys.executable, "-c", FALLBACK, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    if mode == "on":
        assert result.stdout.startswith("refused: media kernel forwarding is on but unavailable: ")
        assert REASONS[how] in result.stdout
    else:
        assert result.stdout == "relayed [20, 20] False\n"
        warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
        assert len(warnings) == 1
        assert warnings[0].startswith(
            "WARNING media kernel forwarding unavailable, relaying in user space: "
        )
        assert REASONS[how] in warnings[0]


BETWEEN_HOSTS = textwrap.dedent(
    """
    import asyncio, ctypes, os, socket, subprocess
    from pathlib import Path
    from callwhisper.engine.media import MediaConfig, MediaEngine
    from callwhisper.engine.playback import PCMU
    from callwhisper.errors import ConfigError
    from callwhisper.media.rtp import RtpPacket

    US, PHONES = "10.77.0.1", "10.77.0.2"
    libc = ctypes.CDLL(None, use_errno=True)

    def setns(fd):
        if libc.setns(fd, 0x40000000):  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), "setns")

    def ip(*args):
        subprocess.run(["ip", *args], check=True, pass_fds=(phones_ns,))

    def conf(name, value):
        Path("/proc/sys/net/ipv4/conf", name).write_text(value)

    # This process has a network namespace of its own (unshare --net): ours. The phones get
    # another one, behind a veth pair: their packets are forwarded, as from another host.
    ours = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    if libc.unshare(0x40000000):
        raise OSError(ctypes.get_errno(), "unshare")
    phones_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    setns(ours)
    there = f"/proc/self/fd/{phones_ns}"
    ip("link", "set", "lo", "up")
    ip("link", "add", "cw0", "type", "veth", "peer", "name", "cw1", "netns", there)
    ip("addr", "add", US + "/24", "dev", "cw0")
    ip("link", "set", "cw0", "up")
    conf("all/send_redirects", "0")
    conf("cw0/send_redirects", "0")
    setns(phones_ns)  # the programs run from here on run there too
    ip("addr", "add", PHONES + "/24", "dev", "cw1")
    ip("link", "set", "cw1", "up")
    phones = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for phone in phones:
        phone.bind((PHONES, 0))
        phone.setblocking(False)
    setns(ours)

    async def main():
        config = MediaConfig(US, 36000, 36999, kernel_forwarding="on")
        conf("cw0/forwarding", "0")
        try:
            await MediaEngine(config).start()
        except ConfigError as exc:
            print("refused:", exc)
        conf("cw0/forwarding", "1")
        engine = MediaEngine(config)
        await engine.start()
        loop = asyncio.get_running_loop()
        legs = [engine.open_leg(PCMU, remote=phone.getsockname()) for phone in phones]
        bridge = engine.bridge(*legs)
        seq = 0
        async with asyncio.timeout(5):
            while not bridge.kernel_forwarded:
                seq += 1
                for phone, leg in zip(phones, legs):
                    phone.sendto(RtpPacket(0, seq, 0, 1, bytes(160)).serialize(),
                                 leg.local_address)
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        for phone in phones:
            while True:
                try:
                    phone.recv(2048)
                except BlockingIOError:
                    break
        counted = [leg.stats() for leg in legs]
        sent = [[RtpPacket(0, 100 + n, 0, 7 + i, bytes([n]) * 160).serialize()
                 for n in range(10)] for i in range(2)]
        for n in range(10):
            for i in range(2):
                phones[i].sendto(sent[i][n], legs[i].local_address)
        async with asyncio.timeout(3):
            for i in range(2):
                got = [await loop.sock_recvfrom(phones[1 - i], 2048) for _ in range(10)]
                print("byte for byte", [data for data, _ in got] == sent[i],
                      "from", {source for _, source in got} == {legs[1 - i].local_address})
        print("counters still", [leg.stats() for leg in legs] == counted)
        await engine.stop()

    asyncio.run(main())
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to make network namespaces")
@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_between_hosts_the_kernel_forwards_from_our_address_once_the_interface_forwards() -> None:
    """The path of a real server, in throwaway network namespaces: the host's stays untouched."""
    for program in ("unshare", "ip"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (Debian packages util-linux, iproute2)")
    result = subprocess.run(
        ["unshare", "--net", "--", sys.executable, "-c", BETWEEN_HOSTS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "refused: media kernel forwarding is on but unavailable: "
        "net.ipv4.conf.cw0.forwarding is not 1: the kernel would drop the RTP it forwards "
        "(sysctl -w net.ipv4.conf.cw0.forwarding=1)",
        "byte for byte True from True",
        "byte for byte True from True",
        "counters still True",
    ]
