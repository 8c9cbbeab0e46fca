"""Auth boundaries: 401 for a bad token, 403 for the wrong role, 404 for someone else's things."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import websockets

from app.auth import Role
from app.http.api import ADMIN, API
from tests.support import JWT_SECRET, ServerProcess, auth, token, wait_until


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


BAD_TOKENS = {
    "missing": {},
    "not a bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
    "garbage": bearer("not.a.jwt"),
    "forged": bearer(
        jwt.encode(
            {"sub": "mallory", "role": "admin", "exp": datetime.now(UTC) + timedelta(hours=1)},
            "wrong-secret-" + "y" * 32,
            algorithm="HS256",
        )
    ),
    "expired": bearer(token("late", ttl=-60)),
    "no role": bearer(
        jwt.encode(
            {"sub": "x", "exp": datetime.now(UTC) + timedelta(hours=1)},
            JWT_SECRET,
            algorithm="HS256",
        )
    ),
    "unknown role": bearer(
        jwt.encode(
            {"sub": "x", "role": "root", "exp": datetime.now(UTC) + timedelta(hours=1)},
            JWT_SECRET,
            algorithm="HS256",
        )
    ),
    "channels not a list": bearer(
        jwt.encode(
            {
                "sub": "x",
                "role": "customer",
                "channels": "vip",
                "exp": datetime.now(UTC) + timedelta(hours=1),
            },
            JWT_SECRET,
            algorithm="HS256",
        )
    ),
    "alg none": bearer(
        jwt.encode(
            {"sub": "x", "role": "admin", "exp": datetime.now(UTC) + timedelta(hours=1)},
            None,
            algorithm="none",
        )
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_tokens_get_401(
    client: httpx.AsyncClient, show: dict[str, Any], case: str
) -> None:
    for method, path, body in [
        ("POST", f"/shows/{show['id']}/holds", {"seats": ["A1"]}),
        ("POST", "/admin/shows", {}),
        ("GET", "/me/bookings", None),
    ]:
        response = await client.request(method, path, json=body, headers=BAD_TOKENS[case])
        assert response.status_code == 401, (case, path, response.text)
        assert response.json()["error"] == "unauthorized"


async def test_wrong_roles_get_403(client: httpx.AsyncClient, show: dict[str, Any]) -> None:
    kiosk_hold = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth("lobby", "kiosk")
    )
    assert kiosk_hold.status_code == 403 and kiosk_hold.json()["error"] == "forbidden"
    for role in ("customer", "kiosk"):
        create = await client.post("/admin/shows", json={}, headers=auth("x", role))
        assert create.status_code == 403
        patch = await client.patch(
            f"/admin/shows/{show['id']}", json={"title": "Hacked"}, headers=auth("x", role)
        )
        assert patch.status_code == 403
        shout = await client.post(
            f"/admin/shows/{show['id']}/broadcast",
            json={"message": "free beer"},
            headers=auth("x", role),
        )
        assert shout.status_code == 403


async def test_someone_elses_hold_and_booking_look_like_nothing(
    client: httpx.AsyncClient, show: dict[str, Any]
) -> None:
    hold = (
        await client.post(
            f"/shows/{show['id']}/holds", json={"seats": ["C3"]}, headers=auth("owner")
        )
    ).json()
    for method, path in [
        ("POST", f"/holds/{hold['hold_id']}/confirm"),
        ("POST", f"/holds/{hold['hold_id']}/extend"),
        ("DELETE", f"/holds/{hold['hold_id']}"),
    ]:
        response = await client.request(method, path, headers=auth("intruder"))
        assert response.status_code == 404, (path, response.text)
    booking = (await client.post(f"/holds/{hold['hold_id']}/confirm", headers=auth("owner"))).json()
    assert booking["status"] == "CONFIRMED", "the intruder must not have touched the hold"
    assert (
        await client.get(f"/bookings/{booking['id']}", headers=auth("intruder"))
    ).status_code == 404
    assert (
        await client.delete(f"/bookings/{booking['id']}", headers=auth("intruder"))
    ).status_code == 404
    assert (await client.get("/me/bookings", headers=auth("intruder"))).json()["bookings"] == []
    # an admin may look at and cancel anyone's booking
    seen = await client.get(f"/bookings/{booking['id']}", headers=auth("boss", "admin"))
    assert seen.status_code == 200 and seen.json()["user_id"] == "owner"
    cancelled = await client.delete(f"/bookings/{booking['id']}", headers=auth("boss", "admin"))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"


async def test_reading_needs_no_token(client: httpx.AsyncClient, show: dict[str, Any]) -> None:
    for path in [
        "/shows",
        f"/shows/{show['id']}",
        f"/shows/{show['id']}/seats",
        f"/shows/{show['id']}/availability",
        "/health",
        "/openapi.json",
    ]:
        assert (await client.get(path)).status_code == 200, path


async def test_guest_token_is_a_short_lived_customer_token(client: httpx.AsyncClient) -> None:
    guest = await client.post("/auth/guest")
    assert guest.status_code == 201
    claims = jwt.decode(guest.json()["token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["role"] == "customer" and claims["sub"] == guest.json()["user_id"]
    lifetime = claims["exp"] - datetime.now(UTC).timestamp()
    assert 0 < lifetime <= 2 * 3600 + 5


async def test_tokens_never_reach_the_server_log(server: ServerProcess) -> None:
    secret = token("log-reader", "kiosk")
    async with websockets.connect(f"{server.ws_url}?token={secret}") as ws:
        await ws.send('{"type":"ping"}')
        assert "pong" in await ws.recv()
    # the handshake line is logged (without its query)
    log = await wait_until(
        lambda: "WebSocket /ws" in (text := server.log_path.read_text()) and text,
        what="the handshake's log line",
    )
    assert secret not in log and "token=" not in log


async def test_a_websocket_refuses_every_token_the_http_api_refuses(server: ServerProcess) -> None:
    """One verifier (app.auth.verify_token) for both: a token the API answers 401 closes
    the socket with 4401."""
    for case, headers in sorted(BAD_TOKENS.items()):
        if not headers.get("Authorization", "").startswith("Bearer "):
            continue  # no token to put in the query
        value = headers["Authorization"].removeprefix("Bearer ")
        async with websockets.connect(f"{server.ws_url}?token={value}") as ws:
            await ws.wait_closed()
            assert ws.close_code == 4401, case


def error_code(response: httpx.Response) -> str | None:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    body = response.json()
    return body.get("error") if isinstance(body, dict) else None


async def test_every_route_enforces_the_roles_its_table_entry_names(
    client: httpx.AsyncClient, show: dict[str, Any]
) -> None:
    """The route table (app/http/api.py) is the truth about who may call what: a route
    that names roles answers 401 without a token and 403 to every other role, and lets
    its own roles through; a route that names none needs no token."""
    ids = {"{show_id}": str(show["id"]), "{hold_id}": f"{show['id']}.{'h' * 22}"}
    ids["{booking_id}"] = f"{show['id']}.{'b' * 22}"
    for e in API:
        path = e.path
        for name, value in ids.items():
            path = path.replace(name, value)
        anonymous = await client.request(e.method, path)
        if not e.auth:
            assert anonymous.status_code not in (401, 500), (e.method, e.path, anonymous.text)
            continue
        assert anonymous.status_code == 401, (e.method, e.path, anonymous.text)
        assert error_code(anonymous) == "unauthorized"
        for role in Role:
            answer = await client.request(e.method, path, headers=auth("route-check", role.value))
            where = (e.method, e.path, role.value, answer.status_code, answer.text)
            if role in e.auth:
                assert answer.status_code not in (401, 500), where
                assert error_code(answer) != "forbidden", where
            else:
                assert answer.status_code == 403 and error_code(answer) == "forbidden", where


def test_the_route_table_keeps_admin_routes_and_writes_behind_a_token() -> None:
    """The table is what guards a route: an /admin route open to another role, or a write
    open to anyone (but the guest token's), is a table entry gone wrong."""
    for e in API:
        if e.path.startswith("/admin/"):
            assert e.auth == ADMIN, (e.method, e.path)
        elif e.method != "GET" and e.path != "/auth/guest":
            assert e.auth, (e.method, e.path)
