"""The app through PgBouncer (Debian's 1.18) in transaction pooling: the booking flow, the
concurrency storm, and the session settings on PgBouncer's server connections."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

import tests.test_booking_flow as booking_flow
import tests.test_concurrency as concurrency
from app.cluster import processes
from app.cluster.pgbouncer import Backend, PgBouncer
from app.shards import SESSION_SETTINGS
from tests.support import (
    Cluster,
    ServerProcess,
    ShowOn,
    create_show,
    free_port,
    require_tool,
)


@pytest.fixture(scope="module", autouse=True)
def pgbouncer_installed() -> None:
    require_tool(
        shutil.which("pgbouncer") is not None or Path("/usr/sbin/pgbouncer").exists(),
        "PgBouncer (.ci/cluster-tools.sh)",
    )


@pytest.fixture(scope="module")
def bouncer(cluster: Cluster) -> Iterator[PgBouncer]:
    """PgBouncer in front of the session's databases, in a folder its user can read."""
    server = urlsplit(cluster.services.pg_admin_url)
    assert server.port is not None, "PgBouncer reaches PostgreSQL over TCP: the URL needs a port"
    found = PgBouncer(
        Path(tempfile.mkdtemp(prefix="mxb-", dir="/tmp")),
        free_port(),
        {
            db: Backend(server.hostname or "127.0.0.1", server.port or 5432, db)
            for db in cluster.databases
        },
        user=server.username or "postgres",
    )
    proc = found.start()
    yield found
    processes.stop(proc.pid)
    proc.wait()
    shutil.rmtree(found.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def bounced_servers(
    cluster: Cluster, bouncer: PgBouncer, log_dir: Path
) -> Iterator[list[ServerProcess]]:
    """Two servers whose every database connection goes through PgBouncer."""
    urls = [bouncer.url(db) for db in cluster.databases]
    env = {"DATABASE_URL": urls[0], "SHARD_URLS": ",".join(urls), "MODEX_PGBOUNCER": "1"}
    started = [ServerProcess(cluster, log_dir, **env).start() for _ in range(2)]
    yield started
    for server in started:
        server.stop()


@pytest.fixture
async def bounced_client(
    bounced_servers: list[ServerProcess],
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bounced_servers[0].url, timeout=30) as found:
        yield found


async def test_pgbouncer_server_connections_run_with_the_apps_session_settings(
    bouncer: PgBouncer, cluster: Cluster
) -> None:
    conn = await asyncpg.connect(bouncer.url(cluster.databases[0]), statement_cache_size=0)
    try:
        for name in ("plan_cache_mode", "enable_seqscan", "enable_bitmapscan", "jit"):
            assert await conn.fetchval(f"SHOW {name}") == SESSION_SETTINGS[name], name
        assert await conn.fetchval("SHOW lock_timeout") == "2s"
    finally:
        await conn.close()


async def test_booking_flow_through_pgbouncer(bounced_client: httpx.AsyncClient) -> None:
    show: dict[str, Any] = await create_show(bounced_client)
    await booking_flow.test_guest_browses_holds_extends_confirms_and_cancels(bounced_client, show)


@pytest.mark.slow
async def test_hold_storm_through_pgbouncer_never_oversells(
    bounced_servers: list[ServerProcess], cluster: Cluster, show_on: ShowOn
) -> None:
    await concurrency.test_hold_storm_across_two_servers_and_two_shards_never_oversells(
        bounced_servers, cluster, show_on
    )
