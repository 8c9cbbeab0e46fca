"""Reading a show's seats. An expired hold reads as AVAILABLE at once (lazy expiry)."""

from __future__ import annotations

from typing import NamedTuple

from app import wire
from app.shards import Shard

# the one definition of "what a seat looks like right now"
SEAT_STATUS_NOW = (
    "CASE WHEN status = 'HELD' AND held_until <= now() THEN 'AVAILABLE' ELSE status END"
)

SEATS_OF_SHOW = f"""
SELECT label, {SEAT_STATUS_NOW} AS status, version, section, category, price_cents, x, y
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


async def read_seats(shard: Shard, show_id: int) -> list[wire.Seat]:
    async with shard.connection("read_seats") as conn:
        rows = await conn.fetch(SEATS_OF_SHOW, show_id)
    return [wire.Seat(*row) for row in rows]


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
