"""The harness every load tool shares: a lean HTTP/1.1 keep-alive client, percentiles,
tokens and set-up requests, databases, processes pinned to a CPU (`Lab`: one run's folder,
database, servers and Redis, undone at the end) and a description of the machine.

The client is a plain asyncio Protocol (no streams, no httpx): one connection per simulated
client, one request in flight per connection, responses parsed by hand. On uvloop it costs
a few microseconds per request, so one generator core can drive tens of thousands of
requests per second, far more than one Python server process answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")
DEFAULT_DB = os.environ.get("TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parents[1]
# this checkout's app/ for what a tool imports in-process (the venv may point at another)
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))


# ---- the HTTP client ----


class HTTPError(Exception):
    pass


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; `request` sends raw bytes and returns
    (status, body). Handles Content-Length and chunked bodies, and `Connection: close`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False
        self.must_close = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HTTPError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        parsed = self._parse()
        if parsed is not None:
            waiter.set_result(parsed)

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buf[:end]).lower()
        status = int(buf[9:12])
        start = end + 4
        length = 0
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"connection" and b"close" in value:
                self.must_close = True
        if not chunked:
            if len(buf) < start + length:
                return None
            body = bytes(buf[start : start + length])
            del buf[: start + length]
            return status, body
        # chunked: walk the chunks; incomplete -> wait for more data
        pos = start
        body_parts = []
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
            pos = line_end + 2
            if size == 0:
                trailer_end = buf.find(b"\r\n", pos)
                if trailer_end < 0:
                    return None
                del buf[: trailer_end + 2]
                return status, b"".join(body_parts)
            if len(buf) < pos + size + 2:
                return None
            body_parts.append(bytes(buf[pos : pos + size]))
            pos += size + 2

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.closed or self.transport is None:
            raise HTTPError("connection closed")
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.transport.write(raw)
        if self.buf:  # a response that arrived early (never, with one request in flight)
            parsed = self._parse()
            if parsed is not None:
                self.waiter.set_result(parsed)
        return await self.waiter


class RawClient:
    """A single keep-alive connection that reconnects when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.conn: _Connection | None = None
        self.host_header = f"{host}:{port}".encode()

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        self.conn = conn

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        if self.conn is None or self.conn.closed:
            await self.connect()
        assert self.conn is not None
        status, body = await self.conn.request(raw)
        if self.conn.must_close:
            assert self.conn.transport is not None
            self.conn.transport.close()
            self.conn = None
        return status, body

    def build(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> bytes:
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self.host_header]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}".encode())
        if body or method in ("POST", "PUT", "PATCH", "DELETE"):
            lines.append(b"Content-Length: " + str(len(body)).encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()


def use_uvloop() -> str:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    except ImportError:  # pragma: no cover
        return "asyncio"


# ---- statistics ----


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def histogram_percentile(counts: dict[int, int], p: float) -> float | None:
    """Nearest-rank percentile of values kept as a histogram {value: how many}; None when
    it is empty. The fan-out watchers keep latencies this way (1 ms buckets), so that
    thousands of watchers never ship millions of samples."""
    total = sum(counts.values())
    if not total:
        return None
    need = p / 100 * total
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= need:
            return float(value)
    return float(max(counts))


# ---- tokens, set-up requests, shows ----


def mint(secret: str, user: str, role: str = "customer", ttl: float = 6 * 3600) -> str:
    import jwt

    exp = datetime.now(UTC) + timedelta(seconds=ttl)
    return jwt.encode({"sub": user, "role": role, "exp": exp}, secret, algorithm="HS256")


def http_json(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    timeout: float = 30,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """A slow but simple request for set-up and checking steps (urllib: also under Locust's
    gevent); (status, the decoded JSON body or the text of a non-JSON error)."""
    import json

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def create_show(url: str, secret: str, timeout: float = 30, **fields: Any) -> int:
    """A show made through the admin API (`fields` as POST /admin/shows takes them); its id."""
    body = {
        "title": "Benchmark",
        "venue": "Bench hall",
        "starts_at": "2030-01-01T20:00:00Z",
        **fields,
    }
    admin = mint(secret, "bench-admin", "admin")
    status, show = http_json("POST", f"{url}/admin/shows", body, admin, timeout)
    if status != 201:
        raise RuntimeError(f"creating the show failed: {status} {show}")
    return int(show["id"])


def seat_map(url: str, show_id: int) -> dict[str, Any]:
    status, found = http_json("GET", f"{url}/shows/{show_id}/seats")
    if status != 200:
        raise RuntimeError(f"reading the seat map failed: {status} {found}")
    result: dict[str, Any] = found
    return result


def seat_labels(url: str, show_id: int) -> list[str]:
    return [seat["label"] for seat in seat_map(url, show_id)["seats"]]


# ---- databases ----


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine to its end from plain code, also under a running event loop (the
    fan-out orchestrator is async): then in a thread of its own, blocking the loop, as
    every other set-up step does."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def run_sql(url: str, sql: str) -> None:
    """One statement on a connection of its own (CREATE/DROP DATABASE refuse transactions)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(admin_url: str, name: str) -> None:
    await run_sql(admin_url, f'CREATE DATABASE "{name}"')


async def drop_database(admin_url: str, name: str) -> None:
    await run_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def start_show_ids_apart(db_url: str) -> None:
    """Show ids no other run uses, so runs sharing one Redis never mix their channels."""
    import secrets

    start = secrets.randbelow(10**9) * 1000 + 1
    await run_sql(db_url, f"ALTER SEQUENCE shows_id_seq RESTART WITH {start}")


async def migrate(env: dict[str, str], cwd: str | os.PathLike[str]) -> None:
    """`python -m app migrate` against the databases named in env."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "migrate", env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(out.decode())


# ---- processes and pinning ----


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def has_taskset() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pin_self(cpu: int, pin: bool = True) -> bool:
    """Moves this process (the load generator or orchestrator) to `cpu`, off the server's
    CPU 0; False where the machine cannot pin."""
    if not (pin and has_taskset()):
        return False
    os.sched_setaffinity(0, {cpu})
    return True


def raise_nofile() -> int:
    """Lifts this process's open-file limit to the hard limit (thousands of sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy in {timeout}s:\n{_tail(log_path)}")


def _tail(log_path: str) -> str:
    with open(log_path, errors="replace") as log:
        return log.read()[-4000:]


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---- one run's servers ----


def add_service_options(parser: argparse.ArgumentParser) -> None:
    """--database-url (an admin URL: each run creates and drops a database of its own) and
    --redis-url, as every tool takes them."""
    parser.add_argument("--database-url", default=DEFAULT_DB, help="PostgreSQL admin URL")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)


# rate limits stay on (their cost is part of every request) but never refuse
NEVER_REFUSE = {"MODEX_RATE_LIMIT_USER": "100000/second", "MODEX_RATE_LIMIT_IP": "100000/second"}


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    secret: str  # its MODEX_JWT_SECRET, for mint()
    db_url: str


class Lab:
    """What one benchmark run sets up and takes down again: a temporary folder (logs), a
    fresh migrated database of its own (`<prefix>_<random>`, dropped at the end), a JWT
    secret, and the processes it starts, each pinned to a CPU where the machine can pin.
    `env` adds settings to the app's processes; `limits` are their rate-limit settings (by
    default on, their cost is part of every request, but too high to refuse).

        with Lab(admin_url, redis_url) as lab:
            lab.create_database()
            server = lab.start_server()
    """

    def __init__(
        self,
        admin_url: str,
        redis_url: str = "",
        *,
        prefix: str = "bench",
        env: dict[str, str] | None = None,
        limits: dict[str, str] = NEVER_REFUSE,
        pin: bool = True,
        keep_logs: bool = False,
    ) -> None:
        self.admin_url = admin_url
        self.redis_url = redis_url
        self.name = f"{prefix}_{secrets.token_hex(4)}"
        self.db_url = with_database(admin_url, self.name)
        self.secret = "bench-" + secrets.token_hex(24)
        self.folder = Path(tempfile.mkdtemp(prefix=f"mx{prefix}-", dir="/tmp"))
        self.pin = pin and has_taskset()
        self.keep_logs = keep_logs
        self.settings = {**limits, **(env or {})}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.created = False

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of the app's processes: this run's database, Redis and secret."""
        return {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "SHARD_URLS": self.db_url,
            "REDIS_URL": self.redis_url,
            "MODEX_JWT_SECRET": self.secret,
            "MODEX_DEMO": "0",
            "MODEX_DATA_DIR": str(self.folder / "data"),
            "PYTHONUNBUFFERED": "1",
            **self.settings,
            **extra,
        }

    def taskset(self, cpu: int | None) -> list[str]:
        return ["taskset", "-c", str(cpu)] if self.pin and cpu is not None else []

    def create_database(self, apply_sql: str | None = None) -> None:
        """Creates and migrates the database; `apply_sql` runs on it afterwards (experiments
        on this database only, see loadtests/variants/)."""
        run_async(create_database(self.admin_url, self.name))
        self.created = True
        run_async(migrate(self.env(), ROOT))
        if apply_sql:
            run_async(run_sql(self.db_url, apply_sql))
        run_async(start_show_ids_apart(self.db_url))

    def start(
        self,
        argv: list[str],
        log_name: str,
        *,
        cpu: int | None = None,
        health_url: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] = ROOT,
    ) -> subprocess.Popen[bytes]:
        """A process of this run, output to `log_name` in the folder; with `health_url`,
        returns once its /health answers 200."""
        log_path = self.folder / log_name
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [*self.taskset(cpu), *argv], env=self.env(**(env or {})), cwd=cwd,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs.append(proc)
        if health_url:
            wait_healthy(health_url, proc, str(log_path), timeout=60)
        return proc

    def start_server(
        self,
        *,
        cpu: int | None = 0,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        log_name: str = "server.log",
        cwd: str | os.PathLike[str] = ROOT,
    ) -> Server:
        """One `python -m app serve` (one worker) on this run's database, on CPU 0 unless
        told; `command` replaces `python -m app serve` (experiments)."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [*(command or [sys.executable, "-m", "app", "serve"]), "--port", str(port)]
        proc = self.start(argv, log_name, cpu=cpu, health_url=url, env=env, cwd=cwd)
        return Server(url, port, proc, self.secret, self.db_url)

    def start_redis(self, cpu: int | None = 1, port: int = 0) -> str:
        """A private `redis-server` (no persistence) for this run; its URL, also the one
        the servers started afterwards use."""
        import redis

        port = port or free_port()
        self.start(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            "redis.log", cpu=cpu,
        )  # fmt: skip
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.redis_url).ping()
                return self.redis_url
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        stop_process(proc)
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        self.procs.clear()
        try:
            if self.created:
                run_async(drop_database(self.admin_url, self.name))
                self.created = False
        finally:
            if not self.keep_logs:
                shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def bench_server(admin_url: str, redis_url: str, **env: str) -> Iterator[Server]:
    """A Lab with one server: a database of its own and one `python -m app serve` on it,
    pinned to CPU 0, rate limits on but too high to refuse; `env` adds settings."""
    with Lab(admin_url, redis_url, env=env) as lab:
        lab.create_database()
        yield lab.start_server()


# ---- the machine ----

PACKAGES = (
    "starlette", "uvicorn", "httptools", "uvloop", "asyncpg", "redis", "hiredis", "websockets",
    "picows", "msgspec", "orjson", "psutil", "locust",
)  # fmt: skip


def versions() -> dict[str, str]:
    """Python, the libraries a figure depends on and redis-server, for the reports."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "-"
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
        found["redis-server"] = out.stdout.split()[2].removeprefix("v=")
    except (OSError, IndexError):
        found["redis-server"] = "?"
    return found


def cpu_info() -> dict[str, Any]:
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "model": model,
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load],
        "platform": platform.platform(),
        "executable": sys.executable,
    }


def git_state() -> dict[str, Any]:
    """The commit measured and what in app/ and sql/ differs from it."""

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout

    return {
        "head": git("rev-parse", "--short", "HEAD").strip(),
        "uncommitted": git("status", "--short", "app", "sql").splitlines(),
    }
