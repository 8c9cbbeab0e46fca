"""Each seat rule has one source, and nothing drifts from it: the functions each shard runs
are the rendered template (app/seat_sql.py, sql/shard/functions/), every outcome the SQL
gives is an Outcome, each result type has its function's columns, and what a seat map
shows agrees with what a claim may take, asked of the real database."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from app.outcomes import RESULTS, Outcome
from app.seat_sql import FRAGMENTS, PLACEHOLDER, render
from app.seatmap import SEAT_STATUS_NOW
from tests.support import ROOT, Cluster

TEMPLATE = ROOT / "sql" / "shard" / "functions" / "seat_transactions.sql"
FUNCTION = re.compile(r"CREATE FUNCTION (\w+)\(.*?\$\$(.*?)\$\$", re.DOTALL)
# `outcome := 'taken'`, `outcome := CASE ... THEN 'earlier' ELSE 'key_reused' END`
OUTCOME_SET = re.compile(r"\boutcome := (.*?);", re.DOTALL)
LITERAL = re.compile(r"'(\w+)'")
# the lapsed-hold rule, written out (seat_status_now() says it with its own parameters)
LAPSED_HOLD = re.compile(r"held_until\s*(<=|>)\s*now\(\)")


def rendered_functions() -> dict[str, str]:
    return dict(FUNCTION.findall(render(TEMPLATE)))


async def fetch(cluster: Cluster, shard: int, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await cluster.connect_shard(shard)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        return rows
    finally:
        await conn.close()


async def test_each_shard_runs_the_rendered_template(cluster: Cluster) -> None:
    expected = rendered_functions()
    for shard in range(cluster.shard_count):
        rows = await fetch(
            cluster,
            shard,
            "SELECT proname, prosrc FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
        )
        found = {row["proname"]: row["prosrc"] for row in rows if row["proname"] in expected}
        assert found == expected


def test_the_template_names_every_fragment_and_only_fragments() -> None:
    named = set(PLACEHOLDER.findall(TEMPLATE.read_text()))
    assert named == set(FRAGMENTS)
    assert "{{" not in render(TEMPLATE)


def test_no_function_file_or_module_writes_the_lapsed_hold_rule_out_again() -> None:
    """A lapsed hold is free at once: seat_status_now() says so, every reader asks it."""
    texts = {path: render(path) for path in (ROOT / "sql").glob("*/functions/*.sql")}
    texts |= {path: path.read_text() for path in (ROOT / "app").rglob("*.py")}
    copies = [str(path) for path, text in texts.items() if LAPSED_HOLD.search(text)]
    assert copies == []


def test_every_outcome_the_functions_give_is_an_outcome() -> None:
    given = {
        literal
        for body in rendered_functions().values()
        for expression in OUTCOME_SET.findall(body)
        for literal in LITERAL.findall(expression)
    }
    # not_here() answers the outcome for a hold or booking this shard does not have
    given |= set(re.findall(r"(?:THEN|ELSE) '(\w+)'", rendered_functions()["not_here"]))
    assert given == {outcome.value for outcome in Outcome}


async def test_each_result_type_has_its_functions_columns(cluster: Cluster) -> None:
    rows = await fetch(
        cluster,
        0,
        """
        SELECT p.proname,
               array_agg(a.name ORDER BY a.i) FILTER (WHERE a.mode IN ('o', 'b', 't')) AS out
        FROM pg_proc p,
             unnest(p.proargnames, p.proargmodes) WITH ORDINALITY AS a(name, mode, i)
        WHERE p.pronamespace = 'public'::regnamespace
        GROUP BY p.proname
        """,
    )
    columns = {row["proname"]: list(row["out"] or []) for row in rows}
    for function, kind in RESULTS.items():
        assert columns[function] == list(kind.__struct_fields__), function
    # a request run in a batch gets its function's columns from seat_batch()'s row
    for function in ("hold_seats", "release_hold", "confirm_hold", "book_seats"):
        assert set(RESULTS[function].__struct_fields__) <= set(columns["seat_batch"]), function


STATUSES = ("AVAILABLE", "HELD", "BOOKED", "BLOCKED", "RESERVED")
LAPSED, LIVE = timedelta(seconds=-5), timedelta(seconds=30)


def contract_status_now(status: str, lapsed: bool, channel: str | None) -> str:
    """DESIGN: an expired hold is as good as released, at once: back to general sale, or to
    its channel."""
    if status == "HELD" and lapsed:
        return "AVAILABLE" if channel is None else "RESERVED"
    return status


@pytest.mark.parametrize("caller_channels", [[], ["club"], ["press"]])
async def test_a_seat_is_free_to_claim_exactly_when_the_map_shows_it_free_to_the_caller(
    cluster: Cluster, caller_channels: list[str]
) -> None:
    """Every status, a hold lapsed or live, a seat of a channel or not: the status the seat
    maps show (SEAT_STATUS_NOW, app/seatmap.py) and whether a claim may take it (seat_free(),
    every claim's test) agree with each other and with the contract."""
    cases = [
        (status, until, channel)
        for status in STATUSES
        for until in ((LAPSED, LIVE) if status == "HELD" else (None,))
        for channel in (None, "club")
    ]
    rows = await fetch(
        cluster,
        0,
        f"""
            SELECT {SEAT_STATUS_NOW} AS now,
                   seat_free(status, held_until, channel, $4) AS free
            FROM unnest($1::text[], $2::interval[], $3::text[]) WITH ORDINALITY
                 AS s(status, until, channel, i),
                 LATERAL (SELECT now() + s.until AS held_until) h
            ORDER BY s.i
            """,
        [status for status, _, _ in cases],
        [until for _, until, _ in cases],
        [channel for _, _, channel in cases],
        caller_channels,
    )
    for (status, until, channel), row in zip(cases, rows, strict=True):
        shown = contract_status_now(status, until == LAPSED, channel)
        free_to_caller = shown in ("AVAILABLE", "RESERVED") and (
            channel is None or channel in caller_channels
        )
        assert (row["now"], row["free"]) == (shown, free_to_caller), (status, until, channel)


def test_a_function_file_without_placeholders_renders_as_it_is(tmp_path: Path) -> None:
    plain = tmp_path / "plain.sql"
    plain.write_text("SELECT '{}'::text[] AS $$x$$")
    assert render(plain) == plain.read_text()
