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
import time

import common
import orjson
from bench_onsale import PER_ROW, opens_in, run_sale, sold_right


async def adaptive_run(
    server: common.Server, args: argparse.Namespace
) -> list[tuple[float, float, str]]:
    import asyncpg

    admin = common.mint(server.secret, "admin", "admin")
    show_id = common.create_show(
        server.url, server.secret, title="Adaptive", venue="Hall", rows=40, seats_per_row=PER_ROW
    )
    queue = {"opens_at": opens_in(0), "admit_per_minute": 600, "adaptive": True}
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
    common.add_service_options(parser)
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
    common.pin_self(1)  # the generator: CPU 1, the server CPU 0
    common.use_uvloop()
    if not args.adaptive_only:
        results = {"no room": run_sale(args), "room": run_sale(args, args.admit_per_minute)}
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
            ok = sold_right(r)
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
