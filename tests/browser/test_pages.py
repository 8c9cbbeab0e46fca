"""The browser pages in real Chromium against real `modex serve` processes."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import PageErrors, assert_accessible, screenshot
from tests.support import ServerProcess, auth, create_show, token

pytestmark = pytest.mark.browser


async def create_sections_show(
    client: httpx.AsyncClient, title: str, **extra: Any
) -> dict[str, Any]:
    body = {
        "title": title,
        "venue": "Riverside Playhouse",
        "starts_at": "2027-03-12T19:30:00+01:00",
        "sections": [
            {
                "name": "Stalls",
                "rows": 8,
                "seats_per_row": 22,
                "category": "stalls",
                "price_cents": 6500,
            },
            {
                "name": "Circle",
                "rows": 5,
                "seats_per_row": 26,
                "category": "circle",
                "price_cents": 4200,
            },
            {
                "name": "Balcony",
                "rows": 3,
                "seats_per_row": 28,
                "category": "balcony",
                "price_cents": 2500,
            },
        ],
        **extra,
    }
    response = await client.post("/admin/shows", json=body, headers=auth("admin", "admin"))
    assert response.status_code == 201, response.text
    show: dict[str, Any] = response.json()
    return show


def seat(page: Page, label: str) -> Any:
    return page.locator(f'#seatmap [data-seat="{label}"]')


async def wait_live(page: Page) -> None:
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=15_000)


async def test_two_customers_see_each_others_hold_and_booking(
    client: httpx.AsyncClient, servers: list[ServerProcess], open_page: Any, page_errors: PageErrors
) -> None:
    show = await create_sections_show(client, "Twelfth Night")
    # the two customers are on different server processes: fan-out crosses instances
    alice = await open_page(f"{servers[0].url}/map/{show['id']}")
    bob = await open_page(f"{servers[1].url}/map/{show['id']}")
    for page in (alice, bob):
        await wait_live(page)
        await expect(seat(page, "A5")).to_have_attribute("data-status", "AVAILABLE")
    await expect(seat(alice, "A5")).to_have_attribute("aria-label", "Row A seat 5, available, €65")
    await expect(bob.locator("#watchers")).to_contain_text("2 people viewing", timeout=10_000)

    await seat(alice, "A5").click()
    await seat(alice, "A6").click()
    await expect(seat(alice, "A5")).to_have_attribute("aria-pressed", "true")
    async with alice.expect_response(
        lambda r: r.url.endswith("/holds") and r.request.method == "POST"
    ) as held:
        await alice.locator("#hold").click()
    assert (await held.value).status == 201
    started = time.monotonic()
    await expect(seat(bob, "A5")).to_have_attribute("data-status", "HELD", timeout=1_000)
    await expect(seat(bob, "A6")).to_have_attribute("data-status", "HELD", timeout=1_000)
    assert time.monotonic() - started < 1.0
    await expect(seat(bob, "A5")).to_have_attribute(
        "aria-label", "Row A seat 5, held by someone else, €65"
    )
    await expect(seat(alice, "A5")).to_have_class("seat is-mine")
    await expect(alice.locator("#countdown")).to_have_text(re.compile(r"^0:[0-9]{2}$"))
    await screenshot(alice, "map-held")

    # someone else's hold is not clickable into a pick
    # (aria-disabled: still focusable and clickable, it explains why it can't be picked)
    await seat(bob, "A5").click(force=True)
    await expect(bob.locator("#message")).to_contain_text("held by someone else")
    await expect(bob.locator("#hold")).to_be_disabled()

    await alice.locator("#confirm").click()
    await expect(alice.locator("#basket-heading")).to_have_text("You're booked!")
    for page in (alice, bob):
        await expect(seat(page, "A5")).to_have_attribute("data-status", "BOOKED", timeout=2_000)
        await expect(seat(page, "A6")).to_have_attribute("data-status", "BOOKED", timeout=2_000)
    await screenshot(alice, "map-booked")
    await screenshot(bob, "map-other-customer")
    assert not page_errors.errors


async def test_seat_taken_first_gives_a_clear_message(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any
) -> None:
    show = await create_show(client, rows=4, seats_per_row=12)
    page = await open_page(f"{server.url}/map/{show['id']}")
    await wait_live(page)
    await seat(page, "B3").click()
    await seat(page, "B4").click()
    # freeze this page's live view, then someone else takes B4 a moment before we click
    await page.evaluate("window.modexLive.stop()")
    other = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["B4"]}, headers=auth("someone-else")
    )
    assert other.status_code == 201, other.text
    await page.locator("#hold").click()
    message = page.locator("#message")
    await expect(message).to_contain_text("seat B4 was just taken by someone else")
    await expect(message).to_have_class("notice notice-error")
    # the seat that is still free stays picked; the taken one is dropped
    await expect(seat(page, "B3")).to_have_attribute("aria-pressed", "true")
    await expect(seat(page, "B4")).to_have_attribute("aria-pressed", "false")
    await expect(page.locator("#sr-assertive")).to_contain_text("B4")


async def test_keyboard_picks_and_holds(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any
) -> None:
    show = await create_show(client, rows=3, seats_per_row=8, hold_seconds=60)
    page = await open_page(f"{server.url}/map/{show['id']}")
    await wait_live(page)
    first = seat(page, "A1")
    await first.focus()
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("ArrowDown")
    await expect(seat(page, "B2")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(seat(page, "B2")).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#sr-polite")).to_contain_text("Row B seat 2 added")
    await page.locator("#hold").focus()
    await page.keyboard.press("Enter")
    await expect(seat(page, "B2")).to_have_attribute("data-status", "HELD")
    # a reload keeps the hold (same guest token, hold kept in localStorage)
    await page.reload()
    await wait_live(page)
    await expect(seat(page, "B2")).to_have_class("seat is-mine")
    await expect(seat(page, "B2")).to_have_attribute("aria-label", "Row B seat 2, held by you")
    await expect(page.locator("#hold-timer")).to_be_visible()
    await expect(page.locator("#extend")).to_be_enabled()
    await page.locator("#extend").click()
    await expect(page.locator("#message")).to_contain_text("more time")
    await page.locator("#release").click()
    await expect(seat(page, "B2")).to_have_attribute("data-status", "AVAILABLE")
    await expect(page.locator("#hold")).to_be_visible()


async def test_big_venue_uses_canvas_and_row_picker(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    show = await create_show(client, rows=30, seats_per_row=100, title="Cup Final")
    taken = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["A3"]}, headers=auth("early-bird")
    )
    assert taken.status_code == 201
    page = await open_page(f"{server.url}/map/{show['id']}")
    await wait_live(page)
    await expect(page.locator("#seatmap")).to_have_attribute("data-mode", "canvas")
    assert await page.locator("#seatmap canvas").count() == 1
    assert await page.locator("#seatmap .seat-plane").count() == 0
    picker = page.locator(".row-picker")
    await expect(picker.locator('[data-seat="A3"]')).to_have_attribute("data-status", "HELD")
    await picker.locator("#pick-row").select_option(label="Row C · 100 seats")
    await picker.locator('[data-seat="C50"]').click()
    await expect(picker.locator('[data-seat="C50"]')).to_have_attribute("aria-pressed", "true")
    # a click on the canvas picks by hit testing: seat C52 sits two to the right of C50
    view = await page.evaluate(
        "() => { const m = window.modexView, v = m.renderer.view, g = m.geometry;"
        " const i = m.store.index.get('C52');"
        " return {x: v.tx + (m.store.x[i] - g.minX + 0.5) * v.s,"
        " y: v.ty + (m.store.y[i] - g.minY + 0.5) * v.s}; }"
    )
    await page.locator("#seatmap canvas").click(position=view)
    await expect(picker.locator('[data-seat="C52"]')).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#picks li")).to_have_count(2)
    # a change made elsewhere reaches the canvas view live
    other = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["C20"]}, headers=auth("someone")
    )
    assert other.status_code == 201
    await expect(picker.locator('[data-seat="C20"]')).to_have_attribute("data-status", "HELD")
    assert await page.evaluate("window.modexView.statusOf('C20')") == "HELD"
    await screenshot(page, "map-canvas")
    await assert_accessible(page)
    assert not page_errors.errors


async def test_big_venue_row_picker_works_by_keyboard(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    show = await create_show(client, rows=30, seats_per_row=100, title="Derby")
    page = await open_page(f"{server.url}/map/{show['id']}")
    await wait_live(page)
    await expect(page.locator("#seatmap")).to_have_attribute("data-mode", "canvas")
    picker = page.locator(".row-picker")
    await picker.locator("#pick-row").select_option(label="Row D · 100 seats")
    # one tab stop for the row, then arrows, Home and End move within it (no wrapping)
    await picker.locator("#pick-row").focus()
    await page.keyboard.press("Tab")
    await expect(picker.locator('[data-seat="D1"]')).to_be_focused()
    await page.keyboard.press("ArrowLeft")
    await expect(picker.locator('[data-seat="D1"]')).to_be_focused()
    await page.keyboard.press("End")
    await expect(picker.locator('[data-seat="D100"]')).to_be_focused()
    await page.keyboard.press("Home")
    await page.keyboard.press("ArrowRight")
    await expect(picker.locator('[data-seat="D2"]')).to_be_focused()
    # the focused seat is ringed on the canvas and named under the map
    ringed = "() => { const m = window.modexView; return m.store.labels[m.renderer.cursor]; }"
    assert await page.evaluate(ringed) == "D2"
    await expect(page.locator("#seat-info")).to_contain_text("Row D seat 2, available")
    await page.keyboard.press("Enter")
    await expect(picker.locator('[data-seat="D2"]')).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#sr-polite")).to_contain_text("Row D seat 2 added")
    await expect(page.locator("#picks li")).to_have_count(1)
    assert not page_errors.errors


async def test_a_canvas_click_in_another_section_keeps_the_view(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    body = {
        "title": "Two bowls",
        "venue": "Modex Arena",
        "starts_at": "2027-03-12T19:30:00+01:00",
        "sections": [
            {"name": name, "rows": 30, "seats_per_row": 100, "price_cents": 4500}
            for name in ("Lower Bowl", "Upper Bowl")
        ],
    }
    response = await client.post("/admin/shows", json=body, headers=auth("admin", "admin"))
    assert response.status_code == 201, response.text
    page = await open_page(f"{server.url}/map/{response.json()['id']}")
    await wait_live(page)
    await expect(page.locator("#seatmap")).to_have_attribute("data-mode", "canvas")
    view = "() => ({...window.modexView.renderer.view})"
    fitted = await page.evaluate(view)
    assert fitted["s"] < 10, fitted  # small enough that choosing a row from the lists zooms
    # the middle seat of the upper bowl's middle row, as the canvas draws it now
    target = await page.evaluate(
        "() => { const m = window.modexView, v = m.renderer.view, g = m.geometry;"
        " const sec = g.sections[1], row = g.rowList[sec.rows[15]], i = row[50];"
        " return {label: m.store.labels[i],"
        " x: v.tx + (m.store.x[i] - g.minX + 0.5) * v.s,"
        " y: v.ty + (m.store.y[i] - g.minY + 0.5) * v.s}; }"
    )
    await page.locator("#seatmap canvas").click(position={"x": target["x"], "y": target["y"]})
    picker = page.locator(".row-picker")
    await expect(picker.locator(f'[data-seat="{target["label"]}"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(picker.locator("#pick-section")).to_have_value("1")
    # the seat was picked where the customer saw it: the view did not jump to another row
    assert await page.evaluate(view) == fitted
    assert not page_errors.errors


async def test_kiosk_survives_a_server_restart(
    client: httpx.AsyncClient, cluster: Any, log_dir: Any, open_page: Any, page_errors: PageErrors
) -> None:
    own = ServerProcess(cluster, log_dir).start()
    try:
        show = await create_sections_show(client, "The Tempest")
        page = await open_page(f"{own.url}/kiosk/{show['id']}", width=1920, height=1080)
        await expect(page.locator("#conn")).to_have_attribute(
            "data-state", "connected", timeout=15_000
        )
        await expect(page.locator("#avail-total")).to_have_text("390")
        await page.evaluate("window.__sameDocument = true")
        own.stop()
        await expect(page.locator("#conn")).to_have_attribute(
            "data-state", "reconnecting", timeout=10_000
        )
        await expect(page.locator("#conn-text")).to_contain_text("Reconnecting")
        # while the kiosk's server is down, seats change through another server
        held = await client.post(
            f"/shows/{show['id']}/holds", json={"seats": ["A1", "A2"]}, headers=auth("fan")
        )
        assert held.status_code == 201
        booked = await client.post(
            f"/shows/{show['id']}/book", json={"seatNumbers": ["N1"]}, headers=auth("fan2")
        )
        assert booked.status_code == 201, booked.text
        own.start()
        await expect(page.locator("#conn")).to_have_attribute(
            "data-state", "connected", timeout=30_000
        )
        await expect(seat(page, "A1")).to_have_attribute("data-status", "HELD", timeout=5_000)
        await expect(seat(page, "N1")).to_have_attribute("data-status", "BOOKED")
        await expect(page.locator("#avail-total")).to_have_text("387", timeout=5_000)
        # and it stays live after the restart
        more = await client.post(
            f"/shows/{show['id']}/holds", json={"seats": ["P7"]}, headers=auth("fan3")
        )
        assert more.status_code == 201
        await expect(seat(page, "P7")).to_have_attribute("data-status", "HELD", timeout=2_000)
        assert await page.evaluate("window.__sameDocument === true"), "the kiosk reloaded"
        await screenshot(page, "kiosk", full_page=False)
        await assert_accessible(page)
    finally:
        own.stop()
    assert not page_errors.errors


async def test_admin_creates_a_show_and_broadcasts(
    server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    admin = await open_page(f"{server.url}/admin")
    await admin.locator("#token").fill(token("box-office", "admin"))
    await admin.locator("#token-save").click()
    await expect(admin.locator("#token-state")).to_contain_text("Signed in as box-office (admin)")
    title = f"Macbeth {time.time_ns() % 100000}"
    await admin.locator("#c-title").fill(title)
    await admin.locator("#c-venue").fill("Old Vic")
    await admin.locator("#c-starts").fill("2027-05-01T19:30")
    await admin.locator('input[name="layout"][value="sections"]').check()
    async with admin.expect_response(lambda r: r.url.endswith("/admin/shows")) as created:
        await admin.locator("#create").click()
    response = await created.value
    assert response.status == 201, await response.text()
    # a retried or double-clicked create gets the same show
    assert len(await response.request.header_value("idempotency-key") or "") == 32
    show = await response.json()
    assert show["seats_total"] == 10 * 24 + 6 * 28
    await expect(admin.locator("#message")).to_contain_text(f"Created “{title}”")
    await expect(admin.locator("#edit-card")).to_be_visible()

    watcher = await open_page(f"{server.url}/map/{show['id']}")
    await wait_live(watcher)
    await expect(watcher.locator("h1")).to_have_text(title)
    kiosk = await open_page(f"{server.url}/kiosk/{show['id']}", width=1920, height=1080)
    await expect(kiosk.locator("#conn")).to_have_attribute(
        "data-state", "connected", timeout=15_000
    )

    await admin.locator("#b-message").fill("Doors open at 19:00 tonight.")
    await admin.locator("#broadcast").click()
    await expect(admin.locator("#message")).to_contain_text("Announcement sent")
    await expect(watcher.locator("#announcement-text")).to_have_text(
        "Doors open at 19:00 tonight.", timeout=2_000
    )
    await expect(watcher.locator("#announcement")).to_be_visible()
    await expect(watcher.locator("#sr-assertive")).to_contain_text("Doors open at 19:00 tonight.")
    await expect(kiosk.locator("#announcement-text")).to_have_text(
        "Doors open at 19:00 tonight.", timeout=2_000
    )

    await admin.locator("#e-title").fill(title + " (matinee)")
    await admin.locator("#e-status").select_option("SCHEDULED")
    await admin.locator("#save").click()
    await expect(admin.locator("#message")).to_contain_text("Saved")
    await expect(watcher.locator("h1")).to_have_text(title + " (matinee)", timeout=2_000)
    await expect(watcher.locator("#status-badge")).to_contain_text("Coming soon")
    await expect(watcher.locator("#hold")).to_be_disabled()
    await expect(kiosk.locator("h1")).to_have_text(title + " (matinee)", timeout=2_000)
    await screenshot(kiosk, "kiosk-announcement", full_page=False)
    await screenshot(admin, "admin")
    await screenshot(watcher, "map-announcement")
    await assert_accessible(admin)

    # nobody booked it: the show can be deleted, after a second click
    await admin.locator("#delete-show").click()
    await expect(admin.locator("#delete-show")).to_contain_text("Click again")
    async with admin.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        await admin.locator("#delete-show").click()
    assert (await deleted.value).status == 204
    await expect(admin.locator("#message")).to_contain_text("Deleted")
    await expect(admin.locator("#edit-card")).to_be_hidden()
    assert not page_errors.errors


async def test_every_page_is_accessible(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    show = await create_sections_show(client, "A Midsummer Night's Dream")
    await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["B4", "B5"]}, headers=auth("u1")
    )
    await client.post(
        f"/shows/{show['id']}/book", json={"seatNumbers": ["C7", "C8", "C9"]}, headers=auth("u2")
    )
    home = await open_page(f"{server.url}/")
    await expect(home.locator(f'[data-show="{show["id"]}"]')).to_be_visible()
    await screenshot(home, "index")
    await assert_accessible(home)

    page = await open_page(f"{server.url}/map/{show['id']}")
    await wait_live(page)
    await seat(page, "D10").click()
    await seat(page, "D11").click()
    await screenshot(page, "map")
    await assert_accessible(page)

    kiosk = await open_page(f"{server.url}/kiosk/{show['id']}", width=1920, height=1080)
    await expect(kiosk.locator("#conn")).to_have_attribute(
        "data-state", "connected", timeout=15_000
    )
    await assert_accessible(kiosk)

    admin = await open_page(f"{server.url}/admin")
    await assert_accessible(admin)

    narrow = await open_page(f"{server.url}/map/{show['id']}", width=390, height=844)
    await wait_live(narrow)
    await screenshot(narrow, "map-phone")
    await assert_accessible(narrow)

    calm = await open_page(f"{server.url}/map/{show['id']}", reduced_motion="reduce")
    await wait_live(calm)
    duration = await calm.evaluate(
        "getComputedStyle(document.querySelector('#seatmap .seat')).transitionDuration"
    )
    assert duration in ("0s", "0s, 0s"), duration
    assert not page_errors.errors


async def test_rate_limited_customer_is_told_when_to_retry(
    client: httpx.AsyncClient, cluster: Any, log_dir: Any, open_page: Any
) -> None:
    strict = ServerProcess(cluster, log_dir, MODEX_RATE_LIMIT_USER="1/minute").start()
    try:
        show = await create_show(client, rows=2, seats_per_row=6)
        page = await open_page(f"{strict.url}/map/{show['id']}")
        await wait_live(page)
        await seat(page, "A1").click()
        await page.locator("#hold").click()
        await expect(seat(page, "A1")).to_have_attribute("data-status", "HELD")
        async with page.expect_response(lambda r: r.request.method == "DELETE") as limited:
            await page.locator("#release").click()
        response = await limited.value
        assert response.status == 429
        wait = int(response.headers["retry-after"])
        message = page.locator("#message")
        await expect(message).to_contain_text(
            f"Too many requests. Please wait {wait} second{'s' if wait != 1 else ''}"
        )
        await expect(message).to_have_class("notice notice-error")
        await expect(page.locator("#sr-assertive")).to_contain_text("Too many requests")
        # the hold is still there, with its buttons
        await expect(seat(page, "A1")).to_have_class("seat is-mine")
        await expect(page.locator("#confirm")).to_be_visible()
    finally:
        strict.stop()
