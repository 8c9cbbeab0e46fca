"""A popular show goes on sale: thousands of customers in the same second, all after the
same seats. Run with holds batched (the default) and with every hold alone
(MODEX_SEAT_BATCH=1), one after the other, and compare.

    .venv/bin/python loadtests/bench_onsale.py                       # 1,000 customers, 500 seats
    .venv/bin/python loadtests/bench_onsale.py --customers 2000 --rows 40

For each mode: a fresh `bench_<random>` database, one `python -m app serve` (one worker,
pinned to CPU 0, rate limits too high to refuse), one show of --rows x 25 seats. At one
moment every customer (own keep-alive connection, own token; the generator runs in this
process, pinned to CPU 1) asks to hold 1 or 2 seats it believes free (what the others got
so far, as a live map would show it), confirms on 201 and is done; on 409 it picks again.
It stops when every seat is booked (or after --limit seconds). Reported: time to sell out,
requests per second by answer, hold latency, server CPU; then SQL checks that every seat
is booked exactly once. Any 5xx or connection error is a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import common
import orjson

PER_ROW = 25

DOUBLE_BOOKED = """
SELECT count(*) FROM (
    SELECT label FROM bookings, unnest(seats) AS label
    WHERE show_id = $1 AND status = 'CONFIRMED' GROUP BY label HAVING count(*) > 1) twice
"""
BATCH_METRICS = (
    ("batches", "seat_batch_size_count"),
    ("in batches", "seat_batch_size_sum"),
    ("handed back busy", 'seat_requests_alone_total{reason="busy"}'),
)


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def sell_out(
    port: int, secret: str, show_id: int, labels: list[str], customers: int, limit: float,
    poll: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Every customer at once, each on its own keep-alive connection with its own token:
    with `poll`, it joins the waiting room and asks for its place every ~poll seconds until
    admitted; then it holds 1-2 seats it believes free (409: picks again), confirms and is
    done. Ends when every seat is booked, every customer gave up, or after `limit` s."""
    free = set(labels)
    booked: set[str] = set()
    answers: dict[str, int] = {}
    hold_latency: list[float] = []
    sold_out = asyncio.Event()

    def count(what: str) -> None:
        answers[what] = answers.get(what, 0) + 1

    async def wait_turn(client: common.RawClient, headers: dict[str, str], rng: Any) -> None:
        status, reply = await client.send(
            client.build("POST", f"/shows/{show_id}/queue", b"", headers)
        )
        count(f"join {status}")
        while not sold_out.is_set():
            place = orjson.loads(reply)
            if place.get("admitted"):
                headers["Admission-Token"] = place["admission"]
                return
            assert poll is not None
            await asyncio.sleep(poll * (0.5 + rng.random()))
            status, reply = await client.send(
                client.build("GET", f"/shows/{show_id}/queue", b"", headers)
            )
            count(f"queue poll {status}")

    async def customer(i: int, start_at: float) -> None:
        client = common.RawClient("127.0.0.1", port)
        token = common.mint(secret, f"fan-{i}")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        rng = random.Random(i)
        await client.connect()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        try:
            if poll is not None:
                await wait_turn(client, headers, rng)
            while not sold_out.is_set() and free:
                want = sorted(rng.sample(sorted(free), min(len(free), rng.choice((1, 2)))))
                body = orjson.dumps({"seats": want})
                t0 = time.perf_counter()
                status, reply = await client.send(
                    client.build("POST", f"/shows/{show_id}/holds", body, headers)
                )
                hold_latency.append(time.perf_counter() - t0)
                count(f"hold {status}")
                if status == 409:
                    continue
                if status != 201:
                    raise RuntimeError(f"hold answered {status}: {reply[:300]!r}")
                free.difference_update(want)
                hold_id = orjson.loads(reply)["hold_id"]
                once = {**headers, "Idempotency-Key": secrets.token_hex(8)}
                status, reply = await client.send(
                    client.build("POST", f"/holds/{hold_id}/confirm", b"", once)
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
    tasks = [asyncio.create_task(customer(i, start_at)) for i in range(customers)]
    everyone = asyncio.gather(*tasks, return_exceptions=True)
    sold = asyncio.create_task(sold_out.wait())
    await asyncio.wait([everyone, sold], timeout=limit + 2.0, return_when=asyncio.FIRST_COMPLETED)
    took = time.time() - start_at
    sold.cancel()
    # customers mid-request finish their answer; those still waiting their turn stop
    done, pending = await asyncio.wait(tasks, timeout=0.5)
    for task in pending:
        task.cancel()
    await everyone
    errors = [t.exception() for t in done if t.exception() is not None]
    hold_latency.sort()
    return {
        "seconds": took,
        "answers": answers,
        "requests": sum(answers.values()),
        "booked": len(booked),
        "errors": [repr(e) for e in errors[:3]],
        "error_count": len(errors),
        "unfinished": len(pending),
        "hold_p50_ms": common.percentile(hold_latency, 50) * 1000,
        "hold_p99_ms": common.percentile(hold_latency, 99) * 1000,
    }


async def check_booked(db_url: str, show_id: int) -> tuple[int, int]:
    """(seats not booked, seats booked twice) as the database has them."""
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        unbooked = await conn.fetchval(
            "SELECT count(*) FROM seats WHERE show_id = $1 AND status <> 'BOOKED'", show_id
        )
        return unbooked, await conn.fetchval(DOUBLE_BOOKED, show_id)
    finally:
        await conn.close()


def opens_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def run_sale(
    args: argparse.Namespace, admit_per_minute: int | None = None, **env: str
) -> dict[str, Any]:
    """One sale on a server of its own (`env` adds settings): a show of --rows x 25 seats,
    --customers customers, then the database's checks. With `admit_per_minute` the show
    has a waiting room, opening when the customers arrive: everyone is in the draw."""
    import psutil

    with common.bench_server(args.database_url, args.redis_url, **env) as server:
        show_id = common.create_show(
            server.url, server.secret, title="On sale", venue="Hall", rows=args.rows,
            seats_per_row=PER_ROW, hold_seconds=600,
        )  # fmt: skip
        if admit_per_minute:
            queue = {"opens_at": opens_in(2.5), "admit_per_minute": admit_per_minute}
            admin = common.mint(server.secret, "admin", "admin")
            status, _ = common.http_json(
                "PATCH", f"{server.url}/admin/shows/{show_id}", {"queue": queue}, token=admin
            )
            assert status == 200
        labels = common.seat_labels(server.url, show_id)
        cpu0 = psutil.Process(server.proc.pid).cpu_times()
        poll = args.poll if admit_per_minute else None
        result = asyncio.run(
            sell_out(server.port, server.secret, show_id, labels, args.customers, args.limit, poll)
        )
        cpu1 = psutil.Process(server.proc.pid).cpu_times()
        result["server_cpu_s"] = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        result["batches"] = {what: metric(metrics, name) for what, name in BATCH_METRICS}
        result["unbooked_in_db"], result["double_booked"] = asyncio.run(
            check_booked(server.db_url, show_id)
        )
        result["seats"] = len(labels)
        return result


def sold_right(r: dict[str, Any]) -> bool:
    """Every seat booked once, none twice, no customer failed."""
    return (
        r["booked"] == r["seats"]
        and r["unbooked_in_db"] == 0
        and r["double_booked"] == 0
        and not r["error_count"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    common.add_service_options(parser)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=20, help=f"rows of {PER_ROW} seats")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds before giving up")
    args = parser.parse_args()
    common.pin_self(1)  # the generator: CPU 1, the server CPU 0
    common.use_uvloop()
    results = {}
    for mode, batch in (("batched", 32), ("alone", 1)):
        results[mode] = run_sale(args, MODEX_SEAT_BATCH=str(batch))
    print(
        f"\nOn sale: {args.customers} customers at once, {results['batched']['seats']} seats, "
        "each customer holds 1-2 seats it believes free, confirms, done; 409: pick again"
    )
    header = (
        f"{'mode':<9}{'sold out s':>11}{'requests':>10}{'req/s':>8}{'hold p50':>10}"
        f"{'hold p99':>10}{'server CPU s':>13}  answers"
    )
    print(header)
    print("-" * len(header))
    for mode, r in results.items():
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["answers"].items()))
        print(
            f"{mode:<9}{r['seconds']:>11.2f}{r['requests']:>10}{r['requests'] / r['seconds']:>8.0f}"
            f"{r['hold_p50_ms']:>9.1f}ms{r['hold_p99_ms']:>8.1f}ms{r['server_cpu_s']:>13.2f}  "
            f"{answers}"
        )
    for mode, r in results.items():
        print(
            f"{mode}: booked {r['booked']}/{r['seats']}, unbooked in the database "
            f"{r['unbooked_in_db']}, seats booked twice {r['double_booked']}, errors "
            f"{r['error_count']} {r['errors']}, unfinished customers {r['unfinished']}; "
            + ", ".join(f"{k} {v:.0f}" for k, v in r["batches"].items())
            + f" -> {'OK' if sold_right(r) else 'FAILED'}"
        )
    b, a = results["batched"], results["alone"]
    print(f"sell-out time batched/alone: {b['seconds'] / a['seconds']:.2f}")


if __name__ == "__main__":
    main()
