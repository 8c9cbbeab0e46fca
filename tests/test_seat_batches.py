"""Seat requests (hold, release, confirm, book) that arrive together share one transaction
(app/batches.py and seat_batch() in sql/shard/functions/seat_transactions.sql)."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.batches import SEAT_BATCH, SeatRequest, batch_arguments
from tests.support import Cluster, ServerProcess, auth, create_show, metric, wait_until


def new_hold_id(show_id: int) -> str:
    return f"{show_id}.{secrets.token_urlsafe(12)}"


async def run_batch(conn: asyncpg.Connection, *batch: SeatRequest) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(SEAT_BATCH, *batch_arguments(list(batch)))
    return rows


async def seats(conn: asyncpg.Connection, show_id: int, *labels: str) -> dict[str, Any]:
    rows = await conn.fetch(
        "SELECT label, status, hold_id FROM seats WHERE show_id = $1 AND label = ANY($2)",
        show_id,
        list(labels),
    )
    return {row["label"]: (row["status"], row["hold_id"]) for row in rows}


def changed(row: asyncpg.Record) -> list[tuple[str, str]]:
    return [(c["label"], c["status"]) for c in json.loads(row["event"])]


async def test_each_request_in_a_batch_runs_as_it_would_alone_in_order(
    cluster: Cluster, show: dict[str, Any]
) -> None:
    show_id = int(show["id"])
    h1, h2, h3, h4 = (new_hold_id(show_id) for _ in range(4))
    conn = await cluster.connect_shard(show["shard"])
    try:
        first = await run_batch(
            conn,
            SeatRequest("hold", show_id, h1, "ann", ("A1", "A2")),
            SeatRequest("hold", show_id, h2, "bob", ("A2", "A3")),  # A2 went just before
            SeatRequest("hold", show_id, h3, "cat", ("A4", "Z9")),  # no seat Z9
        )
        assert [r["outcome"] for r in first] == ["held", "taken", "unknown"]
        assert list(first[1]["detail"]) == ["A2"] and list(first[2]["detail"]) == ["Z9"]
        assert changed(first[0]) == [("A1", "HELD"), ("A2", "HELD")]
        assert first[1]["event"] is None and first[2]["event"] is None

        second = await run_batch(
            conn,
            SeatRequest("release", show_id, h1, "ann"),
            SeatRequest("hold", show_id, h4, "bob", ("A2", "A3")),  # free again just before
            SeatRequest("release", show_id, h4, "ann"),  # not hers: alone, to be refused
        )
        assert [r["outcome"] for r in second] == ["released", "held", "busy"]
        assert changed(second[0]) == [("A1", "AVAILABLE"), ("A2", "AVAILABLE")]
        assert changed(second[1]) == [("A2", "HELD"), ("A3", "HELD")]
        assert await seats(conn, show_id, "A1", "A2", "A3", "A4") == {
            "A1": ("AVAILABLE", None),
            "A2": ("HELD", h4),
            "A3": ("HELD", h4),
            "A4": ("AVAILABLE", None),  # a busy request wrote nothing
        }
        live = await conn.fetch("SELECT id FROM holds WHERE show_id = $1", show_id)
        assert {r["id"] for r in live} == {h4}

        booking, again = new_hold_id(show_id), new_hold_id(show_id)
        third = await run_batch(
            conn,
            SeatRequest("confirm", show_id, h4, "bob", booking_id=booking, idempotency_key="k1"),
            # the same confirm retried with its key: the booking made just before
            SeatRequest("confirm", show_id, h4, "bob", booking_id=again, idempotency_key="k1"),
            SeatRequest("confirm", show_id, h1, "ann", booking_id=again),  # gone: alone
        )
        assert [r["outcome"] for r in third] == ["confirmed", "earlier", "busy"]
        assert [json.loads(r["booking"])["id"] for r in third[:2]] == [booking, booking]
        assert changed(third[0]) == [("A2", "BOOKED"), ("A3", "BOOKED")]
        assert await seats(conn, show_id, "A2", "A3") == {
            "A2": ("BOOKED", None),
            "A3": ("BOOKED", None),
        }

        one_step, twice = new_hold_id(show_id), new_hold_id(show_id)
        fourth = await run_batch(
            conn,
            SeatRequest("book", show_id, None, "dan", ("B1", "B2"), booking_id=one_step),
            SeatRequest("book", show_id, None, "eve", ("B2", "B3"), booking_id=twice),
            SeatRequest("book", show_id, None, "eve", ("A3", "B3"), booking_id=twice),
        )
        assert [r["outcome"] for r in fourth] == ["booked", "taken", "taken"]
        assert [list(r["detail"]) for r in fourth[1:]] == [["B2"], ["A3"]]
        assert json.loads(fourth[0]["booking"])["seats"] == ["B1", "B2"]
        assert changed(fourth[0]) == [("B1", "BOOKED"), ("B2", "BOOKED")]
        # every change wrote its outbox row (its id comes from the INSERT), refusals none
        changes = (first[0], second[0], second[1], third[0], fourth[0])
        assert len({r["event_id"] for r in changes} - {None}) == 5
        assert all(r["event_id"] is None for r in (*first[1:], *third[1:], *fourth[1:]))
    finally:
        await conn.close()


async def test_a_batch_takes_no_row_another_transaction_has_locked(
    cluster: Cluster, show: dict[str, Any]
) -> None:
    """A batch does not wait: a request whose seat or hold is locked elsewhere is handed
    back at once (and the others in the batch go ahead), so a batch is never in a deadlock.
    A hold that is refused anyway (a seat taken) is refused at once."""
    show_id = int(show["id"])
    b5_hold, c1_hold, new_hold, busy_hold, late_hold = (new_hold_id(show_id) for _ in range(5))
    conn = await cluster.connect_shard(show["shard"])
    other = await cluster.connect_shard(show["shard"])
    try:
        made = await run_batch(
            conn,
            SeatRequest("hold", show_id, b5_hold, "ann", ("B5",)),
            SeatRequest("hold", show_id, c1_hold, "bob", ("C1",)),
        )
        assert [r["outcome"] for r in made] == ["held", "held"]
        # were the batch to wait for a lock, it would fail here instead of answering
        await conn.execute("SET lock_timeout = '1s'")
        async with other.transaction():
            await other.execute(
                "SELECT 1 FROM seats WHERE show_id = $1 AND label = ANY($2) FOR UPDATE",
                show_id,
                ["B1", "C1"],
            )
            await other.execute(
                "SELECT 1 FROM holds WHERE show_id = $1 AND id = $2 FOR UPDATE", show_id, b5_hold
            )
            rows = await run_batch(
                conn,
                SeatRequest("hold", show_id, busy_hold, "cat", ("B1", "B2")),  # B1 locked
                SeatRequest("hold", show_id, new_hold, "dan", ("B3",)),
                SeatRequest("release", show_id, b5_hold, "ann"),  # its hold row locked
                SeatRequest("release", show_id, c1_hold, "bob"),  # its seat locked
                SeatRequest("hold", show_id, late_hold, "eve", ("C1", "C2")),  # C1 is bob's
            )
            assert [r["outcome"] for r in rows] == ["busy", "held", "busy", "busy", "taken"]
            assert list(rows[4]["detail"]) == ["C1"]
        assert await seats(conn, show_id, "B1", "B2", "B3", "B5", "C1") == {
            "B1": ("AVAILABLE", None),
            "B2": ("AVAILABLE", None),
            "B3": ("HELD", new_hold),
            "B5": ("HELD", b5_hold),
            "C1": ("HELD", c1_hold),
        }
    finally:
        await conn.close()
        await other.close()


async def test_a_batch_counts_each_customers_claims_in_order_against_the_seat_limit(
    cluster: Cluster, show: dict[str, Any]
) -> None:
    """Claims of one customer in one batch are counted in order (the show's limit is 10);
    a claim whose customer's lock another transaction holds is handed back, not waited for."""
    show_id = int(show["id"])
    six = tuple(f"A{n}" for n in range(1, 7))
    conn = await cluster.connect_shard(show["shard"])
    other = await cluster.connect_shard(show["shard"])
    try:
        rows = await run_batch(
            conn,
            SeatRequest("hold", show_id, new_hold_id(show_id), "ann", six),
            SeatRequest(
                "hold", show_id, new_hold_id(show_id), "ann", ("B1", "B2", "B3", "B4", "B5")
            ),
            SeatRequest(
                "book",
                show_id,
                None,
                "ann",
                ("C1", "C2", "C3", "C4"),
                booking_id=new_hold_id(show_id),
            ),
            SeatRequest(
                "hold", show_id, new_hold_id(show_id), "bob", ("B1", "B2", "B3", "B4", "B5")
            ),
            SeatRequest("book", show_id, None, "ann", ("C5",), booking_id=new_hold_id(show_id)),
        )
        assert [r["outcome"] for r in rows] == [
            "held",
            "seat_limit",
            "booked",
            "held",
            "seat_limit",
        ]
        assert [r["seat_limit"] for r in (rows[1], rows[4])] == [10, 10]
        assert rows[1]["event"] is None and rows[4]["event"] is None
        await conn.execute("SET lock_timeout = '1s'")  # were the batch to wait, it would fail
        async with other.transaction():
            await other.execute("SELECT pg_advisory_xact_lock(customer_lock($1, 'cat'))", show_id)
            rows = await run_batch(
                conn,
                SeatRequest("hold", show_id, new_hold_id(show_id), "cat", ("D1",)),
                SeatRequest("book", show_id, None, "cat", ("D2",), booking_id=new_hold_id(show_id)),
                SeatRequest("hold", show_id, new_hold_id(show_id), "dan", ("D3",)),
            )
            assert [r["outcome"] for r in rows] == ["busy", "busy", "held"]
        assert await seats(conn, show_id, "D1", "D2") == {
            "D1": ("AVAILABLE", None),
            "D2": ("AVAILABLE", None),
        }
    finally:
        await conn.close()
        await other.close()


async def test_holds_and_releases_that_arrive_together_share_transactions(
    client: httpx.AsyncClient, cluster: Cluster
) -> None:
    show = await create_show(client, rows=10, seats_per_row=20)
    labels = [f"{row}{n}" for row in "ABCDEFGHIJ" for n in range(1, 21)]
    before = (await client.get("/metrics")).text

    async def hold(i: int) -> httpx.Response:
        return await client.post(
            f"/shows/{show['id']}/holds",
            json={"seats": labels[2 * i : 2 * i + 2]},
            headers=auth(f"batch-{i}"),
        )

    holds = await asyncio.gather(*(hold(i) for i in range(100)))
    assert [h.status_code for h in holds] == [201] * 100, {h.text for h in holds}
    releases = await asyncio.gather(
        *(
            client.delete(f"/holds/{h.json()['hold_id']}", headers=auth(f"batch-{i}"))
            for i, h in enumerate(holds)
        )
    )
    assert [r.status_code for r in releases] == [204] * 100
    after = (await client.get("/metrics")).text
    sent = metric(after, "seat_batch_size_sum") - metric(before, "seat_batch_size_sum")
    batches = metric(after, "seat_batch_size_count") - metric(before, "seat_batch_size_count")
    assert sent >= 200  # every hold and release went in a batch (a busy one in two) ...
    assert batches < 200  # ... and some shared one
    conn = await cluster.connect_shard(show["shard"])
    try:
        left = await conn.fetchval(
            "SELECT count(*) FROM seats WHERE show_id = $1 AND status <> 'AVAILABLE'", show["id"]
        )
        live = await conn.fetchval("SELECT count(*) FROM holds WHERE show_id = $1", show["id"])
    finally:
        await conn.close()
    assert (left, live) == (0, 0)


async def test_a_hold_whose_seat_is_locked_elsewhere_runs_alone_and_waits_its_turn(
    client: httpx.AsyncClient, cluster: Cluster, show: dict[str, Any], user: str
) -> None:
    name = 'seat_requests_alone_total{reason="busy"}'
    busy = metric((await client.get("/metrics")).text, name)
    other = await cluster.connect_shard(show["shard"])
    try:
        async with other.transaction():
            await other.execute(
                "SELECT 1 FROM seats WHERE show_id = $1 AND label = 'D1' FOR UPDATE", show["id"]
            )
            hold = asyncio.create_task(
                client.post(
                    f"/shows/{show['id']}/holds", json={"seats": ["D1"]}, headers=auth(user)
                )
            )

            async def handed_back() -> bool:
                return metric((await client.get("/metrics")).text, name) > busy

            await wait_until(handed_back, what="the batch to hand the hold back")
            assert not hold.done()  # alone, it waits for the lock
    finally:
        await other.close()  # ends the transaction: D1 is free
    answer = await hold
    assert answer.status_code == 201, answer.text
    assert answer.json()["seats"] == ["D1"]


async def test_when_a_batch_fails_each_request_runs_alone(
    own_cluster: Cluster, log_dir: Path, user: str
) -> None:
    """A shard still on an older schema (no seat_batch()) fails every batch: holds and
    releases still work, each in its own transaction."""
    server = ServerProcess(own_cluster, log_dir).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            show = await create_show(client)
            shard = await own_cluster.connect_shard(show["shard"])
            try:
                await shard.execute("DROP FUNCTION seat_batch")
            finally:
                await shard.close()
            held = await client.post(
                f"/shows/{show['id']}/holds", json={"seats": ["E1", "E2"]}, headers=auth(user)
            )
            assert held.status_code == 201, held.text
            released = await client.delete(f"/holds/{held.json()['hold_id']}", headers=auth(user))
            assert released.status_code == 204
            failed = metric(
                (await client.get("/metrics")).text, 'seat_requests_alone_total{reason="failed"}'
            )
            assert failed == 2
    finally:
        server.stop()
