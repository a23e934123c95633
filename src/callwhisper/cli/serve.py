"""``callwhisper serve``: run the SIP engine on real calls until stopped."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import cast

import click

from callwhisper.cli.common import configure_logging, read_configuration
from callwhisper.engine import CallwhisperServer, MediaConfig, ServerConfig, TransportConfig
from callwhisper.engine.offload import KERNEL_FORWARDING_MODES, KernelForwarding
from callwhisper.engine.transport import client_tls_context, server_tls_context
from callwhisper.errors import ConfigError

_PEM = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("serve")
@click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML configuration applied to the store at start-up (else the store's own).",
)
@click.option("--database-url", help="Store URL (default: CALLWHISPER_DATABASE_URL, else SQLite).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var"),
    show_default=True,
    help="Where the SQLite store, recordings and the speech cache live.",
)
@click.option("--sip-host", default="127.0.0.1", show_default=True, help="SIP listen address.")
@click.option("--sip-port", type=int, default=5060, show_default=True, help="SIP port (UDP+TCP).")
@click.option(
    "--sip-tls-port", type=int, default=5061, show_default=True, help="SIP over TLS port."
)
@click.option(
    "--sip-tls-certificate",
    type=_PEM,
    help="PEM certificate (chain) for SIP over TLS; set, the server listens on --sip-tls-port.",
)
@click.option(
    "--sip-tls-key", type=_PEM, help="Its PEM private key, if not in the certificate file."
)
@click.option(
    "--sip-tls-ca-file",
    type=_PEM,
    help="PEM CA certificates that TLS peers we connect to are checked against "
    "(default: the system's).",
)
@click.option(
    "--sip-tls-no-verify",
    is_flag=True,
    help="Accept any certificate from TLS peers we connect to (test beds only).",
)
@click.option("--media-host", default="127.0.0.1", show_default=True, help="RTP address.")
@click.option(
    "--rtp-ports",
    default="20000-30000",
    show_default=True,
    help="Range of RTP ports, e.g. 20000-30000.",
)
@click.option(
    "--media-kernel-forwarding",
    type=click.Choice(KERNEL_FORWARDING_MODES),
    default="off",
    show_default=True,
    help="Let the kernel (nftables) forward the RTP of bridged calls that are not recorded; "
    "needs CAP_NET_ADMIN. auto: where this host allows it, else relay as usual after a "
    "warning; on: refuse to start without it.",
)
@click.option(
    "--sip-rate-per-source",
    type=click.FloatRange(min=1.0),
    default=TransportConfig().rate_per_source,
    show_default=True,
    help="SIP datagrams per second accepted from one host (twice as many at once); "
    "the rest is dropped and counted as a flood.",
)
@click.option(
    "--sip-receive-buffer",
    type=click.IntRange(min=4096, max=1 << 30),
    default=TransportConfig().receive_buffer,
    show_default=True,
    help="Bytes of SIP datagrams the kernel holds for the UDP socket while the server is "
    "busy (capped by the sysctl net.core.rmem_max without CAP_NET_ADMIN).",
)
@click.option(
    "--drain-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds calls may go on after SIGTERM before they are cancelled.",
)
@click.option(
    "--counters",
    type=click.Choice(["auto", "memory", "database"]),
    default="auto",
    show_default=True,
    help="Where routing counters and cap reservations are decided: in this process's memory, "
    "written behind (only if no other server uses the database), or in the database; "
    "auto picks memory for SQLite and the database for PostgreSQL.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every call step.")
def command(
    config_file: Path | None,
    database_url: str | None,
    data_dir: Path,
    sip_host: str,
    sip_port: int,
    sip_tls_port: int,
    sip_tls_certificate: Path | None,
    sip_tls_key: Path | None,
    sip_tls_ca_file: Path | None,
    sip_tls_no_verify: bool,
    media_host: str,
    rtp_ports: str,
    media_kernel_forwarding: str,
    sip_rate_per_source: float,
    sip_receive_buffer: int,
    drain_timeout: float,
    counters: str,
    verbose: bool,
) -> None:
    """Run the built-in SIP engine: take calls on tracking numbers and sell them to buyers."""
    low, separator, high = rtp_ports.partition("-")
    if not (separator and low.isdigit() and high.isdigit() and int(low) < int(high)):
        raise click.BadParameter("expected LOW-HIGH, e.g. 20000-30000", param_hint="--rtp-ports")
    sip = TransportConfig(
        host=sip_host,
        port=sip_port,
        rate_per_source=sip_rate_per_source,
        burst_per_source=int(2 * sip_rate_per_source),
        receive_buffer=sip_receive_buffer,
        tls_port=sip_tls_port,
        tls_certificate=sip_tls_certificate,
        tls_key=sip_tls_key,
        tls_ca_file=sip_tls_ca_file,
        tls_verify=not sip_tls_no_verify,
    )
    try:
        server_tls_context(sip)
        client_tls_context(sip)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    if config_file is not None:
        read_configuration(config_file)  # every problem is reported before anything starts
    configure_logging(logging.DEBUG if verbose else logging.INFO)
    config = ServerConfig(
        database_url=database_url,
        data_dir=data_dir,
        configuration_file=config_file,
        sip=sip,
        media=MediaConfig(
            address=media_host,
            port_min=int(low),
            port_max=int(high),
            kernel_forwarding=cast(KernelForwarding, media_kernel_forwarding),
        ),
        drain_timeout=drain_timeout,
        resident_counters=_RESIDENT_COUNTERS[counters],
    )
    try:
        _run(CallwhisperServer(config))
    except ConfigError as exc:  # e.g. kernel forwarding "on" where the host cannot do it
        raise click.ClickException(str(exc)) from exc


_RESIDENT_COUNTERS: dict[str, bool | None] = {"auto": None, "memory": True, "database": False}


def _run(server: CallwhisperServer) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(server.serve_forever())
    else:
        uvloop.run(server.serve_forever())
