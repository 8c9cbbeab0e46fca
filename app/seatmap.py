"""Reading a show's seats, and the encoded seat maps each server keeps. An expired hold
reads as AVAILABLE at once (lazy expiry)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

import msgspec

from app import wire
from app.compression import Body
from app.shards import Shard, ShardRouter

# What a seat looks like right now is seat_status_now() on the shard (a lapsed hold is free
# at once: on general sale, or back with its channel), the rule every claim goes by too;
# PostgreSQL inlines it, so a map costs what the expression written out did.
SEAT_STATUS_NOW = "seat_status_now(status, held_until, channel)"

# the last column is how long a hold has left (NULL for other seats; a lapsed hold's is not
# positive): the map is good until the first live one lapses
SEATS_OF_SHOW = f"""
SELECT label, {SEAT_STATUS_NOW} AS status, version, section, category, price_cents, x, y,
       CASE WHEN status = 'HELD' THEN extract(epoch FROM held_until - now())::float8 END
FROM seats WHERE show_id = $1 ORDER BY ord
"""
SEAT_STATES_OF_SHOW = f"""
SELECT label, {SEAT_STATUS_NOW} AS status, version FROM seats WHERE show_id = $1 ORDER BY ord
"""
# Every seat change writes an outbox row in its transaction, and the row is deleted only
# after the change is published (which moves the show's offset): a change committed but
# not yet published is one of these rows. One probe of the outbox's primary key.
OUTBOX_OF_SHOW = "SELECT coalesce(array_agg(id), '{}') FROM outbox WHERE show_id = $1"
COUNTS_OF_SHOWS = f"""
SELECT show_id, {SEAT_STATUS_NOW} AS status, count(*) AS n
FROM seats WHERE show_id = ANY($1::bigint[]) GROUP BY show_id, 2
"""


class SeatState(NamedTuple):
    label: str
    status: str
    version: int


class SeatsRead(NamedTuple):
    seats: list[wire.Seat]  # in map order
    held_for: float  # seconds until the first live hold lapses (infinity when none is held)
    pending: frozenset[int]  # the show's outbox rows seen just before: changes it includes


async def read_seats(shard: Shard, show_id: int) -> SeatsRead:
    # from the shard's standby when it has one that is caught up (Shard.reading): the
    # offset a map is paired with is read before this starts, as on the primary
    async with shard.reading("read_seats") as conn:
        pending = await conn.fetchval(OUTBOX_OF_SHOW, show_id)
        rows = await conn.fetch(SEATS_OF_SHOW, show_id)
    seats = [wire.Seat(*row[:8]) for row in rows]
    held_for = min((row[8] for row in rows if row[8] is not None and row[8] > 0), default=math.inf)
    return SeatsRead(seats, held_for, frozenset(pending))


async def read_pending(shard: Shard, show_id: int) -> frozenset[int]:
    async with shard.connection("seat_map_check") as conn:
        return frozenset(await conn.fetchval(OUTBOX_OF_SHOW, show_id))


async def read_seat_states(shard: Shard, show_id: int) -> list[SeatState]:
    async with shard.connection("read_seat_states") as conn:
        rows = await conn.fetch(SEAT_STATES_OF_SHOW, show_id)
    return [SeatState(*row) for row in rows]


async def count_seats(shard: Shard, show_ids: list[int]) -> dict[int, dict[str, int]]:
    """{show_id: {"AVAILABLE": n, "HELD": n, "BOOKED": n}} for shows on this shard."""
    counts: dict[int, dict[str, int]] = {
        show_id: {"AVAILABLE": 0, "HELD": 0, "BOOKED": 0} for show_id in show_ids
    }
    async with shard.reading("count_seats") as conn:
        for row in await conn.fetch(COUNTS_OF_SHOWS, show_ids):
            counts[row["show_id"]][row["status"]] = row["n"]
    return counts


@dataclass
class KeptMap:
    shard: int  # where it was read
    offset: str  # the show's offset, read before the seats
    pending: frozenset[int]  # the show's outbox rows, read before the seats
    body: Body  # the SeatMap as JSON, and its compressed forms
    good_until: float  # monotonic: when its first live hold lapses, or MAX_AGE at most
    stale: Body | None = None  # the same map marked stale, made when first needed


class SeatMaps:
    """The encoded seat map of each show this server was asked for.

    Encoding a 6,000-seat map costs the server ~6 ms, and during an on-sale thousands ask
    for the same one. A map is served again while it is exact: its offset is still the
    show's latest (nothing has been published for the show since) and none of its holds
    has lapsed. Requests that miss at the same offset share one read. The offset is read
    before the seats, so a watcher that subscribes from it replays every later change.

    A change that was committed but never published (its server died before publishing
    and the outbox relay has not caught up yet, or a write behind the application's back)
    moves no offset: a map is therefore also read again once it is MAX_AGE old.

    A forced read (`Cache-Control: no-cache`) must reflect every seat change committed
    before the request. Each seat transaction writes an outbox row, deleted only once the
    change is published (the offset moved), so the kept map is checked rather than read
    again: one probe of the show's outbox rows, then the offset (see `_check`). Forced
    requests of a show share one check at a time, so a flood of them costs less than
    plain requests. (A write behind the application's back writes no outbox row: MAX_AGE
    still bounds how long any map misses it.)
    """

    MAX_AGE = 1.0

    def __init__(
        self,
        router: ShardRouter,
        position: Callable[[int], Awaitable[str]],
        max_shows: int = 64,
    ) -> None:
        self._router = router
        self._position = position
        self._max_shows = max_shows
        self._maps: dict[int, KeptMap] = {}  # oldest first
        # seat changes committed here, per show: a read that began before one is not kept
        self._changes: dict[int, int] = {}
        self._reading: dict[tuple[int, str, int], asyncio.Task[Body]] = {}
        self._checks: dict[int, tuple[int, asyncio.Task[Body]]] = {}  # show: (number, check)
        self._checks_begun = 0

    async def get(self, show_id: int, *, fresh: bool = False) -> Body:
        """The show's map; with `fresh`, exact as of a moment after this call began (a
        client's `Cache-Control: no-cache`). Raises ShardUnavailable when it cannot be read."""
        if fresh:
            return await self._checked(show_id)
        offset = await self._position(show_id)
        found = self._maps.get(show_id)
        if found and offset and found.offset == offset and time.monotonic() < found.good_until:
            return found.body
        key = (show_id, offset, self._changes.get(show_id, 0))
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.create_task(self._read(show_id, offset))
            self._reading[key] = reading
            reading.add_done_callback(lambda _: self._reading.pop(key, None))
        # shielded: a caller that gives up does not cancel the read for the others
        return await asyncio.shield(reading)

    def changed(self, show_id: int) -> None:
        """A seat of the show changed here: the next request here must see it, even before
        its event is published (the last map stays as the outage fallback)."""
        self._changes[show_id] = self._changes.get(show_id, 0) + 1
        found = self._maps.get(show_id)
        if found:
            found.good_until = 0.0

    def last(self, show_id: int) -> Body | None:
        """The last map read, however old, marked stale: served while the shard is down."""
        found = self._maps.get(show_id)
        if found is None:
            return None
        if found.stale is None:
            seat_map = msgspec.json.decode(found.body.identity, type=wire.SeatMap)
            seat_map.stale = True
            found.stale = Body(msgspec.json.encode(seat_map))
        return found.stale

    async def _checked(self, show_id: int) -> Body:
        """The result of a check of the show's map that began after this call did. A call
        that arrives while a check is under way waits for it to end and shares the next:
        one check per show at a time, however many ask."""
        arrived = self._checks_begun
        while (current := self._checks.get(show_id)) is not None and not current[1].done():
            number, check = current
            if number >= arrived:
                return await asyncio.shield(check)
            await asyncio.wait([check])  # began before this call: its answer may be too old
        number, self._checks_begun = self._checks_begun, self._checks_begun + 1
        check = asyncio.create_task(self._check(show_id))
        self._checks[show_id] = (number, check)
        check.add_done_callback(lambda _: self._forget_check(show_id, check))
        return await asyncio.shield(check)

    def _forget_check(self, show_id: int, check: asyncio.Task[Body]) -> None:
        if self._checks.get(show_id, (0, None))[1] is check:
            del self._checks[show_id]
        if not check.cancelled():
            check.exception()  # retrieved: the callers that are still waiting raise it

    async def _check(self, show_id: int) -> Body:
        """The kept map if it is still exact, else a read. Exact: every change committed
        before this began is in it. Such a change was either still in the outbox at the
        probe below (then it is one the map saw there before reading its seats, or the map
        is not used) or deleted before it, so published before it, so it moved the offset
        read after it (unless the map's own offset, read before its seats, already
        counted it). Lapsed holds, changes committed here and MAX_AGE count as for any
        request (good_until)."""
        found = self._maps.get(show_id)
        _, shard = await self._router.for_show(show_id)
        if found and found.shard == shard.index and time.monotonic() < found.good_until:
            pending = await read_pending(shard, show_id)
            offset = await self._position(show_id)
            if offset and offset == found.offset and pending <= found.pending:
                return found.body
        else:
            offset = await self._position(show_id)
        return await self._read(show_id, offset)

    async def _read(self, show_id: int, offset: str) -> Body:
        changes = self._changes.get(show_id, 0)
        _, shard = await self._router.for_show(show_id)
        read = await read_seats(shard, show_id)
        if not read.seats:
            # every show has seats: none here means it was just moved to another shard
            _, shard = await self._router.for_show(show_id, fresh=True)
            read = await read_seats(shard, show_id)
        body = Body(msgspec.json.encode(wire.SeatMap(show_id, offset, read.seats)))
        current = self._changes.get(show_id, 0) == changes
        if not current and show_id in self._maps:
            return body  # a change committed here meanwhile: keep the map read after it
        self._maps.pop(show_id, None)
        if len(self._maps) >= self._max_shows:
            self._maps.pop(next(iter(self._maps)))
        good_for = min(read.held_for, self.MAX_AGE) if current else 0.0
        self._maps[show_id] = KeptMap(
            shard.index, offset, read.pending, body, time.monotonic() + good_for
        )
        return body
