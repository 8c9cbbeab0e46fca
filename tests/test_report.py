"""The sales report (GET /admin/shows/{id}/report, CSV with Accept: text/csv) and the audit
trail agree with the seat map after an on-sale: customers holding, confirming, booking and
releasing at once, an admin blocking and reserving seats."""

from __future__ import annotations

import asyncio
import csv
import io
import random
from collections import Counter
from typing import Any

import httpx

from tests.support import auth

ADMIN = auth("admin", "admin")


async def on_sale(client: httpx.AsyncClient, show: dict[str, Any], customers: int) -> None:
    rng = random.Random(show["id"])
    labels = [s["label"] for s in (await client.get(f"/shows/{show['id']}/seats")).json()["seats"]]

    async def customer(i: int) -> None:
        user = auth(f"buyer-{show['id']}-{i}")
        seats = rng.sample(labels, rng.randint(1, 3))
        if i % 3 == 0:
            await client.post(
                f"/shows/{show['id']}/book", json={"seatNumbers": seats}, headers=user
            )
            return
        body = {"best": {"count": len(seats)}} if i % 3 == 1 else {"seats": seats}
        held = await client.post(f"/shows/{show['id']}/holds", json=body, headers=user)
        if held.status_code != 201:
            return
        if i % 5 == 0:
            await client.delete(f"/holds/{held.json()['hold_id']}", headers=user)
        elif i % 5 != 1:  # some holds stay live
            await client.post(f"/holds/{held.json()['hold_id']}/confirm", headers=user)

    await asyncio.gather(*(customer(i) for i in range(customers)))


async def test_the_report_and_the_audit_agree_with_the_map_after_an_on_sale(
    client: httpx.AsyncClient, user: str
) -> None:
    body = {
        "title": "Report test",
        "venue": "Hall",
        "starts_at": "2027-01-15T20:00:00Z",
        "sections": [
            {
                "name": "Stalls",
                "rows": 4,
                "seats_per_row": 10,
                "category": "Stalls",
                "price_cents": 5000,
            },
            {
                "name": "Circle",
                "rows": 2,
                "seats_per_row": 10,
                "category": "Circle",
                "price_cents": 3000,
            },
        ],
    }
    show = (await client.post("/admin/shows", json=body, headers=ADMIN)).json()
    await client.post(
        f"/admin/shows/{show['id']}/seats",
        json={"seats": ["A1", "A2"], "status": "BLOCKED"},
        headers=ADMIN,
    )
    await client.post(
        f"/admin/shows/{show['id']}/seats",
        json={"seats": ["E1", "E2", "E3"], "status": "RESERVED", "channel": "press"},
        headers=ADMIN,
    )
    await on_sale(client, show, 60)

    seats = (
        await client.get(f"/shows/{show['id']}/seats", headers={"Cache-Control": "no-cache"})
    ).json()["seats"]
    response = await client.get(f"/admin/shows/{show['id']}/report", headers=ADMIN)
    assert response.status_code == 200, response.text
    report = response.json()
    by_status = Counter(s["status"] for s in seats)
    assert report["by_status"] == {s: by_status.get(s, 0) for s in report["by_status"]}
    assert report["seats_total"] == len(seats) == 60
    for line in report["by_category"]:
        mine = [s for s in seats if s["category"] == line["category"]]
        assert line["seats"] == len(mine)
        assert line["booked"] == sum(s["status"] == "BOOKED" for s in mine)
        assert line["revenue_cents"] == sum(
            s["price_cents"] for s in mine if s["status"] == "BOOKED"
        )
    assert report["revenue_cents"] == sum(
        s["price_cents"] for s in seats if s["status"] == "BOOKED"
    )
    assert report["by_channel"] == [
        {"channel": "press", "seats": 3, "reserved": 3, "held": 0, "booked": 0}
    ]
    assert report["seats_held_live"] == by_status["HELD"]
    assert report["bookings"] > 0 and report["holds_live"] > 0
    assert report["sell_through"][-1]["total"] == by_status["BOOKED"]
    assert sum(m["seats"] for m in report["sell_through"]) == by_status["BOOKED"]

    # the audit trail's last word on each seat is what the map shows
    changes = (await client.get(f"/admin/shows/{show['id']}/audit", headers=ADMIN)).json()[
        "changes"
    ]
    last: dict[str, str] = {}
    for change in changes:  # newest first
        last.setdefault(change["seat"], change["to"])
    for seat in seats:
        assert last.get(seat["label"], "AVAILABLE") == seat["status"], seat

    text = await client.get(
        f"/admin/shows/{show['id']}/report", headers={**ADMIN, "Accept": "text/csv"}
    )
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text.text)))
    statuses = {r["status"]: int(r["seats"]) for r in rows if r["section"] == "status"}
    assert statuses == report["by_status"]
    stalls = next(
        r
        for r in rows
        if r["section"] == "category" and r["key"] == "Stalls" and r["status"] == "ALL"
    )
    assert int(stalls["revenue_cents"]) == next(
        c["revenue_cents"] for c in report["by_category"] if c["category"] == "Stalls"
    )


async def test_the_report_is_for_admins(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    path = f"/admin/shows/{show['id']}/report"
    assert (await client.get(path, headers=auth(user))).status_code == 403
    assert (await client.get("/admin/shows/999999999/report", headers=ADMIN)).status_code == 404
    empty = (await client.get(path, headers=ADMIN)).json()
    assert empty["by_status"]["AVAILABLE"] == 50 and empty["sell_through"] == []
