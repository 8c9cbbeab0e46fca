"""The seat writes reach their seats through the primary key, in label order.

A claim's UPDATE locks seats in the order it reaches them, so the plan is part of the
deadlock-freedom argument in sql/shard/functions/seat_transactions.sql: a sequential or
bitmap scan would lock them in the table's physical order instead.
"""

from __future__ import annotations

import json
from typing import Any

from app.realtime.outbox import LOCK_LEFT_BEHIND
from app.shards import create_pool
from tests.support import Cluster

CLAIM = """
UPDATE seats SET status = 'HELD', version = version + 1
WHERE show_id = $1 AND label = ANY($2)
  AND (status = 'AVAILABLE' OR (status = 'HELD' AND held_until <= now()))
"""


def scans(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    found = [(plan["Node Type"], plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


async def test_a_claim_walks_the_primary_key_with_the_servers_settings(
    cluster: Cluster, show: dict[str, Any]
) -> None:
    for url in cluster.shard_urls:
        pool = await create_pool(url, 1)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(f"PREPARE claim(bigint, text[]) AS {CLAIM}")
                show_id = int(show["id"])
                raw = await conn.fetchval(
                    f"EXPLAIN (FORMAT JSON) EXECUTE claim({show_id}, '{{A1,A2}}')"
                )
                await conn.execute("DEALLOCATE claim")
        finally:
            await pool.close()
        plan = json.loads(raw)[0]["Plan"]
        nodes = scans(plan)
        assert ("Index Scan", "seats_pkey") in nodes, nodes
        assert not any("Seq Scan" in n or "Bitmap" in n for n, _ in nodes), nodes


async def test_the_outbox_relays_scan_is_not_compiled(cluster: Cluster) -> None:
    """The relay's query has no index to use. PostgreSQL 15-17 price a scan disabled by
    enable_seqscan=off at 10^10, far above jit_above_cost, and compiled it with LLVM once a
    second: a tenth of PostgreSQL's CPU under load. (18, the embedded server, counts
    disabled scans apart instead, so there the plan is never dear enough to compile.)"""
    query = f"EXPLAIN (FORMAT JSON) {LOCK_LEFT_BEHIND}".replace("$1", "500")
    pool = await create_pool(cluster.shard_urls[0], 1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            ours = json.loads(await conn.fetchval(query))[0]
            await conn.execute("SET LOCAL jit = on")
            with_jit = json.loads(await conn.fetchval(query))[0]
            jit_available = await conn.fetchval("SELECT pg_jit_available()")
            threshold = float(await conn.fetchval("SHOW jit_above_cost"))
    finally:
        await pool.close()
    assert "JIT" not in ours, ours
    if jit_available and with_jit["Plan"]["Total Cost"] > threshold:
        assert "JIT" in with_jit, with_jit  # the setting is what spares the compile
