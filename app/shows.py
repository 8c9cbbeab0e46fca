"""Shows: creating them on their shard, changing them, listing them with availability."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from app import wire
from app.domain import SectionSpec, layout_seats
from app.errors import ShowNotFound
from app.realtime.keys import RedisKeys
from app.seatmap import count_seats
from app.shards import ShardRouter, ShowInfo, place_new_show

NEXT_SHOW_ID = "SELECT nextval('shows_id_seq')"
INSERT_SHOW = """
INSERT INTO shows (id, title, venue, starts_at, status, hold_seconds, shard, seats_total)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id, title, venue, starts_at, status, hold_seconds, shard, seats_total
"""
INSERT_SHARD_SHOW = """
INSERT INTO shard_shows (show_id, status, hold_seconds) VALUES ($1, $2, $3)
"""
SEAT_COLUMNS = ["show_id", "label", "ord", "section", "category", "price_cents", "x", "y"]
UPDATE_SHOW = """
UPDATE shows SET title = coalesce($2, title), starts_at = coalesce($3, starts_at),
                 status = coalesce($4, status), updated_at = now()
WHERE id = $1
RETURNING id, title, venue, starts_at, status, hold_seconds, shard, seats_total
"""
UPDATE_SHARD_SHOW = "UPDATE shard_shows SET status = $2 WHERE show_id = $1"
LIST_SHOWS = """
SELECT id, title, venue, starts_at, status, hold_seconds, shard, seats_total
FROM shows ORDER BY starts_at, id LIMIT 500
"""
# cached counts: invalidated by the realtime publisher on every seat change of the show
AVAILABILITY_TTL = 5
Counts = dict[int, dict[str, int]]  # {show_id: {"AVAILABLE": n, "HELD": n, "BOOKED": n}}


def _show(info: ShowInfo, available: int | None = None) -> wire.Show:
    return wire.Show(
        id=info.id,
        title=info.title,
        venue=info.venue,
        starts_at=info.starts_at,
        status=info.status,
        hold_seconds=info.hold_seconds,
        shard=info.shard,
        seats_total=info.seats_total,
        seats_available=available,
    )


ANALYZE_SEATS = "ANALYZE seats"


class ShowCatalog:
    def __init__(
        self,
        router: ShardRouter,
        redis: aioredis.Redis,
        default_hold_seconds: int,
        keys: RedisKeys,
    ):
        self.router = router
        self.redis = redis
        self.keys = keys  # the availability cache's names in Redis
        self.default_hold_seconds = default_hold_seconds
        # counts being read from a shard, by (shard, show ids): see _count
        self._counting: dict[tuple[int, tuple[int, ...]], asyncio.Future[Counts]] = {}

    async def create(self, body: wire.CreateShow) -> wire.Show:
        """Seats first on the shard, then the directory row: a show is visible only once
        its seats exist, and a failure in between leaves nothing a customer can see."""
        if body.sections is not None:
            sections = [
                SectionSpec(s.name, s.rows, s.seats_per_row, s.category, s.price_cents, s.x, s.y)
                for s in body.sections
            ]
        else:
            assert body.rows is not None and body.seats_per_row is not None
            sections = [SectionSpec("Main", body.rows, body.seats_per_row)]
        seats = layout_seats(sections)
        hold_seconds = body.hold_seconds or self.default_hold_seconds
        shard = self.router.shard(await place_new_show(self.router))
        show_id = await self.router.meta.fetchval(NEXT_SHOW_ID)
        async with shard.connection("create_show") as conn, conn.transaction():
            await conn.execute(INSERT_SHARD_SHOW, show_id, body.status, hold_seconds)
            await conn.copy_records_to_table(
                "seats",
                columns=SEAT_COLUMNS,
                records=[
                    (show_id, s.label, i, s.section, s.category, s.price_cents, s.x, s.y)
                    for i, s in enumerate(seats)
                ],
            )
        async with shard.connection("analyze_seats") as conn:
            # fresh statistics, so the planner knows a show has many seats and reaches a few
            # of them by the primary key rather than reading the whole show
            await conn.execute(ANALYZE_SEATS)
        row = await self.router.meta.fetchrow(
            INSERT_SHOW,
            show_id,
            body.title,
            body.venue,
            body.starts_at,
            body.status,
            hold_seconds,
            shard.index,
            len(seats),
        )
        return _show(ShowInfo.from_row(row), len(seats))

    async def update(self, show_id: int, body: wire.UpdateShow) -> wire.Show:
        info = await self.router.show(show_id, fresh=True)
        if body.status is not None:
            # the shard's copy is what the hold transaction checks
            shard = self.router.shard(info.shard)
            async with shard.connection("update_show") as conn:
                await conn.execute(UPDATE_SHARD_SHOW, show_id, body.status)
        row = await self.router.meta.fetchrow(
            UPDATE_SHOW, show_id, body.title, body.starts_at, body.status
        )
        if row is None:
            raise ShowNotFound(f"show {show_id} does not exist")
        self.router.forget(show_id)
        return _show(ShowInfo.from_row(row))

    async def get(self, show_id: int) -> wire.Show:
        info = await self.router.show(show_id, fresh=True)
        counts = await self.availability_counts([info])
        return _show(info, counts[info.id]["AVAILABLE"])

    async def list_all(self) -> wire.ShowList:
        infos = [ShowInfo.from_row(row) for row in await self.router.meta.fetch(LIST_SHOWS)]
        counts = await self.availability_counts(infos)
        return wire.ShowList([_show(info, counts[info.id]["AVAILABLE"]) for info in infos])

    async def availability(self, show_id: int) -> wire.Availability:
        info = await self.router.show(show_id)
        counts = (await self.availability_counts([info]))[show_id]
        return wire.Availability(
            show_id=show_id,
            AVAILABLE=counts["AVAILABLE"],
            HELD=counts["HELD"],
            BOOKED=counts["BOOKED"],
            total=info.seats_total,
        )

    async def availability_counts(self, infos: list[ShowInfo]) -> dict[int, dict[str, int]]:
        """Counts by status per show: from the Redis cache, the misses from their shards."""
        if not infos:
            return {}
        cached = await self.redis.mget([self.keys.availability(info.id) for info in infos])
        counts: dict[int, dict[str, int]] = {}
        missing: dict[int, list[int]] = {}
        for info, raw in zip(infos, cached, strict=True):
            if raw is not None:
                counts[info.id] = orjson.loads(raw)
            else:
                missing.setdefault(info.shard, []).append(info.id)
        fetched = await asyncio.gather(*(self._count(shard, ids) for shard, ids in missing.items()))
        for part in fetched:
            counts.update(part)
        return counts

    async def _count(self, shard: int, show_ids: list[int]) -> Counts:
        """Counts from the shard, then cached; once at a time per shard and set of shows.
        Every seat change deletes a show's cached counts, so during an on-sale each list
        request misses: those arriving while a count is under way wait for it instead of
        each counting (and caching) again."""
        key = (shard, tuple(show_ids))
        counting = self._counting.get(key)
        if counting is None:
            counting = asyncio.ensure_future(self._count_and_cache(shard, show_ids))
            self._counting[key] = counting
            counting.add_done_callback(lambda done: self._counted(key, done))
        # shielded: a caller that gives up does not cancel the count for the others
        return await asyncio.shield(counting)

    async def _count_and_cache(self, shard: int, show_ids: list[int]) -> Counts:
        fresh = await count_seats(self.router.shard(shard), show_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for show_id, value in fresh.items():
                pipe.set(self.keys.availability(show_id), orjson.dumps(value), ex=AVAILABILITY_TTL)
            await pipe.execute()
        return fresh

    def _counted(self, key: tuple[int, tuple[int, ...]], done: asyncio.Future[Counts]) -> None:
        self._counting.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here too, in case every caller gave up


def show_frame(show: wire.Show) -> dict[str, Any]:
    """The `show` frame watchers get when an admin changes a show."""
    return {
        "type": "show",
        "show_id": show.id,
        "title": show.title,
        "starts_at": show.starts_at.isoformat(),
        "status": show.status,
    }


async def seed_demo_shows(catalog: ShowCatalog) -> list[wire.Show]:
    """Demo data on first start: a small theatre, a concert hall and a 6,000-seat arena."""
    soon = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=7)
    demos = [
        wire.CreateShow(
            title="Hamlet", venue="The Little Theatre", starts_at=soon, rows=10, seats_per_row=20
        ),
        wire.CreateShow(
            title="Beethoven's Ninth",
            venue="Modex Concert Hall",
            starts_at=soon + timedelta(days=1),
            sections=[
                wire.SectionBody("Stalls", 12, 30, "Stalls", 6500),
                wire.SectionBody("Circle", 8, 34, "Circle", 4500),
                wire.SectionBody("Gallery", 6, 38, "Gallery", 2500),
            ],
        ),
        wire.CreateShow(
            title="Championship Final",
            venue="Modex Arena",
            starts_at=soon + timedelta(days=14),
            sections=[
                wire.SectionBody("Lower Bowl", 30, 100, "Lower", 12000),
                wire.SectionBody("Upper Bowl", 30, 100, "Upper", 7000),
            ],
        ),
    ]
    return [await catalog.create(body) for body in demos]


async def has_shows(meta: asyncpg.Pool) -> bool:
    return bool(await meta.fetchval("SELECT EXISTS (SELECT 1 FROM shows)"))
