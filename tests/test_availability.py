"""Seat counts under a crowd: every seat change deletes a show's cached counts, so during an
on-sale the list and availability reads miss the cache; a burst of them counts once."""

from __future__ import annotations

import asyncio
import re

import httpx
import redis.asyncio as aioredis

from app.shows import availability_key
from tests.support import Services, auth, create_show

COUNTS_RUN = re.compile(
    r'^db_query_duration_seconds_count\{query_type="count_seats"\} (\S+)$', re.M
)


async def counts_run(client: httpx.AsyncClient) -> float:
    """How many times this server process has counted seats in a shard."""
    found = COUNTS_RUN.search((await client.get("/metrics")).text)
    return float(found.group(1)) if found else 0.0


async def test_a_burst_of_reads_after_a_change_counts_the_seats_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    show = await create_show(client, rows=60, seats_per_row=100)
    show_id = show["id"]
    hold = await client.post(f"/shows/{show_id}/holds", json={"seats": ["A1"]}, headers=auth("x"))
    assert hold.status_code == 201
    await asyncio.sleep(0.5)  # the hold's change is published (and the cache deleted) by now
    redis = aioredis.Redis.from_url(services.redis_url)
    try:
        await redis.delete(availability_key(show_id))  # as the hold's publish does
    finally:
        await redis.aclose()
    before = await counts_run(client)

    burst = await asyncio.gather(*(client.get(f"/shows/{show_id}/availability") for _ in range(40)))

    assert {r.status_code for r in burst} == {200}
    assert {(r.json()["AVAILABLE"], r.json()["HELD"]) for r in burst} == {(5999, 1)}
    # one count for the burst (a straggler may start a second); 40 without sharing
    assert await counts_run(client) - before <= 3
