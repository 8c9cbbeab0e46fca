"""Seat requests that reach a shard at the same moment share a transaction.

Most of what a hold costs is per transaction, not per seat: a round trip, a commit (a WAL
flush), and this server's bookkeeping around a query. So each shard runs at most
IN_FLIGHT batches at a time; requests that arrive meanwhile wait for the next, which takes
up to `max_batch` of them in one call of seat_batch() (sql/shard/functions/
seat_transactions.sql). A quiet server sends each request at once, alone in its batch: a
request never waits for company.

A request comes back as None when it must run alone instead: its rows were locked by
another transaction in BUSY_TRIES batches (a batch never waits), or the batch's
transaction failed, which changed nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from app.ops.metrics import SEAT_BATCH_SIZE, SEAT_REQUESTS_ALONE
from app.outcomes import Outcome
from app.shards import Shard

log = logging.getLogger("modex.batches")

SEAT_BATCH = "SELECT * FROM seat_batch($1, $2, $3, $4, $5, $6, $7, $8, $9)"
# Batches running at once per shard: enough to keep a shard's cores busy while the next
# batch fills, few enough that requests under load gather into batches.
IN_FLIGHT = 4
# batches a request whose rows are locked elsewhere tries before it runs alone
BUSY_TRIES = 2


@dataclass(frozen=True, slots=True)
class SeatRequest:
    kind: Literal["hold", "release", "confirm", "book"]
    show_id: int
    hold_id: str | None  # none for a book
    user_id: str
    labels: tuple[str, ...] = ()  # a hold's or book's seats
    booking_id: str | None = None  # a confirm's or book's new booking
    idempotency_key: str | None = None
    request_id: str | None = None  # for the audit trail
    # the caller's sales channels: a request with any runs alone (seat_batch() claims for
    # general sale only)
    channels: tuple[str, ...] = ()


def batch_arguments(batch: list[SeatRequest]) -> tuple[list[Any], ...]:
    """seat_batch()'s arguments: one array per field, the holds' seats end to end."""
    labels: list[str] = []
    label_ends: list[int] = []
    for request in batch:
        labels.extend(request.labels)
        label_ends.append(len(labels))
    return (
        [request.kind for request in batch],
        [request.show_id for request in batch],
        [request.hold_id for request in batch],
        [request.user_id for request in batch],
        labels,
        label_ends,
        [request.booking_id for request in batch],
        [request.idempotency_key for request in batch],
        [request.request_id for request in batch],
    )


class _Waiting:
    __slots__ = ("busy", "done", "request")

    def __init__(self, request: SeatRequest) -> None:
        self.request = request
        self.done: asyncio.Future[asyncpg.Record | None] = (
            asyncio.get_running_loop().create_future()
        )
        self.busy = 0  # batches that found its rows locked elsewhere

    def answer(self, row: asyncpg.Record | None) -> None:
        if not self.done.done():  # its request may have been cancelled meanwhile
            self.done.set_result(row)


class _ShardQueue:
    def __init__(self) -> None:
        self.waiting: list[_Waiting] = []
        self.running = 0


class SeatBatches:
    def __init__(self, max_batch: int, in_flight: int = IN_FLIGHT) -> None:
        self.max_batch = max_batch
        self.in_flight = in_flight
        self._queues: dict[Shard, _ShardQueue] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, shard: Shard, request: SeatRequest) -> asyncpg.Record | None:
        """The request's row from seat_batch(), or None if it must run alone."""
        queue = self._queues.setdefault(shard, _ShardQueue())
        waiting = _Waiting(request)
        queue.waiting.append(waiting)
        if queue.running < self.in_flight:
            queue.running += 1
            task = asyncio.create_task(self._drain(shard, queue))
            self._tasks.add(task)  # a running task must be referenced, or it may be collected
            task.add_done_callback(self._tasks.discard)
        return await waiting.done

    async def _drain(self, shard: Shard, queue: _ShardQueue) -> None:
        """Sends batches while requests are waiting."""
        try:
            while queue.waiting:
                batch = queue.waiting[: self.max_batch]
                del queue.waiting[: self.max_batch]
                try:
                    rows = await self._send(shard, [waiting.request for waiting in batch])
                except BaseException as exc:
                    for waiting in batch:
                        if waiting.done.done():
                            continue
                        if isinstance(exc, Exception):
                            waiting.done.set_exception(exc)
                        else:
                            waiting.done.cancel()
                    if not isinstance(exc, Exception):
                        raise
                    continue
                again = []
                for waiting, row in zip(batch, rows or [None] * len(batch), strict=True):
                    if row is None or row["outcome"] != Outcome.BUSY:
                        waiting.answer(row)
                        continue
                    # Its rows were locked by a transaction that is likely over by the next
                    # batch (most often another batch): try that one first, then alone.
                    waiting.busy += 1
                    if waiting.busy < BUSY_TRIES:
                        again.append(waiting)
                    else:
                        SEAT_REQUESTS_ALONE.labels("busy").inc()
                        waiting.answer(None)
                queue.waiting[:0] = again
        finally:
            queue.running -= 1

    async def _send(self, shard: Shard, batch: list[SeatRequest]) -> list[asyncpg.Record] | None:
        """seat_batch()'s rows, or None if the batch failed (and so changed nothing)."""
        SEAT_BATCH_SIZE.observe(len(batch))
        try:
            async with shard.connection("seat_batch") as conn:
                rows: list[asyncpg.Record] = await conn.fetch(SEAT_BATCH, *batch_arguments(batch))
        except asyncpg.PostgresError as exc:
            # PostgreSQL refused the batch and rolled it back: each request runs alone
            log.warning("a batch of %d seat requests failed, each runs alone: %r", len(batch), exc)
            SEAT_REQUESTS_ALONE.labels("failed").inc(len(batch))
            return None
        return rows
