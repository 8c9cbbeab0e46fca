"""The load generator of bench_holds.py, in a process of its own (pinned to the load CPU):

    python loadtests/holds_driver.py CONFIG.json

Every client of cfg["clients"] (its token and seats) gets its own keep-alive connection
(loadtests/common.py's raw client) and, from the wall-clock time cfg["start_at"], loops:
  full:     POST /shows/{id}/holds {"seats": [1 or 2 seats]} -> 201, DELETE /holds/{id} -> 204
  baseline: POST /bump/{show}/{seat} -> 200
Requests answered in the measured window (after cfg["warmup"], for cfg["seconds"]) are
counted and timed; the result, with the generator's own CPU time, goes to cfg["out"].
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import common


async def _drive(cfg: dict[str, Any]) -> dict[str, Any]:
    host, port = cfg["host"], cfg["port"]
    mode = cfg["mode"]
    start_at = cfg["start_at"]
    window_start = start_at + cfg["warmup"]
    window_end = window_start + cfg["seconds"]
    perf_offset = time.time() - time.perf_counter()  # wall clock <-> perf_counter
    w_start = window_start - perf_offset
    w_end = window_end - perf_offset

    latencies: list[float] = []  # seconds, requests completed in the window
    kinds: dict[str, list[float]] = {"hold": [], "release": [], "bump": []}
    failures: dict[str, int] = {}
    samples: list[str] = []
    errors: dict[str, int] = {}
    counters = {"warmup_requests": 0}

    def record(kind: str, t0: float, t1: float, status: int, body: bytes, expected: int) -> bool:
        """Count one answered request (in the window, or as warm-up); True if it was the
        expected status."""
        in_window = w_start <= t1 < w_end
        if in_window:
            latencies.append(t1 - t0)
            kinds[kind].append(t1 - t0)
        else:
            counters["warmup_requests"] += 1
        if status == expected:
            return True
        if in_window:
            key = f"{kind} {status}"
            failures[key] = failures.get(key, 0) + 1
            if len(samples) < 5:
                samples.append(f"{key}: {body[:300].decode(errors='replace')}")
        return False

    async def send(client: common.RawClient, raw: bytes) -> tuple[int, bytes] | None:
        """The answer; None for a request that got none (counted, and the client
        reconnects on its next send)."""
        try:
            return await client.send(raw)
        except (common.HTTPError, OSError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            client.conn = None
            return None

    clients = []
    for spec in cfg["clients"]:
        client = common.RawClient(host, port)
        await client.connect()
        clients.append((client, spec))

    async def run_full(client: common.RawClient, spec: dict[str, Any]) -> None:
        import orjson

        show_id = cfg["show_id"]
        headers = {"Authorization": f"Bearer {spec['token']}", "Content-Type": "application/json"}
        seats = spec["seats"]
        hold_reqs = [
            client.build(
                "POST",
                f"/shows/{show_id}/holds",
                orjson.dumps({"seats": seats[: 1 + (k % 2)]}),
                headers,
            )
            for k in range(2)
        ]
        auth_only = {"Authorization": headers["Authorization"]}
        k = 0
        perf = time.perf_counter
        while True:
            t0 = perf()
            if t0 >= w_end:
                return
            answer = await send(client, hold_reqs[k & 1])
            if answer is None:
                await asyncio.sleep(0.01)
                continue
            t1 = perf()
            k += 1
            if not record("hold", t0, t1, *answer, expected=201):
                continue
            hold_id = orjson.loads(answer[1])["hold_id"]
            answer = await send(client, client.build("DELETE", f"/holds/{hold_id}", b"", auth_only))
            if answer is not None:
                record("release", t1, perf(), *answer, expected=204)

    async def run_baseline(client: common.RawClient, spec: dict[str, Any]) -> None:
        raw = client.build("POST", f"/bump/{cfg['show_id']}/{spec['seats'][0]}")
        perf = time.perf_counter
        while True:
            t0 = perf()
            if t0 >= w_end:
                return
            answer = await send(client, raw)
            if answer is None:
                await asyncio.sleep(0.01)
                continue
            record("bump", t0, perf(), *answer, expected=200)

    # everyone starts together, at the wall-clock time the orchestrator chose
    delay = start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    runner = run_full if mode == "full" else run_baseline
    tasks = [asyncio.create_task(runner(c, s)) for c, s in clients]

    # the generator's own CPU during the measured window
    await asyncio.sleep(max(0.0, window_start - time.time()))
    cpu0 = time.process_time()
    await asyncio.sleep(max(0.0, window_end - time.time()))
    cpu1 = time.process_time()
    await asyncio.gather(*tasks)
    for client, _ in clients:
        client.close()
    return {
        "requests": len(latencies),
        "latencies": latencies,
        "kinds": {k: v for k, v in kinds.items() if v},
        "failures": failures,
        "failure_samples": samples,
        "connection_errors": errors,
        "cpu_seconds": cpu1 - cpu0,
        "warmup_requests": counters["warmup_requests"],
    }


def main() -> None:
    config_path = sys.argv[1]
    loop_name = common.use_uvloop()
    with open(config_path) as f:
        cfg = json.load(f)
    result = asyncio.run(_drive(cfg))
    result["loop"] = loop_name
    with open(cfg["out"], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
