"""Two deployments on one Redis never hear each other: every key and channel is named in the
deployment's namespace (app/realtime/keys.py), and an event that reaches a reader from
another namespace anyway is dropped and counted, never applied or answered with a resync."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.realtime.keys import (
    RedisKeys,
    check_prefix,
    database_number,
    deployment_keys,
    prefix_of_deployment,
)
from tests.realtime.watch import Watcher, hold, seat_order
from tests.support import Cluster, ServerProcess, Services, auth, create_show, with_database


@pytest.fixture
async def two_deployments(services: Services) -> AsyncIterator[tuple[Cluster, Cluster]]:
    """Two deployments' metadata databases (each its own shard) whose show ids coincide."""
    deployments = (Cluster(services, shard_count=1), Cluster(services, shard_count=1))
    try:
        await asyncio.gather(*(d.create() for d in deployments))
        start = secrets.randbelow(10**9) * 1000 + 1
        for deployment in deployments:
            meta = await asyncpg.connect(deployment.meta_url)
            try:
                await meta.execute(f"ALTER SEQUENCE shows_id_seq RESTART WITH {start}")
            finally:
                await meta.close()
        yield deployments
    finally:
        await asyncio.gather(*(d.drop() for d in deployments))


def test_a_prefix_is_the_operators_or_derived_from_the_deployment_id() -> None:
    assert prefix_of_deployment("3F2504E0-4F89-11D3-9A0C-0305E82C3301") == "modex:3f2504e04f89"
    with pytest.raises(ValueError):
        prefix_of_deployment("None")  # no id read: never a shared default
    for good in ("shop-eu", "modex:prod.2", "a_b"):
        assert check_prefix(good) == good
    for bad in ("", "a{b", "x}", "two words", "caf\u00e9", "x" * 65, "a\n"):
        with pytest.raises(ValueError):
            check_prefix(bad)
    assert database_number("redis://127.0.0.1:6379") == 0
    assert database_number("rediss://user:pw@cache:6380/3") == 3


def test_keys_and_channels_are_named_in_the_namespace_with_the_show_hash_tag() -> None:
    keys = RedisKeys("shop-eu", 2)
    assert keys.meta(12) == "shop-eu:{show:12}:meta"
    assert keys.stream(12) == "shop-eu:{show:12}:stream"
    assert keys.presence(12) == "shop-eu:{show:12}:presence"
    assert keys.availability(12) == "shop-eu:{show:12}:availability"
    assert keys.channel(12) == "shop-eu:{show:12}:events"
    assert keys.instance_channel("a:1") == "shop-eu:instance:a:1"
    assert keys.show_of_channel(keys.channel(12)) == 12
    for foreign in (
        RedisKeys("shop-us").channel(12),
        RedisKeys("shop").channel(12),
        "shop-eu:{show:\u0661\u0662}:events",  # Arabic-Indic digits
        "shop-eu:{show:12}:meta",
        keys.instance_channel("x"),
    ):
        assert keys.show_of_channel(foreign) is None, foreign
    # an epoch names the namespace that started it: prefix and database number
    epoch = keys.new_epoch()
    assert keys.owns_epoch(epoch) and epoch != keys.new_epoch()
    assert not RedisKeys("shop-eu", 3).owns_epoch(epoch)
    assert not RedisKeys("shop-us", 2).owns_epoch(epoch)
    assert RedisKeys("shop-eu", 2).owns_epoch(epoch)  # every instance of the deployment


class NoDatabase:
    async def fetchval(self, query: str, *args: object) -> object:
        raise AssertionError("an explicit prefix needs no deployment id")


async def test_each_deployment_reads_its_own_stable_prefix(
    two_deployments: tuple[Cluster, Cluster],
) -> None:
    first, second = two_deployments
    keys = [await first.redis_keys(), await second.redis_keys()]
    assert keys[0].prefix != keys[1].prefix
    assert all(k.prefix.startswith("modex:") for k in keys)
    assert await first.redis_keys() == keys[0]  # read again: the same
    given = await deployment_keys(NoDatabase(), "shop-eu", "redis://127.0.0.1:6379/4")
    assert given == RedisKeys("shop-eu", 4)
    with pytest.raises(ValueError):
        await deployment_keys(NoDatabase(), "shop{eu}", "redis://127.0.0.1:6379/4")


def seats_of(frame: dict[str, Any]) -> set[str]:
    return {change["label"] for change in frame.get("changes", [])}


@pytest.mark.parametrize("redis_db", ["same", "other"])
async def test_a_change_in_one_deployment_never_reaches_a_watcher_of_another(
    two_deployments: tuple[Cluster, Cluster], services: Services, log_dir: Path, redis_db: str
) -> None:
    """Same show id, same seat labels, one Redis server; the second deployment on the same
    database number or another (pub/sub ignores it: that was the resync storm)."""
    first, second = two_deployments
    second_redis = (
        services.redis_url if redis_db == "same" else with_database(services.redis_url, "1")
    )
    ours = ServerProcess(first, log_dir).start()
    theirs = ServerProcess(second, log_dir, REDIS_URL=second_redis).start()
    try:
        async with (
            httpx.AsyncClient(base_url=ours.url) as our_client,
            httpx.AsyncClient(base_url=theirs.url) as their_client,
        ):
            our_show = await create_show(our_client, rows=2, seats_per_row=10)
            their_show = await create_show(their_client, rows=2, seats_per_row=10)
            show_id = our_show["id"]
            assert their_show["id"] == show_id
            order = await seat_order(our_client, show_id)
            async with Watcher(ours.ws_url) as our_watcher, Watcher(theirs.ws_url) as watcher:
                await our_watcher.subscribe(show_id, order)
                await watcher.subscribe(show_id, order)
                mark = len(watcher.frames)

                # the first deployment changes seats and announces
                for seat in ("A1", "A2", "A3", "A4", "A5"):
                    await hold(our_client, show_id, "alice", [seat])
                broadcast = await our_client.post(
                    f"/admin/shows/{show_id}/broadcast",
                    json={"message": "doors open"},
                    headers=auth("admin", "admin"),
                )
                assert broadcast.status_code in (200, 202, 204), broadcast.text
                await our_watcher.wait_for(lambda f: f["type"] == "announcement")
                # then the second does: its server's reader gets its own event after anything
                # of the first's it could have been sent (one connection, in publish order)
                await hold(their_client, show_id, "bob", ["B1"])
                await watcher.wait_for(lambda f: "B1" in seats_of(f), since=mark)

                heard = watcher.frames_of(show_id, since=mark)
                assert [f["type"] for f in heard if f["type"] != "presence"] == ["seats"]
                assert seats_of(heard[-1]) == {"B1"}
                # nobody else is counted among its watchers either
                assert {f["watchers"] for f in heard if f["type"] == "presence"} <= {1}
                assert our_watcher.frames_of(show_id)[0]["type"] == "snapshot"
                assert not [f for f in our_watcher.frames_of(show_id) if "B1" in seats_of(f)]
    finally:
        ours.stop()
        theirs.stop()
