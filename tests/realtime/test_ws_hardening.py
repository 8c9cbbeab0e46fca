"""A hostile client cannot end a connection without a close frame or leave a watcher behind
(issue 12, item 1): the Unicode-digit offset that did both, frames that failed to decode,
and a failure injected at each step of handling a frame in a server run in this process
(real socket, real PostgreSQL and Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from websockets.exceptions import ConnectionClosed

import app.main
from app.realtime import protocol
from app.realtime.broker_redis import RedisBroker
from app.realtime.hub import Hub
from app.realtime.protocol import Connection, FrameBudget
from app.realtime.sync import Sync
from tests.realtime.watch import Watcher, seat_order
from tests.support import Cluster, ServerProcess, free_port, wait_until

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


# ---- a failure injected at each step, in a server run in this process ----


class InjectedFault(Exception):
    pass


@dataclass
class InProcessServer:
    app: Starlette
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def watchers(self, show_id: int) -> tuple[int, float | None]:
        """This server's watchers of the show, and of every show (the /metrics gauge)."""
        hub: Hub = self.app.state.services.realtime.hub
        return hub.watchers(show_id), REGISTRY.get_sample_value("ws_watchers")


@pytest.fixture(scope="module", params=["asgi", "direct"])
async def inprocess(
    cluster: Cluster, request: pytest.FixtureRequest
) -> AsyncIterator[InProcessServer]:
    """`modex serve`'s app and uvicorn settings in the test's own process (and loop), so a
    test can make any method fail; the cluster's PostgreSQL and Redis are real. Once on
    each WebSocket transport."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    env = cluster.env(MODEX_SWEEP_INTERVAL="0", MODEX_WS_TRANSPORT=request.param)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setattr(app.main, "tune_garbage_collector", lambda: None)  # gc.freeze() is global
        created = app.main.create_app()
        port = free_port()
        config = uvicorn.Config(
            created,
            host="127.0.0.1",
            port=port,
            ws="websockets-sansio",
            ws_per_message_deflate=False,
            ws_max_size=65536,
            log_config=None,
            access_log=False,
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        try:
            await wait_until(lambda: server.started or serving.done(), within=30)
            assert server.started, serving
            yield InProcessServer(created, port)
        finally:
            server.should_exit = True
            await serving
            root.handlers[:], root.level = handlers, level


def failing(original: Callable[..., Any], times: int | None = None) -> Callable[..., Any]:
    """`original`, raising InjectedFault on its first `times` calls (every call: None)."""
    calls = 0

    def fires() -> bool:
        nonlocal calls
        calls += 1
        return times is None or calls <= times

    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def failing_async(*args: Any, **kwargs: Any) -> Any:
            if fires():
                raise InjectedFault(original.__qualname__)
            return await original(*args, **kwargs)

        return failing_async

    @functools.wraps(original)
    def failing_sync(*args: Any, **kwargs: Any) -> Any:
        if fires():
            raise InjectedFault(original.__qualname__)
        return original(*args, **kwargs)

    return failing_sync


def after(original: Callable[..., Any]) -> Callable[..., Any]:
    """`original`, then InjectedFault: the step did its work and failed anyway."""

    @functools.wraps(original)
    def failing_after(*args: Any, **kwargs: Any) -> Any:
        original(*args, **kwargs)
        raise InjectedFault(original.__qualname__)

    return failing_after


@dataclass(frozen=True)
class Step:
    """Where handling a frame (a subscribe unless `ping`) fails, and what the client must
    see: an error frame with this code (and the socket stays usable), a close frame with
    this code, or (neither) the snapshot, when the step makes up for its own failure.
    `watching`: the socket already watches the show when the failure comes."""

    name: str
    patch: Callable[[pytest.MonkeyPatch], None]
    error: str | None = None
    close: int | None = None
    offset: str | None = None
    ping: bool = False
    watching: bool = False


STEPS = [
    Step("hub.attach", lambda mp: mp.setattr(Hub, "attach", failing(Hub.attach)), "internal"),
    Step("hub.start", lambda mp: mp.setattr(Hub, "start", failing(Hub.start)), "internal"),
    Step(
        "broker.subscribe (the channel's task)",
        lambda mp: mp.setattr(RedisBroker, "subscribe", failing(RedisBroker.subscribe)),
        "internal",
    ),
    Step(
        "sync.queue, after it queued the watcher for a snapshot",
        lambda mp: mp.setattr(Sync, "queue", after(Sync.queue)),
        "internal",
    ),
    Step(
        "broker.history (a resume)",
        lambda mp: mp.setattr(RedisBroker, "history", failing(RedisBroker.history)),
        offset="0:0",
    ),
    Step(
        "hub.unwatch of the resubscribed show, once",
        lambda mp: mp.setattr(Hub, "unwatch", failing(Hub.unwatch, times=1)),
        close=1011,
        watching=True,
    ),
    Step(
        "the frame decoder",
        lambda mp: mp.setattr(protocol, "client_decoder", Exploding()),
        "internal",
    ),
    Step(
        "the read loop, outside any frame",
        lambda mp: mp.setattr(FrameBudget, "take", failing(FrameBudget.take)),
        close=1011,
        watching=True,
    ),
    Step(
        "connection.send of the snapshot, in the hub's sync loop, once",
        lambda mp: mp.setattr(Connection, "send", failing(Connection.send, times=1)),
        close=1011,
    ),
    Step(
        "connection.send of the pong, once",
        lambda mp: mp.setattr(Connection, "send", failing(Connection.send, times=1)),
        "internal",
        ping=True,
    ),
    Step(
        "the endpoint, before the connection runs",
        lambda mp: mp.setattr(Connection, "__init__", failing(Connection.__init__)),
        close=1011,
    ),
]


class Exploding:
    def decode(self, data: str | bytes) -> Any:
        raise InjectedFault("decode")


@pytest.fixture
def faults() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.parametrize("step", STEPS, ids=lambda step: step.name)
async def test_a_failure_at_any_step_ends_in_a_frame_and_leaves_no_watcher_behind(
    inprocess: InProcessServer,
    client: httpx.AsyncClient,
    show: dict[str, Any],
    faults: pytest.MonkeyPatch,
    step: Step,
) -> None:
    show_id = show["id"]
    order = await seat_order(client, show_id)
    before = inprocess.watchers(show_id)
    if not step.watching:
        step.patch(faults)
    async with Watcher(inprocess.ws_url) as w:
        if step.watching:
            await w.subscribe(show_id, order)
            step.patch(faults)
        mark = len(w.frames)
        frame = {"type": "subscribe", "show_id": show_id, "offset": step.offset}
        with contextlib.suppress(ConnectionClosed):  # closed already (the endpoint step)
            await w.send({"type": "ping"} if step.ping else frame)
        if step.close is not None:
            closed = await w.wait_closed()
            assert closed.rcvd is not None and closed.rcvd.code == step.close, closed
        elif step.error is not None:
            error = await w.wait_for(lambda f: f["type"] == "error", since=mark)
            assert error["code"] == step.error, error
            faults.undo()
            await w.send({"type": "ping"})  # still usable
            await w.wait_for(lambda f: f["type"] == "pong", since=mark)
            await w.subscribe(show_id, order)  # and the show can be watched again
        else:  # a failure the step answers itself: a snapshot instead of a replay
            await w.wait_for(lambda f: f["type"] == "snapshot", since=mark)
        faults.undo()
    await wait_until(lambda: inprocess.watchers(show_id) == before)
    async with Watcher(inprocess.ws_url) as w:  # nothing the failure left breaks the show
        await w.subscribe(show_id, order)
    await wait_until(lambda: inprocess.watchers(show_id) == before)
