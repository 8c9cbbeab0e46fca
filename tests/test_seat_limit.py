"""One customer has at most a show's `max_seats_per_customer` seats (default 10) in live
holds and confirmed bookings together; over it, 409 `seat_limit`. A claim takes the
customer's lock on the show first, so claims made at once cannot both pass.
Guest tokens are limited per client IP."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.config import Settings
from app.errors import RateLimited
from app.ops.limits import RateLimits
from app.shards import create_pool
from tests.support import Cluster, ServerProcess, auth, create_show, wait_until

LIMIT = 10


async def hold(client: httpx.AsyncClient, show: dict[str, Any], user: str, *seats: str) -> Any:
    return await client.post(
        f"/shows/{show['id']}/holds", json={"seats": list(seats)}, headers=auth(user)
    )


async def book(client: httpx.AsyncClient, show: dict[str, Any], user: str, *seats: str) -> Any:
    return await client.post(
        f"/shows/{show['id']}/book", json={"seatNumbers": list(seats)}, headers=auth(user)
    )


def over_the_limit(response: httpx.Response, limit: int = LIMIT) -> bool:
    body = response.json()
    return response.status_code == 409 and body["error"] == "seat_limit" and body["limit"] == limit


async def seats_of(cluster: Cluster, show: dict[str, Any], user: str) -> int:
    """The customer's seats as the database has them: held by a live hold or booked."""
    conn = await cluster.connect_shard(show["shard"])
    try:
        count: int = await conn.fetchval(
            """
            SELECT count(*) FROM seats s
            WHERE s.show_id = $1 AND (
                (s.status = 'HELD' AND s.held_until > now() AND EXISTS (
                    SELECT 1 FROM holds h
                    WHERE h.show_id = s.show_id AND h.id = s.hold_id AND h.user_id = $2))
                OR (s.status = 'BOOKED' AND EXISTS (
                    SELECT 1 FROM bookings b
                    WHERE b.show_id = s.show_id AND b.id = s.booking_id AND b.user_id = $2)))
            """,
            show["id"],
            user,
        )
    finally:
        await conn.close()
    return count


async def test_ten_holds_of_one_seat_reach_the_limit_and_an_eleventh_is_refused(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    for n in range(1, LIMIT + 1):
        assert (await hold(client, show, user, f"A{n}")).status_code == 201
    refused = await hold(client, show, user, "B1")
    assert over_the_limit(refused), refused.text
    assert "10" in refused.json()["message"]
    # the refusal changed nothing, and the seat is there for anyone else
    assert (await hold(client, show, f"other-{user}", "B1")).status_code == 201


async def test_extended_holds_still_count_and_a_lapsed_hold_no_longer_does(
    client: httpx.AsyncClient, show: dict[str, Any], user: str, cluster: Cluster
) -> None:
    holds = [
        (await hold(client, show, user, f"A{2 * i + 1}", f"A{2 * i + 2}")).json() for i in range(5)
    ]
    for made in holds:
        extended = await client.post(f"/holds/{made['hold_id']}/extend", headers=auth(user))
        assert extended.status_code == 200
    assert over_the_limit(await hold(client, show, user, "B1"))
    # the first hold lapses (its time moved into the past): its two seats are free again
    conn = await cluster.connect_shard(show["shard"])
    try:
        past = "now() - interval '1 second'"
        await conn.execute(
            f"UPDATE holds SET expires_at = {past} WHERE show_id = $1 AND id = $2",
            show["id"],
            holds[0]["hold_id"],
        )
        await conn.execute(
            f"UPDATE seats SET held_until = {past} WHERE show_id = $1 AND hold_id = $2",
            show["id"],
            holds[0]["hold_id"],
        )
    finally:
        await conn.close()
    assert (await hold(client, show, user, "B1", "B2")).status_code == 201
    assert over_the_limit(await hold(client, show, user, "B3"))


async def test_bookings_count_toward_the_limit_until_cancelled(
    client: httpx.AsyncClient, show: dict[str, Any], user: str
) -> None:
    booked = await book(client, show, user, "A1", "A2", "A3", "A4")
    assert booked.status_code == 201
    held = (await hold(client, show, user, "A5", "A6", "A7", "A8")).json()
    confirmed = await client.post(f"/holds/{held['hold_id']}/confirm", headers=auth(user))
    assert confirmed.status_code == 201  # 8 seats: a confirmed hold counts once
    assert over_the_limit(await hold(client, show, user, "B1", "B2", "B3"))
    assert over_the_limit(await book(client, show, user, "B1", "B2", "B3"))
    assert (await hold(client, show, user, "B1", "B2")).status_code == 201  # 10
    cancelled = await client.delete(f"/bookings/{booked.json()['id']}", headers=auth(user))
    assert cancelled.status_code == 200
    assert (await book(client, show, user, "C1", "C2", "C3", "C4")).status_code == 201


async def test_an_admin_sets_the_limit_per_show(client: httpx.AsyncClient, user: str) -> None:
    show = await create_show(client, rows=1, seats_per_row=8, max_seats_per_customer=3)
    assert show["max_seats_per_customer"] == 3
    assert (await hold(client, show, user, "A1", "A2", "A3")).status_code == 201
    assert over_the_limit(await hold(client, show, user, "A4"), limit=3)
    raised = await client.patch(
        f"/admin/shows/{show['id']}",
        json={"max_seats_per_customer": 4},
        headers=auth("admin", "admin"),
    )
    assert raised.status_code == 200 and raised.json()["max_seats_per_customer"] == 4
    assert (await hold(client, show, user, "A4")).status_code == 201
    assert over_the_limit(await hold(client, show, user, "A5"), limit=4)


async def race_one_customer(
    clients: list[httpx.AsyncClient], show: dict[str, Any], cluster: Cluster, rounds: int
) -> None:
    """Each round, one new customer sends claims at once, spread over `clients`: three
    claims of 6 seats (two holds, a booking: exactly one can pass), or twelve holds of one
    seat (exactly ten can pass)."""
    free = iter(f"{row}{n}" for row in "ABCDEFGHIJ" for n in range(1, 21))
    for round_ in range(rounds):
        user = f"racer-{round_}-{secrets.token_hex(3)}"
        if round_ % 2 == 0:
            picks = [tuple(next(free) for _ in range(6)) for _ in range(3)]
            kinds = [hold, hold, book]
            expected = 6
        else:
            picks = [(next(free),) for _ in range(12)]
            kinds = [hold] * 12
            expected = LIMIT
        answers = await asyncio.gather(
            *(
                claim(clients[i % len(clients)], show, user, *seats)
                for i, (claim, seats) in enumerate(zip(kinds, picks, strict=True))
            )
        )
        made = [a for a in answers if a.status_code == 201]
        assert all(a.status_code == 201 or over_the_limit(a) for a in answers), [
            a.text for a in answers
        ]
        assert sum(len(a.json()["seats"]) for a in made) == expected, round_
        assert await seats_of(cluster, show, user) == expected, round_


async def test_claims_at_once_by_one_customer_never_pass_the_limit(
    servers: list[ServerProcess], cluster: Cluster
) -> None:
    """Claims on two servers (each batching its own), so they meet in the database."""
    async with (
        httpx.AsyncClient(base_url=servers[0].url, timeout=30) as one,
        httpx.AsyncClient(base_url=servers[1].url, timeout=30) as two,
    ):
        show = await create_show(one, rows=10, seats_per_row=20)
        await race_one_customer([one, two], show, cluster, rounds=10)


async def test_claims_at_once_never_pass_the_limit_with_each_in_its_own_transaction(
    cluster: Cluster, log_dir: Path
) -> None:
    alone = ServerProcess(cluster, log_dir, MODEX_SEAT_BATCH="1").start()
    try:
        async with httpx.AsyncClient(base_url=alone.url, timeout=30) as client:
            show = await create_show(client, rows=10, seats_per_row=20)
            await race_one_customer([client], show, cluster, rounds=10)
    finally:
        alone.stop()


async def waiting_on_a_lock(conn: asyncpg.Connection, pid: int) -> None:
    async def waiting() -> bool:
        wait = await conn.fetchval(
            "SELECT wait_event FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
            pid,
        )
        return bool(wait == "advisory")

    await wait_until(waiting, what="the second claim to wait for the first")


async def test_a_customers_second_claim_waits_for_the_first_to_commit_then_counts_it(
    cluster: Cluster, show: dict[str, Any]
) -> None:
    """hold_seats() and book_seats() as they run alone: the second claim by one customer
    waits on the customer's lock until the first commits, then counts its seats; another
    customer's claim does not wait."""
    show_id = int(show["id"])
    first, second, third, watch = [await cluster.connect_shard(show["shard"]) for _ in range(4)]
    hold_seats = "SELECT * FROM hold_seats($1, $2, $3, $4)"
    book_seats = "SELECT * FROM book_seats($1, $2, $3, $4, NULL)"
    try:
        tx = first.transaction()
        await tx.start()
        row = await first.fetchrow(
            hold_seats, show_id, [f"A{n}" for n in range(1, 7)], f"{show_id}.h1", "ann"
        )
        assert row["outcome"] == "held"
        later_hold = asyncio.ensure_future(
            second.fetchrow(
                hold_seats, show_id, [f"B{n}" for n in range(1, 7)], f"{show_id}.h2", "ann"
            )
        )
        await waiting_on_a_lock(watch, second.get_server_pid())
        later_book = asyncio.ensure_future(
            third.fetchrow(
                book_seats, show_id, ["C1", "C2", "C3", "C4", "C5"], "ann", f"{show_id}.b1"
            )
        )
        await waiting_on_a_lock(watch, third.get_server_pid())
        other = await asyncio.wait_for(
            watch.fetchrow(hold_seats, show_id, ["D1"], f"{show_id}.h3", "bob"), 5
        )
        assert other["outcome"] == "held"
        await tx.commit()
        for later in (await later_hold, await later_book):
            assert (later["outcome"], later["seat_limit"]) == ("seat_limit", 10)
        # within the limit, the next claim passes: 6 + 4
        last = await second.fetchrow(
            book_seats, show_id, ["C1", "C2", "C3", "C4"], "ann", f"{show_id}.b2"
        )
        assert last["outcome"] == "booked"
    finally:
        for conn in (first, second, third, watch):
            await conn.close()


async def test_the_customers_count_reads_through_indexes(
    cluster: Cluster, show: dict[str, Any]
) -> None:
    """The count runs on every claim: it reaches the customer's live holds and bookings
    through an index, never by reading every hold or booking of the show."""
    count = """
    SELECT (SELECT coalesce(sum(cardinality(h.seats)), 0) FROM holds h
            WHERE h.show_id = $1 AND h.user_id = $2 AND h.status = 'ACTIVE'
              AND h.expires_at > now())
         + (SELECT coalesce(sum(cardinality(b.seats)), 0) FROM bookings b
            WHERE b.show_id = $1 AND b.user_id = $2 AND b.status = 'CONFIRMED')
    """
    pool = await create_pool(cluster.shard_urls[show["shard"]], 1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(f"PREPARE mine(bigint, text) AS {count}")
            raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE mine({show['id']}, 'ann')")
    finally:
        await pool.close()

    def scans(plan: dict[str, Any]) -> list[tuple[str, str | None, str]]:
        found = [(plan["Node Type"], plan.get("Index Name"), plan.get("Index Cond", ""))]
        for child in plan.get("Plans", []):
            found += scans(child)
        return found

    nodes = scans(json.loads(raw)[0]["Plan"])
    indexes = {name for _, name, cond in nodes if name and "user_id" in cond}
    assert indexes == {"holds_live_by_user", "bookings_by_user"}, nodes
    assert not any("Seq Scan" in n or "Bitmap" in n for n, _, _ in nodes), nodes


def test_guest_tokens_per_ip_default_to_twenty_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused/unused")
    monkeypatch.delenv("MODEX_GUEST_TOKENS_PER_IP", raising=False)
    assert Settings.from_env().guest_tokens_per_ip == "20/minute"
    now = [1000.0]
    limits = RateLimits("off", "off", Settings.from_env().guest_tokens_per_ip, clock=lambda: now[0])
    for _ in range(20):
        limits.check_guest_token("10.0.0.1")
    with pytest.raises(RateLimited) as refused:
        limits.check_guest_token("10.0.0.1")
    assert refused.value.details["retry_after"] == 60
    limits.check_guest_token("10.0.0.2")  # per IP
    now[0] += 60
    limits.check_guest_token("10.0.0.1")  # a new minute
    unlimited = RateLimits("off", "off", "off")
    for _ in range(1000):
        unlimited.check_guest_token("10.0.0.1")


async def test_guest_tokens_are_limited_per_client_ip(cluster: Cluster, log_dir: Path) -> None:
    strict = ServerProcess(cluster, log_dir, MODEX_GUEST_TOKENS_PER_IP="3/minute").start()
    try:
        async with httpx.AsyncClient(base_url=strict.url) as http:
            minted = [await http.post("/auth/guest") for _ in range(3)]
            assert [m.status_code for m in minted] == [201] * 3
            refused = await http.post("/auth/guest")
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"] == "rate_limited"
            assert "guest tokens" in refused.json()["message"]
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            # only minting is limited: a guest's token still works
            shows = await http.get("/shows")
            assert shows.status_code == 200
    finally:
        strict.stop()
