"""Session fixtures: one set of real servers, a migrated 2-shard cluster, server processes."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from app.config import Settings
from app.realtime.keys import RedisKeys
from app.shards import ShardRouter
from tests.support import (
    JWT_SECRET,
    Cluster,
    ServerProcess,
    Services,
    ShowOn,
    create_show,
    create_show_on,
)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    found = Services()
    yield found
    found.close()


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[aioredis.Redis]:
    """A client of the Redis the session's servers use."""
    client = aioredis.Redis.from_url(services.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
async def cluster(services: Services) -> AsyncIterator[Cluster]:
    """A metadata database and two shards (the metadata database is shard 0)."""
    found = Cluster(services, shard_count=2)
    await found.create()
    yield found
    await found.drop()


@pytest.fixture(scope="session")
async def redis_keys(cluster: Cluster) -> RedisKeys:
    """The names the session's servers give their Redis keys and channels."""
    return await cluster.redis_keys()


@pytest.fixture
async def own_cluster(services: Services) -> AsyncIterator[Cluster]:
    """Databases of this test's own (2 shards), for tests that break them or keep their
    outbox from the session's servers."""
    found = Cluster(services, shard_count=2)
    await found.create()
    yield found
    await found.drop()


@pytest.fixture(scope="module")
async def sweepless_cluster(services: Services) -> AsyncIterator[Cluster]:
    found = Cluster(services, shard_count=1)
    await found.create()
    yield found
    await found.drop()


@pytest.fixture(scope="module")
def sweepless_server(sweepless_cluster: Cluster, log_dir: Path) -> Iterator[ServerProcess]:
    """A server whose sweeper never runs (and no other sweeps its databases), so only a
    lazy check can notice that a hold lapsed."""
    server = ServerProcess(sweepless_cluster, log_dir, MODEX_SWEEP_INTERVAL="0").start()
    yield server
    server.stop()


@pytest.fixture
async def router(cluster: Cluster, services: Services) -> AsyncIterator[ShardRouter]:
    """The cluster's shard routing in this process, as a server builds it."""
    settings = Settings(
        database_url=cluster.meta_url,
        shard_urls=tuple(cluster.shard_urls),
        redis_url=services.redis_url,
        jwt_secret=JWT_SECRET,
    )
    found = await ShardRouter.connect(settings)
    yield found
    await found.close()


@pytest.fixture(scope="session")
def servers(cluster: Cluster, log_dir: Path) -> Iterator[list[ServerProcess]]:
    """Two `modex serve` processes sharing the cluster and Redis."""
    started = [ServerProcess(cluster, log_dir).start() for _ in range(2)]
    yield started
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(servers: list[ServerProcess]) -> ServerProcess:
    return servers[0]


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as found:
        yield found


@pytest.fixture
def pair(servers: list[ServerProcess]) -> list[ServerProcess]:
    """The servers `clients` talks to: the session's two. A module whose tests need servers
    of their own overrides this fixture."""
    return servers


@pytest.fixture
async def clients(pair: list[ServerProcess]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """An HTTP client of each server in `pair`."""
    found = [httpx.AsyncClient(base_url=s.url, timeout=30) for s in pair]
    yield found
    for found_client in found:
        await found_client.aclose()


@pytest.fixture
async def show(client: httpx.AsyncClient) -> dict[str, Any]:
    """A fresh 5 x 10 show for one test."""
    return await create_show(client)


@pytest.fixture
def show_on(client: httpx.AsyncClient, cluster: Cluster) -> ShowOn:
    """`await show_on(shard, **fields)`: a new show of the session's cluster on that shard,
    wherever placement would have put it (create_show_on)."""

    async def create(shard: int, **fields: Any) -> dict[str, Any]:
        return await create_show_on(client, cluster, shard, **fields)

    return create


@pytest.fixture
def user() -> str:
    return f"user-{secrets.token_hex(4)}"
