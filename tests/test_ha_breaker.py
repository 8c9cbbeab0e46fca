"""A shard's circuit breaker sees every lost connection, and lets a failed-over shard sell
again within a second of its new primary answering."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import ShardUnavailable
from app.shards import ShardRouter
from tests.support import Cluster, wait_until

RUNNING = "SELECT state = 'active' FROM pg_stat_activity WHERE pid = $1"


async def test_a_connection_lost_mid_query_counts_for_the_breaker(
    router: ShardRouter, cluster: Cluster
) -> None:
    shard = router.shard(1)
    admin = await cluster.connect_shard(1)
    try:

        async def query() -> None:
            async with shard.connection("test") as conn:
                pid = await conn.fetchval("SELECT pg_backend_pid()")
                waiting = asyncio.create_task(conn.fetchval("SELECT pg_sleep(5)"))
                await wait_until(
                    lambda: admin.fetchval(RUNNING, pid), what="the query to be under way"
                )
                await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                await waiting

        # asyncpg hands a connection it saw close back to the pool at once: terminating
        # it again raised InterfaceError, which escaped the breaker as a plain 503
        with pytest.raises(ShardUnavailable):
            await query()
        assert shard.breaker.failures == 1
        async with shard.connection("test") as conn:  # the pool replaced it
            assert await conn.fetchval("SELECT 1") == 1
        assert shard.breaker.failures == 0
    finally:
        await admin.close()
