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

# ruff: noqa: E501, RUF005, ASYNC221, ASYNC240
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
DEFAULT_DB = os.environ.get("TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_PREFIX = "bench"  # the server's keys and channels: redis-sub names the show's channel
FANOUT_ROWS, FANOUT_PER_ROW = 10, 20  # the fan-out show: 200 seats
BIG_SECTIONS, BIG_ROWS, BIG_PER_ROW = 20, 30, 100  # 60,000 seats

TARGETS = {
    "ratio": 0.8,  # full deliveries/s >= 0.8 x bare broadcast at 10k watchers
    "p99_5k_hi_ms": 150.0,  # 5,000 watchers at 50 changes/s
    "p99_max_lo_ms": 250.0,  # 10,000 watchers at 20 changes/s
    "kb_per_watcher": 30.0,
    "snapshot_bytes": 256 * 1024,
    "snapshot_ms": 50.0,
}


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in (
        "uvicorn",
        "starlette",
        "websockets",
        "picows",
        "redis",
        "hiredis",
        "msgspec",
        "orjson",
        "uvloop",
        "psutil",
    ):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "-"
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
        found["redis-server"] = out.stdout.split()[2].removeprefix("v=")
    except (OSError, IndexError):
        found["redis-server"] = "?"
    return found


def pct(hist: dict[int, int], p: float) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    need = p / 100 * total
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= need:
            return float(ms)
    return float(max(hist))


# ---- the watcher processes ----


class WatcherProc:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.count = 0

    async def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("a watcher process exited")
        result: dict[str, Any] = json.loads(line)
        return result


class Watchers:
    def __init__(self, procs: list[WatcherProc]) -> None:
        self.procs = procs

    @property
    def count(self) -> int:
        return sum(p.count for p in self.procs)

    async def all(self, cmd: dict[str, Any]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(p.ask(cmd) for p in self.procs)))

    async def add(self, n: int, url: str, show_id: int) -> dict[str, Any]:
        """n more watchers, spread so every process holds about as many."""
        target = self.count + n
        share = [target // len(self.procs)] * len(self.procs)
        for i in range(target % len(self.procs)):
            share[i] += 1
        asks = []
        for p, want in zip(self.procs, share, strict=True):
            extra = want - p.count
            if extra > 0:
                asks.append((p, extra))
        results = await asyncio.gather(
            *(
                p.ask(
                    {
                        "cmd": "connect",
                        "url": url,
                        "n": extra,
                        "show_id": show_id,
                        "encoding": "rle",
                    }
                )
                for p, extra in asks
            )
        )
        merged: dict[str, Any] = {"connected": 0, "ready": 0, "failed": {}, "ready_s": 0.0}
        for (p, _), r in zip(asks, results, strict=True):
            p.count += r["connected"]
            merged["connected"] += r["connected"]
            merged["ready"] += r["ready"]
            merged["ready_s"] = max(merged["ready_s"], r["ready_s"])
            for k, v in r["failed"].items():
                merged["failed"][k] = merged["failed"].get(k, 0) + v
        return merged

    async def close(self) -> None:
        await self.all({"cmd": "close"})
        for p in self.procs:
            p.count = 0


def median_build_ms(times: int, build: Callable[[], str]) -> tuple[float, str]:
    """The median time of `times` calls of build, in ms, and what the last one built."""
    took = []
    for _ in range(times):
        t0 = time.perf_counter()
        text = build()
        took.append(time.perf_counter() - t0)
    return statistics.median(took) * 1000, text


# ---- the bench ----


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name = f"fanout_{secrets.token_hex(4)}"
        self.db_url = common.with_database(args.database_url, self.name)
        self.secret = "bench-" + secrets.token_hex(24)
        self.folder = Path(tempfile.mkdtemp(prefix="mxfanout-", dir="/tmp"))
        self.pin = common.has_taskset() and not args.no_pin
        self.redis_port = args.redis_port or common.free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.server_port = common.free_port()
        self.base_port = common.free_port()
        self.redis: subprocess.Popen[bytes] | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.baseline: subprocess.Popen[bytes] | None = None
        self.created_db = False
        self.show_id = 0
        self.big_id = 0
        self.labels: list[str] = []
        self.tokens: list[str] = []
        self.watchers: Watchers | None = None
        self.results: dict[str, Any] = {"runs": [], "rss": {}, "notes": []}

    def taskset(self, cpu: int) -> list[str]:
        return ["taskset", "-c", str(cpu)] if self.pin else []

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "SHARD_URLS": self.db_url,
            "REDIS_URL": self.redis_url,
            "MODEX_REDIS_PREFIX": REDIS_PREFIX,
            "MODEX_JWT_SECRET": self.secret,
            "MODEX_DEMO": "0",
            "MODEX_DATA_DIR": str(self.folder / "data"),
            "MODEX_RATE_LIMIT_USER": "100000/second",
            "MODEX_RATE_LIMIT_IP": "100000/second",
            "PYTHONUNBUFFERED": "1",
        }

    # ---- set-up / tear-down ----

    def start_redis(self) -> None:
        log = (self.folder / "redis.log").open("ab")
        self.redis = subprocess.Popen(
            self.taskset(1)
            + [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        import redis as redis_sync

        deadline = time.monotonic() + 10
        while True:
            try:
                redis_sync.Redis.from_url(self.redis_url).ping()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    async def create_database(self) -> None:
        await common.create_database(self.args.database_url, self.name)
        self.created_db = True
        await common.migrate(self.env(), ROOT)

    def start_server(self) -> None:
        log_path = self.folder / "server.log"
        with log_path.open("ab") as log:
            self.server = subprocess.Popen(
                self.taskset(0)
                + [PY, "-m", "app", "serve", "--port", str(self.server_port), "--workers", "1"],
                env=self.env(),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        common.wait_healthy(self.server_url, self.server, str(log_path), timeout=60)

    def start_baseline(self) -> None:
        log_path = self.folder / "baseline.log"
        with log_path.open("ab") as log:
            self.baseline = subprocess.Popen(
                self.taskset(0)
                + [
                    PY,
                    str(HERE / "fanout_baseline.py"),
                    "--port",
                    str(self.base_port),
                    "--seats",
                    str(len(self.labels)),
                ],
                env=self.env(),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        common.wait_healthy(f"http://127.0.0.1:{self.base_port}", self.baseline, str(log_path), 30)

    @property
    def server_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def create_fanout_show(self) -> None:
        admin = common.mint(self.secret, "bench-admin", "admin")
        body = {
            "title": "Fan-out",
            "venue": "Bench hall",
            "starts_at": "2030-01-01T20:00:00Z",
            "rows": FANOUT_ROWS,
            "seats_per_row": FANOUT_PER_ROW,
            "hold_seconds": 3600,
        }
        status, show = common.http_json("POST", f"{self.server_url}/admin/shows", body, admin)
        if status != 201:
            raise RuntimeError(f"creating the show failed: {status} {show}")
        self.show_id = show["id"]
        self.labels = [s["label"] for s in self.seat_map(self.show_id)["seats"]]
        self.tokens = [common.mint(self.secret, f"fan-{i}") for i in range(len(self.labels))]

    def create_shows(self) -> None:
        self.create_fanout_show()
        admin = common.mint(self.secret, "bench-admin", "admin")
        big = {
            "title": "Stadium",
            "venue": "Bench stadium",
            "starts_at": "2030-01-01T20:00:00Z",
            "hold_seconds": 3600,
            "sections": [
                {"name": f"S{i + 1}", "rows": BIG_ROWS, "seats_per_row": BIG_PER_ROW}
                for i in range(BIG_SECTIONS)
            ],
        }
        status, show = common.http_json("POST", f"{self.server_url}/admin/shows", big, admin, 120)
        if status != 201:
            raise RuntimeError(f"creating the 60,000-seat show failed: {status} {show}")
        self.big_id = show["id"]

    def seat_map(self, show_id: int) -> dict[str, Any]:
        status, seat_map = common.http_json("GET", f"{self.server_url}/shows/{show_id}/seats")
        if status != 200:
            raise RuntimeError(f"seat map: {status} {seat_map}")
        result: dict[str, Any] = seat_map
        return result

    async def start_watchers(self, n_procs: int) -> None:
        procs = []
        for i in range(n_procs):
            proc = await asyncio.create_subprocess_exec(
                *self.taskset(1), PY, str(HERE / "fanout_watchers.py"),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=(self.folder / f"watchers-{i}.log").open("ab"), cwd=ROOT,
            )  # fmt: skip
            procs.append(WatcherProc(proc))
        self.watchers = Watchers(procs)

    async def stop_watchers(self) -> None:
        if self.watchers is None:
            return
        for p in self.watchers.procs:
            try:
                await asyncio.wait_for(p.ask({"cmd": "exit"}), 10)
                await asyncio.wait_for(p.proc.wait(), 10)
            except Exception:
                if p.proc.returncode is None:
                    p.proc.kill()
                    await p.proc.wait()
        self.watchers = None

    async def close(self) -> None:
        await self.stop_watchers()
        for proc in (self.server, self.baseline, self.redis):
            common.stop_process(proc)
        if self.created_db:
            try:
                await common.drop_database(self.args.database_url, self.name)
            except Exception as exc:
                print(f"dropping {self.name} failed: {exc!r}")
        if not self.args.keep_logs:
            shutil.rmtree(self.folder, ignore_errors=True)

    # ---- the snapshot ----

    async def snapshot_bench(self) -> dict[str, Any]:
        from websockets.asyncio.client import connect

        res: dict[str, Any] = {"seats": BIG_SECTIONS * BIG_ROWS * BIG_PER_ROW}
        url = f"ws://127.0.0.1:{self.server_port}/ws"
        times: list[float] = []
        plain_times: list[float] = []
        async with connect(url, compression=None, max_size=None, ping_interval=None) as ws:
            for i in range(6):
                t0 = time.perf_counter()
                await ws.send(
                    json.dumps({"type": "subscribe", "show_id": self.big_id, "encoding": "rle"})
                )
                while True:
                    frame = await ws.recv()
                    if '"snapshot"' in frame[:40]:
                        break
                dt = time.perf_counter() - t0
                if i:  # the first one is the cold one
                    times.append(dt)
                else:
                    res["rle_e2e_cold_ms"] = dt * 1000
                res["rle_bytes"] = len(frame)
            for _ in range(3):
                t0 = time.perf_counter()
                await ws.send(json.dumps({"type": "subscribe", "show_id": self.big_id}))
                while True:
                    frame = await ws.recv()
                    if '"snapshot"' in frame[:40]:
                        break
                plain_times.append(time.perf_counter() - t0)
                res["plain_bytes"] = len(frame)
        res["rle_e2e_ms"] = statistics.median(times) * 1000
        res["plain_e2e_ms"] = statistics.median(plain_times) * 1000
        # the frame builder itself, in this process, on the show's real seat states
        from app.realtime.broker import Position
        from app.realtime.sync import snapshot_frame

        seats = self.seat_map(self.big_id)["seats"]
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
        server = self.server if target == "full" else self.baseline
        assert server is not None
        sproc = psutil.Process(server.pid)
        await self.watchers.all({"cmd": "window", "start": w_start, "end": w_end})
        procs: list[asyncio.subprocess.Process] = []
        outs: list[Path] = []
        control = None
        if target == "full":
            cfg = {
                "host": "127.0.0.1",
                "port": self.server_port,
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
                out = self.folder / f"{mode}-{secrets.token_hex(3)}.json"
                cfg_path = self.folder / f"{mode}-cfg-{secrets.token_hex(3)}.json"
                extra = {
                    "out": str(out),
                    "redis_url": self.redis_url,
                    "channel": RedisKeys(REDIS_PREFIX).channel(self.show_id),
                }
                cfg_path.write_text(json.dumps({**cfg, **extra}))
                proc = await asyncio.create_subprocess_exec(
                    *self.taskset(1), PY, str(HERE / "fanout_driver.py"), mode, str(cfg_path),
                    cwd=ROOT, stderr=(self.folder / f"{mode}.log").open("ab"),
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
            spy_out = self.folder / "py-spy-raw.txt"
            spy = await asyncio.create_subprocess_exec(
                str(ROOT / ".venv/bin/py-spy"), "record", "-p", str(server.pid),
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
            self.results["profile"] = str(self.folder / "py-spy-raw.txt")
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
            truth_map = self.seat_map(self.show_id)["seats"]
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
            "p50_ms": pct(hist, 50),
            "p95_ms": pct(hist, 95),
            "p99_ms": pct(hist, 99),
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
            "changes_sent": driver.get("changes_in_window", rate * seconds if target != "full" else None),
            "driver": {k: driver.get(k) for k in ("req_p50_ms", "req_p99_ms", "failures", "samples", "skipped_no_free_seat", "cpu_s")},
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
        proc = self.server if target == "full" else self.baseline
        assert proc is not None
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

        conn = await asyncpg.connect(self.db_url)
        try:
            left = await conn.fetchval("SELECT count(*) FROM outbox")
        finally:
            await conn.close()
        text = (self.folder / "server.log").read_text(errors="replace")
        relayed = text.count("relayed ")
        failed = text.count("outbox relay on shard")
        prev = self.results.setdefault("_relay_seen", [0, 0])
        out = {"outbox_left": left, "relayed": relayed - prev[0], "relay_failed": failed - prev[1]}
        prev[:] = [relayed, failed]
        return out

    async def rss_at(self, target: str) -> float:
        import psutil

        proc = self.server if target == "full" else self.baseline
        assert proc is not None
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
                    f"{rss / 2**20:.1f} MB = {(rss - rss0) / max(1, self.watchers.count) / 1024:.1f}"
                    f" KB/watcher over 0",
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
            return f"ws://127.0.0.1:{self.server_port}/ws"
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
            common.stop_process(self.server)
            self.start_server()
            self.create_fanout_show()
            await self.set_labels(target)
        else:
            common.stop_process(self.baseline)
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


def fmt_run(r: dict[str, Any]) -> str:
    def ms(x: Any) -> str:
        return "-" if x is None else f"{x:.0f}"

    rs = r.get("redis_sub") or {}
    return (
        f"  {r['target']:<8} {r['watchers']:>6} w {r['rate']:>4.0f}/s {r['seconds']:>3.0f}s | "
        f"p50/p95/p99 {ms(r['p50_ms'])}/{ms(r['p95_ms'])}/{ms(r['p99_ms'])} ms | "
        f"{r['deliveries_s']:>8.0f} frames/s {r['change_deliveries_s']:>8.0f} changes/s "
        f"({r['frames_per_watcher_s']:.1f}/w/s, {r['avg_frame_bytes']:.0f} B) | "
        f"missing {r['missing']} dupes {r['dupes']} stale frames {r['stale_frames']} "
        f"resyncs {r['resyncs']} closed {r['closed']}"
        f" notconv {r['not_converged']} | server CPU {r['server_cpu_pct']:.0f}% tool "
        f"{r['tool_cpu_pct']:.0f}% cores {'/'.join(f'{c:.0f}' for c in r['cores_pct'])} "
        f"load {r['loadavg'][0]}"
        + (
            f" | sent {r['changes_sent']} redis-sub p50/p99 {ms(rs.get('p50_ms'))}/"
            f"{ms(rs.get('p99_ms'))} ms"
            if r["target"] == "full"
            else ""
        )
        + (f" | driver fail {r['driver']['failures']}" if r["driver"].get("failures") else "")
        + (
            f" | outbox left {r['outbox_left']}, relay lines {r['relayed']} ok"
            f" {r['relay_failed']} failed"
            if r.get("relayed") or r.get("relay_failed") or r.get("outbox_left")
            else ""
        )
    )


def med(values: list[Any]) -> Any:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def report(bench: Bench, info: dict[str, Any]) -> dict[str, Any]:
    args = bench.args
    res = bench.results
    runs = [r for r in res["runs"] if not r.get("warmup")]
    lines: list[str] = []
    w = lines.append
    w("")
    w("=" * 100)
    w(
        f"fan-out benchmark: one `modex serve` (CPU 0) vs bare websockets.broadcast(); median of {args.runs} run(s)"
    )
    w("=" * 100)

    def key(target: str, name: str) -> dict[str, Any]:
        group = [r for r in runs if r["target"] == target and r.get("key") == name]
        if not group:
            return {}
        out = {
            f: med([r[f] for r in group])
            for f in ("watchers", "rate", "p50_ms", "p95_ms", "p99_ms", "deliveries_s",
                      "change_deliveries_s", "frames_per_watcher_s", "avg_frame_bytes",
                      "missing", "dupes", "stale_frames", "resyncs", "closed", "not_converged",
                      "server_cpu_pct", "tool_cpu_pct")
        }  # fmt: skip
        out["redis_p99_ms"] = med([(r.get("redis_sub") or {}).get("p99_ms") for r in group])
        out["redis_p50_ms"] = med([(r.get("redis_sub") or {}).get("p50_ms") for r in group])
        out["n"] = len(group)
        return out

    table: dict[str, dict[str, dict[str, Any]]] = {}
    w(f"{'point':<26}{'target':<9}{'p50':>6}{'p95':>6}{'p99':>7}{'frames/s':>10}{'changes/s':>11}"
      f"{'B/frame':>8}{'miss':>6}{'dup':>5}{'resync':>7}{'srvCPU':>7}{'toolCPU':>8}{'redis p99':>10}")  # fmt: skip
    for name, label in (
        ("hi", "5k-ish @ rate-hi"),
        ("max_lo", "max @ rate"),
        ("max_hi", "max @ rate-hi"),
    ):
        for target in ("full", "baseline"):
            k = key(target, name)
            if not k:
                continue
            table.setdefault(name, {})[target] = k

            def f(x: Any, d: int = 0) -> str:
                return "-" if x is None else f"{x:.{d}f}"

            w(
                f"{label + ' ' + str(int(k['watchers'])) + 'w ' + str(int(k['rate'])) + '/s':<26}"
                f"{target:<9}{f(k['p50_ms']):>6}{f(k['p95_ms']):>6}{f(k['p99_ms']):>7}"
                f"{f(k['deliveries_s']):>10}{f(k['change_deliveries_s']):>11}"
                f"{f(k['avg_frame_bytes']):>8}{f(k['missing']):>6}{f(k['dupes']):>5}"
                f"{f(k['resyncs']):>7}{f(k['server_cpu_pct']):>6}%{f(k['tool_cpu_pct']):>7}%"
                f"{f(k['redis_p99_ms']):>10}"
            )
    w("")
    w("step-up (one run per step at --rate):")
    for r in runs:
        if r.get("step"):
            w(fmt_run(r))
    w("")
    # memory
    mem: dict[str, Any] = {}
    for target, points in res.get("rss_idle", {}).items():
        pts = sorted((int(k), v) for k, v in points.items())
        base = dict(pts)[0]
        slope = {n: (v - base) / n / 1024 for n, v in pts if n}
        mem[target + " idle"] = {
            "points_mb": {n: v / 2**20 for n, v in pts},
            "kb_per_watcher": slope,
        }
        w(
            f"server RSS {target} idle (fresh process, no change ever sent): "
            + ", ".join(f"{n}: {v / 2**20:.1f} MB" for n, v in pts)
        )
        w("   KB per idle watcher over 0: " + ", ".join(f"{n}w {s:.1f}" for n, s in slope.items()))
    for target, points in res["rss"].items():
        pts = sorted((int(k), v) for k, v in points.items())
        base = dict(pts).get(0)
        if base is None:
            continue
        desc = ", ".join(f"{n}: {v / 2**20:.0f} MB" for n, v in pts)
        slope = {}
        for n in (1000, 5000):
            if n in dict(pts):
                slope[n] = (dict(pts)[n] - base) / n / 1024
        mem[target] = {"points_mb": {n: v / 2**20 for n, v in pts}, "kb_per_watcher": slope}
        w(f"server RSS {target:<8} during the step-up (after runs): {desc}")
        w("   KB per idle watcher over 0: " + ", ".join(f"{n}w {s:.1f}" for n, s in slope.items()))
    w("")
    snap = res.get("snapshot", {})
    if snap:
        w(
            f"60,000-seat snapshot: rle frame {snap['rle_bytes']} B "
            f"(target < {TARGETS['snapshot_bytes']}), subscribe->frame end to end "
            f"{snap['rle_e2e_ms']:.1f} ms (cold {snap['rle_e2e_cold_ms']:.1f} ms), "
            f"snapshot_frame() build {snap['rle_build_ms']:.1f} ms (target < {TARGETS['snapshot_ms']:.0f}); "
            f"mixed map (1/7 held, 1/5 booked): {snap['rle_mixed_bytes']} B in {snap['rle_mixed_build_ms']:.1f} ms; "
            f"plain frame {snap['plain_bytes']} B, build {snap['plain_build_ms']:.1f} ms, e2e {snap['plain_e2e_ms']:.1f} ms"
        )  # fmt: skip
    w("")
    # verdicts
    verdicts = []
    full_max = table.get("max_hi", table.get("hi", {}))
    if full_max.get("full") and full_max.get("baseline"):
        fb, bb = full_max["full"], full_max["baseline"]
        ratio_frames = fb["deliveries_s"] / bb["deliveries_s"] if bb["deliveries_s"] else 0
        ratio_changes = (
            fb["change_deliveries_s"] / bb["change_deliveries_s"]
            if bb["change_deliveries_s"]
            else 0
        )
        verdicts.append(
            f"deliveries at {int(fb['watchers'])} watchers, {int(fb['rate'])}/s: full/bare frames/s "
            f"{ratio_frames:.2f}, seat changes delivered/s {ratio_changes:.2f} (target >= {TARGETS['ratio']})"
        )
        res["ratio_frames"], res["ratio_changes"] = ratio_frames, ratio_changes
    hi = table.get("hi", {}).get("full")
    if hi:
        ok = hi["p99_ms"] is not None and hi["p99_ms"] < TARGETS["p99_5k_hi_ms"]
        verdicts.append(
            f"p99 {int(hi['watchers'])} watchers @ {int(hi['rate'])}/s: {hi['p99_ms']} ms "
            f"(target < {TARGETS['p99_5k_hi_ms']:.0f}) {'MEETS' if ok else 'MISSES'}"
        )
    lo = table.get("max_lo", {}).get("full")
    if lo:
        ok = lo["p99_ms"] is not None and lo["p99_ms"] < TARGETS["p99_max_lo_ms"]
        verdicts.append(
            f"p99 {int(lo['watchers'])} watchers @ {int(lo['rate'])}/s: {lo['p99_ms']} ms "
            f"(target < {TARGETS['p99_max_lo_ms']:.0f}) {'MEETS' if ok else 'MISSES'}"
        )
    mkey = "full idle" if "full idle" in mem else "full"
    if mkey in mem and mem[mkey]["kb_per_watcher"]:
        kb = mem[mkey]["kb_per_watcher"]
        worst = max(kb.values())
        verdicts.append(
            f"server memory per idle watcher ({mkey}): {', '.join(f'{n}w {v:.1f} KB' for n, v in kb.items())} "
            f"(target < {TARGETS['kb_per_watcher']:.0f}) {'MEETS' if worst < TARGETS['kb_per_watcher'] else 'MISSES'}"
        )
    if snap:
        ok = (
            snap["rle_bytes"] < TARGETS["snapshot_bytes"]
            and snap["rle_build_ms"] < TARGETS["snapshot_ms"]
        )
        verdicts.append(
            f"60k snapshot: {snap['rle_bytes']} B, built in {snap['rle_build_ms']:.1f} ms "
            f"{'MEETS' if ok else 'MISSES'}"
        )
    for v in verdicts:
        w("  * " + v)
    tool_max = max((r["tool_cpu_pct"] for r in runs), default=0)
    w("")
    w(
        f"load tool: {len(bench.watchers.procs) if bench.watchers else args.watcher_procs} watcher "
        f"process(es) on CPU 1, peak {tool_max:.0f}% of a core"
        + (
            " -- over 70%: SATURATED, latencies include the tool's queueing"
            if tool_max > 70
            else " (< 70%)"
        )
    )
    v = info["versions"]
    w("versions: " + ", ".join(f"{k} {v[k]}" for k in v))
    c = info["cpu"]
    w(
        f"app code measured: HEAD {info['git']['head']}; uncommitted in app/ sql/: {info['git']['uncommitted'] or 'none'}"
    )
    w(f"cpu: {c['model']}, {c['cpus']} CPUs; load average before {c['loadavg_before']}, "
      f"after {[round(x, 2) for x in os.getloadavg()]}")  # fmt: skip
    for note in res["notes"]:
        w("note: " + note)
    print("\n".join(lines), flush=True)
    res["table"] = table
    res["memory"] = mem
    res["verdicts"] = verdicts
    return res


async def amain(args: argparse.Namespace) -> None:
    info = {"versions": versions(), "cpu": common.cpu_info(), "nofile": raise_nofile()}
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--short", "app", "sql"], cwd=ROOT, capture_output=True, text=True
    )
    info["git"] = {"head": git.stdout.strip(), "uncommitted": dirty.stdout.split("\n")[:-1]}
    print(
        f"app code: HEAD {info['git']['head']}, uncommitted in app/ sql/: {info['git']['uncommitted'] or 'none'}",
        flush=True,
    )
    if common.has_taskset() and not args.no_pin:
        os.sched_setaffinity(0, {1})
    bench = Bench(args)
    try:
        bench.start_redis()
        await bench.create_database()
        bench.start_server()
        bench.create_shows()
        print(
            f"database {bench.name}, redis :{bench.redis_port}, server pid {bench.server.pid if bench.server else '?'}"
            f" :{bench.server_port}, show {bench.show_id} ({len(bench.labels)} seats), "
            f"60k show {bench.big_id}, logs {bench.folder}",
            flush=True,
        )  # fmt: skip
        if not args.skip_snapshot:
            bench.results["snapshot"] = await bench.snapshot_bench()
            print(f"snapshot: {bench.results['snapshot']}", flush=True)
            # idle memory is measured on a fresh process: the 60,000-seat snapshot's
            # freed memory would otherwise absorb the first watchers and flatter the slope
            common.stop_process(bench.server)
            bench.start_server()
        n_procs = args.watcher_procs or max(1, -(-args.watchers_max // 5000))
        await bench.start_watchers(n_procs)
        await bench.phase("full")
        if not args.skip_baseline:
            bench.start_baseline()
            await bench.phase("baseline")
        result = report(bench, info)
        if args.json:
            Path(args.json).write_text(json.dumps({**result, **info}, indent=2, default=str))
            print(f"written {args.json}")
        if args.profile and bench.results.get("profile"):
            dest = (
                Path(args.json).with_suffix(".pyspy.txt")
                if args.json
                else Path("/tmp/fanout-pyspy.txt")
            )
            shutil.copy(bench.results["profile"], dest)
            print(f"py-spy raw profile copied to {dest}")
    finally:
        await bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=DEFAULT_DB)
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
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
