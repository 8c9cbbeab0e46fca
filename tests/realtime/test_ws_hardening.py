"""A hostile client cannot end a connection without a close frame or leave a watcher behind
(issue 12, item 1): the Unicode-digit offset that did both, frames that failed to decode,
and a failure injected at each step of handling a frame in a server run in this process
(real socket, real PostgreSQL and Redis)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx

from tests.realtime.watch import Watcher, seat_order
from tests.support import ServerProcess

# "²".isdigit() is True and int("²") raises: this frame used to kill the socket after its
# watcher was counted
UNICODE_DIGIT_OFFSET = "e:²"


async def test_a_unicode_digit_offset_gets_a_snapshot_and_leaves_no_watcher_behind(
    server: ServerProcess, client: httpx.AsyncClient, show: dict[str, Any]
) -> None:
    show_id = show["id"]
    order = await seat_order(client, show_id)
    async with Watcher(server.ws_url) as real, contextlib.AsyncExitStack() as stack:
        await real.subscribe(show_id, order)
        hostile = [await stack.enter_async_context(Watcher(server.ws_url)) for _ in range(20)]
        for w in hostile:
            await w.subscribe(show_id, order, offset=UNICODE_DIGIT_OFFSET, wait=False)
        for w in hostile:  # an unusable offset gets a snapshot, and the socket stays up
            await w.wait_for(lambda f: f["type"] == "snapshot" and f["show_id"] == show_id)
            await w.send({"type": "ping"})
            await w.wait_for(lambda f: f["type"] == "pong")
        await real.wait_for(lambda f: f["type"] == "presence" and f["watchers"] == 21)
        mark = len(real.frames)
        await asyncio.gather(*(w.close() for w in hostile))
        for w in hostile:
            assert w.ws.protocol.close_rcvd is not None  # the server answered the close
        await real.wait_for(
            lambda f: f["type"] == "presence" and f["watchers"] == 1, since=mark, within=5
        )


async def test_a_frame_nested_too_deep_to_decode_gets_an_error_frame(
    server: ServerProcess,
) -> None:
    """A skipped field nested 1,000 deep made the decoder raise RecursionError."""
    deep = '{"x":' + "[" * 1000 + "]" * 1000 + ',"type":"ping"}'
    async with Watcher(server.ws_url) as w:
        await w.send(deep)
        error = await w.wait_for(lambda f: f["type"] == "error")
        assert error["code"] == "invalid_frame"
        await w.send({"type": "ping"})
        await w.wait_for(lambda f: f["type"] == "pong")
