"""A watching client for tests: a real WebSocket connection that records every frame and
keeps its picture of each show with the one apply logic (apply.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.realtime.apply import SHOW_FIELDS, ShowState, apply, check_schema, diff
from tests.support import auth, wait_until


async def seat_order(client: httpx.AsyncClient, show_id: int) -> list[str]:
    response = await client.get(f"/shows/{show_id}/seats")
    assert response.status_code == 200, response.text
    return [seat["label"] for seat in response.json()["seats"]]


async def server_state(client: httpx.AsyncClient, show_id: int) -> dict[str, Any]:
    """The truth, over HTTP: seats (read now, not a map the server keeps: a change nobody
    published moves no offset) and the show fields watchers are told about."""
    seats_response = await client.get(
        f"/shows/{show_id}/seats", headers={"Cache-Control": "no-cache"}
    )
    show_response = await client.get(f"/shows/{show_id}")
    assert seats_response.status_code == show_response.status_code == 200, (
        seats_response.text,
        show_response.text,
    )
    seats = seats_response.json()["seats"]
    show = show_response.json()
    state: dict[str, Any] = {s["label"]: (s["status"], s["version"]) for s in seats}
    for key in SHOW_FIELDS:
        state[f"show.{key}"] = _normal(key, show[key])
    return state


def client_state(state: ShowState, show: dict[str, Any]) -> dict[str, Any]:
    """A client's picture in the shape of server_state; show fields it was never sent
    come from `show` (what it knew when it started)."""
    flat: dict[str, Any] = dict(state.seats)
    for key in SHOW_FIELDS:
        flat[f"show.{key}"] = _normal(key, state.show.get(key, show[key]))
    return flat


def _normal(key: str, value: Any) -> Any:
    if key == "starts_at":
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return value


class Watcher:
    """One WebSocket connection watching one or more shows."""

    def __init__(self, ws_url: str, **connect_args: Any) -> None:
        self.ws_url = ws_url
        self.connect_args = connect_args
        self.frames: list[dict[str, Any]] = []
        self.states: dict[int, ShowState] = {}
        self.closed: ConnectionClosed | None = None
        self.error: BaseException | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> Watcher:
        self._ws = await connect(self.ws_url, **self.connect_args)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    @property
    def ws(self) -> ClientConnection:
        assert self._ws is not None
        return self._ws

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def subscribe(
        self,
        show_id: int,
        order: list[str],
        offset: str | None = None,
        encoding: str | None = None,
        wait: bool = True,
    ) -> ShowState:
        state = self.states.get(show_id)
        if state is None:
            state = self.states[show_id] = ShowState(order)
        frame: dict[str, Any] = {"type": "subscribe", "show_id": show_id}
        if offset is not None:
            frame["offset"] = offset
        if encoding is not None:
            frame["encoding"] = encoding
        mark = len(self.frames)
        await self.send(frame)
        if wait and offset is None:
            await self.wait_for(
                lambda f: f["type"] == "snapshot" and f["show_id"] == show_id, since=mark
            )
        return state

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                frame = check_schema(text)
                frame["_received"] = time.time()
                show_id = frame.get("show_id")
                if show_id in self.states:
                    apply(self.states[show_id], frame)
                async with self._changed:
                    self.frames.append(frame)
                    self._changed.notify_all()
        except ConnectionClosed as closed:
            self.closed = closed
        except Exception as exc:  # a frame off the schema: fail the test that waits
            self.error = exc
            self.closed = ConnectionClosed(None, None)
        finally:
            if self._ws is not None and self.closed is None:
                with contextlib.suppress(Exception):
                    await self._ws.wait_closed()
                    self.closed = ConnectionClosed(self._ws.close_rcvd, self._ws.close_sent)
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], since: int = 0, within: float = 5.0
    ) -> dict[str, Any]:
        """The first frame from index `since` on that matches."""
        async with asyncio.timeout(within):
            async with self._changed:
                while True:
                    for frame in self.frames[since:]:
                        if predicate(frame):
                            return frame
                    if self.error is not None:
                        raise AssertionError(f"bad frame: {self.error!r}")
                    if self.closed is not None:
                        raise AssertionError(f"connection closed: {self.closed}")
                    await self._changed.wait()

    async def wait_closed(self, within: float = 5.0) -> ConnectionClosed:
        async with asyncio.timeout(within), self._changed:
            while self.closed is None:
                await self._changed.wait()
        return self.closed

    def frames_of(self, show_id: int, since: int = 0) -> list[dict[str, Any]]:
        return [f for f in self.frames[since:] if f.get("show_id") == show_id]


async def converge(
    watchers: list[Watcher],
    client: httpx.AsyncClient,
    show: dict[str, Any],
    within: float = 5.0,
) -> float:
    """Wait until every watcher's picture of the show equals the server's; returns how long
    it took. Fails with the difference when it does not happen within `timeout`."""
    started = time.monotonic()
    show_id = show["id"]
    wrong: list[tuple[int, str]] = []

    async def converged() -> bool:
        nonlocal wrong
        truth = await server_state(client, show_id)
        differences = [
            (i, diff(client_state(w.states[show_id], show), truth)) for i, w in enumerate(watchers)
        ]
        wrong = [(i, d) for i, d in differences if d]
        return not wrong

    try:
        await wait_until(converged, within, "the watchers to converge", every=0.05)
    except AssertionError:
        report = "\n".join(f"watcher {i}:\n{d}" for i, d in wrong)
        raise AssertionError(f"watchers did not converge in {within}s:\n{report}") from None
    return time.monotonic() - started


async def hold(client: httpx.AsyncClient, show_id: int, user: str, seats: list[str]) -> str:
    """Hold seats over HTTP (the change every watcher should see); returns the hold id."""
    response = await client.post(
        f"/shows/{show_id}/holds", json={"seats": seats}, headers=auth(user)
    )
    assert response.status_code == 201, response.text
    hold_id: str = response.json()["hold_id"]
    return hold_id
