"""An on-sale with and without the waiting room (app/admission.py), in the same run, and
the adaptive rate answering a slow shard.

    .venv/bin/python loadtests/bench_admission.py                  # 5,000 customers, 1,000 seats
    .venv/bin/python loadtests/bench_admission.py --adaptive-only  # the adaptive rate alone

On sale: a fresh database and one `python -m app serve` per mode (bench_onsale.py's
set-up), one show of --rows x 25 seats, --customers customers arriving in the same second.
Without the room every customer hammers holds (1-2 seats it believes free, 409: pick
again) until it books or the show sells out: bench_onsale.py's customer. With the room
every customer joins the queue, asks for its place every --poll seconds (a page listens
on its WebSocket instead: those polls are counted apart), and once admitted does the same.
Reported per mode: time to sell out, hold p99, the 409 share of holds, and requests per
seat sold (all requests, and without the queue polls), then the SQL checks that every seat
is booked exactly once.

Adaptive: a room with `adaptive: true` and a steady flow of admitted customers holding
and releasing; after a while another session takes a SHARE lock on the seats table for
0.4 s of every 0.5 s (holds wait behind it), then lets go. The room's effective rate is
printed each second: it falls while holds are slow and climbs back after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
import orjson
from bench_onsale import DEFAULT_DB, DEFAULT_REDIS, DOUBLE_BOOKED, PER_ROW, sell_out


def _opens(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def sell_out_queued(
    port: int, secret: str, show_id: int, labels: list[str], args: Any
) -> dict[str, Any]:
    """Every customer joins the waiting room, waits its turn, then holds and confirms."""
    free = set(labels)
    booked: set[str] = set()
    answers: dict[str, int] = {}
    hold_latency: list[float] = []
    sold_out = asyncio.Event()

    def count(what: str) -> None:
        answers[what] = answers.get(what, 0) + 1

    async def customer(i: int, start_at: float) -> None:
        client = common.RawClient("127.0.0.1", port)
        token = common.mint(secret, f"fan-{i}")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        rng = random.Random(i)
        await client.connect()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        try:
            status, reply = await client.send(
                client.build("POST", f"/shows/{show_id}/queue", b"", headers)
            )
            count(f"join {status}")
            while not sold_out.is_set():
                place = orjson.loads(reply)
                if place.get("admitted"):
                    headers["Admission-Token"] = place["admission"]
                    break
                await asyncio.sleep(args.poll * (0.5 + rng.random()))
                status, reply = await client.send(
                    client.build("GET", f"/shows/{show_id}/queue", b"", headers)
                )
                count(f"queue poll {status}")
            while not sold_out.is_set() and free:
                want = sorted(rng.sample(sorted(free), min(len(free), rng.choice((1, 2)))))
                t0 = time.perf_counter()
                status, reply = await client.send(
                    client.build(
                        "POST", f"/shows/{show_id}/holds", orjson.dumps({"seats": want}), headers
                    )
                )
                hold_latency.append(time.perf_counter() - t0)
                count(f"hold {status}")
                if status == 409:
                    continue
                if status != 201:
                    raise RuntimeError(f"hold answered {status}: {reply[:300]!r}")
                free.difference_update(want)
                hold_id = orjson.loads(reply)["hold_id"]
                status, reply = await client.send(
                    client.build(
                        "POST",
                        f"/holds/{hold_id}/confirm",
                        b"",
                        {**headers, "Idempotency-Key": secrets.token_hex(8)},
                    )
                )
                count(f"confirm {status}")
                if status != 201:
                    raise RuntimeError(f"confirm answered {status}: {reply[:300]!r}")
                booked.update(want)
                if len(booked) == len(labels):
                    sold_out.set()
                return
        finally:
            client.close()

    start_at = time.time() + 2.0
    tasks = [asyncio.create_task(customer(i, start_at)) for i in range(args.customers)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sold_out.wait(), args.limit + 2.0)
    took = time.time() - start_at
    await asyncio.sleep(0.5)  # customers mid-request finish their answer
    for task in tasks:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [e for e in done if isinstance(e, Exception)]
    hold_latency.sort()
    return {
        "seconds": took,
        "answers": answers,
        "requests": sum(answers.values()),
        "booked": len(booked),
        "errors": [repr(e) for e in errors[:3]],
        "error_count": len(errors),
        "unfinished": 0,
        "hold_p50_ms": common.percentile(hold_latency, 50) * 1000,
        "hold_p99_ms": common.percentile(hold_latency, 99) * 1000,
    }


def run_mode(args: argparse.Namespace, queued: bool) -> dict[str, Any]:
    import asyncpg

    with common.bench_server(args.database_url, args.redis_url) as server:
        admin = common.mint(server.secret, "admin", "admin")
        body = {
            "title": "On sale",
            "venue": "Hall",
            "starts_at": "2030-01-01T20:00:00Z",
            "rows": args.rows,
            "seats_per_row": PER_ROW,
            "hold_seconds": 600,
        }
        status, show = common.http_json("POST", f"{server.url}/admin/shows", body, token=admin)
        assert status == 201, show
        if queued:  # opens when the customers arrive: everyone is in the draw
            queue = {"opens_at": _opens(2.5), "admit_per_minute": args.admit_per_minute}
            status, _ = common.http_json(
                "PATCH", f"{server.url}/admin/shows/{show['id']}", {"queue": queue}, token=admin
            )
            assert status == 200
        status, seat_map = common.http_json("GET", f"{server.url}/shows/{show['id']}/seats")
        labels = [seat["label"] for seat in seat_map["seats"]]
        run = sell_out_queued if queued else sell_out
        result: dict[str, Any] = asyncio.run(
            run(server.port, server.secret, show["id"], labels, args)
        )

        async def check() -> tuple[int, int]:
            conn = await asyncpg.connect(server.db_url)
            try:
                unbooked = await conn.fetchval(
                    "SELECT count(*) FROM seats WHERE show_id = $1 AND status <> 'BOOKED'",
                    show["id"],
                )
                return unbooked, await conn.fetchval(DOUBLE_BOOKED, show["id"])
            finally:
                await conn.close()

        result["unbooked_in_db"], result["double_booked"] = asyncio.run(check())
        result["seats"] = len(labels)
        return result


async def adaptive_run(server: Any, args: argparse.Namespace) -> list[tuple[float, float, str]]:
    import asyncpg

    admin = common.mint(server.secret, "admin", "admin")
    status, show = common.http_json(
        "POST",
        f"{server.url}/admin/shows",
        {"title": "Adaptive", "venue": "Hall", "starts_at": "2030-01-01T20:00:00Z",
         "rows": 40, "seats_per_row": PER_ROW},
        token=admin,
    )  # fmt: skip
    assert status == 201
    show_id = show["id"]
    queue = {"opens_at": _opens(0), "admit_per_minute": 600, "adaptive": True}
    common.http_json("PATCH", f"{server.url}/admin/shows/{show_id}", {"queue": queue}, token=admin)
    stop = asyncio.Event()
    phase = {"now": "fast"}

    async def shopper(i: int) -> None:
        """Joins, waits its turn, then holds and releases a seat of its own again and again."""
        client = common.RawClient("127.0.0.1", server.port)
        headers = {"Authorization": f"Bearer {common.mint(server.secret, f'a{i}')}"}
        await client.connect()
        try:
            await client.send(client.build("POST", f"/shows/{show_id}/queue", b"", headers))
            while not stop.is_set():
                _, reply = await client.send(
                    client.build("GET", f"/shows/{show_id}/queue", b"", headers)
                )
                place = orjson.loads(reply)
                if place.get("admitted"):
                    headers["Admission-Token"] = place["admission"]
                    break
                await asyncio.sleep(1)
            seat = orjson.dumps({"seats": [f"{chr(65 + i // PER_ROW)}{i % PER_ROW + 1}"]})
            while not stop.is_set():
                status, reply = await client.send(
                    client.build("POST", f"/shows/{show_id}/holds", seat, headers)
                )
                if status == 201:
                    hold_id = orjson.loads(reply)["hold_id"]
                    await client.send(client.build("DELETE", f"/holds/{hold_id}", b"", headers))
                await asyncio.sleep(0.2)
        finally:
            client.close()

    async def slow_shard() -> None:
        """A SHARE lock on seats for 0.4 s of every 0.5 s: every hold waits behind it."""
        conn = await asyncpg.connect(server.db_url)
        try:
            await asyncio.sleep(args.fast_s)
            phase["now"] = "slow"
            until = time.monotonic() + args.slow_s
            while time.monotonic() < until:
                async with conn.transaction():
                    await conn.execute("LOCK TABLE seats IN SHARE MODE")
                    await asyncio.sleep(0.4)
                await asyncio.sleep(0.1)
            phase["now"] = "recovered"
        finally:
            await conn.close()

    tasks = [asyncio.create_task(shopper(i)) for i in range(args.shoppers)]
    slow = asyncio.create_task(slow_shard())
    samples: list[tuple[float, float, str]] = []
    started = time.monotonic()
    while time.monotonic() - started < args.fast_s + args.slow_s + args.recover_s:
        await asyncio.sleep(1)
        _, fresh = common.http_json("GET", f"{server.url}/shows/{show_id}")
        rate = fresh["queue"]["effective_per_minute"]
        samples.append((time.monotonic() - started, rate, phase["now"]))
        print(f"{samples[-1][0]:5.0f}s  {phase['now']:<9} admit/min {rate:7.1f}", flush=True)
    stop.set()
    await slow
    await asyncio.gather(*tasks, return_exceptions=True)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--rows", type=int, default=40, help=f"rows of {PER_ROW} seats")
    parser.add_argument("--admit-per-minute", type=int, default=3000)
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between queue polls")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds before giving up")
    parser.add_argument("--adaptive-only", action="store_true")
    parser.add_argument("--shoppers", type=int, default=200)
    parser.add_argument("--fast-s", type=float, default=20.0)
    parser.add_argument("--slow-s", type=float, default=20.0)
    parser.add_argument("--recover-s", type=float, default=25.0)
    args = parser.parse_args()
    if common.has_taskset():
        os.sched_setaffinity(0, {1})  # the generator: CPU 1, the server CPU 0
    common.use_uvloop()
    if not args.adaptive_only:
        results = {"no room": run_mode(args, False), "room": run_mode(args, True)}
        print(
            f"\nOn sale: {args.customers} customers at once for {results['room']['seats']} "
            f"seats; the room admits {args.admit_per_minute}/min, queue polls every "
            f"~{args.poll:g} s"
        )
        header = (
            f"{'mode':<9}{'sold out s':>11}{'hold p99':>10}{'409 share':>10}"
            f"{'req/seat':>9}{'w/o polls':>10}  checks"
        )
        print(header)
        print("-" * len(header))
        for mode, r in results.items():
            holds = sum(v for k, v in r["answers"].items() if k.startswith("hold"))
            conflicts = r["answers"].get("hold 409", 0)
            polls = sum(v for k, v in r["answers"].items() if k.startswith("queue poll"))
            ok = (
                r["booked"] == r["seats"]
                and r["unbooked_in_db"] == 0
                and r["double_booked"] == 0
                and not r["error_count"]
            )
            print(
                f"{mode:<9}{r['seconds']:>11.2f}{r['hold_p99_ms']:>8.1f}ms"
                f"{conflicts / max(1, holds):>10.1%}{r['requests'] / r['seats']:>9.2f}"
                f"{(r['requests'] - polls) / r['seats']:>10.2f}  "
                f"{'OK' if ok else 'FAILED'} (booked {r['booked']}, twice {r['double_booked']}, "
                f"errors {r['error_count']} {r['errors']})"
            )
    print("\nAdaptive rate (admit_per_minute 600, adaptive): a slow shard, then a fast one")
    with common.bench_server(args.database_url, args.redis_url) as server:
        samples = asyncio.run(adaptive_run(server, args))
    for name in ("fast", "slow", "recovered"):
        rates = [rate for _, rate, phase in samples if phase == name]
        if rates:
            print(f"{name:<9} admit/min: first {rates[0]:.0f}, last {rates[-1]:.0f}")


if __name__ == "__main__":
    main()
