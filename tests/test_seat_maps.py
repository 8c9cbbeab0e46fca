"""Seat maps are encoded once and served again while exact (app/seatmap.py SeatMaps)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from app.seatmap import SeatMaps
from app.shards import Shard, ShardRouter, ShowInfo
from tests.support import (
    Cluster,
    ServerProcess,
    auth,
    create_show,
    lock_waiters,
    metric,
    wait_until,
)

FORCED = {"Cache-Control": "no-cache"}


async def queries(client: httpx.AsyncClient, query_type: str) -> float:
    """How many queries of this type this server has made."""
    text = (await client.get("/metrics")).text
    return metric(text, f'db_query_duration_seconds_count{{query_type="{query_type}"}}')


async def seat_reads(client: httpx.AsyncClient) -> float:
    """How many times this server has read a show's seats from its shard."""
    return await queries(client, "read_seats")


TwoServers = tuple[httpx.AsyncClient, httpx.AsyncClient]


@pytest.fixture
async def two_servers(servers: list[ServerProcess]) -> AsyncIterator[TwoServers]:
    """A client of each session server: the one a change is made on, and the other."""
    async with (
        httpx.AsyncClient(base_url=servers[0].url, timeout=30) as here,
        httpx.AsyncClient(base_url=servers[1].url, timeout=30) as there,
    ):
        yield here, there


def status_of(seat_map: dict[str, Any], label: str) -> str:
    status: str = next(s["status"] for s in seat_map["seats"] if s["label"] == label)
    return status


async def test_an_unchanged_map_is_not_read_again(
    client: httpx.AsyncClient, show: dict[str, Any]
) -> None:
    url = f"/shows/{show['id']}/seats"
    first = await client.get(url)
    reads = await seat_reads(client)
    for _ in range(5):
        again = await client.get(url)
        assert again.status_code == 200 and again.content == first.content
    assert await seat_reads(client) == reads


async def test_misses_at_the_same_moment_share_one_read(
    client: httpx.AsyncClient, server: ServerProcess, cluster: Cluster
) -> None:
    show = await create_show(client)
    reads = await seat_reads(client)
    # The read cannot finish while the seats table is locked: the lock is let go once it
    # waits and every request of the burst is in (lock_timeout is 2 s on the server's side).
    shard = await cluster.connect_shard(show["shard"])
    try:
        async with shard.transaction():
            await shard.execute("LOCK TABLE seats IN ACCESS EXCLUSIVE MODE")
            burst = asyncio.gather(*(client.get(f"/shows/{show['id']}/seats") for _ in range(30)))
            await wait_until(lambda: lock_waiters(shard, "seats"), 1.5, "the read")
            await wait_until(lambda: server.connections() >= 30, 1.5, "the burst")
        answers = await burst
    finally:
        await shard.close()
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert await seat_reads(client) == reads + 1


async def test_a_hold_shows_in_the_next_map_on_this_server_and_the_other(
    two_servers: TwoServers, show: dict[str, Any], user: str
) -> None:
    here, there = two_servers
    url = f"/shows/{show['id']}/seats"
    before_here = (await here.get(url)).json()
    before_there = (await there.get(url)).json()
    assert status_of(before_here, "A1") == status_of(before_there, "A1") == "AVAILABLE"

    hold = await here.post(f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user))
    assert hold.status_code == 201, hold.text
    # the server that committed it: at once (usually the change is published before this
    # request arrives anyway; the test below covers the moments it is not)
    assert status_of((await here.get(url)).json(), "A1") == "HELD"

    # another server: as soon as the change is published (the show's offset moves)
    async def held_there() -> dict[str, Any] | None:
        seat_map: dict[str, Any] = (await there.get(url)).json()
        return seat_map if status_of(seat_map, "A1") == "HELD" else None

    now = await wait_until(held_there, what="the other server to serve the new map")
    assert now["offset"] != before_there["offset"]


async def test_a_forced_read_of_an_unchanged_map_does_not_read_the_seats_again(
    client: httpx.AsyncClient, show: dict[str, Any]
) -> None:
    """`no-cache` checks the kept map (one outbox probe, the offset) instead of reading and
    encoding every seat again: the amplifier of issue 12 item 4."""
    url = f"/shows/{show['id']}/seats"
    first = await client.get(url)
    reads, checks = await seat_reads(client), await queries(client, "seat_map_check")
    for _ in range(5):
        again = await client.get(url, headers=FORCED)
        assert again.status_code == 200 and again.content == first.content
    # a kept map is read again once it is a second old, forced or not: at most once here
    assert await seat_reads(client) - reads <= 1
    assert await queries(client, "seat_map_check") - checks >= 4


async def test_a_forced_read_sees_a_change_committed_before_it_on_either_server(
    two_servers: TwoServers, show: dict[str, Any], user: str
) -> None:
    here, there = two_servers
    url = f"/shows/{show['id']}/seats"
    for client in (here, there):  # both keep a map with A1 free
        assert status_of((await client.get(url)).json(), "A1") == "AVAILABLE"
    hold = await here.post(f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user))
    assert hold.status_code == 201, hold.text
    # no waiting: published or not yet, the change is there at once on both servers
    for client in (here, there):
        assert status_of((await client.get(url, headers=FORCED)).json(), "A1") == "HELD"


async def test_a_forced_read_sees_a_committed_change_that_was_never_published(
    two_servers: TwoServers, cluster: Cluster, show: dict[str, Any]
) -> None:
    """A change committed behind both servers' backs (as if its server died before
    publishing): no offset moved, no server was told; its outbox row is all there is."""
    here, there = two_servers
    url = f"/shows/{show['id']}/seats"
    kept = [(await client.get(url)).json() for client in (here, there)]
    assert [status_of(seat_map, "B2") for seat_map in kept] == ["AVAILABLE"] * 2
    shard = await cluster.connect_shard(show["shard"])
    try:
        held = await shard.fetchrow(
            "SELECT * FROM hold_seats($1, $2, $3, $4)",
            show["id"],
            ["B2"],
            f"{show['id']}.{secrets.token_hex(8)}",
            "someone",
        )
    finally:
        await shard.close()
    assert held["outcome"] == "held"
    # within the relay's two seconds: nobody has published it
    for client, before in zip((here, there), kept, strict=True):
        seat_map = (await client.get(url, headers=FORCED)).json()
        assert status_of(seat_map, "B2") == "HELD"
        assert seat_map["offset"] == before["offset"], "published: not what is tested"


async def test_forced_reads_at_the_same_moment_share_one_check(
    client: httpx.AsyncClient, server: ServerProcess, cluster: Cluster, show: dict[str, Any]
) -> None:
    """Forced reads that arrive while a check is under way wait for it, then share the next
    one: a burst costs two checks, not one each."""
    url = f"/shows/{show['id']}/seats"
    first = await client.get(url)
    reads = await seat_reads(client)
    checks = await queries(client, "seat_map_check")
    shard = await cluster.connect_shard(show["shard"])
    try:
        async with shard.transaction():
            # the first check (or read) cannot probe the outbox while it is locked
            await shard.execute("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
            burst = asyncio.gather(*(client.get(url, headers=FORCED) for _ in range(30)))
            await wait_until(lambda: lock_waiters(shard, "outbox"), 1.5, "the check")
            await wait_until(lambda: server.connections() >= 30, 1.5, "the burst")
        answers = await burst
    finally:
        await shard.close()
    assert {a.status_code for a in answers} == {200}
    assert {a.content for a in answers} == {first.content}
    spent = await seat_reads(client) - reads + await queries(client, "seat_map_check") - checks
    assert spent <= 2


class CountingRouter:
    """The router SeatMaps is given, counting its reads; `gate`, when set, holds each read
    until it is opened."""

    def __init__(self, router: ShardRouter) -> None:
        self.router = router
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def for_show(self, show_id: int, *, fresh: bool = False) -> tuple[ShowInfo, Shard]:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return await self.router.for_show(show_id, fresh=fresh)


async def test_a_change_committed_here_is_in_the_next_map_before_it_is_published(
    router: ShardRouter, client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    """In this process, with an offset that never moves: as if no change were published."""
    counting = CountingRouter(router)

    async def unpublished(show_id: int) -> str:
        return "epoch:7"

    maps = SeatMaps(counting, unpublished)  # type: ignore[arg-type]
    show_id = int(show["id"])
    assert status_of(json.loads((await maps.get(show_id)).identity), "A1") == "AVAILABLE"
    hold = await client.post(f"/shows/{show_id}/holds", json={"seats": ["A1"]}, headers=auth(user))
    assert hold.status_code == 201, hold.text
    # nothing published, under a second old: the kept map is served
    assert status_of(json.loads((await maps.get(show_id)).identity), "A1") == "AVAILABLE"
    assert counting.reads == 1
    maps.changed(show_id)  # what the server does when its own transaction commits
    assert status_of(json.loads((await maps.get(show_id)).identity), "A1") == "HELD"
    assert counting.reads == 2

    # a request that arrives after a change committed here does not wait for a read that
    # was under way before it
    counting.gate = asyncio.Event()
    maps.changed(show_id)
    under_way = asyncio.ensure_future(maps.get(show_id))
    await wait_until(lambda: counting.reads == 3, what="the first read to be under way")
    maps.changed(show_id)
    after = asyncio.ensure_future(maps.get(show_id))
    await wait_until(lambda: counting.reads == 4, what="the later request's own read")
    counting.gate.set()
    await asyncio.gather(under_way, after)

    # a read under way when a change commits here is served to whoever asked for it, but not
    # kept: the next request reads again
    counting.gate = asyncio.Event()
    maps.changed(show_id)
    started = counting.reads
    under_way = asyncio.ensure_future(maps.get(show_id))
    await wait_until(lambda: counting.reads == started + 1, what="the read to be under way")
    maps.changed(show_id)
    counting.gate.set()
    await under_way
    counting.gate = None
    reads = counting.reads
    await maps.get(show_id)
    assert counting.reads == reads + 1
    await maps.get(show_id)
    assert counting.reads == reads + 1  # and that read is kept


async def test_a_map_with_a_lapsed_hold_is_read_again(
    sweepless_server: ServerProcess, user: str
) -> None:
    # no sweeper: only the map's own deadline can notice that the hold lapsed
    async with httpx.AsyncClient(base_url=sweepless_server.url, timeout=30) as client:
        show = await create_show(client, rows=1, seats_per_row=3, hold_seconds=5)
        url = f"/shows/{show['id']}/seats"
        hold = await client.post(
            f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user)
        )
        assert hold.status_code == 201, hold.text
        lapses_in = datetime.fromisoformat(hold.json()["expires_at"]).timestamp() - time.time()
        # keep a map read less than a second before the hold lapses (a map is kept for a
        # second at most), then ask again just after it lapsed: these two sleeps are the
        # time that passes in what is tested, not a wait for something to happen
        await asyncio.sleep(lapses_in - 0.5)
        held = (await client.get(url)).json()
        assert status_of(held, "A1") == "HELD"
        await asyncio.sleep(0.6)
        lapsed = (await client.get(url)).json()
        assert status_of(lapsed, "A1") == "AVAILABLE"
        assert lapsed["offset"] == held["offset"], "something published: not the deadline"
