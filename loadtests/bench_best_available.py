"""Best-available holds per second against plain holds per second, on the same show, in
the same run, through a running server.

    MODEX_JWT_SECRET=... .venv/bin/python loadtests/bench_best_available.py \
        --url http://127.0.0.1:4000 --seconds 10 --clients 32

Creates a show (40 rows x 50 seats, hold 3600 s), then measures in turn, for --seconds
each, --clients concurrent customers (each its own token and keep-alive connection):
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
import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import jwt

ROWS, PER_ROW = 40, 50


def token(secret: str, user: str, role: str = "customer") -> dict[str, str]:
    exp = datetime.now(UTC) + timedelta(hours=2)
    value = jwt.encode({"sub": user, "role": role, "exp": exp}, secret, algorithm="HS256")
    return {"Authorization": f"Bearer {value}"}


def row_label(index: int) -> str:
    letters = ""
    n = index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


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


async def main(args: argparse.Namespace) -> None:
    secret = os.environ["MODEX_JWT_SECRET"]
    async with httpx.AsyncClient(base_url=args.url, timeout=60) as http:
        created = await http.post(
            "/admin/shows",
            json={
                "title": "best-available bench",
                "venue": "bench",
                "starts_at": "2030-01-01T20:00:00Z",
                "rows": ROWS,
                "seats_per_row": PER_ROW,
                "hold_seconds": 3600,
                "max_seats_per_customer": 10_000,
            },
            headers=token(secret, "bench-admin", "admin"),
        )
        created.raise_for_status()
        show_id = created.json()["id"]
    print(
        f"show {show_id}: {ROWS} x {PER_ROW} seats, {args.clients} clients, {args.seconds} s each"
    )
    for kind in ("plain", "best"):
        holds, latencies, failures = await measure(
            args.url, secret, show_id, kind, args.clients, args.seconds
        )
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
        print(
            f"{kind:6} {holds / args.seconds:8.1f} holds/s  p50 {q[49] * 1000:6.1f} ms  "
            f"p99 {q[98] * 1000:6.1f} ms  failures {dict(failures) or 'none'}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:4000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    asyncio.run(main(parser.parse_args()))
