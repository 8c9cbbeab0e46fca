"""The Redis Cluster broker: `REDIS_URL=redis+cluster://host:port[,host:port...]` (or
`rediss+cluster://` for TLS; every host is a seed, the client learns the rest).

A show's keys and its channel share the hash tag `{show:ID}` (keys.py), so they live on one
node: publish.lua runs there and fans out with SPUBLISH (sharded pub/sub: the message goes
to that node's subscribers only; a classic PUBLISH is broadcast to every node of the
cluster and does not scale). The reader SSUBSCRIBEs through redis-py's cluster pubsub,
which keeps one connection per node that owns a watched channel.

When a master dies, its replica takes its slots (2-3 s with cluster-node-timeout 1000);
redis-py notices the failed connection, refreshes the slot map and subscribes the moved
channels on the new master by itself (measured, HA-NOTES): the reader's pubsub lives on the
shared client, whose slot map every publish to the dead master's shows refreshes. Its
confirmation reaches the reader as an `ssubscribe` we did not ask for: RedisBroker._handle
then tells the hub that this show may have missed events (on_reconnect([show])), and only
that show's watchers compare positions. Events published in the gap failed to publish
(the outbox keeps their rows and the relay publishes them) or are in the new master's
history. The script cache
is not replicated: a new master answers NOSCRIPT and the script is loaded again
(redis-py's Script, and publish_many by hand).

The control channel (liveness pings) is hashed by its whole name to some node; it proves
the reader loop runs, not that every node's connection is up (redis-py polls them in turn
and cools off a failed one).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.typing import KeysT, KeyT

from app.realtime.broker import MessageHandler, ReconnectHandler
from app.realtime.broker_redis import RedisBroker
from app.realtime.keys import RedisKeys

log = logging.getLogger("modex.realtime.broker")

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# The reader waits this long per pass over the nodes: redis-py's cluster pubsub polls each
# node's connection in turn, so a message on one node may wait up to about this long
# while the reader waits on another.
POLL_SECONDS = 0.05
# A batch's part for one node gives up after this long. While a dead master's replica takes
# over (2-3 s), redis-py retries its commands until the slot map says where they go now;
# the outbox must not wait that long with every other show's events behind it: those rows
# stay and the relay publishes them once the new master answers.
PUBLISH_TIMEOUT = 0.5


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


class ModexRedisCluster(RedisCluster):
    """RedisCluster for the core's few direct commands: MGET of cached counts of shows on
    several nodes is split per slot (a cache read needs no atomicity; a plain MGET across
    slots is refused)."""

    async def mget(self, keys: KeysT, *args: KeyT) -> Any:  # type: ignore[override]
        return await self.mget_nonatomic(keys, *args)


def cluster_client(url: str, **kwargs: Any) -> ModexRedisCluster:
    """A cluster client from `redis+cluster://[user:password@]h1:p1[,h2:p2...][/0][?...]`."""
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"not a Redis Cluster URL: {parts.scheme}://...")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    seeds = [_host_port(item) for item in hosts.split(",") if item.strip()]
    if not seeds:
        raise ValueError("a Redis Cluster URL names at least one host:port")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0")
    host, port = seeds[0]
    first = f"{scheme}://{userinfo}{at}{host}:{port}/0" + (f"?{parts.query}" if parts.query else "")
    client = ModexRedisCluster.from_url(
        first, startup_nodes=[ClusterNode(h, p) for h, p in seeds[1:]], **kwargs
    )
    return cast(ModexRedisCluster, client)


def _host_port(item: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"Redis Cluster node {item!r}: write host:port")
    return host.strip("[]"), int(port)


def connect_redis(url: str, **kwargs: Any) -> aioredis.Redis:
    """The core's Redis client for REDIS_URL: one server, or a Redis Cluster. Typed as
    Redis: the commands the core sends (GET/MGET/SET in pipelines, PING, scripts on one
    show's keys) behave alike on both."""
    if is_cluster_url(url):
        return cast(aioredis.Redis, cluster_client(url, **kwargs))
    return aioredis.Redis.from_url(url, **kwargs)


class RedisClusterBroker(RedisBroker):
    """RedisBroker with sharded pub/sub (see the module docstring)."""

    PUBLISH_COMMAND = "SPUBLISH"
    SUBSCRIBED = "ssubscribe"
    MESSAGE = "smessage"

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
        super().__init__(redis, redis_url, instance_id, on_message, on_reconnect, keys=keys)
        self._suspects: set[str] = set()  # nodes whose publishes are not waited for
        self._probes: dict[str, asyncio.Future[list[Any]]] = {}

    def _open_pubsub(self) -> tuple[Any, Any]:
        # On the shared client, not one of its own: redis-py moves sharded subscriptions
        # when that client's slot map changes, and the shared client learns of a failover
        # first (every publish of the dead master's shows asks). A client of the reader's
        # own refreshes its map only every 5 s: measured, the channels moved 5.3 s after
        # the kill instead of right after the replica took over.
        cluster = cast(RedisCluster, self._redis)
        return None, cluster.pubsub(ignore_subscribe_messages=False)

    async def _subscribe_channels(self, *channels: str) -> None:
        await self._pubsub.ssubscribe(*channels)

    async def _unsubscribe_channel(self, channel: str) -> None:
        await self._pubsub.sunsubscribe(channel)

    async def _next_message(self) -> dict[str, Any] | None:
        message: dict[str, Any] | None = await self._pubsub.get_sharded_message(
            timeout=POLL_SECONDS
        )
        return message

    async def publish_many(self, events: list[tuple[int, bytes]]) -> None:
        """As RedisBroker's, one pipeline per node, side by side, so that a node in the
        middle of a failover holds up only its own shows. A node whose part failed or took
        longer than PUBLISH_TIMEOUT is suspect: later batches do not wait for it; one of its
        parts at a time is sent in the background (a probe), and its success clears the
        suspicion. Raises when any part was not published: the outbox keeps the batch's rows
        and the relay publishes them (a part that did get through is published twice:
        versions decide)."""
        by_node: dict[str, list[tuple[list[str], list[Any]]]] = {}
        for call in self._publish_calls(events):
            by_node.setdefault(self._node_of(call[0][0]), []).append(call)
        awaited: dict[asyncio.Future[list[Any]], str] = {}
        skipped = 0
        for node, calls in by_node.items():
            if node not in self._suspects:
                awaited[asyncio.ensure_future(self._publish_part(calls))] = node
                continue
            skipped += 1
            if node not in self._probes:
                probe = asyncio.ensure_future(self._publish_part(calls))
                self._probes[node] = probe
                probe.add_done_callback(functools.partial(self._probed, node))
        failed = skipped
        if awaited:
            _, pending = await asyncio.wait(awaited, timeout=PUBLISH_TIMEOUT)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for task in awaited:
                if task in pending or task.exception() is not None:
                    failed += 1
                    self._suspect(awaited[task], task)
        if failed:
            raise ConnectionError(f"{failed} Redis Cluster node(s) did not take their events")

    async def _publish_part(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        return await self._run_script_batch(self._publish, calls)

    def _suspect(self, node: str, task: asyncio.Future[list[Any]]) -> None:
        if node not in self._suspects:
            reason = "no answer" if task.cancelled() else repr(task.exception())
            log.warning("Redis Cluster node %s is suspect: %s", node or "?", reason)
        self._suspects.add(node)

    def _probed(self, node: str, task: asyncio.Future[list[Any]]) -> None:
        del self._probes[node]
        if not task.cancelled() and task.exception() is None:
            self._suspects.discard(node)
            log.info("Redis Cluster node %s takes events again", node or "?")

    def _node_of(self, key: str) -> str:
        """The name of the node serving `key`, as the client knows it ("" before it knows
        the slot map: one part, redis-py routes it)."""
        cluster = cast(RedisCluster, self._redis)
        try:
            node = cluster.get_node_from_key(key)
        except Exception:
            return ""
        return node.name if node is not None else ""

    async def _ping_control(self) -> None:
        await self._redis.spublish(self._control, b"ping")
