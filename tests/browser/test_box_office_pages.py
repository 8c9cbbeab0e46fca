"""Issue 15's pages in Chromium against real servers: best available on the map, the admin's
seat picker (block, reserve, put on sale) seen live by a watcher, and the sales report."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import PageErrors, assert_accessible, screenshot
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
        "No row has 9 free seats together in Circle right now. Try fewer seats, another area"
        ', or tick "Seats may be split"'
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


async def test_admin_blocks_seats_by_shift_click_and_reads_the_report(
    client: httpx.AsyncClient, servers: list[ServerProcess], open_page: Any, page_errors: PageErrors
) -> None:
    show = await small_show(client, "Box Office Night")
    r = await client.post(
        f"/shows/{show['id']}/book", json={"seatNumbers": ["B1", "B2"]}, headers=auth("early-bird")
    )
    assert r.status_code == 201, r.text
    watcher = await open_page(f"{servers[1].url}/map/{show['id']}")
    admin = await open_page(f"{servers[0].url}/admin", height=1000)
    await admin.locator("#token").fill(token("box-office", "admin"))
    await admin.locator("#token-save").click()
    await expect(admin.locator("#token-state")).to_contain_text("Signed in as box-office")
    await admin.locator(f'tr[data-show="{show["id"]}"] button').click()
    picker = admin.locator("#admin-seatmap")
    await expect(picker.locator('[data-seat="A3"]')).to_have_attribute("data-status", "AVAILABLE")

    # the report: counts by status and category, revenue, the sell-through chart
    figures = admin.locator("#report-figures")
    await expect(figures.locator('[data-key="BOOKED"] dd')).to_have_text("2")
    await expect(figures.locator('[data-key="AVAILABLE"] dd')).to_have_text("54")
    await expect(figures.locator('[data-key="revenue"] dd')).to_contain_text("100")
    stalls = admin.locator('table[data-report="category"] tr', has_text="Stalls")
    await expect(stalls).to_contain_text("40")
    await expect(admin.locator("#report-chart")).to_have_attribute("data-sold", "2")

    # two seats by click then shift-click, blocked: a watcher on the other server sees it
    await picker.locator('[data-seat="A3"]').click()
    await picker.locator('[data-seat="A4"]').click(modifiers=["Shift"])
    await expect(admin.locator("#admin-selection")).to_have_text("2 seats selected: A3, A4.")
    await admin.locator("#seats-block").click()
    await expect(admin.locator("#seats-message")).to_contain_text("2 seats taken off sale: A3, A4")
    await wait_live(watcher)
    for label in ("A3", "A4"):
        await expect(seat(watcher, label)).to_have_attribute("data-status", "BLOCKED")
    await expect(figures.locator('[data-key="BLOCKED"] dd')).to_have_text("2")

    # a drag across C1..C3, then Shift+ArrowRight from the keyboard adds C4; kept for press
    box = await picker.locator('[data-seat="C1"]').bounding_box()
    end = await picker.locator('[data-seat="C3"]').bounding_box()
    assert box and end
    await admin.mouse.move(box["x"] + 5, box["y"] + 5)
    await admin.mouse.down()
    await admin.mouse.move(end["x"] + 5, end["y"] + 5, steps=4)
    await admin.mouse.up()
    await expect(admin.locator("#admin-selection")).to_have_text("3 seats selected: C1, C2, C3.")
    await picker.locator('[data-seat="C3"]').focus()
    await admin.keyboard.press("Shift+ArrowRight")
    await expect(admin.locator("#admin-selection")).to_have_text(
        "4 seats selected: C1, C2, C3, C4."
    )
    await admin.locator("#seats-channel").fill("press")
    await admin.locator("#seats-reserve").click()
    await expect(admin.locator("#seats-message")).to_contain_text("4 seats reserved for press")
    await expect(seat(watcher, "C4")).to_have_attribute("data-status", "RESERVED")
    await expect(admin.locator('table[data-report="channel"]')).to_contain_text("press")
    await assert_accessible(admin)
    await screenshot(admin, "admin-seat-picker-and-report")

    # the CSV, fetched with the admin token and handed over as a file
    async with admin.expect_download() as got:
        await admin.locator("#report-csv").click()
    download = await got.value
    assert download.suggested_filename == f"show-{show['id']}-report.csv"
    path = await download.path()
    text = path.read_text()
    assert text.startswith("section,key,status,seats") and "status,,BLOCKED,2" in text
    assert not page_errors.errors, page_errors.errors
