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
from tests.support import JWT_SECRET, Cluster, ServerProcess, Services, create_show


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
async def show(client: httpx.AsyncClient) -> dict[str, Any]:
    """A fresh 5 x 10 show for one test."""
    return await create_show(client)


@pytest.fixture
def user() -> str:
    return f"user-{secrets.token_hex(4)}"
