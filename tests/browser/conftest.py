"""Browser fixtures: Debian's Chromium driven by Playwright, axe-core, screenshots.

Tools come from `.ci/browser-tools.sh` (apt `chromium`, npm `axe-core` into
tests/browser/node_modules). The servers are the session's real ones (tests/conftest.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


def _require_tools() -> None:
    if not Path(CHROMIUM).exists() or not AXE.exists():
        raise RuntimeError("browser tools missing: run `bash .ci/browser-tools.sh` first")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    _require_tools()
    async with async_playwright() as pw:
        found = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield found
        await found.close()


# Every page reports what its Content-Security-Policy blocked (script, style, connection,
# frame) as a console error, which PageErrors collects; Chromium's own "Refused to ..."
# console errors are collected too. Init scripts run outside the page's CSP.
CSP_VIOLATION = "CSP violation:"
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => console.error(
  `CSP violation: ${e.effectiveDirective} blocked ${e.blockedURI || "inline"}` +
  ` at ${e.sourceFile}:${e.lineNumber}: ${e.sample}`), true);
"""


class PageErrors:
    """Uncaught page errors, console errors and CSP violations, asserted empty at the end
    of a test."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    @property
    def csp_violations(self) -> list[str]:
        return [e for e in self.errors if CSP_VIOLATION in e or "Content Security Policy" in e]

    async def watch(self, page: Page) -> Page:
        await page.add_init_script(REPORT_CSP_VIOLATIONS)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"{page.url}: console {msg.text}")
                if msg.type == "error"
                and "status of 4" not in msg.text
                and "status of 5" not in msg.text
                and "WebSocket" not in msg.text
                else None
            ),
        )
        return page


@pytest.fixture
async def contexts(browser: Browser) -> AsyncIterator[list[BrowserContext]]:
    """Fresh, isolated browser contexts (own localStorage, own guest token); closed after."""
    made: list[BrowserContext] = []
    yield made
    for ctx in made:
        await ctx.close()


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def open_page(browser: Browser, contexts: list[BrowserContext], page_errors: PageErrors) -> Any:
    async def opener(url: str, width: int = 1280, height: int = 900, **opts: Any) -> Page:
        ctx = await browser.new_context(viewport={"width": width, "height": height}, **opts)
        contexts.append(ctx)
        page = await page_errors.watch(await ctx.new_page())
        await page.goto(url)
        return page

    return opener


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Runs axe-core in the page; returns the serious and critical violations."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        # evaluated, not added as a <script> tag: the page's CSP refuses inline scripts
        await page.evaluate(AXE.read_text())
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [v for v in result if v.get("impact") in ("serious", "critical")]


async def assert_accessible(page: Page) -> None:
    bad = await axe_violations(page)
    summary = [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"][:5]],
        }
        for v in bad
    ]
    assert not bad, json.dumps(summary, indent=1)


async def screenshot(page: Page, name: str, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path
