"""Seat counts under a crowd: every seat change deletes a show's cached counts, so during an
on-sale the list and availability reads miss the cache; a burst of them counts once."""

from __future__ import annotations

import asyncio
import re

import httpx
import redis.asyncio as aioredis

from app.realtime.keys import RedisKeys
from tests.support import Cluster, auth, create_show

COUNTS_RUN = re.compile(
    r'^db_query_duration_seconds_count\{query_type="count_seats"\} (\S+)$', re.M
)


async def counts_run(client: httpx.AsyncClient) -> float:
    """How many times this server process has counted seats in a shard."""
    found = COUNTS_RUN.search((await client.get("/metrics")).text)
    return float(found.group(1)) if found else 0.0


async def test_a_burst_of_reads_after_a_change_counts_the_seats_once(
    client: httpx.AsyncClient, redis: aioredis.Redis, cluster: Cluster, redis_keys: RedisKeys
) -> None:
    show = await create_show(client, rows=60, seats_per_row=100)
    try:
        show_id = show["id"]
        hold = await client.post(
            f"/shows/{show_id}/holds", json={"seats": ["A1"]}, headers=auth("x")
        )
        assert hold.status_code == 201
        await asyncio.sleep(0.5)  # the hold's change is published (and the cache deleted) by now
        await redis.delete(redis_keys.availability(show_id))  # as the hold's publish does
        before = await counts_run(client)

        # The count cannot finish while the seats table is locked, so every request of the
        # burst arrives while it is under way (lock_timeout is 2 s on the server's side).
        shard = await cluster.connect_shard(show["shard"])
        try:
            async with shard.transaction():
                await shard.execute("LOCK TABLE seats IN ACCESS EXCLUSIVE MODE")
                burst_done = asyncio.gather(
                    *(client.get(f"/shows/{show_id}/availability") for _ in range(40))
                )
                await asyncio.sleep(1.0)
            burst = await burst_done
        finally:
            await shard.close()

        assert {r.status_code for r in burst} == {200}
        assert {(r.json()["AVAILABLE"], r.json()["HELD"]) for r in burst} == {(5999, 1)}
        assert await counts_run(client) - before == 1  # 40 without sharing
    finally:
        # ended, so its 6,000 seats no longer weigh on where new shows are placed
        # (tests/test_concurrency.py needs a few small shows to cover both shards)
        ended = await client.patch(
            f"/admin/shows/{show['id']}", json={"status": "ENDED"}, headers=auth("admin", "admin")
        )
        assert ended.status_code == 200, ended.text
