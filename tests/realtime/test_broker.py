"""The Redis broker and its Lua scripts against a real Redis: every branch of each script
(ARGV arrive as strings in Lua), history and its gaps, epochs, presence, the reader, and
what it drops from another namespace."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from app.realtime.broker import PRESENCE_STALE_MS, Position
from app.realtime.broker_redis import RedisBroker
from app.realtime.keys import RedisKeys, database_number
from tests.support import Services, wait_until, with_database

Received = list[tuple[int, Position, bytes]]


@pytest.fixture
def show_id() -> int:
    # far from the ids the servers hand out, and new for every test
    return 9 * 10**15 + secrets.randbelow(10**12)


@asynccontextmanager
async def running_broker(
    redis_url: str, keys: RedisKeys
) -> AsyncIterator[tuple[RedisBroker, Received, list[int]]]:
    received: Received = []
    reconnects: list[int] = []
    client = aioredis.Redis.from_url(redis_url)
    found = RedisBroker(
        client,
        redis_url,
        f"test-{secrets.token_hex(3)}",
        on_message=lambda show, position, event: received.append((show, position, event)),
        on_reconnect=lambda shows: reconnects.append(1),
        keys=keys,
    )
    await found.start()
    try:
        assert await found.wait_connected(5)
        yield found, received, reconnects
    finally:
        await found.stop()
        await client.aclose()


@pytest.fixture
async def broker(services: Services) -> AsyncIterator[tuple[RedisBroker, Received, list[int]]]:
    keys = RedisKeys(f"mxt-{secrets.token_hex(4)}", database_number(services.redis_url))
    async with running_broker(services.redis_url, keys) as found:
        yield found


def foreign_events(reason: str) -> float:
    return REGISTRY.get_sample_value("realtime_foreign_events_total", {"reason": reason}) or 0.0


def test_offsets_are_epoch_and_number() -> None:
    assert str(Position("ab12", 7)) == "ab12:7"
    assert Position.parse("ab12:7") == Position("ab12", 7)
    for bad in ("", "7", ":7", "ab12:", "ab12:x", "ab:-1", "e:" + "9" * 30, "e:\u00b2", "e:\u0663"):
        assert Position.parse(bad) is None, bad


async def test_publish_assigns_consecutive_offsets_in_one_epoch(
    broker: tuple[RedisBroker, Received, list[int]], show_id: int
) -> None:
    b, received, _ = broker
    start = await b.position(show_id)
    assert start.n == 0
    await b.subscribe(show_id)
    positions = [
        await b.publish(
            show_id,
            b'{"type":"announcement","show_id":1,"message":"%d"}' % i,
            invalidate_availability=False,
        )
        for i in range(5)
    ]
    assert [p.n for p in positions] == [1, 2, 3, 4, 5]
    assert {p.epoch for p in positions} == {start.epoch}
    assert await b.position(show_id) == positions[-1]
    await wait_until(lambda: len(received) == 5)
    assert [(s, p) for s, p, _ in received] == [(show_id, p) for p in positions]
    assert received[2][2] == b'{"type":"announcement","show_id":1,"message":"2"}'


async def test_publish_many_numbers_each_shows_events_in_the_order_given(
    broker: tuple[RedisBroker, Received, list[int]], show_id: int
) -> None:
    """One script call per show per batch: events of two shows interleaved keep their
    order, and each show's offsets run on from where they were."""
    b, received, _ = broker
    other = show_id + 1
    await b.subscribe(show_id)
    await b.subscribe(other)
    await b.publish(show_id, b'{"n":0}', invalidate_availability=False)
    await b.publish_many(
        [(show_id, b'{"n":1}'), (other, b'{"m":1}'), (show_id, b'{"n":2}'), (show_id, b'{"n":3}')]
    )
    await b.publish_many([(other, b'{"m":2}')])
    await wait_until(lambda: len(received) == 6)
    mine = [(p.n, e) for s, p, e in received if s == show_id]
    theirs = [(p.n, e) for s, p, e in received if s == other]
    assert mine == [(1, b'{"n":0}'), (2, b'{"n":1}'), (3, b'{"n":2}'), (4, b'{"n":3}')]
    assert theirs == [(1, b'{"m":1}'), (2, b'{"m":2}')]
    top = await b.position(show_id)
    assert top.n == 4
    history = await b.history(show_id, Position(top.epoch, 1))
    assert history is not None
    assert [event for _, event in history] == [b'{"n":1}', b'{"n":2}', b'{"n":3}']


async def test_availability_cache_is_deleted_only_when_asked(
    broker: tuple[RedisBroker, Received, list[int]], redis: aioredis.Redis, show_id: int
) -> None:
    b, _, _ = broker
    key = b.keys.availability(show_id)
    await redis.set(key, "{}")
    await b.publish(show_id, b"{}", invalidate_availability=False)  # the "0" branch
    assert await redis.exists(key) == 1
    await b.publish(show_id, b"{}", invalidate_availability=True)  # the "1" branch
    assert await redis.exists(key) == 0


async def test_history_replays_after_an_offset_and_refuses_what_it_cannot(
    broker: tuple[RedisBroker, Received, list[int]], redis: aioredis.Redis, show_id: int
) -> None:
    b, _, _ = broker
    positions = [
        await b.publish(show_id, b'{"n":%d}' % i, invalidate_availability=False)
        for i in range(1, 11)
    ]
    top = positions[-1]
    events = await b.history(show_id, positions[6])
    assert events == [(positions[i], b'{"n":%d}' % (i + 1)) for i in range(7, 10)]
    assert await b.history(show_id, top) == []
    assert await b.history(show_id, Position(top.epoch, 0)) is not None
    assert await b.history(show_id, Position(top.epoch, top.n + 1)) is None  # from the future
    assert await b.history(show_id, Position("other", 3)) is None  # another epoch
    await redis.xtrim(b.keys.stream(show_id), maxlen=2, approximate=False)
    assert await b.history(show_id, positions[6]) is None  # trimmed away
    assert await b.history(show_id, positions[7]) is not None


async def test_a_show_whose_data_redis_lost_starts_a_new_epoch(
    broker: tuple[RedisBroker, Received, list[int]], redis: aioredis.Redis, show_id: int
) -> None:
    b, _, _ = broker
    first = await b.publish(show_id, b"{}", invalidate_availability=False)
    await b.publish(show_id, b"{}", invalidate_availability=False)
    await redis.delete(b.keys.meta(show_id))  # as if Redis restarted empty
    again = await b.publish(show_id, b"{}", invalidate_availability=False)
    assert again.epoch != first.epoch and again.n == 1
    # the old epoch's history went with it; the new one starts clean
    assert await redis.xlen(b.keys.stream(show_id)) == 1
    assert await b.history(show_id, first) is None
    await redis.delete(b.keys.meta(show_id))
    fresh = await b.position(show_id)  # position creates the epoch snapshots are stamped with
    assert fresh.n == 0 and fresh.epoch != again.epoch
    assert await b.position(show_id) == fresh
    assert await redis.exists(b.keys.stream(show_id)) == 0


async def test_presence_sums_instances_and_forgets_silent_ones(
    broker: tuple[RedisBroker, Received, list[int]], redis: aioredis.Redis, show_id: int
) -> None:
    b, _, _ = broker
    key = b.keys.presence(show_id)
    await redis.hset(key, "other-live", "3:99999999999999")  # far future: fresh
    await redis.hset(key, "other-dead", f"5:{1000}")  # stopped heartbeating long ago
    totals = await b.presence([(show_id, 2)])
    assert totals == {show_id: 5}
    assert not await redis.hexists(key, "other-dead")
    assert await b.presence([(show_id, 0)]) == {show_id: 3}  # "0" removes our field
    assert not await redis.hexists(key, b.instance_id)
    assert 0 < await redis.pttl(key) <= 2 * PRESENCE_STALE_MS
    assert await b.presence([]) == {}


async def test_subscribe_is_acknowledged_and_unsubscribe_stops_delivery(
    broker: tuple[RedisBroker, Received, list[int]], show_id: int
) -> None:
    b, received, _ = broker
    await b.subscribe(show_id)
    # acknowledged means subscribed: an event published right now is delivered
    await b.publish(show_id, b"{}", invalidate_availability=False)
    await wait_until(lambda: received)
    assert len(received) == 1
    await b.unsubscribe(show_id)
    # Redis answers one connection's commands in order and delivers one connection's
    # publishes in order: once a later subscription is acknowledged the unsubscribe is done,
    # and once an event published after show_id's arrives, show_id's would have arrived
    marker = show_id + 1
    await b.subscribe(marker)
    await b.publish(show_id, b"{}", invalidate_availability=False)
    await b.publish(marker, b"{}", invalidate_availability=False)
    await wait_until(lambda: any(show == marker for show, _, _ in received))
    assert [show for show, _, _ in received] == [show_id, marker]


async def test_the_reader_reconnects_resubscribes_and_reports_it(
    broker: tuple[RedisBroker, Received, list[int]], redis: aioredis.Redis, show_id: int
) -> None:
    b, received, reconnects = broker
    await b.subscribe(show_id)
    assert b.alive and reconnects == [1]
    # kill the pub/sub connection from the server side
    killed = 0
    for client in await redis.client_list(_type="pubsub"):
        if client.get("name") == b.pubsub_client_name:
            await redis.client_kill_filter(_id=client["id"])
            killed += 1
    assert killed == 1
    await wait_until(lambda: len(reconnects) == 2 and b.alive)
    assert len(reconnects) == 2 and b.alive
    await b.publish(show_id, b"{}", invalidate_availability=False)
    await wait_until(lambda: received)
    assert len(received) == 1


async def test_an_epoch_left_by_another_namespace_is_started_anew(
    broker: tuple[RedisBroker, Received, list[int]], redis: aioredis.Redis, show_id: int
) -> None:
    """A meta hash whose epoch lacks this namespace's tag (a release before namespaces
    wrote it under the same prefix): its events would all be dropped as foreign, so both
    scripts start an epoch of ours, from 0, without the old history."""
    b, _, _ = broker
    meta, stream = b.keys.meta(show_id), b.keys.stream(show_id)
    await redis.hset(meta, mapping={"e": "0123456789ab", "n": 7})
    await redis.xadd(stream, {"d": "{}"}, id="7-0")
    fresh = await b.position(show_id)  # position.lua's branch
    assert b.keys.owns_epoch(fresh.epoch) and fresh.n == 0
    assert await redis.exists(stream) == 0

    await redis.hset(meta, mapping={"e": "0123456789ab", "n": 7})
    await redis.xadd(stream, {"d": "{}"}, id="7-0")
    published = await b.publish(show_id, b"{}", invalidate_availability=False)  # publish.lua's
    assert b.keys.owns_epoch(published.epoch) and published.n == 1
    assert await redis.xlen(stream) == 1
    assert await b.position(show_id) == published


async def test_an_event_from_another_namespace_on_the_same_channel_is_dropped_and_counted(
    services: Services, show_id: int
) -> None:
    """One prefix on two database numbers: two key spaces whose channel names are the same
    (pub/sub ignores the database). Each reader drops the other's events, by their epoch,
    instead of taking them for a new epoch of its own (a resync of every watcher)."""
    prefix = f"mxt-{secrets.token_hex(4)}"
    ours_url, theirs_url = services.redis_url, with_database(services.redis_url, "1")
    ours_keys = RedisKeys(prefix, database_number(ours_url))
    theirs_keys = RedisKeys(prefix, database_number(theirs_url))
    assert ours_keys.channel(show_id) == theirs_keys.channel(show_id)
    assert ours_keys.epoch_tag != theirs_keys.epoch_tag
    async with (
        running_broker(ours_url, ours_keys) as (ours, received, _),
        running_broker(theirs_url, theirs_keys) as (theirs, _, _),
    ):
        await ours.subscribe(show_id)
        dropped = foreign_events("epoch")
        for i in range(3):
            await theirs.publish(show_id, b'{"theirs":%d}' % i, invalidate_availability=False)
        own = await ours.publish(show_id, b'{"ours":1}', invalidate_availability=False)
        # one connection, in publish order: theirs were read before ours arrived
        await wait_until(lambda: len(received) >= 1)
        assert received == [(show_id, own, b'{"ours":1}')]
        assert foreign_events("epoch") - dropped == 3


async def test_garbage_on_a_show_channel_is_dropped_and_the_reader_stays_up(
    broker: tuple[RedisBroker, Received, list[int]], redis: aioredis.Redis, show_id: int
) -> None:
    """Anyone who can PUBLISH on the Redis can put anything on our channels."""
    b, received, reconnects = broker
    await b.subscribe(show_id)
    dropped = foreign_events("epoch")
    channel = b.keys.channel(show_id)
    for junk in ("e:\u00b2 {}".encode(), b"\xff\xfe:1 {}", b"no-offset", b"0123abcd:1 {}"):
        await redis.publish(channel, junk)
    own = await b.publish(show_id, b"{}", invalidate_availability=False)
    await wait_until(lambda: len(received) >= 1)
    assert received == [(show_id, own, b"{}")]
    assert reconnects == [1] and b.alive
    assert foreign_events("epoch") - dropped == 2  # those with an offset of another epoch
