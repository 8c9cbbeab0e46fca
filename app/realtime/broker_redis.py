"""The Redis broker (one server): offsets, history and the one pub/sub connection of this
process; `broker_cluster` adapts it to a Redis Cluster.

Everything Redis-specific of the realtime layer lives here and in `broker_cluster`
(centrifuge's `broker_redis.go`); the broker knows nothing about sockets. Publishing goes
through `lua/publish.lua`, which assigns the show's next offset, appends to a bounded
stream and PUBLISHes atomically.
One supervised reader task owns the pub/sub connection; when it fails it logs at ERROR,
reconnects with backoff, resubscribes and tells its listener that every show may have
missed events (`on_reconnect(None)`), so the hub can compare positions and resync.

Keys and channels are named by the deployment's `RedisKeys` (keys.py). The reader drops,
and counts, an event that is not its namespace's: on a channel of another namespace, or
with an epoch another namespace started (pub/sub ignores the database number).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Iterable
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from app.realtime import metrics
from app.realtime.broker import (
    HISTORY_LEN,
    PRESENCE_STALE_MS,
    STREAM_TTL,
    MessageHandler,
    Position,
    ReconnectHandler,
)
from app.realtime.keys import RedisKeys

log = logging.getLogger("modex.realtime.broker")

LIVENESS_INTERVAL = 2.0  # the reader proves it is alive by receiving its own pings
LIVENESS_TIMEOUT = 6.0
BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
FOREIGN_LOG_EVERY = 60.0  # seconds between warnings about another namespace's events


def _load_script(name: str) -> str:
    return resources.files("app.realtime").joinpath("lua", name).read_text()


class RedisBroker:
    """Offsets, history and presence by Lua scripts; one supervised pub/sub reader. The
    methods marked "pub/sub flavour" are what a Redis Cluster does differently."""

    PUBLISH_COMMAND = "PUBLISH"  # what publish.lua fans out with
    SUBSCRIBED = "subscribe"  # the pub/sub message types this flavour reads
    MESSAGE = "message"

    def __init__(
        self,
        redis: aioredis.Redis,
        redis_url: str,
        instance_id: str,
        on_message: MessageHandler,
        on_reconnect: ReconnectHandler,
        *,
        keys: RedisKeys,
    ) -> None:
        self.keys = keys
        self._redis = redis
        self._redis_url = redis_url
        self.instance_id = instance_id
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._publish = redis.register_script(_load_script("publish.lua"))
        self._position = redis.register_script(_load_script("position.lua"))
        self._presence = redis.register_script(_load_script("presence.lua"))
        self._control = keys.instance_channel(instance_id)
        self.pubsub_client_name = f"modex-pubsub-{instance_id}".replace(" ", "_")
        self._channels: set[str] = set()
        # one future per SUBSCRIBE sent, resolved by its acknowledgement (acks come in order)
        self._acks: dict[str, deque[asyncio.Future[None]]] = {}
        self._pubsub: Any = None
        self._client: aioredis.Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False
        self._connected = asyncio.Event()
        self._last_heard = 0.0
        self._liveness: asyncio.Task[None] | None = None
        self._foreign_logged = -FOREIGN_LOG_EVERY

    # ---- publishing and history (the shared client, any connection of its pool) ----

    def _publish_call(
        self, show_id: int, events: list[bytes], invalidate_availability: bool
    ) -> tuple[list[str], list[Any]]:
        """publish.lua's keys and arguments for events of one show."""
        names = self.keys
        keys = [names.meta(show_id), names.stream(show_id), names.availability(show_id)]
        args = [
            names.channel(show_id),
            names.new_epoch(),
            HISTORY_LEN,
            "1" if invalidate_availability else "0",
            STREAM_TTL,
            names.epoch_tag,
            self.PUBLISH_COMMAND,
            *events,
        ]
        return keys, args

    async def publish(
        self, show_id: int, event: bytes, *, invalidate_availability: bool
    ) -> Position:
        keys, args = self._publish_call(show_id, [event], invalidate_availability)
        n, epoch = await self._publish(keys=keys, args=args)
        return Position(_text(epoch), int(n))

    async def publish_many(self, events: list[tuple[int, bytes]]) -> None:
        """Seat events of several commits in one round trip: one call of the script per
        show with all of that show's events, in the order given; each still gets its own
        offset. EVALSHA by hand: with the Script object in a pipeline, redis-py asks
        SCRIPT EXISTS before every batch, a second round trip on the path of every hold."""
        await self._run_script_batch(self._publish, self._publish_calls(events))

    def _publish_calls(self, events: list[tuple[int, bytes]]) -> list[tuple[list[str], list[Any]]]:
        """publish.lua's calls for events of several shows: one per show, in order."""
        by_show: dict[int, list[bytes]] = {}
        for show_id, event in events:
            by_show.setdefault(show_id, []).append(event)
        return [self._publish_call(show_id, evs, True) for show_id, evs in by_show.items()]

    async def _run_script_batch(
        self, script: AsyncScript, calls: list[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """EVALSHA of one script per (keys, args), in one pipeline. A Redis that does not
        know the script (new, flushed, or a Redis Cluster master promoted by a failover:
        the script cache is not replicated) answers NOSCRIPT: load it, send again."""
        for attempt in (1, 2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                try:
                    results: list[Any] = await pipe.execute()
                    return results
                except NoScriptError:
                    if attempt == 2:
                        raise
                    await self._redis.script_load(script.script)
        raise AssertionError("unreachable")

    async def position(self, show_id: int) -> Position:
        n, epoch = await self._position(
            keys=[self.keys.meta(show_id), self.keys.stream(show_id)],
            args=[self.keys.new_epoch(), STREAM_TTL, self.keys.epoch_tag],
        )
        return Position(_text(epoch), int(n))

    async def history(self, show_id: int, since: Position) -> list[tuple[Position, bytes]] | None:
        """Events after `since`, or None when they cannot all be recovered (other epoch,
        trimmed history, offset from the future): the caller sends a snapshot instead."""
        top = await self.position(show_id)
        if top.epoch != since.epoch or since.n > top.n:
            return None
        if since.n == top.n:
            return []
        found = await self._redis.xrange(
            self.keys.stream(show_id), min=f"{since.n + 1}-0", max=f"{top.n}-0"
        )
        entries: list[Any] = list(found or [])
        events: list[tuple[Position, bytes]] = []
        expected = since.n + 1
        for entry_id, fields in entries:
            n = int(_text(entry_id).partition("-")[0])
            if n != expected:
                return None  # trimmed away, or lost with a restart
            data = fields.get(b"d", fields.get("d"))
            events.append(
                (Position(top.epoch, n), data if isinstance(data, bytes) else str(data).encode())
            )
            expected += 1
        if expected != top.n + 1:
            return None
        return events

    async def presence(self, counts: Iterable[tuple[int, int]]) -> dict[int, int]:
        """Heartbeat this instance's watcher count per show; returns cluster-wide counts."""
        now_ms = int(time.time() * 1000)
        shows = list(counts)
        if not shows:
            return {}
        calls: list[tuple[list[str], list[Any]]] = [
            ([self.keys.presence(show_id)], [self.instance_id, count, now_ms, PRESENCE_STALE_MS])
            for show_id, count in shows
        ]
        totals = await self._run_script_batch(self._presence, calls)
        return {show_id: int(total) for (show_id, _), total in zip(shows, totals, strict=True)}

    # ---- the one pub/sub connection ----

    @property
    def alive(self) -> bool:
        """The reader is connected and heard from Redis recently (liveness for /ready)."""
        return self._connected.is_set() and time.monotonic() - self._last_heard < LIVENESS_TIMEOUT

    async def start(self) -> None:
        self._stopping = False
        self._reader = asyncio.create_task(self._supervise(), name="realtime-pubsub-reader")
        self._liveness = asyncio.create_task(self._prove_liveness(), name="realtime-liveness")

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._liveness, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._close_pubsub()
        metrics.redis_listener_up.set(0)

    async def wait_connected(self, within: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), within)
        except TimeoutError:
            return False
        return True

    async def subscribe(self, show_id: int, within: float = 5.0) -> None:
        """Subscribe the show's channel and wait until Redis acknowledged it: from then on
        every event published is delivered to `on_message` (subscribe before snapshot)."""
        channel = self.keys.channel(show_id)
        self._channels.add(channel)
        if not await self.wait_connected(within):
            raise ConnectionError("Redis pub/sub is not connected")
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks.setdefault(channel, deque()).append(ack)
        try:
            await self._subscribe_channels(channel)
            await asyncio.wait_for(asyncio.shield(ack), within)
        except (RedisError, OSError, TimeoutError) as exc:
            raise ConnectionError(f"subscribe {channel} failed: {exc}") from exc

    async def unsubscribe(self, show_id: int) -> None:
        channel = self.keys.channel(show_id)
        self._channels.discard(channel)
        if self._pubsub is not None and self._connected.is_set():
            with contextlib.suppress(RedisError, OSError):
                await self._unsubscribe_channel(channel)

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self._connect()
                failures = 0
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._mark_down()
                if self._stopping:
                    return
                delay = BACKOFF[min(failures, len(BACKOFF) - 1)] * random.uniform(0.8, 1.2)
                failures += 1
                log.error("redis pub/sub reader failed, reconnecting in %.2fs: %r", delay, exc)
                await self._close_pubsub()
                await asyncio.sleep(delay)

    # ---- the pub/sub flavour: classic SUBSCRIBE on one connection ----

    def _open_pubsub(self) -> tuple[Any, Any]:
        """A client of the reader's own and its pubsub."""
        # retries off: a silent reconnect inside redis-py would hide a gap from us
        client = aioredis.Redis.from_url(
            self._redis_url,
            retry=Retry(NoBackoff(), 0),
            socket_keepalive=True,
            socket_connect_timeout=3,
            client_name=self.pubsub_client_name,
        )
        return client, client.pubsub(ignore_subscribe_messages=False)

    async def _subscribe_channels(self, *channels: str) -> None:
        await self._pubsub.subscribe(*channels)

    async def _unsubscribe_channel(self, channel: str) -> None:
        await self._pubsub.unsubscribe(channel)

    async def _next_message(self) -> dict[str, Any] | None:
        # timeout=None blocks on the socket; a timeout of 0 would spin
        message: dict[str, Any] | None = await self._pubsub.get_message(timeout=None)
        return message

    async def _ping_control(self) -> None:
        await self._redis.publish(self._control, b"ping")

    # ---- the reader ----

    async def _connect(self) -> None:
        self._client, self._pubsub = self._open_pubsub()
        # the control channel keeps the connection subscribed even with no shows watched
        unacknowledged = {self._control, *self._channels}
        await self._subscribe_channels(*unacknowledged)
        # the hub compares positions next: only once every channel is subscribed does a
        # position read mean "everything after this will be delivered"
        async with asyncio.timeout(10):
            while unacknowledged:
                message = await self._next_message()
                if message is not None:
                    self._handle(message)
                    if message["type"] == self.SUBSCRIBED:
                        unacknowledged.discard(_text(message["channel"]))
        self._last_heard = time.monotonic()
        self._connected.set()
        metrics.redis_listener_up.set(1)
        log.info("redis pub/sub connected, %d show channels", len(self._channels))
        # whatever was published while we were away was missed: let the hub compare
        self._on_reconnect(None)

    def _mark_down(self) -> None:
        self._connected.clear()
        metrics.redis_listener_up.set(0)
        for acks in self._acks.values():
            for ack in acks:
                if not ack.done():
                    ack.set_exception(ConnectionError("Redis pub/sub disconnected"))
        self._acks.clear()

    async def _close_pubsub(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _read(self) -> None:
        while True:
            message = await self._next_message()
            if message is not None:
                self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        self._last_heard = time.monotonic()
        kind = message["type"]
        channel = _text(message["channel"])
        if kind == self.MESSAGE:
            if channel != self._control:
                self._dispatch(channel, message["data"])
        elif kind == self.SUBSCRIBED:
            acks = self._acks.get(channel)
            if acks:
                ack = acks.popleft()
                if not ack.done():
                    ack.set_result(None)
                if not acks:
                    del self._acks[channel]
            elif self._connected.is_set():
                # subscribed again without our asking: the client moved the channel (a
                # Redis Cluster failover); what was published in between may be lost
                show_id = self.keys.show_of_channel(channel)
                if show_id is not None and channel in self._channels:
                    log.warning("show %s: channel subscribed again, comparing positions", show_id)
                    self._on_reconnect([show_id])

    def _dispatch(self, channel: str, data: bytes | str) -> None:
        show_id = self.keys.show_of_channel(channel)
        if show_id is None:
            self._drop_foreign("namespace", channel, "")
            return
        raw = data if isinstance(data, bytes) else data.encode()
        offset, sep, event = raw.partition(b" ")
        position = Position.parse(offset.decode(errors="replace")) if sep else None
        if position is None:
            log.warning("malformed message on %s", channel)
            return
        if not self.keys.owns_epoch(position.epoch):
            # not a new epoch of ours: another namespace's event (same channel name, other
            # database number). Applying it would look like a gap and resync every watcher.
            self._drop_foreign("epoch", channel, position.epoch)
            return
        try:
            self._on_message(show_id, position, event)
        except Exception:
            # one bad event must not kill the reader (Litestar channels' publish worker trap)
            log.exception("handling an event of show %s failed", show_id)

    def _drop_foreign(self, reason: str, channel: str, epoch: str) -> None:
        metrics.foreign_events.labels(reason).inc()
        now = time.monotonic()
        if now - self._foreign_logged >= FOREIGN_LOG_EVERY:
            self._foreign_logged = now
            log.warning(
                "dropped an event of another namespace on %s (epoch %r, ours %s*): does "
                "another deployment use MODEX_REDIS_PREFIX=%s?",
                channel,
                epoch,
                self.keys.epoch_tag,
                self.keys.prefix,
            )

    async def _prove_liveness(self) -> None:
        """Publish to our own control channel; the reader hearing it proves the subscription
        is alive end to end (a half-open TCP connection would otherwise look healthy)."""
        while True:
            await asyncio.sleep(LIVENESS_INTERVAL)
            if not self._connected.is_set():
                continue
            try:
                await self._ping_control()
            except (RedisError, OSError) as exc:
                log.warning("liveness publish failed: %r", exc)
            if time.monotonic() - self._last_heard > LIVENESS_TIMEOUT and self._reader:
                log.error(
                    "redis pub/sub reader heard nothing for %.0fs, reconnecting", LIVENESS_TIMEOUT
                )
                # closing the connection makes the blocked read fail; the supervisor reconnects
                await self._close_pubsub()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
