"""Health, readiness naming what failed, metrics, and an OpenAPI document that matches."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx
from starlette.routing import Route

from app.domain import SEAT_LABEL
from app.http.api import API, api_routes, markdown_table
from tests.support import Cluster, PrivateRedis, ServerProcess, auth, create_show_on, wait_until


async def test_health_ready_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = (await client.get("/metrics")).text
    for name in (
        "http_request_duration_seconds",
        "db_query_duration_seconds",
        "bookings_total",
        "holds_total",
    ):
        assert name in metrics
    assert "x-request-id" in (await client.get("/health")).headers


async def test_openapi_describes_every_route_with_its_bodies(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    served = {
        (route.path, method)
        for route in api_routes()
        if isinstance(route, Route)
        for method in (route.methods or ())
        if method != "HEAD"
    }
    described = {
        (path, method.upper()) for path, ops in document["paths"].items() for method in ops
    }
    assert served - {("/openapi.json", "GET")} == described
    schemas = document["components"]["schemas"]
    hold_body = document["paths"]["/shows/{show_id}/holds"]["post"]["requestBody"]
    assert hold_body["content"]["application/json"]["schema"]["$ref"].endswith("HoldRequest")
    seats = schemas["HoldRequest"]["properties"]["seats"]
    assert seats["maxItems"] == 10 and seats["minItems"] == 1
    assert seats["items"]["pattern"] == SEAT_LABEL.pattern
    for endpoint in API:
        op = document["paths"][endpoint.path][endpoint.method.lower()]
        assert str(endpoint.status) in op["responses"]
        for code in endpoint.errors:
            assert str(code) in op["responses"]


async def test_ready_names_the_redis_and_the_shard_that_failed(
    own_cluster: Cluster, log_dir: Path, tmp_path: Path
) -> None:
    redis = PrivateRedis(tmp_path / "redis").start()
    server = ServerProcess(own_cluster, log_dir, REDIS_URL=redis.url).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            assert (await client.get("/ready")).status_code == 200
            redis.stop()
            down = await client.get("/ready")
            assert down.status_code == 503 and "redis" in down.json()["failed"]
            redis.start()

            async def ready() -> bool:
                return (await client.get("/ready")).status_code == 200

            await wait_until(ready, 10, "/ready after Redis came back")

            admin = await asyncpg.connect(own_cluster.services.pg_admin_url)
            try:
                await admin.execute(f'DROP DATABASE "{own_cluster.databases[1]}" WITH (FORCE)')
            finally:
                await admin.close()
            down = await client.get("/ready")
            assert down.status_code == 503
            assert down.json()["failed"] == ["shard1"]
    finally:
        server.stop()
        redis.stop()


async def test_lost_shard_writes_fail_fast_and_reads_serve_the_stale_map(
    own_cluster: Cluster, log_dir: Path
) -> None:
    server = ServerProcess(own_cluster, log_dir).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            show = await create_show_on(client, own_cluster, 1, rows=1, seats_per_row=3)
            fresh = await client.get(f"/shows/{show['id']}/seats")
            assert fresh.status_code == 200 and fresh.json()["stale"] is False

            admin = await asyncpg.connect(own_cluster.services.pg_admin_url)
            try:
                await admin.execute(f'DROP DATABASE "{own_cluster.databases[1]}" WITH (FORCE)')
            finally:
                await admin.close()
            statuses = []
            for i in range(8):
                hold = await client.post(
                    f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(f"u{i}")
                )
                statuses.append(hold.status_code)
                assert hold.status_code == 503, hold.text
                assert hold.json()["error"] == "shard_unavailable"
                assert int(hold.headers["Retry-After"]) >= 1
            stale = await client.get(f"/shows/{show['id']}/seats")
            assert stale.status_code == 200 and stale.json()["stale"] is True
            assert [s["label"] for s in stale.json()["seats"]] == ["A1", "A2", "A3"]
    finally:
        server.stop()


def test_readme_lists_the_api_as_the_route_table_has_it() -> None:
    """README's table is generated (`python -m app.http.api`): regenerate it when this fails."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    start = readme.index("<!-- api table: python -m app.http.api -->\n")
    end = readme.index("<!-- end of api table -->")
    listed = readme[start:end].split("\n", 1)[1]
    assert listed == markdown_table()


async def test_every_shard_has_a_breaker_series_before_it_fails(
    client: httpx.AsyncClient, cluster: Cluster
) -> None:
    text = (await client.get("/metrics")).text
    for index in range(cluster.shard_count):
        assert f'circuit_breaker_open{{shard="{index}"}}' in text, index
