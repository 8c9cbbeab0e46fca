"""How one WebSocket connection's frames reach its socket (centrifuge's Transport).

`AsgiTransport` is the reference: every frame goes through the ASGI `send`, from the
connection's writer task. `DirectTransport` is the fast path, for uvicorn's
`websockets-sansio` connections: a frame is written, already framed (`Outgoing.wire`),
straight to the connection's asyncio transport while that transport's buffer is below
its high-water mark, without a task switch or an ASGI message per watcher (what
websockets.broadcast() does, minus the per-connection framing; measured as fast as bare
broadcast() in the fan-out benchmark). It leans on uvicorn internals, so it is used only
after `choose_transport` has checked them at start-up, and only on connections that are
exactly what it was checked against; anything else takes the ASGI send.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from starlette.types import Receive, Send
from websockets.protocol import State
from websockets.server import ServerProtocol

from app.config import WsTransport
from app.realtime.frames import Outgoing
from app.realtime.metrics import DIRECT_WRITES

if TYPE_CHECKING:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger("modex.realtime.transport")

# The uvicorn releases DirectTransport was read against (WebSocketsSansIOProtocol's `conn`,
# `transport`, `send`, `receive`, and that it writes whole frames only): from, up to
# (excluded). pyproject.toml pins the same range; a test holds the two together.
UVICORN_CHECKED = ((0, 55), (0, 56))


class Transport(Protocol):
    """Where one connection's frames go. A frame is either taken now (`try_write`) or,
    when the socket is full, queued by the connection and sent later with `write`."""

    def try_write(self, frame: Outgoing) -> bool:
        """Write the frame if the socket takes it without waiting; False: it was not
        written (the caller queues it, so no later frame overtakes it)."""
        ...

    async def write(self, frame: Outgoing) -> None:
        """Send the frame, waiting for the socket to drain; raises OSError when the
        peer is gone."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Send the close frame."""
        ...


TransportFactory = Callable[[Receive, Send], Transport]


class AsgiTransport:
    """The reference: the ASGI send, which any server provides and which waits for the
    socket. Nothing is written without waiting, so each frame costs the writer task a
    task switch; under uvicorn, DirectTransport saves that."""

    __slots__ = ("_send",)

    def __init__(self, send: Send) -> None:
        self._send = send

    def try_write(self, frame: Outgoing) -> bool:
        return False

    async def write(self, frame: Outgoing) -> None:
        await self._send({"type": "websocket.send", "text": frame.text})

    async def close(self, code: int, reason: str) -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})


class DirectTransport(AsgiTransport):
    """uvicorn's `websockets-sansio` connection, written to directly while its buffer has
    room; when it is full, frames take uvicorn's own send (which waits for the buffer to
    drain), skipping the application's wrappers around `send`."""

    __slots__ = ("_conn", "_high_water", "_socket")

    def __init__(self, connection: WebSocketsSansIOProtocol) -> None:
        super().__init__(connection.send)  # type: ignore[arg-type]  # uvicorn's own ASGI types
        self._conn: ServerProtocol = connection.conn
        self._socket: asyncio.Transport = connection.transport
        self._high_water = self._socket.get_write_buffer_limits()[1]

    def try_write(self, frame: Outgoing) -> bool:
        # once per frame per watcher: the fan-out's hot path, kept to two checks and a write
        if self._conn.state is not State.OPEN or self._socket.is_closing():
            return True  # a close frame was sent or the peer left: the reader ends it
        if self._socket.get_write_buffer_size() > self._high_water:
            return False  # uvicorn paused its own sends: queue from here on
        self._socket.write(frame.wire)
        DIRECT_WRITES[0] += 1  # a list, not a Counter: its lock would cost more than this
        return True


def choose_transport(kind: WsTransport) -> TransportFactory:
    """At start-up: the factory of each connection's transport. "direct" gives
    DirectTransport where the checks below hold (and logs once, then uses the ASGI
    send, where they do not); "asgi" gives AsgiTransport always."""
    if kind == "asgi":
        return asgi_transport
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )
    except ImportError as exc:
        log.warning("WebSocket frames take the ASGI send: %r", exc)
        return asgi_transport
    problem = fast_path_problem(importlib.metadata.version("uvicorn"), WebSocketsSansIOProtocol)
    if problem is not None:
        log.warning("WebSocket frames take the ASGI send: %s", problem)
        return asgi_transport

    def direct_where_checked(receive: Receive, send: Send) -> Transport:
        # the connection behind `receive` (Starlette passes uvicorn's bound method through
        # untouched), after the handshake; another server, another --ws implementation or
        # an extension that changes the bytes (permessage-deflate) takes the ASGI send
        connection = getattr(receive, "__self__", None)
        if (
            type(connection) is not WebSocketsSansIOProtocol
            or connection.conn.state is not State.OPEN
            or connection.conn.extensions
        ):
            return AsgiTransport(send)
        return DirectTransport(connection)

    return direct_where_checked


def asgi_transport(receive: Receive, send: Send) -> Transport:
    return AsgiTransport(send)


def fast_path_problem(uvicorn_version: str, protocol: type) -> str | None:
    """Why DirectTransport may not write to `protocol`'s connections, or None. Called once
    at start-up, inside the event loop (it builds one connection object, unconnected)."""
    low, high = UVICORN_CHECKED
    release = tuple(int(part) for part in uvicorn_version.split(".")[:2] if part.isdigit())
    if not low <= release < high:
        return f"uvicorn {uvicorn_version} is not a release the fast path was checked on"
    for method in ("send", "receive"):
        if not inspect.iscoroutinefunction(getattr(protocol, method, None)):
            return f"{protocol.__qualname__}.{method} is not a coroutine function"
    try:  # the attributes DirectTransport reads exist only on an instance
        from uvicorn.config import Config
        from uvicorn.server import ServerState

        config = Config(_no_app, ws_per_message_deflate=False, log_config=None)
        config.load()
        connection = protocol(config, ServerState(), {})
    except Exception as exc:
        return f"{protocol.__qualname__} cannot be built as it was checked: {exc!r}"
    if not isinstance(getattr(connection, "conn", None), ServerProtocol):
        return f"{protocol.__qualname__}.conn is not a websockets ServerProtocol"
    if not hasattr(connection, "transport"):
        return f"{protocol.__qualname__} has no transport attribute"
    return None


async def _no_app(scope: Any, receive: Receive, send: Send) -> None:
    """The application of the connection object fast_path_problem builds and never runs."""
