"""The periodic per-show check, the last line of defence: a change that reached neither the
outbox nor pub/sub, or an event lost silently, still reaches every watcher."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from app.realtime.checks import CHECK_GRACE, CHECK_INTERVAL
from app.realtime.keys import RedisKeys
from tests.realtime.watch import Watcher, converge, seat_order
from tests.support import Cluster, ServerProcess

WITHIN = CHECK_INTERVAL + CHECK_GRACE + 2


@pytest.mark.slow
async def test_a_seat_change_nobody_published_is_found_by_the_version_check(
    servers: list[ServerProcess],
    cluster: Cluster,
    client: httpx.AsyncClient,
    show: dict[str, Any],
) -> None:
    show_id = show["id"]
    order = await seat_order(client, show_id)
    async with Watcher(servers[0].ws_url) as a, Watcher(servers[1].ws_url) as b:
        await a.subscribe(show_id, order)
        await b.subscribe(show_id, order)
        shard = await cluster.connect_shard(show["shard"])
        try:
            # behind the application's back: no outbox row, no event
            await shard.execute(
                "UPDATE seats SET version = version + 1 WHERE show_id = $1 AND label = 'C5'",
                show_id,
            )
        finally:
            await shard.close()
        # a forced map read trusts the outbox for a second, so wait for the resync itself
        for watcher in (a, b):
            await watcher.wait_for(lambda f: f["type"] == "snapshot", since=1, within=WITHIN)
        await converge([a, b], client, show, within=WITHIN)


@pytest.mark.slow
async def test_an_event_lost_between_redis_and_the_instance_is_found_by_the_position_check(
    server: ServerProcess,
    client: httpx.AsyncClient,
    show: dict[str, Any],
    redis: aioredis.Redis,
    redis_keys: RedisKeys,
) -> None:
    show_id = show["id"]
    order = await seat_order(client, show_id)
    async with Watcher(server.ws_url) as watcher:
        await watcher.subscribe(show_id, order)
        # an offset was taken but its PUBLISH never arrived
        await redis.hincrby(redis_keys.meta(show_id), "n", 1)
        resync = await watcher.wait_for(lambda f: f["type"] == "snapshot", since=1, within=WITHIN)
        assert resync["offset"].endswith(":1")
