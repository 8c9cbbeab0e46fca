"""Auth boundaries: 401 for a bad token, 403 for the wrong role, 404 for someone else's things."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import websockets

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
