"""Booking references and the box office's search (GET /admin/bookings)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.support import auth, create_show

REFERENCE = re.compile(r"^[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{8}$")
ADMIN = auth("clerk", "admin")


async def book(client: httpx.AsyncClient, show_id: int, user: str, *seats: str) -> Any:
    response = await client.post(
        f"/shows/{show_id}/book", json={"seatNumbers": list(seats)}, headers=auth(user)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def confirm(client: httpx.AsyncClient, show_id: int, user: str, *seats: str) -> Any:
    held = await client.post(
        f"/shows/{show_id}/holds", json={"seats": list(seats)}, headers=auth(user)
    )
    assert held.status_code == 201, held.text
    response = await client.post(f"/holds/{held.json()['hold_id']}/confirm", headers=auth(user))
    assert response.status_code == 201, response.text
    return response.json()


async def search(client: httpx.AsyncClient, **params: Any) -> list[Any]:
    response = await client.get("/admin/bookings", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    bookings: list[Any] = response.json()["bookings"]
    return bookings


async def test_every_booking_has_a_reference_people_can_read_out(
    client: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(client)
    confirmed = await confirm(client, show["id"], user, "A1", "A2")
    booked = await book(client, show["id"], user, "B1")
    for made in (confirmed, booked):
        assert REFERENCE.match(made["reference"]), made
    assert confirmed["reference"] != booked["reference"]
    # the same reference wherever the booking is read
    again = await client.get(f"/bookings/{confirmed['id']}", headers=auth(user))
    assert again.json()["reference"] == confirmed["reference"]
    mine = (await client.get("/me/bookings", headers=auth(user))).json()["bookings"]
    assert {b["reference"] for b in mine} == {confirmed["reference"], booked["reference"]}


async def test_the_box_office_finds_a_booking_and_cancels_it(
    client: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(client)
    other = await create_show(client)
    wanted = await confirm(client, show["id"], user, "C3", "C4")
    await book(client, show["id"], "someone-else", "D1")
    elsewhere = await book(client, other["id"], user, "A1")
    ref = wanted["reference"]

    # read out at a counter: any case, with a space or dash between the halves
    for typed in (ref, ref.lower(), f"{ref[:4]} {ref[4:]}", f"{ref[:4]}-{ref[4:]}"):
        assert [b["id"] for b in await search(client, reference=typed)] == [wanted["id"]]
    assert [b["id"] for b in await search(client, show_id=show["id"], seat="C4")] == [wanted["id"]]
    by_user = await search(client, user=user)
    assert {b["id"] for b in by_user} == {wanted["id"], elsewhere["id"]}
    assert len(await search(client, show_id=show["id"])) == 2
    assert [b["id"] for b in await search(client, user=user, show_id=other["id"])] == [
        elsewhere["id"]
    ]
    assert await search(client, reference="ZZZZZZZZ") == []
    assert await search(client, show_id=10**12) == []

    cancelled = await client.delete(f"/bookings/{wanted['id']}", headers=ADMIN)
    assert cancelled.status_code == 200, cancelled.text
    [found] = await search(client, reference=ref)
    assert found["status"] == "CANCELLED"
    seats = (await client.get(f"/shows/{show['id']}/seats")).json()["seats"]
    assert {s["label"]: s["status"] for s in seats}["C3"] == "AVAILABLE"


async def test_the_search_needs_a_filter_and_an_admin(client: httpx.AsyncClient, user: str) -> None:
    for params in (
        {},
        {"seat": "A1"},
        {"reference": "SHORT"},
        {"reference": "IIIIIIII"},
        {"show_id": "x"},
        {"nonsense": "1"},
        {"reference": ""},
    ):
        response = await client.get("/admin/bookings", params=params, headers=ADMIN)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"] == "invalid_body"
    forbidden = await client.get("/admin/bookings", params={"user": user}, headers=auth(user))
    assert forbidden.status_code == 403
    anonymous = await client.get("/admin/bookings", params={"user": user})
    assert anonymous.status_code == 401
