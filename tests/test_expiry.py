"""Expired holds: free at once at read and hold time, released in the database by the sweeper."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from tests.support import Cluster, ServerProcess, auth, create_show, wait_until


def seconds_until(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() - time.time()


async def test_expired_hold_is_free_at_once_without_the_sweeper(
    sweepless_server: ServerProcess, sweepless_cluster: Cluster
) -> None:
    async with httpx.AsyncClient(base_url=sweepless_server.url) as client:
        show = await create_show(client, rows=1, seats_per_row=4, hold_seconds=5)
        first = (
            await client.post(
                f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth("first")
            )
        ).json()
        early = await client.post(
            f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth("second")
        )
        assert early.status_code == 409
        # the time passing is what is tested: nothing (no sweeper) marks the lapse to wait on
        await asyncio.sleep(seconds_until(first["expires_at"]) + 0.2)

        conn = await sweepless_cluster.connect_shard(0)
        try:
            status = await conn.fetchval(
                "SELECT status FROM seats WHERE show_id = $1 AND label = 'A1'", show["id"]
            )
            assert status == "HELD", "the sweeper ran; this test needs it not to"
        finally:
            await conn.close()
        seats = (await client.get(f"/shows/{show['id']}/seats")).json()["seats"]
        assert seats[0]["label"] == "A1" and seats[0]["status"] == "AVAILABLE"
        counts = (await client.get(f"/shows/{show['id']}/availability")).json()
        assert counts["HELD"] == 0 or counts["AVAILABLE"] >= 3  # cache may lag by its TTL

        second = await client.post(
            f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth("second")
        )
        assert second.status_code == 201
        # the first customer's late confirm must not take the seat back
        late = await client.post(f"/holds/{first['hold_id']}/confirm", headers=auth("first"))
        assert late.status_code == 409 and late.json()["error"] == "hold_expired"
        late_extend = await client.post(f"/holds/{first['hold_id']}/extend", headers=auth("first"))
        assert late_extend.status_code == 409
        # nor may releasing the dead hold free the new owner's seat
        await client.delete(f"/holds/{first['hold_id']}", headers=auth("first"))
        won = await client.post(
            f"/holds/{second.json()['hold_id']}/confirm", headers=auth("second")
        )
        assert won.status_code == 201 and won.json()["user_id"] == "second"
        seats = (await client.get(f"/shows/{show['id']}/seats")).json()["seats"]
        assert seats[0]["status"] == "BOOKED"


async def test_sweepers_on_two_servers_release_each_expired_hold_once_within_seconds(
    client: httpx.AsyncClient, cluster: Cluster
) -> None:
    show = await create_show(client, rows=3, seats_per_row=10, hold_seconds=5)
    labels = [f"{row}{n}" for row in "ABC" for n in range(1, 11)]
    holds = await asyncio.gather(
        *(
            client.post(
                f"/shows/{show['id']}/holds",
                json={"seats": [label]},
                headers=auth(f"sweep-{label}"),
            )
            for label in labels
        )
    )
    assert all(h.status_code == 201 for h in holds)
    last_expiry = max(seconds_until(h.json()["expires_at"]) for h in holds)

    conn = await cluster.connect_shard(show["shard"])
    try:

        async def released() -> list[asyncpg.Record] | None:
            rows: list[asyncpg.Record] = await conn.fetch(
                "SELECT label, status, version FROM seats WHERE show_id = $1", show["id"]
            )
            return rows if all(row["status"] == "AVAILABLE" for row in rows) else None

        rows = await wait_until(
            released, last_expiry + 5, "the sweeper to release every seat", every=0.2
        )
        # created (1) -> held (2) -> released once (3): a second release would make it 4
        assert {row["version"] for row in rows} == {3}
        statuses = await conn.fetch(
            "SELECT DISTINCT status FROM holds WHERE show_id = $1", show["id"]
        )
        assert [row["status"] for row in statuses] == ["EXPIRED"]
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM outbox"
                " WHERE show_id = $1 AND created_at < now() - interval '3 s'",
                show["id"],
            )
            == 0
        ), "outbox rows were left behind"
    finally:
        await conn.close()
    sold_again = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": labels[:10]}, headers=auth("after-sweep")
    )
    assert sold_again.status_code == 201


async def test_hold_seconds_is_per_show(client: httpx.AsyncClient, user: str) -> None:
    show: dict[str, Any] = await create_show(client, rows=1, seats_per_row=2, hold_seconds=90)
    hold = (
        await client.post(f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user))
    ).json()
    assert 85 < seconds_until(hold["expires_at"]) <= 91
    default = await create_show(client, rows=1, seats_per_row=2)
    hold = (
        await client.post(
            f"/shows/{default['id']}/holds", json={"seats": ["A1"]}, headers=auth(user)
        )
    ).json()
    assert 25 < seconds_until(hold["expires_at"]) <= 31
