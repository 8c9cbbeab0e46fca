"""Every client-facing failure becomes `{"error", "message", ...}` with its status, here only."""

from __future__ import annotations

import logging

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app import wire
from app.errors import DatabaseUnavailable, ModexError
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


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    body = wire.Error(error="internal_error", message="something went wrong on our side")
    return JSONResponse(body, status_code=500)


EXCEPTION_HANDLERS = {
    ModexError: modex_error,
    HTTPException: http_error,
    **{kind: database_unavailable for kind in CONNECTION_ERRORS},
    Exception: unexpected_error,
}
