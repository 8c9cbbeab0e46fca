"""Shard routing: the show directory (show -> shard) and one connection pool per database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
    # the server's max_connections is reached: it cannot take us now, as when it is down
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    # a connection the server terminated while it sat in the pool can be handed out
    # before asyncpg has seen the socket close; its next query raises this (asyncpg#1069)
    asyncpg.InternalClientError,
    # a write reached a standby: the primary moved (a failover); a new connection finds it
    asyncpg.ReadOnlySQLTransactionError,
)
log = logging.getLogger("app.shards")

# A show's shard changes only when an admin moves it, and a stale route corrects itself (the
# source answers `moved`, and the show is looked up afresh). So a cached entry older than
# this is served at once and refreshed in the background: no request waits on the metadata
# database for a show it has routed before, and one failing over pauses no shard's sales.
DIRECTORY_TTL = 5.0
# after a failed refresh (the metadata database did not answer), try again this much later
DIRECTORY_RETRY = 1.0

# a directory row as ShowInfo reads it: every query that makes one selects these
SHOW_COLUMNS = (
    "id, title, venue, starts_at, status, hold_seconds, shard, seats_total, max_seats_per_customer,"
    " single_seat_rule"
)
SHOW_BY_ID = f"SELECT {SHOW_COLUMNS} FROM shows WHERE id = $1"


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
    max_seats_per_customer: int
    single_seat_rule: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ShowInfo:
        return cls(**dict(row))


# A standby serves a read only while its replay lag is at most this (measured every
# REPLICA_CHECK_INTERVAL), and only once it has replayed the primary's WAL position read
# at the start of that read, waiting at most REPLICA_CATCH_UP for it.
REPLICA_MAX_LAG = 1.0
REPLICA_CHECK_INTERVAL = 0.5
REPLICA_CATCH_UP = 0.1
# Seconds the standby is behind: 0 when it has replayed all it received (an idle primary
# sends nothing, and the last replayed transaction's age would grow without any lag); no
# answer (NULL) when it receives nothing (its WAL receiver is down: it falls behind
# unseen). A promoted standby is a primary: 0.
REPLICA_LAG = """
SELECT CASE
  WHEN NOT pg_is_in_recovery() THEN 0
  WHEN NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver) THEN NULL
  WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
  ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())
END::float8
"""
PRIMARY_WAL_POSITION = "SELECT pg_current_wal_lsn()::text"
REPLAYED_UP_TO = "SELECT NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= $1::text::pg_lsn"


class Replica:
    """A standby of one shard (SHARD_READ_URLS) and how far behind it is."""

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self.url = url
        self.pool = pool
        self.lag: float | None = None  # seconds; None: unknown, down or not receiving
        self._checked_at = 0.0

    @property
    def usable(self) -> bool:
        fresh = time.monotonic() - self._checked_at < 4 * REPLICA_CHECK_INTERVAL
        return fresh and self.lag is not None and self.lag <= REPLICA_MAX_LAG

    def set_unusable(self) -> None:
        """Until the next check says otherwise (it failed a read, or lagged one)."""
        self.lag = None

    async def check(self) -> None:
        try:
            self.lag = await self.pool.fetchval(REPLICA_LAG, timeout=REPLICA_CHECK_INTERVAL * 2)
        except Exception as exc:
            if self.lag is not None:
                log.warning("standby %s skipped: %r", self.url, exc)
            self.lag = None
        self._checked_at = time.monotonic()

    async def watch(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(REPLICA_CHECK_INTERVAL)


class Shard:
    """One database: its pool and its circuit breaker (and a standby to read from)."""

    def __init__(
        self, index: int, url: str, pool: asyncpg.Pool, replica: Replica | None = None
    ) -> None:
        self.index = index
        self.url = url
        self.pool = pool
        self.breaker = CircuitBreaker(f"shard{index}")
        # a series from the start, so dashboards and alerts see every shard before it fails
        CIRCUIT_BREAKER_OPEN.labels(str(index)).set(0)
        self.replica = replica

    @asynccontextmanager
    async def reading(self, query_type: str) -> AsyncIterator[asyncpg.Connection]:
        """A connection for a read that decides no write (a seat map, seat counts): the
        standby's when it is usable and has replayed the primary's current WAL position,
        else the primary's. Every change committed (and so every offset published) before
        this call is then in what the standby shows: its state is the primary's at a
        moment after this call began, so a map read there may be paired with an offset
        read before it, as on the primary."""
        conn = await self._caught_up_replica()
        if conn is None:
            async with self.connection(query_type) as primary:
                yield primary
            return
        assert self.replica is not None
        started = time.perf_counter()
        try:
            yield conn
        except CONNECTION_ERRORS as exc:
            self.replica.set_unusable()
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
            raise ShardUnavailable(f"shard {self.index}'s standby did not answer") from exc
        finally:
            await self.replica.pool.release(conn)
            DB_QUERY_DURATION.labels(f"{query_type}_standby").observe(time.perf_counter() - started)

    async def _caught_up_replica(self) -> asyncpg.Connection | None:
        replica = self.replica
        if replica is None or not replica.usable:
            return None
        async with self.connection("wal_position") as primary:
            position = await primary.fetchval(PRIMARY_WAL_POSITION)
        try:
            conn = await replica.pool.acquire(timeout=REPLICA_CATCH_UP)
        except Exception:
            replica.set_unusable()
            return None
        try:
            deadline = time.monotonic() + REPLICA_CATCH_UP
            while not await conn.fetchval(REPLAYED_UP_TO, position):
                if time.monotonic() > deadline:
                    replica.set_unusable()  # behind: the primary reads until it catches up
                    await replica.pool.release(conn)
                    return None
                await asyncio.sleep(0.005)
        except Exception:
            replica.set_unusable()
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
            await replica.pool.release(conn)
            return None
        return conn

    @asynccontextmanager
    async def connection(self, query_type: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, timed, with connection failures counted by the breaker."""
        if not self.breaker.allow():
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
                # so the pool opens a new one instead of handing it out again; a connection
                # asyncpg saw close is already back in the pool, and its proxy refuses
                # terminate() with InterfaceError (which then escaped the breaker)
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.terminate()
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


# Every server connection runs with these. Sent in the startup packet when the app talks to
# PostgreSQL itself; through PgBouncer, which refuses startup parameters it does not know,
# its `connect_query` sets them on each server connection it opens (pgbouncer_connect_query).
SESSION_SETTINGS = {
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
}
# A statement runs for at most this long. Besides a hung database, a failover can leave a
# demoted primary that still takes writes and waits forever for a synchronous standby
# (statement_timeout does not end that wait): the client's own timeout is what answers.
COMMAND_TIMEOUT = 5.0


def pgbouncer_connect_query() -> str:
    """SESSION_SETTINGS as the SET statements of a PgBouncer database's connect_query."""
    # every value is a number or a word: no quotes inside PgBouncer's quoted value
    return " ".join(f"SET {name} = {value};" for name, value in SESSION_SETTINGS.items())


async def create_pool(url: str, size: int, *, pgbouncer: bool = False) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=size,
        timeout=5,  # to open a connection (over every host of a multi-host URL)
        command_timeout=COMMAND_TIMEOUT,
        reset=_no_reset,
        # PgBouncer 1.18 in transaction pooling hands each transaction any server
        # connection, where asyncpg's named prepared statements do not exist ("prepared
        # statement __asyncpg_stmt_1__ does not exist"), and 1.18 has no
        # max_prepared_statements to track them: no statement cache (unnamed statements,
        # parsed on every call). The seat functions' own plans stay cached server-side.
        statement_cache_size=0 if pgbouncer else 100,
        server_settings=None if pgbouncer else SESSION_SETTINGS,
    )


class ShardRouter:
    """Routes a show, hold id or booking id to its shard through the directory."""

    def __init__(self, meta: asyncpg.Pool, shards: list[Shard]) -> None:
        self.meta = meta
        self.shards = shards
        self._watching = [
            asyncio.create_task(shard.replica.watch())
            for shard in shards
            if shard.replica is not None
        ]
        # show -> (when it was read, what was read)
        self._directory: dict[int, tuple[float, ShowInfo]] = {}
        self._refreshing: dict[int, asyncio.Task[None]] = {}

    @classmethod
    async def connect(cls, settings: Settings) -> ShardRouter:
        size, pgbouncer = settings.db_pool_size, settings.pgbouncer
        meta = await create_pool(settings.database_url, size, pgbouncer=pgbouncer)
        shards = []
        for index, url in enumerate(settings.shard_urls):
            # the metadata database listed as a shard shares its pool
            pool = (
                meta
                if url == settings.database_url
                else await create_pool(url, size, pgbouncer=pgbouncer)
            )
            replica = None
            if index < len(settings.shard_read_urls) and (
                read_url := settings.shard_read_urls[index]
            ):
                # opened lazily: a standby that is down does not stop the server starting
                replica_pool = asyncpg.create_pool(
                    read_url,
                    min_size=0,
                    max_size=size,
                    timeout=2,
                    command_timeout=COMMAND_TIMEOUT,
                    reset=_no_reset,
                    statement_cache_size=0 if pgbouncer else 100,
                    server_settings=None if pgbouncer else SESSION_SETTINGS,
                )
                await replica_pool
                replica = Replica(read_url, replica_pool)
            shards.append(Shard(index, url, pool, replica))
        return cls(meta, shards)

    async def close(self) -> None:
        for task in [*self._refreshing.values(), *self._watching]:
            task.cancel()
        pools = {id(s.pool): s.pool for s in self.shards}
        pools |= {id(s.replica.pool): s.replica.pool for s in self.shards if s.replica}
        pools[id(self.meta)] = self.meta
        await asyncio.gather(*(pool.close() for pool in pools.values()))

    def shard(self, index: int) -> Shard:
        if not 0 <= index < len(self.shards):
            raise ShardUnavailable(f"shard {index} is not configured on this server")
        return self.shards[index]

    async def show(self, show_id: int, *, fresh: bool = False) -> ShowInfo:
        """The show's directory entry. `fresh`: read now (a route found stale, or a caller
        that shows the show's own fields), else a cached one, however old: an entry past
        DIRECTORY_TTL is refreshed in the background."""
        cached = self._directory.get(show_id)
        if cached is None or fresh:
            return await self._look_up(show_id)
        if time.monotonic() - cached[0] >= DIRECTORY_TTL and show_id not in self._refreshing:
            task = asyncio.create_task(self._refresh(show_id, cached[1]))
            self._refreshing[show_id] = task
            task.add_done_callback(lambda _: self._refreshing.pop(show_id, None))
        return cached[1]

    async def _look_up(self, show_id: int) -> ShowInfo:
        row = await self.meta.fetchrow(SHOW_BY_ID, show_id)
        if row is None:
            self._directory.pop(show_id, None)
            raise ShowNotFound(f"show {show_id} does not exist")
        info = ShowInfo.from_row(row)
        self._directory[show_id] = (time.monotonic(), info)
        return info

    async def _refresh(self, show_id: int, cached: ShowInfo) -> None:
        try:
            await self._look_up(show_id)
        except ShowNotFound:
            pass
        except Exception as exc:
            # keep routing by what we had (unless it was forgotten meanwhile); ask again in
            # a moment, not on every request
            log.warning("show directory unreachable, routing by cache: %r", exc)
            if (entry := self._directory.get(show_id)) is not None and entry[1] is cached:
                retry_at = time.monotonic() - DIRECTORY_TTL + DIRECTORY_RETRY
                self._directory[show_id] = (retry_at, cached)

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
