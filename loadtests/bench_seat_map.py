"""GET /shows/{id}/seats of a big show: bytes and server CPU per read, for each content
coding and for forced reads, against the code before maps were compressed and checked.

    .venv/bin/python loadtests/bench_seat_map.py            # 6,000 seats, 16 clients, 10 s each

One server process (one worker, pinned to CPU 0 when taskset is there) on a fresh
`bench_<random>` database, one show of --rows x --per-row seats; the load generator is
pinned to CPU 1. Each target is driven for --seconds by --clients keep-alive connections:
  kept:     plain requests, nothing changing: the kept map is served again, in the coding
            the request's Accept-Encoding asks for (identity, gzip, br);
  no-cache: every request sends `Cache-Control: no-cache`: the kept map is checked (one
            outbox probe and the offset) and served again;
  on sale:  plain requests while a writer holds and releases seats, --changes per second
            (each change makes a new map, read once and compressed once per coding).
The baseline, in the same run: the code at --before (the commit before no-cache was
checked and maps compressed: every forced read read and encoded every seat, and every map
went out as identity whatever the client accepted), extracted with `git archive` and
served as a second process on the same database and show while the first one idles.
Printed for each: req/s, p50, p99, body bytes per read, the server's CPU per read, and
how many times per read the server read the seats
(db_query_duration_seconds_count{query_type="read_seats"}).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import common

# the last commit before forced reads were checked and seat maps compressed
BEFORE = "8af3b92c8fa38a061463ecbd0a01b5494b8c00df"
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


class Driven(NamedTuple):
    latencies: list[float]  # sorted
    body_bytes: int  # all bodies, as sent


async def drive(
    port: int, path: str, headers: dict[str, str], clients: int, seconds: float
) -> Driven:
    latencies: list[float] = []
    body_bytes = 0
    stop_at = time.monotonic() + seconds

    async def one_client() -> None:
        nonlocal body_bytes
        client = common.RawClient("127.0.0.1", port)
        request = client.build("GET", path, headers=headers)
        try:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                status, body = await client.send(request)
                if status != 200:
                    raise RuntimeError(f"GET {path}: {status}")
                latencies.append(time.perf_counter() - started)
                body_bytes += len(body)
        finally:
            client.close()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return Driven(sorted(latencies), body_bytes)


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


class Target(NamedTuple):
    name: str
    headers: dict[str, str]
    changes: float  # seat changes a second while it runs


FORCED = {"Cache-Control": "no-cache"}
GZIP = {"Accept-Encoding": "gzip"}
BR = {"Accept-Encoding": "br"}
BROWSER = {"Accept-Encoding": "gzip, deflate, br, zstd"}  # what browsers send


def targets(changes: float) -> tuple[list[Target], list[Target]]:
    """(on the code at --before, on this code)"""
    on_sale = f"on sale ({changes:g}/s)"
    before = [
        Target("kept, identity (any Accept-Encoding)", BROWSER, 0.0),
        Target("no-cache, identity (any)", {**FORCED, **BROWSER}, 0.0),
        Target(f"{on_sale}, identity (any)", BROWSER, changes),
    ]
    after = [
        Target("kept, identity", {}, 0.0),
        Target("kept, gzip", GZIP, 0.0),
        Target("kept, br", BR, 0.0),
        Target("no-cache, identity", FORCED, 0.0),
        Target("no-cache, br", {**FORCED, **BR}, 0.0),
        Target(f"{on_sale}, identity", {}, changes),
        Target(f"{on_sale}, gzip", GZIP, changes),
        Target(f"{on_sale}, br", BR, changes),
        Target(f"{on_sale}, no-cache, br", {**FORCED, **BR}, changes),
    ]
    return before, after


async def measure(
    args: argparse.Namespace, port: int, pid: int, show_id: int, secret: str, runs: list[Target]
) -> None:
    path = f"/shows/{show_id}/seats"
    labels = [f"A{i}" for i in range(1, args.per_row + 1)]
    for target in runs:
        writer = (
            asyncio.create_task(change_seats(port, show_id, labels, target.changes, secret))
            if target.changes
            else None
        )
        await asyncio.sleep(1.0 if writer else 0.0)
        reads, cpu = await seat_reads(port), cpu_seconds(pid)
        driven = await drive(port, path, target.headers, args.clients, args.seconds)
        cpu, reads = cpu_seconds(pid) - cpu, await seat_reads(port) - reads
        if writer:
            writer.cancel()
        n = len(driven.latencies)
        p50, p99 = (common.percentile(driven.latencies, p) * 1000 for p in (50, 99))
        print(
            f"{target.name:<38}{n / args.seconds:>8.0f}{p50:>9.1f}{p99:>9.1f}"
            f"{driven.body_bytes / n:>13,.0f}{cpu / n * 1000:>12.3f}{reads / n:>11.3f}",
            flush=True,
        )


def print_header(title: str) -> None:
    print(f"\n{title}")
    print(
        f"{'target':<38}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'bytes/read':>13}{'CPU/read ms':>12}{'reads/read':>11}"
    )


def start_before(lab: common.Lab, rev: str) -> common.Server:
    """The code at `rev` (git archive of app/, sql/ and static/), served on the lab's
    database and Redis beside this code's server; it leaves sweeping to that one."""
    folder = lab.folder / "before"
    folder.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(common.ROOT), "archive", rev, "app", "sql", "static"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return lab.start_server(
        cwd=folder, log_name="before.log",
        env={"MODEX_SWEEP_INTERVAL": "0", "MODEX_DATA_DIR": str(folder / "data")},
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_service_options(parser)
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--per-row", type=int, default=100)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--changes", type=float, default=50.0, help="seat changes a second, on sale"
    )
    parser.add_argument(
        "--before",
        default=BEFORE,
        help="the commit to measure as the baseline ('' for none)",
    )
    args = parser.parse_args()

    with common.Lab(args.database_url, args.redis_url) as lab:
        lab.create_database()
        server = lab.start_server()
        show_id = common.create_show(
            server.url, lab.secret, title="Seat map bench", venue="Arena", rows=args.rows,
            seats_per_row=args.per_row,
        )  # fmt: skip
        common.pin_self(1)
        common.use_uvloop()
        before, after = targets(args.changes)
        print(
            f"map of {args.rows * args.per_row:,} seats; {args.clients} clients, "
            f"{args.seconds:g} s a target"
        )
        if args.before:
            old = start_before(lab, args.before)
            print_header(f"before: the code at {args.before}")
            asyncio.run(measure(args, old.port, old.proc.pid, show_id, lab.secret, before))
            lab.stop(old.proc)
        print_header("after: this code")
        asyncio.run(measure(args, server.port, server.proc.pid, show_id, lab.secret, after))
        print(f"\nversions: {common.versions()}\ncpu: {common.cpu_info()}")


if __name__ == "__main__":
    main()
