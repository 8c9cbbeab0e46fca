"""The fan-out baseline for bench_fanout.py: a bare `websockets.broadcast()` server.

websockets' new asyncio API (`websockets.asyncio.server.serve`), compression off, no
pings, on uvloop. A client sends `{"type":"subscribe",...}` and gets an rle snapshot of
`--seats` seats (all version 0), then every broadcast frame. A control client on
`/control` sends `{"rate": R, "size": S, "start": t0, "end": t1}`: from t0 to t1 the server
broadcasts R frames/s shaped like the real server's `seats` frames (one seat change, a
`ts` of when it was built, padded to S bytes) to every subscribed client with ONE
`broadcast()` call per frame. The frame is built once; nothing else is done per client.

    python loadtests/fanout_baseline.py --port 4200 --seats 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from http import HTTPStatus
from typing import Any

import common
from websockets.asyncio.server import ServerConnection, broadcast, serve

CLIENTS: set[ServerConnection] = set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seats", type=int, default=200)
    args = parser.parse_args()
    common.raise_nofile()
    import uvloop

    uvloop.run(run(args))


async def run(args: argparse.Namespace) -> None:
    labels = [f"A{i + 1}" for i in range(args.seats)]
    versions = [0] * args.seats
    state: dict[str, Any] = {"n": 0}

    def snapshot() -> str:
        runs: list[str] = []
        prev, count = None, 0
        for v in versions:
            if v == prev:
                count += 1
            else:
                if count:
                    runs.append(f"{prev}*{count}" if count > 1 else str(prev))
                prev, count = v, 1
        if count:
            runs.append(f"{prev}*{count}" if count > 1 else str(prev))
        return json.dumps(
            {
                "type": "snapshot",
                "show_id": 1,
                "offset": f"b:{state['n']}",
                "encoding": "rle",
                "count": len(versions),
                "status": f"A{len(versions)}",
                "version": ",".join(runs),
            },
            separators=(",", ":"),
        )

    async def pump(cfg: dict[str, Any]) -> None:
        rate, size = float(cfg["rate"]), int(cfg["size"])
        start, end = cfg["start"], cfg["end"]
        interval = 1.0 / rate
        k = 0
        await asyncio.sleep(max(0.0, start - time.time()))
        while True:
            due = start + k * interval
            if due >= end or time.time() >= end:
                break  # when it cannot keep up it stops on time (fewer frames than offered)
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # behind: let the loop do its I/O, then go on
            k += 1
            i = state["n"] % len(labels)
            state["n"] += 1
            versions[i] += 1
            head = (
                f'{{"type":"seats","show_id":1,"offset":"b:{state["n"]}","changes":'
                f'[{{"label":"{labels[i]}","status":"HELD","version":{versions[i]}}}],'
                f'"ts":{time.time() * 1000:.0f}'
            )
            pad = max(0, size - len(head) - 9)
            broadcast(CLIENTS, head + ',"pad":"' + "x" * pad + '"}')

    async def handler(ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path == "/control":
            async for message in ws:
                cfg = json.loads(message)
                await pump(cfg)
                await ws.send(json.dumps({"done": True, "frames": state["n"]}))
            return
        try:
            async for message in ws:
                try:
                    frame = json.loads(message)
                except ValueError:
                    continue
                if frame.get("type") == "subscribe":
                    await ws.send(snapshot())
                    CLIENTS.add(ws)
        finally:
            CLIENTS.discard(ws)

    def process_request(connection: ServerConnection, request: Any) -> Any:
        if request.path == "/health":
            return connection.respond(HTTPStatus.OK, "ok\n")
        return None

    async with serve(
        handler,
        "127.0.0.1",
        args.port,
        compression=None,
        ping_interval=None,
        process_request=process_request,
        backlog=4096,
        max_queue=16,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    main()
