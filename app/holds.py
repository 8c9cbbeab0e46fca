"""The seat transactions: hold, extend, release, confirm, book, cancel, expire.

Every transaction runs on the show's shard and locks exactly the seats it touches, in label
order (LOCK_SEATS), so two transactions never wait on each other in a cycle. Every write
to a seat is checked against the hold or booking that owns it while the row is locked, so a
late confirm can never take a seat that was since resold. Each seat change writes an
outbox row in the same transaction; the realtime layer publishes it after commit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import asyncpg
import orjson
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from app import wire
from app.domain import BookingStatus, SeatStatus, ShowStatus, new_client_id
from app.errors import (
    BookingNotCancellable,
    Contention,
    ExtendLimit,
    HoldExpired,
    IdempotencyKeyReused,
    NotFound,
    SeatsUnavailable,
    ShowNotFound,
    ShowNotOnSale,
    UnknownSeats,
)
from app.events import Committed
from app.ops.metrics import BOOKINGS_TOTAL, HOLDS_EXPIRED_TOTAL, HOLDS_TOTAL
from app.shards import Shard, ShardRouter

T = TypeVar("T")

# Losing a lock race is normal under load: retry briefly, then answer 409, never 500.
RETRYABLE = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.LockNotAvailableError,
)

LOCK_SEATS = """
SELECT s.label, s.status, s.hold_id, s.booking_id, s.held_until <= now() AS lapsed,
       sh.status AS show_status, sh.hold_seconds
FROM seats s JOIN shard_shows sh ON sh.show_id = s.show_id
WHERE s.show_id = $1 AND s.label = ANY($2::text[])
ORDER BY s.label
FOR UPDATE OF s
"""
# The single write of seat state; the outbox row commits with it.
SET_SEATS = """
WITH changed AS (
    UPDATE seats
    SET status = $3, hold_id = $4, held_until = $5, booking_id = $6, version = version + 1
    WHERE show_id = $1 AND label = ANY($2::text[])
    RETURNING label, status, version
)
INSERT INTO outbox (show_id, changes)
SELECT $1, jsonb_agg(jsonb_build_object('label', label, 'status', status, 'version', version)
                     ORDER BY label)
FROM changed
RETURNING id, changes::text
"""
INSERT_HOLD = """
INSERT INTO holds (show_id, id, user_id, seats, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
RETURNING expires_at
"""
LOCK_HOLD = """
SELECT user_id, seats, status, expires_at, extensions, expires_at <= now() AS lapsed
FROM holds WHERE show_id = $1 AND id = $2
FOR UPDATE
"""
SET_HOLD_STATUS = "UPDATE holds SET status = $3 WHERE show_id = $1 AND id = $2"
EXTEND_HOLD = """
WITH show AS (SELECT hold_seconds FROM shard_shows WHERE show_id = $1)
UPDATE holds SET expires_at = now() + make_interval(secs => (SELECT hold_seconds FROM show)),
                 extensions = extensions + 1
WHERE show_id = $1 AND id = $2
RETURNING expires_at, extensions
"""
EXTEND_SEATS = """
UPDATE seats SET held_until = $3 WHERE show_id = $1 AND label = ANY($2::text[]) AND hold_id = $4
"""
BOOKING_COLUMNS = "id, show_id, user_id, seats, status, created_at, hold_id"
INSERT_BOOKING = f"""
INSERT INTO bookings (show_id, id, user_id, hold_id, seats, status, idempotency_key)
VALUES ($1, $2, $3, $4, $5, 'CONFIRMED', $6)
RETURNING {BOOKING_COLUMNS}
"""
BOOKING_BY_HOLD = f"SELECT {BOOKING_COLUMNS} FROM bookings WHERE show_id = $1 AND hold_id = $2"
BOOKING_BY_KEY = f"""
SELECT {BOOKING_COLUMNS} FROM bookings
WHERE show_id = $1 AND user_id = $2 AND idempotency_key = $3
"""
BOOKING_BY_ID = f"SELECT {BOOKING_COLUMNS} FROM bookings WHERE show_id = $1 AND id = $2"
LOCK_BOOKING = f"SELECT {BOOKING_COLUMNS} FROM bookings WHERE show_id = $1 AND id = $2 FOR UPDATE"
CANCEL_BOOKING = f"""
UPDATE bookings SET status = 'CANCELLED', updated_at = now() WHERE show_id = $1 AND id = $2
RETURNING {BOOKING_COLUMNS}
"""
BOOKINGS_OF_USER = f"""
SELECT {BOOKING_COLUMNS} FROM bookings WHERE user_id = $1 ORDER BY created_at DESC LIMIT 200
"""
EXPIRED_HOLDS = """
SELECT show_id, id, seats FROM holds
WHERE status = 'ACTIVE' AND expires_at <= now()
ORDER BY expires_at
LIMIT 200
FOR UPDATE SKIP LOCKED
"""


def _booking(row: asyncpg.Record) -> wire.Booking:
    return wire.Booking(**dict(row))


class BoxOffice:
    """The seat transactions of every show, routed to the show's shard."""

    def __init__(
        self,
        router: ShardRouter,
        on_commit: Callable[[Committed], None],
        max_extensions: int = 2,
    ) -> None:
        self.router = router
        self.on_commit = on_commit
        self.max_extensions = max_extensions

    # ---- the transaction wrapper: the only place a seat transaction begins ----

    async def _transaction(
        self, shard: Shard, name: str, work: Callable[[asyncpg.Connection], Awaitable[T]]
    ) -> T:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(RETRYABLE),
                stop=stop_after_attempt(3),
                wait=wait_random(0.005, 0.05),
                reraise=True,
            ):
                with attempt:
                    async with shard.connection(name) as conn, conn.transaction():
                        return await work(conn)
        except RETRYABLE as exc:
            raise Contention(
                "too many customers are after these seats right now; try again",
                retry_after=1,
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _published(self, show_id: int, shard: Shard, outbox: asyncpg.Record) -> Committed:
        committed = Committed(
            show_id=show_id,
            shard=shard.index,
            outbox_id=outbox["id"],
            changes=orjson.loads(outbox["changes"]),
            committed_at=time.time(),
        )
        return committed

    def _after_commit(self, committed: Iterable[Committed]) -> None:
        for item in committed:
            self.on_commit(item)

    # ---- shared steps inside a transaction ----

    @staticmethod
    async def _lock_seats(
        conn: asyncpg.Connection, show_id: int, labels: list[str]
    ) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await conn.fetch(LOCK_SEATS, show_id, labels)
        if len(rows) != len(labels):
            found = {row["label"] for row in rows}
            missing = sorted(set(labels) - found)
            if not found and not await conn.fetchval(
                "SELECT 1 FROM shard_shows WHERE show_id = $1", show_id
            ):
                raise ShowNotFound(f"show {show_id} is not on this shard")
            raise UnknownSeats(f"show {show_id} has no seat {', '.join(missing)}", seats=missing)
        return rows

    @staticmethod
    def _require_free(rows: list[asyncpg.Record]) -> None:
        show_status = rows[0]["show_status"]
        if show_status != ShowStatus.ON_SALE:
            raise ShowNotOnSale(f"this show is {show_status}, not on sale")
        taken = [
            row["label"]
            for row in rows
            if row["status"] == SeatStatus.BOOKED
            or (row["status"] == SeatStatus.HELD and not row["lapsed"])
        ]
        if taken:
            raise SeatsUnavailable(f"not available: {', '.join(taken)}", seats=taken)

    @staticmethod
    async def _set_seats(
        conn: asyncpg.Connection,
        show_id: int,
        labels: list[str],
        status: SeatStatus,
        *,
        hold_id: str | None = None,
        held_until: Any = None,
        booking_id: str | None = None,
    ) -> asyncpg.Record:
        row: asyncpg.Record = await conn.fetchrow(
            SET_SEATS, show_id, labels, status, hold_id, held_until, booking_id
        )
        return row

    async def _lock_own_hold(
        self, conn: asyncpg.Connection, show_id: int, hold_id: str, user_id: str
    ) -> asyncpg.Record:
        hold = await conn.fetchrow(LOCK_HOLD, show_id, hold_id)
        if hold is None or hold["user_id"] != user_id:
            # someone else's hold is indistinguishable from no hold
            raise NotFound(f"hold {hold_id!r} does not exist")
        return hold

    # ---- the operations ----

    async def hold(self, show_id: int, labels: list[str], user_id: str) -> wire.Hold:
        _, shard = await self.router.for_show(show_id)
        labels = sorted(labels)
        hold_id = new_client_id(show_id)

        async def work(conn: asyncpg.Connection) -> tuple[wire.Hold, Committed]:
            rows = await self._lock_seats(conn, show_id, labels)
            self._require_free(rows)
            expires_at = await conn.fetchval(
                INSERT_HOLD, show_id, hold_id, user_id, labels, float(rows[0]["hold_seconds"])
            )
            outbox = await self._set_seats(
                conn, show_id, labels, SeatStatus.HELD, hold_id=hold_id, held_until=expires_at
            )
            hold = wire.Hold(hold_id, show_id, labels, expires_at, self.max_extensions)
            return hold, self._published(show_id, shard, outbox)

        try:
            hold, committed = await self._transaction(shard, "hold", work)
        except (SeatsUnavailable, Contention):
            HOLDS_TOTAL.labels("conflict").inc()
            raise
        HOLDS_TOTAL.labels("created").inc()
        self._after_commit([committed])
        return hold

    async def extend(self, hold_id: str, user_id: str) -> wire.Hold:
        show_id, shard = await self.router.for_client_id(hold_id, "hold")

        async def work(conn: asyncpg.Connection) -> wire.Hold:
            hold = await self._lock_own_hold(conn, show_id, hold_id, user_id)
            if hold["status"] != "ACTIVE" or hold["lapsed"]:
                raise HoldExpired(f"hold {hold_id!r} has expired or ended")
            if hold["extensions"] >= self.max_extensions:
                raise ExtendLimit(f"a hold can be extended {self.max_extensions} times")
            labels = list(hold["seats"])
            await self._lock_seats(conn, show_id, labels)
            extended = await conn.fetchrow(EXTEND_HOLD, show_id, hold_id)
            await conn.execute(EXTEND_SEATS, show_id, labels, extended["expires_at"], hold_id)
            left = self.max_extensions - extended["extensions"]
            return wire.Hold(hold_id, show_id, labels, extended["expires_at"], left)

        return await self._transaction(shard, "extend", work)

    async def release(self, hold_id: str, user_id: str) -> None:
        show_id, shard = await self.router.for_client_id(hold_id, "hold")

        async def work(conn: asyncpg.Connection) -> Committed | None:
            hold = await self._lock_own_hold(conn, show_id, hold_id, user_id)
            if hold["status"] != "ACTIVE":
                raise NotFound(f"hold {hold_id!r} is no longer active")
            rows = await self._lock_seats(conn, show_id, list(hold["seats"]))
            owned = [row["label"] for row in rows if row["hold_id"] == hold_id]
            await conn.execute(SET_HOLD_STATUS, show_id, hold_id, "RELEASED")
            if not owned:
                return None
            outbox = await self._set_seats(conn, show_id, owned, SeatStatus.AVAILABLE)
            return self._published(show_id, shard, outbox)

        committed = await self._transaction(shard, "release", work)
        self._after_commit([committed] if committed else [])

    async def confirm(
        self, hold_id: str, user_id: str, idempotency_key: str | None
    ) -> wire.Booking:
        show_id, shard = await self.router.for_client_id(hold_id, "hold")

        async def work(conn: asyncpg.Connection) -> tuple[wire.Booking, Committed | None]:
            hold = await self._lock_own_hold(conn, show_id, hold_id, user_id)
            if idempotency_key is not None:
                earlier = await conn.fetchrow(BOOKING_BY_KEY, show_id, user_id, idempotency_key)
                if earlier is not None:
                    if earlier["hold_id"] != hold_id:
                        raise IdempotencyKeyReused("this Idempotency-Key was used for another hold")
                    return _booking(earlier), None
            if hold["status"] == "CONFIRMED":
                # a retry of a confirm whose answer was lost: same booking
                return _booking(await conn.fetchrow(BOOKING_BY_HOLD, show_id, hold_id)), None
            if hold["status"] != "ACTIVE" or hold["lapsed"]:
                raise HoldExpired(f"hold {hold_id!r} has expired or ended")
            labels = list(hold["seats"])
            rows = await self._lock_seats(conn, show_id, labels)
            if any(row["hold_id"] != hold_id for row in rows):
                raise HoldExpired(f"hold {hold_id!r} no longer owns its seats")
            booking = await conn.fetchrow(
                INSERT_BOOKING,
                show_id,
                new_client_id(show_id),
                user_id,
                hold_id,
                labels,
                idempotency_key,
            )
            await conn.execute(SET_HOLD_STATUS, show_id, hold_id, "CONFIRMED")
            outbox = await self._set_seats(
                conn, show_id, labels, SeatStatus.BOOKED, booking_id=booking["id"]
            )
            return _booking(booking), self._published(show_id, shard, outbox)

        try:
            booking, committed = await self._transaction(shard, "confirm", work)
        except HoldExpired:
            BOOKINGS_TOTAL.labels(BookingStatus.FAILED).inc()
            raise
        if committed:
            BOOKINGS_TOTAL.labels(BookingStatus.CONFIRMED).inc()
            self._after_commit([committed])
        return booking

    async def book(
        self, show_id: int, labels: list[str], user_id: str, idempotency_key: str | None
    ) -> wire.Booking:
        """The seed's one-step booking: hold and confirm in one transaction."""
        _, shard = await self.router.for_show(show_id)
        labels = sorted(labels)

        async def work(conn: asyncpg.Connection) -> tuple[wire.Booking, Committed | None]:
            if idempotency_key is not None:
                earlier = await conn.fetchrow(BOOKING_BY_KEY, show_id, user_id, idempotency_key)
                if earlier is not None:
                    return _booking(earlier), None
            rows = await self._lock_seats(conn, show_id, labels)
            self._require_free(rows)
            booking = await conn.fetchrow(
                INSERT_BOOKING,
                show_id,
                new_client_id(show_id),
                user_id,
                None,
                labels,
                idempotency_key,
            )
            outbox = await self._set_seats(
                conn, show_id, labels, SeatStatus.BOOKED, booking_id=booking["id"]
            )
            return _booking(booking), self._published(show_id, shard, outbox)

        try:
            booking, committed = await self._transaction(shard, "book", work)
        except (SeatsUnavailable, Contention):
            BOOKINGS_TOTAL.labels(BookingStatus.FAILED).inc()
            raise
        if committed:
            BOOKINGS_TOTAL.labels(BookingStatus.CONFIRMED).inc()
            self._after_commit([committed])
        return booking

    async def cancel(self, booking_id: str, user_id: str, is_admin: bool) -> wire.Booking:
        show_id, shard = await self.router.for_client_id(booking_id, "booking")

        async def work(conn: asyncpg.Connection) -> tuple[wire.Booking, Committed | None]:
            booking = await conn.fetchrow(LOCK_BOOKING, show_id, booking_id)
            if booking is None or (booking["user_id"] != user_id and not is_admin):
                raise NotFound(f"booking {booking_id!r} does not exist")
            if booking["status"] != BookingStatus.CONFIRMED:
                raise BookingNotCancellable(f"booking is {booking['status']}")
            rows = await self._lock_seats(conn, show_id, list(booking["seats"]))
            owned = [row["label"] for row in rows if row["booking_id"] == booking_id]
            cancelled = await conn.fetchrow(CANCEL_BOOKING, show_id, booking_id)
            if not owned:
                return _booking(cancelled), None
            outbox = await self._set_seats(conn, show_id, owned, SeatStatus.AVAILABLE)
            return _booking(cancelled), self._published(show_id, shard, outbox)

        booking, committed = await self._transaction(shard, "cancel", work)
        BOOKINGS_TOTAL.labels(BookingStatus.CANCELLED).inc()
        self._after_commit([committed] if committed else [])
        return booking

    async def booking(self, booking_id: str, user_id: str, is_admin: bool) -> wire.Booking:
        show_id, shard = await self.router.for_client_id(booking_id, "booking")
        async with shard.connection("read_booking") as conn:
            row = await conn.fetchrow(BOOKING_BY_ID, show_id, booking_id)
        if row is None or (row["user_id"] != user_id and not is_admin):
            raise NotFound(f"booking {booking_id!r} does not exist")
        return _booking(row)

    async def bookings_of(self, user_id: str) -> list[wire.Booking]:
        """A user's bookings on every shard, asked in parallel through bookings_by_user."""

        async def on(shard: Shard) -> list[asyncpg.Record]:
            async with shard.connection("bookings_of_user") as conn:
                rows: list[asyncpg.Record] = await conn.fetch(BOOKINGS_OF_USER, user_id)
                return rows

        per_shard = await asyncio.gather(*(on(shard) for shard in self.router.shards))
        bookings = [_booking(row) for rows in per_shard for row in rows]
        bookings.sort(key=lambda b: b.created_at, reverse=True)
        return bookings

    async def release_expired_holds(self, shard: Shard) -> int:
        """The sweeper: release a batch of lapsed holds on one shard; returns how many.

        SKIP LOCKED lets every server sweep at once without two of them taking the same hold.
        Seats are locked per show in one label-ordered statement, like every other writer.
        """

        async def work(conn: asyncpg.Connection) -> tuple[int, list[Committed]]:
            expired = await conn.fetch(EXPIRED_HOLDS)
            by_show: dict[int, list[asyncpg.Record]] = {}
            for hold in expired:
                by_show.setdefault(hold["show_id"], []).append(hold)
            committed = []
            for show_id in sorted(by_show):
                holds = by_show[show_id]
                hold_ids = {hold["id"] for hold in holds}
                labels = sorted({label for hold in holds for label in hold["seats"]})
                rows = await conn.fetch(LOCK_SEATS, show_id, labels)
                owned = [row["label"] for row in rows if row["hold_id"] in hold_ids]
                await conn.execute(
                    "UPDATE holds SET status = 'EXPIRED' WHERE show_id = $1 AND id = ANY($2)",
                    show_id,
                    list(hold_ids),
                )
                if owned:
                    outbox = await self._set_seats(conn, show_id, owned, SeatStatus.AVAILABLE)
                    committed.append(self._published(show_id, shard, outbox))
            return len(expired), committed

        count, committed = await self._transaction(shard, "sweep", work)
        HOLDS_EXPIRED_TOTAL.inc(count)
        self._after_commit(committed)
        return count
