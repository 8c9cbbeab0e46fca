"""Queued booking (the seed's section 3.4): `POST /shows/{id}/book` with
`Prefer: respond-async` answers 202 with a booking id at once; a consumer on any instance
books it later in the normal seat transaction (BoxOffice.book, the shard's book_seats()).

The queue is a Redis stream read by one consumer group: every instance consumes. Each
queued booking has a status hash under its show's hash tag (PENDING, then CONFIRMED or
FAILED with the reason), which GET /bookings/{id} answers while the shard has no booking
row. A message is acknowledged only once settled, so a consumer killed mid-message loses
nothing: its pending entries are claimed by another consumer (XAUTOCLAIM) once idle for
MODEX_BOOKING_CLAIM_IDLE seconds. Booking is idempotent by booking id: the consumer books
with the queued id and the Idempotency-Key `queued:<id>`, so a message processed twice
(or by two consumers at once) books once, and the second run finds the first's booking.

A refusal (seats taken, seat limit, not on sale, unknown seats) settles FAILED at once.
A failure of the shard or Redis is retried with exponential backoff and jitter (tenacity);
after MODEX_BOOKING_MAX_ATTEMPTS deliveries the message goes to the dead-letter stream and
settles FAILED (reason `dead_letter`); `queued_bookings_dead_letters` shows how many wait
there. Each settlement is appended to a "settled" stream that every instance tails, so
the owner's sockets, wherever they are, get a `booking` frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError, ResponseError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from app import wire
from app.admission import REDIS_CALLS
from app.domain import BookingStatus, new_client_id, show_of_client_id
from app.errors import (
    Contention,
    DatabaseUnavailable,
    IdempotencyKeyReused,
    ModexError,
    ShardUnavailable,
)
from app.holds import BoxOffice
from app.realtime.frames import BookingSettled, Outgoing, encoder
from app.realtime.keys import RedisKeys

if TYPE_CHECKING:
    from app.realtime.protocol import Connection

log = logging.getLogger("modex.booking_queue")

GROUP = "bookers"
STATUS_TTL = 7 * 24 * 3600  # seconds a queued booking's status is kept
SETTLED_MAXLEN = 10_000  # the settled stream only feeds live sockets
READ_BLOCK_MS = 1_000
IN_FLIGHT = 16  # messages one instance books at a time
# failures worth another try: the shard or Redis away, a lock race lost
TRANSIENT = (ShardUnavailable, Contention, DatabaseUnavailable, RedisError, OSError)

QUEUED_BOOKINGS = Counter(
    "queued_bookings_total",
    "Queued bookings by event: accepted, confirmed, failed, retried, claimed, dead_lettered",
    ["event"],
)
DEAD_LETTERS = Gauge(
    "queued_bookings_dead_letters",
    "Messages in the queued bookings' dead-letter stream",
    multiprocess_mode="livemax",
)
PENDING = Gauge(
    "queued_bookings_pending",
    "Queued bookings delivered to a consumer and not yet settled",
    multiprocess_mode="livemax",
)


def prefers_async(prefer: str | None) -> bool:
    """RFC 7240: `Prefer: respond-async` among the header's preferences."""
    if not prefer:
        return False
    return any(p.split(";")[0].strip().lower() == "respond-async" for p in prefer.split(","))


def _queued(
    booking_id: str,
    show_id: int,
    user_id: str,
    seats: list[str],
    at: datetime,
    status: str,
    reason: str | None = None,
    message: str | None = None,
) -> wire.QueuedBooking:
    return wire.QueuedBooking(
        booking_id, status, booking_id, show_id, user_id, seats, at, reason, message
    )


def _entries(answer: Any) -> list[tuple[Any, dict[Any, Any]]]:
    """The entries of an XREAD/XREADGROUP answer of one stream (RESP2 list or RESP3 map)."""
    streams = answer.values() if isinstance(answer, dict) else [s[1] for s in answer or []]
    return [(entry_id, fields) for entries in streams for entry_id, fields in entries]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class BookingQueue:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: RedisKeys,
        box_office: BoxOffice,
        consumer: str,
        customers: dict[str, set[Connection]],
        *,
        claim_idle: float = 15.0,
        max_attempts: int = 5,
        backoff: float = 0.2,
        fault_delay: float = 0.0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.box_office = box_office
        self.consumer = consumer
        self._customers = customers
        self.claim_idle_ms = int(claim_idle * 1000)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._fault_delay = fault_delay  # tests: seconds a consumer waits before booking
        self.stream = keys.booking_queue("queue")
        self.dead = keys.booking_queue("dead")
        self.settled = keys.booking_queue("settled")
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._working: set[asyncio.Task[None]] = set()
        self._calls = asyncio.Semaphore(REDIS_CALLS)

    # ---- accepting ----

    @contextlib.asynccontextmanager
    async def _redis_calls(self) -> AsyncIterator[None]:
        """Customers' calls to Redis wait here past REDIS_CALLS (redis-py's pool refuses
        beyond its size); Redis away is 503."""
        try:
            async with self._calls:
                yield
        except (RedisError, OSError) as exc:
            log.warning("booking queue unavailable: %r", exc)
            raise BookingQueueUnavailable(
                "bookings cannot be queued right now: try again", retry_after=2
            ) from exc

    async def submit(
        self,
        show_id: int,
        labels: list[str],
        user_id: str,
        idempotency_key: str | None,
        channels: tuple[str, ...] = (),
    ) -> wire.QueuedBooking:
        """Queue a one-step booking: its id now, its outcome later. The same
        Idempotency-Key (same customer, same seats) returns the same booking."""
        async with self._redis_calls():
            await self.box_office.router.show(show_id)  # 404 for an unknown show
            seats = sorted(labels)
            booking_id = new_client_id(show_id)
            if idempotency_key is not None:
                digest = hashlib.sha256(f"{user_id}\n{idempotency_key}".encode()).hexdigest()[:32]
                key = self.keys.queued_booking(show_id, f"key:{digest}")
                claimed = f"{booking_id} {','.join(seats)}"
                if not await self.redis.set(key, claimed, nx=True, ex=STATUS_TTL):
                    earlier_id, _, earlier_seats = _text(await self.redis.get(key)).partition(" ")
                    if earlier_seats != ",".join(seats):
                        raise IdempotencyKeyReused(
                            "this Idempotency-Key was used for another request (other seats)"
                        )
                    return await self._accepted(show_id, earlier_id, user_id)
            status = self.keys.queued_booking(show_id, booking_id)
            accepted_at = datetime.now(UTC)
            await self.redis.hset(
                status,
                mapping={
                    "status": BookingStatus.PENDING,
                    "user": user_id,
                    "seats": ",".join(seats),
                    "at": accepted_at.timestamp(),
                },
            )
            await self.redis.expire(status, STATUS_TTL)
            fields = {
                "id": booking_id,
                "show": show_id,
                "user": user_id,
                "seats": ",".join(seats),
                "channels": ",".join(channels),  # the token's sales channels (RESERVED seats)
            }
            await self.redis.xadd(self.stream, fields)  # type: ignore[arg-type]
            QUEUED_BOOKINGS.labels("accepted").inc()
            return _queued(booking_id, show_id, user_id, seats, accepted_at, BookingStatus.PENDING)

    async def _accepted(self, show_id: int, booking_id: str, user_id: str) -> wire.QueuedBooking:
        """The booking an earlier request with the same Idempotency-Key queued."""
        found = await self.status(booking_id, user_id, False)
        if found is None:  # its status is gone: say it is pending, as it was accepted
            return _queued(
                booking_id, show_id, user_id, [], datetime.now(UTC), BookingStatus.PENDING
            )
        return found

    async def status(
        self, booking_id: str, user_id: str, is_admin: bool
    ) -> wire.QueuedBooking | None:
        """A queued booking as its status hash has it (None: not a queued booking, or not
        the caller's)."""
        show_id = show_of_client_id(booking_id)
        if show_id is None:
            return None
        raw = await self.redis.hgetall(self.keys.queued_booking(show_id, booking_id))
        found = {_text(k): _text(v) for k, v in raw.items()}
        if not found or (found.get("user") != user_id and not is_admin):
            return None
        return _queued(
            booking_id,
            show_id,
            found["user"],
            found["seats"].split(","),
            datetime.fromtimestamp(float(found["at"]), UTC),
            found["status"],
            found.get("reason"),
            found.get("message"),
        )

    # ---- consuming ----

    async def run(self) -> None:
        """Every instance's consumer: new messages, idle ones of dead consumers, and the
        settled stream for this instance's sockets."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._supervised("read", self._read))
            tasks.create_task(self._supervised("claim", self._claim))
            tasks.create_task(self._supervised("notify", self._notify))

    async def _supervised(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        delay = 0.5
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("booking queue %s loop failed; restarting", name)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def stop(self, grace: float = 2.0) -> None:
        """Let messages being booked finish (briefly); what does not stays pending and is
        claimed by another instance."""
        if self._working:
            await asyncio.wait(self._working, timeout=grace)
        for task in list(self._working):
            task.cancel()

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self) -> None:
        await self._ensure_group()
        while True:
            async with self._slots:  # read only when a message can be booked at once
                free = max(1, IN_FLIGHT - len(self._working))
            try:
                answer = await self.redis.xreadgroup(
                    GROUP, self.consumer, {self.stream: ">"}, count=free, block=READ_BLOCK_MS
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_group()  # Redis lost its data: start again
                continue
            for entry_id, fields in _entries(answer):
                await self._start(_text(entry_id), fields)

    async def _claim(self) -> None:
        """Take over what consumers that died (or stalled) left pending."""
        await self._ensure_group()
        while True:
            await asyncio.sleep(max(0.2, self.claim_idle_ms / 2000))
            start = "0-0"
            while True:
                start_id, entries, deleted = await self.redis.xautoclaim(
                    self.stream, GROUP, self.consumer, self.claim_idle_ms, start, count=50
                )
                for entry_id in deleted or []:  # gone from the stream: nothing to book
                    await self.redis.xack(self.stream, GROUP, entry_id)
                for entry_id, fields in entries:
                    if fields:
                        QUEUED_BOOKINGS.labels("claimed").inc()
                        log.warning("claimed a queued booking", extra={"entry": _text(entry_id)})
                        await self._start(_text(entry_id), fields)
                start = _text(start_id)
                if start == "0-0":
                    break
            DEAD_LETTERS.set(await self.redis.xlen(self.dead))
            PENDING.set((await self.redis.xpending(self.stream, GROUP))["pending"])

    async def _start(self, entry_id: str, fields: dict[Any, Any]) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._settle_entry(entry_id, fields))
        self._working.add(task)
        task.add_done_callback(self._working.discard)
        task.add_done_callback(lambda _: self._slots.release())

    async def _settle_entry(self, entry_id: str, fields: dict[Any, Any]) -> None:
        message = {_text(k): _text(v) for k, v in fields.items()}
        try:
            await self.process(entry_id, message)
        except Exception:
            # left pending: another delivery (a claim) tries again and counts the attempt
            log.exception("queued booking %s not settled", message.get("id"))

    async def process(self, entry_id: str, message: dict[str, str]) -> None:
        """Book one message (retrying what may pass), then settle it."""
        try:
            booking_id, show_id = message["id"], int(message["show"])
            user, seats = message["user"], message["seats"].split(",")
        except (KeyError, ValueError):  # not ours to book: kept aside for a person to read
            log.error("malformed queued booking dead-lettered", extra={"entry": entry_id})
            kept: dict[Any, Any] = {**message, "error": "malformed", "entry": entry_id}
            await self.redis.xadd(self.dead, kept)
            QUEUED_BOOKINGS.labels("dead_lettered").inc()
            await self._ack(entry_id)
            return
        channels = tuple(c for c in message.get("channels", "").split(",") if c)
        status = self.keys.queued_booking(show_id, booking_id)
        # a crash between settling and acknowledging: settled already, only ack
        if _text(await self.redis.hget(status, "status") or b"") in (
            BookingStatus.CONFIRMED,
            BookingStatus.FAILED,
        ):
            await self._ack(entry_id)
            return
        if self._fault_delay:
            await asyncio.sleep(self._fault_delay)
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(lambda exc: isinstance(exc, TRANSIENT)),
                wait=wait_random_exponential(multiplier=self.backoff, max=10),
                stop=stop_after_attempt(self.max_attempts),
                before_sleep=lambda _: QUEUED_BOOKINGS.labels("retried").inc(),
                reraise=True,
            ):
                with attempt:
                    # every try (and every delivery) counts; a message that kept killing
                    # its consumers is dead-lettered too
                    tries = await self.redis.hincrby(status, "attempts", 1)
                    if tries > self.max_attempts:
                        raise _GiveUp()
                    await self._still_mine(entry_id)
                    booking = await self.box_office.book(
                        show_id, seats, user, f"queued:{booking_id}", channels, booking_id
                    )
        except (_GiveUp, *TRANSIENT) as exc:
            await self._dead_letter(entry_id, message, exc)
            return
        except ModexError as exc:
            QUEUED_BOOKINGS.labels("failed").inc()
            await self._settle(entry_id, message, BookingStatus.FAILED, exc.code, exc.message)
            return
        QUEUED_BOOKINGS.labels("confirmed").inc()
        await self._settle(entry_id, message, booking.status, None, None)

    async def _still_mine(self, entry_id: str) -> None:
        """Reset the entry's idle time, so no other consumer claims it while this one
        is retrying."""
        await self.redis.xclaim(self.stream, GROUP, self.consumer, 0, [entry_id], justid=True)

    async def _dead_letter(self, entry_id: str, message: dict[str, str], exc: Exception) -> None:
        error = exc.code if isinstance(exc, ModexError) else type(exc).__name__
        log.error(
            "queued booking dead-lettered",
            extra={"booking_id": message["id"], "error": error},
        )
        dead: dict[Any, Any] = {**message, "error": error, "entry": entry_id}
        await self.redis.xadd(self.dead, dead)
        QUEUED_BOOKINGS.labels("dead_lettered").inc()
        await self._settle(
            entry_id,
            message,
            BookingStatus.FAILED,
            "dead_letter",
            f"not booked after {self.max_attempts} attempts ({error})",
        )

    async def _settle(
        self,
        entry_id: str,
        message: dict[str, str],
        outcome: str,
        reason: str | None,
        text: str | None,
    ) -> None:
        """The outcome where GET /bookings/{id} finds it, then the owner's sockets told,
        then the message acknowledged (a crash in between repeats only these steps)."""
        booking_id, show_id = message["id"], int(message["show"])
        status: dict[Any, Any] = {"status": outcome}
        if reason:
            status.update(reason=reason, message=text or "")
        await self.redis.hset(self.keys.queued_booking(show_id, booking_id), mapping=status)
        note = {"id": booking_id, "show": show_id, "user": message["user"], "status": outcome}
        if reason:
            note["reason"] = reason
        await self.redis.xadd(
            self.settled,
            note,  # type: ignore[arg-type]
            maxlen=SETTLED_MAXLEN,
            approximate=True,
        )
        await self._ack(entry_id)

    async def _ack(self, entry_id: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(self.stream, GROUP, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()

    # ---- telling the owner ----

    async def _notify(self) -> None:
        """Tail the settled stream: a booking frame to each of the owner's sockets here."""
        last = "$"
        while True:
            answer = await self.redis.xread({self.settled: last}, block=READ_BLOCK_MS)
            for entry_id, fields in _entries(answer):
                last = _text(entry_id)
                note = {_text(k): _text(v) for k, v in fields.items()}
                sockets = self._customers.get(note["user"])
                if not sockets:
                    continue
                frame = BookingSettled(
                    int(note["show"]), note["id"], note["status"], note.get("reason")
                )
                out = Outgoing(encoder.encode(frame).decode())
                for conn in list(sockets):
                    conn.send(out)


class BookingQueueUnavailable(ModexError):
    status = 503
    code = "booking_queue_unavailable"


class _GiveUp(Exception):
    """The message was delivered more times than MODEX_BOOKING_MAX_ATTEMPTS."""
