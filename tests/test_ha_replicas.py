"""Read replicas (SHARD_READ_URLS): seat maps and seat counts read from a streaming standby
while it is caught up; a standby that lags or is down is skipped for the primary; a map
read there is never older than the offset it carries (a watcher resuming from it would
skip changes).

The standby is real: a PostgreSQL 15 primary of the test's own and a standby made from it
with pg_basebackup, both on free ports, run as the service user."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.cluster import processes
from tests.realtime.apply import ShowState
from tests.realtime.watch import Watcher, converge, hold, seat_order
from tests.support import (
    Cluster,
    ServerProcess,
    create_show,
    free_port,
    require_tool,
    run_modex,
    wait_until,
)

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="module", autouse=True)
def postgres_binaries_installed() -> None:
    require_tool((PG_BIN / "pg_basebackup").exists(), "PostgreSQL 15's binaries")


@dataclass
class Server:
    data: Path
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args)

    def start(self) -> None:
        self.pg_ctl(
            "-l",
            str(self.log),
            "-w",
            "-o",
            f"-c port={self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.data.parent} -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        self.pg_ctl("-m", "immediate", "-w", "stop")


def run(*argv: str) -> None:
    subprocess.run(
        [*processes.service_prefix(), *argv], check=True, capture_output=True, cwd="/tmp"
    )


@pytest.fixture(scope="module")
def streaming_pair() -> Iterator[tuple[Server, Server]]:
    folder = Path(tempfile.mkdtemp(prefix="mx-replica-", dir="/tmp"))
    folder.chmod(0o755)
    primary = Server(folder / "primary", free_port(), folder / "primary.log")
    standby = Server(folder / "standby", free_port(), folder / "standby.log")
    processes.give_to_service_user(folder)
    try:
        run(str(PG_BIN / "initdb"), "-D", str(primary.data), "-U", "postgres", "--auth=trust")
        primary.start()
        run(
            str(PG_BIN / "pg_basebackup"),
            f"--dbname={primary.url}",
            "-D",
            str(standby.data),
            "-R",  # standby.signal + primary_conninfo: a streaming standby
            "-X",
            "stream",
        )
        standby.start()
        yield primary, standby
    finally:
        for server in (standby, primary):
            with contextlib.suppress(subprocess.CalledProcessError):  # not running
                server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
async def replica_server(
    streaming_pair: tuple[Server, Server], cluster: Cluster, log_dir: Path
) -> AsyncIterator[ServerProcess]:
    primary, standby = streaming_pair
    env = {
        "DATABASE_URL": primary.url,
        "SHARD_URLS": primary.url,
        "SHARD_READ_URLS": standby.url,
    }
    await run_modex(cluster.env(**env), "migrate")
    server = ServerProcess(cluster, log_dir, **env).start()
    yield server
    server.stop()


@pytest.fixture
async def client(replica_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=replica_server.url, timeout=10) as found:
        yield found


async def standby_reads(client: httpx.AsyncClient) -> float:
    """Seat maps this server has read from the standby."""
    text = (await client.get("/metrics")).text
    found = re.search(
        r'^db_query_duration_seconds_count\{query_type="read_seats_standby"\} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


async def fresh_map(client: httpx.AsyncClient, show_id: int) -> dict[str, Any]:
    answer = await client.get(f"/shows/{show_id}/seats", headers={"Cache-Control": "no-cache"})
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def on_standby(standby: Server, query: str) -> Any:
    conn = await asyncpg.connect(standby.url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def test_seat_maps_are_read_from_a_caught_up_standby(
    client: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(client)
    await hold(client, show["id"], user, ["A1"])
    before = await standby_reads(client)

    async def read_there() -> bool:
        seats = (await fresh_map(client, show["id"]))["seats"]
        assert {s["label"]: s["status"] for s in seats}["A1"] == "HELD"
        return await standby_reads(client) > before

    # the server learns the standby's lag within a check or two
    await wait_until(read_there, 5, "a seat map read from the standby", every=0.1)


async def test_a_standby_behind_the_offset_is_skipped_and_a_watcher_misses_nothing(
    client: httpx.AsyncClient,
    replica_server: ServerProcess,
    streaming_pair: tuple[Server, Server],
    user: str,
) -> None:
    _, standby = streaming_pair
    show = await create_show(client)
    show_id = show["id"]
    order = await seat_order(client, show_id)
    await on_standby(standby, "SELECT pg_wal_replay_pause()")
    try:
        # committed and published on the primary; the standby has not replayed it
        await hold(client, show_id, user, ["B2"])
        for headers in ({}, {"Cache-Control": "no-cache"}):
            seat_map = (await client.get(f"/shows/{show_id}/seats", headers=headers)).json()
            assert {s["label"]: s["status"] for s in seat_map["seats"]}["B2"] == "HELD", (
                "a map read from the standby was paired with a newer offset"
            )
        # the page's way: the map, then live changes from the map's offset
        async with Watcher(replica_server.ws_url) as watcher:
            state = watcher.states[show_id] = _state_from(order, seat_map)
            await watcher.subscribe(show_id, order, offset=seat_map["offset"])
            await hold(client, show_id, f"{user}-2", ["C3"])
            await wait_until(lambda: state.seats["C3"][0] == "HELD")
            await converge([watcher], client, show)
    finally:
        await on_standby(standby, "SELECT pg_wal_replay_resume()")


def _state_from(order: list[str], seat_map: dict[str, Any]) -> ShowState:
    state = ShowState(order)
    state.seats = {s["label"]: (s["status"], s["version"]) for s in seat_map["seats"]}
    state.offset = seat_map["offset"]
    state.has_snapshot = True
    return state


async def test_a_standby_that_is_down_is_skipped_for_the_primary(
    client: httpx.AsyncClient, streaming_pair: tuple[Server, Server], user: str
) -> None:
    _, standby = streaming_pair
    show = await create_show(client)
    standby.stop()
    try:
        for i in range(5):
            await hold(client, show["id"], f"{user}-{i}", [f"A{i + 1}"])
            seats = (await fresh_map(client, show["id"]))["seats"]
            assert {s["label"]: s["status"] for s in seats}[f"A{i + 1}"] == "HELD"
    finally:
        standby.start()
    before = await standby_reads(client)

    async def read_there_again() -> bool:
        await fresh_map(client, show["id"])
        return await standby_reads(client) > before

    # and it is used again once it is back and caught up
    await wait_until(read_there_again, 5, "the standby to be used again", every=0.1)
