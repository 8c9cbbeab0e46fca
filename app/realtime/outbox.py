"""The transactional outbox, from the publishing side.

The core writes an outbox row in the same transaction as every seat change. Right after
commit this process publishes the change (the fast path) and deletes the row, in batches.
Rows left behind for more than a moment (the committing process died, Redis was down)
are relayed by any live instance: locked with SKIP LOCKED so instances share the work,
published, and deleted in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict

from msgspec import Raw

from app.realtime import metrics
from app.realtime.broker import Broker
from app.realtime.frames import SeatsEvent, encoder
from app.shards import Shard, ShardRouter

log = logging.getLogger("modex.realtime.outbox")

RELAY_INTERVAL = 1.0
RELAY_BATCH = 500
DELETE_EVERY = 0.1

DELETE_PUBLISHED = """
DELETE FROM outbox
WHERE (show_id, id) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))
"""
# a row this old was left behind; younger ones may still be on the fast path, which a busy
# event loop (a fan-out to thousands) can delay past a second: relaying them too would only
# publish them twice
LOCK_LEFT_BEHIND = """
SELECT show_id, id, changes, extract(epoch FROM created_at)::float8 AS ts
FROM outbox
WHERE created_at < now() - interval '2 seconds'
ORDER BY created_at
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
COUNT_BACKLOG = "SELECT count(*) FROM outbox"


def seats_event(show_id: int, changes_json: str, committed_at: float) -> bytes:
    """The published form of a seat change (frames.SeatsEvent) from an outbox row's
    changes and its commit time in unix seconds."""
    event = SeatsEvent(show_id=show_id, changes=Raw(changes_json), ts=round(committed_at * 1000))
    return encoder.encode(event)


class Outbox:
    def __init__(self, router: ShardRouter, broker: Broker) -> None:
        self._router = router
        self._broker = broker
        self._to_publish: list[tuple[int, int, int, bytes]] = []
        self._publishable = asyncio.Event()
        self._to_delete: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self._deletable = asyncio.Event()

    def queue_committed(
        self,
        show_id: int,
        shard: int,
        outbox_id: int,
        changes_json: str,
        committed_at: float,
    ) -> None:
        """The fast path, step 1: queue a committed change; publish_queued sends it."""
        self._to_publish.append(
            (show_id, shard, outbox_id, seats_event(show_id, changes_json, committed_at))
        )
        self._publishable.set()

    async def publish_queued(self) -> None:
        """The fast path, step 2: publish whatever commits queued up meanwhile in one Redis
        round trip, then queue their rows for deletion. If publishing fails, the rows stay
        and the relay retries them."""
        while True:
            await self._publishable.wait()
            self._publishable.clear()
            await self._publish_batch()

    async def _publish_batch(self) -> None:
        batch, self._to_publish = self._to_publish, []
        if not batch:
            return
        try:
            await self._broker.publish_many([(show, event) for show, _, _, event in batch])
        except Exception as exc:
            log.warning(
                "publishing %d seat changes failed, the relay will retry: %r", len(batch), exc
            )
            return
        metrics.events_published.labels("fast").inc(len(batch))
        for show_id, shard, outbox_id, _ in batch:
            self._to_delete[shard].append((show_id, outbox_id))
        self._deletable.set()

    async def delete_published(self) -> None:
        """Deletes published rows, one statement per shard for whatever piled up. Each
        delete is a commit (a WAL flush), so they are gathered for DELETE_EVERY seconds:
        well inside the relay's one second, far fewer commits under load."""
        while True:
            await self._deletable.wait()
            self._deletable.clear()
            await self._delete_batch()
            await asyncio.sleep(DELETE_EVERY)

    async def _delete_batch(self) -> None:
        batches, self._to_delete = self._to_delete, defaultdict(list)
        for index, rows in batches.items():
            shows = [show_id for show_id, _ in rows]
            ids = [outbox_id for _, outbox_id in rows]
            try:
                shard = self._router.shard(index)
                async with shard.connection("outbox_delete") as conn:
                    await conn.execute(DELETE_PUBLISHED, shows, ids)
            except Exception as exc:
                # left behind: the relay publishes them again (harmless, versions decide)
                log.warning("deleting %d outbox rows on shard %s failed: %r", len(rows), index, exc)

    async def flush(self) -> None:
        """On shutdown: publish what is queued and delete what was published."""
        with contextlib.suppress(Exception):
            await self._publish_batch()
            await self._delete_batch()

    async def relay(self) -> None:
        """On every instance: publish rows the fast path left behind."""
        while True:
            await asyncio.sleep(RELAY_INTERVAL)
            for shard in self._router.shards:
                try:
                    while await self.relay_shard(shard) >= RELAY_BATCH:
                        pass
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("outbox relay on shard %s failed: %r", shard.index, exc)

    async def relay_shard(self, shard: Shard) -> int:
        async with shard.connection("outbox_relay") as conn:
            backlog = await conn.fetchval(COUNT_BACKLOG)
            metrics.outbox_backlog.labels(str(shard.index)).set(backlog)
            if not backlog:
                return 0
            async with conn.transaction():
                rows = await conn.fetch(LOCK_LEFT_BEHIND, RELAY_BATCH)
                # one Redis round trip for the batch: the transaction (and its row locks)
                # must stay short even on a busy event loop
                await self._broker.publish_many(
                    [(r["show_id"], seats_event(r["show_id"], r["changes"], r["ts"])) for r in rows]
                )
                if rows:
                    await conn.execute(
                        DELETE_PUBLISHED, [r["show_id"] for r in rows], [r["id"] for r in rows]
                    )
        if rows:
            metrics.events_published.labels("relay").inc(len(rows))
            oldest = min(r["ts"] for r in rows)
            log.warning(
                "relayed %d outbox rows on shard %s, oldest %.1fs old",
                len(rows),
                shard.index,
                time.time() - oldest,
            )
        return len(rows)
