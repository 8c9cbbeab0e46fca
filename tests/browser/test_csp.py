"""Every page does its job under its Content-Security-Policy, in real Chromium.

PageErrors (conftest.py) turns each `securitypolicyviolation` event and each console
error into a failure, on every page of every browser test; this file walks each page's
main flow with the policy on, checks that the detector sees a violation when there is
one, and that framing follows MODEX_FRAME_ANCESTORS.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import PageErrors
from tests.browser.test_pages import create_sections_show, seat, wait_live
from tests.support import Cluster, ServerProcess, auth, token, wait_until

pytestmark = pytest.mark.browser


async def opened_under_csp(open_page: Any, url: str, **opts: Any) -> Page:
    page: Page = await open_page(url, **opts)
    response = await page.request.get(url)  # the document's own headers
    assert "script-src 'self'" in response.headers["content-security-policy"]
    return page


async def test_every_page_works_under_its_csp(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    show = await create_sections_show(client, "Hamlet under CSP")

    home = await opened_under_csp(open_page, f"{server.url}/")
    await expect(home.locator(f'[data-show="{show["id"]}"]')).to_be_visible()

    kiosk = await opened_under_csp(
        open_page, f"{server.url}/kiosk/{show['id']}", width=1920, height=1080
    )
    await expect(kiosk.locator("#conn")).to_have_attribute(
        "data-state", "connected", timeout=15_000
    )

    # the map: a live socket, styles set from script, hold and confirm
    page = await opened_under_csp(open_page, f"{server.url}/map/{show['id']}")
    await wait_live(page)
    await seat(page, "B3").click()
    await page.locator("#hold").click()
    await expect(seat(page, "B3")).to_have_class("seat is-mine")
    await expect(seat(kiosk, "B3")).to_have_attribute("data-status", "HELD", timeout=2_000)
    await page.locator("#confirm").click()
    await expect(page.locator("#basket-heading")).to_have_text("You're booked!")

    # admin: the token lives in this tab's sessionStorage only
    admin = await opened_under_csp(open_page, f"{server.url}/admin")
    await admin.locator("#token").fill(token("csp-admin", "admin"))
    await admin.locator("#token-save").click()
    await expect(admin.locator("#token-state")).to_contain_text("Signed in as csp-admin")
    stored = await admin.evaluate(
        "[sessionStorage.getItem('modex.adminToken'), localStorage.getItem('modex.adminToken')]"
    )
    assert stored[0] and stored[1] is None
    await admin.get_by_role("button", name=f"Manage {show['title']}").click()
    await admin.locator("#b-message").fill("Curtain in five minutes.")
    await admin.locator("#broadcast").click()
    await expect(admin.locator("#message")).to_contain_text("Announcement sent")
    await expect(page.locator("#announcement-text")).to_have_text("Curtain in five minutes.")

    assert not page_errors.csp_violations
    assert not page_errors.errors


async def test_the_violation_detector_sees_what_the_policy_blocks(
    server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    page = await open_page(f"{server.url}/")
    await page.evaluate(
        """() => {
            const s = document.createElement("script");
            s.textContent = "window.__inlineRan = true";
            document.head.append(s);
            const st = document.createElement("style");
            st.textContent = "body { color: red }";
            document.head.append(st);
        }"""
    )
    await wait_until(lambda: len(page_errors.csp_violations) >= 2)
    assert await page.evaluate("window.__inlineRan === undefined")
    found = " ".join(page_errors.csp_violations)
    assert "script-src" in found and "style-src" in found, found


class Signage:
    """A venue's signage page on another origin than the kiosk's: http://localhost:PORT,
    where the kiosk is on 127.0.0.1 (a real loopback server: Chromium does not let a page
    it cannot place on the loopback, such as one Playwright fulfils, frame a local one)."""

    def __init__(self) -> None:
        self.kiosk_url = ""
        signage = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f'<!doctype html><title>Signage</title><iframe src="{signage.kiosk_url}">'
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    async def frame(self, browser: Browser, kiosk_url: str) -> Page:
        """Opens the signage page framing `kiosk_url`; its load event waits for the frame."""
        self.kiosk_url = kiosk_url
        ctx = await browser.new_context()
        page = await ctx.new_page()
        await page.goto(f"{self.origin}/")
        return page


@pytest.fixture
def signage() -> Iterator[Signage]:
    found = Signage()
    yield found
    found.server.shutdown()
    found.server.server_close()


async def test_kiosks_may_be_framed_only_where_configured(
    client: httpx.AsyncClient,
    server: ServerProcess,
    cluster: Cluster,
    log_dir: Any,
    browser: Browser,
    signage: Signage,
) -> None:
    show = await create_sections_show(client, "Framed kiosk")
    held = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth("framer")
    )
    assert held.status_code == 201

    page = await signage.frame(browser, f"{server.url}/kiosk/{show['id']}")
    try:
        # Chromium puts its error page in place of a frame its CSP refuses (once the frame's
        # navigation has settled: it starts as "")
        refused = ["chrome-error://chromewebdata/"]
        await wait_until(
            lambda: [frame.url for frame in page.frames[1:]] == refused,
            what="Chromium's error page in place of the refused frame",
        )
    finally:
        await page.context.close()

    framable = ServerProcess(cluster, log_dir, MODEX_FRAME_ANCESTORS=signage.origin).start()
    try:
        page = await signage.frame(browser, f"{framable.url}/kiosk/{show['id']}")
        try:
            kiosk = page.frames[1]
            assert kiosk.url == f"{framable.url}/kiosk/{show['id']}"
            await expect(kiosk.locator("#conn")).to_have_attribute(
                "data-state", "connected", timeout=15_000
            )
            await expect(kiosk.locator('[data-seat="A1"]')).to_have_attribute("data-status", "HELD")
        finally:
            await page.context.close()
    finally:
        framable.stop()
