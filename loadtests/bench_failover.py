"""Failover times on a local cluster (`modex cluster up --redis cluster`), median of 5 each:
kill -9 of a shard's primary PostgreSQL -> the first successful hold on that shard, and
kill -9 of a Redis master -> the first change of a show it owned delivered to a watcher.

    .venv/bin/python loadtests/bench_failover.py                   # starts its own cluster
    .venv/bin/python loadtests/bench_failover.py --dir /tmp/modex-cluster --kills 5
    .venv/bin/python loadtests/bench_failover.py --parts redis     # one kind of kill only

Starts `modex cluster up --redis cluster` (2 instances, 2 shards, 1 synchronous standby
each; Patroni, PgBouncer, nginx, a six-node Redis Cluster) unless --dir names a running one.

Shard primary rounds: wait until the victim shard has a primary and a streaming synchronous
standby again (the old primary rejoins after the previous kill), start --clients customers
holding and releasing random seats of a show on that shard through every instance, kill the
primary's postmaster with SIGKILL, and measure from the kill to the first hold answered 201
that was sent after the shard's first failure (a request in flight at the kill may still
commit), and to the moment every instance has answered one. Victims alternate between shard
1 and shard 0 (the metadata database).

Redis rounds: a new show, a watcher of it on every instance, the same customers on it; kill
-9 of the Redis master that owns the show's slot; measure from the kill to the first change
committed after the kill that reaches a watcher, and to every watcher having one. The killed
node is then started again (it rejoins as the replica of the master that took its slots,
app/cluster/redis_cluster.py: restart), so every round kills a master that has a replica.

Prints each round and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from redis.crc import key_slot
from websockets.asyncio.client import connect

from app.auth import Role, mint_token
from app.cluster import local, redis_cluster
from app.cluster.patroni import Node, wait_for_leader

PARTS = ("postgres", "redis")


def members(state: dict[str, Any], shard: int) -> list[Node]:
    folder = Path(state["dir"]) / "pg"
    found = []
    for node in state["nodes"]:
        if node["kind"] == "monitor" and node["shard"] == shard and "supervises" not in node:
            name = node["name"].removeprefix("patroni-")
            index = int(name.rsplit("-n", 1)[1])  # db{shard}-n{index}
            found.append(Node(shard, index, folder / name, 0, node["port"]))
    return found


def headers(state: dict[str, Any], user: str, role: Role = Role.CUSTOMER) -> dict[str, str]:
    value, _ = mint_token(state["env"]["MODEX_JWT_SECRET"], user, role, timedelta(hours=1))
    return {"Authorization": f"Bearer {value}"}


def app_urls(state: dict[str, Any]) -> list[str]:
    return [f"http://127.0.0.1:{n['port']}" for n in state["nodes"] if n["kind"] == "app"]


async def new_show(state: dict[str, Any], shard: int | None = None) -> int:
    """A new show (on `shard`, when given)."""
    async with httpx.AsyncClient(base_url=state["url"], timeout=30) as client:
        for _ in range(20):
            answer = await client.post(
                "/admin/shows",
                json={
                    "title": "Failover bench",
                    "venue": "Hall",
                    "starts_at": "2030-01-15T20:00:00Z",
                    "rows": 20,
                    "seats_per_row": 20,
                },
                headers=headers(state, "admin", Role.ADMIN),
            )
            answer.raise_for_status()
            if shard is None or answer.json()["shard"] == shard:
                return int(answer.json()["id"])
    raise RuntimeError(f"no show was placed on shard {shard}")


class Customers:
    """--clients customers holding and releasing random seats of a show through every
    instance; every hold's (sent, answered, instance, status) goes to `answers`."""

    def __init__(self, state: dict[str, Any], show_id: int, count: int) -> None:
        self.state, self.show_id = state, show_id
        self.answers: list[tuple[float, float, str, int]] = []
        self.running = True
        self.http = [httpx.AsyncClient(base_url=url, timeout=8) for url in app_urls(state)]
        tag = secrets.token_hex(3)
        self.tasks = [
            asyncio.create_task(self._customer(self.http[i % len(self.http)], f"fo-{tag}-{i}"))
            for i in range(count)
        ]

    @property
    def instances(self) -> set[str]:
        return {str(client.base_url) for client in self.http}

    async def _customer(self, client: httpx.AsyncClient, user: str) -> None:
        rng, auth = random.Random(user), headers(self.state, user)
        while self.running:
            seat = f"{chr(65 + rng.randrange(20))}{rng.randrange(1, 21)}"
            sent = time.monotonic()
            try:
                answer = await client.post(
                    f"/shows/{self.show_id}/holds", json={"seats": [seat]}, headers=auth
                )
                status = answer.status_code
            except httpx.TransportError:
                status = 0
            self.answers.append((sent, time.monotonic(), str(client.base_url), status))
            if status == 201:
                hold_id = answer.json()["hold_id"]
                with contextlib.suppress(httpx.TransportError):
                    await client.delete(f"/holds/{hold_id}", headers=auth)
            # 2 requests per 0.25 s: under the per-user limits (20/s, 300/minute)
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        self.running = False
        await asyncio.gather(*self.tasks)
        for client in self.http:
            await client.aclose()


async def until(done: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {within:.0f} s")
        await asyncio.sleep(0.05)


async def one_primary_kill(state: dict[str, Any], shard: int, clients: int) -> tuple[float, float]:
    show_id = await new_show(state, shard)
    leader = await asyncio.to_thread(wait_for_leader, members(state, shard), 1, 120)
    pid = leader.postmaster_pid()
    assert pid is not None
    customers = Customers(state, show_id, clients)
    answers = customers.answers

    def failed() -> list[float]:
        return [t for _, t, _, s in answers if t >= killed and s not in (201, 409)]

    def sold_everywhere() -> bool:
        if not failed():
            return False
        first_failure = min(failed())
        ok = {i for sent, _, i, s in answers if s == 201 and sent > first_failure}
        return ok >= customers.instances

    try:
        await asyncio.sleep(2)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        await until(sold_everywhere, 60, f"shard {shard} did not take holds again")
    finally:
        await customers.stop()
    first_failure = min(failed())
    sold = sorted((t, i) for sent, t, i, s in answers if s == 201 and sent > first_failure)
    everywhere = max(min(t for t, i in sold if i == inst) for inst in {i for _, i in sold})
    return sold[0][0] - killed, everywhere - killed


class ShowWatcher:
    """A WebSocket watching one show: when each change (a seats frame; its ts is the
    change's commit time, epoch ms) arrived."""

    def __init__(self, http_url: str, show_id: int) -> None:
        self.url = http_url.replace("http://", "ws://", 1) + "/ws"
        self.show_id = show_id
        self.changes: list[tuple[float, float]] = []  # committed (epoch s), received
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ws = await connect(self.url)
        await ws.send(json.dumps({"type": "subscribe", "show_id": self.show_id}))
        self.task = asyncio.create_task(self._read(ws))

    async def _read(self, ws: Any) -> None:
        async with ws:
            async for text in ws:
                frame = json.loads(text)
                if frame.get("type") == "seats" and frame.get("show_id") == self.show_id:
                    self.changes.append((frame["ts"] / 1000, time.time()))

    def first_after(self, wall: float) -> float | None:
        """When the first change committed after `wall` arrived."""
        return min((got for committed, got in self.changes if committed > wall), default=None)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def one_redis_kill(folder: Path, clients: int, kept: list[Any]) -> tuple[int, float, float]:
    """The killed master's port, seconds to the first change delivered, and to every
    watcher having one."""
    state = json.loads((folder / "cluster.json").read_text())  # pids as restarted
    redis_nodes = {n["port"]: n["pid"] for n in state["nodes"] if n["kind"] == "redis"}
    show_id = await new_show(state)
    port = redis_cluster.master_of_slot(list(redis_nodes), key_slot(b"{show:%d}" % show_id))
    watchers = [ShowWatcher(url, show_id) for url in app_urls(state)]
    for watcher in watchers:
        await watcher.start()
    customers = Customers(state, show_id, clients)
    try:
        await asyncio.sleep(2)
        killed = time.time()
        os.kill(redis_nodes[port], signal.SIGKILL)
        await until(
            lambda: all(w.first_after(killed) is not None for w in watchers),
            30,
            f"no change of show {show_id} reached every watcher after Redis {port} died",
        )
    finally:
        await customers.stop()
        for watcher in watchers:
            await watcher.stop()
    firsts = [w.first_after(killed) or 0.0 for w in watchers]
    # back as a replica before the next round
    kept.append(await asyncio.to_thread(local.restart_redis, folder, port))
    return port, min(firsts) - killed, max(firsts) - killed


def median_line(what: str, first: list[float], every: list[float]) -> str:
    return (
        f"median of {len(first)}: {what} {statistics.median(first):.2f} s "
        f"(min {min(first):.2f}, max {max(first):.2f}); on every instance "
        f"{statistics.median(every):.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, help="a running cluster (else one is started)")
    parser.add_argument("--kills", type=int, default=5, help="rounds of each kind")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--parts", default=",".join(PARTS), help="postgres,redis (both)")
    args = parser.parse_args()
    parts = [part for part in args.parts.split(",") if part]
    if not set(parts) <= set(PARTS):
        parser.error(f"--parts: one or more of {', '.join(PARTS)}")
    own = args.dir is None
    folder = Path(tempfile.mkdtemp(prefix="mxfo-", dir="/tmp")) if own else args.dir.resolve()
    kept: list[Any] = []
    try:
        if own:
            started = time.monotonic()
            state = local.up(folder, instances=2, shards=2, standbys=1, redis="cluster", kept=kept)
            print(f"cluster up in {time.monotonic() - started:.1f} s: {state['url']}", flush=True)
        else:
            state = json.loads((folder / "cluster.json").read_text())
        results = []
        if "postgres" in parts:
            first, every = [], []
            for round_ in range(args.kills):
                shard = 1 if round_ % 2 == 0 else 0
                took, everywhere = asyncio.run(one_primary_kill(state, shard, args.clients))
                first.append(took)
                every.append(everywhere)
                print(
                    f"kill {round_ + 1}: shard {shard}'s primary -> first hold {took:.2f} s, "
                    f"on every instance {everywhere:.2f} s",
                    flush=True,
                )
            results.append(median_line("shard primary -> first successful hold", first, every))
        if "redis" in parts:
            if sum(n["kind"] == "redis" for n in state["nodes"]) < redis_cluster.NODES:
                raise SystemExit("the Redis rounds need a cluster started with --redis cluster")
            first, every = [], []
            for round_ in range(args.kills):
                port, took, everywhere = asyncio.run(one_redis_kill(folder, args.clients, kept))
                first.append(took)
                every.append(everywhere)
                print(
                    f"kill {round_ + 1}: Redis master {port} -> first change delivered "
                    f"{took:.2f} s, on every instance {everywhere:.2f} s",
                    flush=True,
                )
            results.append(median_line("Redis master -> first change delivered", first, every))
        for line in results:
            print(line, flush=True)
    finally:
        if own:
            local.down(folder)
            for proc in kept:
                proc.wait()
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
