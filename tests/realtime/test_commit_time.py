"""A seat change frame carries its commit time (`ts`, epoch milliseconds, DESIGN.md), which
load tools measure commit-to-receive with."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from app.realtime.outbox import seats_event
from tests.realtime.watch import Watcher, hold, seat_order
from tests.support import ServerProcess


async def test_a_seat_frame_carries_its_commit_time_in_epoch_ms(
    client: httpx.AsyncClient, servers: list[ServerProcess], show: dict[str, Any], user: str
) -> None:
    order = await seat_order(client, show["id"])
    async with Watcher(servers[1].ws_url) as watcher:
        await watcher.subscribe(show["id"], order)
        mark = len(watcher.frames)
        before = time.time() * 1000
        await hold(client, show["id"], user, ["A1"])
        answered = time.time() * 1000
        frame = await watcher.wait_for(lambda f: f["type"] == "seats", since=mark)
    assert isinstance(frame["ts"], int), frame
    # committed while the request was in flight (both clocks are this machine's)
    assert before - 5 <= frame["ts"] <= answered + 5, (before, frame["ts"], answered)
    assert frame["_received"] * 1000 - frame["ts"] < 1000


def test_a_relayed_event_keeps_the_rows_commit_time_in_ms() -> None:
    event = orjson.loads(seats_event(7, '[{"label":"A1","status":"HELD","version":2}]', 1.5e9))
    assert event == {
        "type": "seats",
        "show_id": 7,
        "changes": [{"label": "A1", "status": "HELD", "version": 2}],
        "ts": 1_500_000_000_000,
    }
