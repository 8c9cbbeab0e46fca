"""Real databases, real Redis, real `modex serve` processes for the tests.

TEST_DATABASE_URL / TEST_REDIS_URL point at running servers (CI); without them an embedded
PostgreSQL and an embedded Valkey are started under a short temporary folder.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import jwt

from app.realtime.keys import RedisKeys, deployment_keys

ROOT = Path(__file__).resolve().parents[1]
JWT_SECRET = "test-secret-" + "x" * 32
T = TypeVar("T")
# conftest's `show_on` fixture: `await show_on(shard, **fields)`, a new show on that shard
ShowOn = Callable[..., Awaitable[dict[str, Any]]]


async def wait_until(
    predicate: Callable[[], T | Awaitable[T]],
    within: float = 5.0,
    what: str = "the condition",
    every: float = 0.05,
) -> T:
    """predicate()'s first true result (it may be a coroutine function); fails after
    `within` s. Tests wait on a condition like this, never for a guessed time: other tasks
    (watchers, load) run meanwhile."""
    deadline = time.monotonic() + within
    while True:
        found = predicate()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(every)


def wait_until_blocking(
    predicate: Callable[[], T],
    within: float = 5.0,
    what: str = "the condition",
    every: float = 0.05,
) -> T:
    """wait_until() for code outside an event loop (starting processes, sync tests)."""
    deadline = time.monotonic() + within
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        time.sleep(every)


class Clock:
    """Time that moves only when a test moves it (`clock.now += 1.0`), for code that takes
    a clock (RateLimits) or reads `time.monotonic()` (CircuitBreaker)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


def answers_ok(url: str) -> bool:
    """A GET of `url` answers 200 (a server still starting refuses or fails: False)."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def metric(text: str, name: str) -> float:
    """A sample's value in /metrics text (`name` with its labels), 0 if it is not there."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def require_tool(present: bool, what: str) -> None:
    """`make test` installs every tool first (`make tools`): a missing one fails the tests
    that need it rather than skipping them."""
    if not present:
        raise RuntimeError(f"{what} is not installed: run `make tools`")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def token(user: str, role: str = "customer", ttl: float = 3600) -> str:
    exp = datetime.now(UTC) + timedelta(seconds=ttl)
    return jwt.encode({"sub": user, "role": role, "exp": exp}, JWT_SECRET, algorithm="HS256")


def auth(user: str, role: str = "customer") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, role)}"}


async def run_modex(env: dict[str, str], *argv: str) -> str:
    """`python -m app ARGV...` (what `modex ARGV...` runs); its output, asserting success."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *argv,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    assert proc.returncode == 0, output.decode()
    return output.decode()


class Services:
    """PostgreSQL + Redis for the session: the machine's (CI) or embedded ones."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mxt-", dir="/tmp"))
        self._pg: Any = None
        self._valkey: Any = None
        self.pg_admin_url = os.environ.get("TEST_DATABASE_URL", "")
        self.redis_url = os.environ.get("TEST_REDIS_URL", "")
        if not self.pg_admin_url:
            from app.ops import embedded

            self._pg = embedded.start_postgres(self.folder / "pg")
            # over TCP, as the machine's: PgBouncer and multi-host URLs need host:port
            self.pg_admin_url = embedded.listen_on_tcp(self._pg, free_port())
        if not self.redis_url:
            from app.ops import embedded

            self._valkey = embedded.start_valkey(self.folder / "valkey")
            self.redis_url = f"redis://127.0.0.1:{self._valkey.port}/0"

    def close(self) -> None:
        if self._valkey is not None:
            self._valkey.stop()
        if self._pg is not None:
            self._pg.cleanup()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Cluster:
    """A metadata database plus shards, migrated, shared by every server process started."""

    services: Services
    shard_count: int = 2
    name: str = field(default_factory=lambda: f"mxt_{secrets.token_hex(4)}")
    databases: list[str] = field(default_factory=list)

    @property
    def meta_url(self) -> str:
        return with_database(self.services.pg_admin_url, self.databases[0])

    @property
    def shard_urls(self) -> list[str]:
        # shard 0 is the metadata database itself; the others are their own databases
        return [with_database(self.services.pg_admin_url, db) for db in self.databases]

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DATABASE_URL": self.meta_url,
            "SHARD_URLS": ",".join(self.shard_urls),
            "REDIS_URL": self.services.redis_url,
            "MODEX_JWT_SECRET": JWT_SECRET,
            "MODEX_DEMO": "0",
            "MODEX_DATA_DIR": str(self.services.folder / self.name),
            "MODEX_RATE_LIMIT_USER": "1000/second",
            "MODEX_RATE_LIMIT_IP": "off",
            # a test run starts a score of servers on one PostgreSQL (max_connections 100 by
            # default): batched seat requests need few connections
            "MODEX_DB_POOL_SIZE": "8",
            "MODEX_GUEST_TOKENS_PER_IP": "off",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(extra)
        return env

    async def create(self) -> None:
        admin = await asyncpg.connect(self.services.pg_admin_url)
        try:
            self.databases = [f"{self.name}_meta"] + [
                f"{self.name}_s{i}" for i in range(1, self.shard_count)
            ]
            for db in self.databases:
                await admin.execute(f'CREATE DATABASE "{db}"')
        finally:
            await admin.close()
        await run_modex(self.env(), "migrate")
        # Show ids differ between test sessions, so sessions sharing one Redis never share
        # a show's keys or channels.
        meta = await asyncpg.connect(self.meta_url)
        try:
            start = secrets.randbelow(10**9) * 1000 + 1
            await meta.execute(f"ALTER SEQUENCE shows_id_seq RESTART WITH {start}")
        finally:
            await meta.close()

    async def drop(self) -> None:
        admin = await asyncpg.connect(self.services.pg_admin_url)
        try:
            for db in self.databases:
                await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            await admin.close()

    def connect_shard(self, index: int) -> Any:
        return asyncpg.connect(self.shard_urls[index])

    async def redis_keys(self) -> RedisKeys:
        """The names this cluster's servers give their Redis keys and channels."""
        meta = await asyncpg.connect(self.meta_url)
        try:
            return await deployment_keys(meta, "", self.services.redis_url)
        finally:
            await meta.close()


async def admin_execute(services: Services, *statements: str) -> None:
    """Statements run as the PostgreSQL superuser on its `postgres` database (CREATE,
    ALTER or DROP DATABASE, ending other sessions)."""
    conn = await asyncpg.connect(services.pg_admin_url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


class PrivateRedis:
    """A Redis-compatible server of the test's own (Valkey from its wheel), on a fixed port,
    so a test can stop and restart it under running servers."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        from app.ops import embedded

        self._server = embedded.start_valkey(self.folder, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def kill(self) -> None:
        """Gone at once, and with it everything it held (it keeps nothing on disk)."""
        if self._server is not None:
            self._server.terminate()
            self._server = None


class ServerProcess:
    """One `modex serve` process on its own port."""

    def __init__(
        self, cluster: Cluster, log_dir: Path, serve_args: tuple[str, ...] = (), **env: str
    ) -> None:
        self.cluster = cluster
        self.serve_args = serve_args
        self.port = free_port()
        self.extra_env = env
        self.log_path = log_dir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 30) -> ServerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app", "serve", "--port", str(self.port), *self.serve_args],
                env=self.cluster.env(**self.extra_env),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            return answers_ok(f"{self.url}/health")

        try:
            wait_until_blocking(healthy, timeout, "/health", every=0.1)
        except AssertionError:
            raise RuntimeError(
                f"server did not start: {self.log_path.read_text()[-3000:]}"
            ) from None
        return self

    def connections(self) -> int:
        """Open TCP connections to the server's port: a burst of requests is in when each
        has its own (a client opens one per request under way)."""
        import psutil

        assert self.proc is not None
        return sum(
            1
            for c in psutil.Process(self.proc.pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == self.port
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()


async def create_show(
    client: httpx.AsyncClient, rows: int = 5, seats_per_row: int = 10, **fields: Any
) -> dict[str, Any]:
    body = {
        "title": fields.pop("title", f"Test show {secrets.token_hex(3)}"),
        "venue": "Test venue",
        "starts_at": "2027-01-15T20:00:00Z",
        "rows": rows,
        "seats_per_row": seats_per_row,
        **fields,
    }
    response = await client.post("/admin/shows", json=body, headers=auth("admin", "admin"))
    assert response.status_code == 201, response.text
    show: dict[str, Any] = response.json()
    return show


async def lock_waiters(conn: asyncpg.Connection, table: str) -> int:
    """Queries waiting for a lock on `table` (one a test holds to keep them under way)."""
    waiting: int = await conn.fetchval(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass", table
    )
    return waiting


async def create_show_on(
    client: httpx.AsyncClient, cluster: Cluster, shard: int, **fields: Any
) -> dict[str, Any]:
    """A new show on `shard`, whatever placement chose. Placement follows the seats that
    earlier tests left on each shard, so a test that needs a given shard asks for it here
    (moving the show with `modex move-show`) rather than relying on the order tests ran in."""
    show = await create_show(client, **fields)
    if show["shard"] != shard:
        await run_modex(cluster.env(), "move-show", str(show["id"]), "--to", str(shard))
        show["shard"] = shard
    return show
