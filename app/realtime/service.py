"""The realtime layer's one face to the core (app/main.py): wires the Redis broker,
the hub, the outbox publisher and the WebSocket endpoint, and owns their tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from datetime import UTC, datetime

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import Receive, Send
from starlette.websockets import WebSocket

from app.auth import verify_token
from app.config import Settings
from app.errors import LiveUpdatesUnavailable, ShowNotFound, Unauthorized
from app.events import Committed
from app.realtime import metrics
from app.realtime.broker import Broker
from app.realtime.broker_cluster import RedisClusterBroker, is_cluster_url
from app.realtime.broker_redis import RedisBroker
from app.realtime.frames import AnnouncementEvent, LastAnnouncement, ShowEvent, encoder
from app.realtime.hub import Hub, SeatStates
from app.realtime.keys import RedisKeys
from app.realtime.outbox import Outbox
from app.realtime.protocol import (
    CLOSE_INTERNAL,
    CLOSE_RESTART,
    CLOSE_UNAUTHORIZED,
    Connection,
    Limits,
    WebSocketApp,
    origin_allowed,
)
from app.realtime.transport import DirectTransport, choose_transport
from app.seatmap import read_seat_states
from app.shards import ShardRouter

log = logging.getLogger("modex.realtime")

PRESENCE_INTERVAL = 1.0
# a show's last announcement reaches late joiners for this long, unless another replaces it
ANNOUNCEMENT_TTL = 6 * 3600
announcement_decoder = msgspec.json.Decoder(LastAnnouncement)
SHUTDOWN_GRACE = 2.0


class Realtime:
    def __init__(
        self, settings: Settings, router: ShardRouter, redis: aioredis.Redis, keys: RedisKeys
    ) -> None:
        self._settings = settings
        self._router = router
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        # REDIS_URL decides: a Redis Cluster (redis+cluster://) or one Redis
        kind = RedisClusterBroker if is_cluster_url(settings.redis_url) else RedisBroker
        self.broker: Broker = kind(
            redis,
            settings.redis_url,
            self.instance_id,
            on_message=lambda show_id, position, payload: self.hub.on_message(
                show_id, position, payload
            ),
            on_reconnect=lambda show_ids: self.hub.on_reconnect(show_ids),
            keys=keys,
        )
        self._redis = redis
        self._keys = keys
        self.hub = Hub(self.broker, self._read_snapshot, self._read_announcement)
        self.outbox = Outbox(router, self.broker)
        self.limits = Limits()
        self._open_transport = choose_transport(settings.ws_transport)
        self._connections: set[Connection] = set()
        # sockets opened with a token, by user: per-customer frames (waiting room, queued
        # bookings) go to these
        self.customers: dict[str, set[Connection]] = {}
        self._background: list[asyncio.Task[None]] = []
        self._stopping = False
        self._all_closed = asyncio.Event()

    # ---- lifecycle ----

    async def start(self) -> None:
        await self.broker.start()
        if not await self.broker.wait_connected(5.0):
            log.error("Redis pub/sub not connected at start-up; live updates wait for it")
        self._background = [
            asyncio.create_task(self.outbox.publish_queued(), name="outbox-publish"),
            asyncio.create_task(self.outbox.delete_published(), name="outbox-delete"),
            asyncio.create_task(self.outbox.relay(), name="outbox-relay"),
            asyncio.create_task(self._heartbeat_presence(), name="presence"),
            asyncio.create_task(self.hub.run_checks(), name="show-checks"),
        ]

    async def stop(self) -> None:
        """Close every socket with 1012 (clients reconnect elsewhere), then stop tasks."""
        self._stopping = True
        for conn in list(self._connections):
            conn.abort(CLOSE_RESTART, "server restarting")
        if self._connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), SHUTDOWN_GRACE)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.outbox.flush()
        with contextlib.suppress(Exception):
            counts = [(show_id, 0) for show_id, _ in self.hub.local_counts()]
            await self.broker.presence(counts)
        await self.hub.stop()
        await self.broker.stop()

    def routes(self) -> list[BaseRoute]:
        return [WebSocketRoute("/ws", WebSocketApp(self._endpoint), name="ws")]

    def health(self) -> dict[str, bool]:
        return {"redis_listener": self.broker.alive}

    # ---- publishing (called by the core) ----

    def seats_committed(self, c: Committed) -> None:
        """Publish right after commit, then delete the outbox row; never blocks."""
        if self._settings.crash_before_publish:
            # fault injection: the commit is durable, its publish never happens
            os._exit(137)
        self.outbox.queue_committed(c.show_id, c.shard, c.outbox_id, c.changes_json, c.committed_at)

    async def publish_show(self, event: ShowEvent | AnnouncementEvent) -> None:
        """A show change or an announcement, to every watcher on every instance. Raises
        LiveUpdatesUnavailable (503, Retry-After) when Redis cannot take it."""
        show_id = event.show_id
        try:
            if isinstance(event, AnnouncementEvent):
                await self._keep_announcement(show_id, event.message)
            await self.broker.publish(show_id, encoder.encode(event), invalidate_availability=False)
        except (RedisError, OSError) as exc:
            log.warning("publishing to show %s failed: %r", show_id, exc)
            raise LiveUpdatesUnavailable(
                "live updates are unavailable right now; retry", retry_after=2
            ) from exc
        metrics.events_published.labels("show").inc()

    async def _keep_announcement(self, show_id: int, message: str) -> None:
        """Kept until the next one replaces it or it expires, for watchers who arrive later."""
        kept = LastAnnouncement(message=message, at=datetime.now(UTC).isoformat())
        await self._redis.set(
            self._keys.announcement(show_id), encoder.encode(kept), ex=ANNOUNCEMENT_TTL
        )

    async def _read_announcement(self, show_id: int) -> LastAnnouncement | None:
        try:
            raw = await self._redis.get(self._keys.announcement(show_id))
            return None if raw is None else announcement_decoder.decode(raw)
        except (RedisError, OSError, msgspec.DecodeError) as exc:
            log.warning("last announcement of show %s unavailable: %r", show_id, exc)
            return None

    async def position(self, show_id: int) -> str:
        """The offset to stamp on a snapshot; "" when Redis cannot say (a client that
        hands "" back on subscribe simply gets a snapshot): the seat map stays readable
        while Redis is away."""
        try:
            return str(await self.broker.position(show_id))
        except (RedisError, OSError) as exc:
            log.warning("position of show %s unavailable: %r", show_id, exc)
            return ""

    # ---- the WebSocket endpoint ----

    async def _endpoint(self, websocket: WebSocket, send: Send, receive: Receive) -> None:
        """/ws. Whatever fails, the client gets a close frame (1011), never a dropped
        socket (Connection.run answers its own failures; this covers the hand-shake)."""
        try:
            await self._serve(websocket, send, receive)
        except Exception:
            log.exception("WebSocket endpoint failed")
            with contextlib.suppress(Exception):  # e.g. the socket is closed already
                await websocket.close(CLOSE_INTERNAL, "internal error")

    async def _serve(self, websocket: WebSocket, send: Send, receive: Receive) -> None:
        if not origin_allowed(websocket, self._settings.allowed_origins):
            await websocket.close(1008)  # before accept: the handshake is refused (403)
            return
        token = websocket.query_params.get("token")
        await websocket.accept()
        try:
            who = verify_token(self._settings.jwt_secret, token) if token is not None else None
        except Unauthorized:
            await websocket.close(CLOSE_UNAUTHORIZED, "invalid token")
            return
        user = who.user_id if who is not None else None
        if self._stopping:
            await websocket.close(CLOSE_RESTART, "server restarting")
            return
        transport = self._open_transport(receive, send)
        direct = isinstance(transport, DirectTransport)
        conn = Connection(websocket, transport, self.hub, self._validate_show, self.limits)
        self._connections.add(conn)
        if user is not None:
            self.customers.setdefault(user, set()).add(conn)
        metrics.ws_connections.inc()
        if direct:
            metrics.ws_direct_connections.inc()
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)
            if user is not None:
                self.customers[user].discard(conn)
                if not self.customers[user]:
                    del self.customers[user]
            metrics.ws_connections.dec()
            if direct:
                metrics.ws_direct_connections.dec()
            if self._stopping and not self._connections:
                self._all_closed.set()

    async def _validate_show(self, show_id: int) -> None:
        try:
            await self._router.show(show_id)
        except ShowNotFound as exc:
            raise LookupError(str(exc)) from exc

    async def _read_snapshot(self, show_id: int) -> SeatStates:
        _, shard = await self._router.for_show(show_id)
        return await read_seat_states(shard, show_id)

    # ---- background ----

    async def _heartbeat_presence(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_INTERVAL)
            metrics.sync_direct_frames()
            try:
                totals = await self.broker.presence(self.hub.local_counts())
            except Exception as exc:
                log.warning("presence heartbeat failed: %r", exc)
                continue
            self.hub.presence(totals)
