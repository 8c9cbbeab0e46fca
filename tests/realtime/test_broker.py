"""The Redis broker and its Lua scripts against a real Redis: every branch of each script
(ARGV arrive as strings in Lua), history and its gaps, epochs, presence, the reader."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from app.realtime.broker import (
    PRESENCE_STALE_MS,
    Position,
    RedisBroker,
    channel_of,
    show_key,
    show_of_channel,
)
from tests.realtime.watch import eventually
from tests.support import Services

Received = list[tuple[int, Position, bytes]]


@pytest.fixture
def show_id() -> int:
    # far from the ids the servers hand out, and new for every test
    return 9 * 10**15 + secrets.randbelow(10**12)


@pytest.fixture
async def broker(
    redis: aioredis.Redis, services: Services
) -> AsyncIterator[tuple[RedisBroker, Received, list[int]]]:
    received: Received = []
    reconnects: list[int] = []
    found = RedisBroker(
        redis,
        services.redis_url,
        f"test-{secrets.token_hex(3)}",
        on_message=lambda show, position, event: received.append((show, position, event)),
        on_reconnect=lambda: reconnects.append(1),
    )
    await found.start()
    assert await found.wait_connected(5)
    yield found, received, reconnects
    await found.stop()


def test_keys_carry_the_show_hash_tag() -> None:
    assert show_key(12, "meta") == "modex:{show:12}:meta"
    assert channel_of(12) == "modex:{show:12}:events"
    assert show_of_channel(channel_of(12)) == 12
    assert show_of_channel("modex:instance:x") is None


def test_offsets_are_epoch_and_number() -> None:
    assert str(Position("ab12", 7)) == "ab12:7"
    assert Position.parse("ab12:7") == Position("ab12", 7)
    for bad in ("", "7", ":7", "ab12:", "ab12:x", "ab:-1", "e:" + "9" * 30):
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
    await eventually(lambda: len(received) == 5)
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
    await eventually(lambda: len(received) == 6)
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
    key = show_key(show_id, "availability")
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
    await redis.xtrim(show_key(show_id, "stream"), maxlen=2, approximate=False)
    assert await b.history(show_id, positions[6]) is None  # trimmed away
    assert await b.history(show_id, positions[7]) is not None


async def test_a_show_whose_data_redis_lost_starts_a_new_epoch(
    broker: tuple[RedisBroker, Received, list[int]], redis: aioredis.Redis, show_id: int
) -> None:
    b, _, _ = broker
    first = await b.publish(show_id, b"{}", invalidate_availability=False)
    await b.publish(show_id, b"{}", invalidate_availability=False)
    await redis.delete(show_key(show_id, "meta"))  # as if Redis restarted empty
    again = await b.publish(show_id, b"{}", invalidate_availability=False)
    assert again.epoch != first.epoch and again.n == 1
    # the old epoch's history went with it; the new one starts clean
    assert await redis.xlen(show_key(show_id, "stream")) == 1
    assert await b.history(show_id, first) is None
    await redis.delete(show_key(show_id, "meta"))
    fresh = await b.position(show_id)  # position creates the epoch snapshots are stamped with
    assert fresh.n == 0 and fresh.epoch != again.epoch
    assert await b.position(show_id) == fresh
    assert await redis.exists(show_key(show_id, "stream")) == 0


async def test_presence_sums_instances_and_forgets_silent_ones(
    broker: tuple[RedisBroker, Received, list[int]], redis: aioredis.Redis, show_id: int
) -> None:
    b, _, _ = broker
    key = show_key(show_id, "presence")
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
    await eventually(lambda: received)
    assert len(received) == 1
    await b.unsubscribe(show_id)
    await asyncio.sleep(0.05)
    await b.publish(show_id, b"{}", invalidate_availability=False)
    await asyncio.sleep(0.2)
    assert len(received) == 1


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
    await eventually(lambda: len(reconnects) == 2 and b.alive)
    assert len(reconnects) == 2 and b.alive
    await b.publish(show_id, b"{}", invalidate_availability=False)
    await eventually(lambda: received)
    assert len(received) == 1
