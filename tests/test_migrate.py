"""Migrations: numbered files run once, function files again whenever they change."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import asyncpg

from app.migrate import apply_migrations
from tests.support import ROOT, Services, with_database


async def test_a_changed_function_file_reaches_an_existing_database(
    services: Services, tmp_path: Path
) -> None:
    sql_dir = tmp_path / "sql"
    shutil.copytree(ROOT / "sql", sql_dir)
    name = f"mxt_mig_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(services.pg_admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(services.pg_admin_url, name)
    try:
        first = await apply_migrations(url, "shard", sql_dir)
        assert first[0] == "001_seats.sql"
        assert first[-1].startswith("functions/seat_transactions.sql@")
        assert await apply_migrations(url, "shard", sql_dir) == []

        functions = sql_dir / "shard" / "functions" / "seat_transactions.sql"
        text = functions.read_text()
        assert "outcome := not_here(p_show);" in text
        functions.write_text(text.replace("outcome := not_here(p_show);", "outcome := 'gone';"))
        again = await apply_migrations(url, "shard", sql_dir)
        assert len(again) == 1 and again[0] != first[-1]

        conn = await asyncpg.connect(url)
        try:
            outcome = await conn.fetchval("SELECT outcome FROM release_hold(1, '1.x', 'u')")
        finally:
            await conn.close()
        assert outcome == "gone"
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
