"""Every client-facing failure becomes `{"error", "message", ...}` with its status, here only."""

from __future__ import annotations

import logging
import traceback

import msgspec
import redis.exceptions
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app import wire
from app.errors import DatabaseUnavailable, ModexError, RedisUnavailable
from app.http.io import JSONResponse
from app.shards import CONNECTION_ERRORS

log = logging.getLogger("app.http")


def error_response(exc: ModexError) -> Response:
    # the details wire.Error has a field for go out; the rest stays in the logs
    details = {k: v for k, v in exc.details.items() if k in wire.Error.__struct_fields__}
    retry_after = details.get("retry_after")
    body = msgspec.convert({"error": exc.code, "message": exc.message, **details}, wire.Error)
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def modex_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModexError)
    return error_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    body = wire.Error(error=codes.get(exc.status_code, "http_error"), message=str(exc.detail))
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def database_unavailable(request: Request, exc: Exception) -> Response:
    """A connection to a database failed where no shard's breaker saw it (the metadata
    database's queries): the client may try again, so 503, not 500."""
    log.warning("database connection failed: %r", exc, extra={"path": request.url.path})
    unavailable = DatabaseUnavailable("a database did not answer; try again", retry_after=1)
    return error_response(unavailable)


async def redis_unavailable(request: Request, exc: Exception) -> Response:
    """Redis did not answer where no caller handled it: the client may try again."""
    log.warning("redis connection failed: %r", exc, extra={"path": request.url.path})
    return error_response(RedisUnavailable("a data store did not answer; try again", retry_after=1))


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    body = wire.Error(error="internal_error", message="something went wrong on our side")
    return JSONResponse(body, status_code=500)


async def socket_error(request: Request, exc: Exception) -> Response:
    """OSError (TimeoutError among them) says nothing of whose socket or file failed: it is
    the database's only when asyncpg raised it. A Redis socket, a file or anything else
    of ours is an unexpected error, not a database to retry."""
    if raised_by(exc, "asyncpg."):
        return await database_unavailable(request, exc)
    if raised_by(exc, "redis."):
        return await redis_unavailable(request, exc)
    return await unexpected_error(request, exc)


def raised_by(exc: BaseException, package: str) -> bool:
    # the metadata pool is used directly in several modules, so the error is placed by
    # where it was raised rather than caught at each use; only on the error path
    return any(
        str(frame.f_globals.get("__name__", "")).startswith(package)
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


# asyncpg's own connection errors are the database's wherever they come from
DATABASE_ERRORS = tuple(kind for kind in CONNECTION_ERRORS if not issubclass(kind, OSError))

EXCEPTION_HANDLERS = {
    ModexError: modex_error,
    HTTPException: http_error,
    **{kind: database_unavailable for kind in DATABASE_ERRORS},
    # redis-py's own connection errors (not OSErrors); its socket errors come as OSError
    redis.exceptions.ConnectionError: redis_unavailable,
    redis.exceptions.TimeoutError: redis_unavailable,
    OSError: socket_error,
    Exception: unexpected_error,
}
