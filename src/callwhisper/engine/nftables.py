"""The kernel forwarder of the media engine: libnftables through ctypes, in one worker thread.

:class:`NftablesForwarder` creates the engine's table (the text of
:mod:`callwhisper.engine.offload`) with ``flags owner``: the table belongs
to the netlink socket of our libnftables context, no other process can
change it, and the kernel deletes it when that socket closes, at
:meth:`NftablesForwarder.close` or when the process dies. Every command
runs in one worker thread on that one context, so the event loop never
waits for the kernel; each bridge costs two commands (its elements added,
then deleted), each a fraction of a millisecond even with thousands of
calls in the table, where running the ``nft`` program would cost a process
each. What the kernel forwarded of a bridge is read just before its elements
go, from the element counters of one map, over nf_tables netlink
(:class:`SetElements`): libnftables would first read every element of the
map, which takes tens of milliseconds with thousands of calls.

Debian's ``python3-nftables`` wraps the same library, but a virtualenv does
not see it; the seven functions used here are bound directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import errno
import ipaddress
import itertools
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final, TypeVar

from callwhisper.engine.offload import (
    Done,
    Forwarded,
    Offload,
    Removed,
    add_commands,
    address_problem,
    remove_commands,
    table_definition,
)

__all__ = [
    "KernelForwardingUnavailable",
    "Libnftables",
    "NftablesError",
    "NftablesForwarder",
    "SetElements",
    "element_packets",
]

log = logging.getLogger(__name__)

LIBRARY: Final = "libnftables.so.1"
CAP_NET_ADMIN: Final = 12
_tables = itertools.count(1)


class KernelForwardingUnavailable(Exception):
    """This host or process cannot forward RTP in the kernel; the message says what is missing."""


class NftablesError(Exception):
    """libnftables refused a command; the message is its error output."""


class Libnftables:
    """One libnftables context (``nft_ctx``) and its netlink socket; not thread-safe."""

    def __init__(self) -> None:
        """Load the library and create the context; raise :class:`KernelForwardingUnavailable`."""
        try:
            lib = ctypes.CDLL(LIBRARY)
        except OSError as exc:
            raise KernelForwardingUnavailable(
                f"{LIBRARY} cannot be loaded (Debian package libnftables1): {exc}"
            ) from exc
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_free.restype = None
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_int
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        context = lib.nft_ctx_new(0)  # NFT_CTX_DEFAULT
        if not context:
            raise KernelForwardingUnavailable("libnftables could not create a context")
        # Buffered, the output and errors of each command are ours to read, not stdout's.
        if lib.nft_ctx_buffer_output(context) or lib.nft_ctx_buffer_error(context):
            lib.nft_ctx_free(context)
            raise KernelForwardingUnavailable("libnftables could not buffer its output")
        self._lib = lib
        self._context: int | None = context

    def run(self, commands: str) -> str:
        """Run ``commands`` (nft syntax, one transaction) and return their output.

        Raises :class:`NftablesError` with libnftables' error output if the
        kernel or the parser refused them; nothing of the batch is applied then.
        """
        if self._context is None:
            raise NftablesError("the libnftables context is closed")
        lib = self._lib
        failed = lib.nft_run_cmd_from_buffer(self._context, commands.encode())
        output: bytes | None = lib.nft_ctx_get_output_buffer(self._context)
        if failed:
            error: bytes | None = lib.nft_ctx_get_error_buffer(self._context)
            raise NftablesError((error or b"").decode(errors="replace").strip())
        return (output or b"").decode(errors="replace")

    def close(self) -> None:
        """Free the context; its netlink socket closes and the tables it owns go with it."""
        if self._context is not None:
            self._lib.nft_ctx_free(self._context)
            self._context = None


Result = TypeVar("Result")


class NftablesForwarder:
    """The engine's nftables table and the worker thread that changes it.

    Created by :meth:`open`; :meth:`install` and :meth:`remove` queue one
    bridge's elements and return at once, :meth:`close` deletes the table.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        executor: concurrent.futures.ThreadPoolExecutor,
        nft: Libnftables,
        table: str,
    ) -> None:
        """Wrap an opened table; use :meth:`open`."""
        self._loop = loop
        self._executor = executor
        self._nft = nft
        self._elements: SetElements | None = None
        self.table = table

    @classmethod
    async def open(cls, address: str, port_min: int, port_max: int) -> NftablesForwarder:
        """Check this host and create the table for RTP to ``address``:``port_min``-``port_max``.

        Raises :class:`KernelForwardingUnavailable` naming what is missing:
        an IPv4 media address, libnftables, CAP_NET_ADMIN, forwarding on the
        media address's interface, or the kernel's consent.
        """
        problem = address_problem(address)
        if problem is not None:
            raise KernelForwardingUnavailable(problem)
        if not _has_capability(CAP_NET_ADMIN):
            raise KernelForwardingUnavailable(
                "the process lacks CAP_NET_ADMIN, which nftables needs (run as root, or grant "
                "it, e.g. AmbientCapabilities=CAP_NET_ADMIN under systemd)"
            )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _check_forwarding, address)
        table = f"callwhisper_{os.getpid()}_{next(_tables)}"
        executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nftables")
        try:
            nft = await loop.run_in_executor(
                executor, _create_table, table, table_definition(table, address, port_min, port_max)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        log.info("media kernel forwarding on: nftables table ip %s", table)
        return cls(loop, executor, nft, table)

    def install(self, offload: Offload, done: Done) -> None:
        """Hand the bridge to the kernel; ``done`` says when the kernel forwards it."""
        commands = add_commands(self.table, offload)
        self._submit(lambda: self._nft.run(commands), lambda _, error: done(error))

    def remove(self, offload: Offload, done: Removed) -> None:
        """Take the bridge back from the kernel; ``done`` says when its packets reach us."""
        self._submit(lambda: self._remove(offload), done)

    def _remove(self, offload: Offload) -> Forwarded | None:
        ports = (offload.caller_port, offload.buyer_port)
        try:
            if self._elements is None:
                self._elements = SetElements()
            counted = self._elements.packets(self.table, "to_addr", ports)
        except OSError as exc:
            log.debug("the kernel's counts of ports %d and %d are lost: %s", *ports, exc)
            counted = {}
            if self._elements is not None:  # a fresh socket next time, no reply left over
                self._elements.close()
                self._elements = None
        self._nft.run(remove_commands(self.table, offload))
        if set(counted) != set(ports):
            return None
        return Forwarded(counted[offload.caller_port], counted[offload.buyer_port])

    def _submit(
        self, work: Callable[[], Result], done: Callable[[Result | None, str | None], None]
    ) -> None:
        future = self._executor.submit(work)
        future.add_done_callback(lambda finished: self._report(finished, done))

    def _report(
        self,
        finished: concurrent.futures.Future[Result],
        done: Callable[[Result | None, str | None], None],
    ) -> None:
        error = finished.exception()
        result = None if error is not None else finished.result()
        message = None if error is None else str(error) or type(error).__name__
        # A command finishing while the loop closes has nobody left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(done, result, message)

    async def close(self) -> None:
        """Run the commands queued, then delete the table with the context."""
        await self._loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)

    def _close(self) -> None:
        if self._elements is not None:
            self._elements.close()
        self._nft.close()


def _create_table(table: str, definition: str) -> Libnftables:
    nft = Libnftables()
    try:
        nft.run(definition)
    except NftablesError as exc:
        nft.close()
        hint = " (the process needs CAP_NET_ADMIN)" if "not permitted" in str(exc) else ""
        raise KernelForwardingUnavailable(
            f"nftables refused the table ip {table}: {exc}{hint}"
        ) from exc
    return nft


def _has_capability(capability: int) -> bool:
    """Whether the capability is in this thread's effective set (Linux ``/proc``)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> capability & 1)
    return False


def _check_forwarding(address: str) -> None:
    """Raise unless the kernel forwards what arrives at ``address`` (loopback needs nothing)."""
    if ipaddress.IPv4Address(address).is_loopback:
        return
    interface = _interface_of(address)
    if interface is None:
        raise KernelForwardingUnavailable(f"no interface of this host has the address {address}")
    if _sysctl(f"{interface}/forwarding") != "1":
        raise KernelForwardingUnavailable(
            f"net.ipv4.conf.{interface}.forwarding is not 1: the kernel would drop the RTP it "
            f"forwards (sysctl -w net.ipv4.conf.{interface}.forwarding=1)"
        )
    if "1" in (_sysctl("all/send_redirects"), _sysctl(f"{interface}/send_redirects")):
        log.warning(
            "media kernel forwarding: ICMP redirects are on, so peers on the subnet of %s may be "
            "told to bypass us; set net.ipv4.conf.all.send_redirects=0 and "
            "net.ipv4.conf.%s.send_redirects=0",
            address,
            interface,
        )


def _sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys/net/ipv4/conf", name).read_text().strip()
    except OSError:
        return None


_NLMSG_ERROR: Final = 2
_NLMSG_DONE: Final = 3
_RTM_NEWADDR: Final = 20
_RTM_GETADDR: Final = 22
_NLM_F_REQUEST_DUMP: Final = 0x1 | 0x300
_IFA_LOCAL: Final = 2
_NLMSG_HEADER: Final = struct.Struct("=IHHII")
_IFADDRMSG: Final = struct.Struct("=BBBBI")
_RTATTR: Final = struct.Struct("=HH")


def _interface_of(address: str) -> str | None:
    """The interface that has the IPv4 ``address``, from the kernel's list (rtnetlink)."""
    wanted = socket.inet_aton(address)
    request = _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
    header = _NLMSG_HEADER.pack(
        _NLMSG_HEADER.size + len(request), _RTM_GETADDR, _NLM_F_REQUEST_DUMP, 1, 0
    )
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.send(header + request)
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _NLMSG_HEADER.size <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind in (_NLMSG_DONE, _NLMSG_ERROR) or length < _NLMSG_HEADER.size:
                    return None
                if kind == _RTM_NEWADDR:
                    message = data[offset + _NLMSG_HEADER.size : offset + length]
                    index = _IFADDRMSG.unpack_from(message)[4]
                    if dict(_attributes(message[_IFADDRMSG.size :])).get(_IFA_LOCAL) == wanted:
                        return socket.if_indextoname(index)
                offset += (length + 3) & ~3


_NETLINK_NETFILTER: Final = 12
_NFT_MSG_NEWSETELEM: Final = (10 << 8) | 12  # NFNL_SUBSYS_NFTABLES, nf_tables.h
_NFT_MSG_GETSETELEM: Final = (10 << 8) | 13
_NLM_F_REQUEST_ACK: Final = 0x1 | 0x4
_NLA_F_NESTED: Final = 0x8000
_NLA_TYPE_MASK: Final = 0x3FFF
_NFGENMSG: Final = struct.Struct("=BBH")
_SET_ELEM_LIST_TABLE, _SET_ELEM_LIST_SET, _SET_ELEM_LIST_ELEMENTS = 1, 2, 3
_LIST_ELEM: Final = 1
_SET_ELEM_KEY, _SET_ELEM_EXPR = 1, 7
_DATA_VALUE: Final = 1
_EXPR_NAME, _EXPR_DATA = 1, 2
_COUNTER_PACKETS: Final = 2
_U64: Final = struct.Struct("!Q")
_PORT: Final = struct.Struct("!H")


class SetElements:
    """Reads element counters of an ``inet_service`` map over nf_tables netlink, one at a time.

    A lookup by key (``NFT_MSG_GETSETELEM``) costs the same with two
    elements in the map as with twenty thousand.
    """

    def __init__(self) -> None:
        """Open the netlink socket; raise :class:`OSError` where that is refused."""
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
        self._sock.settimeout(1.0)  # the worker must not hang on a lost reply
        self._sock.bind((0, 0))
        self._seq = 0

    def packets(self, table: str, name: str, ports: Iterable[int]) -> dict[int, int]:
        """The packet counters of the elements of ``ports`` that exist, by port.

        Raises :class:`OSError` for an error other than a missing element.
        """
        elements = b"".join(
            _nla(_LIST_ELEM | _NLA_F_NESTED, _nla(_SET_ELEM_KEY | _NLA_F_NESTED,
                                                  _nla(_DATA_VALUE, _PORT.pack(port))))
            for port in ports
        )  # fmt: skip
        payload = (
            _NFGENMSG.pack(socket.AF_INET, 0, 0)
            + _nla(_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
            + _nla(_SET_ELEM_LIST_SET, name.encode() + b"\0")
            + _nla(_SET_ELEM_LIST_ELEMENTS | _NLA_F_NESTED, elements)
        )
        self._seq += 1
        header = _NLMSG_HEADER.size + len(payload)
        self._sock.send(
            _NLMSG_HEADER.pack(header, _NFT_MSG_GETSETELEM, _NLM_F_REQUEST_ACK, self._seq, 0)
            + payload
        )
        # One NEWSETELEM message per element found, then the acknowledgement (or an error).
        counted: dict[int, int] = {}
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _NLMSG_HEADER.size <= len(data):
                length, kind, _, seq, _ = _NLMSG_HEADER.unpack_from(data, offset)
                if length < _NLMSG_HEADER.size:
                    raise OSError(errno.EPROTO, "truncated netlink message")
                message = data[offset + _NLMSG_HEADER.size : offset + length]
                offset += (length + 3) & ~3
                if seq != self._seq:
                    continue
                if kind == _NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", message)
                    if code in (0, -errno.ENOENT):
                        return counted
                    raise OSError(-code, os.strerror(-code))
                if kind == _NFT_MSG_NEWSETELEM:
                    counted.update(element_packets(message[_NFGENMSG.size :]))

    def close(self) -> None:
        """Close the netlink socket."""
        self._sock.close()


def _nla(kind: int, payload: bytes) -> bytes:
    return _RTATTR.pack(_RTATTR.size + len(payload), kind) + payload + bytes(-len(payload) % 4)


def _attributes(data: bytes) -> Iterable[tuple[int, bytes]]:
    """The (type, payload) of each whole netlink attribute in ``data``."""
    offset = 0
    while offset + _RTATTR.size <= len(data):
        size, kind = _RTATTR.unpack_from(data, offset)
        if size < _RTATTR.size or offset + size > len(data):
            return
        yield kind & _NLA_TYPE_MASK, data[offset + _RTATTR.size : offset + size]
        offset += (size + 3) & ~3


def element_packets(attributes: bytes) -> dict[int, int]:
    """The packet counter of each element of a NEWSETELEM message, by port.

    ``attributes``: the message after its netlink and nfgenmsg headers;
    elements without a key or a counter are left out.
    """
    counted: dict[int, int] = {}
    for kind, elements in _attributes(attributes):
        if kind != _SET_ELEM_LIST_ELEMENTS:
            continue
        for _, element in _attributes(elements):
            fields = dict(_attributes(element))
            key = dict(_attributes(fields.get(_SET_ELEM_KEY, b""))).get(_DATA_VALUE, b"")
            # The map's one expression, its counter, is sent alone (nft_set_elem_expr_dump).
            packets = _counter_packets(fields.get(_SET_ELEM_EXPR, b""))
            if len(key) == _PORT.size and packets is not None:
                counted[_PORT.unpack(key)[0]] = packets
    return counted


def _counter_packets(expression: bytes) -> int | None:
    fields = dict(_attributes(expression))
    if fields.get(_EXPR_NAME, b"").rstrip(b"\0") != b"counter":
        return None
    packets = dict(_attributes(fields.get(_EXPR_DATA, b""))).get(_COUNTER_PACKETS, b"")
    return _U64.unpack(packets)[0] if len(packets) == _U64.size else None
