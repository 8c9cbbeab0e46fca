"""The single-seat rule: a show with `single_seat_rule: enforce` refuses a hold or one-step
book that would leave one free seat alone between taken seats (or a taken seat and the
row's end), 409 `single_seat` naming it, unless the customer takes it too or no pick of
that many seats in that run could avoid it. The shard's stranded_seats() is checked
against an independent reference over random rows and picks (hypothesis)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Cluster, auth, create_show

ROW = 30  # seats per row of the property test's show
ADMIN = auth("admin", "admin")


def reference_stranded(free: list[bool], picks: set[int]) -> set[int]:
    """Seats (0-based) a pick strands in one row, from the rule's words: in each run of seats
    open before the pick (free or picked) that the pick touches, a free seat left with no
    free neighbour is stranded, unless the run is one seat longer than what the pick takes
    there (every pick of that many seats in it leaves one)."""
    stranded: set[int] = set()
    start = 0
    while start < len(free):
        if not free[start]:
            start += 1
            continue
        end = start
        while end < len(free) and free[end]:
            end += 1
        run = range(start, end)
        taken = [seat for seat in run if seat in picks]
        if taken and len(run) - len(taken) != 1:
            piece: list[int] = []
            for seat in [*run, None]:
                if seat is None or seat in picks:
                    if len(piece) == 1:
                        stranded.add(piece[0])
                    piece = []
                else:
                    piece.append(seat)
        start = end
    return stranded


def test_the_reference_reads_like_the_rule() -> None:
    row = [True] * 5
    assert reference_stranded(row, {1}) == {0}  # A1 alone against the row's end
    assert reference_stranded(row, {0, 2}) == {1}  # between two seats of the pick
    assert reference_stranded(row, {0, 1}) == set()
    assert reference_stranded([True, True, True, False], {0, 1}) == set()  # a run of 3: spared
    assert reference_stranded([False, True, False], {1}) == set()


@st.composite
def rows_and_picks(draw: st.DrawFn) -> tuple[int, list[bool], set[int]]:
    length = draw(st.integers(min_value=1, max_value=ROW))
    free = draw(st.lists(st.booleans(), min_size=length, max_size=length))
    open_seats = [i for i, f in enumerate(free) if f]
    if not open_seats:
        free[draw(st.integers(0, length - 1))] = True
        open_seats = [i for i, f in enumerate(free) if f]
    picks = draw(
        st.sets(st.sampled_from(open_seats), min_size=1, max_size=min(10, len(open_seats)))
    )
    return length, free, picks


class LoopThread:
    """An event loop of its own, so hypothesis's synchronous examples can use asyncpg."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    found = LoopThread()
    yield found
    found.stop()


SET_ROW = """
UPDATE seats s SET status = CASE WHEN u.free THEN 'AVAILABLE' ELSE 'BLOCKED' END,
                   hold_id = NULL, held_until = NULL, booking_id = NULL, channel = NULL
FROM unnest($2::text[], $3::boolean[]) AS u(label, free)
WHERE s.show_id = $1 AND s.label = u.label
"""


async def test_stranded_seats_agree_with_the_reference(
    client: httpx.AsyncClient, cluster: Cluster, loop_thread: LoopThread
) -> None:
    show = await create_show(client, rows=1, seats_per_row=ROW)
    conn: asyncpg.Connection = loop_thread.run(asyncpg.connect(cluster.shard_urls[show["shard"]]))
    labels = [f"A{n}" for n in range(1, ROW + 1)]

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rows_and_picks())
    def agree(case: tuple[int, list[bool], set[int]]) -> None:
        length, free, picks = case
        # seats past the row's length are taken: for the rule the same as the row's end
        whole = free + [False] * (ROW - length)
        loop_thread.run(conn.execute(SET_ROW, show["id"], labels, whole))
        picked = sorted(labels[i] for i in picks)
        found = loop_thread.run(
            conn.fetchval("SELECT stranded_seats($1, $2, '{}')", show["id"], picked)
        )
        expected = sorted(labels[i] for i in reference_stranded(whole, picks))
        assert sorted(found) == expected, (whole, picked)

    try:
        agree()
    finally:
        loop_thread.run(conn.close())


async def hold(client: httpx.AsyncClient, show: dict[str, Any], user: str, *seats: str) -> Any:
    return await client.post(
        f"/shows/{show['id']}/holds", json={"seats": list(seats)}, headers=auth(user)
    )


async def test_a_pick_that_strands_a_seat_is_refused_naming_it(
    client: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(client, rows=2, seats_per_row=10, single_seat_rule="enforce")
    assert show["single_seat_rule"] == "enforce"
    refused = await hold(client, show, user, "A2", "A3")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "single_seat" and refused.json()["seats"] == ["A1"]
    booked = await client.post(
        f"/shows/{show['id']}/book", json={"seatNumbers": ["A5", "A7"]}, headers=auth(user)
    )
    assert booked.status_code == 409 and booked.json()["seats"] == ["A6"], booked.text
    # taking the seat too, or leaving two, is fine
    assert (await hold(client, show, user, "A1", "A2", "A3")).status_code == 201
    assert (await hold(client, show, user, "A6", "A7")).status_code == 201
    # A4-A5 is a run of two: either seat leaves the other alone, whichever is taken
    assert (await hold(client, show, f"other-{user}", "A4")).status_code == 201
    # no other pick of two could avoid it: a run of three seats left (B8-B10)
    blocked = await client.post(
        f"/admin/shows/{show['id']}/seats",
        json={"seats": [f"B{n}" for n in range(1, 8)], "status": "BLOCKED"},
        headers=ADMIN,
    )
    assert blocked.status_code == 200
    assert (await hold(client, show, f"third-{user}", "B8", "B9")).status_code == 201


async def test_the_rule_is_off_by_default_and_set_by_the_admin(
    client: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(client)
    assert show["single_seat_rule"] == "off"
    assert (await hold(client, show, user, "A2")).status_code == 201
    changed = await client.patch(
        f"/admin/shows/{show['id']}", json={"single_seat_rule": "enforce"}, headers=ADMIN
    )
    assert changed.status_code == 200 and changed.json()["single_seat_rule"] == "enforce"
    assert (await client.get(f"/shows/{show['id']}")).json()["single_seat_rule"] == "enforce"
    refused = await hold(client, show, user, "B2")
    assert refused.status_code == 409 and refused.json()["seats"] == ["B1"]
    for bad in ({"single_seat_rule": "sometimes"}, {"single_seat_rule": None}):
        response = await client.patch(f"/admin/shows/{show['id']}", json=bad, headers=ADMIN)
        assert response.status_code == 422, response.text


async def test_two_claims_at_once_never_strand_a_seat_between_them(
    servers: list[Any], client: httpx.AsyncClient
) -> None:
    """In a row of 10, A3 alone and A5 alone are each fine, but whichever comes second
    strands A4. Sent at the same moment through two servers, exactly one may win, every
    round (the claims of a row take turns)."""
    async with (
        httpx.AsyncClient(base_url=servers[0].url, timeout=30) as one,
        httpx.AsyncClient(base_url=servers[1].url, timeout=30) as two,
    ):
        for round_ in range(15):
            show = await create_show(client, rows=1, seats_per_row=10, single_seat_rule="enforce")
            answers = await asyncio.gather(
                one.post(
                    f"/shows/{show['id']}/holds",
                    json={"seats": ["A3"]},
                    headers=auth(f"left-{round_}"),
                ),
                two.post(
                    f"/shows/{show['id']}/book",
                    json={"seatNumbers": ["A5"]},
                    headers=auth(f"right-{round_}"),
                ),
            )
            assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
            refused = next(a for a in answers if a.status_code == 409).json()
            assert refused["error"] == "single_seat" and refused["seats"] == ["A4"]
