"""The on-sale waiting room (app/admission.py) on real server processes, PostgreSQL and
Redis: the draw at opening, one place per customer, admission tokens at the hold and book
doors, positions over the WebSocket, the admission rate with three instances, and a
restart mid-queue."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import pytest
import redis.asyncio as aioredis
import websockets

from app.admission import FACTOR_MAX, FACTOR_MIN, next_factor
from app.realtime.frames import LiveFrame
from app.realtime.keys import RedisKeys
from tests.support import (
    JWT_SECRET,
    Cluster,
    ServerProcess,
    Services,
    auth,
    create_show,
    token,
    wait_until,
)

ADMIN = auth("admin", "admin")
frame_decoder = msgspec.json.Decoder(LiveFrame)


@pytest.fixture(scope="module")
async def room_cluster(services: Services) -> AsyncIterator[Cluster]:
    """Databases (and so a Redis namespace) of this module's own: its servers are the only
    ones that admit, and one of them may be killed."""
    found = Cluster(services, shard_count=1)
    await found.create()
    yield found
    await found.drop()


@pytest.fixture(scope="module")
async def pair(room_cluster: Cluster, log_dir: Path) -> AsyncIterator[list[ServerProcess]]:
    started = [ServerProcess(room_cluster, log_dir) for _ in range(2)]
    await asyncio.gather(*(asyncio.to_thread(s.start) for s in started))
    yield started
    for s in started:
        s.stop()


@pytest.fixture
async def clients(pair: list[ServerProcess]) -> AsyncIterator[list[httpx.AsyncClient]]:
    limits = httpx.Limits(max_connections=40)
    found = [httpx.AsyncClient(base_url=s.url, timeout=20, limits=limits) for s in pair]
    yield found
    for c in found:
        await c.aclose()


@pytest.fixture(scope="module")
async def keys(room_cluster: Cluster) -> RedisKeys:
    return await room_cluster.redis_keys()


def _at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def set_queue(
    client: httpx.AsyncClient, show_id: int, opens_in: float, rate: int, adaptive: bool = False
) -> dict[str, Any]:
    body = {"queue": {"opens_at": _at(opens_in), "admit_per_minute": rate, "adaptive": adaptive}}
    r = await client.patch(f"/admin/shows/{show_id}", json=body, headers=ADMIN)
    assert r.status_code == 200, r.text
    show: dict[str, Any] = r.json()
    return show


async def tickets(redis: aioredis.Redis, keys: RedisKeys, show_id: int) -> dict[str, int]:
    raw = await redis.hgetall(keys.waiting_room(show_id, "tickets"))
    return {str(k, "utf-8") if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}


async def admitted_token(client: httpx.AsyncClient, show_id: int, user: str) -> str:
    """Join, then wait for the turn: the admission token."""
    r = await client.post(f"/shows/{show_id}/queue", headers=auth(user))
    assert r.status_code == 201, r.text
    found: dict[str, str] = {}

    async def admitted() -> bool:
        r = await client.get(f"/shows/{show_id}/queue", headers=auth(user))
        assert r.status_code == 200, r.text
        if r.json().get("admitted"):
            found["token"] = r.json()["admission"]
        return "token" in found

    await wait_until(admitted, 10)
    return found["token"]


def test_the_rate_adapts_to_how_holds_fare() -> None:
    assert next_factor(1.0, 100, 0, 10, False) == 0.5  # failures: halve
    assert next_factor(1.0, 100, 0, 0, True) == 0.5  # the shard's breaker is open
    assert next_factor(1.0, 100, 20, 0, False) == 0.8  # slow holds: back off gently
    assert next_factor(1.0, 100, 1, 0, False) == 1.1  # fast holds: admit a little more
    assert next_factor(1.0, 0, 0, 0, False) == 1.0  # no holds, no evidence
    assert next_factor(FACTOR_MAX, 100, 0, 0, False) == FACTOR_MAX
    assert next_factor(FACTOR_MIN, 100, 0, 100, True) == FACTOR_MIN


@pytest.mark.slow
async def test_early_arrivals_are_drawn_at_opening_and_later_ones_queue_in_order(
    clients: list[httpx.AsyncClient], redis: aioredis.Redis, keys: RedisKeys
) -> None:
    """2,000 arrivals on 2 instances: 1,500 before the opening, 500 after. Admission order
    is a random permutation of the early ones, then the late ones in arrival order."""
    show = await create_show(clients[0])
    show_id = show["id"]
    await set_queue(clients[0], show_id, opens_in=3600, rate=60)
    gate = asyncio.Semaphore(40)

    async def join(i: int, user: str) -> dict[str, Any]:
        async with gate:
            r = await clients[i % 2].post(f"/shows/{show_id}/queue", headers=auth(user))
        assert r.status_code == 201, r.text
        place: dict[str, Any] = r.json()
        return place

    early = [f"early-{i}" for i in range(1500)]
    places = await asyncio.gather(*(join(i, u) for i, u in enumerate(early)))
    assert all(p["position"] is None for p in places)  # no order before the draw
    assert (await tickets(redis, keys, show_id)) == {}

    await set_queue(clients[1], show_id, opens_in=-1, rate=60)  # the admin opens it now
    late = [f"late-{i}" for i in range(500)]
    late_places = [await join(i, u) for i, u in enumerate(late)]  # one after another

    async def drawn() -> bool:
        return len(await tickets(redis, keys, show_id)) == 2000

    await wait_until(drawn, 10)
    numbers = await tickets(redis, keys, show_id)
    early_order = sorted(early, key=numbers.__getitem__)
    assert sorted(numbers[u] for u in early) == list(range(1, 1501))
    assert early_order != early  # shuffled (1 in 1500! to fail by chance)
    assert [numbers[u] for u in late] == list(range(1501, 2001))  # arrival order
    positions = [p["position"] for p in late_places]
    assert positions == sorted(positions) and positions[-1] >= 2000 - 5


async def test_one_place_per_customer_however_many_tabs(
    clients: list[httpx.AsyncClient], redis: aioredis.Redis, keys: RedisKeys
) -> None:
    show = await create_show(clients[0])
    show_id = show["id"]
    await set_queue(clients[0], show_id, opens_in=-1, rate=1)
    await clients[0].post(f"/shows/{show_id}/queue", headers=auth("ahead"))

    async def tab(i: int) -> int:
        r = await clients[i % 2].post(f"/shows/{show_id}/queue", headers=auth("fifty-tabs"))
        assert r.status_code == 201, r.text
        position: int = r.json()["position"]
        return position

    positions = await asyncio.gather(*(tab(i) for i in range(50)))
    assert len(set(positions)) == 1
    assert len(await tickets(redis, keys, show_id)) == 2
    r = await clients[1].get(f"/shows/{show_id}/queue", headers=auth("fifty-tabs"))
    assert r.json()["position"] == positions[0]
    assert r.json()["eta_s"] > 0


async def test_queue_errors(clients: list[httpx.AsyncClient]) -> None:
    show = await create_show(clients[0])
    show_id = show["id"]
    r = await clients[0].post(f"/shows/{show_id}/queue", headers=auth("u"))
    assert r.status_code == 409 and r.json()["error"] == "no_waiting_room"
    r = await clients[0].post("/shows/999999999/queue", headers=auth("u"))
    assert r.status_code == 404
    r = await clients[0].post(f"/shows/{show_id}/queue")
    assert r.status_code == 401
    await set_queue(clients[0], show_id, opens_in=60, rate=10)
    r = await clients[0].get(f"/shows/{show_id}/queue", headers=auth("never-joined"))
    assert r.status_code == 404
    body = {"queue": {"opens_at": "2027-01-01T00:00:00", "admit_per_minute": 0}}
    r = await clients[0].patch(f"/admin/shows/{show_id}", json=body, headers=ADMIN)
    assert r.status_code == 422


async def test_hold_and_book_need_an_admission_while_the_room_is_on(
    clients: list[httpx.AsyncClient], room_cluster: Cluster
) -> None:
    show = await create_show(clients[0])
    show_id = show["id"]
    other = await create_show(clients[0])
    await set_queue(clients[0], show_id, opens_in=-1, rate=6000)
    hold = {"seats": ["A1"]}

    async def known_everywhere() -> bool:  # each instance re-reads the rooms every tick
        shows = [(await c.get(f"/shows/{show_id}")).json() for c in clients]
        return all(s["queue"] is not None for s in shows)

    await wait_until(known_everywhere, within=3)
    for c in clients:
        r = await c.post(f"/shows/{show_id}/holds", json=hold, headers=auth("bot"))
        assert r.status_code == 403, r.text
    r = await clients[1].post(f"/shows/{show_id}/holds", json=hold, headers=auth("bot"))
    assert r.json()["error"] == "not_admitted"
    mine = await admitted_token(clients[0], show_id, "fan")
    other_token = await admitted_token(clients[0], show_id, "someone-else")
    exp = int(time.time()) + 60
    forged = [
        other_token,  # another customer's
        jwt.encode({"sub": "fan", "show": show_id, "aud": "admission", "exp": exp}, "w" * 32),
        jwt.encode({"sub": "fan", "show": other["id"], "aud": "admission", "exp": exp}, JWT_SECRET),
        jwt.encode({"sub": "fan", "show": show_id, "aud": "admission", "exp": 1}, JWT_SECRET),
        token("fan"),  # a login token is not an admission
    ]
    for bad in forged:
        for path, body in (("holds", hold), ("book", {"seatNumbers": ["A1"]})):
            r = await clients[1].post(
                f"/shows/{show_id}/{path}",
                json=body,
                headers={**auth("fan"), "Admission-Token": bad},
            )
            assert r.status_code == 403, (bad, r.text)
    r = await clients[0].post(
        f"/shows/{show_id}/book",
        json={"seatNumbers": ["A1"]},
        headers={**auth("fan"), "Prefer": "respond-async"},
    )
    assert r.status_code == 403  # queued booking too
    admitted = {**auth("fan"), "Admission-Token": mine}
    r = await clients[1].post(f"/shows/{show_id}/holds", json=hold, headers=admitted)
    assert r.status_code == 201, r.text
    r = await clients[0].post(
        f"/shows/{show_id}/book", json={"seatNumbers": ["B1"]}, headers=admitted
    )
    assert r.status_code == 201, r.text
    # nothing got through without an admission: only the fan's two seats moved
    conn = await room_cluster.connect_shard(0)
    try:
        taken = await conn.fetch(
            "SELECT label FROM seats WHERE show_id = $1 AND status <> 'AVAILABLE' ORDER BY 1",
            show_id,
        )
    finally:
        await conn.close()
    assert [row["label"] for row in taken] == ["A1", "B1"]
    # the other show has no room; turning this one's off opens the doors again
    r = await clients[0].post(f"/shows/{other['id']}/holds", json=hold, headers=auth("bot"))
    assert r.status_code == 201
    r = await clients[0].patch(f"/admin/shows/{show_id}", json={"queue": None}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["queue"] is None

    attempts = iter(range(1, 11))

    async def open_everywhere() -> bool:
        seat = f"D{next(attempts)}"
        codes = [
            (
                await c.post(
                    f"/shows/{show_id}/holds", json={"seats": [seat]}, headers=auth(f"late{i}")
                )
            ).status_code
            for i, c in enumerate(clients)
        ]
        return 403 not in codes

    await wait_until(open_everywhere, within=3, every=0.3)  # ten seats to try: over 3 s


async def test_position_and_admission_pushed_over_the_websocket(
    clients: list[httpx.AsyncClient], pair: list[ServerProcess]
) -> None:
    show = await create_show(clients[0])
    show_id = show["id"]
    await set_queue(clients[0], show_id, opens_in=-1, rate=60)  # one a second
    for i in range(2):
        await clients[0].post(f"/shows/{show_id}/queue", headers=auth(f"before-{i}"))
    r = await clients[1].post(f"/shows/{show_id}/queue", headers=auth("watcher"))
    assert r.status_code == 201
    frames: list[dict[str, Any]] = []
    url = f"{pair[1].ws_url}?token={token('watcher')}"
    async with websockets.connect(url) as ws:
        while not frames or frames[-1]["type"] != "admitted":
            text = await asyncio.wait_for(ws.recv(), 10)
            frame_decoder.decode(text)  # every frame has its schema
            frames.append(json.loads(text))
    queued = [f for f in frames if f["type"] == "queue"]
    assert queued and all(f["show_id"] == show_id for f in queued)
    positions = [f["position"] for f in queued]
    assert positions == sorted(positions, reverse=True) and positions[0] >= 1
    assert all(f["eta_s"] >= 0 for f in queued)
    admission = frames[-1]["token"]
    r = await clients[0].post(
        f"/shows/{show_id}/holds",
        json={"seats": ["E5"]},
        headers={**auth("watcher"), "Admission-Token": admission},
    )
    assert r.status_code == 201, r.text


async def test_kiosks_see_the_queue_length(clients: list[httpx.AsyncClient]) -> None:
    show = await create_show(clients[0])
    show_id = show["id"]
    await set_queue(clients[0], show_id, opens_in=600, rate=100)
    for i in range(7):
        await clients[0].post(f"/shows/{show_id}/queue", headers=auth(f"k{i}"))

    async def seven_waiting() -> bool:
        r = await clients[1].get(f"/shows/{show_id}")
        queue = r.json()["queue"]
        return queue is not None and queue["waiting"] == 7

    await wait_until(seven_waiting, within=3)
    r = await clients[1].get(f"/shows/{show_id}")
    assert r.json()["queue"]["admit_per_minute"] == 100


@pytest.mark.slow
async def test_three_instances_admit_at_the_configured_rate_and_survive_a_kill(
    clients: list[httpx.AsyncClient],
    pair: list[ServerProcess],
    room_cluster: Cluster,
    log_dir: Path,
    redis: aioredis.Redis,
    keys: RedisKeys,
) -> None:
    """With three instances the rate is the configured one (within 10 %), one instance
    admits at a time, and killing it (kill -9) mid-queue loses nobody's place."""
    third = ServerProcess(room_cluster, log_dir)
    await asyncio.to_thread(third.start)
    try:
        show = await create_show(clients[0])
        show_id = show["id"]
        rate = 1200  # 20 a second
        await set_queue(clients[0], show_id, opens_in=3600, rate=rate)
        gate = asyncio.Semaphore(40)

        async def join(i: int) -> None:
            async with gate:
                r = await clients[i % 2].post(f"/shows/{show_id}/queue", headers=auth(f"r{i}"))
            assert r.status_code == 201

        await asyncio.gather(*(join(i) for i in range(600)))
        cfg = keys.waiting_room(show_id, "cfg")
        await set_queue(clients[0], show_id, opens_in=-0.5, rate=rate)

        async def served() -> int:
            return int(await redis.hget(cfg, "served") or 0)

        # time the admissions themselves: from the first change seen to the last
        changes: list[tuple[float, int]] = []
        holders: set[Any] = set()
        deadline = time.monotonic() + 8
        last = -1
        while time.monotonic() < deadline:
            now_served = await served()
            if now_served != last:
                changes.append((time.monotonic(), now_served))
                last = now_served
            holders.add(await redis.get(keys.waiting_room(show_id, "lease")) or b"")
            await asyncio.sleep(0.02)  # sampling the admission rate over 8 s: the measurement
        (t0, s0), (t1, s1) = changes[1], changes[-1]
        measured = (s1 - s0) / (t1 - t0) * 60
        assert abs(measured - rate) / rate < 0.10, measured
        assert len(holders - {b""}) == 1  # one admitter all along

        # kill -9 the admitter mid-queue: every place is kept, another takes over
        before = await tickets(redis, keys, show_id)
        holder = str(holders.pop())
        victim = next(s for s in (*pair, third) if s.proc and f":{s.proc.pid}:" in holder)
        victim.kill()
        killed_at = await served()

        async def admitting_again() -> bool:
            return await served() > killed_at + 20

        await wait_until(admitting_again, within=10)
        assert await tickets(redis, keys, show_id) == before
        new_holder = str(await redis.get(keys.waiting_room(show_id, "lease")) or b"")
        assert new_holder and new_holder != holder
        survivor = next(s for s in (*pair, third) if s is not victim)
        async with httpx.AsyncClient(base_url=survivor.url) as c:
            for user in ("r0", "r599"):
                low = await served()
                place = (await c.get(f"/shows/{show_id}/queue", headers=auth(user))).json()
                high = await served()
                if not place.get("admitted"):  # its number is still its own
                    assert low <= before[user] - place["position"] <= high
        if victim is not third:
            await asyncio.to_thread(victim.start)
    finally:
        third.stop()
