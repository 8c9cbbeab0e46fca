"""Security headers on every response: a strict CSP on the pages, nosniff everywhere."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The pages load only their own files (ES modules, one stylesheet, an SVG icon) and talk
# only to their own origin ('self' covers same-origin ws:/wss: too). No inline script or
# style: seat positions and colours are set through element.style, which CSP allows.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors {ancestors}"
)
# JSON, scripts, stylesheets, SVG: nothing opened on its own may run or load anything
OTHER_POLICY = "default-src 'none'; frame-ancestors 'none'"
# a host source or 'self': no spaces, separators or quotes that would end the directive
_SOURCE = re.compile(r"'self'|[^\s;,']+")


def frame_ancestors(sources: tuple[str, ...]) -> str:
    """The frame-ancestors source list for MODEX_FRAME_ANCESTORS; nobody when empty."""
    for source in sources:
        if not _SOURCE.fullmatch(source):
            raise ValueError(f"MODEX_FRAME_ANCESTORS: {source!r} is not a CSP source")
    return " ".join(sources) or "'none'"


class SecurityHeaders:
    """Pure ASGI: adds a fixed header list to each response start, by content type."""

    def __init__(self, app: ASGIApp, framers: tuple[str, ...] = ()) -> None:
        self.app = app
        common = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
        ancestors = frame_ancestors(framers)
        self.page_headers = [
            *common,
            (b"content-security-policy", PAGE_POLICY.format(ancestors=ancestors).encode()),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if not framers:  # for browsers older than frame-ancestors
            self.page_headers.append((b"x-frame-options", b"DENY"))
        self.other_headers = [*common, (b"content-security-policy", OTHER_POLICY.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                html = any(
                    name == b"content-type" and value.startswith(b"text/html")
                    for name, value in headers
                )
                headers += self.page_headers if html else self.other_headers
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
