"""Several `modex serve` processes on one Redis: fan-out, resume, presence, broadcasts and
the protocol's edges, over real WebSockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.realtime.keys import RedisKeys
from tests.realtime.watch import Watcher, converge, hold, seat_order
from tests.support import Cluster, ServerProcess, auth, create_show, metric, token, wait_until


@pytest.fixture(scope="module")
def three(
    servers: list[ServerProcess], cluster: Cluster, log_dir: Path
) -> Iterator[list[ServerProcess]]:
    """The session's two servers and a third on the same databases and Redis."""
    extra = ServerProcess(cluster, log_dir).start()
    yield [*servers, extra]
    extra.stop()


def seats_frames(watcher: Watcher, show_id: int, since: int = 0) -> list[dict[str, Any]]:
    return [f for f in watcher.frames_of(show_id, since) if f["type"] == "seats"]


async def test_a_hold_on_one_instance_reaches_watchers_on_every_instance(
    three: list[ServerProcess], client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    show_id = show["id"]
    order = await seat_order(client, show_id)
    watchers = [Watcher(s.ws_url) for s in three for _ in range(2)]
    for w in watchers:
        await w.__aenter__()
    try:
        for w in watchers:
            await w.subscribe(show_id, order)
        async with httpx.AsyncClient(base_url=three[2].url) as other:
            await hold(other, show_id, user, ["B4", "B5"])
        for w in watchers:
            frame = await w.wait_for(lambda f: f["type"] == "seats", within=3)
            assert {c["label"]: c["status"] for c in frame["changes"]} == {
                "B4": "HELD",
                "B5": "HELD",
            }
            assert frame["ts"] > 0 and frame["offset"]
        await converge(watchers, client, show)
    finally:
        for w in watchers:
            await w.close()


async def test_resume_by_offset_replays_what_was_missed(
    servers: list[ServerProcess], client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    show_id = show["id"]
    order = await seat_order(client, show_id)
    async with Watcher(servers[0].ws_url) as first:
        state = await first.subscribe(show_id, order)
        await hold(client, show_id, user, ["A1"])
        await first.wait_for(lambda f: f["type"] == "seats")
        offset = state.offset
        seats = dict(state.seats)
    assert offset is not None
    # missed while away
    await hold(client, show_id, user, ["A2", "A3"])
    await hold(client, show_id, user, ["A4"])

    async with Watcher(servers[1].ws_url) as back:
        back.states[show_id] = state = type(state)(order, seats, offset=offset, has_snapshot=True)
        await back.subscribe(show_id, order, offset=offset)
        await back.wait_for(
            lambda f: f["type"] == "seats" and any(c["label"] == "A4" for c in f["changes"])
        )
        assert not [f for f in back.frames if f["type"] == "snapshot"]
        replayed = {c["label"] for f in seats_frames(back, show_id) for c in f["changes"]}
        assert replayed == {"A2", "A3", "A4"}
        await converge([back], client, show)
        # still live after the replay
        await hold(client, show_id, user, ["A5"])
        await back.wait_for(
            lambda f: f["type"] == "seats" and any(c["label"] == "A5" for c in f["changes"])
        )
        await converge([back], client, show)


@pytest.mark.parametrize("kind", ["other_epoch", "garbage", "future", "trimmed"])
async def test_an_unusable_offset_gets_a_snapshot(
    server: ServerProcess,
    client: httpx.AsyncClient,
    show: dict[str, Any],
    user: str,
    redis: aioredis.Redis,
    redis_keys: RedisKeys,
    kind: str,
) -> None:
    show_id = show["id"]
    order = await seat_order(client, show_id)
    for seat in ("C1", "C2", "C3"):
        await hold(client, show_id, user, [seat])

    # the publish follows the response: wait until all three have their offsets
    async def offset() -> str | None:
        position: str = (await client.get(f"/shows/{show_id}/seats")).json()["offset"]
        return position if position.endswith(":3") else None

    epoch, _, n = (await wait_until(offset, what="the third event's offset")).rpartition(":")
    if kind == "trimmed":
        await redis.xtrim(redis_keys.stream(show_id), maxlen=1, approximate=False)
        offset = f"{epoch}:1"  # 2 is gone
    else:
        offset = {
            "other_epoch": f"0ther:{n}",
            "garbage": "not-an-offset",
            "future": f"{epoch}:{int(n) + 50}",
        }[kind]
    async with Watcher(server.ws_url) as watcher:
        await watcher.subscribe(show_id, order, offset=offset)
        snapshot = await watcher.wait_for(lambda f: f["type"] == "snapshot")
        assert snapshot["offset"].startswith(epoch + ":")
        await converge([watcher], client, show)


async def test_bad_frames_get_an_error_and_the_connection_stays_up(
    server: ServerProcess, show: dict[str, Any]
) -> None:
    bad = {
        "bad_json": "{not json",
        "invalid_frame": json.dumps({"type": "subscribe", "show_id": "one"}),
        "unknown_type": json.dumps({"type": "dance"}),
        "unknown_type ": json.dumps({"show_id": 1}),
        "invalid_frame   ": json.dumps([1, 2]),
        "unknown_show": json.dumps({"type": "subscribe", "show_id": 987654321987}),
        "frame_too_large": json.dumps({"type": "ping", "pad": "x" * 17000}),
        "not_subscribed": json.dumps({"type": "unsubscribe", "show_id": show["id"]}),
    }
    async with Watcher(server.ws_url) as watcher:
        for code, frame in bad.items():
            mark = len(watcher.frames)
            await watcher.send(frame)
            error = await watcher.wait_for(lambda f: f["type"] == "error", since=mark)
            assert error["code"] == code.strip() and error["message"]
        await watcher.ws.send(b'{"type":"ping"}')  # binary frames carry JSON too
        await watcher.wait_for(lambda f: f["type"] == "pong")
        assert watcher.closed is None


async def test_a_flooding_client_is_rate_limited_then_closed(server: ServerProcess) -> None:
    async with Watcher(server.ws_url) as watcher:
        for _ in range(200):
            await watcher.send({"type": "ping"})
        await watcher.wait_for(lambda f: f["type"] == "error" and f["code"] == "rate_limited")
        closed = await watcher.wait_closed()
        assert closed.rcvd is not None and closed.rcvd.code == 1008


async def test_presence_counts_watchers_on_every_instance(
    servers: list[ServerProcess], client: httpx.AsyncClient, show: dict[str, Any]
) -> None:
    show_id = show["id"]
    order = await seat_order(client, show_id)
    a, b, c = Watcher(servers[0].ws_url), Watcher(servers[0].ws_url), Watcher(servers[1].ws_url)
    for w in (a, b, c):
        await w.__aenter__()
        await w.subscribe(show_id, order)
    try:
        for w in (a, b, c):
            await w.wait_for(lambda f: f["type"] == "presence" and f["watchers"] == 3, within=4)
        mark = len(c.frames)
        await b.close()
        for w in (a, c):
            await w.wait_for(lambda f: f["type"] == "presence" and f["watchers"] == 2, within=4)
        # at most one presence frame a second, and only when the count changed: two
        # seconds without another is what is tested (no event marks that none was sent)
        await asyncio.sleep(2.2)
        counts = [f["watchers"] for f in c.frames_of(show_id, mark) if f["type"] == "presence"]
        assert counts == [2]
    finally:
        for w in (a, c):
            await w.close()


async def test_an_admin_broadcast_reaches_every_watcher(
    servers: list[ServerProcess], client: httpx.AsyncClient, show: dict[str, Any]
) -> None:
    show_id = show["id"]
    order = await seat_order(client, show_id)
    async with Watcher(servers[0].ws_url) as a, Watcher(servers[1].ws_url) as b:
        await a.subscribe(show_id, order)
        await b.subscribe(show_id, order)
        response = await client.post(
            f"/admin/shows/{show_id}/broadcast",
            json={"message": "Doors open at 19:00"},
            headers=auth("admin", "admin"),
        )
        assert response.status_code == 202, response.text
        for w in (a, b):
            frame = await w.wait_for(lambda f: f["type"] == "announcement")
            assert frame["message"] == "Doors open at 19:00" and frame["show_id"] == show_id
            assert w.states[show_id].announcements == ["Doors open at 19:00"]


async def test_a_kiosk_is_not_counted_as_a_person_viewing(
    servers: list[ServerProcess], client: httpx.AsyncClient, show: dict[str, Any]
) -> None:
    show_id = show["id"]
    order = await seat_order(client, show_id)
    async with Watcher(servers[0].ws_url) as person, Watcher(servers[1].ws_url) as kiosk:
        await kiosk.send({"type": "subscribe", "show_id": show_id, "counted": False})
        await kiosk.wait_for(lambda f: f["type"] == "snapshot")
        await person.subscribe(show_id, order)
        await person.wait_for(lambda f: f["type"] == "presence" and f["watchers"] == 1, within=4)
        # presence goes out at most once a second: two seconds without a count of 2 is what
        # is tested (no event marks that none was sent)
        await asyncio.sleep(2.2)
        seen = [f["watchers"] for f in person.frames_of(show_id) if f["type"] == "presence"]
        assert set(seen) == {1}, seen


async def test_a_watcher_who_arrives_after_a_broadcast_gets_it_in_the_snapshot(
    servers: list[ServerProcess], client: httpx.AsyncClient, show: dict[str, Any]
) -> None:
    show_id = show["id"]
    order = await seat_order(client, show_id)
    for message in ("Doors open at 19:00", "Doors open at 19:30 instead"):
        response = await client.post(
            f"/admin/shows/{show_id}/broadcast",
            json={"message": message},
            headers=auth("admin", "admin"),
        )
        assert response.status_code == 202, response.text
    for server, encoding in ((servers[0], None), (servers[1], "rle")):
        async with Watcher(server.ws_url) as late:
            await late.subscribe(show_id, order, encoding=encoding)
            snapshot = late.frames_of(show_id)[0]
            assert snapshot["type"] == "snapshot"
            # the last one replaces the first
            assert snapshot["announcement"]["message"] == "Doors open at 19:30 instead"
            assert snapshot["announcement"]["at"].endswith("+00:00")


async def test_one_connection_watches_several_shows(
    server: ServerProcess, client: httpx.AsyncClient, user: str
) -> None:
    first, second = await create_show(client), await create_show(client)
    async with Watcher(server.ws_url) as watcher:
        await watcher.subscribe(first["id"], await seat_order(client, first["id"]))
        await watcher.subscribe(
            second["id"], await seat_order(client, second["id"]), encoding="rle"
        )
        await hold(client, first["id"], user, ["A1"])
        await hold(client, second["id"], user, ["B2"])
        await converge([watcher], client, first)
        await converge([watcher], client, second)
        await watcher.send({"type": "unsubscribe", "show_id": first["id"]})
        await watcher.send({"type": "ping"})
        await watcher.wait_for(lambda f: f["type"] == "pong")
        mark = len(watcher.frames)
        await hold(client, first["id"], user, ["A2"])

        async def published() -> bool:  # the first show's second event is in Redis
            seat_map = (await client.get(f"/shows/{first['id']}/seats")).json()
            return bool(seat_map["offset"].endswith(":2"))

        await wait_until(published, what="the first show's event to be published")
        # published after it, so the server's one Redis reader gets it after the first
        # show's: once this one is here, the first show's would have been too
        await hold(client, second["id"], user, ["B3"])
        await watcher.wait_for(
            lambda f: f["type"] == "seats" and f["show_id"] == second["id"], since=mark
        )
        assert not seats_frames(watcher, first["id"], mark)


async def test_origin_is_checked_and_a_token_is_verified(server: ServerProcess) -> None:
    host = f"127.0.0.1:{server.port}"
    with pytest.raises(InvalidStatus) as refused:
        await connect(server.ws_url, origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    for origin in (f"http://{host}", None):  # same origin, and non-browser clients
        async with connect(server.ws_url, origin=origin) as ws:  # type: ignore[arg-type]
            await ws.send('{"type":"ping"}')
            assert json.loads(await ws.recv()) == {"type": "pong"}
    async with connect(f"{server.ws_url}?token={token('kiosk-1', 'kiosk')}") as ws:
        await ws.send('{"type":"ping"}')
        assert json.loads(await ws.recv()) == {"type": "pong"}
    async with connect(f"{server.ws_url}?token=forged") as ws:
        await ws.wait_closed()
        assert ws.close_code == 4401


async def test_graceful_shutdown_closes_sockets_with_1012(
    cluster: Cluster, log_dir: Path, client: httpx.AsyncClient, show: dict[str, Any]
) -> None:
    leaving = ServerProcess(cluster, log_dir).start()
    try:
        async with Watcher(leaving.ws_url) as watcher:
            await watcher.subscribe(show["id"], await seat_order(client, show["id"]))
            await asyncio.to_thread(leaving.stop)
            closed = await watcher.wait_closed()
            assert closed.rcvd is not None and closed.rcvd.code == 1012
    finally:
        leaving.stop()


async def test_frames_go_straight_to_the_socket_under_the_real_server(
    server: ServerProcess, client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    """The fan-out's fast path (the encoded frame written to uvicorn's transport as is) is
    what the real server uses: should uvicorn's internals change, frames would silently
    take the slower ASGI send (still correct) and this test fails."""
    show_id = show["id"]
    order = await seat_order(client, show_id)
    before = (await client.get("/metrics")).text
    async with Watcher(server.ws_url) as watcher:
        await watcher.subscribe(show_id, order)
        await hold(client, show_id, user, ["C7"])
        frame = await watcher.wait_for(lambda f: f["type"] == "seats", within=3)
        assert [c["label"] for c in frame["changes"]] == ["C7"]
        after = (await client.get("/metrics")).text
        assert metric(after, "ws_direct_connections") >= 1
    assert metric(after, "realtime_direct_frames") > metric(before, "realtime_direct_frames")
    await converge([watcher], client, show)
