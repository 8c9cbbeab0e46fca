"""Failover time on a local cluster: kill -9 of a shard's primary PostgreSQL -> the first
successful hold on that shard. Median of 5.

    .venv/bin/python loadtests/bench_failover.py                   # starts its own cluster
    .venv/bin/python loadtests/bench_failover.py --dir /tmp/modex-cluster --kills 5

Starts `modex cluster up` (2 instances, 2 shards, 1 synchronous standby each; Patroni,
PgBouncer, nginx) unless --dir names a running one. Each round: waits until the victim
shard has a primary and a streaming synchronous standby again (the old primary rejoins
after the previous kill), starts --clients customers holding and releasing random seats of
a show on that shard through every instance, kills the primary's postmaster with SIGKILL,
and measures from the kill to the first hold answered 201 that was sent after the shard's
first failure (a request in flight at the kill may still commit), and to the moment every
instance has answered one. Victims alternate between shard 1 and shard 0 (the metadata
database). Prints each round and the medians.
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
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from app.auth import Role, mint_token
from app.cluster import local
from app.cluster.patroni import Node, wait_for_leader


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


async def show_on(state: dict[str, Any], shard: int) -> int:
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
            if answer.json()["shard"] == shard:
                return int(answer.json()["id"])
    raise RuntimeError(f"no show was placed on shard {shard}")


async def one_kill(state: dict[str, Any], shard: int, clients: int) -> tuple[float, float]:
    show_id = await show_on(state, shard)
    nodes = members(state, shard)
    leader = await asyncio.to_thread(wait_for_leader, nodes, 1, 120)
    pid = leader.postmaster_pid()
    assert pid is not None
    apps = [f"http://127.0.0.1:{n['port']}" for n in state["nodes"] if n["kind"] == "app"]
    answers: list[tuple[float, float, str, int]] = []  # sent, answered, instance, status
    running = True

    async def customer(client: httpx.AsyncClient, user: str) -> None:
        rng, auth = random.Random(user), headers(state, user)
        while running:
            seat = f"{chr(65 + rng.randrange(20))}{rng.randrange(1, 21)}"
            sent = time.monotonic()
            try:
                answer = await client.post(
                    f"/shows/{show_id}/holds", json={"seats": [seat]}, headers=auth
                )
                status = answer.status_code
            except httpx.TransportError:
                status = 0
            answers.append((sent, time.monotonic(), str(client.base_url), status))
            if status == 201:
                hold_id = answer.json()["hold_id"]
                with contextlib.suppress(httpx.TransportError):
                    await client.delete(f"/holds/{hold_id}", headers=auth)
            # 2 requests per 0.25 s: under the per-user limits (20/s, 300/minute)
            await asyncio.sleep(0.25)

    http = [httpx.AsyncClient(base_url=url, timeout=8) for url in apps]
    tag = secrets.token_hex(3)
    tasks = [
        asyncio.create_task(customer(http[i % len(http)], f"fo-{tag}-{i}")) for i in range(clients)
    ]
    try:
        await asyncio.sleep(2)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        deadline = killed + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            failed = [t for _, t, _, s in answers if t >= killed and s not in (201, 409)]
            if failed:
                ok = [(t, i) for sent, t, i, s in answers if s == 201 and sent > min(failed)]
                if {i for _, i in ok} >= set(map(str, (c.base_url for c in http))):
                    break
        else:
            raise RuntimeError(f"shard {shard} did not take holds again within 60 s")
    finally:
        running = False
        await asyncio.gather(*tasks)
        for client in http:
            await client.aclose()
    first_failure = min(t for _, t, _, s in answers if t >= killed and s not in (201, 409))
    sold = sorted((t, i) for sent, t, i, s in answers if s == 201 and sent > first_failure)
    everywhere = max(min(t for t, i in sold if i == inst) for inst in {i for _, i in sold})
    return sold[0][0] - killed, everywhere - killed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, help="a running cluster (else one is started)")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    own = args.dir is None
    folder = Path(tempfile.mkdtemp(prefix="mxfo-", dir="/tmp")) if own else args.dir
    kept: list[Any] = []
    try:
        if own:
            started = time.monotonic()
            state = local.up(folder, instances=2, shards=2, standbys=1, kept=kept)
            print(f"cluster up in {time.monotonic() - started:.1f} s: {state['url']}", flush=True)
        else:
            state = json.loads((folder / "cluster.json").read_text())
        first, every = [], []
        for round_ in range(args.kills):
            shard = 1 if round_ % 2 == 0 else 0
            took, everywhere = asyncio.run(one_kill(state, shard, args.clients))
            first.append(took)
            every.append(everywhere)
            print(
                f"kill {round_ + 1}: shard {shard}'s primary -> first hold {took:.2f} s, "
                f"on every instance {everywhere:.2f} s",
                flush=True,
            )
        print(
            f"median of {args.kills}: first successful hold {statistics.median(first):.2f} s "
            f"(min {min(first):.2f}, max {max(first):.2f}); on every instance "
            f"{statistics.median(every):.2f} s",
            flush=True,
        )
    finally:
        if own:
            local.down(folder)
            for proc in kept:
                proc.wait()
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
