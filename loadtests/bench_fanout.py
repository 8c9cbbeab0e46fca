"""Live seat-map fan-out of ONE `modex serve` process vs. a bare websockets.broadcast().

    .venv/bin/python loadtests/bench_fanout.py --quick          # ~1-2 min, up to 2,000 watchers
    .venv/bin/python loadtests/bench_fanout.py                  # ~10 min, up to 10,000 watchers
    options: --watchers-max 10000 --step 1000 --rate 20 --rate-hi 50 --seconds 10
             --step-seconds 5 --runs 3 --watcher-procs N --profile --json OUT --keep-logs

One run (issue 4's "Benchmark"):
  1. a private `redis-server` (own port, no persistence) and a fresh `fanout_<random>`
     database (migrated, dropped at the end); ONE `python -m app serve --workers 1` pinned
     to CPU 0 (`taskset -c 0`), rate limits set too high to refuse; a 200-seat show for the
     fan-out and a 60,000-seat show (20 sections of 30 x 100) for the snapshot;
  2. snapshot: subscribe to the 60,000-seat show with "encoding":"rle" end to end (frame
     size, time from subscribe to the frame), and `app.realtime.sync.snapshot_frame` timed
     in-process on the same seat states (rle and plain);
  3. full protocol: watcher processes (loadtests/fanout_watchers.py, picows on uvloop,
     pinned to CPU 1) step up 1,000 at a time on the 200-seat show. At each step: server
     RSS with the watchers idle, then one --step-seconds run at --rate while
     loadtests/fanout_driver.py (CPU 1) holds and releases distinct seats through the HTTP
     API (a hold and a release are one seat change each) and one asyncio Redis subscriber
     (no WebSocket layer, CPU 1) listens to the show's channel. At 5,000 watchers --runs
     runs at --rate-hi, at --watchers-max --runs runs at --rate and at --rate-hi;
  4. baseline: the same watchers against loadtests/fanout_baseline.py (websockets'
     asyncio `broadcast()`, no compression, CPU 0) broadcasting frames of the size the full
     server sent, at the same rates (one seat change per frame): RSS per step, and the same
     --runs runs at the same points;
  5. prints per run: commit-to-receive p50/p95/p99 (receive time - the frame's `ts`, the
     commit time of the oldest change it carries), deliveries/s (frames received by all
     watchers), seat changes delivered/s, missing and duplicate seat versions, resync
     snapshots, watchers not converged 2.5 s after the run, server CPU, load-tool CPU,
     Redis-subscriber latency; the median of the --runs runs at each target point; RSS per
     idle watcher (slope 0 -> 1k -> 5k); library versions and the load average.

The machine has 2 cores and is shared: treat every figure as noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
from fanout_report import fmt_run, report
from fanout_watchers import Watchers

HERE = Path(__file__).resolve().parent
REDIS_PREFIX = "bench"  # the server's keys and channels: redis-sub names the show's channel
FANOUT_ROWS, FANOUT_PER_ROW = 10, 20  # the fan-out show: 200 seats
BIG_SECTIONS, BIG_ROWS, BIG_PER_ROW = 20, 30, 100  # 60,000 seats
PYSPY_OUT = Path("/tmp/fanout-pyspy.txt")


def median_build_ms(times: int, build: Callable[[], str]) -> tuple[float, str]:
    """The median time of `times` calls of build, in ms, and what the last one built."""
    took = []
    for _ in range(times):
        t0 = time.perf_counter()
        text = build()
        took.append(time.perf_counter() - t0)
    return statistics.median(took) * 1000, text


class Bench:
    """One run: a Lab (private redis-server, database, the server and the baseline), the
    watcher processes, and every figure measured so far (`results`)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lab = common.Lab(
            args.database_url, prefix="fanout", env={"MODEX_REDIS_PREFIX": REDIS_PREFIX},
            pin=not args.no_pin, keep_logs=args.keep_logs,
        )  # fmt: skip
        self.full: common.Server | None = None
        self.baseline: subprocess.Popen[bytes] | None = None
        self.base_port = common.free_port()
        self.show_id = 0
        self.big_id = 0
        self.labels: list[str] = []
        self.tokens: list[str] = []
        self.watchers: Watchers | None = None
        self.results: dict[str, Any] = {"runs": [], "rss": {}, "notes": []}

    # ---- set-up / tear-down ----

    def start(self) -> None:
        self.lab.start_redis(cpu=1, port=self.args.redis_port)
        self.lab.create_database()
        self.restart_server()
        self.create_fanout_show()
        self.big_id = common.create_show(
            self.full.url, self.lab.secret, timeout=120, title="Stadium", venue="Bench stadium",
            hold_seconds=3600,
            sections=[
                {"name": f"S{i + 1}", "rows": BIG_ROWS, "seats_per_row": BIG_PER_ROW}
                for i in range(BIG_SECTIONS)
            ],
        )  # fmt: skip

    def restart_server(self) -> None:
        """A fresh `modex serve` on CPU 0 (the old one, if any, stopped first)."""
        if self.full is not None:
            self.lab.stop(self.full.proc)
        self.full = self.lab.start_server(
            cpu=0, command=[sys.executable, "-m", "app", "serve", "--workers", "1"]
        )

    def start_baseline(self) -> None:
        url = f"http://127.0.0.1:{self.base_port}"
        argv = [sys.executable, str(HERE / "fanout_baseline.py"), "--port", str(self.base_port),
                "--seats", str(len(self.labels))]  # fmt: skip
        self.baseline = self.lab.start(argv, "baseline.log", cpu=0, health_url=url)

    def process(self, target: str) -> subprocess.Popen[bytes]:
        proc = self.full.proc if target == "full" and self.full else self.baseline
        assert proc is not None
        return proc

    def create_fanout_show(self) -> None:
        assert self.full is not None
        self.show_id = common.create_show(
            self.full.url, self.lab.secret, title="Fan-out", rows=FANOUT_ROWS,
            seats_per_row=FANOUT_PER_ROW, hold_seconds=3600,
        )  # fmt: skip
        self.labels = common.seat_labels(self.full.url, self.show_id)
        self.tokens = [common.mint(self.lab.secret, f"fan-{i}") for i in range(len(self.labels))]

    async def close(self) -> None:
        if self.watchers is not None:
            await self.watchers.stop()
            self.watchers = None
        try:
            self.lab.close()
        except Exception as exc:  # the figures are printed already: say so, do not lose them
            print(f"cleaning up {self.lab.name} failed: {exc!r}")

    # ---- the snapshot ----

    async def snapshot_bench(self) -> dict[str, Any]:
        from websockets.asyncio.client import connect

        res: dict[str, Any] = {"seats": BIG_SECTIONS * BIG_ROWS * BIG_PER_ROW}
        url = f"ws://127.0.0.1:{self.full.port}/ws"
        async with connect(url, compression=None, max_size=None, ping_interval=None) as ws:

            async def subscribe(times: int, **extra: str) -> tuple[list[float], int]:
                """Seconds from each subscribe to its snapshot frame; the frame's size."""
                took = []
                for _ in range(times):
                    t0 = time.perf_counter()
                    await ws.send(
                        json.dumps({"type": "subscribe", "show_id": self.big_id, **extra})
                    )
                    while '"snapshot"' not in (frame := await ws.recv())[:40]:
                        pass
                    took.append(time.perf_counter() - t0)
                return took, len(frame)

            rle, res["rle_bytes"] = await subscribe(6, encoding="rle")
            plain, res["plain_bytes"] = await subscribe(3)
        res["rle_e2e_cold_ms"] = rle.pop(0) * 1000  # the first one is the cold one
        res["rle_e2e_ms"] = statistics.median(rle) * 1000
        res["plain_e2e_ms"] = statistics.median(plain) * 1000
        # the frame builder itself, in this process, on the show's real seat states
        from app.realtime.broker import Position
        from app.realtime.sync import snapshot_frame

        seats = common.seat_map(self.full.url, self.big_id)["seats"]
        states = [(s["label"], s["status"], s["version"]) for s in seats]
        pos = Position(secrets.token_hex(6), 12345)
        ms, text = median_build_ms(7, lambda: snapshot_frame(self.big_id, pos, states, "rle"))
        res["rle_build_ms"] = ms
        res["rle_build_bytes"] = len(text)
        res["plain_build_ms"], _ = median_build_ms(
            3, lambda: snapshot_frame(self.big_id, pos, states, None)
        )
        # a realistic map: every 7th seat held, every 5th booked (runs get short)
        mixed = [
            (label, "HELD" if i % 7 == 0 else "BOOKED" if i % 5 == 0 else "AVAILABLE", 1 + i % 3)
            for i, (label, _, _) in enumerate(states)
        ]
        res["rle_mixed_build_ms"], text = median_build_ms(
            5, lambda: snapshot_frame(self.big_id, pos, mixed, "rle")
        )
        res["rle_mixed_bytes"] = len(text)
        return res

    # ---- one measured run ----

    async def run_once(
        self, target: str, rate: float, seconds: float, frame_size: int = 0, profile: bool = False
    ) -> dict[str, Any]:
        import psutil

        from app.realtime.keys import RedisKeys

        assert self.watchers is not None
        args = self.args
        lead = 1.0  # changes start this long before the window (the pipeline fills)
        start = time.time() + 1.0
        w_start = start + lead
        w_end = w_start + seconds
        server = self.process(target)
        sproc = psutil.Process(server.pid)
        await self.watchers.all({"cmd": "window", "start": w_start, "end": w_end})
        procs: list[asyncio.subprocess.Process] = []
        outs: list[Path] = []
        control = None
        if target == "full":
            cfg = {
                "host": "127.0.0.1",
                "port": self.full.port,
                "show_id": self.show_id,
                "rate": rate,
                "hold_time": args.hold_time,
                "start": start,
                "end": w_end,
                "w_start": w_start,
                "w_end": w_end,
                "seats": self.labels,
                "tokens": self.tokens,
                "connections": 16,
            }
            for mode in ("drive", "redis-sub"):
                out = self.lab.folder / f"{mode}-{secrets.token_hex(3)}.json"
                cfg_path = self.lab.folder / f"{mode}-cfg-{secrets.token_hex(3)}.json"
                extra = {
                    "out": str(out),
                    "redis_url": self.lab.redis_url,
                    "channel": RedisKeys(REDIS_PREFIX).channel(self.show_id),
                }
                cfg_path.write_text(json.dumps({**cfg, **extra}))
                proc = await asyncio.create_subprocess_exec(
                    *self.lab.taskset(1), sys.executable, str(HERE / "fanout_driver.py"), mode,
                    str(cfg_path), cwd=common.ROOT,
                    stderr=(self.lab.folder / f"{mode}.log").open("ab"),
                )  # fmt: skip
                procs.append(proc)
                outs.append(out)
        else:
            from websockets.asyncio.client import connect

            control = await connect(f"ws://127.0.0.1:{self.base_port}/control")
            await control.send(
                json.dumps({"rate": rate, "size": frame_size, "start": start, "end": w_end})
            )
        # CPU over the window
        await asyncio.sleep(max(0.0, w_start - time.time()))
        t_cpu0 = sproc.cpu_times()
        psutil.cpu_percent(percpu=True)
        wprocs = [psutil.Process(p.proc.pid) for p in self.watchers.procs]
        w_cpu0 = [p.cpu_times() for p in wprocs]
        spy = None
        if profile:
            spy_out = self.lab.folder / "py-spy-raw.txt"
            spy = await asyncio.create_subprocess_exec(
                str(common.ROOT / ".venv/bin/py-spy"), "record", "-p", str(server.pid),
                "-d", str(max(1, int(seconds) - 1)), "-f", "raw", "-o", str(spy_out),
                "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        await asyncio.sleep(max(0.0, w_end - time.time()))
        t_cpu1 = sproc.cpu_times()
        cores = psutil.cpu_percent(percpu=True)
        w_cpu1 = [p.cpu_times() for p in wprocs]
        loadavg = os.getloadavg()
        rss = sproc.memory_info().rss
        if spy is not None:
            await spy.wait()
            self.results["profile"] = str(self.lab.folder / "py-spy-raw.txt")
        driver: dict[str, Any] = {}
        redis_sub: dict[str, Any] = {}
        if procs:
            await asyncio.gather(*(p.wait() for p in procs))
            try:
                driver = json.loads(outs[0].read_text())
                redis_sub = json.loads(outs[1].read_text())
            except (OSError, ValueError) as exc:
                self.results["notes"].append(f"driver/redis-sub output missing: {exc!r}")
        if control is not None:
            await control.recv()
            await control.close()
        stats = await self.watchers.all({"cmd": "stats"})
        converge: dict[str, Any] = {}
        if target == "full":
            await asyncio.sleep(2.5)  # the hold cycles' last releases + fan-out
            truth_map = common.seat_map(self.full.url, self.show_id)["seats"]
            truth = [s["version"] for s in truth_map]
            checks = await self.watchers.all({"cmd": "check", "versions": truth})
            converge = {
                "wrong": sum(c["wrong"] for c in checks),
                "live": sum(c["live"] for c in checks),
            }
            converge.update(await self.outbox_state())
        hist: dict[int, int] = {}
        for s in stats:
            for k, v in s["hist"].items():
                hist[int(k)] = hist.get(int(k), 0) + v
        frames = sum(s["frames"] for s in stats)
        changes = sum(s["changes"] for s in stats)
        nbytes = sum(s["bytes"] for s in stats)
        server_cpu = ((t_cpu1.user + t_cpu1.system) - (t_cpu0.user + t_cpu0.system)) / seconds * 100
        watcher_cpu = [
            ((b.user + b.system) - (a.user + a.system)) / seconds * 100
            for a, b in zip(w_cpu0, w_cpu1, strict=True)
        ]
        watchers = self.watchers.count
        result = {
            "target": target,
            "watchers": watchers,
            "rate": rate,
            "seconds": seconds,
            "frames": frames,
            "deliveries_s": frames / seconds,
            "change_deliveries_s": changes / seconds,
            "frames_per_watcher_s": frames / seconds / watchers if watchers else 0,
            "avg_frame_bytes": nbytes / frames if frames else 0,
            "p50_ms": common.histogram_percentile(hist, 50),
            "p95_ms": common.histogram_percentile(hist, 95),
            "p99_ms": common.histogram_percentile(hist, 99),
            "max_ms": max(hist) if hist else None,
            "missing": sum(s["missing"] for s in stats),
            "dupes": sum(s["dupes"] for s in stats),
            "resyncs": sum(s["late_snapshots"] for s in stats),
            "stale_frames": sum(s["stale_frames"] for s in stats),
            "outbox_left": converge.get("outbox_left"),
            "relayed": converge.get("relayed"),
            "relay_failed": converge.get("relay_failed"),
            "frames_without_ts": sum(s["no_ts"] for s in stats),
            "closed": sum(s["closed"] for s in stats),
            "errors": {k: v for s in stats for k, v in s["errors"].items()},
            "not_converged": converge.get("wrong"),
            "server_cpu_pct": server_cpu,
            "server_rss_mb": rss / 2**20,
            "tool_cpu_pct": sum(watcher_cpu),
            "cores_pct": cores,
            "loadavg": [round(x, 2) for x in loadavg],
            "changes_sent": driver.get(
                "changes_in_window", rate * seconds if target != "full" else None
            ),
            "driver": {k: driver.get(k) for k in ("req_p50_ms", "req_p99_ms", "failures",
                                                  "samples", "skipped_no_free_seat", "cpu_s")},
            "redis_sub": redis_sub,
            "frame_size": frame_size,
        }  # fmt: skip
        self.results["runs"].append(result)
        print(fmt_run(result), flush=True)
        return result

    async def idle_memory(self, target: str) -> None:
        """RSS with 0 / 1k / 5k watchers that never saw a change, on a fresh process; the
        process is restarted afterwards so the step-up starts clean."""
        import psutil

        assert self.watchers is not None
        proc = self.process(target)
        points = {}
        for level in sorted(
            {0, min(1000, self.args.watchers_max), min(5000, self.args.watchers_max)}
        ):
            if level > self.watchers.count:
                await self.watchers.add(
                    level - self.watchers.count, self.ws_url(target), self.ws_show(target)
                )
            await asyncio.sleep(2.0)
            points[level] = float(psutil.Process(proc.pid).memory_info().rss)
            print(
                f"[{target}] idle: {level} watchers, server RSS {points[level] / 2**20:.1f} MB",
                flush=True,
            )
        self.results.setdefault("rss_idle", {})[target] = points
        await self.watchers.close()
        await self.restart(target)

    async def outbox_state(self) -> dict[str, Any]:
        """Outbox rows still there, and the server log's relay lines since the last call."""
        import asyncpg

        conn = await asyncpg.connect(self.lab.db_url)
        try:
            left = await conn.fetchval("SELECT count(*) FROM outbox")
        finally:
            await conn.close()
        text = (self.lab.folder / "server.log").read_text(errors="replace")
        relayed = text.count("relayed ")
        failed = text.count("outbox relay on shard")
        prev = self.results.setdefault("_relay_seen", [0, 0])
        out = {"outbox_left": left, "relayed": relayed - prev[0], "relay_failed": failed - prev[1]}
        prev[:] = [relayed, failed]
        return out

    async def rss_at(self, target: str) -> float:
        import psutil

        proc = self.process(target)
        await asyncio.sleep(1.5)
        rss = float(psutil.Process(proc.pid).memory_info().rss)
        self.results["rss"].setdefault(target, {})[self.watchers.count if self.watchers else 0] = (
            rss
        )
        return rss

    # ---- the phases ----

    async def phase(self, target: str) -> None:
        """Idle memory, then two segments, each on a fresh server process and a fresh show
        (so an overloaded segment cannot poison the next one): step up to 5,000 and run
        the 5,000 @ --rate-hi point; then step up to --watchers-max and run it at --rate,
        then at --rate-hi."""
        args = self.args
        assert self.watchers is not None
        await self.set_labels(target)
        await self.idle_memory(target)
        hi_point = min(5000, args.watchers_max)
        levels = list(range(args.step, args.watchers_max + 1, args.step))
        if levels and levels[-1] != args.watchers_max:
            levels.append(args.watchers_max)
        segments = [(hi_point, ["max_lo", "hi"] if hi_point == args.watchers_max else ["hi"])]
        if args.watchers_max > hi_point:
            segments.append((args.watchers_max, ["max_lo", "max_hi"]))
        done_steps: set[int] = set()
        for n, (top, keys) in enumerate(segments):
            if n:
                await self.restart(target)
            rss0 = await self.rss_at(target)
            print(f"[{target}] server RSS with 0 watchers: {rss0 / 2**20:.1f} MB", flush=True)
            warmed = False
            for level in [lv for lv in levels if lv <= top]:
                added = await self.watchers.add(
                    level - self.watchers.count, self.ws_url(target), self.ws_show(target)
                )
                rss = await self.rss_at(target)
                print(
                    f"[{target}] {self.watchers.count} watchers ({added['ready']} new ready in "
                    f"{added['ready_s']:.1f}s, failed {added['failed'] or 0}); server RSS "
                    f"{rss / 2**20:.1f} MB = "
                    f"{(rss - rss0) / max(1, self.watchers.count) / 1024:.1f} KB/watcher over 0",
                    flush=True,
                )
                size = self.frame_size(level, args.rate)
                if not warmed:
                    print(f"[{target}] warm-up {args.warmup:.0f}s", flush=True)
                    await self.run_once(target, args.rate, args.warmup, size)
                    self.results["runs"][-1]["warmup"] = True
                    warmed = True
                if level not in done_steps and (target == "full" or level == top) and level != top:
                    step_run = await self.run_once(target, args.rate, args.step_seconds, size)
                    step_run["step"] = True
                    done_steps.add(level)
            for key in keys:
                rate = args.rate if key == "max_lo" else args.rate_hi
                for i in range(args.runs):
                    r = await self.run_once(
                        target, rate, args.seconds, self.frame_size(top, rate),
                        profile=args.profile and i == 0 and target == "full" and key == "max_lo",
                    )  # fmt: skip
                    r["key"] = key
                    if i == 0 and top not in done_steps:
                        r["step"] = True
                        done_steps.add(top)
            await self.watchers.close()

    def ws_url(self, target: str) -> str:
        if target == "full":
            return f"ws://127.0.0.1:{self.full.port}/ws"
        return f"ws://127.0.0.1:{self.base_port}/"

    def ws_show(self, target: str) -> int:
        return self.show_id if target == "full" else 1

    async def set_labels(self, target: str) -> None:
        assert self.watchers is not None
        labels = self.labels if target == "full" else [f"A{i + 1}" for i in range(len(self.labels))]
        await self.watchers.all({"cmd": "labels", "labels": labels})

    async def restart(self, target: str) -> None:
        """A fresh process; for the full server also a fresh show."""
        if target == "full":
            self.restart_server()
            self.create_fanout_show()
            await self.set_labels(target)
        else:
            self.lab.stop(self.process(target))
            self.start_baseline()

    def frame_size(self, watchers: int, rate: float) -> int:
        """The baseline's frames are as big as the full server's were at this point."""
        sizes = [
            r["avg_frame_bytes"]
            for r in self.results["runs"]
            if r["target"] == "full" and r["rate"] == rate and r["avg_frame_bytes"]
        ]
        near = [
            r["avg_frame_bytes"]
            for r in self.results["runs"]
            if r["target"] == "full" and r["rate"] == rate and r["watchers"] == watchers
            and r["avg_frame_bytes"]
        ]  # fmt: skip
        pick = near or sizes
        return int(statistics.median(pick)) if pick else 200


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    """The whole run; what the report printed, with the machine's description."""
    info = {
        "versions": common.versions(),
        "cpu": common.cpu_info(),
        "nofile": common.raise_nofile(),
        "git": common.git_state(),
    }
    print(
        f"app code: HEAD {info['git']['head']}, uncommitted in app/ sql/: "
        f"{info['git']['uncommitted'] or 'none'}",
        flush=True,
    )
    common.pin_self(1, not args.no_pin)
    bench = Bench(args)
    try:
        bench.start()
        assert bench.full is not None
        print(
            f"database {bench.lab.name}, redis {bench.lab.redis_url}, server pid "
            f"{bench.full.proc.pid} :{bench.full.port}, show {bench.show_id} "
            f"({len(bench.labels)} seats), 60k show {bench.big_id}, logs {bench.lab.folder}",
            flush=True,
        )
        if not args.skip_snapshot:
            bench.results["snapshot"] = await bench.snapshot_bench()
            print(f"snapshot: {bench.results['snapshot']}", flush=True)
            # idle memory is measured on a fresh process: the 60,000-seat snapshot's
            # freed memory would otherwise absorb the first watchers and flatter the slope
            bench.restart_server()
        n_procs = args.watcher_procs or max(1, -(-args.watchers_max // 5000))
        bench.watchers = await Watchers.start(n_procs, bench.lab.taskset(1), bench.lab.folder)
        await bench.phase("full")
        if not args.skip_baseline:
            bench.start_baseline()
            await bench.phase("baseline")
        result = report(args, bench.results, info, len(bench.watchers.procs))
        if args.profile and bench.results.get("profile"):
            # out of the folder the run removes at the end
            dest = Path(args.json).with_suffix(".pyspy.txt") if args.json else PYSPY_OUT
            shutil.copy(bench.results["profile"], dest)
            print(f"py-spy raw profile copied to {dest}")
        return {**result, **info}
    finally:
        await bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=common.DEFAULT_DB, help="PostgreSQL admin URL")
    parser.add_argument("--redis-port", type=int, default=0, help="private redis-server port")
    parser.add_argument("--watchers-max", type=int, default=10_000)
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="seat changes/s (low point)")
    parser.add_argument("--rate-hi", type=float, default=50.0, help="seat changes/s (high point)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time of a key run")
    parser.add_argument("--step-seconds", type=float, default=5.0, help="measured time per step")
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3, help="runs at each target point (median)")
    parser.add_argument("--hold-time", type=float, default=1.0, help="seconds a seat stays held")
    parser.add_argument("--watcher-procs", type=int, default=0, help="0: one per 5,000")
    parser.add_argument("--quick", action="store_true", help="2,000 watchers, 1 run, short windows")
    parser.add_argument("--profile", action="store_true", help="py-spy the server at max @ rate")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-snapshot", action="store_true")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    if args.quick:
        args.watchers_max = min(args.watchers_max, 2000)
        args.runs = 1
        args.seconds = 5.0
        args.step_seconds = 4.0
        args.warmup = 2.0
    common.use_uvloop()
    result = asyncio.run(amain(args))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
        print(f"written {args.json}")


if __name__ == "__main__":
    main()
