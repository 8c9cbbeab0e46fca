"""Shows live on one shard each; ids route to it; a user's bookings are found on every shard."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx

from tests.support import Cluster, auth, create_show


async def live_seats_per_shard(cluster: Cluster) -> dict[int, int]:
    conn = await asyncpg.connect(cluster.meta_url)
    try:
        rows = await conn.fetch(
            "SELECT shard, sum(seats_total) AS seats FROM shows "
            "WHERE status IN ('SCHEDULED', 'ON_SALE') GROUP BY shard"
        )
    finally:
        await conn.close()
    return {row["shard"]: row["seats"] for row in rows}


async def test_new_shows_go_to_the_shard_with_fewest_live_seats(
    client: httpx.AsyncClient, cluster: Cluster
) -> None:
    for _ in range(3):
        load = await live_seats_per_shard(cluster)
        expected = min((0, 1), key=lambda shard: (load.get(shard, 0), shard))
        show = await create_show(client, rows=4, seats_per_row=25)
        assert show["shard"] == expected, (load, show)


async def test_a_shows_rows_live_only_on_its_shard(
    client: httpx.AsyncClient, cluster: Cluster, user: str
) -> None:
    show = await create_show(client, rows=2, seats_per_row=5)
    hold = (
        await client.post(f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user))
    ).json()
    assert hold["hold_id"].startswith(f"{show['id']}."), "the hold id carries its show"
    booking = (await client.post(f"/holds/{hold['hold_id']}/confirm", headers=auth(user))).json()
    assert booking["id"].startswith(f"{show['id']}.")
    for index in range(2):
        conn = await cluster.connect_shard(index)
        try:
            counts = [
                await conn.fetchval(f"SELECT count(*) FROM {table} WHERE show_id = $1", show["id"])
                for table in ("seats", "holds", "bookings", "shard_shows")
            ]
        finally:
            await conn.close()
        if index == show["shard"]:
            assert counts == [10, 1, 1, 1]
        else:
            assert counts == [0, 0, 0, 0]


async def test_my_bookings_are_gathered_from_every_shard(
    client: httpx.AsyncClient, user: str
) -> None:
    shows: dict[int, dict[str, Any]] = {}
    while len(shows) < 2:
        show = await create_show(client, rows=1, seats_per_row=5)
        shows.setdefault(show["shard"], show)
    booked = await asyncio.gather(
        *(
            client.post(
                f"/shows/{show['id']}/book", json={"seatNumbers": ["A2"]}, headers=auth(user)
            )
            for show in shows.values()
        )
    )
    assert all(b.status_code == 201 for b in booked)
    mine = (await client.get("/me/bookings", headers=auth(user))).json()["bookings"]
    assert {b["show_id"] for b in mine} == {s["id"] for s in shows.values()}
    assert {b["id"] for b in mine} == {b.json()["id"] for b in booked}
