"""Shared pieces of the load tools: a lean HTTP/1.1 keep-alive client, percentiles, tokens,
process helpers and a description of the machine and library versions.

The client is a plain asyncio Protocol (no streams, no httpx): one connection per simulated
client, one request in flight per connection, responses parsed by hand. On uvloop it costs
a few microseconds per request, so one generator core can drive tens of thousands of
requests per second, far more than one Python server process answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return float("nan")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# ---- tokens, databases, processes ----


def mint(secret: str, user: str, role: str = "customer", ttl: float = 6 * 3600) -> str:
    import jwt

    exp = datetime.now(UTC) + timedelta(seconds=ttl)
    return jwt.encode({"sub": user, "role": role, "exp": exp}, secret, algorithm="HS256")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(
    method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 30
) -> tuple[int, Any]:
    """A slow but simple request for set-up steps (urllib, no extra dependency)."""
    import json

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
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


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path, errors="replace") as log:
                tail = log.read()[-4000:]
            raise RuntimeError(f"{url} exited with {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    with open(log_path, errors="replace") as log:
        tail = log.read()[-4000:]
    raise RuntimeError(f"{url} did not become healthy in {timeout}s:\n{tail}")


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class BenchServer:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    secret: str  # its MODEX_JWT_SECRET, for mint()
    db_url: str


@contextlib.contextmanager
def bench_server(admin_url: str, redis_url: str, **env: str) -> Iterator[BenchServer]:
    """A database of its own (migrated; dropped at the end) and one `python -m app serve`
    on it, pinned to CPU 0 where taskset exists, rate limits on but too high to refuse;
    `env` adds settings."""
    import secrets
    import tempfile

    name = f"bench_{secrets.token_hex(4)}"
    db_url = with_database(admin_url, name)
    secret = "bench-" + secrets.token_hex(24)
    folder = tempfile.mkdtemp(prefix="mxbench-", dir="/tmp")
    port = free_port()
    server_env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "SHARD_URLS": db_url,
        "REDIS_URL": redis_url,
        "MODEX_JWT_SECRET": secret,
        "MODEX_DEMO": "0",
        "MODEX_DATA_DIR": os.path.join(folder, "data"),
        "MODEX_RATE_LIMIT_USER": "100000/second",
        "MODEX_RATE_LIMIT_IP": "100000/second",
        **env,
    }
    pin = ["taskset", "-c", "0"] if has_taskset() else []
    asyncio.run(create_database(admin_url, name))
    proc = None
    try:
        asyncio.run(migrate(server_env, ROOT))
        asyncio.run(start_show_ids_apart(db_url))
        log_path = os.path.join(folder, "server.log")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [*pin, sys.executable, "-m", "app", "serve", "--port", str(port)],
                env=server_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log_path, timeout=60)
        yield BenchServer(url, port, proc, secret, db_url)
    finally:
        stop_process(proc)
        asyncio.run(drop_database(admin_url, name))


def has_taskset() -> bool:
    from shutil import which

    return which("taskset") is not None and (os.cpu_count() or 1) >= 2


# ---- the machine ----


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("starlette", "uvicorn", "asyncpg", "uvloop", "httptools", "redis", "locust"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "-"
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
