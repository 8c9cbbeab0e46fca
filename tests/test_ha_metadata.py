"""Failover seams: libpq multi-host URLs, and shards that keep selling while the metadata
database (the show directory) is unreachable."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

import app.shards
from app.config import Settings
from app.holds import BoxOffice
from app.shards import ShardRouter
from tests.support import (
    JWT_SECRET,
    Cluster,
    ServerProcess,
    auth,
    create_show,
    create_show_on,
    free_port,
)


class TcpRelay:
    """A TCP relay on 127.0.0.1 to a database server: `cut()` closes its port and every
    connection through it, as a database host that went away."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpRelay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        return self

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()

    def url(self, url: str) -> str:
        """`url` with its host and port replaced by the relay's."""
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return parts._replace(netloc=netloc).geturl()


def settings_from(monkeypatch: pytest.MonkeyPatch, shard_urls: str) -> Settings:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@meta:5432/meta")
    monkeypatch.setenv("SHARD_URLS", shard_urls)
    return Settings.from_env()


def test_shard_urls_keep_multi_host_urls_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    multi = "postgresql://u@h1:5432,h2:5433/db1?target_session_attrs=read-write"
    single = "postgres://u:p@h3:5432/db2"
    for listed in (f"{multi},{single}", f"{multi}, {single}", f"{multi};{single}"):
        assert settings_from(monkeypatch, listed).shard_urls == (multi, single), listed
    assert settings_from(monkeypatch, f" {multi}\n  {single} ").shard_urls == (multi, single)
    assert settings_from(monkeypatch, multi).shard_urls == (multi,)


@pytest.fixture(scope="module")
def multi_host_server(cluster: Cluster, log_dir: Path) -> Iterator[ServerProcess]:
    """A server whose every database URL lists a host that refuses first, then the real
    one, and asks for the read-write one (as a URL naming a primary and its standby)."""

    def multi_host(url: str) -> str:
        parts = urlsplit(url)
        user, _, host = parts.netloc.rpartition("@")
        hosts = f"127.0.0.1:{free_port()},{host}"
        query = "target_session_attrs=read-write"
        return parts._replace(netloc=f"{user}@{hosts}" if user else hosts, query=query).geturl()

    server = ServerProcess(
        cluster,
        log_dir,
        DATABASE_URL=multi_host(cluster.meta_url),
        SHARD_URLS=",".join(multi_host(url) for url in cluster.shard_urls),
    ).start()
    yield server
    server.stop()


async def test_a_server_on_multi_host_urls_sells_on_every_shard(
    multi_host_server: ServerProcess, cluster: Cluster, user: str
) -> None:
    async with httpx.AsyncClient(base_url=multi_host_server.url, timeout=30) as client:
        for shard in range(cluster.shard_count):
            show = await create_show_on(client, cluster, shard, rows=1, seats_per_row=4)
            booked = await client.post(
                f"/shows/{show['id']}/book", json={"seatNumbers": ["A1"]}, headers=auth(user)
            )
            assert booked.status_code == 201, booked.text
            placed = await client.get(f"/shows/{show['id']}")
            assert placed.json()["shard"] == shard


@pytest.fixture
async def relayed_router(cluster: Cluster) -> AsyncIterator[tuple[ShardRouter, TcpRelay]]:
    """The cluster's routing in this process, its metadata database reached through a
    relay the test can cut; the shards (shard 0 too) are reached directly."""
    target = urlsplit(cluster.meta_url)
    relay = await TcpRelay(target.hostname or "127.0.0.1", target.port or 5432).start()
    settings = Settings(
        database_url=relay.url(cluster.meta_url),
        shard_urls=tuple(cluster.shard_urls),
        redis_url="redis://unused",
        jwt_secret=JWT_SECRET,
    )
    router = await ShardRouter.connect(settings)
    yield router, relay
    relay.cut()
    await router.close()


async def test_holds_go_on_while_the_directory_is_unreachable(
    relayed_router: tuple[ShardRouter, TcpRelay],
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    user: str,
) -> None:
    router, relay = relayed_router
    box_office = BoxOffice(router, on_commit=lambda committed: None)
    seen = await create_show(client, rows=1, seats_per_row=10)
    never_seen = await create_show(client, rows=1, seats_per_row=10)
    await box_office.hold(seen["id"], ["A1"], user)  # routes it: the directory entry is cached

    relay.cut()
    hold = await box_office.hold(seen["id"], ["A2"], user)
    # an entry past its TTL is served too (and refreshed in the background, which fails)
    monkeypatch.setattr(app.shards, "DIRECTORY_TTL", 0.0)
    for label in ("A3", "A4", "A5"):
        await asyncio.wait_for(box_office.hold(seen["id"], [label], user), timeout=1)
    booking = await asyncio.wait_for(box_office.confirm(hold.hold_id, user, None), timeout=1)
    assert booking.status == "CONFIRMED"
    # a show this server never routed needs the directory: a connection error (the app
    # answers it 503 database_unavailable), not a wrong route
    with pytest.raises(app.shards.CONNECTION_ERRORS):
        await box_office.hold(never_seen["id"], ["A1"], user)


@pytest.fixture
async def relayed_server(
    cluster: Cluster, log_dir: Path
) -> AsyncIterator[tuple[ServerProcess, TcpRelay]]:
    target = urlsplit(cluster.meta_url)
    relay = await TcpRelay(target.hostname or "127.0.0.1", target.port or 5432).start()
    server = ServerProcess(cluster, log_dir, DATABASE_URL=relay.url(cluster.meta_url))
    await asyncio.to_thread(server.start)
    yield server, relay
    relay.cut()
    await asyncio.to_thread(server.stop)


async def test_a_server_cut_off_from_the_directory_sells_shows_it_routed(
    relayed_server: tuple[ServerProcess, TcpRelay], client: httpx.AsyncClient, user: str
) -> None:
    server, relay = relayed_server
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as cut_off:
        show = await create_show(client, rows=1, seats_per_row=10)
        never_seen = await create_show(client, rows=1, seats_per_row=10)
        first = await cut_off.post(
            f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user)
        )
        assert first.status_code == 201, first.text

        relay.cut()
        held = await cut_off.post(
            f"/shows/{show['id']}/holds", json={"seats": ["A2"]}, headers=auth(user)
        )
        assert held.status_code == 201, held.text
        confirmed = await cut_off.post(
            f"/holds/{held.json()['hold_id']}/confirm", headers=auth(user)
        )
        assert confirmed.status_code == 201, confirmed.text
        unknown = await cut_off.post(
            f"/shows/{never_seen['id']}/holds", json={"seats": ["A1"]}, headers=auth(user)
        )
        assert unknown.status_code == 503, unknown.text
        assert unknown.json()["error"] == "database_unavailable"
        assert unknown.headers["retry-after"]
