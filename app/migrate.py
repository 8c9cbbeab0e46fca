"""Ordered SQL migrations: sql/meta/* on the metadata database, sql/shard/* on every shard."""

from __future__ import annotations

import logging

import asyncpg

from app.config import Settings
from app.paths import project_dir

log = logging.getLogger(__name__)

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    kind       text NOT NULL,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name)
)
"""
# one migrator per database at a time, even when several servers start together
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(7263510001)"
APPLIED = "SELECT name FROM schema_migrations WHERE kind = $1"
RECORD = "INSERT INTO schema_migrations (kind, name) VALUES ($1, $2)"


async def apply_migrations(url: str, kind: str) -> list[str]:
    """Apply the pending files of sql/<kind>/ in name order; returns what was applied."""
    files = sorted((project_dir("sql") / kind).glob("*.sql"))
    conn = await asyncpg.connect(url)
    applied_now: list[str] = []
    try:
        async with conn.transaction():
            await conn.execute(MIGRATION_LOCK)
            await conn.execute(CREATE_LEDGER)
            done = {row["name"] for row in await conn.fetch(APPLIED, kind)}
            for path in files:
                if path.name in done:
                    continue
                await conn.execute(path.read_text())
                await conn.execute(RECORD, kind, path.name)
                applied_now.append(path.name)
    finally:
        await conn.close()
    for name in applied_now:
        log.info("migration applied", extra={"kind": kind, "migration": name})
    return applied_now


async def migrate_all(settings: Settings) -> None:
    await apply_migrations(settings.database_url, "meta")
    for url in settings.shard_urls:
        await apply_migrations(url, "shard")
