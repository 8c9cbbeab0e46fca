"""The waiting room page (/queue/{id}) in Chromium: the customer waits in line, is moved
to the seat map when admitted, and the map's hold carries the admission; a customer who
goes straight to the map is sent to the queue."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.browser.conftest import PageErrors, assert_accessible
from tests.support import ServerProcess, auth, create_show

pytestmark = pytest.mark.browser


async def test_the_queue_page_moves_an_admitted_customer_to_the_map(
    client: httpx.AsyncClient, servers: list[ServerProcess], open_page: Any, page_errors: PageErrors
) -> None:
    show = await create_show(client)
    opens_at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    body = {"queue": {"opens_at": opens_at, "admit_per_minute": 600}}
    r = await client.patch(f"/admin/shows/{show['id']}", json=body, headers=auth("admin", "admin"))
    assert r.status_code == 200
    # straight to the map: the hold is refused and the customer is sent to the queue
    page = await open_page(f"{servers[1].url}/map/{show['id']}")
    await page.locator('#seatmap [data-seat="A1"]').click()
    await page.locator("#hold").click()
    await page.wait_for_url(f"**/queue/{show['id']}")
    await expect(page.locator("#lead")).to_contain_text(re.compile("waiting room|in line"))
    await assert_accessible(page)
    # the opening comes, the customer's turn with it: back to the map, admitted
    await page.wait_for_url(f"**/map/{show['id']}", timeout=15_000)
    await page.locator('#seatmap [data-seat="A1"]').click()
    async with page.expect_response(lambda r: r.url.endswith("/holds")) as held:
        await page.locator("#hold").click()
    assert (await held.value).status == 201
