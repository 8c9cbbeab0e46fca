"""The seat transactions: hold, extend, release, confirm, book, cancel, expire.

Each one is a function in sql/shard/functions/seat_transactions.sql, so a request costs a
single round trip to the show's shard. Those functions keep the invariant (seats locked
in label order, written only by the hold or booking that owns them, an outbox row with
every change), the show's seat limit per customer and what the show's status allows
(show_allows()); BoxOffice routes to the shard, retries a lost lock race, reads each
answer as its typed result, turns each refusal into its error (app/outcomes.py) and hands
committed changes to the realtime layer. Holds, releases, confirms and one-step bookings
that arrive together share a transaction (app/batches.py); one the batch hands back runs
alone.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec

from app import wire
from app.batches import SeatBatches, SeatRequest
from app.domain import BookingStatus, new_client_id
from app.errors import Contention, NotFound, ShardUnavailable, ShowNotFound
from app.events import Committed
from app.ops.logs import request_id
from app.ops.metrics import BOOKINGS_TOTAL, HOLDS_EXPIRED_TOTAL, HOLDS_TOTAL
from app.outcomes import (
    BookResult,
    CancelResult,
    ConfirmResult,
    ExtendResult,
    HoldResult,
    Outcome,
    ReleaseResult,
    SetSeatsResult,
    refusal,
    result_of,
)
from app.shards import Shard, ShardRouter

# Losing a lock race is normal under load: retry briefly, then answer 409, never 500.
# A unique violation is two retries of one idempotent request racing: the next try
# finds the winner's booking.
RETRYABLE = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.LockNotAvailableError,
    asyncpg.UniqueViolationError,
)
ATTEMPTS = 3

# the last argument of each seat write is the request id, kept in the audit trail
HOLD_SEATS = "SELECT * FROM hold_seats($1, $2, $3, $4, $5, $6)"
BEST_SEATS = "SELECT * FROM best_seats($1, $2, $3, $4, $5, $6, $7, $8)"
SET_SEATS = "SELECT * FROM set_seats($1, $2, $3, $4, $5, $6)"
EXTEND_HOLD = "SELECT * FROM extend_hold($1, $2, $3, $4)"
RELEASE_HOLD = "SELECT * FROM release_hold($1, $2, $3, $4)"
CONFIRM_HOLD = "SELECT * FROM confirm_hold($1, $2, $3, $4, $5, $6)"
BOOK_SEATS = "SELECT * FROM book_seats($1, $2, $3, $4, $5, $6, $7)"
CANCEL_BOOKING = "SELECT * FROM cancel_booking($1, $2, $3, $4, $5)"
EXPIRE_HOLDS = "SELECT * FROM expire_holds($1)"
SWEEP_BATCH = 200

BOOKING_COLUMNS = "id, show_id, user_id, seats, status, created_at, hold_id, reference"
BOOKING_BY_ID = f"SELECT {BOOKING_COLUMNS} FROM bookings WHERE show_id = $1 AND id = $2"
BOOKINGS_OF_USER = f"""
SELECT {BOOKING_COLUMNS} FROM bookings WHERE user_id = $1 ORDER BY created_at DESC LIMIT 200
"""
# The box office's search: each query is led by a filter an index serves (the reference,
# the show's primary key, the user's bookings), the other filters ($2..) narrow it.
SEARCH_LIMIT = 200
_NARROW = """
  AND ($2::text IS NULL OR user_id = $2) AND ($3::bigint IS NULL OR show_id = $3)
  AND ($4::text IS NULL OR $4 = ANY(seats))
ORDER BY created_at DESC LIMIT 200
"""
BOOKINGS_BY_REFERENCE = f"SELECT {BOOKING_COLUMNS} FROM bookings WHERE reference = $1 {_NARROW}"
BOOKINGS_OF_SHOW = f"""
SELECT {BOOKING_COLUMNS} FROM bookings WHERE show_id = $3 AND $1::text IS NULL {_NARROW}"""
BOOKINGS_OF_USER_FILTERED = f"""
SELECT {BOOKING_COLUMNS} FROM bookings WHERE user_id = $2 AND $1::text IS NULL {_NARROW}"""


def _booking(row: Any) -> wire.Booking:
    return wire.Booking(
        id=row["id"],
        show_id=row["show_id"],
        user_id=row["user_id"],
        seats=list(row["seats"]),
        status=row["status"],
        created_at=row["created_at"],
        hold_id=row["hold_id"],
        reference=row["reference"],
    )


def _alone(r: SeatRequest) -> tuple[str, tuple[Any, ...]]:
    """The function that runs a request of a batch on its own, and its arguments."""
    if r.kind == "hold":
        return HOLD_SEATS, (
            r.show_id,
            list(r.labels),
            r.hold_id,
            r.user_id,
            list(r.channels),
            r.request_id,
        )
    if r.kind == "release":
        return RELEASE_HOLD, (r.show_id, r.hold_id, r.user_id, r.request_id)
    if r.kind == "confirm":
        return CONFIRM_HOLD, (
            r.show_id,
            r.hold_id,
            r.user_id,
            r.booking_id,
            r.idempotency_key,
            r.request_id,
        )
    labels = list(r.labels)
    return BOOK_SEATS, (
        r.show_id,
        labels,
        r.user_id,
        r.booking_id,
        r.idempotency_key,
        list(r.channels),
        r.request_id,
    )


_booking_decoder = msgspec.json.Decoder(wire.Booking, strict=False)
_seat_changes = msgspec.json.Decoder(list[wire.SeatChange])


def _booking_json(text: str) -> wire.Booking:
    """A booking the SQL function returned as row_to_json (extra columns are ignored)."""
    return _booking_decoder.decode(text)


class BoxOffice:
    """The seat transactions of every show, routed to the show's shard."""

    def __init__(
        self,
        router: ShardRouter,
        on_commit: Callable[[Committed], None],
        max_extensions: int = 2,
        seat_batch: int = 1,
    ) -> None:
        self.router = router
        self.on_commit = on_commit
        self.max_extensions = max_extensions
        self.batches = SeatBatches(seat_batch) if seat_batch > 1 else None

    async def _call(
        self, show_id: int, name: str, query: str, *args: Any, batched: SeatRequest | None = None
    ) -> tuple[asyncpg.Record, Shard]:
        """Run one seat transaction on the show's shard (`batched`: the same request as a
        batch entry, tried first). If the show was moved to another shard since this server
        looked it up, look it up afresh and run it there."""
        for fresh in (False, True):
            info = await self.router.show(show_id, fresh=fresh)
            shard = self.router.shard(info.shard)
            row = None
            if batched is not None and self.batches is not None:
                row = await self.batches.run(shard, batched)
            if row is None:
                row = await self._run(shard, name, query, *args)
            if row["outcome"] != Outcome.MOVED:
                return row, shard
            self.router.forget(show_id)
        raise ShardUnavailable("this show is moving to another shard; try again", retry_after=1)

    async def _seat_request(self, request: SeatRequest) -> tuple[asyncpg.Record, Shard]:
        """A request that may share a batch; alone, it is its own function's call."""
        query, args = _alone(request)
        batched = None if request.channels else request
        return await self._call(request.show_id, request.kind, query, *args, batched=batched)

    async def _run(self, shard: Shard, name: str, query: str, *args: Any) -> asyncpg.Record:
        """A single statement, retried if it lost a lock race."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with shard.connection(name) as conn:
                    row: asyncpg.Record = await conn.fetchrow(query, *args)
                    return row
            except RETRYABLE:
                if attempt == ATTEMPTS:
                    raise Contention(
                        "too many customers are after these seats right now; try again",
                        retry_after=1,
                    ) from None
                await asyncio.sleep(random.uniform(0.005, 0.05))
        raise AssertionError("unreachable")

    def _publish(self, show_id: int, shard: Shard, event_id: int | None, event: str | None) -> None:
        """Hand a committed change (if the transaction made one) to the realtime layer."""
        if event_id is None or event is None:
            return
        self.on_commit(
            Committed(
                show_id=show_id,
                shard=shard.index,
                outbox_id=event_id,
                changes_json=event,
                committed_at=time.time(),
            )
        )

    async def hold(
        self, show_id: int, labels: list[str], user_id: str, channels: tuple[str, ...] = ()
    ) -> wire.Hold:
        labels = sorted(labels)
        hold_id = new_client_id(show_id)
        request = SeatRequest(
            "hold",
            show_id,
            hold_id,
            user_id,
            tuple(labels),
            request_id=request_id.get(),
            channels=channels,
        )
        try:
            row, shard = await self._seat_request(request)
        except Contention:
            HOLDS_TOTAL.labels("conflict").inc()
            raise
        held = result_of(HoldResult, row)
        if held.outcome != Outcome.HELD:
            HOLDS_TOTAL.labels("conflict" if held.outcome == Outcome.TAKEN else "refused").inc()
            raise held.refusal(show_id, "hold")
        HOLDS_TOTAL.labels("created").inc()
        self._publish(show_id, shard, held.event_id, held.event)
        assert held.hold_until is not None
        return wire.Hold(hold_id, show_id, labels, held.hold_until, self.max_extensions)

    async def hold_best(
        self, show_id: int, best: wire.BestAvailable, user_id: str, channels: tuple[str, ...] = ()
    ) -> wire.Hold:
        """Best available: the show's shard picks the seats and holds them in one call."""
        hold_id = new_client_id(show_id)
        args = (best.count, best.category, best.allow_split, hold_id, user_id, list(channels))
        try:
            row, shard = await self._call(
                show_id, "best", BEST_SEATS, show_id, *args, request_id.get()
            )
        except Contention:
            HOLDS_TOTAL.labels("conflict").inc()
            raise
        held = result_of(HoldResult, row)
        if held.outcome != Outcome.HELD:
            HOLDS_TOTAL.labels("refused").inc()
            raise held.refusal(show_id, f"{best.count} seats")
        HOLDS_TOTAL.labels("created").inc()
        self._publish(show_id, shard, held.event_id, held.event)
        assert held.detail is not None and held.hold_until is not None
        return wire.Hold(hold_id, show_id, held.detail, held.hold_until, self.max_extensions)

    async def set_seats(
        self, show_id: int, change: wire.SeatStatusChange, admin_id: str
    ) -> wire.SeatsChanged:
        """An admin's change of seats (off sale, a channel's, back on sale), pushed live."""
        labels = None if change.seats is msgspec.UNSET else sorted(change.seats)
        args = (labels, change.status, change.channel, admin_id, request_id.get())
        row, shard = await self._call(show_id, "set_seats", SET_SEATS, show_id, *args)
        result = result_of(SetSeatsResult, row)
        if result.outcome != Outcome.CHANGED:
            raise refusal(result.outcome, show_id, "change", seats=result.detail)
        self._publish(show_id, shard, result.event_id, result.event)
        changed = _seat_changes.decode(result.event) if result.event else []
        return wire.SeatsChanged(show_id, changed)

    async def extend(self, hold_id: str, user_id: str) -> wire.Hold:
        show_id = await self.router.show_of(hold_id, "hold")
        row, _ = await self._call(
            show_id, "extend", EXTEND_HOLD, show_id, hold_id, user_id, self.max_extensions
        )
        extended = result_of(ExtendResult, row)
        if extended.outcome != Outcome.EXTENDED:
            raise refusal(
                extended.outcome, show_id, f"hold {hold_id!r}", show_status=extended.show_status
            )
        assert extended.detail is not None and extended.hold_until is not None
        assert extended.extensions_used is not None
        left = self.max_extensions - extended.extensions_used
        return wire.Hold(hold_id, show_id, extended.detail, extended.hold_until, left)

    async def release(self, hold_id: str, user_id: str) -> None:
        show_id = await self.router.show_of(hold_id, "hold")
        row, shard = await self._seat_request(
            SeatRequest("release", show_id, hold_id, user_id, request_id=request_id.get())
        )
        released = result_of(ReleaseResult, row)
        if released.outcome != Outcome.RELEASED:
            raise refusal(released.outcome, show_id, f"hold {hold_id!r}")
        self._publish(show_id, shard, released.event_id, released.event)

    async def confirm(
        self, hold_id: str, user_id: str, idempotency_key: str | None
    ) -> wire.Booking:
        show_id = await self.router.show_of(hold_id, "hold")
        row, shard = await self._seat_request(
            SeatRequest(
                "confirm",
                show_id,
                hold_id,
                user_id,
                booking_id=new_client_id(show_id),
                idempotency_key=idempotency_key,
                request_id=request_id.get(),
            )
        )
        confirmed = result_of(ConfirmResult, row)
        if confirmed.outcome not in (Outcome.CONFIRMED, Outcome.EARLIER):
            if confirmed.outcome in (Outcome.EXPIRED, Outcome.NOT_ON_SALE):
                BOOKINGS_TOTAL.labels(BookingStatus.FAILED).inc()
            raise refusal(
                confirmed.outcome, show_id, f"hold {hold_id!r}", show_status=confirmed.show_status
            )
        if confirmed.outcome == Outcome.CONFIRMED:
            BOOKINGS_TOTAL.labels(BookingStatus.CONFIRMED).inc()
            self._publish(show_id, shard, confirmed.event_id, confirmed.event)
        assert confirmed.booking is not None
        return _booking_json(confirmed.booking)

    async def book(
        self,
        show_id: int,
        labels: list[str],
        user_id: str,
        idempotency_key: str | None,
        channels: tuple[str, ...] = (),
        booking_id: str | None = None,
    ) -> wire.Booking:
        """The seed's one-step booking: claim and book in one transaction (`booking_id`:
        the id a queued booking was given when it was accepted)."""
        row, shard = await self._seat_request(
            SeatRequest(
                "book",
                show_id,
                None,
                user_id,
                tuple(sorted(labels)),
                booking_id=booking_id or new_client_id(show_id),
                idempotency_key=idempotency_key,
                request_id=request_id.get(),
                channels=channels,
            )
        )
        booked = result_of(BookResult, row)
        if booked.outcome not in (Outcome.BOOKED, Outcome.EARLIER):
            BOOKINGS_TOTAL.labels(BookingStatus.FAILED).inc()
            raise booked.refusal(show_id, "booking")
        if booked.outcome == Outcome.BOOKED:
            BOOKINGS_TOTAL.labels(BookingStatus.CONFIRMED).inc()
            self._publish(show_id, shard, booked.event_id, booked.event)
        assert booked.booking is not None
        return _booking_json(booked.booking)

    async def cancel(self, booking_id: str, user_id: str, is_admin: bool) -> wire.Booking:
        show_id = await self.router.show_of(booking_id, "booking")
        row, shard = await self._call(
            show_id,
            "cancel",
            CANCEL_BOOKING,
            show_id,
            booking_id,
            user_id,
            is_admin,
            request_id.get(),
        )
        cancelled = result_of(CancelResult, row)
        if cancelled.outcome != Outcome.CANCELLED:
            raise refusal(
                cancelled.outcome,
                show_id,
                f"booking {booking_id!r}",
                show_status=cancelled.show_status,
                booking_status=cancelled.booking_status,
            )
        BOOKINGS_TOTAL.labels(BookingStatus.CANCELLED).inc()
        self._publish(show_id, shard, cancelled.event_id, cancelled.event)
        assert cancelled.booking is not None
        return _booking_json(cancelled.booking)

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

    async def search(self, query: wire.BookingSearch) -> list[wire.Booking]:
        """The box office's search, on the show's shard when the show is given, else on
        every shard in parallel; newest first."""
        if query.reference is not None:
            sql = BOOKINGS_BY_REFERENCE
        elif query.show_id is not None:
            sql = BOOKINGS_OF_SHOW
        else:
            sql = BOOKINGS_OF_USER_FILTERED
        args = (query.reference, query.user, query.show_id, query.seat)
        if query.show_id is not None:
            try:
                _, one = await self.router.for_show(query.show_id)
            except ShowNotFound:
                return []
            shards = [one]
        else:
            shards = list(self.router.shards)

        async def on(shard: Shard) -> list[asyncpg.Record]:
            async with shard.connection("search_bookings") as conn:
                rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
                return rows

        per_shard = await asyncio.gather(*(on(shard) for shard in shards))
        bookings = [_booking(row) for rows in per_shard for row in rows]
        bookings.sort(key=lambda b: b.created_at, reverse=True)
        return bookings[:SEARCH_LIMIT]

    async def release_expired_holds(self, shard: Shard) -> int:
        """The sweeper's step on one shard: how many lapsed holds it released."""
        async with shard.connection("sweep") as conn:
            rows = await conn.fetch(EXPIRE_HOLDS, SWEEP_BATCH)
        expired: int = sum(row["expired_holds"] for row in rows)
        HOLDS_EXPIRED_TOTAL.inc(expired)
        for row in rows:
            self._publish(row["expired_show"], shard, row["event_id"], row["event"])
        return expired
