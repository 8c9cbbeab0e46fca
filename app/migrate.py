"""SQL migrations: sql/meta/* on the metadata database, sql/shard/* on every shard.

The numbered files (tables, indexes) run once each, in name order. The files in
`functions/` define code, not data: each is a template (app/seat_sql.py fills in the
statements several functions share) and is applied again whenever its rendered text
changes, so a fixed function or fragment reaches every existing database (each such file
first drops what it defines, since CREATE OR REPLACE cannot change a function's result
columns).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import asyncpg

from app.config import Settings
from app.paths import project_dir
from app.seat_sql import render

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


async def apply_migrations(url: str, kind: str, sql_dir: Path | None = None) -> list[str]:
    """Apply the pending files of sql/<kind>/ in name order, then every changed file of
    sql/<kind>/functions/; returns what was applied."""
    folder = (sql_dir or project_dir("sql")) / kind
    files = [(path.read_text(), path.name) for path in sorted(folder.glob("*.sql"))]
    # a function file's ledger name carries its rendered text's hash: a new text is a new
    # migration
    for path in sorted(folder.glob("functions/*.sql")):
        text = render(path)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        files.append((text, f"functions/{path.name}@{digest}"))
    # a handful of statements, each run once: no statement cache (which PgBouncer's
    # transaction pooling could not keep anyway)
    conn = await asyncpg.connect(url, statement_cache_size=0)
    applied_now: list[str] = []
    try:
        async with conn.transaction():
            await conn.execute(MIGRATION_LOCK)
            await conn.execute(CREATE_LEDGER)
            done = {row["name"] for row in await conn.fetch(APPLIED, kind)}
            for text, name in files:
                if name in done:
                    continue
                await conn.execute(text)
                await conn.execute(RECORD, kind, name)
                applied_now.append(name)
    finally:
        await conn.close()
    for name in applied_now:
        log.info("migration applied", extra={"kind": kind, "migration": name})
    return applied_now


async def migrate_all(settings: Settings) -> None:
    await apply_migrations(settings.database_url, "meta")
    for url in settings.shard_urls:
        await apply_migrations(url, "shard")
