"""Best-available holds per second against plain holds per second, on the same show, in
the same run, through a running server.

    .venv/bin/python loadtests/bench_best_available.py --seconds 10 --clients 32
    MODEX_JWT_SECRET=... .venv/bin/python loadtests/bench_best_available.py \
        --url http://127.0.0.1:4000 --seconds 10 --clients 32

Without --url it starts one `modex serve` (pinned to CPU 0) on a database of its own
(--database-url, --redis-url); with --url it measures that server, minting tokens with
MODEX_JWT_SECRET. Creates a show (40 rows x 50 seats, hold 3600 s), then measures in turn,
for --seconds each, --clients concurrent customers (each its own token and keep-alive connection):
  plain: POST /shows/{id}/holds {"seats": [two free seats side by side]} then DELETE it
  best:  POST /shows/{id}/holds {"best": {"count": 2}} then DELETE it
A plain client picks its pair from a part of the show of its own, so plain holds never
collide; best-available clients all ask for the best seats, the case best available is for.
Prints holds/s (a hold and its release count as one), p50/p99 of the hold and any
non-2xx answers by status.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter

import common
import httpx

from app.domain import row_label

ROWS, PER_ROW = 40, 50


def token(secret: str, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {common.mint(secret, user)}"}


async def measure(
    url: str, secret: str, show_id: int, kind: str, clients: int, seconds: float
) -> tuple[int, list[float], Counter[int]]:
    latencies: list[float] = []
    failures: Counter[int] = Counter()
    done = 0
    deadline = time.monotonic() + seconds

    async def client(i: int) -> None:
        nonlocal done
        headers = token(secret, f"bench-{kind}-{i}-{time.time_ns()}")
        # a plain client's own seats: row i, pairs along it
        row = row_label(i % ROWS)
        pair = 0
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while time.monotonic() < deadline:
                if kind == "best":
                    body: dict[str, object] = {"best": {"count": 2}}
                else:
                    start = 1 + (pair * 2) % (PER_ROW - 1)
                    body = {"seats": [f"{row}{start}", f"{row}{start + 1}"]}
                    pair += 1
                began = time.perf_counter()
                held = await http.post(f"/shows/{show_id}/holds", json=body, headers=headers)
                latencies.append(time.perf_counter() - began)
                if held.status_code != 201:
                    failures[held.status_code] += 1
                    continue
                released = await http.delete(f"/holds/{held.json()['hold_id']}", headers=headers)
                if released.status_code != 204:
                    failures[released.status_code] += 1
                done += 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return done, latencies, failures


def run(args: argparse.Namespace, url: str, secret: str) -> None:
    show_id = common.create_show(
        url, secret, title="best-available bench", venue="bench", rows=ROWS,
        seats_per_row=PER_ROW, hold_seconds=3600, max_seats_per_customer=10_000,
    )  # fmt: skip
    print(
        f"show {show_id}: {ROWS} x {PER_ROW} seats, {args.clients} clients, {args.seconds} s each"
    )
    for kind in ("plain", "best"):
        holds, latencies, failures = asyncio.run(
            measure(url, secret, show_id, kind, args.clients, args.seconds)
        )
        latencies.sort()
        p50, p99 = (common.percentile(latencies, p) * 1000 for p in (50, 99))
        print(
            f"{kind:6} {holds / args.seconds:8.1f} holds/s  p50 {p50:6.1f} ms  "
            f"p99 {p99:6.1f} ms  failures {dict(failures) or 'none'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running server (default: start one)")
    common.add_service_options(parser)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    if args.url:
        run(args, args.url, os.environ["MODEX_JWT_SECRET"])
        return
    with common.bench_server(args.database_url, args.redis_url) as server:
        common.pin_self(1)
        run(args, server.url, server.secret)


if __name__ == "__main__":
    main()
