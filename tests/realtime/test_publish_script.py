"""publish_many sends EVALSHA by hand (no SCRIPT EXISTS round trip per batch), so it must
load the script itself into a Redis that has never seen it, or lost it."""

from __future__ import annotations

import secrets
from pathlib import Path

import redis.asyncio as aioredis

from app.realtime.broker_redis import RedisBroker
from app.realtime.keys import RedisKeys
from tests.support import PrivateRedis


async def test_publish_many_loads_its_script_into_a_fresh_redis(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path / "redis").start()
    client = aioredis.from_url(server.url)
    try:
        broker = RedisBroker(
            client,
            server.url,
            f"test-{secrets.token_hex(3)}",
            on_message=lambda show, position, event: None,
            on_reconnect=lambda shows: None,
            keys=RedisKeys("mxt-script"),
        )
        show_id = 7 * 10**15 + secrets.randbelow(10**12)
        assert await client.script_exists(broker._publish.sha) == [False]
        await broker.publish_many([(show_id, b'{"n": 1}'), (show_id, b'{"n": 2}')])
        await client.script_flush()  # as after a restart
        await broker.publish_many([(show_id, b'{"n": 3}')])

        top = await broker.position(show_id)
        assert top.n == 3
        history = await broker.history(show_id, type(top)(top.epoch, 0))
        assert history is not None
        assert [event for _, event in history] == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    finally:
        await client.aclose()
        server.stop()
