"""Who may call a route: the route table's `auth` (app/http/api.py), checked here before
the handler runs, so the table is the one place a route's roles are stated."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from app.auth import Principal, Role, principal_from_header, require_role
from app.services import services

Handler = Callable[[Request], Awaitable[Response]]


def authorized(handler: Handler, roles: tuple[Role, ...]) -> Handler:
    """`handler` behind a bearer token carrying one of `roles` (401 without a good
    token, 403 for another role). The principal goes where Starlette keeps a request's
    user, scope["user"], for caller()."""

    @functools.wraps(handler)
    async def checked(request: Request) -> Response:
        authorization = request.headers.get("authorization")
        principal = principal_from_header(services(request).settings.jwt_secret, authorization)
        request.scope["user"] = require_role(principal, *roles)
        return await handler(request)

    return checked


def caller(request: Request) -> Principal:
    """The principal authorized() let in. A route the table leaves open has none, so a
    handler there fails (500) rather than serve an unchecked caller."""
    principal = request.scope["user"]
    assert isinstance(principal, Principal)
    return principal


def counted_caller(request: Request) -> Principal:
    """The caller, counted against the rate limits (per user and per IP) before the
    handler does any work: for the writes."""
    principal = caller(request)
    services(request).limits.check(
        principal.user_id, request.client.host if request.client else None
    )
    return principal
