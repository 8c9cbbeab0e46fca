"""Per-request observability: request id, duration histogram, one JSON log line on trouble."""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ops.logs import request_id
from app.ops.metrics import HTTP_REQUEST_DURATION

log = logging.getLogger("app.http")
SLOW_REQUEST = 1.0
# request ids only need to be unique: a random prefix per process and a counter, rather than
# a system call for fresh randomness on every request
_ID_PREFIX = secrets.token_hex(4)
_request_numbers = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_request_numbers):x}"


class ObserveRequests:
    """Pure ASGI (no BaseHTTPMiddleware): it sits on the hot path of every hold."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # labelled histogram children, looked up once per (method, route, status)
        self._durations: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:64]
                break
        rid = rid or new_request_id()
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            key = (scope["method"], template, status)
            histogram = self._durations.get(key)
            if histogram is None:
                histogram = HTTP_REQUEST_DURATION.labels(key[0], key[1], str(status))
                self._durations[key] = histogram
            histogram.observe(elapsed)
            if status >= 500 or elapsed > SLOW_REQUEST:
                log.warning(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 1),
                    },
                )
            request_id.reset(token)
