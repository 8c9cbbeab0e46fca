"""Seat counts under a crowd: every seat change deletes a show's cached counts, so during an
on-sale the list and availability reads miss the cache; a burst of them counts once."""

from __future__ import annotations

import asyncio
import re

import httpx
import redis.asyncio as aioredis

from app.realtime.keys import RedisKeys
from tests.support import Cluster, auth, create_show, lock_waiters, wait_until

COUNTS_RUN = re.compile(
    r'^db_query_duration_seconds_count\{query_type="count_seats"\} (\S+)$', re.M
)


async def cache_lookups(redis: aioredis.Redis) -> int:
    """MGETs Redis has answered: each availability request looks its counts up with one."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def counts_run(client: httpx.AsyncClient) -> float:
    """How many times this server process has counted seats in a shard."""
    found = COUNTS_RUN.search((await client.get("/metrics")).text)
    return float(found.group(1)) if found else 0.0


async def test_a_burst_of_reads_after_a_change_counts_the_seats_once(
    client: httpx.AsyncClient,
    redis: aioredis.Redis,
    cluster: Cluster,
    redis_keys: RedisKeys,
) -> None:
    show = await create_show(client, rows=60, seats_per_row=100)
    show_id = show["id"]
    hold = await client.post(f"/shows/{show_id}/holds", json={"seats": ["A1"]}, headers=auth("x"))
    assert hold.status_code == 201
    # the hold's change is published (which deletes the cached counts) ...
    await wait_until(lambda: redis.xlen(redis_keys.stream(show_id)), what="the hold's event")
    await redis.delete(redis_keys.availability(show_id))  # ... and they are gone
    before = await counts_run(client)
    looked_up = await cache_lookups(redis)

    # The count cannot finish while the seats table is locked: the lock is let go once it
    # waits and every request of the burst has missed the cache, so joins it (lock_timeout
    # is 2 s on the server's side).
    shard = await cluster.connect_shard(show["shard"])
    try:
        async with shard.transaction():
            await shard.execute("LOCK TABLE seats IN ACCESS EXCLUSIVE MODE")
            burst_done = asyncio.gather(
                *(client.get(f"/shows/{show_id}/availability") for _ in range(40))
            )
            await wait_until(lambda: lock_waiters(shard, "seats"), 1.5, "the count")

            async def all_missed() -> bool:
                return await cache_lookups(redis) - looked_up >= 40

            await wait_until(all_missed, 1.5, "every request's cache lookup")
        burst = await burst_done
    finally:
        await shard.close()

    assert {r.status_code for r in burst} == {200}
    assert {(r.json()["AVAILABLE"], r.json()["HELD"]) for r in burst} == {(5999, 1)}
    assert await counts_run(client) - before == 1  # 40 without sharing
