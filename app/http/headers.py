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


COMMON = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]


def page_headers(ancestors: str) -> list[tuple[bytes, bytes]]:
    headers = [
        *COMMON,
        (b"content-security-policy", PAGE_POLICY.format(ancestors=ancestors).encode()),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    if ancestors == "'none'":  # for browsers older than frame-ancestors
        headers.append((b"x-frame-options", b"DENY"))
    return headers


def frame_ancestors(sources: tuple[str, ...]) -> str:
    """The frame-ancestors source list for MODEX_FRAME_ANCESTORS; nobody when empty."""
    for source in sources:
        if not _SOURCE.fullmatch(source):
            raise ValueError(f"MODEX_FRAME_ANCESTORS: {source!r} is not a CSP source")
    return " ".join(sources) or "'none'"


class SecurityHeaders:
    """Pure ASGI: adds a fixed header list to each response start, by content type.

    MODEX_FRAME_ANCESTORS opens only the kiosk pages to framing (venue signage); a framed
    /admin or /map could be clickjacked, so they always refuse it."""

    def __init__(self, app: ASGIApp, framers: tuple[str, ...] = ()) -> None:
        self.app = app
        self.page_headers = page_headers("'none'")
        self.kiosk_headers = page_headers(frame_ancestors(framers))
        self.other_headers = [*COMMON, (b"content-security-policy", OTHER_POLICY.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page_headers = (
            self.kiosk_headers if scope["path"].startswith("/kiosk/") else self.page_headers
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                html = any(
                    name == b"content-type" and value.startswith(b"text/html")
                    for name, value in headers
                )
                headers += page_headers if html else self.other_headers
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
