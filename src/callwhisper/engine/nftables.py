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
each.

Debian's ``python3-nftables`` wraps the same library, but a virtualenv does
not see it; the six functions used here are bound directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ipaddress
import itertools
import logging
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Final

from callwhisper.engine.offload import (
    Offload,
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


Done = Callable[[str | None], None]
"""Called on the loop when a command finished: None, or why it failed."""


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
        self._submit(add_commands(self.table, offload), done)

    def remove(self, offload: Offload, done: Done) -> None:
        """Take the bridge back from the kernel; ``done`` says when its packets reach us."""
        self._submit(remove_commands(self.table, offload), done)

    def _submit(self, commands: str, done: Done) -> None:
        future = self._executor.submit(self._nft.run, commands)
        future.add_done_callback(lambda finished: self._report(finished, done))

    def _report(self, finished: concurrent.futures.Future[str], done: Done) -> None:
        error = finished.exception()
        message = None if error is None else str(error) or type(error).__name__
        # A command finishing while the loop closes has nobody left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(done, message)

    async def close(self) -> None:
        """Run the commands queued, then delete the table with the context."""
        await self._loop.run_in_executor(self._executor, self._nft.close)
        self._executor.shutdown(wait=False)


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
                    index = _IFADDRMSG.unpack_from(data, offset + _NLMSG_HEADER.size)[4]
                    attribute = offset + _NLMSG_HEADER.size + _IFADDRMSG.size
                    while attribute + _RTATTR.size <= offset + length:
                        size, kind = _RTATTR.unpack_from(data, attribute)
                        if size < _RTATTR.size:
                            break
                        value = data[attribute + _RTATTR.size : attribute + size]
                        if kind == _IFA_LOCAL and value == wanted:
                            return socket.if_indextoname(index)
                        attribute += (size + 3) & ~3
                offset += (length + 3) & ~3
