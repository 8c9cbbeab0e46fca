"""Pieces of one connection's protocol that stand alone."""

from __future__ import annotations

import asyncio

import pytest
from websockets.frames import Frame, Opcode

from app.realtime.broker import Position
from app.realtime.frames import Outgoing, ws_text_frame
from app.realtime.protocol import FrameBudget, Stalled, direct_socket
from app.realtime.sync import resume_position


async def test_a_send_started_by_hand_is_finished_by_the_writer() -> None:
    """The fast path runs the server's send without a task; when it suspends (socket
    full), Stalled lets the writer task finish exactly that send."""
    writable = asyncio.Event()
    written: list[str] = []

    async def send(frame: str) -> None:
        await writable.wait()
        written.append(frame)

    coro = send("a")
    waiting_on = coro.send(None)  # suspends: not writable yet
    writer = asyncio.create_task(_await(Stalled(coro, waiting_on)))
    await asyncio.sleep(0.01)
    assert written == [] and not writer.done()
    writable.set()
    await writer
    assert written == ["a"]


async def test_cancelling_the_writer_cancels_the_stalled_send() -> None:
    never = asyncio.Event()
    cleaned: list[str] = []

    async def send() -> None:
        try:
            await never.wait()
        finally:
            cleaned.append("send")

    coro = send()
    writer = asyncio.create_task(_await(Stalled(coro, coro.send(None))))
    await asyncio.sleep(0.01)
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert cleaned == ["send"]


async def test_an_error_in_the_stalled_send_reaches_the_writer() -> None:
    writable = asyncio.Event()

    async def send() -> None:
        await writable.wait()
        raise ConnectionResetError("peer gone")

    coro = send()
    writer = asyncio.create_task(_await(Stalled(coro, coro.send(None))))
    writable.set()
    with pytest.raises(ConnectionResetError):
        await writer


def test_frame_budget_allows_a_burst_then_the_rate() -> None:
    budget = FrameBudget(rate=20.0, burst=5.0)
    assert [budget.take() for _ in range(6)] == [True] * 5 + [False]


async def _await(stalled: Stalled) -> None:
    await stalled


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_a_frame_encoded_once_is_what_websockets_would_send(size: int) -> None:
    payload = ("x" * size).encode()
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert Outgoing("x" * size).wire == ws_text_frame(payload) == expected


def test_no_direct_socket_behind_a_receive_that_is_not_uvicorns() -> None:
    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    assert direct_socket(receive) is None


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
