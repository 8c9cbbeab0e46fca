"""Zulip's verify_action for the seat map: for every action, take a snapshot, run the
action, capture the frames it produced, apply them to the stale snapshot with the
browser's own seat store (static/js/live.js, run by Node) and compare with a fresh
snapshot. Frames that arrive before a snapshot taken later must change nothing when
applied to it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.realtime.apply import diff
from tests.realtime.live_store import LiveStore
from tests.realtime.watch import Watcher, client_state, hold, server_state
from tests.support import Cluster, ServerProcess, auth, create_show, wait_until

Action = Callable[[], Awaitable[Any]]
SEAT_STATUS = "SELECT status = 'AVAILABLE' FROM seats WHERE show_id = $1 AND label = $2"


async def verify_action(
    client: httpx.AsyncClient,
    server: ServerProcess,
    show: dict[str, Any],
    action: Action,
    *,
    encoding: str | None = None,
    within: float = 5.0,
) -> list[dict[str, Any]]:
    show_id = show["id"]
    response = await client.get(f"/shows/{show_id}/seats")
    assert response.status_code == 200, response.text
    layout: list[dict[str, Any]] = response.json()["seats"]
    order = [seat["label"] for seat in layout]
    async with LiveStore() as store, Watcher(server.ws_url) as watcher:
        await watcher.subscribe(show_id, order, encoding=encoding)
        mark = len(watcher.frames)
        stale = [f for f in watcher.frames_of(show_id) if f["type"] == "snapshot"]
        await action()

        captured: list[dict[str, Any]] = []
        difference = ""

        async def caught_up() -> bool:
            nonlocal captured, difference
            captured = [f for f in watcher.frames_of(show_id, mark) if f["type"] != "presence"]
            applied = await store.state(layout, stale + captured)
            truth = await server_state(client, show_id)
            difference = diff(client_state(applied, show), truth)
            return not difference

        try:
            await wait_until(caught_up, within, "the frames to bring the snapshot up to date")
        except AssertionError:
            raise AssertionError(
                f"frames {captured} applied to the snapshot differ:\n{difference}"
            ) from None
        applied = await store.state(layout, stale + captured)

        # a fresh snapshot over the WebSocket says the same
        async with Watcher(server.ws_url) as fresh:
            await fresh.subscribe(show_id, order, encoding=encoding)
            snapshot = [f for f in fresh.frames if f["type"] == "snapshot"]
        late = await store.state(layout, snapshot)
        assert late.seats == applied.seats

        # the frames arrived before that snapshot: applied after it they change nothing
        seat_frames = [f for f in captured if f["type"] == "seats"]
        assert (await store.state(layout, snapshot + seat_frames)).seats == late.seats
    return captured


def seat_changes(frames: list[dict[str, Any]]) -> dict[str, str]:
    return {c["label"]: c["status"] for f in frames if f["type"] == "seats" for c in f["changes"]}


@pytest.mark.parametrize("encoding", [None, "rle"])
async def test_hold(
    client: httpx.AsyncClient,
    server: ServerProcess,
    show: dict[str, Any],
    user: str,
    encoding: str | None,
) -> None:
    frames = await verify_action(
        client,
        server,
        show,
        lambda: hold(client, show["id"], user, ["A1", "A2"]),
        encoding=encoding,
    )
    assert seat_changes(frames) == {"A1": "HELD", "A2": "HELD"}


async def test_extend(
    client: httpx.AsyncClient, server: ServerProcess, show: dict[str, Any], user: str
) -> None:
    hold_id = await hold(client, show["id"], user, ["B1"])

    async def extend() -> None:
        response = await client.post(f"/holds/{hold_id}/extend", headers=auth(user))
        assert response.status_code == 200, response.text

    frames = await verify_action(client, server, show, extend)
    assert seat_changes(frames).get("B1", "HELD") == "HELD"


async def test_release(
    client: httpx.AsyncClient, server: ServerProcess, show: dict[str, Any], user: str
) -> None:
    hold_id = await hold(client, show["id"], user, ["C3", "C4"])

    async def release() -> None:
        response = await client.delete(f"/holds/{hold_id}", headers=auth(user))
        assert response.status_code == 204, response.text

    frames = await verify_action(client, server, show, release)
    assert seat_changes(frames) == {"C3": "AVAILABLE", "C4": "AVAILABLE"}


async def test_expiry_by_the_sweeper(
    client: httpx.AsyncClient, server: ServerProcess, cluster: Cluster, user: str
) -> None:
    show = await create_show(client, rows=2, seats_per_row=4, hold_seconds=5)  # the least
    await hold(client, show["id"], user, ["A1"])

    async def expire() -> None:
        # the hold lapses and the sweeper releases it (a map read would already say
        # AVAILABLE at the deadline, before any frame: wait for the sweeper's own write)
        shard = await cluster.connect_shard(show["shard"])
        try:
            await wait_until(
                lambda: shard.fetchval(SEAT_STATUS, show["id"], "A1"),
                within=12,
                what="the sweeper to release A1",
            )
        finally:
            await shard.close()

    frames = await verify_action(client, server, show, expire)
    assert seat_changes(frames) == {"A1": "AVAILABLE"}


async def test_confirm(
    client: httpx.AsyncClient, server: ServerProcess, show: dict[str, Any], user: str
) -> None:
    hold_id = await hold(client, show["id"], user, ["D5", "D6"])

    async def confirm() -> None:
        response = await client.post(f"/holds/{hold_id}/confirm", headers=auth(user))
        assert response.status_code == 201, response.text

    frames = await verify_action(client, server, show, confirm)
    assert seat_changes(frames) == {"D5": "BOOKED", "D6": "BOOKED"}


async def test_cancel_booking(
    client: httpx.AsyncClient, server: ServerProcess, show: dict[str, Any], user: str
) -> None:
    hold_id = await hold(client, show["id"], user, ["E7"])
    booking = (await client.post(f"/holds/{hold_id}/confirm", headers=auth(user))).json()

    async def cancel() -> None:
        response = await client.delete(f"/bookings/{booking['id']}", headers=auth(user))
        assert response.status_code == 200, response.text

    frames = await verify_action(client, server, show, cancel)
    assert seat_changes(frames) == {"E7": "AVAILABLE"}


async def test_one_step_booking(
    client: httpx.AsyncClient, server: ServerProcess, show: dict[str, Any], user: str
) -> None:
    async def book() -> None:
        response = await client.post(
            f"/shows/{show['id']}/book", json={"seatNumbers": ["A9"]}, headers=auth(user)
        )
        assert response.status_code == 201, response.text

    frames = await verify_action(client, server, show, book)
    assert seat_changes(frames) == {"A9": "BOOKED"}


async def test_show_change(
    client: httpx.AsyncClient, server: ServerProcess, show: dict[str, Any]
) -> None:
    async def change() -> None:
        response = await client.patch(
            f"/admin/shows/{show['id']}",
            json={"title": "Renamed", "starts_at": "2027-02-01T19:30:00Z", "status": "SCHEDULED"},
            headers=auth("admin", "admin"),
        )
        assert response.status_code == 200, response.text

    frames = await verify_action(client, server, show, change)
    assert [f["title"] for f in frames if f["type"] == "show"] == ["Renamed"]
