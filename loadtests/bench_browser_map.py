"""Browser benchmark: a 20,000-seat show in real Chromium, under a burst of seat changes.

Measures, for the customer map (/map/{id}) and the venue display (/kiosk/{id}):
- time to first full render (navigation start -> the seat map's first complete draw) and to
  "live" (WebSocket subscribed);
- frame intervals and draw times while seat changes arrive at ~1,000 per second, driven
  through the real HTTP API (holds of 10 seats, each released shortly after) on a real
  `modex serve` process with real PostgreSQL and Redis.

Usage:
    .venv/bin/python loadtests/bench_browser_map.py [--seconds 6] [--rate 1000]
    .venv/bin/python loadtests/bench_browser_map.py --url http://127.0.0.1:4000 --jwt-secret S

Without --url it starts its own embedded PostgreSQL/Valkey and one server process, with the
same helpers the test suite uses (tests/support.py). Needs `bash .ci/browser-tools.sh`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import mint, percentile
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SECTIONS = [
    {"name": "Floor", "rows": 25, "seats_per_row": 200, "category": "floor", "price_cents": 15000},
    {
        "name": "Lower Bowl",
        "rows": 25,
        "seats_per_row": 200,
        "category": "lower",
        "price_cents": 9500,
    },
    {
        "name": "Upper Bowl",
        "rows": 25,
        "seats_per_row": 200,
        "category": "upper",
        "price_cents": 6000,
    },
    {
        "name": "Terrace",
        "rows": 25,
        "seats_per_row": 200,
        "category": "terrace",
        "price_cents": 3500,
    },
]

# the pages' CSP (script-src 'self') refuses the string predicates wait_for_function
# evaluates; bypassing it changes nothing the page draws
CONTEXT: dict[str, Any] = {"viewport": {"width": 1600, "height": 1000}, "bypass_csp": True}

RECORDER = """
() => {
  const rec = { frames: [], draws: [], changes: 0, longtasks: [], running: true };
  window.__bench = rec;
  let last = performance.now();
  const loop = (t) => {
    rec.frames.push(t - last);
    last = t;
    if (rec.running) requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
  const v = window.modexView;
  v.frameHook = (ms, full) => rec.draws.push(ms);
  const orig = v.update.bind(v);
  v.update = (idx) => { rec.changes += idx.length; orig(idx); };
  try {
    new PerformanceObserver((l) => {
      for (const e of l.getEntries()) rec.longtasks.push(e.duration);
    }).observe({ type: "longtask", buffered: false });
  } catch (e) {}
}
"""


def labels_of(show_total_rows: int, per_row: int) -> list[str]:
    from app.domain import row_label

    return [f"{row_label(r)}{n}" for r in range(show_total_rows) for n in range(1, per_row + 1)]


async def burst(
    url: str, secret: str, show_id: int, seconds: float, rate: int, workers: int = 16
) -> dict[str, Any]:
    """Holds of 10 seats, each released at once: 2 x 10 seat changes per cycle.

    `workers` closed-loop clients share a pacing clock capped at `rate` changes/s; when the
    server (sharing this machine's cores with Chromium) cannot keep up, the achieved rate is
    what gets reported.
    """
    seats = labels_of(sum(s["rows"] for s in SECTIONS), SECTIONS[0]["seats_per_row"])
    blocks = [seats[i : i + 10] for i in range(0, len(seats), 10)]
    tokens = [f"Bearer {mint(secret, f'bench-{w}')}" for w in range(workers)]
    interval = 20 / rate  # one cycle = 20 changes
    ok = failed = changes = 0
    latencies: list[float] = []
    start = time.monotonic()
    next_slot = [start]
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def worker(w: int) -> None:
            nonlocal ok, failed, changes
            k = w
            headers = {"Authorization": tokens[w]}
            while True:
                slot = next_slot[0]
                next_slot[0] = max(slot, time.monotonic()) + interval
                if slot - start >= seconds:
                    return
                await asyncio.sleep(max(0.0, slot - time.monotonic()))
                block = blocks[k % len(blocks)]
                k += workers
                t0 = time.monotonic()
                r = await client.post(
                    f"/shows/{show_id}/holds", json={"seats": block}, headers=headers
                )
                latencies.append(time.monotonic() - t0)
                if r.status_code != 201:
                    failed += 1
                    continue
                changes += 10
                d = await client.delete(f"/holds/{r.json()['hold_id']}", headers=headers)
                if d.status_code == 204:
                    ok += 1
                    changes += 10
                else:
                    failed += 1

        await asyncio.gather(*(worker(w) for w in range(workers)))
    elapsed = time.monotonic() - start
    latencies.sort()
    return {
        "cycles": ok,
        "failed": failed,
        "changes": changes,
        "seconds": elapsed,
        "rate": changes / elapsed,
        "hold_p50_ms": percentile(latencies, 50) * 1000,
        "hold_p95_ms": percentile(latencies, 95) * 1000,
    }


async def open_map(page: Page, url: str) -> float:
    """Open a map page and wait until it is drawn and live; ms to the first full render."""
    await page.goto(url)
    await page.wait_for_function(
        "document.querySelector('#seatmap')?.dataset.rendered === '1'", timeout=60_000
    )
    ms = await page.evaluate("performance.getEntriesByName('seatmap-rendered')[0].startTime")
    await page.wait_for_function(
        "document.querySelector('#conn')?.dataset.state === 'connected'", timeout=60_000
    )
    return float(ms)


async def first_visit(browser: Browser, url: str, show_id: int, kind: str) -> float:
    """A fresh browser's first visit (cold caches): time to the first full render."""
    ctx = await browser.new_context(**CONTEXT)
    page = await ctx.new_page()
    ms = await open_map(page, f"{url}/{kind}/{show_id}")
    await ctx.close()
    return ms


async def measure(
    browser: Browser, url: str, secret: str, show_id: int, kind: str, seconds: float, rate: int
) -> dict[str, Any]:
    ctx = await browser.new_context(**CONTEXT)
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    render_ms = await open_map(page, f"{url}/{kind}/{show_id}")
    live_ms = await page.evaluate("performance.now()")
    mode = await page.evaluate("document.querySelector('#seatmap').dataset.mode")
    # one full redraw, timed on its own (what a pan/zoom costs)
    full_ms = await page.evaluate("""() => new Promise((ok) => {
        const v = window.modexView; v.frameHook = (ms) => { v.frameHook = null; ok(ms); };
        v.updateAll(); })""")
    await page.evaluate(RECORDER)
    await asyncio.sleep(1.0)
    idle = sorted(await page.evaluate("window.__bench.frames.splice(0).slice(1)"))
    await page.evaluate("window.__bench.draws.length = 0; window.__bench.changes = 0")
    load = await burst(url, secret, show_id, seconds, rate)
    await asyncio.sleep(1.0)
    rec = await page.evaluate(
        "(() => { window.__bench.running = false; return window.__bench; })()"
    )
    heap = await page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
    await ctx.close()
    frames = sorted(rec["frames"][1:])
    draws = sorted(rec["draws"])
    return {
        "page": kind,
        "mode": mode,
        "first_render_ms": render_ms,
        "live_ms": live_ms,
        "full_redraw_ms": full_ms,
        "idle_frame_p50_ms": percentile(idle, 50),
        "load": load,
        "changes_applied_in_page": rec["changes"],
        "frames": len(frames),
        "frame_ms": {
            "p50": percentile(frames, 50),
            "p95": percentile(frames, 95),
            "p99": percentile(frames, 99),
            "max": max(frames) if frames else float("nan"),
            "over_50ms": sum(1 for f in frames if f > 50),
        },
        "draw_ms": {
            "count": len(draws),
            "p50": percentile(draws, 50),
            "p95": percentile(draws, 95),
            "max": max(draws or [float("nan")]),
            "mean": statistics.fmean(draws) if draws else float("nan"),
        },
        "long_tasks": {"count": len(rec["longtasks"]), "max_ms": max(rec["longtasks"] or [0.0])},
        "js_heap_mb": heap / 2**20 if heap else None,
        "page_errors": errors,
    }


def report(r: dict[str, Any]) -> None:
    f, d, load = r["frame_ms"], r["draw_ms"], r["load"]
    print(f"\n/{r['page']}: {r['mode']} rendering of 20,000 seats")
    print(f"  first full render      {r['first_render_ms']:8.0f} ms after navigation start")
    print(f"  live (subscribed)      {r['live_ms']:8.0f} ms")
    print(f"  one full redraw        {r['full_redraw_ms']:8.1f} ms")
    print(
        f"  burst                  {load['changes']} changes in {load['seconds']:.1f} s "
        f"({load['rate']:.0f}/s; {load['failed']} failed; hold p50 {load['hold_p50_ms']:.0f} ms, "
        f"p95 {load['hold_p95_ms']:.0f} ms); "
        f"{r['changes_applied_in_page']} status changes applied in the page"
    )
    print(
        f"  frame interval         p50 {f['p50']:.1f}  p95 {f['p95']:.1f}  p99 {f['p99']:.1f}  "
        f"max {f['max']:.1f} ms  ({r['frames']} frames, {f['over_50ms']} over 50 ms; "
        f"idle p50 {r['idle_frame_p50_ms']:.1f} ms)"
    )
    print(
        f"  draw per frame         p50 {d['p50']:.2f}  p95 {d['p95']:.2f}  max {d['max']:.2f} ms "
        f"({d['count']} batched redraws)"
    )
    print(
        f"  long tasks (>50 ms)    {r['long_tasks']['count']} "
        f"(max {r['long_tasks']['max_ms']:.0f} ms)"
    )
    if r["js_heap_mb"] is not None:
        print(f"  JS heap after burst    {r['js_heap_mb']:.1f} MiB")
    if r["page_errors"]:
        print(f"  PAGE ERRORS: {r['page_errors']}")


async def run(args: argparse.Namespace) -> int:
    started: list[Any] = []
    url, secret = args.url, args.jwt_secret
    services = cluster = None
    if not url:
        from tests.support import JWT_SECRET, Cluster, ServerProcess, Services

        services = Services()
        cluster = Cluster(services, shard_count=1)
        await cluster.create()
        server = ServerProcess(cluster, Path(tempfile.mkdtemp(prefix="mxb-"))).start()
        started.append(server)
        url, secret = server.url, JWT_SECRET
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            body = {
                "title": "Bench Arena",
                "venue": "Modex Arena",
                "starts_at": "2027-06-01T20:00:00Z",
                "sections": SECTIONS,
                "hold_seconds": 60,
            }
            r = await client.post(
                "/admin/shows",
                json=body,
                headers={"Authorization": f"Bearer {mint(secret, 'bench', 'admin')}"},
            )
            r.raise_for_status()
            show = r.json()
        print(f"show {show['id']}: {show['seats_total']} seats; server {url}")
        warm = await burst(url, secret, show["id"], 2.0, args.rate)
        print(f"warm-up: {warm['changes']} changes at {warm['rate']:.0f}/s (server caches, pools)")
        results = []
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for kind in dict.fromkeys(args.pages):
                cold = await first_visit(browser, url, show["id"], kind)
                print(f"cold first visit of /{kind}: full render {cold:.0f} ms after navigation")
            for kind in args.pages:
                res = await measure(browser, url, secret, show["id"], kind, args.seconds, args.rate)
                report(res)
                results.append(res)
            await browser.close()
        if args.json:
            save_json(args.json, results)
        return 0
    finally:
        for s in started:
            s.stop()
        if cluster is not None:
            await cluster.drop()
        if services is not None:
            services.close()


def save_json(path: str, results: list[dict[str, Any]]) -> None:
    Path(path).write_text(json.dumps(results, indent=1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running server (default: start one)")
    ap.add_argument(
        "--jwt-secret",
        default="dev-secret-change-me",
        help="the server's MODEX_JWT_SECRET, to mint admin/customer tokens",
    )
    ap.add_argument("--seconds", type=float, default=6.0, help="length of the burst")
    ap.add_argument("--rate", type=int, default=1000, help="seat changes per second")
    ap.add_argument("--pages", nargs="+", default=["map", "kiosk"], choices=["map", "kiosk"])
    ap.add_argument("--json", help="also write the figures to this file")
    return asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
