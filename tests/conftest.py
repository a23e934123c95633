"""Shared fixtures: real PostgreSQL and Redis for the integration tests; Hypothesis profiles.

Hypothesis runs the ``default`` profile, bounded so that ``make test`` stays
quick. ``CALLWHISPER_HYPOTHESIS_PROFILE=fuzz`` selects the long fuzz run
(``make fuzz``): the fuzz tests of the SIP parser, stream framer and
transaction layer then try ``CALLWHISPER_FUZZ_EXAMPLES`` inputs each
(20,000 unless set) instead of 300.

Each is found at its usual address (or the one given in the environment),
and started by the fixture itself when nothing answers there:

- ``CALLWHISPER_TEST_POSTGRES_URL``, default
  ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``; otherwise a
  throwaway cluster is created with the ``initdb`` and ``pg_ctl`` of the
  PostgreSQL packages (as the ``postgres`` user when running as root), trusting
  local connections, on a free port, and removed at the end of the session.
- ``CALLWHISPER_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/15``;
  otherwise ``redis-server`` runs on a free port without persistence.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

POSTGRES_URL_ENV = "CALLWHISPER_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
REDIS_URL_ENV = "CALLWHISPER_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
STARTUP_SECONDS = 30.0
HYPOTHESIS_PROFILE_ENV = "CALLWHISPER_HYPOTHESIS_PROFILE"
FUZZ_EXAMPLES_ENV = "CALLWHISPER_FUZZ_EXAMPLES"

settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get(FUZZ_EXAMPLES_ENV, "20000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get(HYPOTHESIS_PROFILE_ENV, "default"))


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for(host: str, port: int, what: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not _answers(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start on {host}:{port}")
        time.sleep(0.1)


def _postgres_bin(name: str) -> str | None:
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    return found[-1] if found else shutil.which(name)


def _run_as_postgres(command: list[str]) -> None:
    # initdb refuses to run as root; the cluster then belongs to the postgres user.
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[URL]:
    """An admin URL of a PostgreSQL server: the configured one, or one started here."""
    url = make_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)).set(
        drivername="postgresql+asyncpg"
    )
    if _answers(url.host or "127.0.0.1", url.port or 5432):
        yield url
        return
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("no PostgreSQL server answers and initdb/pg_ctl are not installed")
    directory = Path(tempfile.mkdtemp(prefix="callwhisper-pg-"))
    data = directory / "data"
    port = _free_port()
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    try:
        _run_as_postgres([initdb, "-D", str(data), "-A", "trust", "-U", "postgres"])
        options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(directory / "log")
        _run_as_postgres([pg_ctl, "-D", str(data), "-o", options, "-l", log, "-w", "start"])
        _wait_for("127.0.0.1", port, "PostgreSQL")
        yield URL.create("postgresql+asyncpg", "postgres", None, "127.0.0.1", port, "postgres")
    finally:
        if (data / "postmaster.pid").exists():
            _run_as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(directory, ignore_errors=True)


async def _admin(server: URL, statement: str) -> None:
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'callwhisper.db'}"
        return
    server: URL = request.getfixturevalue("postgres_url")
    name = f"callwhisper_test_{uuid.uuid4().hex[:12]}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL: the configured server, or a ``redis-server`` started here."""
    url = os.environ.get(REDIS_URL_ENV, DEFAULT_REDIS_URL)
    parsed = make_url(url)
    if _answers(parsed.host or "127.0.0.1", parsed.port or 6379):
        yield url
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no Redis server answers and redis-server is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for("127.0.0.1", port, "Redis")
        yield f"redis://127.0.0.1:{port}/15"
    finally:
        process.terminate()
        process.wait(timeout=10)
