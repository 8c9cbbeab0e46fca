"""Faults: Redis restarts and loses its data, a server dies between commit and publish, a
client never reads. In each case every watcher converges within 5 s (or, for the client
that never reads, the server's memory stays within its bound)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.realtime.broker_redis import RedisBroker
from tests.realtime.apply import ShowState, apply
from tests.realtime.watch import Watcher, converge, hold, seat_order
from tests.support import (
    Cluster,
    PrivateRedis,
    ServerProcess,
    auth,
    create_show,
    metric,
    wait_until,
)

COUNT_OUTBOX = "SELECT count(*) FROM outbox WHERE show_id = $1"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    found = PrivateRedis(tmp_path)
    found.start()
    yield found
    found.kill()


@pytest.fixture
async def private_servers(
    private_redis: PrivateRedis, own_cluster: Cluster, log_dir: Path
) -> AsyncIterator[list[ServerProcess]]:
    """Two servers on databases of the test's own, so their outbox is relayed only to the
    private Redis."""
    started = [
        ServerProcess(own_cluster, log_dir, REDIS_URL=private_redis.url).start() for _ in range(2)
    ]
    yield started
    for server in started:
        server.stop()


async def subscribed(server: ServerProcess, count: int) -> bool:
    """The server holds `count` show subscriptions (a server of the test's own: no other
    test's watchers are counted)."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        return metric((await client.get("/metrics")).text, "ws_watchers") == count


async def outbox_drains(cluster: Cluster, show: dict[str, Any], within: float = 5.0) -> None:
    """Every outbox row of the show is published and deleted (the relay commits after
    publishing, so watchers may see an event a moment before its row is gone)."""
    shard = await cluster.connect_shard(show["shard"])
    try:

        async def drained() -> bool:
            return not await shard.fetchval(COUNT_OUTBOX, show["id"])

        await wait_until(drained, within, "the outbox rows to go", every=0.1)
    finally:
        await shard.close()


def non_reading_client(port: int, ws_url: str) -> Any:
    """A WebSocket client that stops taking data after one frame or so: a tiny socket
    buffer and a one-message queue that nobody drains until the test says so."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return connect(ws_url, sock=sock, max_queue=1, max_size=None)


async def publisher_of(cluster: Cluster, redis: aioredis.Redis) -> RedisBroker:
    """A broker that only publishes, into the cluster's shows, through the real script."""
    keys = await cluster.redis_keys()
    return RedisBroker(
        redis, cluster.services.redis_url, "test", lambda *_: None, lambda _: None, keys=keys
    )


def announcement(show_id: int, i: int, size: int) -> bytes:
    """An announcement event numbered i, `size` bytes of message."""
    return (f'{{"type":"announcement","show_id":{show_id},"message":"{i} {"z" * size}"}}').encode()


@pytest.mark.slow
async def test_every_watcher_converges_after_redis_restarts_empty(
    private_redis: PrivateRedis,
    private_servers: list[ServerProcess],
    own_cluster: Cluster,
    user: str,
) -> None:
    a, b = private_servers
    async with (
        httpx.AsyncClient(base_url=a.url) as client_a,
        httpx.AsyncClient(base_url=b.url) as client_b,
    ):
        show = await create_show(client_a)
        show_id = show["id"]
        order = await seat_order(client_a, show_id)
        watchers = [Watcher(s.ws_url) for s in (a, a, b, b)]
        for w in watchers:
            await w.__aenter__()
            await w.subscribe(show_id, order, encoding="rle" if w.ws_url == b.ws_url else None)
        try:
            await hold(client_a, show_id, user, ["A1"])
            await converge(watchers, client_a, show)
            before = watchers[0].states[show_id].offset
            assert before is not None

            private_redis.kill()
            # while Redis is away, PostgreSQL still takes holds; their outbox rows wait
            await hold(client_a, show_id, user, ["B1", "B2"])
            await hold(client_b, show_id, user, ["C1"])

            async def not_ready() -> bool:
                return (await client_a.get("/ready")).status_code == 503

            await wait_until(not_ready, 4, "/ready to say Redis is away", every=0.1)
            # the seat map stays readable, without an offset
            away = await client_b.get(f"/shows/{show_id}/seats")
            assert away.status_code == 200 and away.json()["offset"] == ""
            # an announcement cannot go out now: the admin is told to retry
            refused = await client_b.post(
                f"/admin/shows/{show_id}/broadcast",
                json={"message": "hello"},
                headers=auth("admin", "admin"),
            )
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"

            private_redis.start()  # empty: a new epoch for every show
            took = await converge(watchers, client_a, show, within=5)
            assert took < 5
            for w in watchers:
                offset = w.states[show_id].offset
                assert offset is not None and offset.split(":")[0] != before.split(":")[0]

            # and live again on the new connection
            await hold(client_b, show_id, user, ["D1"])
            await converge(watchers, client_a, show, within=3)
            assert (await client_a.get("/ready")).status_code == 200

            # the changes made while Redis was away were relayed from the outbox
            await outbox_drains(own_cluster, show)
        finally:
            for w in watchers:
                await w.close()


@pytest.mark.slow
async def test_watchers_converge_when_a_server_dies_between_commit_and_publish(
    servers: list[ServerProcess],
    cluster: Cluster,
    log_dir: Path,
    client: httpx.AsyncClient,
    user: str,
) -> None:
    # no sweeper: releasing some other test's lapsed hold would be its first commit
    doomed = ServerProcess(
        cluster, log_dir, MODEX_FAULT_CRASH_BEFORE_PUBLISH="1", MODEX_SWEEP_INTERVAL="0"
    ).start()
    try:
        show = await create_show(client)
        show_id = show["id"]
        order = await seat_order(client, show_id)
        watchers = [Watcher(s.ws_url) for s in servers]
        for w in watchers:
            await w.__aenter__()
            await w.subscribe(show_id, order)
        try:
            async with httpx.AsyncClient(base_url=doomed.url) as doomed_client:
                with pytest.raises(httpx.TransportError):
                    await doomed_client.post(
                        f"/shows/{show_id}/holds", json={"seats": ["E5", "E6"]}, headers=auth(user)
                    )
            assert doomed.proc is not None
            assert doomed.proc.wait(5) == 137
            # committed in PostgreSQL, never published by its server: the relay on the
            # others finds the outbox row (no-cache: until then no offset has moved, so a
            # map this server keeps would not show it yet)
            seats = (
                await client.get(f"/shows/{show_id}/seats", headers={"Cache-Control": "no-cache"})
            ).json()["seats"]
            assert {s["label"]: s["status"] for s in seats}["E5"] == "HELD"
            took = await converge(watchers, client, show, within=5)
            assert took < 5
            for w in watchers:
                assert any(
                    c["label"] == "E5"
                    for f in w.frames
                    if f["type"] == "seats"
                    for c in f["changes"]
                )
        finally:
            for w in watchers:
                await w.close()
        await outbox_drains(cluster, show)
    finally:
        doomed.stop()


@pytest.mark.slow
async def test_a_client_that_never_reads_does_not_grow_server_memory(
    cluster: Cluster, log_dir: Path, client: httpx.AsyncClient
) -> None:
    server = ServerProcess(cluster, log_dir).start()
    redis = aioredis.Redis.from_url(cluster.services.redis_url)
    try:
        show = await create_show(client)
        show_id = show["id"]
        order = await seat_order(client, show_id)
        assert server.proc is not None
        process = psutil.Process(server.proc.pid)

        # a reader that takes one frame into a tiny socket buffer and then stops reading
        slow = await non_reading_client(server.port, server.ws_url)
        await slow.send(f'{{"type":"subscribe","show_id":{show_id}}}')

        async with Watcher(server.ws_url) as healthy:
            await healthy.subscribe(show_id, order)
            await wait_until(lambda: subscribed(server, 2), what="both subscriptions")
            rss_before = process.memory_info().rss

            # 32 MiB of announcements through the real publish script
            publisher = await publisher_of(cluster, redis)
            count = 8 * 1024
            started = time.monotonic()
            for i in range(count):
                await publisher.publish(
                    show_id, announcement(show_id, i, 4096), invalidate_availability=False
                )
            await healthy.wait_for(
                lambda f: f["type"] == "announcement" and f["message"].startswith(f"{count - 1} "),
                within=30,
            )
            elapsed = time.monotonic() - started
            rss_after = process.memory_info().rss

            # the healthy watcher got every one, in order, while the other never read
            got = [
                int(f["message"].split()[0]) for f in healthy.frames if f["type"] == "announcement"
            ]
            assert got == list(range(count))
            growth = rss_after - rss_before
            # far less than went through: the queue of the client that never reads is bounded
            # (1 MiB), so is the healthy watcher's while it catches up; the rest is the
            # allocator's high-water mark, 2-6 MiB in runs with 16 MiB through. An unbounded
            # queue would hold all 32 MiB.
            assert growth < 12 * 1024 * 1024, f"server grew {growth / 2**20:.1f} MiB"

            async with httpx.AsyncClient(base_url=server.url) as own:
                metrics = (await own.get("/metrics")).text
            assert 'realtime_slow_consumers_total{action="closed"} 1.0' in metrics, [
                line for line in metrics.splitlines() if "slow" in line
            ]
            print(
                f"published {count} x 4 KiB in {elapsed:.1f}s; server RSS grew "
                f"{growth / 2**20:.1f} MiB"
            )

        # the slow client, reading at last, finds itself cut off
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await slow.recv()
    finally:
        await redis.aclose()
        server.stop()


@pytest.mark.slow
async def test_a_client_that_falls_behind_once_gets_a_fresh_snapshot_instead_of_its_backlog(
    cluster: Cluster, log_dir: Path, client: httpx.AsyncClient, user: str
) -> None:
    server = ServerProcess(cluster, log_dir).start()
    redis = aioredis.Redis.from_url(cluster.services.redis_url)
    try:
        async with httpx.AsyncClient(base_url=server.url) as own:
            show = await create_show(own)
            show_id = show["id"]
            order = await seat_order(own, show_id)
            lagging = await non_reading_client(server.port, server.ws_url)
            await lagging.send(f'{{"type":"subscribe","show_id":{show_id}}}')
            await wait_until(lambda: subscribed(server, 1), what="the subscription")

            # it stops reading; announcements pile up until its queue overflows once
            publisher = await publisher_of(cluster, redis)
            name = 'realtime_slow_consumers_total{action="resynced"}'
            overflowed = metric((await own.get("/metrics")).text, name)
            for i in range(4096):
                await publisher.publish(
                    show_id, announcement(show_id, i, 4096), invalidate_availability=False
                )
                if i % 64 == 63 and metric((await own.get("/metrics")).text, name) > overflowed:
                    break
            else:
                raise AssertionError("the client never overflowed")
            # a seat change it must not miss, although its backlog was dropped
            response = await own.post(
                f"/shows/{show_id}/holds", json={"seats": ["A7"]}, headers=auth(user)
            )
            assert response.status_code == 201

            # reading again: what was already on the wire, then a snapshot, then live
            state = ShowState(order)
            kinds: list[str] = []
            numbers: list[int] = []
            async with asyncio.timeout(10):
                while True:
                    frame = json.loads(await lagging.recv())
                    kinds.append(frame["type"])
                    if frame["type"] == "announcement":
                        numbers.append(int(frame["message"].split()[0]))
                    if frame.get("show_id") == show_id:
                        apply(state, frame)
                    if state.seats.get("A7", ("", 0))[0] == "HELD":
                        break
            assert "snapshot" in kinds[1:], "no fresh snapshot after the overflow"
            published = i + 1
            assert set(numbers) < set(range(published)), "nothing was dropped"
            truth = {
                s["label"]: (s["status"], s["version"])
                for s in (await own.get(f"/shows/{show_id}/seats")).json()["seats"]
            }
            assert state.seats == truth
            await lagging.send('{"type":"ping"}')
            async with asyncio.timeout(5):
                while json.loads(await lagging.recv())["type"] != "pong":
                    pass
            await lagging.close()
    finally:
        await redis.aclose()
        server.stop()
