"""Health, readiness, metrics, guest tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from app import wire
from app.auth import Role, guest_user_id, mint_token
from app.errors import Forbidden
from app.http.io import JSONResponse
from app.ops.metrics import exposition
from app.services import services

GUEST_TOKEN_TTL = timedelta(hours=2)
READY_TIMEOUT = 2.0


async def health(request: Request) -> Response:
    return JSONResponse(wire.Status("ok"))


async def ready(request: Request) -> Response:
    """200 when every shard and Redis answer; 503 naming what did not."""
    svc = services(request)

    async def answers(probe: Awaitable[object]) -> bool:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await probe
            return True
        except Exception:
            return False

    shard_ok, redis_ok, meta_ok = await asyncio.gather(
        asyncio.gather(*(answers(shard.pool.fetchval("SELECT 1")) for shard in svc.router.shards)),
        answers(svc.redis.ping()),
        answers(svc.router.meta.fetchval("SELECT 1")),
    )
    failed = [f"shard{i}" for i, ok in enumerate(shard_ok) if not ok]
    if not meta_ok:
        failed.append("metadata")
    if not redis_ok:
        failed.append("redis")
    failed += [name for name, ok in svc.realtime.health().items() if not ok]
    if failed:
        return JSONResponse(wire.Ready("unavailable", failed), status_code=503)
    return JSONResponse(wire.Ready("ready"))


async def metrics(request: Request) -> Response:
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


async def guest_token(request: Request) -> Response:
    svc = services(request)
    if not svc.settings.guest_tokens:
        raise Forbidden("guest tokens are switched off on this server")
    client_ip = request.client.host if request.client else None
    svc.limits.check(None, client_ip)
    svc.limits.check_guest_token(client_ip)
    user_id = guest_user_id()
    token, expires_at = mint_token(svc.settings.jwt_secret, user_id, Role.CUSTOMER, GUEST_TOKEN_TTL)
    return JSONResponse(
        wire.Token(token, user_id, Role.CUSTOMER.value, expires_at), status_code=201
    )
