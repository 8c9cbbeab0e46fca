"""GET /shows/{id}/seats of a big show: maps kept while exact against a read per request.

    .venv/bin/python loadtests/bench_seat_map.py            # 6,000 seats, 16 clients, 10 s each

One server process (one worker, pinned to CPU 0 when taskset is there) on a fresh
`bench_<random>` database, one show of --rows x --per-row seats. Three targets, each driven
for --seconds by --clients keep-alive connections (the generator pinned to CPU 1):
  fresh:   every request sends `Cache-Control: no-cache`, so the server reads the seats and
           encodes the map for each one (what every request cost before maps were kept);
  kept:    plain requests, nothing changing: the kept map is served again;
  on sale: plain requests while a writer holds and releases seats, --changes per second.
Printed for each: req/s, p50, p99, the server's CPU per request, and how many times the
server read the seats (db_query_duration_seconds_count{query_type="read_seats"}).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common

DEFAULT_DB = os.environ.get("TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
READS = re.compile(rb'^db_query_duration_seconds_count\{query_type="read_seats"\} (\S+)$', re.M)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def seat_reads(port: int) -> float:
    client = common.RawClient("127.0.0.1", port)
    try:
        _, body = await client.send(client.build("GET", "/metrics"))
    finally:
        client.close()
    found = READS.search(body)
    return float(found.group(1)) if found else 0.0


async def drive(
    port: int, path: str, headers: dict[str, str], clients: int, seconds: float
) -> list[float]:
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    async def one_client() -> None:
        client = common.RawClient("127.0.0.1", port)
        request = client.build("GET", path, headers=headers)
        try:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                status, _ = await client.send(request)
                if status != 200:
                    raise RuntimeError(f"GET {path}: {status}")
                latencies.append(time.perf_counter() - started)
        finally:
            client.close()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies


async def change_seats(
    port: int, show_id: int, labels: list[str], per_second: float, secret: str
) -> None:
    """Holds and releases seats one after another, at most `per_second` changes a second."""
    client = common.RawClient("127.0.0.1", port)
    auth = {"Authorization": f"Bearer {common.mint(secret, 'bench-writer')}"}
    try:
        for i in range(10**9):
            started = time.monotonic()
            label = labels[i % len(labels)]
            body = f'{{"seats": ["{label}"]}}'.encode()
            status, answer = await client.send(
                client.build("POST", f"/shows/{show_id}/holds", body, auth)
            )
            if status == 201:
                hold_id = answer.split(b'"hold_id":"', 1)[1].split(b'"', 1)[0].decode()
                await asyncio.sleep(max(0.0, 1 / per_second - (time.monotonic() - started)))
                await client.send(client.build("DELETE", f"/holds/{hold_id}", headers=auth))
            await asyncio.sleep(max(0.0, 2 / per_second - (time.monotonic() - started)))
    finally:
        client.close()


async def measure(args: argparse.Namespace, port: int, pid: int, show_id: int, secret: str) -> None:
    path = f"/shows/{show_id}/seats"
    _, body = await (client := common.RawClient("127.0.0.1", port)).send(client.build("GET", path))
    client.close()
    print(f"map of {args.rows * args.per_row} seats: {len(body):,} bytes of JSON\n")
    print(
        f"{'target':<34}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU/req ms':>12}{'reads/req':>11}"
    )
    targets = [
        ("fresh (Cache-Control: no-cache)", {"Cache-Control": "no-cache"}, 0.0),
        ("kept, nothing changing", {}, 0.0),
        (f"kept, on sale ({args.changes:g} changes/s)", {}, args.changes),
    ]
    labels = [f"A{i}" for i in range(1, args.per_row + 1)]
    for name, headers, changes in targets:
        writer = (
            asyncio.create_task(change_seats(port, show_id, labels, changes, secret))
            if changes
            else None
        )
        await asyncio.sleep(1.0 if writer else 0.0)
        reads, cpu = await seat_reads(port), cpu_seconds(pid)
        latencies = sorted(await drive(port, path, headers, args.clients, args.seconds))
        cpu, reads = cpu_seconds(pid) - cpu, await seat_reads(port) - reads
        if writer:
            writer.cancel()
        n = len(latencies)
        p50, p99 = (common.percentile(latencies, p) * 1000 for p in (50, 99))
        print(
            f"{name:<34}{n / args.seconds:>8.0f}{p50:>9.1f}{p99:>9.1f}"
            f"{cpu / n * 1000:>12.2f}{reads / n:>11.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=DEFAULT_DB, help="PostgreSQL admin URL")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--per-row", type=int, default=100)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--changes", type=float, default=50.0, help="seat changes a second, on sale"
    )
    args = parser.parse_args()

    with common.bench_server(args.database_url, args.redis_url) as server:
        status, show = common.http_json(
            "POST",
            f"{server.url}/admin/shows",
            {
                "title": "Seat map bench",
                "venue": "Arena",
                "starts_at": "2030-01-01T20:00:00Z",
                "rows": args.rows,
                "seats_per_row": args.per_row,
            },
            token=common.mint(server.secret, "bench-admin", "admin"),
        )
        assert status == 201, show
        if common.has_taskset():
            os.sched_setaffinity(0, {1})
        common.use_uvloop()
        asyncio.run(measure(args, server.port, server.proc.pid, int(show["id"]), server.secret))
        print(f"\nversions: {common.versions()}\ncpu: {common.cpu_info()}")


if __name__ == "__main__":
    main()
