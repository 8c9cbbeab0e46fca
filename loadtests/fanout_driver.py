"""Seat changes at a fixed rate for bench_fanout.py, and the Redis-subscriber baseline.

    python loadtests/fanout_driver.py drive CONFIG.json     # hold then release, real API
    python loadtests/fanout_driver.py redis-sub CONFIG.json # one asyncio Redis subscriber

drive: every 2/rate seconds a free seat of the pool is held (POST /shows/{id}/holds, one
seat, the seat's own customer token) and released `hold_time` later (DELETE /holds/{id});
a hold and a release each count as one seat change, so `rate` changes/s. A seat is only
reused after its release answered (distinct seats in flight). Requests go over a pool of
keep-alive connections (loadtests/common.py's raw client).

redis-sub: SUBSCRIBEs the show's channel (no WebSocket layer) and measures, per published
event, receive time - the event's `ts` (commit time): Redis pub/sub -> Python delivery.
Both write a JSON result to cfg["out"].
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque
from typing import Any

import common
import orjson


async def drive(cfg: dict[str, Any]) -> dict[str, Any]:
    host, port, show_id = cfg["host"], cfg["port"], cfg["show_id"]
    rate = float(cfg["rate"])
    hold_time = float(cfg.get("hold_time", 1.0))
    start, end = cfg["start"], cfg["end"]  # wall clock: holds start in [start, end)
    w_start, w_end = cfg["w_start"], cfg["w_end"]
    pool: asyncio.Queue[common.RawClient] = asyncio.Queue()
    for _ in range(cfg.get("connections", 16)):
        client = common.RawClient(host, port)
        await client.connect()
        pool.put_nowait(client)
    free: deque[int] = deque(range(len(cfg["seats"])))
    seats, tokens = cfg["seats"], cfg["tokens"]
    res: dict[str, Any] = {
        "holds": 0,
        "releases": 0,
        "changes_in_window": 0,
        "skipped_no_free_seat": 0,
        "failures": {},
        "lat": [],
    }

    async def call(raw: bytes) -> tuple[int, bytes, float]:
        client = await pool.get()
        t0 = time.perf_counter()
        try:
            status, body = await client.send(raw)
        except (common.HTTPError, OSError) as exc:
            client.conn = None
            status, body = 0, str(exc).encode()
        finally:
            pool.put_nowait(client)
        return status, body, time.perf_counter() - t0

    def fail(what: str, status: int, body: bytes) -> None:
        key = f"{what} {status}"
        res["failures"][key] = res["failures"].get(key, 0) + 1
        if len(res.setdefault("samples", [])) < 3:
            res["samples"].append(f"{key}: {body[:200].decode(errors='replace')}")

    builder = common.RawClient(host, port)

    async def cycle(i: int) -> None:
        auth = {"Authorization": f"Bearer {tokens[i]}"}
        try:
            raw = builder.build(
                "POST",
                f"/shows/{show_id}/holds",
                orjson.dumps({"seats": [seats[i]]}),
                {**auth, "Content-Type": "application/json"},
            )
            status, body, dt = await call(raw)
            now = time.time()
            if status != 201:
                fail("hold", status, body)
                await asyncio.sleep(hold_time)
                return
            res["holds"] += 1
            res["lat"].append(dt)
            if w_start <= now < w_end:
                res["changes_in_window"] += 1
            hold_id = orjson.loads(body)["hold_id"]
            await asyncio.sleep(hold_time)
            status, body, dt = await call(builder.build("DELETE", f"/holds/{hold_id}", b"", auth))
            now = time.time()
            if status != 204:
                fail("release", status, body)
                return
            res["releases"] += 1
            res["lat"].append(dt)
            if w_start <= now < w_end:
                res["changes_in_window"] += 1
        finally:
            free.append(i)

    await asyncio.sleep(max(0.0, start - time.time()))
    interval = 2.0 / rate
    tasks: set[asyncio.Task[None]] = set()
    c0 = time.process_time()
    k = 0
    while True:
        due = start + k * interval
        if due >= end:
            break
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        k += 1
        if not free:
            res["skipped_no_free_seat"] += 1
            continue
        task = asyncio.create_task(cycle(free.popleft()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    res["cpu_s"] = time.process_time() - c0
    lat = sorted(res.pop("lat"))
    res["requests"] = len(lat)
    res["req_p50_ms"] = common.percentile(lat, 50) * 1000 if lat else None
    res["req_p99_ms"] = common.percentile(lat, 99) * 1000 if lat else None
    while not pool.empty():
        pool.get_nowait().close()
    return res


async def redis_sub(cfg: dict[str, Any]) -> dict[str, Any]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(cfg["redis_url"])
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(cfg["channel"])
    w_start, w_end = cfg["w_start"], cfg["w_end"]
    lat: list[float] = []
    n_total = 0

    async def read() -> None:
        nonlocal n_total
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None or message["type"] != "message":
                continue
            now = time.time()
            data = message["data"]
            _, _, event = data.partition(b" ")
            try:
                ts = orjson.loads(event).get("ts")
            except orjson.JSONDecodeError:
                continue
            n_total += 1
            if ts is not None and w_start <= now < w_end:
                lat.append(now - ts / 1000)  # ts: epoch ms

    task = asyncio.create_task(read())
    await asyncio.sleep(max(0.0, w_end - time.time()) + 0.5)
    task.cancel()
    await pubsub.aclose()
    await client.aclose()
    lat.sort()
    return {
        "events": len(lat),
        "events_total": n_total,
        "p50_ms": common.percentile(lat, 50) * 1000 if lat else None,
        "p95_ms": common.percentile(lat, 95) * 1000 if lat else None,
        "p99_ms": common.percentile(lat, 99) * 1000 if lat else None,
        "max_ms": lat[-1] * 1000 if lat else None,
    }


def main() -> None:
    common.raise_nofile()
    mode, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        cfg = json.load(f)
    common.use_uvloop()
    result = asyncio.run(drive(cfg) if mode == "drive" else redis_sub(cfg))
    with open(cfg["out"], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
