"""Shows: creating them on their shard, changing them, listing them with availability."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import orjson
import redis.asyncio as aioredis
from msgspec import UNSET

from app import wire
from app.domain import SeatSpec, SectionSpec, layout_seats, status_move_allowed
from app.errors import (
    IdempotencyKeyReused,
    InvalidStatusChange,
    ShowHasBookings,
    ShowNotFound,
)
from app.realtime.frames import ShowEvent
from app.realtime.keys import RedisKeys
from app.seatmap import count_seats
from app.shards import SHOW_COLUMNS, Shard, ShardRouter, ShowInfo, place_new_show

NEXT_SHOW_ID = "SELECT nextval('shows_id_seq')"
INSERT_SHOW = f"""
INSERT INTO shows (id, title, venue, starts_at, status, hold_seconds, shard, seats_total,
                   max_seats_per_customer, single_seat_rule)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING {SHOW_COLUMNS}
"""
INSERT_SHARD_SHOW = """
INSERT INTO shard_shows (show_id, status, hold_seconds, max_seats_per_customer, single_seat_rule)
VALUES ($1, $2, $3, $4, $5)
"""
SEAT_COLUMNS = ["show_id", "label", "ord", "section", "category", "price_cents", "x", "y", "rank"]
# the directory row, locked: a change and the reconciler of the same show take turns
LOCK_SHOW = f"SELECT {SHOW_COLUMNS} FROM shows WHERE id = $1 FOR UPDATE"
UPDATE_SHOW = f"""
UPDATE shows SET title = coalesce($2, title), starts_at = coalesce($3, starts_at),
                 status = coalesce($4, status),
                 max_seats_per_customer = coalesce($5, max_seats_per_customer),
                 single_seat_rule = coalesce($6, single_seat_rule),
                 updated_at = now()
WHERE id = $1
RETURNING {SHOW_COLUMNS}
"""
# the shard's copy of what its seat transactions check; a MOVED tombstone stays one
SYNC_SHARD_SHOW = """
UPDATE shard_shows SET status = $2, max_seats_per_customer = $3, single_seat_rule = $4
WHERE show_id = $1 AND status <> 'MOVED'
"""
LIST_SHOWS = f"SELECT {SHOW_COLUMNS} FROM shows ORDER BY starts_at, id LIMIT 500"

# ---- reconciling the directory and the shards ----
# a create takes seconds at most: shard rows this old with no directory row are orphans
ORPHAN_AGE = 300.0
DIRECTORY_HAS_SHOW = "SELECT 1 FROM shows WHERE id = $1"
DIRECTORY_ROWS = (
    "SELECT id, shard, status, max_seats_per_customer, single_seat_rule FROM shows"
    " WHERE id = ANY($1)"
)
# the fields a shard keeps a copy of: the reconciler compares these
SHARD_COPY = ("status", "max_seats_per_customer", "single_seat_rule")
SHARD_SHOWS = """
SELECT show_id, status, max_seats_per_customer, single_seat_rule,
       created_at < now() - make_interval(secs => $1) AS settled
FROM shard_shows WHERE status <> 'MOVED'
"""
# a deleted show's last trace; a delete that crashed after the shard is finished from here
DIRECTORY_OF_SHARD = """
SELECT id FROM shows WHERE shard = $1 AND created_at < now() - make_interval(secs => $2)
"""
SHARD_HAS_SHOW = "SELECT 1 FROM shard_shows WHERE show_id = $1"
DELETE_SHOW = "DELETE FROM shows WHERE id = $1"
# every seat locked (a confirm or book locks its seats first): no booking can be made while
# the show's bookings are counted and its rows deleted
LOCK_ALL_SEATS = "SELECT count(*) FROM (SELECT 1 FROM seats WHERE show_id = $1 FOR UPDATE) s"
BOOKINGS_KEPT = (
    "SELECT count(*) FROM bookings WHERE show_id = $1 AND status IN ('CONFIRMED', 'PENDING')"
)
# Idempotency-Key on create: the key, the show it made and what was asked
CREATE_KEY = "SELECT show_id, request FROM show_create_keys WHERE key = $1"
KEEP_CREATE_KEY = "INSERT INTO show_create_keys (key, show_id, request) VALUES ($1, $2, $3)"
# nothing routes to an orphan, so nobody can have held or booked its seats; its tables are
# cleared all the same, whatever a future path may have written
REMOVE_SHARD_SHOW = [
    f"DELETE FROM {table} WHERE show_id = $1"
    for table in ("outbox", "seat_audit", "bookings", "holds", "seats", "shard_shows")
]


@dataclass
class Reconciled:
    orphans_removed: list[int] = field(default_factory=list)
    repaired: list[int] = field(default_factory=list)
    deletes_finished: list[int] = field(default_factory=list)


async def remove_shard_show(shard: Shard, show_id: int) -> None:
    async with shard.connection("remove_orphan") as conn, conn.transaction():
        for statement in REMOVE_SHARD_SHOW:
            await conn.execute(statement, show_id)


log = logging.getLogger("modex.shows")

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
        max_seats_per_customer=info.max_seats_per_customer,
        single_seat_rule=info.single_seat_rule,
        seats_available=available,
    )


ANALYZE_SEATS = "ANALYZE seats"


def seat_ranks(seats: list[SeatSpec], quality: dict[str, int]) -> list[int]:
    """Each seat's place in best available's order (1 = best): a section of higher quality
    first, then rows nearest the stage (the top of the plan, lowest y), then seats nearest
    the venue's centre line."""
    if not seats:
        return []
    centre = (min(s.x for s in seats) + max(s.x for s in seats)) / 2
    order = sorted(
        range(len(seats)),
        key=lambda i: (
            -quality.get(seats[i].section, 0),
            seats[i].y,
            abs(seats[i].x - centre),
            seats[i].x,
        ),
    )
    ranks = [0] * len(seats)
    for place, i in enumerate(order, start=1):
        ranks[i] = place
    return ranks


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

    async def create(self, body: wire.CreateShow, key: str | None = None) -> wire.Show:
        """The show's two homes, the directory (metadata database) and its shard, are
        written so that a failure anywhere leaves neither a visible half nor a disagreement.
        The directory row is inserted first but committed last, after the shard's rows:
        until then no customer can reach the show. A failure after the shard committed
        removes the shard's rows again; a crash there leaves rows nothing routes to, which
        `reconcile()` removes. With an Idempotency-Key `key`, the same request again gets
        the show the first one made (a double click makes one show); another request with
        the same key is refused."""
        request = hashlib.sha256(msgspec.json.encode(body)).hexdigest() if key else ""
        if key and (made := await self._made_with(key, request)) is not None:
            return made
        quality: dict[str, int] = {}
        if body.sections is not UNSET:
            quality = {s.name: s.quality for s in body.sections}
            sections = [
                SectionSpec(s.name, s.rows, s.seats_per_row, s.category, s.price_cents, s.x, s.y)
                for s in body.sections
            ]
        else:
            assert body.rows is not UNSET and body.seats_per_row is not UNSET
            sections = [SectionSpec("Main", body.rows, body.seats_per_row)]
        seats = layout_seats(sections)
        hold_seconds = body.hold_seconds or self.default_hold_seconds
        shard = self.router.shard(await place_new_show(self.router))
        show_id = await self.router.meta.fetchval(NEXT_SHOW_ID)
        try:
            async with self.router.meta.acquire() as meta, meta.transaction():
                row = await meta.fetchrow(
                    INSERT_SHOW,
                    show_id,
                    body.title,
                    body.venue,
                    body.starts_at,
                    body.status,
                    hold_seconds,
                    shard.index,
                    len(seats),
                    body.max_seats_per_customer,
                    body.single_seat_rule,
                )
                if key:
                    await meta.execute(KEEP_CREATE_KEY, key, show_id, request)
                await self._write_shard_show(
                    shard, show_id, body, hold_seconds, seats, seat_ranks(seats, quality)
                )
        except BaseException as exc:
            # the shard's write may have committed (even if its answer was lost)
            await self._remove_orphan(shard, show_id)
            # the same key's twin committed first: its show is the answer
            if (
                key
                and isinstance(exc, asyncpg.UniqueViolationError)
                and (made := await self._made_with(key, request)) is not None
            ):
                return made
            raise
        async with shard.connection("analyze_seats") as conn:
            # fresh statistics, so the planner knows a show has many seats and reaches a few
            # of them by the primary key rather than reading the whole show
            await conn.execute(ANALYZE_SEATS)
        return _show(ShowInfo.from_row(row), len(seats))

    async def _made_with(self, key: str, request: str) -> wire.Show | None:
        row = await self.router.meta.fetchrow(CREATE_KEY, key)
        if row is None:
            return None
        if row["request"] != request:
            raise IdempotencyKeyReused("this Idempotency-Key was used to create another show")
        return await self.get(row["show_id"])

    async def _write_shard_show(
        self,
        shard: Shard,
        show_id: int,
        body: wire.CreateShow,
        hold_seconds: int,
        seats: list[SeatSpec],
        ranks: list[int],
    ) -> None:
        async with shard.connection("create_show") as conn, conn.transaction():
            await conn.execute(
                INSERT_SHARD_SHOW,
                show_id,
                body.status,
                hold_seconds,
                body.max_seats_per_customer,
                body.single_seat_rule,
            )
            await conn.copy_records_to_table(
                "seats",
                columns=SEAT_COLUMNS,
                records=[
                    (show_id, s.label, i, s.section, s.category, s.price_cents, s.x, s.y, rank)
                    for i, (s, rank) in enumerate(zip(seats, ranks, strict=True))
                ],
            )

    async def _remove_orphan(self, shard: Shard, show_id: int) -> None:
        """Best effort after a failed create: the shard's rows go unless the directory row
        was committed after all (a commit whose answer was lost). Whatever this cannot do,
        the reconciler does."""
        try:
            if await self.router.meta.fetchval(DIRECTORY_HAS_SHOW, show_id) is None:
                await remove_shard_show(shard, show_id)
        except Exception:
            log.warning("orphaned show left to the reconciler", extra={"show_id": show_id})

    async def update(self, show_id: int, body: wire.UpdateShow) -> wire.Show:
        """The directory row stays locked until the shard's copy is written: the change
        commits in the directory only after the shard has it, and a failure in between
        puts the shard back to what the directory says."""
        shard_touched = False  # the shard may have the change: undo it on failure
        try:
            async with self.router.meta.acquire() as meta, meta.transaction():
                current = await meta.fetchrow(LOCK_SHOW, show_id)
                if current is None:
                    raise ShowNotFound(f"show {show_id} does not exist")
                if body.status is not None and not status_move_allowed(
                    current["status"], body.status
                ):
                    raise InvalidStatusChange(
                        f"a show cannot go from {current['status']} to {body.status}",
                        status=current["status"],
                    )
                row = await meta.fetchrow(
                    UPDATE_SHOW,
                    show_id,
                    body.title,
                    body.starts_at,
                    body.status,
                    body.max_seats_per_customer,
                    body.single_seat_rule,
                )
                changed = ShowInfo.from_row(row)
                if any(getattr(changed, name) != current[name] for name in SHARD_COPY):
                    shard_touched = True
                    await self._sync_shard(changed)
        except BaseException:
            if shard_touched:
                await self._resync(show_id)
            raise
        finally:
            self.router.forget(show_id)
        return _show(changed)

    async def _sync_shard(self, info: ShowInfo) -> None:
        """The shard's copy is what the seat transactions check."""
        shard = self.router.shard(info.shard)
        async with shard.connection("update_show") as conn:
            await conn.execute(
                SYNC_SHARD_SHOW,
                info.id,
                info.status,
                info.max_seats_per_customer,
                info.single_seat_rule,
            )

    async def _resync(self, show_id: int) -> None:
        try:
            await self.reconcile_show(show_id)
        except Exception:
            log.warning("show change left to the reconciler", extra={"show_id": show_id})

    async def reconcile_show(self, show_id: int) -> None:
        """Write the directory's view of one show to its shard, the directory row locked
        so that no change of the show runs meanwhile."""
        async with self.router.meta.acquire() as meta, meta.transaction():
            row = await meta.fetchrow(LOCK_SHOW, show_id)
            if row is not None:
                await self._sync_shard(ShowInfo.from_row(row))

    async def reconcile(self, orphan_age: float = ORPHAN_AGE) -> Reconciled:
        """Repairs what a crash between the two databases left: shard rows of a show the
        directory does not know (older than `orphan_age` seconds, so a create under way is
        left alone) are removed; a shard's copy that disagrees with the directory is
        rewritten from it."""
        done = Reconciled()
        for shard in self.router.shards:
            async with shard.connection("reconcile") as conn:
                copies = await conn.fetch(SHARD_SHOWS, orphan_age)
            if not copies:
                continue
            directory = {
                row["id"]: row
                for row in await self.router.meta.fetch(
                    DIRECTORY_ROWS, [copy["show_id"] for copy in copies]
                )
            }
            for copy in copies:
                entry = directory.get(copy["show_id"])
                if entry is None:
                    if copy["settled"]:
                        await remove_shard_show(shard, copy["show_id"])
                        done.orphans_removed.append(copy["show_id"])
                elif entry["shard"] == shard.index and any(
                    entry[name] != copy[name] for name in SHARD_COPY
                ):
                    await self.reconcile_show(copy["show_id"])
                    done.repaired.append(copy["show_id"])
            done.deletes_finished += await self._finish_deletes(shard, orphan_age)
        if done.orphans_removed or done.repaired or done.deletes_finished:
            log.warning(
                "reconciled shows",
                extra={
                    "orphans_removed": done.orphans_removed,
                    "repaired": done.repaired,
                    "deletes_finished": done.deletes_finished,
                },
            )
        return done

    async def _finish_deletes(self, shard: Shard, orphan_age: float) -> list[int]:
        """Directory rows whose shard has no copy at all (not even a moved show's
        tombstone): only a delete that crashed after the shard's part leaves one (a create
        commits the shard first), so the delete is finished."""
        finished = []
        for row in await self.router.meta.fetch(DIRECTORY_OF_SHARD, shard.index, orphan_age):
            async with shard.connection("reconcile") as conn:
                if await conn.fetchval(SHARD_HAS_SHOW, row["id"]) is not None:
                    continue
            async with self.router.meta.acquire() as meta, meta.transaction():
                # a delete under way holds this lock; after it, look again
                if await meta.fetchrow(LOCK_SHOW, row["id"]) is None:
                    continue
                async with shard.connection("reconcile") as conn:
                    if await conn.fetchval(SHARD_HAS_SHOW, row["id"]) is not None:
                        continue
                await meta.execute(DELETE_SHOW, row["id"])
                finished.append(row["id"])
        return finished

    async def delete(self, show_id: int) -> None:
        """A show nobody has a booking for (a mistake, a test) goes from both databases:
        the shard's rows first, under the directory row's lock, then the directory row. A
        crash in between leaves a directory row with no shard copy, which the reconciler
        removes. Live holds go with it."""
        async with self.router.meta.acquire() as meta, meta.transaction():
            current = await meta.fetchrow(LOCK_SHOW, show_id)
            if current is None:
                raise ShowNotFound(f"show {show_id} does not exist")
            shard = self.router.shard(current["shard"])
            async with shard.connection("delete_show") as conn, conn.transaction():
                await conn.fetchval(LOCK_ALL_SEATS, show_id)
                bookings = await conn.fetchval(BOOKINGS_KEPT, show_id)
                if bookings:
                    raise ShowHasBookings(
                        f"show {show_id} has {bookings} booking(s): cancel the show instead"
                    )
                for statement in REMOVE_SHARD_SHOW:
                    await conn.execute(statement, show_id)
            await meta.execute(DELETE_SHOW, show_id)
        self.router.forget(show_id)

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


def show_event(show: wire.Show) -> ShowEvent:
    """What watchers are told when an admin changes a show (their `show` frame)."""
    return ShowEvent(
        show_id=show.id,
        title=show.title,
        starts_at=show.starts_at.isoformat(),
        status=show.status,
    )


# Long enough for a person to check out (the API's default, the seed's 30 s, suits load
# tests, not someone typing card details)
DEMO_HOLD_SECONDS = 5 * 60


async def seed_demo_shows(catalog: ShowCatalog) -> list[wire.Show]:
    """Demo data on first start: a small theatre, a concert hall and a 6,000-seat arena."""
    soon = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=7)
    demos = [
        wire.CreateShow(
            title="Hamlet",
            venue="The Little Theatre",
            starts_at=soon,
            rows=10,
            seats_per_row=20,
            hold_seconds=DEMO_HOLD_SECONDS,
        ),
        wire.CreateShow(
            title="Beethoven's Ninth",
            venue="Modex Concert Hall",
            starts_at=soon + timedelta(days=1),
            hold_seconds=DEMO_HOLD_SECONDS,
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
            hold_seconds=DEMO_HOLD_SECONDS,
            sections=[
                wire.SectionBody("Lower Bowl", 30, 100, "Lower", 12000),
                wire.SectionBody("Upper Bowl", 30, 100, "Upper", 7000),
            ],
        ),
    ]
    return [await catalog.create(body) for body in demos]


async def has_shows(meta: asyncpg.Pool) -> bool:
    return bool(await meta.fetchval("SELECT EXISTS (SELECT 1 FROM shows)"))
