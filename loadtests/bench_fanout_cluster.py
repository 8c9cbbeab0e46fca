"""Fan-out over a local cluster: N `modex serve` behind nginx, on one Redis and on a Redis
Cluster (3 masters + 3 replicas, sharded pub/sub), the same load in the same run.

    .venv/bin/python loadtests/bench_fanout_cluster.py            # 3,000 watchers, 20 changes/s
    .venv/bin/python loadtests/bench_fanout_cluster.py --quick    # 300 watchers, 5 s windows

Per configuration (single, then cluster; --repeat windows each): a database of its own on
the PostgreSQL at --database-url (created, migrated, dropped), Redis as app/cluster starts
it for `modex cluster up --redis single|cluster`, --instances servers and nginx with the
compose load balancer's config (least_conn, so the watchers spread over the instances).
Watchers (fanout_watchers.py, picows) subscribe through nginx; seat changes are holds and
releases through nginx at --rate (fanout_driver.py). Reported per window: deliveries/s,
commit-to-receive p50/p99 (frames carry `ts`), missing/duplicate events, watchers that
do not equal the map at the end, CPU of the instances, Redis, nginx and the tools; then
cluster / single. Nothing is pinned: every process shares the machine's cores, as they
would on one box.
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
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import common  # noqa: E402
from bench_fanout import REDIS_PREFIX, WatcherProc, Watchers, pct, raise_nofile  # noqa: E402

from app.cluster import local, processes, redis_cluster  # noqa: E402
from app.realtime.keys import RedisKeys  # noqa: E402

PY = sys.executable
ROWS, PER_ROW = 20, 50  # 1,000 seats: the driver's hold/release pool


class Deployment:
    """One configuration: Redis (single or cluster), a database, the instances, nginx."""

    def __init__(self, args: argparse.Namespace, redis_kind: str) -> None:
        self.args = args
        self.redis_kind = redis_kind
        self.folder = Path(tempfile.mkdtemp(prefix=f"mxfc-{redis_kind}-", dir="/tmp"))
        self.name = f"fanc_{secrets.token_hex(4)}"
        self.db_url = common.with_database(args.database_url, self.name)
        self.secret = "bench-" + secrets.token_hex(24)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.instances: list[subprocess.Popen[bytes]] = []
        self.redis_pids: list[int] = []
        self.nginx: subprocess.Popen[bytes] | None = None
        self.created_db = False
        self.redis_url = ""
        self.url = ""
        self.port = 0
        self.show_id = 0
        self.labels: list[str] = []
        self.tokens: list[str] = []

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "SHARD_URLS": self.db_url,
            "REDIS_URL": self.redis_url,
            "MODEX_REDIS_PREFIX": REDIS_PREFIX,
            "MODEX_JWT_SECRET": self.secret,
            "MODEX_DEMO": "0",
            "MODEX_TRUSTED_PROXIES": "127.0.0.1",
            "MODEX_RATE_LIMIT_USER": "100000/second",
            "MODEX_RATE_LIMIT_IP": "off",
            "PYTHONUNBUFFERED": "1",
        }

    async def start(self) -> None:
        redis_url, nodes = local.start_redis(self.redis_kind, self.folder / "redis")
        self.redis_url = redis_url
        for node, proc in nodes:
            self.redis_pids.append(node["pid"])
            if proc is not None:
                self.procs.append(proc)
        await common.create_database(self.args.database_url, self.name)
        self.created_db = True
        await common.migrate(self.env(), ROOT)
        ports = [processes.free_port() for _ in range(self.args.instances)]
        for index, port in enumerate(ports):
            folder = self.folder / f"app{index}"
            folder.mkdir()
            proc = processes.spawn(
                [PY, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
                folder / "app.log",
                env={**self.env(), "MODEX_DATA_DIR": str(folder)},
                cwd=ROOT,
            )
            self.procs.append(proc)
            self.instances.append(proc)
        for index, (port, proc) in enumerate(zip(ports, self.instances, strict=True)):
            log = self.folder / f"app{index}" / "app.log"
            common.wait_healthy(f"http://127.0.0.1:{port}", proc, str(log), timeout=60)
        nginx_dir = self.folder / "nginx"
        nginx_dir.mkdir()
        self.port = processes.free_port()
        (nginx_dir / "nginx.conf").write_text(local.nginx_config(nginx_dir, self.port, ports))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.nginx = processes.spawn(
            [nginx, "-c", str(nginx_dir / "nginx.conf"), "-p", str(nginx_dir)],
            nginx_dir / "nginx.out",
        )
        self.procs.append(self.nginx)
        processes.wait_for_port(self.port, self.nginx.pid, "nginx", nginx_dir / "error.log")
        self.url = f"http://127.0.0.1:{self.port}"
        self.create_show()

    def create_show(self) -> None:
        admin = common.mint(self.secret, "bench-admin", "admin")
        body = {
            "title": "Fan-out over a cluster",
            "venue": "Bench hall",
            "starts_at": "2030-01-01T20:00:00Z",
            "rows": ROWS,
            "seats_per_row": PER_ROW,
            "hold_seconds": 3600,
            "max_seats_per_customer": 10,
        }
        status, show = common.http_json("POST", f"{self.url}/admin/shows", body, admin)
        if status != 201:
            raise RuntimeError(f"creating the show failed: {status} {show}")
        self.show_id = show["id"]
        self.labels = [s["label"] for s in self.seat_map()]
        self.tokens = [common.mint(self.secret, f"fan-{i}") for i in range(len(self.labels))]

    def seat_map(self) -> list[dict[str, Any]]:
        status, seat_map = common.http_json("GET", f"{self.url}/shows/{self.show_id}/seats")
        if status != 200:
            raise RuntimeError(f"seat map: {status} {seat_map}")
        seats: list[dict[str, Any]] = seat_map["seats"]
        return seats

    def measured_pids(self) -> dict[str, list[int]]:
        nginx = [self.nginx.pid] if self.nginx else []
        if self.nginx:
            nginx += [c.pid for c in psutil.Process(self.nginx.pid).children()]
        return {
            "instances": [p.pid for p in self.instances],
            "redis": self.redis_pids,
            "nginx": nginx,
        }

    async def close(self) -> None:
        for proc in reversed(self.procs):
            common.stop_process(proc)
        if self.redis_kind == "cluster":
            redis_cluster.stop(self.folder / "redis")
        if self.created_db:
            try:
                await common.drop_database(self.args.database_url, self.name)
            except Exception as exc:
                print(f"dropping {self.name} failed: {exc!r}")
        if not self.args.keep_logs:
            shutil.rmtree(self.folder, ignore_errors=True)


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def start_watchers(folder: Path, count: int) -> Watchers:
    procs = []
    for i in range(count):
        proc = await asyncio.create_subprocess_exec(
            PY, str(HERE / "fanout_watchers.py"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=(folder / f"watchers-{i}.log").open("ab"), cwd=ROOT,
        )  # fmt: skip
        procs.append(WatcherProc(proc))
    return Watchers(procs)


async def stop_watchers(watchers: Watchers) -> None:
    for p in watchers.procs:
        try:
            await asyncio.wait_for(p.ask({"cmd": "exit"}), 10)
            await asyncio.wait_for(p.proc.wait(), 10)
        except Exception:
            if p.proc.returncode is None:
                p.proc.kill()
                await p.proc.wait()


async def window(dep: Deployment, watchers: Watchers, args: argparse.Namespace) -> dict[str, Any]:
    """One measured window: drive changes through nginx, count what the watchers got."""
    start = time.time() + 1.0
    w_start = start + 1.0  # changes start a second early: the pipeline fills
    w_end = w_start + args.seconds
    await watchers.all({"cmd": "window", "start": w_start, "end": w_end})
    out = dep.folder / f"drive-{secrets.token_hex(3)}.json"
    cfg = {
        "host": "127.0.0.1",
        "port": dep.port,
        "show_id": dep.show_id,
        "rate": args.rate,
        "hold_time": 1.0,
        "start": start,
        "end": w_end,
        "w_start": w_start,
        "w_end": w_end,
        "seats": dep.labels,
        "tokens": dep.tokens,
        "connections": 16,
        "out": str(out),
        "redis_url": dep.redis_url,
        "channel": RedisKeys(REDIS_PREFIX).channel(dep.show_id),
    }
    cfg_path = dep.folder / f"drive-cfg-{secrets.token_hex(3)}.json"
    cfg_path.write_text(json.dumps(cfg))
    driver = await asyncio.create_subprocess_exec(
        PY, str(HERE / "fanout_driver.py"), "drive", str(cfg_path),
        cwd=ROOT, stderr=(dep.folder / "drive.log").open("ab"),
    )  # fmt: skip
    groups = dep.measured_pids()
    groups["tools"] = [p.proc.pid for p in watchers.procs] + [driver.pid]
    await asyncio.sleep(max(0.0, w_start - time.time()))
    before = {name: cpu_seconds(pids) for name, pids in groups.items()}
    await asyncio.sleep(max(0.0, w_end - time.time()))
    after = {name: cpu_seconds(pids) for name, pids in groups.items()}
    await driver.wait()
    drove = json.loads(out.read_text())
    stats = await watchers.all({"cmd": "stats"})
    await asyncio.sleep(2.5)  # the last releases and their fan-out
    truth = [seat["version"] for seat in dep.seat_map()]
    checks = await watchers.all({"cmd": "check", "versions": truth})
    hist: dict[int, int] = {}
    for s in stats:
        for k, v in s["hist"].items():
            hist[int(k)] = hist.get(int(k), 0) + v
    seconds = args.seconds
    return {
        "redis": dep.redis_kind,
        "watchers": watchers.count,
        "changes_s": (drove.get("changes_in_window") or 0) / seconds,
        "deliveries_s": sum(s["frames"] for s in stats) / seconds,
        "change_deliveries_s": sum(s["changes"] for s in stats) / seconds,
        "p50_ms": pct(hist, 50),
        "p99_ms": pct(hist, 99),
        "missing": sum(s["missing"] for s in stats),
        "dupes": sum(s["dupes"] for s in stats),
        "not_converged": sum(c["wrong"] for c in checks),
        "hold_failures": drove.get("failures"),
        "cpu_pct": {name: (after[name] - before[name]) / seconds * 100 for name in groups},
    }


def describe(r: dict[str, Any]) -> str:
    cpu = ", ".join(f"{name} {value:.0f}%" for name, value in r["cpu_pct"].items())
    return (
        f"{r['redis']:>7}: {r['watchers']:,} watchers, {r['changes_s']:.1f} changes/s, "
        f"{r['deliveries_s']:,.0f} frames/s ({r['change_deliveries_s']:,.0f} seat changes/s), "
        f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, missing {r['missing']}, "
        f"duplicates {r['dupes']}, not converged {r['not_converged']}, "
        f"hold failures {r['hold_failures']}; CPU: {cpu}"
    )


async def run(args: argparse.Namespace, redis_kind: str) -> list[dict[str, Any]]:
    dep = Deployment(args, redis_kind)
    watchers: Watchers | None = None
    results = []
    try:
        await dep.start()
        watchers = await start_watchers(dep.folder, args.watcher_procs)
        await watchers.all({"cmd": "labels", "labels": dep.labels})  # map order
        ws_url = f"ws://127.0.0.1:{dep.port}/ws"
        joined = await watchers.add(args.watchers, ws_url, dep.show_id)
        if joined["ready"] != args.watchers:
            raise RuntimeError(f"{redis_kind}: only {joined} of {args.watchers} watchers ready")
        for _ in range(args.repeat):
            result = await window(dep, watchers, args)
            print(describe(result), flush=True)
            results.append(result)
    finally:
        if watchers is not None:
            await stop_watchers(watchers)
        await dep.close()
    return results


def median_of(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in results if r[key] is not None)


async def amain(args: argparse.Namespace) -> int:
    print(json.dumps({"versions": common.versions()}), flush=True)
    print(
        f"{args.instances} instances behind nginx, {args.watchers:,} watchers, "
        f"{args.rate:g} changes/s, {args.seconds:g} s x {args.repeat} per configuration",
        flush=True,
    )
    single = await run(args, "single")
    cluster = await run(args, "cluster")
    for key in ("deliveries_s", "p50_ms", "p99_ms"):
        a, b = median_of(single, key), median_of(cluster, key)
        print(f"median {key}: single {a:,.1f}, cluster {b:,.1f}, cluster/single {b / a:.2f}x")
    broken = [r for r in single + cluster if r["missing"] or r["dupes"] or r["not_converged"]]
    if broken:
        print(f"FAILED: events missing, duplicated or not converged in {len(broken)} window(s)")
        return 1
    print("every watcher converged; no missing or duplicate events")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL admin URL: the benchmark creates and drops its own databases",
    )
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--watchers", type=int, default=3000)
    parser.add_argument("--watcher-procs", type=int, default=1)
    parser.add_argument("--rate", type=float, default=20.0, help="seat changes per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="per measured window")
    parser.add_argument("--repeat", type=int, default=3, help="windows per configuration")
    parser.add_argument("--quick", action="store_true", help="300 watchers, 5 s, one window")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.watchers, args.seconds, args.repeat = 300, 5.0, 1
    raise_nofile()
    sys.exit(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
