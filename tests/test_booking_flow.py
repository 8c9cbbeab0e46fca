"""The flow as a customer drives it over HTTP against running `modex serve` processes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.support import ServerProcess, auth, create_show


async def seat_statuses(client: httpx.AsyncClient, show_id: int) -> dict[str, str]:
    response = await client.get(f"/shows/{show_id}/seats")
    assert response.status_code == 200
    return {seat["label"]: seat["status"] for seat in response.json()["seats"]}


async def test_guest_browses_holds_extends_confirms_and_cancels(
    client: httpx.AsyncClient, show: dict[str, Any]
) -> None:
    guest = (await client.post("/auth/guest")).json()
    headers = {"Authorization": f"Bearer {guest['token']}"}
    show_id = show["id"]

    listed = (await client.get("/shows")).json()["shows"]
    assert any(s["id"] == show_id and s["seats_available"] == 50 for s in listed)

    hold = await client.post(
        f"/shows/{show_id}/holds", json={"seats": ["B2", "B3"]}, headers=headers
    )
    assert hold.status_code == 201, hold.text
    hold_id = hold.json()["hold_id"]
    assert hold.json()["seats"] == ["B2", "B3"]
    statuses = await seat_statuses(client, show_id)
    assert statuses["B2"] == statuses["B3"] == "HELD" and statuses["B1"] == "AVAILABLE"
    availability = (await client.get(f"/shows/{show_id}/availability")).json()
    assert (availability["AVAILABLE"], availability["HELD"], availability["BOOKED"]) == (48, 2, 0)

    extended = await client.post(f"/holds/{hold_id}/extend", headers=headers)
    assert extended.status_code == 200
    assert extended.json()["expires_at"] >= hold.json()["expires_at"]

    confirmed = await client.post(f"/holds/{hold_id}/confirm", headers=headers)
    assert confirmed.status_code == 201
    booking = confirmed.json()
    assert booking["status"] == "CONFIRMED" and booking["seats"] == ["B2", "B3"]
    assert (await seat_statuses(client, show_id))["B2"] == "BOOKED"
    assert (await client.get(f"/bookings/{booking['id']}", headers=headers)).json() == booking
    mine = (await client.get("/me/bookings", headers=headers)).json()["bookings"]
    assert [b["id"] for b in mine] == [booking["id"]]

    cancelled = await client.delete(f"/bookings/{booking['id']}", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    statuses = await seat_statuses(client, show_id)
    assert statuses["B2"] == statuses["B3"] == "AVAILABLE"
    again = await client.delete(f"/bookings/{booking['id']}", headers=headers)
    assert again.status_code == 409 and again.json()["error"] == "booking_not_cancellable"
    # the freed seats can be sold again
    rebook = await client.post(
        f"/shows/{show_id}/holds", json={"seats": ["B2"]}, headers=auth("someone-else")
    )
    assert rebook.status_code == 201


async def test_hold_is_all_or_nothing_and_409_names_the_taken_seats(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    show_id = show["id"]
    first = await client.post(
        f"/shows/{show_id}/holds", json={"seats": ["A1", "A2"]}, headers=auth(user)
    )
    assert first.status_code == 201
    second = await client.post(
        f"/shows/{show_id}/holds", json={"seats": ["A3", "A2", "A1"]}, headers=auth("rival")
    )
    assert second.status_code == 409
    assert second.json()["error"] == "seats_unavailable"
    assert sorted(second.json()["seats"]) == ["A1", "A2"]
    # nothing was held for the loser, not even the free A3
    assert (await seat_statuses(client, show_id))["A3"] == "AVAILABLE"


async def test_release_frees_the_seats_at_once(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    show_id = show["id"]
    hold = (
        await client.post(f"/shows/{show_id}/holds", json={"seats": ["C1"]}, headers=auth(user))
    ).json()
    released = await client.delete(f"/holds/{hold['hold_id']}", headers=auth(user))
    assert released.status_code == 204
    assert (await seat_statuses(client, show_id))["C1"] == "AVAILABLE"
    assert (await client.delete(f"/holds/{hold['hold_id']}", headers=auth(user))).status_code == 404
    # a released hold is deleted: confirming it is confirming nothing
    gone = await client.post(f"/holds/{hold['hold_id']}/confirm", headers=auth(user))
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"


async def test_confirm_is_idempotent_under_a_key_and_without_one(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    show_id = show["id"]
    hold = (
        await client.post(
            f"/shows/{show_id}/holds", json={"seats": ["D4", "D5"]}, headers=auth(user)
        )
    ).json()
    key = {"Idempotency-Key": f"pay-{hold['hold_id']}", **auth(user)}
    # a burst of retries, as a flaky network would send them
    answers = await asyncio.gather(
        *(client.post(f"/holds/{hold['hold_id']}/confirm", headers=key) for _ in range(5))
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    plain = await client.post(f"/holds/{hold['hold_id']}/confirm", headers=auth(user))
    assert plain.json()["id"] == answers[0].json()["id"]
    mine = (await client.get("/me/bookings", headers=auth(user))).json()["bookings"]
    assert len(mine) == 1


async def test_idempotency_key_reused_for_another_hold_is_refused(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    show_id = show["id"]
    holds = [
        (
            await client.post(f"/shows/{show_id}/holds", json={"seats": [seat]}, headers=auth(user))
        ).json()
        for seat in ("E1", "E2")
    ]
    headers = {"Idempotency-Key": "same-key", **auth(user)}
    ok = await client.post(f"/holds/{holds[0]['hold_id']}/confirm", headers=headers)
    assert ok.status_code == 201
    reused = await client.post(f"/holds/{holds[1]['hold_id']}/confirm", headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"


async def test_one_step_booking_from_the_seed(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    show_id = show["id"]
    booked = await client.post(
        f"/shows/{show_id}/book",
        json={"seatNumbers": ["E7", "E8"]},
        headers={"Idempotency-Key": "once", **auth(user)},
    )
    assert booked.status_code == 201 and booked.json()["status"] == "CONFIRMED"
    retry = await client.post(
        f"/shows/{show_id}/book",
        json={"seatNumbers": ["E7", "E8"]},
        headers={"Idempotency-Key": "once", **auth(user)},
    )
    assert retry.status_code == 201 and retry.json()["id"] == booked.json()["id"]
    taken = await client.post(
        f"/shows/{show_id}/book", json={"seatNumbers": ["E8"]}, headers=auth("rival")
    )
    assert taken.status_code == 409 and taken.json()["seats"] == ["E8"]


async def test_idempotency_key_reused_on_book_for_other_seats_is_refused(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    url = f"/shows/{show['id']}/book"
    headers = {"Idempotency-Key": "book-once", **auth(user)}
    booked = await client.post(url, json={"seatNumbers": ["D1", "D2"]}, headers=headers)
    assert booked.status_code == 201
    other = await client.post(url, json={"seatNumbers": ["D2", "D3"]}, headers=headers)
    assert other.status_code == 422, other.text
    assert other.json()["error"] == "idempotency_key_reused"
    assert (await seat_statuses(client, show["id"]))["D3"] == "AVAILABLE"
    # the same seats in another order are the same request: its booking, not a new one
    retry = await client.post(url, json={"seatNumbers": ["D2", "D1"]}, headers=headers)
    assert retry.status_code == 201 and retry.json()["id"] == booked.json()["id"]
    # a key that confirmed a hold does not also make a one-step booking
    hold = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["D5"]}, headers=auth(user)
    )
    paid = {"Idempotency-Key": "paid-hold", **auth(user)}
    confirmed = await client.post(f"/holds/{hold.json()['hold_id']}/confirm", headers=paid)
    assert confirmed.status_code == 201
    mixed = await client.post(url, json={"seatNumbers": ["D5"]}, headers=paid)
    assert mixed.status_code == 422 and mixed.json()["error"] == "idempotency_key_reused"


async def test_hold_extension_is_bounded(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    hold = (
        await client.post(f"/shows/{show['id']}/holds", json={"seats": ["A9"]}, headers=auth(user))
    ).json()
    assert hold["extensions_left"] == 2
    for left in (1, 0):
        extended = await client.post(f"/holds/{hold['hold_id']}/extend", headers=auth(user))
        assert extended.status_code == 200 and extended.json()["extensions_left"] == left
    refused = await client.post(f"/holds/{hold['hold_id']}/extend", headers=auth(user))
    assert refused.status_code == 409 and refused.json()["error"] == "extend_limit_reached"


async def test_show_not_on_sale_cannot_be_held(client: httpx.AsyncClient, user: str) -> None:
    show = await create_show(client, rows=2, seats_per_row=2, status="SCHEDULED")
    refused = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user)
    )
    assert refused.status_code == 409 and refused.json()["error"] == "show_not_on_sale"
    opened = await client.patch(
        f"/admin/shows/{show['id']}", json={"status": "ON_SALE"}, headers=auth("admin", "admin")
    )
    assert opened.status_code == 200 and opened.json()["status"] == "ON_SALE"
    held = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user)
    )
    assert held.status_code == 201


async def test_a_hold_made_on_one_server_is_confirmed_on_the_other(
    servers: list[ServerProcess], show: dict[str, Any], user: str
) -> None:
    async with (
        httpx.AsyncClient(base_url=servers[0].url) as one,
        httpx.AsyncClient(base_url=servers[1].url) as two,
    ):
        hold = (
            await one.post(f"/shows/{show['id']}/holds", json={"seats": ["D1"]}, headers=auth(user))
        ).json()
        booking = await two.post(f"/holds/{hold['hold_id']}/confirm", headers=auth(user))
        assert booking.status_code == 201
        assert (await seat_statuses(one, show["id"]))["D1"] == "BOOKED"


async def test_seat_labels_beyond_row_z_work_end_to_end(
    client: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(client, rows=30, seats_per_row=2)
    statuses = await seat_statuses(client, show["id"])
    assert {"Z1", "AA1", "AD2"} <= set(statuses) and len(statuses) == 60
    held = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["AA1", "Z2"]}, headers=auth(user)
    )
    assert held.status_code == 201
    statuses = await seat_statuses(client, show["id"])
    assert statuses["AA1"] == statuses["Z2"] == "HELD" and statuses["A1"] == "AVAILABLE"


async def test_sections_layout_with_categories_and_prices(client: httpx.AsyncClient) -> None:
    body = {
        "title": "Sections",
        "venue": "Hall",
        "starts_at": "2027-02-01T19:30:00+01:00",
        "hold_seconds": 120,
        "sections": [
            {
                "name": "Stalls",
                "rows": 2,
                "seats_per_row": 3,
                "category": "Stalls",
                "price_cents": 5000,
            },
            {
                "name": "Balcony",
                "rows": 1,
                "seats_per_row": 4,
                "category": "Balcony",
                "price_cents": 2500,
                "x": 10,
                "y": 0,
            },
        ],
    }
    created = await client.post("/admin/shows", json=body, headers=auth("admin", "admin"))
    assert created.status_code == 201, created.text
    assert created.json()["seats_total"] == 10 and created.json()["hold_seconds"] == 120
    seats = (await client.get(f"/shows/{created.json()['id']}/seats")).json()["seats"]
    by_label = {seat["label"]: seat for seat in seats}
    assert by_label["A1"]["category"] == "Stalls" and by_label["A1"]["price_cents"] == 5000
    assert by_label["C4"]["section"] == "Balcony" and by_label["C4"]["x"] == 13


async def test_a_show_taken_off_sale_confirms_no_more_holds(
    client: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(client, rows=1, seats_per_row=3)
    hold = (
        await client.post(f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user))
    ).json()
    cancelled = await client.patch(
        f"/admin/shows/{show['id']}", json={"status": "CANCELLED"}, headers=auth("admin", "admin")
    )
    assert cancelled.status_code == 200
    refused = await client.post(f"/holds/{hold['hold_id']}/confirm", headers=auth(user))
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "show_not_on_sale"
    assert "CANCELLED" in refused.json()["message"]
    released = await client.delete(f"/holds/{hold['hold_id']}", headers=auth(user))
    assert released.status_code == 204, "a customer can still let go of the seats"
