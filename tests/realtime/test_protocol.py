"""One connection's protocol over real sockets, on both transports (the ASGI send, the
reference, and the direct writes to uvicorn's connection), and the pieces that stand
alone: the frame budget, the frame bytes, resume offsets, the fast path's start-up check."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from websockets.frames import Frame, Opcode

from app.realtime import transport
from app.realtime.broker import Position
from app.realtime.frames import Outgoing, ws_text_frame
from app.realtime.hub import resume_position
from app.realtime.protocol import FrameBudget
from app.realtime.transport import UVICORN_CHECKED, choose_transport, fast_path_problem
from tests.realtime.test_faults import announcement, non_reading_client, publisher_of
from tests.realtime.watch import Watcher, converge, hold, seat_order
from tests.support import ROOT, Cluster, ServerProcess, auth, create_show, metric

# ---- the protocol on both transports ----

BATCH = 64  # announcements of 4 KiB: a batch is a quarter of a connection's queue cap


@pytest.fixture(scope="module", params=["asgi", "direct"])
def kind(request: pytest.FixtureRequest) -> str:
    """The transport the module's server is started with (MODEX_WS_TRANSPORT)."""
    found: str = request.param
    return found


@pytest.fixture(scope="module")
def ws_server(kind: str, cluster: Cluster, log_dir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(cluster, log_dir, MODEX_WS_TRANSPORT=kind).start()
    yield server
    server.stop()


@pytest.fixture
async def own(ws_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ws_server.url, timeout=30) as found:
        yield found


async def direct_frames(client: httpx.AsyncClient) -> float:
    return metric((await client.get("/metrics")).text, "realtime_direct_frames")


async def test_frames_take_the_transport_the_server_was_started_with(
    kind: str, ws_server: ServerProcess, own: httpx.AsyncClient, user: str
) -> None:
    """Else the tests below would run one path twice."""
    show = await create_show(own)
    before = await direct_frames(own)
    async with Watcher(ws_server.ws_url) as watcher:
        await watcher.subscribe(show["id"], await seat_order(own, show["id"]))
        await hold(own, show["id"], user, ["A1"])
        await watcher.wait_for(lambda f: f["type"] == "seats")
        direct = metric((await own.get("/metrics")).text, "ws_direct_connections")
    assert direct == (1 if kind == "direct" else 0)
    assert (await direct_frames(own) > before) == (kind == "direct")


async def test_a_watcher_sees_every_change_and_errors_leave_it_usable(
    ws_server: ServerProcess, own: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(own)
    show_id = show["id"]
    async with Watcher(ws_server.ws_url) as watcher:
        await watcher.subscribe(show_id, await seat_order(own, show_id))
        holds = [await hold(own, show_id, user, [seat]) for seat in ("B1", "B2", "B3")]
        await watcher.send({"type": "dance"})
        error = await watcher.wait_for(lambda f: f["type"] == "error")
        assert error["code"] == "unknown_type"
        response = await own.delete(f"/holds/{holds[1]}", headers=auth(user))
        assert response.status_code == 204, response.text
        await watcher.send({"type": "ping"})
        await watcher.wait_for(lambda f: f["type"] == "pong")
        await converge([watcher], own, show)
        offsets = [f["offset"] for f in watcher.frames_of(show_id) if "offset" in f]
        numbers = [int(o.rpartition(":")[2]) for o in offsets]
        assert numbers == sorted(numbers), offsets  # in the order they were published


async def test_the_frames_queued_before_a_close_go_out_before_it(
    ws_server: ServerProcess,
) -> None:
    """A flooding client is closed with 1008: the rate-limit errors still queued reach it
    first (Connection.close writes them through the transport, then closes)."""
    async with Watcher(ws_server.ws_url) as watcher:
        await asyncio.gather(*(watcher.send({"type": "ping"}) for _ in range(120)))
        closed = await watcher.wait_closed()
    assert closed.rcvd is not None and closed.rcvd.code == 1008, closed
    errors = [f["code"] for f in watcher.frames if f["type"] == "error"]
    assert errors and set(errors) == {"rate_limited"}, errors


async def test_a_client_whose_socket_fills_gets_every_frame_in_order_once_it_reads(
    kind: str,
    ws_server: ServerProcess,
    own: httpx.AsyncClient,
    cluster: Cluster,
    redis: aioredis.Redis,
    user: str,
) -> None:
    """Frames the socket cannot take queue and the writer sends them in order; then frames
    go out at once again. Announcements are published until the socket is full (on the
    direct path: a batch the client that stopped reading got fewer frames of, straight to
    its socket, than a client that reads), so the queue stays below its 1 MiB cap: nothing
    is dropped, no resync."""
    show_id = (await create_show(own))["id"]
    first_metrics = (await own.get("/metrics")).text
    lagging = await non_reading_client(ws_server.port, ws_server.ws_url)
    try:
        await lagging.send(json.dumps({"type": "subscribe", "show_id": show_id}))
        assert json.loads(await lagging.recv())["type"] == "snapshot"
        publisher = await publisher_of(cluster, redis)
        published = 0
        async with Watcher(ws_server.ws_url) as reading:
            await reading.subscribe(show_id, await seat_order(own, show_id))
            while True:
                before, mark = await direct_frames(own), len(reading.frames)
                for i in range(published, published + BATCH):
                    message = announcement(show_id, i, 4096)
                    await publisher.publish(show_id, message, invalidate_availability=False)
                published += BATCH
                last = f"{published - 1} "
                await reading.wait_for(
                    lambda f, last=last: (
                        f["type"] == "announcement" and f["message"].startswith(last)
                    ),
                    since=mark,
                )
                # each frame goes to both in one fan-out pass: the reading client's all
                # straight to its socket, the other's until its socket is full
                to_lagging = await direct_frames(own) - before - len(reading.frames[mark:])
                if kind == "asgi" or to_lagging < len(reading.frames[mark:]):
                    break
                assert published < 64 * BATCH, "the socket never filled"
        await hold(own, show_id, user, ["C3"])
        numbers: list[int] = []
        async with asyncio.timeout(20):
            while True:
                frame = json.loads(await lagging.recv())
                assert frame["type"] != "snapshot", "resynced: the backlog was dropped"
                if frame["type"] == "announcement":
                    numbers.append(int(frame["message"].split()[0]))
                elif frame["type"] == "seats":
                    break
        assert numbers == list(range(published))
        caught_up = await direct_frames(own)
        await lagging.send('{"type":"ping"}')  # the queue is empty: the pong goes out at once
        async with asyncio.timeout(5):
            while json.loads(await lagging.recv())["type"] != "pong":
                pass
        if kind == "direct":
            assert await direct_frames(own) > caught_up
        else:
            assert await direct_frames(own) == metric(first_metrics, "realtime_direct_frames")
    finally:
        await lagging.close()
    resynced = 'realtime_slow_consumers_total{action="resynced"}'
    assert metric((await own.get("/metrics")).text, resynced) == metric(first_metrics, resynced)


# ---- the fast path's start-up check ----


def test_uvicorn_is_pinned_to_the_releases_the_fast_path_was_checked_on() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [Requirement(r) for r in project["dependencies"]]
    (uvicorn,) = [r for r in pins if r.name == "uvicorn"]
    low, high = (".".join(map(str, release)) for release in UVICORN_CHECKED)
    assert uvicorn.specifier == SpecifierSet(f">={low},<{high}")
    assert importlib.metadata.version("uvicorn") in uvicorn.specifier


async def test_the_installed_uvicorn_passes_the_fast_paths_check() -> None:
    installed = importlib.metadata.version("uvicorn")
    assert fast_path_problem(installed, WebSocketsSansIOProtocol) is None


@pytest.mark.parametrize("version", ["0.54.9", "0.56.0", "1.0.0"])
async def test_another_uvicorn_release_fails_the_check(version: str) -> None:
    problem = fast_path_problem(version, WebSocketsSansIOProtocol)
    assert problem is not None and version in problem


async def test_another_websocket_implementation_fails_the_check() -> None:
    """uvicorn's --ws wsproto: its `conn` is wsproto's, whose bytes the fast path does not
    know."""
    installed = importlib.metadata.version("uvicorn")
    problem = fast_path_problem(installed, WSProtocol)
    assert problem == "WSProtocol.conn is not a websockets ServerProtocol"


async def test_a_failed_check_is_logged_once_and_frames_take_the_asgi_send(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(transport, "fast_path_problem", lambda *_: "uvicorn 9.9 is unchecked")
    with caplog.at_level(logging.WARNING, "modex.realtime.transport"):
        factory = choose_transport("direct")
    assert factory is transport.asgi_transport
    assert [r.getMessage() for r in caplog.records] == [
        "WebSocket frames take the ASGI send: uvicorn 9.9 is unchecked"
    ]
    assert choose_transport("asgi") is transport.asgi_transport


# ---- pieces that stand alone ----


def test_frame_budget_allows_a_burst_then_the_rate() -> None:
    budget = FrameBudget(rate=20.0, burst=5.0)
    assert [budget.take() for _ in range(6)] == [True] * 5 + [False]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_a_frame_encoded_once_is_what_websockets_would_send(size: int) -> None:
    payload = ("x" * size).encode()
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert Outgoing("x" * size).wire == ws_text_frame(payload) == expected


@pytest.mark.parametrize(
    "offset",
    ["e:²", "e:٣", "e:𝟘", "e:１", "e:", ":1", "e1", "", None, "e:-1", "e:1.0", "e:" + "9" * 19],
)
def test_a_resume_offset_that_is_not_epoch_and_ascii_digits_gets_a_snapshot(
    offset: str | None,
) -> None:
    """str.isdigit() is True for "²" (int() raises) and "٣" (int() reads 3)."""
    assert resume_position(offset) is None


def test_a_resume_offset_parses_to_its_position() -> None:
    assert resume_position("ab12:7") == Position("ab12", 7)
    assert resume_position("a:b:" + "9" * 18) == Position("a:b", 10**18 - 1)
