"""Moving one show to another shard: an admin operation (`modex move-show`).

Order of steps, so that a crash at any point loses nothing:
  1. on the source, lock the show's row and every seat (in label order, like every
     writer), so no seat transaction runs while the rows are copied;
  2. on the target, replace any copy a failed earlier attempt left with a fresh one, commit;
  3. on the source, delete the rows and leave a `MOVED` tombstone in shard_shows, commit:
     a server still routing to the source gets outcome `moved` and looks the show up again;
  4. point the directory at the target.
A crash after 3 and before 4 leaves the show unreachable until the move is run again,
which then only does step 4.
"""

from __future__ import annotations

import asyncpg

from app.errors import ModexError
from app.shards import ShardRouter
from app.shows import ANALYZE_SEATS

TABLES = ("seats", "holds", "bookings", "outbox", "seat_audit")
# rows the target numbers afresh are copied in their order, so its ids keep that order
ORDER = {
    "seats": "",
    "holds": "",
    "bookings": "",
    "outbox": "ORDER BY id",
    "seat_audit": "ORDER BY id",
}
# every column, so the copy carries whatever the seat transactions check (status, limits)
SHOW_ON_SHARD = "SELECT * FROM shard_shows WHERE show_id = $1 FOR UPDATE"
LOCK_ALL_SEATS = "SELECT label FROM seats WHERE show_id = $1 ORDER BY label FOR UPDATE"
MOVE_DIRECTORY = "UPDATE shows SET shard = $2, updated_at = now() WHERE id = $1"


async def _columns(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1 "
        "ORDER BY ordinal_position",
        table,
    )
    # the outbox's and the audit's ids are the target's own sequences
    return [
        r["column_name"]
        for r in rows
        if not (table in ("outbox", "seat_audit") and r["column_name"] == "id")
    ]


async def move_show(router: ShardRouter, show_id: int, target_index: int) -> str:
    info = await router.show(show_id, fresh=True)
    target = router.shard(target_index)
    if info.shard == target_index:
        return f"show {show_id} is already on shard {target_index}"
    source = router.shard(info.shard)
    async with source.connection("move_show") as src, src.transaction():
        show_row = await src.fetchrow(SHOW_ON_SHARD, show_id)
        if show_row is None:
            raise ModexError(f"show {show_id} is not on shard {info.shard}")
        if show_row["status"] == "MOVED":
            # an earlier run got this far: only the directory is left to change
            await router.meta.execute(MOVE_DIRECTORY, show_id, target_index)
            return f"show {show_id} directory now points to shard {target_index}"
        await src.execute(LOCK_ALL_SEATS, show_id)
        copies = {}
        for table in TABLES:
            columns = await _columns(src, table)
            rows = await src.fetch(
                f"SELECT {', '.join(columns)} FROM {table} WHERE show_id = $1 {ORDER[table]}",
                show_id,
            )
            copies[table] = (columns, [tuple(row) for row in rows])

        async with target.connection("move_show") as dst, dst.transaction():
            await dst.execute("DELETE FROM shard_shows WHERE show_id = $1", show_id)
            for table in TABLES:
                await dst.execute(f"DELETE FROM {table} WHERE show_id = $1", show_id)
            await dst.copy_records_to_table(
                "shard_shows", columns=list(show_row.keys()), records=[tuple(show_row.values())]
            )
            for table, (columns, records) in copies.items():
                if records:
                    await dst.copy_records_to_table(table, columns=columns, records=records)
        async with target.connection("move_show") as dst:
            await dst.execute(ANALYZE_SEATS)  # as after creating a show: see shows.py

        for table in TABLES:
            await src.execute(f"DELETE FROM {table} WHERE show_id = $1", show_id)
        await src.execute("UPDATE shard_shows SET status = 'MOVED' WHERE show_id = $1", show_id)
    await router.meta.execute(MOVE_DIRECTORY, show_id, target_index)
    router.forget(show_id)
    seats = len(copies["seats"][1])
    return f"show {show_id} moved from shard {info.shard} to shard {target_index} ({seats} seats)"
