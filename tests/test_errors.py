"""Which failure becomes which answer (app/http/errors.py): a socket or file error is the
database's (503 database_unavailable, retry) only when the database driver raised it, and
Redis's (503 redis_unavailable) only when the Redis client did; anything else is a 500."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.errors import EXCEPTION_HANDLERS
from tests.support import Services


def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def failing(services: Services, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app with the server's exception handlers and one route per kind of failure."""
    port = closed_port()

    async def database_down(request: Request) -> Response:
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=5)
        raise AssertionError("connected to a closed port")

    async def database_slow(request: Request) -> Response:
        connection = await asyncpg.connect(services.pg_admin_url)
        try:
            await connection.execute("SELECT pg_sleep(2)", timeout=0.05)
        finally:
            connection.terminate()
        raise AssertionError("the statement outlived its timeout")

    async def other_socket(request: Request) -> Response:
        # as a Redis client's socket would fail, outside the database driver
        await asyncio.open_connection("127.0.0.1", port)
        raise AssertionError("connected to a closed port")

    async def redis_down(request: Request) -> Response:
        client = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=5)
        try:
            await client.get("anything")
        finally:
            await client.aclose()
        raise AssertionError("connected to a closed port")

    async def missing_file(request: Request) -> Response:
        return Response((tmp_path / "missing.txt").read_bytes())

    app = Starlette(
        routes=[
            Route("/database-down", database_down),
            Route("/database-slow", database_slow),
            Route("/other-socket", other_socket),
            Route("/redis-down", redis_down),
            Route("/missing-file", missing_file),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/database-down", 503, "database_unavailable"),
        ("/database-slow", 503, "database_unavailable"),
        ("/other-socket", 500, "internal_error"),
        ("/redis-down", 503, "redis_unavailable"),
        ("/missing-file", 500, "internal_error"),
    ],
)
async def test_only_the_drivers_socket_errors_are_unavailable_and_retried(
    failing: httpx.AsyncClient, path: str, status: int, code: str
) -> None:
    response = await failing.get(path)
    assert (response.status_code, response.json()["error"]) == (status, code), response.text
    assert ("retry-after" in response.headers) == (status == 503)
