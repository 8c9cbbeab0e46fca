# ruff: noqa: E501  (JavaScript run in the page)
"""The shared live client (static/js/live.js) and the kiosk's long-run behaviour, in Chromium."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.browser.conftest import PageErrors
from tests.support import ServerProcess, auth, create_show

pytestmark = pytest.mark.browser


async def test_rle_decoding_version_order_and_backoff(
    server: ServerProcess, open_page: Any
) -> None:
    page = await open_page(f"{server.url}/")
    result = await page.evaluate(
        """async () => {
        const live = await import('/static/js/live.js');
        const d = live.decodeRle('A2H1B1', '1*2,3,4', 4);
        const offSale = live.decodeRle('A1X2R1', '1*4', 4);
        const store = new live.SeatStore([
          {label: 'A1', status: 'AVAILABLE', version: 1}, {label: 'A2', status: 'AVAILABLE', version: 1},
          {label: 'A3', status: 'AVAILABLE', version: 1}, {label: 'A4', status: 'AVAILABLE', version: 1}]);
        const snap = store.applySnapshot({encoding: 'rle', count: 4, status: 'A2H1B1', version: '1*2,3,4'});
        const newer = store.applyChanges([{label: 'A1', status: 'HELD', version: 5}]);
        const older = store.applyChanges([{label: 'A1', status: 'AVAILABLE', version: 4},
                                          {label: 'ZZ9', status: 'HELD', version: 9}]);
        const mismatch = store.applySnapshot({encoding: 'rle', count: 5, status: 'A5', version: '1*5'});
        const plain = store.applySnapshot({seats: [
          {label: 'A1', status: 'BOOKED', version: 6}, {label: 'A2', status: 'AVAILABLE', version: 1},
          {label: 'A3', status: 'HELD', version: 3}, {label: 'A4', status: 'BOOKED', version: 4}]});
        const delays = [];
        for (let a = 0; a < 8; a++) delays.push([live.backoffDelay(a, () => 0), live.backoffDelay(a, () => 0.999)]);
        return {status: Array.from(d.status), version: Array.from(d.version), snap, newer, older,
                a1: store.statusName(0), v1: store.version[0], mismatch, plain,
                bad: live.decodeRle('A3', '1*3', 4), counts: store.counts(), delays,
                offSale: Array.from(offSale.status)};
        }"""
    )
    assert result["status"] == [0, 0, 1, 2]
    assert result["version"] == [1, 1, 3, 4]
    assert result["snap"] == [2, 3]
    assert result["newer"] == [0]
    assert result["older"] == []  # a lower version is ignored, an unknown label too
    assert result["mismatch"] is None and result["bad"] is None
    assert result["plain"] == [0]
    assert result["a1"] == "BOOKED" and result["v1"] == 6
    assert result["counts"] == {
        "AVAILABLE": 1,
        "HELD": 1,
        "BOOKED": 2,
        "BLOCKED": 0,
        "RESERVED": 0,
        "total": 4,
    }
    assert result["offSale"] == [0, 6, 6, 7]  # X blocked, R reserved (app.realtime.frames)
    # exponential backoff with jitter: 1, 2, 4, 8, 16 s caps, half of it random
    assert [hi for _, hi in result["delays"]] == pytest.approx(
        [1000, 2000, 4000, 8000, 16000, 16000, 16000, 16000], rel=0.01
    )
    assert [lo for lo, _ in result["delays"]] == [500, 1000, 2000, 4000, 8000, 8000, 8000, 8000]


async def test_kiosk_reuses_its_dom_under_many_changes(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any, page_errors: PageErrors
) -> None:
    show = await create_show(client, rows=10, seats_per_row=20)
    page = await open_page(f"{server.url}/kiosk/{show['id']}", width=1920, height=1080)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=15_000)
    await expect(page.locator("#avail-total")).to_have_text("200")
    nodes_before = await page.evaluate("document.getElementsByTagName('*').length")
    headers = auth("kiosk-churn")
    for cycle in range(30):
        row = "ABCDEFGHIJ"[cycle % 10]
        held = await client.post(
            f"/shows/{show['id']}/holds",
            json={"seats": [f"{row}{n}" for n in range(1, 11)]},
            headers=headers,
        )
        assert held.status_code == 201, held.text
        released = await client.delete(f"/holds/{held.json()['hold_id']}", headers=headers)
        assert released.status_code == 204
    last = await client.post(
        f"/shows/{show['id']}/book", json={"seatNumbers": ["J20"]}, headers=headers
    )
    assert last.status_code == 201
    await expect(page.locator('#seatmap [data-seat="J20"]')).to_have_attribute(
        "data-status", "BOOKED"
    )
    await expect(page.locator("#avail-total")).to_have_text("199")
    await expect(page.locator('#seatmap [data-status="HELD"]')).to_have_count(0)
    await expect(page.locator("#updated")).to_contain_text("Updated")
    nodes_after = await page.evaluate("document.getElementsByTagName('*').length")
    assert nodes_after == nodes_before
    assert not page_errors.errors


async def test_show_list_availability_follows_the_seats(
    client: httpx.AsyncClient, server: ServerProcess, open_page: Any
) -> None:
    show = await create_show(client, rows=2, seats_per_row=10, title="Matinee of availability")
    page = await open_page(f"{server.url}/")
    card = page.locator(f'[data-show="{show["id"]}"]')
    await expect(card).to_contain_text("20 of 20 seats available")
    await expect(
        card.get_by_role("link", name=f"Choose seats for {show['title']}")
    ).to_have_attribute("href", f"/map/{show['id']}")
    booked = await client.post(
        f"/shows/{show['id']}/book", json={"seatNumbers": ["A1", "A2", "A3"]}, headers=auth("fan")
    )
    assert booked.status_code == 201
    await expect(card).to_contain_text("17 of 20 seats available", timeout=10_000)
