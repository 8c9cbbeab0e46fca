"""Issue 19: what customers, phone users, kiosks and the box office tripped over, one test
per point, in real Chromium against real `modex serve` processes, at the viewport where the
user hit it."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import PageErrors, assert_accessible, screenshot
from tests.support import ServerProcess, auth, create_show, token

pytestmark = pytest.mark.browser

REFERENCE = re.compile(r"^[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{8}$")


def seat(page: Page, label: str) -> Any:
    return page.locator(f'#seatmap [data-seat="{label}"]')


async def wait_live(page: Page) -> None:
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=15_000)


async def hold_and_confirm(page: Page, *labels: str) -> None:
    for label in labels:
        await seat(page, label).click()
    await page.locator("#hold").click()
    await page.locator("#confirm").click()
    await expect(page.locator("#basket-heading")).to_have_text("You're booked!")


# ---- 1. a booking can be found again ----


async def test_a_customer_finds_their_booking_again_and_cancels_it(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    show = await create_show(client, rows=4, seats_per_row=10)
    page = await open_page(f"{server.url}/map/{show['id']}", width=1280, height=800)
    await wait_live(page)
    await hold_and_confirm(page, "B4", "B5")
    reference = (await page.locator("#ref").text_content() or "").strip()
    assert REFERENCE.match(reference), reference

    # after a reload the seats are drawn as the customer's own, not as anyone's "Sold"
    await page.reload()
    await wait_live(page)
    await expect(seat(page, "B4")).to_have_class(re.compile(r"\bis-owned\b"))
    await expect(seat(page, "B4")).to_have_attribute("aria-label", "Row B seat 4, booked by you")
    await expect(seat(page, "C4")).not_to_have_class(re.compile(r"\bis-owned\b"))
    await seat(page, "B5").click()
    await expect(page.locator("#message")).to_contain_text(reference)

    await page.get_by_role("link", name="My bookings").click()
    await page.wait_for_url("**/me")
    card = page.locator(".booking-card").filter(has_text=reference)
    await expect(card).to_contain_text("B4, B5")
    await expect(card).to_contain_text(show["title"])
    await assert_accessible(page)
    await screenshot(page, "me-bookings")
    await card.get_by_role("button", name="Cancel booking").click()
    await card.get_by_role("button", name=f"Yes, cancel {reference}").click()
    await expect(page.locator("#message")).to_contain_text(f"Booking {reference} cancelled")
    await expect(page.locator(".booking-card").filter(has_text=reference)).to_have_attribute(
        "data-status", "CANCELLED"
    )
    seats = (await client.get(f"/shows/{show['id']}/seats")).json()["seats"]
    assert {s["label"]: s["status"] for s in seats}["B4"] == "AVAILABLE"
    assert not page_errors.errors


async def test_the_box_office_finds_a_booking_read_out_at_the_counter(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    show = await create_show(client, rows=4, seats_per_row=10)
    made = await client.post(
        f"/shows/{show['id']}/book", json={"seatNumbers": ["C7", "C8"]}, headers=auth("pat")
    )
    booking = made.json()
    reference = booking["reference"]
    admin = await open_page(f"{server.url}/admin", width=1280, height=800)
    await admin.locator("#token").fill(token("clerk", "admin"))
    await admin.locator("#token-save").click()
    # as a customer reads it out: lower case, a space in the middle
    await admin.locator("#f-ref").fill(f"{reference[:4].lower()} {reference[4:].lower()}")
    await admin.locator("#find").click()
    row = admin.locator(f'#found-rows tr[data-reference="{reference}"]')
    await expect(row).to_contain_text("C7, C8")
    await expect(row).to_contain_text(show["title"])
    # or by the seat the customer sits in
    await admin.locator("#f-ref").fill("")
    await admin.locator("#f-show").select_option(str(show["id"]))
    await admin.locator("#f-seat").fill("c8")
    await admin.locator("#find").click()
    await expect(admin.locator("#found-rows tr")).to_have_count(1)
    await expect(row).to_be_visible()
    await row.get_by_role("button", name=f"Cancel booking {reference}").click()
    await row.get_by_role("button", name=f"Yes, cancel booking {reference}").click()
    await expect(admin.locator("#message")).to_contain_text(f"Booking {reference} cancelled")
    await expect(row.locator('td[data-status="CANCELLED"]')).to_be_visible()
    await assert_accessible(admin)
    again = await client.get(f"/bookings/{booking['id']}", headers=auth("pat"))
    assert again.json()["status"] == "CANCELLED"
    assert not page_errors.errors


# ---- 4. kiosks tell the room the truth ----

SMALLEST_KIOSK_TEXT = """() => {
  const sizes = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const box = n.parentElement;
    if (!n.textContent.trim() || !box || !box.offsetParent) continue;
    if (box.closest(".visually-hidden, [hidden]")) continue;
    sizes.push([parseFloat(getComputedStyle(box).fontSize), n.textContent.trim().slice(0, 30)]);
  }
  sizes.sort((a, b) => a[0] - b[0]);
  return sizes.slice(0, 3);
}"""


async def test_the_kiosk_headline_is_always_true(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    show = await create_show(client, rows=2, seats_per_row=5, title="Kiosk truth")
    kiosk = await open_page(f"{server.url}/kiosk/{show['id']}", width=1920, height=1080)
    customer = await open_page(f"{server.url}/map/{show['id']}", width=1280, height=800)
    await expect(kiosk.locator("#conn")).to_have_attribute(
        "data-state", "connected", timeout=15_000
    )
    big, label = kiosk.locator("#avail-total"), kiosk.locator("#avail-label")
    await expect(big).to_have_text("10")
    await expect(kiosk.locator("#status-text")).to_have_text("Tickets on sale now")
    # row letters and every other text readable across a room
    smallest = await kiosk.evaluate(SMALLEST_KIOSK_TEXT)
    assert smallest[0][0] >= 18, smallest
    await screenshot(kiosk, "kiosk-on-sale", full_page=False)

    labels = [f"{row}{n}" for row in "AB" for n in range(1, 6)]
    sold = await client.post(
        f"/shows/{show['id']}/book", json={"seatNumbers": labels}, headers=auth("whale")
    )
    assert sold.status_code == 201, sold.text
    await expect(big).to_have_text("SOLD OUT", timeout=3_000)
    await expect(kiosk.locator("#status-text")).not_to_contain_text("on sale")
    # and the customer's map no longer invites picks
    await expect(customer.locator("#basket-hint")).to_contain_text("Sold out")
    await expect(customer.locator("#hold")).to_be_disabled()
    await screenshot(kiosk, "kiosk-sold-out", full_page=False)

    cancelled = await client.patch(
        f"/admin/shows/{show['id']}", json={"status": "CANCELLED"}, headers=auth("a", "admin")
    )
    assert cancelled.status_code == 200, cancelled.text
    await expect(big).to_have_text("CANCELLED", timeout=3_000)
    await expect(label).to_contain_text("will not take place")
    await screenshot(kiosk, "kiosk-cancelled", full_page=False)
    await assert_accessible(kiosk)
    assert not page_errors.errors


async def test_a_kiosk_outage_is_visible_from_afar(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    show = await create_show(client, rows=10, seats_per_row=20)
    kiosk = await open_page(f"{server.url}/kiosk/{show['id']}", width=1920, height=1080)
    await expect(kiosk.locator("#conn")).to_have_attribute(
        "data-state", "connected", timeout=15_000
    )
    await expect(kiosk.locator("#outage")).to_be_hidden()
    await kiosk.evaluate("window.modexLive.stop()")  # the socket is gone, as in an outage
    await expect(kiosk.locator("#kiosk-map")).to_have_class(re.compile(r"\bis-stale\b"))
    banner = kiosk.locator("#outage")
    await expect(banner).to_be_visible(timeout=8_000)
    await expect(banner).to_contain_text("Not live")
    size = await banner.locator("strong").evaluate(
        "(e) => parseFloat(getComputedStyle(e).fontSize)"
    )
    assert size >= 64, size
    # the map behind is veiled: it no longer looks live
    await kiosk.wait_for_function(
        "getComputedStyle(document.getElementById('kiosk-map'), '::after').opacity === '1'"
    )
    await screenshot(kiosk, "kiosk-disconnected", full_page=False)
    await assert_accessible(kiosk)
    assert not page_errors.errors


# ---- 5. keyboard focus survives Hold and Confirm ----


async def test_keyboard_focus_follows_hold_and_confirm(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    show = await create_show(client, rows=3, seats_per_row=8, hold_seconds=60)
    page = await open_page(f"{server.url}/map/{show['id']}", width=1280, height=800)
    await wait_live(page)
    await seat(page, "A1").focus()
    await page.keyboard.press("ArrowRight")
    # a strong ring on the focused seat: dark outline plus an amber halo
    ring = await seat(page, "A2").evaluate(
        "(e) => [getComputedStyle(e).outlineWidth, getComputedStyle(e).boxShadow]"
    )
    assert float(ring[0].removesuffix("px")) >= 3 and "251, 191, 36" in ring[1], ring
    await page.keyboard.press("Enter")
    await page.locator("#hold").focus()
    await page.keyboard.press("Enter")
    # focus moves to the next useful control, and the change is announced
    await expect(page.locator("#confirm")).to_be_focused()
    await expect(page.locator("#sr-polite")).to_contain_text("held for you")
    await page.keyboard.press("Enter")
    await expect(page.locator("#basket-heading")).to_be_focused()
    await expect(page.locator("#basket-heading")).to_have_text("You're booked!")
    await expect(page.locator("#sr-polite")).to_contain_text("Your reference is")
    await page.keyboard.press("Tab")
    await expect(page.locator("#my-bookings")).to_be_focused()
    assert not page_errors.errors


# ---- 3. phones ----

PHONE = {"width": 390, "height": 844, "has_touch": True, "is_mobile": True}


async def concert_hall(client: httpx.AsyncClient, sections: list[tuple[str, int, int]]) -> Any:
    body = {
        "title": "Phone night",
        "venue": "Modex Concert Hall",
        "starts_at": "2027-03-12T19:30:00+01:00",
        "hold_seconds": 120,
        "sections": [
            {"name": name, "rows": rows, "seats_per_row": per_row, "price_cents": 4500}
            for name, rows, per_row in sections
        ],
    }
    response = await client.post("/admin/shows", json=body, headers=auth("admin", "admin"))
    assert response.status_code == 201, response.text
    return response.json()


async def in_viewport(page: Page, selector: str) -> bool:
    box = await page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 844


async def test_a_phone_taps_seats_it_can_hit_and_keeps_the_basket_in_reach(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    show = await concert_hall(client, [("Stalls", 12, 30), ("Circle", 8, 34), ("Gallery", 6, 38)])
    page = await open_page(f"{server.url}/map/{show['id']}", **PHONE)
    await wait_live(page)
    # hints for a touch screen, none for a mouse
    await expect(page.locator("#seat-info")).not_to_contain_text("Hover")
    await expect(page.locator("#scroll-hint")).to_be_visible()
    await expect(page.locator("#scroll-hint")).to_contain_text("Swipe")
    target = seat(page, "A15")
    await target.tap()
    await expect(target).to_have_attribute("aria-pressed", "true")
    box = await target.bounding_box()
    assert box and box["width"] >= 24 and box["height"] >= 24, box
    # the basket bar is pinned to the bottom: Hold is in reach without scrolling
    assert await in_viewport(page, "#hold")
    # scrolled to the far end of the rows, the row letters are still in view
    await page.locator(".seat-scroll").evaluate("(e) => (e.scrollLeft = e.scrollWidth)")
    letter = page.locator(".row-rail .row-label").first
    await expect(letter).to_have_text("A")
    letter_box = await letter.bounding_box()
    scroller = await page.locator(".seat-scroll").bounding_box()
    assert letter_box and scroller and 0 <= letter_box["x"] - scroller["x"] < 8, letter_box
    await page.locator("#hold").tap()
    await expect(page.locator("#hold-timer")).to_be_visible()
    assert await in_viewport(page, "#countdown")
    assert await in_viewport(page, "#confirm")
    # WCAG 2.2 target size on the phone map, and the rest of axe
    await assert_accessible(page)  # loads axe too
    small = await page.evaluate(
        "async () => (await axe.run(document, {runOnly: {type: 'rule', values: "
        "['target-size']}})).violations.map((v) => v.nodes.slice(0, 3).map((n) => n.target))"
    )
    assert small == [], small
    await screenshot(page, "phone-map-held", full_page=False)
    assert not page_errors.errors


async def touch(cdp: Any, kind: str, points: list[tuple[float, float]]) -> None:
    await cdp.send(
        "Input.dispatchTouchEvent",
        {
            "type": kind,
            "touchPoints": [{"x": x, "y": y, "id": n} for n, (x, y) in enumerate(points)],
        },
    )


async def test_a_phone_drags_and_pinches_the_big_venue_canvas(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    show = await concert_hall(client, [("Lower Bowl", 30, 100), ("Upper Bowl", 30, 100)])
    page = await open_page(f"{server.url}/map/{show['id']}", **PHONE)
    await wait_live(page)
    await expect(page.locator("canvas.seat-canvas")).to_be_visible()
    await expect(page.locator(".canvas-toolbar .hint")).to_contain_text("pinch")
    canvas = await page.locator("canvas.seat-canvas").bounding_box()
    assert canvas
    cx, cy = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2
    cdp = await page.context.new_cdp_session(page)
    view = "() => ({...window.modexView.renderer.view})"

    # the whole venue fits at first: pinch to zoom in, then drag to move around
    fitted = await page.evaluate(view)
    await touch(cdp, "touchStart", [(cx - 30, cy), (cx + 30, cy)])
    for step in range(1, 6):
        await touch(cdp, "touchMove", [(cx - 30 - 12 * step, cy), (cx + 30 + 12 * step, cy)])
    await touch(cdp, "touchEnd", [])
    pinched = await page.evaluate(view)
    assert pinched["s"] > fitted["s"] * 1.8, (fitted, pinched)

    before = pinched
    await touch(cdp, "touchStart", [(cx, cy)])
    for step in range(1, 6):
        await touch(cdp, "touchMove", [(cx - 12 * step, cy + 8 * step)])
    await touch(cdp, "touchEnd", [])
    dragged = await page.evaluate(view)
    assert dragged["tx"] < before["tx"] - 30 and dragged["ty"] > before["ty"] + 20, (
        before,
        dragged,
    )

    await screenshot(page, "phone-canvas-zoomed", full_page=False)
    assert not page_errors.errors


# ---- 6. admin input ----


async def test_admin_input_is_checked_with_human_messages(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    admin = await open_page(f"{server.url}/admin", width=1280, height=800)
    msg = admin.locator("#message")
    for bad, says in (
        ("not-a-token", "not a token"),
        (token("someone"), "not an admin token"),
        (token("old-admin", "admin", ttl=-60), "expired"),
    ):
        await admin.locator("#token").fill(bad)
        await admin.locator("#token-save").click()
        await expect(msg).to_contain_text(says)
        await expect(admin.locator("#token-state")).to_have_text("Not signed in.")
    await admin.locator("#token").fill(token("clerk", "admin"))
    await admin.locator("#token-save").click()
    await expect(admin.locator("#token-state")).to_contain_text("Signed in as clerk (admin)")

    title = f"Validated {re.sub(r'[^0-9]', '', str(id(admin)))[-6:]}"
    await admin.locator("#c-title").fill(title)
    await admin.locator("#c-venue").fill("Hall")
    await admin.locator("#c-starts").fill("2020-01-01T19:30")
    await admin.locator("#create").click()
    await expect(msg).to_contain_text("in the past")
    await admin.locator("#c-starts").fill("2031-01-01T19:30")
    await admin.locator("#c-rows").fill("0")
    await admin.locator("#create").click()
    await expect(msg).to_contain_text("Rows: use a whole number from 1 to 702")
    await expect(msg).not_to_contain_text("Expected")
    await admin.locator("#c-rows").fill("2")
    await admin.locator("#create").dblclick()
    await expect(msg).to_contain_text(f"Created “{title}”")
    await expect(admin.locator("#c-title")).to_have_value("")
    shows = (await client.get("/shows")).json()["shows"]
    assert [s["title"] for s in shows].count(title) == 1

    await admin.locator("#e-title").fill("")
    await admin.locator("#save").click()
    await expect(msg).to_contain_text("cannot be empty")
    assert not page_errors.errors


# ---- 8. the smaller ones ----


async def test_an_unknown_show_says_so_and_draws_nothing(
    server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    page = await open_page(f"{server.url}/map/999999999", width=1280, height=800)
    await expect(page.locator("#title")).to_have_text("Show not found")
    await expect(page.locator("#conn")).to_be_hidden()
    await expect(page.locator(".map-layout")).to_be_hidden()
    kiosk = await open_page(f"{server.url}/kiosk/999999999", width=1920, height=1080)
    await expect(kiosk.locator("#title")).to_have_text("Show not found")
    await expect(kiosk.locator("#conn")).to_be_hidden()
    await expect(kiosk.locator("#kiosk-map")).to_be_hidden()
    assert not page_errors.errors
