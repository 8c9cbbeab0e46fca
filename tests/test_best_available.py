"""Best available: POST /shows/{id}/holds {"best": {"count", "category"?, "allow_split"?}}
holds `count` seats side by side in one row, best first (rows nearest the stage, seats
nearest the centre, a section's quality first), never leaving a lone seat when another
block exists; 409 no_adjacent_seats unless allow_split. Callers at once never get the
same seats (the shard skips locked rows and seats instead of waiting)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import httpx
import pytest

from app.domain import split_label
from tests.support import Cluster, ServerProcess, auth, create_show, create_show_on
from tests.test_single_seat import reference_stranded

ADMIN = auth("admin", "admin")


async def best(
    client: httpx.AsyncClient, show: dict[str, Any], user: str, count: int, **more: Any
) -> httpx.Response:
    return await client.post(
        f"/shows/{show['id']}/holds", json={"best": {"count": count, **more}}, headers=auth(user)
    )


def side_by_side(seats: list[str]) -> bool:
    parts = [split_label(s) for s in seats]
    numbers = sorted(n for _, n in parts)
    return len({row for row, _ in parts}) == 1 and numbers == list(
        range(numbers[0], numbers[0] + len(numbers))
    )


async def test_the_best_seats_are_the_front_rows_centre_and_the_answer_is_a_hold(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    first = await best(client, show, user, 4)
    assert first.status_code == 201, first.text
    assert first.json()["seats"] == ["A4", "A5", "A6", "A7"]
    assert set(first.json()) >= {"hold_id", "seats", "expires_at", "extensions_left"}
    # row A keeps runs of three: the next four go to row B's centre
    second = await best(client, show, f"other-{user}", 4)
    assert sorted(second.json()["seats"]) == ["B4", "B5", "B6", "B7"]
    # a best-available hold is a hold like any other
    confirmed = await client.post(f"/holds/{first.json()['hold_id']}/confirm", headers=auth(user))
    assert confirmed.status_code == 201 and sorted(confirmed.json()["seats"]) == sorted(
        first.json()["seats"]
    )


async def test_a_category_and_a_sections_quality_choose_where(
    client: httpx.AsyncClient, user: str
) -> None:
    body = {
        "title": "Quality test",
        "venue": "Hall",
        "starts_at": "2027-01-15T20:00:00Z",
        "sections": [
            {"name": "Stalls", "rows": 2, "seats_per_row": 8, "category": "Stalls"},
            {"name": "Box", "rows": 1, "seats_per_row": 4, "category": "Box", "quality": 50},
        ],
    }
    show = (await client.post("/admin/shows", json=body, headers=ADMIN)).json()
    # the box first (its seats sit at x 0-3: nearest the venue's centre line, 3.5, last)
    assert (await best(client, show, user, 2)).json()["seats"] == ["C3", "C4"]
    stalls = await best(client, show, f"b-{user}", 2, category="Stalls")
    assert stalls.json()["seats"] == ["A4", "A5"]
    unknown = await best(client, show, f"c-{user}", 2, category="Gallery")
    assert unknown.status_code == 409 and unknown.json()["error"] == "no_adjacent_seats"


async def test_no_row_with_the_seats_together_is_409_unless_split_is_allowed(
    client: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(client, rows=2, seats_per_row=5)
    blocked = await client.post(
        f"/admin/shows/{show['id']}/seats",
        json={"seats": ["A3", "B3"], "status": "BLOCKED"},
        headers=ADMIN,
    )
    assert blocked.status_code == 200
    refused = await best(client, show, user, 3)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "no_adjacent_seats"
    split = await best(client, show, user, 3, allow_split=True)
    assert split.status_code == 201, split.text
    seats = split.json()["seats"]
    assert len(seats) == 3 and not {"A3", "B3"} & set(seats)
    # the best few groups: a pair in the front row, then one seat
    assert {"A1", "A2"} <= set(seats) or {"A4", "A5"} <= set(seats)


async def test_a_block_that_would_leave_a_lone_seat_is_passed_over(
    client: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(client, rows=1, seats_per_row=8)
    await client.post(
        f"/admin/shows/{show['id']}/seats",
        json={"seats": ["A7"], "status": "BLOCKED"},
        headers=ADMIN,
    )
    # free: A1-A6 and A8. Four in the middle (A2-A5, the best by the centre) would leave A1
    # and A6 alone: A3-A6 or A1-A4 instead
    seats = (await best(client, show, user, 4)).json()["seats"]
    free = [True] * 8
    free[6] = False
    assert not reference_stranded(free, {split_label(s)[1] - 1 for s in seats}), seats


async def test_bad_best_requests_are_422(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    for body in (
        {"best": {"count": 0}},
        {"best": {"count": 11}},
        {"best": {"count": 2, "colour": "red"}},
        {"best": {"count": 2}, "seats": ["A1"]},
        {},
    ):
        response = await client.post(f"/shows/{show['id']}/holds", json=body, headers=auth(user))
        assert response.status_code == 422, (body, response.text)


@pytest.mark.slow
async def test_a_storm_of_best_available_callers_never_shares_a_seat(
    servers: list[ServerProcess], cluster: Cluster
) -> None:
    """500 callers for 2-6 seats at once on a 2,000-seat show on each shard, through both
    servers: no seat given twice, every group side by side, no pick strands a seat (the
    audit trail replays each row's picks in commit order), and the map agrees."""
    clients = [httpx.AsyncClient(base_url=s.url, timeout=60) for s in servers]
    try:
        shows = [
            await create_show_on(
                clients[0], cluster, shard, rows=40, seats_per_row=50, hold_seconds=3600
            )
            for shard in (0, 1)
        ]
        rng = random.Random(15)
        gate = asyncio.Semaphore(200)

        async def caller(i: int) -> tuple[dict[str, Any], httpx.Response]:
            show = shows[i % 2]
            async with gate:
                response = await best(
                    clients[i % 2 if i % 4 < 2 else 1 - i % 2],
                    show,
                    f"storm-{i}",
                    rng.randint(2, 6),
                )
            return show, response

        results = await asyncio.gather(*(caller(i) for i in range(1000)))
        codes = Counter(r.status_code for _, r in results)
        assert set(codes) <= {201, 409}, codes
        assert codes[201] > 400, codes
        for show in shows:
            holds = [r.json() for s, r in results if s is show and r.status_code == 201]
            given = [seat for h in holds for seat in h["seats"]]
            assert len(given) == len(set(given)), "a seat was given twice"
            assert all(side_by_side(h["seats"]) for h in holds)
            conn = await cluster.connect_shard(show["shard"])
            try:
                held = {
                    row["label"]: row["hold_id"]
                    for row in await conn.fetch(
                        "SELECT label, hold_id FROM seats WHERE show_id = $1 AND status = 'HELD'",
                        show["id"],
                    )
                }
                picks = await conn.fetch(
                    "SELECT seats FROM seat_audit WHERE show_id = $1 AND action = 'hold'"
                    " ORDER BY id",
                    show["id"],
                )
            finally:
                await conn.close()
            assert held == {seat: h["hold_id"] for h in holds for seat in h["seats"]}
            seat_map = await clients[1].get(
                f"/shows/{show['id']}/seats", headers={"Cache-Control": "no-cache"}
            )
            on_map = {s["label"] for s in seat_map.json()["seats"] if s["status"] == "HELD"}
            assert on_map == set(held)
            rows: dict[str, list[bool]] = {}
            for pick in picks:
                row = split_label(pick["seats"][0])[0]
                free = rows.setdefault(row, [True] * 50)
                taken = {split_label(seat)[1] - 1 for seat in pick["seats"]}
                assert not reference_stranded(free, taken), (row, pick["seats"])
                for seat in taken:
                    free[seat] = False
    finally:
        for client in clients:
            await client.aclose()
