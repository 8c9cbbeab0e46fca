"""Moving a show to another shard while servers keep routing to the old one."""

from __future__ import annotations

import httpx

from tests.support import Cluster, ServerProcess, ShowOn, auth, run_modex


async def run_move(cluster: Cluster, show_id: int, to: int) -> str:
    return await run_modex(cluster.env(), "move-show", str(show_id), "--to", str(to))


async def test_a_moved_show_keeps_its_holds_bookings_and_ids(
    servers: list[ServerProcess], cluster: Cluster, show_on: ShowOn
) -> None:
    async with (
        httpx.AsyncClient(base_url=servers[0].url) as one,
        httpx.AsyncClient(base_url=servers[1].url) as two,
    ):
        show = await show_on(0, rows=2, seats_per_row=5)
        show_id = show["id"]
        hold = (
            await one.post(f"/shows/{show_id}/holds", json={"seats": ["A1"]}, headers=auth("mover"))
        ).json()
        booked = await two.post(
            f"/shows/{show_id}/book", json={"seatNumbers": ["A2"]}, headers=auth("mover")
        )
        assert booked.status_code == 201

        assert "moved from shard 0 to shard 1" in await run_move(cluster, show_id, 1)

        # both servers still have the old route cached: they must find the new shard
        confirmed = await two.post(f"/holds/{hold['hold_id']}/confirm", headers=auth("mover"))
        assert confirmed.status_code == 201, confirmed.text
        taken = await one.post(
            f"/shows/{show_id}/holds", json={"seats": ["A2"]}, headers=auth("rival")
        )
        assert taken.status_code == 409
        fresh = await one.post(
            f"/shows/{show_id}/holds", json={"seats": ["B5"]}, headers=auth("rival")
        )
        assert fresh.status_code == 201
        seats = {
            s["label"]: s["status"]
            for s in (await two.get(f"/shows/{show_id}/seats")).json()["seats"]
        }
        assert (seats["A1"], seats["A2"], seats["B5"], seats["A3"]) == (
            "BOOKED",
            "BOOKED",
            "HELD",
            "AVAILABLE",
        )
        mine = (await one.get("/me/bookings", headers=auth("mover"))).json()["bookings"]
        assert {tuple(b["seats"]) for b in mine if b["show_id"] == show_id} == {("A1",), ("A2",)}
        assert (await one.get(f"/shows/{show_id}")).json()["shard"] == 1

    for index, expected in ((0, 0), (1, 10)):
        conn = await cluster.connect_shard(index)
        try:
            count = await conn.fetchval("SELECT count(*) FROM seats WHERE show_id = $1", show_id)
            audited = await conn.fetchval(
                "SELECT array_agg(action ORDER BY id) FROM seat_audit WHERE show_id = $1", show_id
            )
            status = await conn.fetchval(
                "SELECT status FROM shard_shows WHERE show_id = $1", show_id
            )
        finally:
            await conn.close()
        assert count == expected
        assert status == ("MOVED" if index == 0 else "ON_SALE")
        # the seats' history goes with them, in its order
        assert (audited is None) == (index == 0), audited

    # running the move again is harmless
    assert "already on shard 1" in await run_move(cluster, show_id, 1)
