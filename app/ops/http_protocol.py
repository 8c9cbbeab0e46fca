"""The HTTP/1.1 protocol uvicorn runs: httptools, with a bound on request header bytes.

uvicorn's h11 parser has a bound (`h11_max_incomplete_event_size`, answered 400); its
httptools parser (llhttp) has none. It read an 8 MB Authorization header, concatenating it
chunk by chunk inside httptools (64 MB cost 3.4 s of CPU and 160 MB), and handed it to the
app. h11 costs ~50 us more per request than httptools (20 against 70 us of server CPU for
a bare request), so we keep httptools and bound it here. This leans on uvicorn's parser
callbacks (`on_message_begin`, `on_url`, `on_header`, `on_headers_complete`) and its
`send_400_response`; `modex serve --http h11` runs uvicorn's own bound, and
tests/test_security_headers.py sends the same requests to both.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# h11's default, so both parsers draw the line at the same place; nginx's default
# (large_client_header_buffers 4 8k) allows 32 KiB in all, but a request of ours carries
# a token of ~300 bytes and no cookies
MAX_HEADER_BYTES = 16 * 1024

_BODY = json.dumps(
    {
        "error": "headers_too_large",
        "message": f"request line and headers may take at most {MAX_HEADER_BYTES} bytes",
    }
).encode()
REFUSAL = b"".join(
    [
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(_BODY),
        b"x-content-type-options: nosniff\r\n",
        b"connection: close\r\n\r\n",
        _BODY,
    ]
)


class HeadersTooLarge(Exception):
    """Raised from a parser callback: stops llhttp before the request reaches the app."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Answers 431 and closes once a request's line and headers pass MAX_HEADER_BYTES.

    Two counts, both never more than the bytes really sent, so neither refuses a request
    under the bound: what the parser handed over (the URL and each complete header, exact),
    and whole chunks that arrived while a header was still incomplete (httptools buffers
    those out of sight until the header ends). The second keeps what one request can make
    the server buffer to MAX_HEADER_BYTES plus a read or two.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._messages = 0  # requests begun on this connection
        self._in_headers = False
        self._parsed = 0  # URL and complete header lines of the current request
        self._buffered = 0  # whole chunks received while its headers were incomplete
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        # the request's headers began in an earlier chunk: if they are still incomplete
        # after this one, every byte of it was header
        pending = self._messages if self._in_headers else None
        super().data_received(data)
        if pending == self._messages and self._in_headers and not self._refused:
            self._buffered += len(data)
            if self._buffered > MAX_HEADER_BYTES:
                self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._messages += 1
        self._in_headers = True
        self._parsed = self._buffered = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # the parser's error that HeadersTooLarge caused: the client has its 431 already
        if not self._refused:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._parsed += size
        if self._parsed > MAX_HEADER_BYTES:
            self._refuse()
            raise HeadersTooLarge

    def _refuse(self) -> None:
        self._refused = True
        self._in_headers = False
        self.transport.write(REFUSAL)
        self.transport.close()
