"""A show's on-sale waiting room: a fair queue in front of holds and books.

An admin turns it on with an opening time and a rate (PATCH /admin/shows/{id} `queue`).
Customers who arrive before the opening join a pre-queue; at the opening their order is
drawn at random (everyone who came early has the same chance), and later arrivals queue
behind them in arrival order. One place per customer id: joining again returns the same
place (guests' tokens are limited per IP by MODEX_GUEST_TOKENS_PER_IP).

Everything lives in Redis under the show's hash tag (`RedisKeys.waiting_room`), so the
queue survives any instance's restart. A customer's place is a number; the room keeps
"served", how many numbers are admitted, so joining, a position and an admission are each
one step, whatever the queue's length. One instance at a time (the holder of a short
Redis lease) draws and admits; the admission script checks the lease and keeps its token
bucket in the room's hash, so the rate follows elapsed time however many instances run.

An admitted customer gets a signed admission token (HS256, audience "admission", bound to
the customer and the show, valid MODEX_ADMISSION_SECONDS from the admission). While the
room is on, holds and books without a valid one are refused 403 `not_admitted`. Each
instance keeps the rooms' settings in memory (re-read every tick), so the check costs no
Redis round trip.

Adaptive rate (`adaptive: true`): the lease holder adjusts a factor between 0.25 and 2
every ADAPT_PERIOD from the holds of admitted customers on every instance (how many,
how many slower than SLOW_HOLD, how many failed for the shard) and the shard's breaker:
halve on failures or an open breaker, x0.8 when holds slow, +0.1 while they are fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import jwt
import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from app import wire
from app.errors import Contention, ModexError, NotFound, ShardUnavailable
from app.realtime.frames import Admitted, Outgoing, QueuePosition, encoder
from app.realtime.keys import RedisKeys
from app.shards import ShardRouter

if TYPE_CHECKING:
    from app.realtime.protocol import Connection

log = logging.getLogger("modex.admission")
T = TypeVar("T")

TICK = 0.5  # seconds between admissions, draws and pushed positions
LEASE_MS = 3_000  # a dead admitter's successor takes over within this
BURST_SECONDS = 1.0  # unused rate kept as credit: an empty queue admits at most this burst
DRAW_CHUNK = 1_000  # pre-queue numbers written per script call
ADAPT_PERIOD = 5.0
SLOW_HOLD = 0.25  # seconds: a hold slower than this counts against the rate
FACTOR_MIN, FACTOR_MAX = 0.25, 2.0
AUDIENCE = "admission"
ADMISSION_HEADER = "admission-token"
# customers' calls to Redis at once per instance: redis-py's pool (100 connections by
# default) refuses a command beyond its size rather than wait (5,000 joins in a second
# answered 500 before this bound)
REDIS_CALLS = 64

ADMITTED_TOTAL = Counter(
    "waiting_room_admitted_total", "Customers let in by waiting rooms (by the lease holder)"
)
ADMIT_RATE = Gauge(
    "waiting_room_admit_per_minute",
    "A waiting room's admission rate now (admit_per_minute x the adaptive factor)",
    ["show"],
    multiprocess_mode="livemax",
)
CFG_FIELDS = ("opens_at", "rate", "factor", "served", "drawn", "pre_count", "late", "adaptive")


class NotAdmitted(ModexError):
    status = 403
    code = "not_admitted"


class WaitingRoomUnavailable(ModexError):
    status = 503
    code = "waiting_room_unavailable"


class NoWaitingRoom(ModexError):
    status = 409
    code = "no_waiting_room"


def _script(name: str) -> str:
    return (Path(__file__).parent / "realtime" / "lua" / name).read_text()


def next_factor(factor: float, holds: int, slow: int, failed: int, breaker_open: bool) -> float:
    """The adaptive rate's step (AIMD, as TCP does): back off hard on failures, gently
    on slow holds, grow slowly while holds are fast; no holds, no change."""
    if breaker_open or (holds and failed / holds > 0.05):
        factor *= 0.5
    elif holds and slow / holds > 0.10:
        factor *= 0.8
    elif holds >= 5 and slow / holds < 0.02:
        factor += 0.1
    return round(min(FACTOR_MAX, max(FACTOR_MIN, factor)), 3)


@dataclass
class Room:
    """One show's waiting room as last read from Redis."""

    show_id: int
    opens_at_ms: int
    rate: int
    adaptive: bool
    factor: float
    served: int
    drawn: bool
    issued: int  # numbers given out or due: the pre-queue's (drawn or not) + late arrivals
    pre_size: int  # waiting for the draw

    @property
    def per_minute(self) -> float:
        return self.rate * self.factor

    @property
    def waiting(self) -> int:
        return max(0, self.issued - self.served)

    def info(self) -> wire.QueueInfo:
        return wire.QueueInfo(
            opens_at=datetime.fromtimestamp(self.opens_at_ms / 1000, UTC),
            admit_per_minute=self.rate,
            adaptive=self.adaptive,
            effective_per_minute=round(self.per_minute, 2),
            waiting=self.waiting,
        )

    def eta(self, ahead: float, now_ms: int) -> int:
        """Seconds until a customer with `ahead` customers before them is let in."""
        until_open = max(0, self.opens_at_ms - now_ms) / 1000
        return math.ceil(until_open + ahead * 60 / self.per_minute)


def _room(show_id: int, values: list[Any], pre_size: int) -> Room | None:
    opens_at, rate, factor, served, drawn, pre_count, late, adaptive = (
        v.decode() if isinstance(v, bytes) else v for v in values
    )
    if opens_at is None or rate is None:
        return None
    is_drawn = drawn == "1"
    issued = int(pre_count or 0) + int(late or 0) if is_drawn else pre_size + int(late or 0)
    return Room(
        show_id,
        int(opens_at),
        int(rate),
        adaptive == "1",
        float(factor or 1),
        int(served or 0),
        is_drawn,
        issued,
        0 if is_drawn else pre_size,
    )


@dataclass
class HoldStats:
    holds: int = 0
    slow: int = 0
    failed: int = 0


class WaitingRooms:
    """Every show's waiting room: settings, joining, admission tokens, and the background
    tick (lease, draw, admit, adapt, push positions to this instance's sockets)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: RedisKeys,
        router: ShardRouter,
        secret: str,
        instance_id: str,
        admission_seconds: int,
        customers: dict[str, set[Connection]],
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.router = router
        self._secret = secret
        self.instance_id = instance_id
        self.admission_seconds = admission_seconds
        self._customers = customers  # the realtime layer's sockets by user
        self.rooms: dict[int, Room] = {}
        self._join = redis.register_script(_script("queue_join.lua"))
        self._lease = redis.register_script(_script("queue_lease.lua"))
        self._draw = redis.register_script(_script("queue_draw.lua"))
        self._admit = redis.register_script(_script("queue_admit.lua"))
        self._stats: dict[int, HoldStats] = {}
        self._calls = asyncio.Semaphore(REDIS_CALLS)
        self._adapted_at: dict[int, float] = {}
        self._sent: dict[tuple[int, int], str] = {}  # (id(socket), show) -> last frame
        # admission tokens handed out by this instance: (show, user) -> (token, expires)
        self._tokens: dict[tuple[int, str], tuple[str, float]] = {}

    def _key(self, show_id: int, part: str) -> str:
        return self.keys.waiting_room(show_id, part)

    # ---- the admin's settings ----

    async def configure(self, show_id: int, settings: wire.QueueSettings | None) -> None:
        """Turn the room on or change it (places and admissions so far are kept), or turn
        it off (settings None: the queue is gone)."""
        cfg = self._key(show_id, "cfg")
        if settings is None:
            parts = ("cfg", "pre", "tickets", "admitted", "lease", "health")
            await self.redis.srem(self.keys.waiting_rooms, show_id)
            await self.redis.delete(*(self._key(show_id, part) for part in parts))
            self.rooms.pop(show_id, None)
            with contextlib.suppress(KeyError):
                ADMIT_RATE.remove(str(show_id))
            return
        opens_at_ms = int(settings.opens_at.timestamp() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                cfg,
                mapping={
                    "opens_at": opens_at_ms,
                    "rate": settings.admit_per_minute,
                    "adaptive": "1" if settings.adaptive else "0",
                },
            )
            for name, value in (("factor", "1"), ("served", "0"), ("drawn", "0"), ("late", "0")):
                pipe.hsetnx(cfg, name, value)
            # the draw's secret seed: a new lease holder repeats the same permutation
            pipe.hsetnx(cfg, "seed", secrets.token_hex(16))
            if not settings.adaptive:
                pipe.hset(cfg, "factor", "1")
            await pipe.execute()
        await self.redis.sadd(self.keys.waiting_rooms, show_id)
        await self._refresh([show_id])

    def info(self, show_id: int) -> wire.QueueInfo | None:
        room = self.rooms.get(show_id)
        return room.info() if room is not None else None

    # ---- customers ----

    async def join(self, show_id: int, user_id: str) -> wire.QueuePlace:
        await self.router.show(show_id)  # 404 for an unknown show
        return await self._bounded(self._place(show_id, user_id, join=True))

    async def place(self, show_id: int, user_id: str) -> wire.QueuePlace:
        await self.router.show(show_id)
        return await self._bounded(self._place(show_id, user_id, join=False))

    async def _bounded(self, call: Awaitable[T]) -> T:
        """A customer's call to Redis: queued here past REDIS_CALLS; Redis away is 503."""
        try:
            async with self._calls:
                return await call
        except (RedisError, OSError) as exc:
            log.warning("waiting room unavailable: %r", exc)
            raise WaitingRoomUnavailable(
                "the waiting room cannot answer right now: try again", retry_after=2
            ) from exc

    async def _place(self, show_id: int, user_id: str, join: bool) -> wire.QueuePlace:
        keys = [self._key(show_id, part) for part in ("cfg", "pre", "tickets")]
        answer = await self._join(keys=keys, args=[user_id, "1" if join else "0"])
        number, served, opens_at, rate, now, pre_size, in_pre = (
            int(answer[i]) for i in (0, 1, 2, 3, 5, 6, 7)
        )
        factor = float(answer[4])  # the script's one string
        if number == -1:
            if join:
                raise NoWaitingRoom(f"show {show_id} has no waiting room now")
            raise NotFound(f"show {show_id} has no waiting room now")
        room = Room(show_id, opens_at, rate, False, factor, served, True, 0, pre_size)
        if in_pre:
            return wire.QueuePlace(position=None, eta_s=room.eta(pre_size / 2, now))
        if number == 0:
            raise NotFound("you are not in this show's queue: join it first")
        if number > served:
            position = number - served
            return wire.QueuePlace(position=position, eta_s=room.eta(position - 1, now))
        token, expires = await self._admission(show_id, user_id, now)
        if token is None:  # the admission lapsed: the place is gone
            await self._forget(show_id, user_id)
            if join:
                return await self._place(show_id, user_id, join=True)
            raise NotFound("your admission has expired: join the queue again")
        return wire.QueuePlace(
            position=0, eta_s=0, admitted=True, admission=token, expires_at=expires
        )

    async def _admission(
        self, show_id: int, user_id: str, now_ms: int
    ) -> tuple[str | None, datetime]:
        """The admitted customer's token, valid for the admission window from the first
        time it was handed out (asking again does not stretch it)."""
        known = self._tokens.get((show_id, user_id))
        if known is not None and known[1] > now_ms / 1000:
            return known[0], datetime.fromtimestamp(known[1], UTC)
        key = self._key(show_id, "admitted")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hsetnx(key, user_id, now_ms)
            pipe.hget(key, user_id)
            _, first = await pipe.execute()
        expires = int(first) / 1000 + self.admission_seconds
        if expires <= now_ms / 1000:
            return None, datetime.fromtimestamp(expires, UTC)
        token = self.mint(show_id, user_id, expires)
        self._tokens[(show_id, user_id)] = (token, expires)
        return token, datetime.fromtimestamp(expires, UTC)

    async def _forget(self, show_id: int, user_id: str) -> None:
        self._tokens.pop((show_id, user_id), None)
        await self.redis.hdel(self._key(show_id, "tickets"), user_id)
        await self.redis.hdel(self._key(show_id, "admitted"), user_id)

    def mint(self, show_id: int, user_id: str, expires: float) -> str:
        claims = {"sub": user_id, "show": show_id, "aud": AUDIENCE, "exp": int(expires)}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def check(self, show_id: int, user_id: str, token: str | None) -> None:
        """Raises NotAdmitted while the show's room is on and `token` is not this
        customer's admission to this show."""
        if show_id not in self.rooms:
            return
        if not token:
            raise NotAdmitted(
                f"show {show_id} has a waiting room: join it (POST /shows/{show_id}/queue) "
                "and send the admission token in the Admission-Token header"
            )
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                options={"require": ["sub", "show", "exp", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise NotAdmitted("your admission has expired: join the queue again") from None
        except jwt.PyJWTError:
            raise NotAdmitted("invalid admission token") from None
        if claims.get("sub") != user_id or claims.get("show") != show_id:
            raise NotAdmitted("this admission token is not yours for this show")

    @contextmanager
    def admitted(self, show_id: int, user_id: str, token: str | None) -> Iterator[None]:
        """Around a hold or book: refuses a customer not admitted, and times the request
        for the adaptive rate."""
        self.check(show_id, user_id, token)
        if show_id not in self.rooms:
            yield
            return
        started = time.perf_counter()
        failed = False
        try:
            yield
        except (ShardUnavailable, Contention):
            failed = True
            raise
        finally:
            stats = self._stats.setdefault(show_id, HoldStats())
            stats.holds += 1
            stats.slow += time.perf_counter() - started > SLOW_HOLD
            stats.failed += failed

    # ---- the background tick ----

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("waiting room tick failed")
            await asyncio.sleep(TICK)

    async def tick(self) -> None:
        await self._refresh(None)
        now_ms = await self._now_ms()
        for room in list(self.rooms.values()):
            try:
                await self._lead(room, now_ms)
            except Exception:
                log.exception("waiting room of show %s failed", room.show_id)
        await self._flush_stats()
        await self._push(now_ms)

    async def _now_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def _refresh(self, only: list[int] | None) -> None:
        """Re-read the rooms (all of them, or `only` these) from Redis."""
        if only is None:
            ids = sorted(int(v) for v in await self.redis.smembers(self.keys.waiting_rooms))
        else:
            ids = only
        async with self.redis.pipeline(transaction=False) as pipe:
            for show_id in ids:
                pipe.hmget(self._key(show_id, "cfg"), list(CFG_FIELDS))
                pipe.scard(self._key(show_id, "pre"))
            values = await pipe.execute()
        fresh = {}
        for i, show_id in enumerate(ids):
            room = _room(show_id, values[2 * i], int(values[2 * i + 1]))
            if room is not None:
                fresh[show_id] = room
        if only is None:
            self.rooms = fresh
        else:
            self.rooms.update(fresh)

    async def _lead(self, room: Room, now_ms: int) -> None:
        """The lease holder's work on one room: draw at opening, admit, adapt."""
        held = await self._lease(
            keys=[self._key(room.show_id, "lease")], args=[self.instance_id, LEASE_MS]
        )
        if not held:
            return
        if not room.drawn and now_ms >= room.opens_at_ms:
            await self._run_draw(room.show_id)
        served = int(
            await self._admit(
                keys=[self._key(room.show_id, "cfg"), self._key(room.show_id, "lease")],
                args=[self.instance_id, BURST_SECONDS],
            )
        )
        if served > room.served:
            ADMITTED_TOTAL.inc(served - room.served)
            room.served = served
        if room.adaptive:
            await self._adapt(room)
        ADMIT_RATE.labels(str(room.show_id)).set(room.per_minute)

    async def _run_draw(self, show_id: int) -> None:
        """The opening's draw: the pre-queue in a random order from the room's secret
        seed, written in chunks (a successor repeats the same order)."""
        cfg, pre = self._key(show_id, "cfg"), self._key(show_id, "pre")
        seed = await self.redis.hget(cfg, "seed")
        members = sorted(
            m.decode() if isinstance(m, bytes) else m for m in await self.redis.smembers(pre)
        )
        random.Random(seed).shuffle(members)
        keys = [cfg, pre, self._key(show_id, "tickets"), self._key(show_id, "lease")]
        for start in range(0, max(1, len(members)), DRAW_CHUNK):
            chunk = members[start : start + DRAW_CHUNK]
            last = start + DRAW_CHUNK >= len(members)
            pairs = [v for i, m in enumerate(chunk, start + 1) for v in (m, i)]
            args = [self.instance_id, "1" if last else "0", len(members), *pairs]
            if not await self._draw(keys=keys, args=args):
                return  # lease lost or the pre-queue changed: the next tick tries again
        log.info("waiting room drawn", extra={"show_id": show_id, "early": len(members)})

    async def _adapt(self, room: Room) -> None:
        now = time.monotonic()
        if now - self._adapted_at.get(room.show_id, 0.0) < ADAPT_PERIOD:
            return
        self._adapted_at[room.show_id] = now
        health = self._key(room.show_id, "health")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(health)
            pipe.delete(health)
            raw, _ = await pipe.execute()
        seen = {k.decode(): int(v) for k, v in raw.items()}
        info = await self.router.show(room.show_id)
        breaker_open = self.router.shard(info.shard).breaker.is_open
        factor = next_factor(
            room.factor,
            seen.get("holds", 0),
            seen.get("slow", 0),
            seen.get("failed", 0),
            breaker_open,
        )
        if factor != room.factor:
            await self.redis.hset(self._key(room.show_id, "cfg"), "factor", factor)
            log.info(
                "waiting room rate adapted",
                extra={"show_id": room.show_id, "factor": factor, **seen},
            )
            room.factor = factor

    async def _flush_stats(self) -> None:
        """This instance's hold counts since the last tick, added to the room's."""
        stats, self._stats = self._stats, {}
        if not stats:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for show_id, s in stats.items():
                health = self._key(show_id, "health")
                pipe.hincrby(health, "holds", s.holds)
                pipe.hincrby(health, "slow", s.slow)
                pipe.hincrby(health, "failed", s.failed)
                pipe.expire(health, 60)
            await pipe.execute()

    async def _push(self, now_ms: int) -> None:
        """Each socket of a customer who waits in a room gets their position when it
        changes, and the admission token once when let in."""
        users = list(self._customers)
        sent: dict[tuple[int, int], str] = {}
        if users and self.rooms:
            for room in list(self.rooms.values()):
                frames = await self._frames(room, users, now_ms)
                for user, text in frames.items():
                    for conn in list(self._customers.get(user, ())):
                        key = (id(conn), room.show_id)
                        if self._sent.get(key) != text:
                            conn.send(Outgoing(text))
                        sent[key] = text
        self._sent = sent
        lapsed = [k for k, (_, expires) in self._tokens.items() if expires <= now_ms / 1000]
        for k in lapsed:
            del self._tokens[k]

    async def _frames(self, room: Room, users: list[str], now_ms: int) -> dict[str, str]:
        show_id = room.show_id
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self._key(show_id, "tickets"), users)
            pipe.smismember(self._key(show_id, "pre"), users)
            numbers, in_pre = await pipe.execute()
        frames: dict[str, str] = {}
        for user, number, early in zip(users, numbers, in_pre, strict=True):
            if number is not None and int(number) > room.served:
                position = int(number) - room.served
                frame: Any = QueuePosition(show_id, position, room.eta(position - 1, now_ms))
            elif number is not None:
                token, _ = await self._admission(show_id, user, now_ms)
                if token is None:
                    continue
                frame = Admitted(show_id, token)
            elif early:
                frame = QueuePosition(show_id, None, room.eta(room.pre_size / 2, now_ms))
            else:
                continue
            frames[user] = encoder.encode(frame).decode()
        return frames
