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
from app.shards import Shard, ShardRouter

# the one definition of "what a seat looks like right now"
SEAT_STATUS_NOW = (
    "CASE WHEN status = 'HELD' AND held_until <= now() THEN 'AVAILABLE' ELSE status END"
)

# the last column is how long a live hold has left (NULL for other seats): the map is good
# until the first of them lapses
SEATS_OF_SHOW = f"""
SELECT label, {SEAT_STATUS_NOW} AS status, version, section, category, price_cents, x, y,
       CASE WHEN status = 'HELD' AND held_until > now()
            THEN extract(epoch FROM held_until - now())::float8 END AS held_for
FROM seats WHERE show_id = $1 ORDER BY ord
"""
SEAT_STATES_OF_SHOW = f"""
SELECT label, {SEAT_STATUS_NOW} AS status, version FROM seats WHERE show_id = $1 ORDER BY ord
"""
COUNTS_OF_SHOWS = f"""
SELECT show_id, {SEAT_STATUS_NOW} AS status, count(*) AS n
FROM seats WHERE show_id = ANY($1::bigint[]) GROUP BY show_id, 2
"""


class SeatState(NamedTuple):
    label: str
    status: str
    version: int


async def read_seats(shard: Shard, show_id: int) -> tuple[list[wire.Seat], float]:
    """The show's seats in map order, and the seconds until the first live hold lapses
    (infinity when none is held)."""
    async with shard.connection("read_seats") as conn:
        rows = await conn.fetch(SEATS_OF_SHOW, show_id)
    seats = [wire.Seat(*row[:8]) for row in rows]
    return seats, min((row[8] for row in rows if row[8] is not None), default=math.inf)


async def read_seat_states(shard: Shard, show_id: int) -> list[SeatState]:
    async with shard.connection("read_seat_states") as conn:
        rows = await conn.fetch(SEAT_STATES_OF_SHOW, show_id)
    return [SeatState(*row) for row in rows]


async def count_seats(shard: Shard, show_ids: list[int]) -> dict[int, dict[str, int]]:
    """{show_id: {"AVAILABLE": n, "HELD": n, "BOOKED": n}} for shows on this shard."""
    counts: dict[int, dict[str, int]] = {
        show_id: {"AVAILABLE": 0, "HELD": 0, "BOOKED": 0} for show_id in show_ids
    }
    async with shard.connection("count_seats") as conn:
        for row in await conn.fetch(COUNTS_OF_SHOWS, show_ids):
            counts[row["show_id"]][row["status"]] = row["n"]
    return counts


@dataclass
class EncodedMap:
    offset: str
    body: bytes  # the SeatMap as JSON
    good_until: float  # monotonic: when its first live hold lapses, or MAX_AGE at most


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
        self._maps: dict[int, EncodedMap] = {}  # oldest first
        # seat changes committed here, per show: a read that began before one is not kept
        self._changes: dict[int, int] = {}
        self._reading: dict[tuple[int, str, int], asyncio.Task[bytes]] = {}

    async def get(self, show_id: int, *, fresh: bool = False) -> bytes:
        """The show's map as JSON; with `fresh`, read after this call began (a client's
        `Cache-Control: no-cache`). Raises ShardUnavailable when it cannot be read."""
        offset = await self._position(show_id)
        if fresh:
            return await self._read(show_id, offset)
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

    def last(self, show_id: int) -> bytes | None:
        """The last map read, however old: served marked stale while the shard is down."""
        found = self._maps.get(show_id)
        return found.body if found else None

    async def _read(self, show_id: int, offset: str) -> bytes:
        changes = self._changes.get(show_id, 0)
        _, shard = await self._router.for_show(show_id)
        seats, held_for = await read_seats(shard, show_id)
        if not seats:
            # every show has seats: none here means it was just moved to another shard
            _, shard = await self._router.for_show(show_id, fresh=True)
            seats, held_for = await read_seats(shard, show_id)
        body = msgspec.json.encode(wire.SeatMap(show_id, offset, seats))
        current = self._changes.get(show_id, 0) == changes
        if not current and show_id in self._maps:
            return body  # a change committed here meanwhile: keep the map read after it
        self._maps.pop(show_id, None)
        if len(self._maps) >= self._max_shows:
            self._maps.pop(next(iter(self._maps)))
        good_for = min(held_for, self.MAX_AGE) if current else 0.0
        self._maps[show_id] = EncodedMap(offset, body, time.monotonic() + good_for)
        return body
