"""Shard routing: the show directory (show -> shard) and one connection pool per database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.config import Settings
from app.domain import show_of_client_id
from app.errors import NotFound, ShardUnavailable, ShowNotFound
from app.ops.breaker import CircuitBreaker
from app.ops.metrics import CIRCUIT_BREAKER_OPEN, DB_QUERY_DURATION

# failures that mean "the database did not answer", as opposed to an answer we dislike
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    # a connection the server terminated while it sat in the pool can be handed out
    # before asyncpg has seen the socket close; its next query raises this (asyncpg#1069)
    asyncpg.InternalClientError,
)
# a show's shard changes only when an admin moves it; a short cache bounds a stale route
DIRECTORY_TTL = 5.0

SHOW_BY_ID = """
SELECT id, title, venue, starts_at, status, hold_seconds, shard, seats_total
FROM shows WHERE id = $1
"""


@dataclass(frozen=True, slots=True)
class ShowInfo:
    id: int
    title: str
    venue: str
    starts_at: datetime
    status: str
    hold_seconds: int
    shard: int
    seats_total: int

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ShowInfo:
        return cls(**dict(row))


class Shard:
    """One database: its pool and its circuit breaker."""

    def __init__(self, index: int, url: str, pool: asyncpg.Pool) -> None:
        self.index = index
        self.url = url
        self.pool = pool
        self.breaker = CircuitBreaker(f"shard{index}")

    @asynccontextmanager
    async def connection(self, query_type: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, timed, with connection failures counted by the breaker."""
        if self.breaker.is_open:
            raise ShardUnavailable(
                f"shard {self.index} is unavailable", retry_after=self.breaker.retry_after()
            )
        started = time.perf_counter()
        try:
            try:
                # Any failure to open a connection (refused, auth, database gone, connect
                # timeout) is an outage. Waiting for a free pooled connection is not: under
                # load requests queue here rather than trip the breaker.
                conn = await self.pool.acquire()
            except Exception as exc:
                raise self._failed(exc) from exc
            try:
                yield conn
            except CONNECTION_ERRORS as exc:
                conn.terminate()  # so the pool opens a new one instead of handing it out again
                raise self._failed(exc) from exc
            finally:
                await self.pool.release(conn)
            if self.breaker.failures:
                CIRCUIT_BREAKER_OPEN.labels(str(self.index)).set(0)
            self.breaker.record_success()
        finally:
            DB_QUERY_DURATION.labels(query_type).observe(time.perf_counter() - started)

    def _failed(self, exc: BaseException) -> ShardUnavailable:
        self.breaker.record_failure()
        CIRCUIT_BREAKER_OPEN.labels(str(self.index)).set(1 if self.breaker.is_open else 0)
        return ShardUnavailable(
            f"shard {self.index} did not answer", retry_after=self.breaker.retry_after() or 1
        )


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Nothing to reset: no code keeps session state (no SET, LISTEN or advisory locks
    outside a transaction), so skip the round trip asyncpg spends on every release."""


async def create_pool(url: str, size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=size,
        timeout=5,  # to open a connection
        command_timeout=10,  # a hung database must not hang requests
        reset=_no_reset,
        server_settings={
            # a seat lock is held for microseconds; waiting seconds means something is wrong
            "lock_timeout": "2000",
            "idle_in_transaction_session_timeout": "10000",
            # every query is keyed by show_id and a few labels, so one plan suits every call;
            # left to choose, PostgreSQL planned the seat functions' array queries afresh on
            # every call, a third of its CPU under load
            "plan_cache_mode": "force_generic_plan",
            # ... and that plan walks the primary key in label order, one probe per seat (a
            # claim's UPDATE locks its seats in the order it reaches them). Without these a
            # generic plan on a small shard scanned the whole show, in physical order.
            "enable_seqscan": "off",
            "enable_bitmapscan": "off",
            # ... which (PostgreSQL 15-17) prices the one scan that has no index, the outbox
            # relay's once a second, above jit_above_cost: compiling it with LLVM cost a
            # tenth of PostgreSQL's CPU under load. Every query here is short: none gains.
            "jit": "off",
        },
    )


class ShardRouter:
    """Routes a show, hold id or booking id to its shard through the directory."""

    def __init__(self, meta: asyncpg.Pool, shards: list[Shard]) -> None:
        self.meta = meta
        self.shards = shards
        self._directory: dict[int, tuple[float, ShowInfo]] = {}

    @classmethod
    async def connect(cls, settings: Settings) -> ShardRouter:
        meta = await create_pool(settings.database_url, settings.db_pool_size)
        shards = []
        for index, url in enumerate(settings.shard_urls):
            # the metadata database listed as a shard shares its pool
            pool = (
                meta
                if url == settings.database_url
                else await create_pool(url, settings.db_pool_size)
            )
            shards.append(Shard(index, url, pool))
        return cls(meta, shards)

    async def close(self) -> None:
        pools = {id(s.pool): s.pool for s in self.shards}
        pools[id(self.meta)] = self.meta
        await asyncio.gather(*(pool.close() for pool in pools.values()))

    def shard(self, index: int) -> Shard:
        if not 0 <= index < len(self.shards):
            raise ShardUnavailable(f"shard {index} is not configured on this server")
        return self.shards[index]

    async def show(self, show_id: int, *, fresh: bool = False) -> ShowInfo:
        cached = self._directory.get(show_id)
        if cached and not fresh and time.monotonic() - cached[0] < DIRECTORY_TTL:
            return cached[1]
        row = await self.meta.fetchrow(SHOW_BY_ID, show_id)
        if row is None:
            self._directory.pop(show_id, None)
            raise ShowNotFound(f"show {show_id} does not exist")
        info = ShowInfo.from_row(row)
        self._directory[show_id] = (time.monotonic(), info)
        return info

    def forget(self, show_id: int) -> None:
        self._directory.pop(show_id, None)

    async def for_show(self, show_id: int, *, fresh: bool = False) -> tuple[ShowInfo, Shard]:
        info = await self.show(show_id, fresh=fresh)
        return info, self.shard(info.shard)

    async def show_of(self, client_id: str, what: str) -> int:
        """A hold id or booking id carries its show (and so its shard): no scan."""
        show_id = show_of_client_id(client_id)
        if show_id is None:
            raise NotFound(f"{what} {client_id!r} does not exist")
        try:
            await self.show(show_id)
        except ShowNotFound:
            raise NotFound(f"{what} {client_id!r} does not exist") from None
        return show_id

    async def for_client_id(self, client_id: str, what: str) -> tuple[int, Shard]:
        show_id = await self.show_of(client_id, what)
        return show_id, self.shard((await self.show(show_id)).shard)


# Placement policy: a new show goes to the shard with the fewest seats of shows still to
# come (SCHEDULED or ON_SALE); ties go to the lowest index. Existing shows never move when
# a shard is added; the new, empty shard simply wins placements until it catches up.
LIVE_SEATS_PER_SHARD = """
SELECT shard, sum(seats_total)::bigint AS seats FROM shows
WHERE status IN ('SCHEDULED', 'ON_SALE') GROUP BY shard
"""


async def place_new_show(router: ShardRouter) -> int:
    rows = await router.meta.fetch(LIVE_SEATS_PER_SHARD)
    load = {row["shard"]: row["seats"] for row in rows}
    return min(range(len(router.shards)), key=lambda index: (load.get(index, 0), index))
