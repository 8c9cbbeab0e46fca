"""One WebSocket connection's protocol (centrifuge's Client): subscribe / unsubscribe /
ping in, frames out through a queue bounded in bytes.

The endpoint's own task reads: it decodes each frame once (msgspec tagged union); a bad
frame gets an `error` frame and the connection stays up. Frames go out through the
connection's transport (app/realtime/transport.py): written at once while the socket
takes them, without a task switch (the direct transport, under uvicorn); otherwise they
queue, and a writer task, started only while frames wait, sends them in order and ends.
When a client falls behind by more than `max_queue_bytes` its backlog is dropped and it is
resynced with fresh snapshots; when that keeps happening it is closed with 4008 so it
reconnects and resumes by offset.

No exception ends a connection without a close frame, and no connection leaves a
watcher behind: a frame whose handling fails unexpectedly is answered with an `internal`
error frame (each step leaves the connection's subscriptions as they were, so it stays
usable); anything else that fails closes the connection with 1011; and `run` unwatches
every subscription on every way out. A subscription is the connection's from the moment
the hub counts it (`Hub.attach`), before anything that can fail is awaited.

Close codes: 1008 flooding (rate limit), 1011 internal error, 1012 server restart, 4008
slow consumer, 4401 invalid token (the socket is accepted first, so a browser can read
the code).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.realtime import metrics
from app.realtime.frames import (
    MAX_CLIENT_FRAME,
    Error,
    Outgoing,
    Ping,
    Pong,
    Subscribe,
    Unsubscribe,
    client_decoder,
    encoder,
)
from app.realtime.hub import Hub, Subscription
from app.realtime.transport import Transport

log = logging.getLogger("modex.realtime.protocol")

CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
CLOSE_SLOW = 4008
CLOSE_UNAUTHORIZED = 4401

PONG = Outgoing(encoder.encode(Pong()).decode())
MAX_SHOWS_PER_CONNECTION = 32

# ShowValidator(show_id) raises LookupError for a show that does not exist
ShowValidator = Callable[[int], Awaitable[None]]


class StateUnknown(Exception):
    """Undoing a failed frame's step failed too: what the connection is subscribed to is no
    longer known, so it is closed (1011) rather than left half subscribed."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_queue_bytes: int = 1024 * 1024
    # frames per second a client may send, and the burst it may save up
    frame_rate: float = 20.0
    frame_burst: float = 40.0
    # frames over the rate it may send within strike_window seconds before it is closed
    # with 1008
    flood_strikes: int = 50
    strike_window: float = 10.0
    # a second overflow within this many seconds closes the client with 4008
    slow_window: float = 30.0
    close_timeout: float = 1.0


class FrameBudget:
    """Token bucket per connection: in-process state, no shared storage to consult."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self._rate, self._burst = rate, burst
        self._tokens = burst
        self._stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class Connection:
    """A connected client: its subscriptions and its bounded outgoing queue (a hub Sink)."""

    # thousands of these per process: no per-instance dict
    __slots__ = (
        "_budget",
        "_first_strike",
        "_gone",
        "_hub",
        "_idle",
        "_last_overflow",
        "_limits",
        "_queue",
        "_queued",
        "_reader",
        "_strikes",
        "_transport",
        "_validate_show",
        "_writer",
        "close_code",
        "close_reason",
        "subs",
        "websocket",
    )

    def __init__(
        self,
        websocket: WebSocket,
        transport: Transport,
        hub: Hub,
        validate_show: ShowValidator,
        limits: Limits,
    ) -> None:
        self.websocket = websocket
        self._transport = transport
        self._hub = hub
        self._validate_show = validate_show
        self._limits = limits
        self.subs: dict[int, Subscription] = {}
        self._queue: deque[Outgoing] = deque()
        self._queued = 0
        # nothing queued, no send in flight: a frame may be written at once
        self._idle = True
        # the reader is the endpoint's own task; a writer task exists only while frames
        # wait in the queue (two fewer tasks per idle watcher than a reader and a writer)
        self._reader: asyncio.Task[Any] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._gone = False  # a send failed: the peer left, the reader will see it
        self._budget = FrameBudget(limits.frame_rate, limits.frame_burst)
        self._strikes = 0
        self._first_strike = -1e9
        self._last_overflow = -1e9
        self.close_code: int | None = None
        self.close_reason = ""

    # ---- the Sink side, called by the hub ----

    def send(self, frame: Outgoing) -> bool:
        if self.close_code is not None:
            return True  # closing: nothing more will reach it anyway
        # nothing queued or in flight: it may go out right here, if the socket takes it;
        # else it queues, and so does every later frame until the writer has caught up,
        # so no frame overtakes another
        if self._idle:
            if self._transport.try_write(frame):
                return True
            self._idle = False
        if self._gone:
            return True
        size = len(frame.text)
        if self._queued and self._queued + size > self._limits.max_queue_bytes:
            self._overflow()
            return False
        self._queue.append(frame)
        self._queued += size
        self._start_writer()
        return True

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_frames())

    def send_error(self, code: str, message: str, show_id: int | None = None) -> None:
        metrics.frames_rejected.labels(code).inc()
        error = Error(code=code, message=message, show_id=show_id)
        self.send(Outgoing(encoder.encode(error).decode()))

    def fail(self) -> None:
        self.abort(CLOSE_INTERNAL, "internal error")

    def _overflow(self) -> None:
        """The client fell behind: drop its backlog. A seat map collapses, so a fresh
        snapshot replaces everything it missed; a second time soon after, it is closed."""
        self._queue.clear()
        self._queued = 0
        now = time.monotonic()
        if now - self._last_overflow < self._limits.slow_window:
            metrics.slow_consumers.labels("closed").inc()
            log.info("closing slow consumer %s", self.websocket.client)
            self.abort(CLOSE_SLOW, "slow consumer")
            return
        self._last_overflow = now
        metrics.slow_consumers.labels("resynced").inc()
        for sub in self.subs.values():
            self._hub.request_snapshot(sub, "slow_consumer")

    def abort(self, code: int, reason: str, *, drop_queue: bool = True) -> None:
        """End the connection with `code`: stop the reader and the writer (which may be
        blocked on a socket the peer never drains), then the endpoint sends what is still
        queued (unless dropped) and the close frame, each within the close timeout."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        self._idle = False
        if drop_queue:
            self._queue.clear()
            self._queued = 0
        if self._writer is not None:
            self._writer.cancel()
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()  # run() takes this cancellation back (close_code is set)

    # ---- the tasks ----

    async def run(self) -> None:
        """Read frames in the endpoint's task until the peer leaves or abort() ends it."""
        reader = self._reader = asyncio.current_task()
        assert reader is not None
        try:
            await self._read_frames()
        except WebSocketDisconnect:
            pass  # the peer went away: nothing to close
        except asyncio.CancelledError:
            # abort()'s own cancellation is taken back; any other one goes on
            if self.close_code is None or reader.uncancel() > 0:
                raise
        except Exception:
            # not one frame's failure (those are answered in _read_frames): the connection's
            # own state is in doubt, so it ends, with a close frame
            log.exception("connection %s failed; closing with 1011", self.websocket.client)
            self.abort(CLOSE_INTERNAL, "internal error")
        finally:
            self._reader = None
            if self._writer is not None:
                self._writer.cancel()
            self._unwatch_all()
        if self.close_code is not None:
            await self.close(self.close_code, self.close_reason)

    def _unwatch_all(self) -> None:
        """Every subscription ends with the connection, whatever one unwatch does."""
        subs = list(self.subs.values())
        self.subs.clear()
        for sub in subs:
            try:
                self._hub.unwatch(sub)
            except Exception:
                log.exception("unwatching show %s failed", sub.show_id)

    async def close(self, code: int, reason: str) -> None:
        # a peer that never reads never lets the close frame out: do not wait for it; a
        # peer that left makes the transport raise
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._limits.close_timeout):
                while self._queue:  # e.g. the error frames before a 1008
                    await self._transport.write(self._queue.popleft())
                await self._transport.close(code, reason)

    async def _write_frames(self) -> None:
        """Drain the queue in order, one frame at a time, each written once the socket has
        room (so the queue's byte cap bounds what a slow client holds); then frames go out
        at once again."""
        write = self._transport.write
        queue = self._queue
        try:
            while queue:
                frame = queue.popleft()
                self._queued -= len(frame.text)
                await write(frame)
        except OSError:  # the server's ClientDisconnected: the reader sees the disconnect
            self._gone = True
            self._queue.clear()
            self._queued = 0
        except Exception as exc:  # e.g. the server refusing a send: end the connection
            log.warning("writer of %s failed: %r", self.websocket.client, exc)
            self._writer = None
            self.abort(1011, "internal error")
        else:
            if self.close_code is None:
                self._idle = True
        finally:
            self._writer = None

    async def _read_frames(self) -> None:
        receive = self.websocket.receive
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                # run() cancels the writer, if any; nothing to send back
                raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
            data: str | bytes | None = message.get("text")
            if data is None:
                data = message.get("bytes")
            if data is None:
                continue
            if not self._budget.take():
                now = time.monotonic()
                if now - self._first_strike > self._limits.strike_window:
                    # an occasional burst long ago is forgiven (kiosks stay up for days)
                    self._strikes, self._first_strike = 0, now
                self._strikes += 1
                if self._strikes >= self._limits.flood_strikes:
                    metrics.frames_rejected.labels("flood").inc()
                    self.abort(CLOSE_POLICY, "too many frames", drop_queue=False)
                    return
                if self._strikes == 1 or self._strikes % 10 == 0:
                    self.send_error("rate_limited", "too many frames; slow down")
                continue
            try:
                await self._handle(data)
            except StateUnknown:
                raise
            except Exception:
                # a bug or a dependency failing in a way nobody foresaw: the frame's steps
                # undo themselves, so the client is told and the connection carries on
                log.exception("frame from %s failed", self.websocket.client)
                self.send_error("internal", "the server failed to handle this frame")
            if self.close_code is not None:
                return  # aborted from this task (e.g. a replay overflowed): run() closes

    async def _handle(self, data: str | bytes) -> None:
        size = len(data)
        if size > MAX_CLIENT_FRAME or (
            isinstance(data, str)
            and size > MAX_CLIENT_FRAME // 4
            and len(data.encode()) > MAX_CLIENT_FRAME
        ):
            self.send_error("frame_too_large", f"frames are limited to {MAX_CLIENT_FRAME} bytes")
            return
        try:
            frame = client_decoder.decode(data)
        except RecursionError:  # a field nested ~1,000 deep, skipped while seeking "type"
            self.send_error("invalid_frame", "frame nested too deep")
            return
        except msgspec.ValidationError as exc:
            detail = str(exc)
            # a frame whose "type" is missing or not one we know
            code = (
                "unknown_type"
                if "$.type" in detail or "field `type`" in detail
                else ("invalid_frame")
            )
            self.send_error(code, detail)
            return
        except msgspec.DecodeError as exc:
            self.send_error("bad_json", f"not JSON: {exc}")
            return
        if isinstance(frame, Ping):
            self.send(PONG)
        elif isinstance(frame, Subscribe):
            await self._subscribe(frame)
        elif isinstance(frame, Unsubscribe) and not self._unwatch(frame.show_id):
            self.send_error("not_subscribed", "not subscribed to this show", frame.show_id)

    def _unwatch(self, show_id: int) -> bool:
        """End the subscription to a show; False if there was none. It stays in `subs`
        until the hub has let it go, so run()'s last clean-up can still find it."""
        sub = self.subs.get(show_id)
        if sub is None:
            return False
        try:
            self._hub.unwatch(sub)
        except Exception as exc:
            raise StateUnknown(f"unwatching show {show_id} failed") from exc
        del self.subs[show_id]
        return True

    async def _subscribe(self, frame: Subscribe) -> None:
        show_id = frame.show_id
        # subscribing again is a resync request: the old subscription ends here
        if not self._unwatch(show_id) and len(self.subs) >= MAX_SHOWS_PER_CONNECTION:
            self.send_error(
                "too_many_subscriptions",
                f"at most {MAX_SHOWS_PER_CONNECTION} shows per connection",
                show_id,
            )
            return
        try:
            await self._validate_show(show_id)
        except LookupError:
            self.send_error("unknown_show", f"show {show_id} does not exist", show_id)
            return
        except Exception as exc:
            log.warning("show %s lookup failed: %r", show_id, exc)
            self.send_error("unavailable", "cannot look up the show right now", show_id)
            return
        if self.close_code is not None:
            return  # aborted while the show was looked up
        # held from here on: whatever fails below, this frame's clean-up or run()'s finds it
        self.subs[show_id] = self._hub.attach(self, show_id, frame.encoding, frame.counted)
        try:
            await self._hub.start(self.subs[show_id], frame.offset)
        except ConnectionError as exc:
            log.warning("subscribe to show %s failed: %r", show_id, exc)
            self._unwatch(show_id)
            self.send_error("unavailable", "live updates are unavailable; retry", show_id)
        except Exception:
            self._unwatch(show_id)  # then the frame is answered `internal`
            raise


# ---- the handshake ----


class WebSocketApp:
    """`/ws` as a plain ASGI app (Starlette wraps a function endpoint's send in per-message
    layers); the handler gets the WebSocket for the handshake, and the raw send and receive
    to choose the connection's transport from."""

    def __init__(self, handler: Callable[[WebSocket, Send, Receive], Awaitable[None]]) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler(WebSocket(scope, receive, send), send, receive)


def origin_allowed(websocket: WebSocket, allowed: tuple[str, ...]) -> bool:
    """Browsers send Origin; other clients (kiosks, load tests) do not and are allowed.
    With no configured origins only the page's own origin may connect."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    if "*" in allowed:
        return True
    if allowed:
        return origin.rstrip("/") in allowed
    host = websocket.headers.get("host", "")
    return urlsplit(origin).netloc.lower() == host.lower()
