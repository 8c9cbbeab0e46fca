"""One contract, every broker (Litestar's channels backends, centrifuge's brokers): the same
tests run against the in-memory broker, one real Redis, and a real six-node Redis Cluster
(three masters, three replicas, started here). What the hub and the outbox rely on:
delivery to every subscribed instance with the offset the publisher got, offsets in order
per show, history and when it refuses, positions, presence across instances."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from app.cluster import redis_cluster
from app.realtime.broker import HISTORY_LEN, Broker, Position
from app.realtime.broker_cluster import RedisClusterBroker, connect_redis
from app.realtime.broker_memory import MemoryBroker, MemoryBus
from app.realtime.broker_redis import RedisBroker
from app.realtime.keys import RedisKeys, database_number
from tests.support import Services, require_tool, wait_until


@dataclass
class Instance:
    """One broker as an instance of the app sees it: what reached its callbacks."""

    broker: Broker
    received: list[tuple[int, Position, bytes]] = field(default_factory=list)
    reconnects: list[Collection[int] | None] = field(default_factory=list)

    def events(self, show_id: int) -> list[tuple[Position, bytes]]:
        return [(p, e) for s, p, e in self.received if s == show_id]


NewInstance = Callable[[], Awaitable[Instance]]


@pytest.fixture(scope="module")
def redis_cluster_url() -> Iterator[str]:
    require_tool(shutil.which("redis-server") is not None, "redis-server (.ci/redis-tools.sh)")
    folder = Path(tempfile.mkdtemp(prefix="mxrc-", dir="/tmp"))
    started = redis_cluster.start(folder)
    try:
        yield started.url
    finally:
        redis_cluster.stop(folder)
        for node in started.nodes:
            if node.proc is not None:
                node.proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["memory", "redis", "redis_cluster"])
async def new_instance(
    request: pytest.FixtureRequest, services: Services
) -> AsyncIterator[NewInstance]:
    """Makes started brokers that share one backend, as a deployment's instances do."""
    kind = request.param
    url = ""
    if kind == "redis":
        url = services.redis_url
    elif kind == "redis_cluster":
        url = request.getfixturevalue("redis_cluster_url")
    keys = RedisKeys(f"mxt-{secrets.token_hex(4)}", database_number(url) if url else 0)
    bus = MemoryBus()
    async with AsyncExitStack() as stack:

        async def make() -> Instance:
            instance_id = f"test-{secrets.token_hex(3)}"
            found: Instance

            def on_message(show_id: int, position: Position, event: bytes) -> None:
                found.received.append((show_id, position, event))

            def on_reconnect(show_ids: Collection[int] | None) -> None:
                found.reconnects.append(show_ids)

            broker: Broker
            if kind == "memory":
                broker = MemoryBroker(instance_id, on_message, on_reconnect, bus=bus)
            else:
                client = connect_redis(url)
                stack.push_async_callback(client.aclose)
                cls = RedisClusterBroker if kind == "redis_cluster" else RedisBroker
                broker = cls(client, url, instance_id, on_message, on_reconnect, keys=keys)
            found = Instance(broker)
            await broker.start()
            stack.push_async_callback(broker.stop)
            assert await broker.wait_connected(10)
            return found

        yield make


def new_show() -> int:
    # far from the ids servers hand out, new for every test; random, so spread over slots
    return 9 * 10**15 + secrets.randbelow(10**12)


async def test_an_event_reaches_every_subscribed_instance_with_the_publishers_offset(
    new_instance: NewInstance,
) -> None:
    a, b = await new_instance(), await new_instance()
    show = new_show()
    await a.broker.subscribe(show)
    await b.broker.subscribe(show)
    first = await a.broker.publish(show, b'{"n":1}', invalidate_availability=False)
    second = await b.broker.publish(show, b'{"n":2}', invalidate_availability=True)
    assert second == Position(first.epoch, first.n + 1)
    for instance in (a, b):
        await wait_until(lambda i=instance: len(i.events(show)) == 2)  # type: ignore[misc]
        assert instance.events(show) == [(first, b'{"n":1}'), (second, b'{"n":2}')]


async def test_publish_many_gives_each_event_its_own_offset_in_order_per_show(
    new_instance: NewInstance,
) -> None:
    a = await new_instance()
    shows = [new_show() for _ in range(6)]  # on every master of a cluster, most likely
    for show in shows:
        await a.broker.subscribe(show)
    events = [(show, b'{"i":%d}' % i) for i in range(4) for show in shows]
    await a.broker.publish_many([])  # the relay's empty batch
    await a.broker.publish_many(events)
    await wait_until(lambda: len(a.received) == len(events))
    for show in shows:
        got = a.events(show)
        assert [e for _, e in got] == [b'{"i":%d}' % i for i in range(4)]
        top = await a.broker.position(show)
        assert [p for p, _ in got] == [Position(top.epoch, n) for n in range(1, 5)]


async def test_position_starts_an_epoch_that_later_events_carry(new_instance: NewInstance) -> None:
    a = await new_instance()
    show = new_show()
    start = await a.broker.position(show)
    assert start.n == 0
    assert await a.broker.position(show) == start
    published = await a.broker.publish(show, b"{}", invalidate_availability=False)
    assert published == Position(start.epoch, 1)


async def test_history_replays_what_came_after_a_position(new_instance: NewInstance) -> None:
    a = await new_instance()
    show = new_show()
    await a.broker.publish_many([(show, b'{"i":%d}' % i) for i in range(5)])
    top = await a.broker.position(show)
    assert await a.broker.history(show, Position(top.epoch, 2)) == [
        (Position(top.epoch, n), b'{"i":%d}' % (n - 1)) for n in (3, 4, 5)
    ]
    assert await a.broker.history(show, top) == []


async def test_history_refuses_another_epoch_the_future_and_what_was_trimmed(
    new_instance: NewInstance,
) -> None:
    a = await new_instance()
    show = new_show()
    await a.broker.publish_many([(show, b"{}")] * 3)
    top = await a.broker.position(show)
    assert await a.broker.history(show, Position("other", 1)) is None
    assert await a.broker.history(show, Position(top.epoch, top.n + 1)) is None
    # XADD MAXLEN ~ trims whole stream nodes (100 entries): go well past the bound
    await a.broker.publish_many([(show, b"{}")] * (HISTORY_LEN + 300))
    assert await a.broker.history(show, Position(top.epoch, 1)) is None


async def test_an_instance_that_unsubscribed_gets_nothing_more(new_instance: NewInstance) -> None:
    a, b = await new_instance(), await new_instance()
    show, other = new_show(), new_show()
    for instance in (a, b):
        await instance.broker.subscribe(show)
    await b.broker.subscribe(other)
    await b.broker.unsubscribe(show)
    await a.broker.publish(show, b'{"n":1}', invalidate_availability=False)
    await a.broker.publish(other, b'{"n":2}', invalidate_availability=False)
    await wait_until(lambda: len(a.events(show)) == 1 and len(b.events(other)) == 1)
    assert b.events(show) == []  # b heard `other`, published after: `show` would be there
    assert a.events(other) == []  # never subscribed


async def test_presence_sums_every_instance_and_forgets_one_that_reports_zero(
    new_instance: NewInstance,
) -> None:
    a, b = await new_instance(), await new_instance()
    show, other = new_show(), new_show()
    assert await a.broker.presence([(show, 3), (other, 1)]) == {show: 3, other: 1}
    assert await b.broker.presence([(show, 2)]) == {show: 5}
    assert await a.broker.presence([(show, 0)]) == {show: 2}
    assert await b.broker.presence([]) == {}


async def test_the_cluster_broker_spreads_shows_over_the_masters(
    redis_cluster_url: str,
) -> None:
    """Sharded pub/sub is the point: the shows of the tests above live on several nodes."""
    client = connect_redis(redis_cluster_url)
    try:
        assert await client.ping()  # learns the slot map
        keys = RedisKeys("mxt-spread")
        nodes = {
            client.get_node_from_key(keys.channel(new_show())).name  # type: ignore[attr-defined]
            for _ in range(30)
        }
        assert len(nodes) == 3
    finally:
        await client.aclose()


async def test_cached_counts_of_shows_on_several_nodes_are_read_in_one_call(
    redis_cluster_url: str,
) -> None:
    """The show list reads every show's cached counts with one MGET; in a cluster the
    shows' keys live on several nodes."""
    client = connect_redis(redis_cluster_url)
    try:
        keys = RedisKeys("mxt-mget")
        shows = [new_show() for _ in range(12)]
        for show in shows[::2]:
            await client.set(keys.availability(show), b"%d" % show)
        found = await client.mget([keys.availability(show) for show in shows])
        assert found == [b"%d" % show if i % 2 == 0 else None for i, show in enumerate(shows)]
    finally:
        await client.aclose()


def test_a_plain_redis_url_gets_a_plain_client() -> None:
    assert isinstance(connect_redis("redis://127.0.0.1:1/0"), aioredis.Redis)
