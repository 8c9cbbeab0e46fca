"""A show lives in two databases (the directory and its shard): whatever fails between the
two writes, no shard row is left without a directory entry and both agree on the status.
Failures are injected at each step of a real create and change, and the reconciler repairs
what a crash would leave."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from app import wire
from app.realtime.keys import deployment_keys
from app.shards import ShardRouter
from app.shows import ShowCatalog
from tests.support import Cluster, auth, create_show

ADMIN = auth("admin", "admin")


class Injected(Exception):
    """The failure a test puts between two steps."""


@pytest.fixture
async def catalog(router: ShardRouter, redis: aioredis.Redis) -> AsyncIterator[ShowCatalog]:
    keys = await deployment_keys(router.meta, "", "redis://127.0.0.1/0")
    yield ShowCatalog(router, redis, 30, keys)


async def disagreements(cluster: Cluster) -> list[str]:
    """Every shard row must belong to a directory entry that places the show on that shard
    (or be a moved show's tombstone), with the same status and seat limit."""
    meta = await cluster.connect_shard(0)
    try:
        directory = {
            row["id"]: row
            for row in await meta.fetch(
                "SELECT id, shard, status, max_seats_per_customer FROM shows"
            )
        }
    finally:
        await meta.close()
    found = []
    copied: set[int] = set()
    for index in range(cluster.shard_count):
        conn = await cluster.connect_shard(index)
        try:
            copies = await conn.fetch(
                "SELECT show_id, status, max_seats_per_customer FROM shard_shows"
                " WHERE status <> 'MOVED'"
            )
            seatless = await conn.fetch(
                "SELECT DISTINCT show_id FROM seats s WHERE NOT EXISTS"
                " (SELECT 1 FROM shard_shows WHERE show_id = s.show_id)"
            )
        finally:
            await conn.close()
        found += [f"seats of show {row['show_id']} with no shard_shows row" for row in seatless]
        copied |= {copy["show_id"] for copy in copies}
        for copy in copies:
            entry = directory.get(copy["show_id"])
            if entry is None:
                found.append(f"show {copy['show_id']} on shard {index}: no directory entry")
            elif entry["shard"] == index and (
                entry["status"],
                entry["max_seats_per_customer"],
            ) != (copy["status"], copy["max_seats_per_customer"]):
                found.append(f"show {copy['show_id']}: directory {dict(entry)}, shard {dict(copy)}")
    # a moved show's tombstone is left out above, but its directory row names its new shard
    found += [f"show {id_} in the directory has no shard copy" for id_ in directory.keys() - copied]
    return found


def new_show(**fields: Any) -> wire.CreateShow:
    return wire.CreateShow(
        title="Consistency",
        venue="V",
        starts_at=datetime(2027, 3, 1, tzinfo=UTC),
        rows=2,
        seats_per_row=5,
        **fields,
    )


async def test_nul_in_a_title_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, cluster: Cluster
) -> None:
    body = {
        "title": "a\u0000b",
        "venue": "V",
        "starts_at": "2027-01-01T20:00:00Z",
        "rows": 1,
        "seats_per_row": 2,
    }
    response = await client.post("/admin/shows", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert await disagreements(cluster) == []


async def test_nul_in_a_change_leaves_the_show_as_it_was(
    client: httpx.AsyncClient, cluster: Cluster, show: dict[str, Any]
) -> None:
    change = {"status": "CANCELLED", "title": "x\u0000y"}
    response = await client.patch(f"/admin/shows/{show['id']}", json=change, headers=ADMIN)
    assert response.status_code == 422, response.text
    hold = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth("nul-buyer")
    )
    assert hold.status_code == 201, hold.text  # still on sale on the shard too
    assert await disagreements(cluster) == []


def inject_failure(
    monkeypatch: pytest.MonkeyPatch,
    catalog: ShowCatalog,
    step: str,
    *,
    step_runs: bool = True,
    crash_skips: str | None = None,
) -> None:
    """Makes `catalog.<step>` raise (after doing its work when `step_runs`); with
    `crash_skips`, that clean-up method does nothing either, as when the process dies."""
    original = getattr(catalog, step)

    async def failing(*args: Any) -> None:
        if step_runs:
            await original(*args)
        raise Injected

    async def nothing(*args: Any) -> None:
        pass

    monkeypatch.setattr(catalog, step, failing)
    if crash_skips is not None:
        monkeypatch.setattr(catalog, crash_skips, nothing)


@pytest.mark.parametrize("after_shard_write", [False, True])
async def test_a_create_that_fails_leaves_no_orphan(
    catalog: ShowCatalog,
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    after_shard_write: bool,
) -> None:
    inject_failure(monkeypatch, catalog, "_write_shard_show", step_runs=after_shard_write)
    with pytest.raises(Injected):
        await catalog.create(new_show())
    assert await disagreements(cluster) == []


async def test_the_reconciler_removes_what_a_crashed_create_left(
    catalog: ShowCatalog, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    inject_failure(monkeypatch, catalog, "_write_shard_show", crash_skips="_remove_orphan")
    with pytest.raises(Injected):
        await catalog.create(new_show())
    left = await disagreements(cluster)
    assert len(left) == 1 and "no directory entry" in left[0]
    # a create under way looks the same for a moment: young rows are left alone
    assert (await catalog.reconcile()).orphans_removed == []
    assert len(await disagreements(cluster)) == 1
    done = await catalog.reconcile(orphan_age=0)
    assert len(done.orphans_removed) == 1
    assert await disagreements(cluster) == []


async def test_a_change_that_fails_after_the_shard_write_is_undone(
    catalog: ShowCatalog, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    show = await catalog.create(new_show())
    inject_failure(monkeypatch, catalog, "_sync_shard")
    with pytest.raises(Injected):
        await catalog.update(show.id, wire.UpdateShow(status="CANCELLED"))
    monkeypatch.undo()
    assert (await catalog.get(show.id)).status == "ON_SALE"
    assert await disagreements(cluster) == []


async def test_the_reconciler_repairs_what_a_crashed_change_left(
    catalog: ShowCatalog, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    show = await catalog.create(new_show())
    inject_failure(monkeypatch, catalog, "_sync_shard", crash_skips="_resync")
    with pytest.raises(Injected):
        await catalog.update(show.id, wire.UpdateShow(status="CANCELLED", max_seats_per_customer=3))
    monkeypatch.undo()
    assert any(str(show.id) in found for found in await disagreements(cluster))
    done = await catalog.reconcile()
    assert show.id in done.repaired
    assert await disagreements(cluster) == []
    assert (await catalog.get(show.id)).status == "ON_SALE"


@pytest.mark.parametrize(
    ("moves", "refused"),
    [
        (["SCHEDULED", "ON_SALE", "SCHEDULED", "ENDED"], None),
        (["ENDED", "ON_SALE"], "ON_SALE"),
        (["ENDED", "CANCELLED"], "CANCELLED"),
        (["CANCELLED", "ON_SALE"], "ON_SALE"),
        (["CANCELLED", "SCHEDULED"], "SCHEDULED"),
        (["ON_SALE", "CANCELLED", "CANCELLED"], None),
    ],
)
async def test_show_status_moves_follow_the_state_machine(
    client: httpx.AsyncClient, show: dict[str, Any], moves: list[str], refused: str | None
) -> None:
    status = "ON_SALE"
    for wanted in moves:
        response = await client.patch(
            f"/admin/shows/{show['id']}", json={"status": wanted}, headers=ADMIN
        )
        if wanted == refused and status in ("ENDED", "CANCELLED"):
            assert response.status_code == 409, response.text
            assert response.json()["error"] == "invalid_status_change"
            assert response.json()["status"] == status
            break
        assert response.status_code == 200, response.text
        status = wanted
    assert (await client.get(f"/shows/{show['id']}")).json()["status"] == status


async def test_a_changed_seat_limit_reaches_the_shard(
    client: httpx.AsyncClient, cluster: Cluster, show: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/admin/shows/{show['id']}", json={"max_seats_per_customer": 4}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    assert response.json()["max_seats_per_customer"] == 4
    assert await disagreements(cluster) == []


async def test_options_names_every_method_of_a_path(client: httpx.AsyncClient) -> None:
    response = await client.request("OPTIONS", "/bookings/1.abcdefghijklmnopqrstuvwx")
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "DELETE"}


async def test_a_create_sent_twice_with_one_key_makes_one_show(client: httpx.AsyncClient) -> None:
    body = {
        "title": "Twice",
        "venue": "V",
        "starts_at": "2027-05-01T20:00:00Z",
        "rows": 2,
        "seats_per_row": 3,
    }
    headers = {**ADMIN, "Idempotency-Key": f"create-{secrets.token_hex(4)}"}
    answers = await asyncio.gather(
        *(client.post("/admin/shows", json=body, headers=headers) for _ in range(3))
    )
    assert [a.status_code for a in answers] == [201, 201, 201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    other = await client.post(
        "/admin/shows", json={**body, "title": "Something else"}, headers=headers
    )
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"


async def test_a_show_nobody_booked_can_be_deleted_and_one_with_bookings_cannot(
    client: httpx.AsyncClient, cluster: Cluster, show: dict[str, Any]
) -> None:
    held = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth("deleter")
    )
    assert held.status_code == 201, held.text
    deleted = await client.delete(f"/admin/shows/{show['id']}", headers=ADMIN)
    assert deleted.status_code == 204, deleted.text
    assert (await client.get(f"/shows/{show['id']}")).status_code == 404
    assert await disagreements(cluster) == []

    booked_show = await create_show(client)
    booked = await client.post(
        f"/shows/{booked_show['id']}/book", json={"seatNumbers": ["A1"]}, headers=auth("fan")
    )
    assert booked.status_code == 201, booked.text
    refused = await client.delete(f"/admin/shows/{booked_show['id']}", headers=ADMIN)
    assert refused.status_code == 409 and refused.json()["error"] == "show_has_bookings"
    assert (await client.get(f"/shows/{booked_show['id']}")).status_code == 200


async def test_the_reconciler_finishes_a_delete_that_crashed_after_the_shard(
    catalog: ShowCatalog, cluster: Cluster
) -> None:
    show = await catalog.create(new_show())
    shard = await cluster.connect_shard(show.shard)
    try:  # the shard's part of a delete, as if the process died before the directory's
        for table in ("seats", "shard_shows"):
            await shard.execute(f"DELETE FROM {table} WHERE show_id = $1", show.id)
    finally:
        await shard.close()
    assert any("no shard" in found for found in await disagreements(cluster))
    done = await catalog.reconcile(orphan_age=0)
    assert show.id in done.deletes_finished
    assert await disagreements(cluster) == []
