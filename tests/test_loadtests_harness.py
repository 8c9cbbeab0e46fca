"""The load tools' harness (loadtests/common.py) against real servers: a Lab serves a show
and leaves nothing behind; its two percentiles are one definition; and no load tool turns
ruff off for a whole file."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import re
import sys
import tomllib
from types import ModuleType

import asyncpg

from tests.support import ROOT, Services

LOADTESTS = ROOT / "loadtests"


def load_common() -> ModuleType:
    """loadtests/common.py under a name of its own (loadtests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("loadtests_common", LOADTESTS / "common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


common = load_common()


async def database_names(admin_url: str) -> set[str]:
    conn = await asyncpg.connect(admin_url)
    try:
        return {row["datname"] for row in await conn.fetch("SELECT datname FROM pg_database")}
    finally:
        await conn.close()


def test_a_lab_serves_a_show_and_leaves_nothing_behind(services: Services) -> None:
    with common.Lab(services.pg_admin_url, services.redis_url, pin=False) as lab:
        lab.create_database()
        assert lab.name in asyncio.run(database_names(services.pg_admin_url))
        server = lab.start_server()
        show_id = common.create_show(server.url, lab.secret, rows=2, seats_per_row=3)
        assert common.seat_labels(server.url, show_id) == ["A1", "A2", "A3", "B1", "B2", "B3"]
    assert server.proc.poll() is not None
    assert not lab.folder.exists()
    assert lab.name not in asyncio.run(database_names(services.pg_admin_url))


def test_the_histogram_percentile_is_the_list_percentile() -> None:
    rng = random.Random(7)
    values = [rng.randrange(200) for _ in range(999)]
    counts: dict[int, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    ordered = sorted(float(v) for v in values)
    for p in (1, 50, 95, 99, 99.9, 100):
        assert common.histogram_percentile(counts, p) == common.percentile(ordered, p), p


def test_no_load_tool_turns_ruff_off_for_a_whole_file() -> None:
    blanket = re.compile(r"^#\s*ruff\s*:\s*noqa", re.M | re.I)
    switched_off = [
        path.name for path in sorted(LOADTESTS.glob("*.py")) if blanket.search(path.read_text())
    ]
    assert not switched_off
    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    ignored = ruff.get("lint", {}).get("per-file-ignores", {}) | ruff.get("per-file-ignores", {})
    assert not [pattern for pattern in ignored if "loadtests" in pattern]
