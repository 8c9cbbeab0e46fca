"""Issue 15's pages in Chromium against real servers: best available on the map, the admin's
seat picker (block, reserve, put on sale) seen live by a watcher, and the sales report."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import PageErrors, assert_accessible
from tests.support import ServerProcess, auth, token

pytestmark = pytest.mark.browser


async def small_show(client: httpx.AsyncClient, title: str) -> dict[str, Any]:
    body = {
        "title": title,
        "venue": "Lyric Hall",
        "starts_at": "2027-06-01T19:30:00+01:00",
        "hold_seconds": 300,
        "sections": [
            {
                "name": "Stalls",
                "rows": 4,
                "seats_per_row": 10,
                "category": "stalls",
                "price_cents": 5000,
            },
            {
                "name": "Circle",
                "rows": 2,
                "seats_per_row": 8,
                "category": "circle",
                "price_cents": 3000,
            },
        ],
    }
    r = await client.post("/admin/shows", json=body, headers=auth("admin", "admin"))
    assert r.status_code == 201, r.text
    show: dict[str, Any] = r.json()
    return show


def seat(page: Page, label: str) -> Any:
    return page.locator(f'#seatmap [data-seat="{label}"]')


async def wait_live(page: Page) -> None:
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=15_000)


def adjacent(labels: list[str]) -> bool:
    parts = [re.fullmatch(r"([A-Z]+)(\d+)", label) for label in labels]
    rows = {m.group(1) for m in parts if m}
    nums = sorted(int(m.group(2)) for m in parts if m)
    return len(rows) == 1 and nums == list(range(nums[0], nums[0] + len(nums)))


async def test_best_available_on_the_map_holds_adjacent_seats(
    client: httpx.AsyncClient, servers: list[ServerProcess], open_page: Any, page_errors: PageErrors
) -> None:
    show = await small_show(client, "Best Seats Tonight")
    page = await open_page(f"{servers[0].url}/map/{show['id']}")
    await wait_live(page)
    await expect(page.locator("#best-category-field")).to_be_visible()
    # nine together cannot be had in the Circle's 8-seat rows: said in plain words
    await page.locator("#best-count").select_option("9")
    await page.locator("#best-category").select_option("circle")
    await page.locator("#best-hold").click()
    await expect(page.locator("#message")).to_contain_text(
        'No row has 9 free seats together in Circle right now. Try fewer seats, another area, or tick "Seats may be split"'
    )
    await page.locator("#best-count").select_option("3")
    async with page.expect_response(lambda r: r.url.endswith("/holds")) as held:
        await page.locator("#best-hold").click()
    response = await held.value
    assert response.status == 201
    seats = (await response.json())["seats"]
    assert len(seats) == 3 and adjacent(seats), seats
    # a hold like any other: countdown, the seats drawn as mine, Confirm focused
    await expect(page.locator("#hold-timer")).to_be_visible()
    await expect(page.locator("#message")).to_contain_text("3 seats held for you side by side")
    for label in seats:
        await expect(seat(page, label)).to_have_attribute("data-status", "HELD")
    await expect(page.locator("#confirm")).to_be_focused()
    await expect(page.locator("#best-hold")).to_be_disabled()
    await assert_accessible(page)
    await page.locator("#confirm").click()
    await expect(page.locator("#basket-heading")).to_have_text("You're booked!")
    assert not page_errors.errors, page_errors.errors
