"""The benchmark's baseline: the least a Python server can do per seat write.

A minimal Starlette + asyncpg app, served by uvicorn with the settings `modex serve` uses
(one worker, httptools, uvloop, no access log), with a single endpoint that runs ONE

    UPDATE seats SET version = version + 1 WHERE show_id = $1 AND label = $2

on a seat row and answers 200 with a tiny JSON body. Its pool is the server's: the same
size (MODEX_DB_POOL_SIZE, default 20 as in app/config.py), and no reset on release. By
default asyncpg runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
whenever a connection goes back to the pool: a second round trip per request that the
server does not make (with it the baseline managed ~4,500 req/s, without ~6,500).

    BASELINE_DATABASE_URL=postgresql://... python loadtests/baseline_app.py --port 4100
    curl -X POST http://127.0.0.1:4100/bump/12/A1
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BUMP = "UPDATE seats SET version = version + 1 WHERE show_id = $1 AND label = $2"


async def _no_reset(conn: asyncpg.Connection) -> None:
    """As app/shards.py: nothing to reset, so no reset query on every release."""


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    size = int(os.environ.get("MODEX_DB_POOL_SIZE", "20"))
    app.state.pool = await asyncpg.create_pool(
        os.environ["BASELINE_DATABASE_URL"], min_size=size, max_size=size, reset=_no_reset
    )
    try:
        yield
    finally:
        await app.state.pool.close()


async def bump(request: Request) -> Response:
    status = await request.app.state.pool.execute(
        BUMP, int(request.path_params["show_id"]), request.path_params["label"]
    )
    if status != "UPDATE 1":
        return Response(b'{"error":"not_found"}', 404, media_type="application/json")
    return Response(b'{"ok":true}', 200, media_type="application/json")


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', 200, media_type="application/json")


app = Starlette(
    routes=[
        Route("/bump/{show_id}/{label}", bump, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ],
    lifespan=lifespan,
)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4100)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
