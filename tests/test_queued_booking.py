"""The seed's queued booking (app/booking_queue.py) on real server processes, PostgreSQL
and Redis: 202 then CONFIRMED or FAILED with the reason, the owner's socket told, a message
processed twice books once, dead-lettering after N failures, and a consumer killed with
messages in hand losing none of them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets

from app.booking_queue import GROUP, prefers_async
from app.realtime.keys import RedisKeys
from tests.support import (
    Cluster,
    ServerProcess,
    Services,
    admin_execute,
    auth,
    create_show,
    create_show_on,
    metric,
    token,
    wait_until,
)

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture(scope="module")
async def queue_cluster(services: Services) -> AsyncIterator[Cluster]:
    found = Cluster(services, shard_count=2)
    await found.create()
    yield found
    await found.drop()


@pytest.fixture(scope="module")
async def pair(queue_cluster: Cluster, log_dir: Path) -> AsyncIterator[list[ServerProcess]]:
    started = [
        ServerProcess(
            queue_cluster, log_dir, MODEX_BOOKING_CLAIM_IDLE="1", MODEX_BOOKING_MAX_ATTEMPTS="4"
        )
        for _ in range(2)
    ]
    await asyncio.gather(*(asyncio.to_thread(s.start) for s in started))
    yield started
    for s in started:
        s.stop()


async def settled(client: httpx.AsyncClient, booking_id: str, user: str) -> dict[str, Any]:
    """Poll GET /bookings/{id} until it is no longer PENDING."""
    found: dict[str, Any] = {}

    async def done() -> bool:
        r = await client.get(f"/bookings/{booking_id}", headers=auth(user))
        if r.status_code == 503:  # the shard's breaker lets a probe through after 0.5 s
            assert r.json()["error"] == "shard_unavailable", r.text
            return False
        assert r.status_code == 200, r.text
        found.update(r.json())
        return bool(found["status"] != "PENDING")

    await wait_until(done, 15)
    return found


async def booked_seats(cluster: Cluster, shard: int, show_id: int) -> dict[str, str]:
    conn = await cluster.connect_shard(shard)
    try:
        rows = await conn.fetch(
            "SELECT unnest(seats) AS seat, id FROM bookings "
            "WHERE show_id = $1 AND status = 'CONFIRMED'",
            show_id,
        )
    finally:
        await conn.close()
    seats = [row["seat"] for row in rows]
    assert len(seats) == len(set(seats)), "a seat sold twice"
    return {row["seat"]: row["id"] for row in rows}


def test_prefer_header_parsing() -> None:
    assert prefers_async("respond-async")
    assert prefers_async("return=minimal, Respond-Async; wait=10")
    assert not prefers_async(None)
    assert not prefers_async("return=representation")


async def test_a_queued_booking_answers_202_then_confirms_and_the_owner_is_told(
    clients: list[httpx.AsyncClient], pair: list[ServerProcess], queue_cluster: Cluster
) -> None:
    show = await create_show(clients[0])
    url = f"{pair[1].ws_url}?token={token('queued-fan')}"
    async with websockets.connect(url) as ws:  # the owner's socket, on the other instance
        r = await clients[0].post(
            f"/shows/{show['id']}/book",
            json={"seatNumbers": ["A2", "A1"]},
            headers={**auth("queued-fan"), **ASYNC},
        )
        assert r.status_code == 202, r.text
        accepted = r.json()
        assert accepted["status"] == "PENDING" and accepted["seats"] == ["A1", "A2"]
        assert r.headers["location"] == f"/bookings/{accepted['booking_id']}"
        frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
    assert frame == {
        "type": "booking",
        "show_id": show["id"],
        "booking_id": accepted["booking_id"],
        "status": "CONFIRMED",
    }
    booking = await settled(clients[1], accepted["booking_id"], "queued-fan")
    assert booking["id"] == accepted["booking_id"] and booking["status"] == "CONFIRMED"
    assert booking["reference"]  # the shard's booking row itself
    sold = await booked_seats(queue_cluster, show["shard"], show["id"])
    assert sold == {"A1": accepted["booking_id"], "A2": accepted["booking_id"]}
    # the owner and admins may look; nobody else
    r = await clients[0].get(f"/bookings/{accepted['booking_id']}", headers=auth("someone"))
    assert r.status_code == 404


async def test_a_refused_queued_booking_fails_with_the_reason(
    clients: list[httpx.AsyncClient],
) -> None:
    show = await create_show(clients[0])
    path = f"/shows/{show['id']}/book"
    r = await clients[0].post(path, json={"seatNumbers": ["B1"]}, headers=auth("first"))
    assert r.status_code == 201
    r = await clients[1].post(path, json={"seatNumbers": ["B1"]}, headers={**auth("x"), **ASYNC})
    assert r.status_code == 202
    failed = await settled(clients[0], r.json()["booking_id"], "x")
    assert failed["status"] == "FAILED" and failed["reason"] == "seats_unavailable"
    r = await clients[1].post(path, json={"seatNumbers": ["Z99"]}, headers={**auth("x"), **ASYNC})
    failed = await settled(clients[0], r.json()["booking_id"], "x")
    assert failed["reason"] == "unknown_seats"
    r = await clients[1].post(path, json={"seatNumbers": []}, headers={**auth("x"), **ASYNC})
    assert r.status_code == 422  # validated before it is queued
    # the same Idempotency-Key is the same queued booking
    key = {**auth("x"), **ASYNC, "Idempotency-Key": "k-1"}
    first = await clients[0].post(path, json={"seatNumbers": ["C1"]}, headers=key)
    again = await clients[1].post(path, json={"seatNumbers": ["C1"]}, headers=key)
    assert first.json()["booking_id"] == again.json()["booking_id"]
    other = await clients[1].post(path, json={"seatNumbers": ["C2"]}, headers=key)
    assert other.status_code == 422


async def test_a_message_processed_twice_books_once(
    clients: list[httpx.AsyncClient],
    queue_cluster: Cluster,
    redis: aioredis.Redis,
) -> None:
    """A redelivered message (the status lost, so the consumer books again), delivered to
    both instances at once: one booking, its seats sold once."""
    keys: RedisKeys = await queue_cluster.redis_keys()
    show = await create_show(clients[0])
    r = await clients[0].post(
        f"/shows/{show['id']}/book", json={"seatNumbers": ["D1"]}, headers={**auth("u"), **ASYNC}
    )
    booking_id = r.json()["booking_id"]
    await settled(clients[0], booking_id, "u")
    status = keys.queued_booking(show["id"], booking_id)
    await redis.hset(status, "status", "PENDING")
    message = {"id": booking_id, "show": show["id"], "user": "u", "seats": "D1", "channels": ""}
    for _ in range(2):
        await redis.xadd(keys.booking_queue("queue"), message)  # type: ignore[arg-type]
    again = await settled(clients[1], booking_id, "u")
    assert again["status"] == "CONFIRMED" and again["id"] == booking_id

    async def drained() -> bool:
        pending = await redis.xpending(keys.booking_queue("queue"), GROUP)
        return bool(pending["pending"] == 0)

    await wait_until(drained, 15)
    assert await booked_seats(queue_cluster, show["shard"], show["id"]) == {"D1": booking_id}


async def test_dead_letter_after_repeated_shard_failures(
    clients: list[httpx.AsyncClient],
    queue_cluster: Cluster,
    services: Services,
    redis: aioredis.Redis,
) -> None:
    keys: RedisKeys = await queue_cluster.redis_keys()
    show = await create_show_on(clients[0], queue_cluster, 1)
    database = queue_cluster.databases[1]
    await admin_execute(
        services,
        f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false',
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()",
    )
    try:
        r = await clients[0].post(
            f"/shows/{show['id']}/book",
            json={"seatNumbers": ["E1"]},
            headers={**auth("unlucky"), **ASYNC},
        )
        assert r.status_code == 202
        status = keys.queued_booking(show["id"], r.json()["booking_id"])

        async def given_up() -> bool:  # GET /bookings/{id} answers 503 while the shard is away
            return bool(await redis.hget(status, "status") == b"FAILED")

        await wait_until(given_up, 15)
    finally:
        await admin_execute(services, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    failed = await settled(clients[0], r.json()["booking_id"], "unlucky")
    assert failed["status"] == "FAILED" and failed["reason"] == "dead_letter"
    assert "4 attempts" in failed["message"]
    dead: Any = await redis.xrange(keys.booking_queue("dead"))
    assert any(fields[b"id"] == failed["id"].encode() for _, fields in dead)

    async def counted() -> bool:
        texts = [(await c.get("/metrics")).text for c in clients]
        dead_lettered = sum(
            metric(t, 'queued_bookings_total{event="dead_lettered"}') for t in texts
        )
        return (
            dead_lettered >= 1
            and max(metric(t, "queued_bookings_dead_letters") for t in texts) >= 1
        )

    await wait_until(counted, 15)


@pytest.mark.slow
async def test_a_consumer_killed_mid_message_loses_nothing(
    own_cluster: Cluster, log_dir: Path, redis: aioredis.Redis
) -> None:
    """kill -9 an instance holding pending messages: another claims them (XAUTOCLAIM);
    every accepted booking ends CONFIRMED or FAILED once; nothing is sold twice."""
    keys = await own_cluster.redis_keys()
    stuck = ServerProcess(own_cluster, log_dir, MODEX_FAULT_BOOKING_DELAY="60")
    await asyncio.to_thread(stuck.start)
    try:
        async with httpx.AsyncClient(base_url=stuck.url, timeout=20) as c:
            show = await create_show(c)
            accepted = []
            for i in range(6):  # pairs after the same seats: one of each pair can win
                seats = [f"A{i // 2 + 1}", f"B{i // 2 + 1}"]
                r = await c.post(
                    f"/shows/{show['id']}/book",
                    json={"seatNumbers": seats},
                    headers={**auth(f"c{i}"), **ASYNC},
                )
                assert r.status_code == 202
                accepted.append((r.json()["booking_id"], f"c{i}"))

        async def all_in_hand() -> bool:
            pending = await redis.xpending(keys.booking_queue("queue"), GROUP)
            return bool(pending["pending"] == 6)

        await wait_until(all_in_hand, 15)
    finally:
        stuck.kill()
    rescuer = ServerProcess(own_cluster, log_dir, MODEX_BOOKING_CLAIM_IDLE="1")
    await asyncio.to_thread(rescuer.start)
    try:
        async with httpx.AsyncClient(base_url=rescuer.url, timeout=20) as c:
            outcomes = [await settled(c, booking_id, user) for booking_id, user in accepted]
            text = (await c.get("/metrics")).text
    finally:
        rescuer.stop()
    statuses = sorted(o["status"] for o in outcomes)
    assert statuses == ["CONFIRMED"] * 3 + ["FAILED"] * 3
    sold = await booked_seats(own_cluster, show["shard"], show["id"])
    assert len(sold) == 6 and len(set(sold.values())) == 3
    assert metric(text, 'queued_bookings_total{event="claimed"}') == 6
