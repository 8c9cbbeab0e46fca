"""Seats off sale (BLOCKED) and kept for a sales channel (RESERVED): an admin sets them
with POST /admin/shows/{id}/seats, every change is pushed live like a hold, blocked seats
refuse every hold and book, and a channel's seats are held only with a token whose
`channels` claim lists the channel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt

from tests.realtime.watch import Watcher, converge, seat_order
from tests.support import JWT_SECRET, ServerProcess, auth

ADMIN = auth("admin", "admin")


def channel_auth(user: str, *channels: str) -> dict[str, str]:
    exp = datetime.now(UTC) + timedelta(hours=1)
    claims = {"sub": user, "role": "customer", "exp": exp, "channels": list(channels)}
    return {"Authorization": f"Bearer {jwt.encode(claims, JWT_SECRET, algorithm='HS256')}"}


async def change(client: httpx.AsyncClient, show: dict[str, Any], **body: Any) -> httpx.Response:
    return await client.post(f"/admin/shows/{show['id']}/seats", json=body, headers=ADMIN)


async def statuses(client: httpx.AsyncClient, show: dict[str, Any]) -> dict[str, str]:
    response = await client.get(f"/shows/{show['id']}/seats", headers={"Cache-Control": "no-cache"})
    return {seat["label"]: seat["status"] for seat in response.json()["seats"]}


async def hold(
    client: httpx.AsyncClient, show: dict[str, Any], headers: dict[str, str], *seats: str
) -> httpx.Response:
    return await client.post(
        f"/shows/{show['id']}/holds", json={"seats": list(seats)}, headers=headers
    )


async def test_blocked_seats_refuse_every_hold_and_book_until_put_back(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    blocked = await change(client, show, seats=["A1", "A2"], status="BLOCKED")
    assert blocked.status_code == 200, blocked.text
    assert [(s["label"], s["status"]) for s in blocked.json()["seats"]] == [
        ("A1", "BLOCKED"),
        ("A2", "BLOCKED"),
    ]
    assert (await statuses(client, show))["A1"] == "BLOCKED"
    for headers in (auth(user), channel_auth(user, "press")):
        refused = await hold(client, show, headers, "A1")
        assert refused.status_code == 409, refused.text
        assert refused.json() == {**refused.json(), "error": "seats_unavailable", "seats": ["A1"]}
        booked = await client.post(
            f"/shows/{show['id']}/book", json={"seatNumbers": ["A2", "A3"]}, headers=headers
        )
        assert booked.status_code == 409 and booked.json()["seats"] == ["A2"], booked.text
    best = await client.post(
        f"/shows/{show['id']}/holds", json={"best": {"count": 10}}, headers=auth(user)
    )
    assert "A1" not in best.json().get("seats", [])
    back = await change(client, show, seats=["A1"], status="AVAILABLE")
    assert [s["status"] for s in back.json()["seats"]] == ["AVAILABLE"]
    assert (await hold(client, show, auth(f"other-{user}"), "A1")).status_code == 201


async def test_a_channels_seats_are_held_only_with_its_key(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    kept = await change(client, show, seats=["B1", "B2"], status="RESERVED", channel="press")
    assert kept.status_code == 200, kept.text
    assert (await statuses(client, show))["B1"] == "RESERVED"
    for headers in (auth(user), channel_auth(user, "vip")):
        refused = await hold(client, show, headers, "B1", "B3")
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "reserved_seats"
        assert refused.json()["seats"] == ["B1"]
    press = channel_auth(user, "vip", "press")
    held = await hold(client, show, press, "B1", "B2")
    assert held.status_code == 201, held.text
    # given back, a channel seat returns to its channel, not to general sale
    released = await client.delete(f"/holds/{held.json()['hold_id']}", headers=press)
    assert released.status_code == 204
    seats = await statuses(client, show)
    assert (seats["B1"], seats["B2"]) == ("RESERVED", "RESERVED")
    booked = await client.post(
        f"/shows/{show['id']}/book", json={"seatNumbers": ["B2"]}, headers=press
    )
    assert booked.status_code == 201, booked.text
    # releasing the channel puts its free seats on general sale; the booked one stays sold
    # and is sold generally once cancelled
    freed = await change(client, show, status="AVAILABLE", channel="press")
    assert [(s["label"], s["status"]) for s in freed.json()["seats"]] == [("B1", "AVAILABLE")]
    assert (await hold(client, show, auth(f"other-{user}"), "B1")).status_code == 201
    cancelled = await client.delete(f"/bookings/{booked.json()['id']}", headers=press)
    assert cancelled.status_code == 200
    assert (await statuses(client, show))["B2"] == "AVAILABLE"


async def test_held_or_booked_seats_cannot_be_blocked_and_bad_changes_are_refused(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    assert (await hold(client, show, auth(user), "C1")).status_code == 201
    refused = await change(client, show, seats=["C1", "C2"], status="BLOCKED")
    assert refused.status_code == 409 and refused.json()["seats"] == ["C1"], refused.text
    assert (await statuses(client, show))["C2"] == "AVAILABLE"  # all or nothing
    unknown = await change(client, show, seats=["Z9"], status="BLOCKED")
    assert unknown.status_code == 422 and unknown.json()["seats"] == ["Z9"]
    for body in (
        {"seats": ["C3"], "status": "RESERVED"},  # a channel is needed
        {"seats": ["C3"], "status": "BLOCKED", "channel": "press"},
        {"seats": ["C3"], "status": "HELD"},
        {"status": "BLOCKED"},
        {"seats": ["C3"], "status": "RESERVED", "channel": "Press Desk"},
    ):
        bad = await change(client, show, **body)
        assert bad.status_code == 422, (body, bad.text)
    customer = await client.post(
        f"/admin/shows/{show['id']}/seats",
        json={"seats": ["C3"], "status": "BLOCKED"},
        headers=auth(user),
    )
    assert customer.status_code == 403
    missing = await client.post(
        "/admin/shows/999999999/seats", json={"seats": ["A1"], "status": "BLOCKED"}, headers=ADMIN
    )
    assert missing.status_code == 404


async def test_every_change_reaches_watchers_on_both_servers(
    client: httpx.AsyncClient, servers: list[ServerProcess], show: dict[str, Any]
) -> None:
    order = await seat_order(client, show["id"])
    async with Watcher(servers[0].ws_url) as one, Watcher(servers[1].ws_url) as two:
        await one.subscribe(show["id"], order)
        await change(client, show, seats=["D1", "D2"], status="BLOCKED")
        # a compact snapshot carries the new statuses too
        await two.subscribe(show["id"], order, encoding="rle")
        await change(client, show, seats=["D3", "D4"], status="RESERVED", channel="vip")
        await change(client, show, seats=["D1"], status="AVAILABLE")
        await converge([one, two], client, show)
        assert one.states[show["id"]].seats["D2"][0] == "BLOCKED"
        assert two.states[show["id"]].seats["D3"][0] == "RESERVED"
        assert two.states[show["id"]].seats["D1"][0] == "AVAILABLE"
