"""What a show's status allows (show_allows() in sql/shard/functions/seat_transactions.sql):
seats are held, extended, booked and confirmed only while the show is ON_SALE; a booking
can be cancelled until the show has ENDED (of a cancelled show too); a hold can always be
released."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import Cluster, auth, create_show

ADMIN = auth("admin", "admin")
ONLY_ON_SALE = {"SCHEDULED": False, "ON_SALE": True, "CANCELLED": False, "ENDED": False}
UNTIL_ENDED = {"SCHEDULED": True, "ON_SALE": True, "CANCELLED": True, "ENDED": False}
CONTRACT = {
    "hold": ONLY_ON_SALE,
    "extend": ONLY_ON_SALE,
    "book": ONLY_ON_SALE,
    "confirm": ONLY_ON_SALE,
    "cancel": UNTIL_ENDED,
}


async def test_what_each_status_allows_is_the_contract(cluster: Cluster) -> None:
    conn = await cluster.connect_shard(0)
    try:
        rows = await conn.fetch(
            """
            SELECT a AS action, s AS status, show_allows(s, a) AS allowed
            FROM unnest($1::text[]) a, unnest($2::text[]) s
            """,
            list(CONTRACT),
            list(ONLY_ON_SALE),
        )
    finally:
        await conn.close()
    found: dict[str, dict[str, bool]] = {}
    for row in rows:
        found.setdefault(row["action"], {})[row["status"]] = row["allowed"]
    assert found == CONTRACT


async def set_status(client: httpx.AsyncClient, show: dict[str, Any], status: str) -> None:
    changed = await client.patch(
        f"/admin/shows/{show['id']}", json={"status": status}, headers=ADMIN
    )
    assert changed.status_code == 200, changed.text


async def booked(client: httpx.AsyncClient, show: dict[str, Any], user: str, seat: str) -> str:
    made = await client.post(
        f"/shows/{show['id']}/book", json={"seatNumbers": [seat]}, headers=auth(user)
    )
    assert made.status_code == 201, made.text
    booking_id: str = made.json()["id"]
    return booking_id


async def test_no_booking_is_cancelled_after_the_show_ended(
    client: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(client, rows=1, seats_per_row=4)
    mine = await booked(client, show, user, "A1")
    other = await booked(client, show, user, "A2")
    await set_status(client, show, "ENDED")
    for who in (auth(user), ADMIN):
        refused = await client.delete(f"/bookings/{mine}", headers=who)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "show_ended"
    kept = await client.get(f"/bookings/{mine}", headers=auth(user))
    assert kept.json()["status"] == "CONFIRMED"
    seats = (await client.get(f"/shows/{show['id']}/seats")).json()["seats"]
    assert {s["label"]: s["status"] for s in seats}["A1"] == "BOOKED"
    assert (await client.get(f"/bookings/{other}", headers=auth(user))).status_code == 200


async def test_bookings_are_cancelled_while_scheduled_and_after_the_show_is_cancelled(
    client: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(client, rows=1, seats_per_row=4)
    first = await booked(client, show, user, "A1")
    second = await booked(client, show, user, "A2")
    third = await booked(client, show, user, "A3")
    await set_status(client, show, "SCHEDULED")  # taken off sale for a while
    cancelled = await client.delete(f"/bookings/{first}", headers=auth(user))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    await set_status(client, show, "CANCELLED")
    for booking_id, who in ((second, auth(user)), (third, ADMIN)):
        cancelled = await client.delete(f"/bookings/{booking_id}", headers=who)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"


async def test_a_show_off_sale_extends_and_books_nothing_but_lets_holds_go(
    client: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(client, rows=1, seats_per_row=4)
    hold = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user)
    )
    assert hold.status_code == 201
    hold_id = hold.json()["hold_id"]
    await set_status(client, show, "SCHEDULED")
    for refused in (
        await client.post(f"/holds/{hold_id}/extend", headers=auth(user)),
        await client.post(f"/holds/{hold_id}/confirm", headers=auth(user)),
        await client.post(
            f"/shows/{show['id']}/book", json={"seatNumbers": ["A2"]}, headers=auth(user)
        ),
        await client.post(f"/shows/{show['id']}/holds", json={"seats": ["A3"]}, headers=auth(user)),
    ):
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "show_not_on_sale"
        assert "SCHEDULED" in refused.json()["message"]
    released = await client.delete(f"/holds/{hold_id}", headers=auth(user))
    assert released.status_code == 204
