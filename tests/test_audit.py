"""The audit trail: every seat status change (who, when, from, to, the hold or booking, the
request id) is written by the seat transaction itself, on the show's shard, and read with
GET /admin/shows/{id}/audit?seat=&user=."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import Cluster, auth, wait_until

ADMIN = auth("admin", "admin")


async def audit(client: httpx.AsyncClient, show: dict[str, Any], **query: str) -> list[Any]:
    response = await client.get(f"/admin/shows/{show['id']}/audit", params=query, headers=ADMIN)
    assert response.status_code == 200, response.text
    changes: list[Any] = response.json()["changes"]
    return changes


async def test_each_change_of_a_seat_is_kept_with_who_and_why(
    client: httpx.AsyncClient, show: dict[str, Any], user: str, cluster: Cluster
) -> None:
    mine = {**auth(user), "X-Request-Id": "req-hold-1"}
    held = (
        await client.post(f"/shows/{show['id']}/holds", json={"seats": ["A1", "A2"]}, headers=mine)
    ).json()
    await client.delete(f"/holds/{held['hold_id']}", headers=auth(user))
    again = (
        await client.post(f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user))
    ).json()
    booking = (await client.post(f"/holds/{again['hold_id']}/confirm", headers=auth(user))).json()
    cancelled = await client.delete(f"/bookings/{booking['id']}", headers=ADMIN)
    assert cancelled.status_code == 200
    await client.post(
        f"/admin/shows/{show['id']}/seats",
        json={"seats": ["A1"], "status": "BLOCKED"},
        headers=ADMIN,
    )
    refused = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user)
    )
    assert refused.status_code == 409  # a refusal changes nothing, so leaves no trace

    changes = await audit(client, show, seat="A1")
    steps = [(c["action"], c["from"], c["to"], c.get("by")) for c in reversed(changes)]
    assert steps == [
        ("hold", "AVAILABLE", "HELD", user),
        ("release", "HELD", "AVAILABLE", user),
        ("hold", "AVAILABLE", "HELD", user),
        ("confirm", "HELD", "BOOKED", user),
        ("cancel", "BOOKED", "AVAILABLE", "admin"),
        ("admin", "AVAILABLE", "BLOCKED", "admin"),
    ]
    oldest = changes[-1]
    assert oldest["hold_id"] == held["hold_id"] and oldest["request_id"] == "req-hold-1"
    assert changes[2]["booking_id"] == booking["id"] and changes[1]["booking_id"] == booking["id"]
    assert all(c["request_id"] for c in changes)
    times = [c["at"] for c in changes]
    assert times == sorted(times, reverse=True)
    # the first hold took A2 too; only A1's changes were asked for
    assert {c["seat"] for c in changes} == {"A1"}
    assert len(await audit(client, show, seat="A2")) == 2


async def test_a_customers_changes_include_the_expiry_of_their_holds(
    client: httpx.AsyncClient, show: dict[str, Any], user: str, cluster: Cluster
) -> None:
    held = (
        await client.post(f"/shows/{show['id']}/holds", json={"seats": ["B1"]}, headers=auth(user))
    ).json()
    other = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["B2"]}, headers=auth(f"x-{user}")
    )
    assert other.status_code == 201
    conn = await cluster.connect_shard(show["shard"])
    try:
        past = "now() - interval '1 second'"
        await conn.execute(
            f"UPDATE holds SET expires_at = {past} WHERE show_id = $1 AND id = $2",
            show["id"],
            held["hold_id"],
        )
        await conn.execute(
            f"UPDATE seats SET held_until = {past} WHERE show_id = $1 AND hold_id = $2",
            show["id"],
            held["hold_id"],
        )
    finally:
        await conn.close()

    async def expired() -> bool:
        return any(c["action"] == "expire" for c in await audit(client, show, user=user))

    await wait_until(expired, 10, "the sweeper's expiry in the audit trail")
    changes = await audit(client, show, user=user)
    assert [(c["seat"], c["action"], c["to"]) for c in changes] == [
        ("B1", "expire", "AVAILABLE"),
        ("B1", "hold", "HELD"),
    ]
    assert changes[0].get("by") is None and changes[0]["hold_id"] == held["hold_id"]


async def test_the_audit_is_for_admins_and_checks_its_query(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    path = f"/admin/shows/{show['id']}/audit"
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers=auth(user))).status_code == 403
    assert (await client.get(path, params={"seat": "a1"}, headers=ADMIN)).status_code == 422
    assert (await client.get(path, params={"colour": "red"}, headers=ADMIN)).status_code == 422
    missing = await client.get("/admin/shows/999999999/audit", headers=ADMIN)
    assert missing.status_code == 404
