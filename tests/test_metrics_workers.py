"""`modex serve --workers 2`: /metrics adds up every worker, whichever worker answers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
from prometheus_client.mmap_dict import MmapedDict

from tests.support import Cluster, ServerProcess, wait_until

ROUTE = "/openapi.json"  # a route nothing else in this test calls
COUNT = re.compile(
    r'^http_request_duration_seconds_count\{method="GET",route="/openapi\.json",'
    r'status_code="200"\} ([0-9.e+]+)$',
    re.MULTILINE,
)


def workers_of(pid: int) -> list[int]:
    """The uvicorn workers a `modex serve` process spawned (Linux /proc)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child)
        for child in children
        if b"multiprocessing.spawn" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def metrics_dir_of(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    assert found, "the worker has no PROMETHEUS_MULTIPROC_DIR"
    return Path(found[0].decode())


def served_by_each(metrics_dir: Path, workers: list[int]) -> dict[int, float]:
    """How many GET /openapi.json each worker has counted, read from its own file."""
    counts = dict.fromkeys(workers, 0.0)
    for pid in workers:
        path = metrics_dir / f"histogram_{pid}.db"
        if not path.exists():
            continue
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            # each bucket's own count (the collector makes them cumulative, and the count)
            _, name, labels, _ = json.loads(key)
            if name == "http_request_duration_seconds_bucket" and labels.get("route") == ROUTE:
                counts[pid] += value
    return counts


async def send(url: str, connections: int) -> None:
    """One request on each of `connections` new connections, all at once, so the two
    workers (which share the listening socket) both take some."""

    async def one() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.get(ROUTE)).status_code == 200

    await asyncio.gather(*(one() for _ in range(connections)))


async def test_metrics_add_up_across_workers(cluster: Cluster, log_dir: Path) -> None:
    server = ServerProcess(cluster, log_dir, serve_args=("--workers", "2")).start()
    assert server.proc is not None
    try:
        pid = server.proc.pid
        deadline = time.monotonic() + 20
        workers = await wait_until(
            lambda: len(found := workers_of(pid)) >= 2 and found, 20, "two workers", every=0.1
        )
        metrics_dir = metrics_dir_of(workers[0])
        assert metrics_dir_of(workers[1]) == metrics_dir

        # until both workers have answered some (the second may still be starting)
        sent = 0
        while not all(served_by_each(metrics_dir, workers).values()):
            assert time.monotonic() < deadline, (
                served_by_each(metrics_dir, workers),
                sorted(p.name for p in metrics_dir.iterdir()),
            )
            await send(server.url, 20)
            sent += 20
        # a request is counted just after its response is sent: let the last ones land
        await wait_until(
            lambda: sum(served_by_each(metrics_dir, workers).values()) >= sent,
            what=f"{sent} requests counted",
        )
        per_worker = served_by_each(metrics_dir, workers)
        assert sum(per_worker.values()) == sent

        # each scrape, whichever worker answers it, counts every worker's requests
        for _ in range(8):
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                text = (await client.get("/metrics")).text
            found = COUNT.search(text)
            assert found, text[:2000]
            assert float(found.group(1)) == sent, (found.group(0), per_worker)
            # gauges combine as declared, not one series per worker: the listener is up
            # only if it is up in every worker
            assert re.search(r"^redis_listener_up 1\.0$", text, re.MULTILINE), text[:2000]

        # a worker killed outright: uvicorn starts another, which drops the dead one's live
        # gauges; the counts it made still add up
        killed = workers[0]
        os.kill(killed, signal.SIGKILL)
        await wait_until(
            lambda: killed not in (found := workers_of(pid)) and len(found) >= 2,
            30,
            "uvicorn to replace the killed worker",
            every=0.1,
        )
        await wait_until(
            lambda: not list(metrics_dir.glob(f"gauge_live*_{killed}.db")),
            30,
            "the dead worker's live gauges to go",
            every=0.1,
        )
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            text = (await client.get("/metrics")).text
        found = COUNT.search(text)
        assert found and float(found.group(1)) == sent, text[:2000]
    finally:
        server.stop()
    assert not metrics_dir.exists(), "the workers' metric files were left behind"
