"""Each page is served with a <link rel="modulepreload"> for every ES module its entry script
imports, however deep (app/http/pages.py), read from the modules themselves: a new import is
preloaded without anyone editing a page."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from app.http.pages import imported_by

STATIC = Path(__file__).resolve().parents[1] / "static"
ENTRY = re.compile(r'<script type="module" src="/static/(js/[^"]+)"></script>')
PRELOAD = re.compile(r'<link rel="modulepreload" href="/static/(js/[^"]+)">')
PAGES = ["/", "/map/1", "/kiosk/1", "/admin", "/me", "/queue/1"]


def test_the_import_reader_sees_imports_and_re_exports() -> None:
    seatmap = imported_by(STATIC / "js" / "seatmap.js")
    assert STATIC / "js" / "seatmap" / "keyboard.js" in seatmap  # three imports deep
    assert STATIC / "js" / "seatmap" / "legend.js" in seatmap  # re-exported only
    assert STATIC / "js" / "seatmap.js" not in seatmap


def test_the_files_keep_no_copy_of_the_list() -> None:
    for page in STATIC.glob("*.html"):
        assert not PRELOAD.search(page.read_text()), page.name


@pytest.mark.parametrize("path", PAGES)
async def test_a_served_page_preloads_every_module_its_script_imports(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    entries = ENTRY.findall(response.text)
    assert len(entries) == 1, entries
    wanted = {p.relative_to(STATIC).as_posix() for p in imported_by(STATIC / entries[0])}
    preloaded = PRELOAD.findall(response.text)
    assert len(preloaded) == len(set(preloaded)), preloaded
    assert set(preloaded) == wanted
    if path.startswith("/map/"):
        assert "js/seatmap/keyboard.js" in preloaded
