"""What a browser and a hostile client see at the HTTP layer: security headers, the bound on
request headers, and whose X-Forwarded-For is believed. Real `modex serve` processes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.http.headers import frame_ancestors
from app.ops.http_protocol import MAX_HEADER_BYTES
from tests.support import Cluster, ServerProcess, auth

PAGES = ["/", "/map/1", "/kiosk/1", "/admin"]


def directives(policy: str) -> dict[str, str]:
    found = {}
    for part in policy.split(";"):
        name, _, sources = part.strip().partition(" ")
        found[name] = sources
    return found


async def test_pages_send_a_strict_csp_and_refuse_framing(client: httpx.AsyncClient) -> None:
    for path in PAGES:
        response = await client.get(path)
        assert response.status_code == 200, path
        csp = directives(response.headers["content-security-policy"])
        assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'", csp
        assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'", csp
        assert csp["frame-ancestors"] == "'none'", csp
        assert "unsafe" not in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"


async def test_api_and_static_responses_are_not_sniffed_or_run(
    client: httpx.AsyncClient, show: dict[str, object]
) -> None:
    responses = [
        await client.get("/shows"),
        await client.get(f"/shows/{show['id']}/seats"),
        await client.post(f"/shows/{show['id']}/holds", json={"seats": []}, headers=auth("u")),
        await client.get("/no/such/path"),
        await client.get("/static/js/api.js"),
        await client.get("/static/img/favicon.svg"),
    ]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert response.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        ), response.url


async def test_kiosk_framing_follows_modex_frame_ancestors(cluster: Cluster, log_dir: Path) -> None:
    kiosk = ServerProcess(
        cluster, log_dir, MODEX_FRAME_ANCESTORS="'self', https://signage.example.com"
    ).start()
    try:
        async with httpx.AsyncClient(base_url=kiosk.url) as client:
            response = await client.get("/kiosk/1")
            csp = directives(response.headers["content-security-policy"])
            assert csp["frame-ancestors"] == "'self' https://signage.example.com"
            assert "x-frame-options" not in response.headers  # DENY would refuse the signage
            for path in ["/", "/map/1", "/admin"]:  # framed, these could be clickjacked
                response = await client.get(path)
                csp = directives(response.headers["content-security-policy"])
                assert csp["frame-ancestors"] == "'none'", path
                assert response.headers["x-frame-options"] == "DENY", path
    finally:
        kiosk.stop()


def test_a_frame_ancestor_cannot_add_directives() -> None:
    assert frame_ancestors(()) == "'none'"
    assert frame_ancestors(("https://a.example", "*.b.example")) == "https://a.example *.b.example"
    for bad in ("https://a.example; script-src *", "'unsafe-inline'", "a b"):
        with pytest.raises(ValueError, match="MODEX_FRAME_ANCESTORS"):
            frame_ancestors((bad,))


# ---- request header size --------------------------------------------------------------


# each HTTP parser `modex serve --http` offers, and how it refuses: our bound on
# httptools (the default) answers 431, uvicorn's own on h11 answers 400
REFUSALS = {"httptools": b"431", "h11": b"400"}


@pytest.fixture(scope="module", params=sorted(REFUSALS))
def parser_server(
    request: pytest.FixtureRequest, cluster: Cluster, log_dir: Path
) -> Iterator[tuple[ServerProcess, bytes]]:
    server = ServerProcess(cluster, log_dir, ("--http", request.param)).start()
    yield server, REFUSALS[request.param]
    server.stop()


def raw_request(server: ServerProcess, head: bytes, chunk: int = 65536) -> bytes:
    """Sends a request head in chunks of `chunk` bytes (stopping if the server hangs up)
    and returns the status line."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        try:
            for start in range(0, len(head), chunk):
                sock.sendall(head[start : start + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before we were done: the answer is waiting
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return answer.split(b"\r\n", 1)[0]


def bookings_request(authorization: bytes) -> bytes:
    return b"GET /me/bookings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % (
        authorization
    )


@pytest.mark.parametrize(
    ("size", "chunk"),
    [(8 * 1024 * 1024, 65536), (100_000, 1000)],
    ids=["8MB", "trickled"],
)
def test_oversized_request_headers_are_refused_unread(
    parser_server: tuple[ServerProcess, bytes], size: int, chunk: int
) -> None:
    server, refusal = parser_server
    status = raw_request(server, bookings_request(b"a" * size), chunk)
    assert status.split(b" ")[1] == refusal, status  # not 401: the token was never parsed
    # and the server carries on
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_httptools_counts_exactly(server: ServerProcess) -> None:
    """The session's servers run the default parser. h11's bound is on what it buffers
    while a head is incomplete, so a head of up to a read (64 KiB) arriving at once gets
    past it; ours counts the head itself."""
    status = raw_request(server, bookings_request(b"a" * MAX_HEADER_BYTES))
    assert status.startswith(b"HTTP/1.1 431"), status


def test_headers_just_under_the_bound_reach_the_app(
    parser_server: tuple[ServerProcess, bytes],
) -> None:
    server, _ = parser_server
    status = raw_request(server, bookings_request(b"a" * (MAX_HEADER_BYTES - 200)), 1000)
    assert status.startswith(b"HTTP/1.1 401"), status  # parsed: a bad token


# ---- X-Forwarded-For -----------------------------------------------------------------


def guest_statuses(server: ServerProcess, forwarded_for: list[str]) -> list[int]:
    """POST /auth/guest (limited per client IP) once per X-Forwarded-For value."""
    with httpx.Client(base_url=server.url) as client:
        return [
            client.post("/auth/guest", headers={"X-Forwarded-For": ip}).status_code
            for ip in forwarded_for
        ]


def test_without_a_configured_proxy_x_forwarded_for_is_ignored(
    cluster: Cluster, log_dir: Path
) -> None:
    server = ServerProcess(cluster, log_dir, MODEX_RATE_LIMIT_IP="2/minute").start()
    try:
        # a client on the app's own host names a new address each time: still one IP
        statuses = guest_statuses(server, ["203.0.113.1", "203.0.113.2", "203.0.113.3"])
        assert statuses == [201, 201, 429]
    finally:
        server.stop()


def test_a_configured_proxy_names_the_client(cluster: Cluster, log_dir: Path) -> None:
    server = ServerProcess(
        cluster, log_dir, MODEX_RATE_LIMIT_IP="2/minute", MODEX_TRUSTED_PROXIES="127.0.0.1"
    ).start()
    try:
        statuses = guest_statuses(server, ["203.0.113.1", "203.0.113.2", "203.0.113.3"])
        assert statuses == [201, 201, 201]  # three clients behind the proxy
        statuses = guest_statuses(server, ["203.0.113.9"] * 3)
        assert statuses == [201, 201, 429]  # and each has its own limit
    finally:
        server.stop()
