"""Hold+release throughput of one server process against a one-UPDATE baseline.

    .venv/bin/python loadtests/bench_holds.py                 # 20 s per target, once
    .venv/bin/python loadtests/bench_holds.py --repeat 3 --json /tmp/bench.json

What it does, in one run:
  1. creates a fresh `bench_<random>` database on --database-url's PostgreSQL and runs
     `python -m app migrate` on it (dropped again at the end);
  2. starts ONE `python -m app serve` process (one worker; rate limits on, set too high to
     refuse) pinned to CPU 0 with `taskset -c 0`, creates a show with two seats per client
     through the admin API;
  3. starts `loadtests/baseline_app.py` (Starlette + asyncpg, same uvicorn settings), also
     pinned to CPU 0, whose one endpoint runs one `UPDATE seats ... version + 1` on one seat;
  4. drives each of them in turn with --clients concurrent clients (64), each on its own
     keep-alive connection, with its own customer JWT and its own seats:
       full:     POST /shows/{id}/holds {"seats": [1 or 2 seats]} -> 201, DELETE /holds/{id} -> 204
       baseline: POST /bump/{show}/{seat} -> 200
     The load generator (loadtests/holds_driver.py: common.py's raw asyncio/uvloop HTTP/1.1
     client) runs in --gen-procs processes pinned to CPU 1 with `taskset -c 1`. Requests are
     counted after a --warmup (3 s) for --seconds (20 s): every request (a hold and a
     release count as two), req/s, p50, p99, failures (any other status, by status code);
  5. prints both, the ratio full/baseline (target >= 0.6), the CPU use of the server, the
     generator and each CPU during the window, library versions and the CPU model.

With --repeat N the pair is measured N times (alternating) and the median of each figure is
reported. PostgreSQL is shared with whatever else runs on the machine: figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 0.6


@dataclass
class Measurement:
    target: str
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    failures: dict[str, int]
    failure_samples: list[str]
    connection_errors: dict[str, int]
    gen_cpu_pct: float  # of one core, summed over generator processes
    server_cpu_pct: float  # of one core
    cpu_pct: list[float]  # per CPU, whole machine
    postgres_cpu_pct: float  # every postgres process on the machine, of one core
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def failure_count(self) -> int:
        return sum(self.failures.values()) + sum(self.connection_errors.values())


def _postgres_cpu() -> dict[int, float]:
    """CPU seconds of every postgres process on the machine, by pid."""
    import psutil

    found = {}
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"] in ("postgres", "postmaster"):
                t = proc.cpu_times()
                found[proc.pid] = t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


class Bench:
    """The two targets on one Lab: the full server and the one-UPDATE baseline, both on
    CPU 0, on one fresh database with one show of two seats per client."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lab = common.Lab(
            args.database_url, args.redis_url, pin=not args.no_pin, keep_logs=args.keep_logs
        )
        self.servers: dict[str, common.Server] = {}  # by target: "full", "baseline"
        self.show_id = 0
        self.seats: list[str] = []

    def start(self) -> None:
        self.lab.create_database(
            Path(self.args.apply_sql).read_text() if self.args.apply_sql else None
        )
        self.servers["full"] = self.start_server()
        self.servers["baseline"] = self.lab.start_server(
            command=[sys.executable, str(HERE / "baseline_app.py")],
            env={"BASELINE_DATABASE_URL": self.lab.db_url},
            log_name="baseline.log",
        )
        self.create_show()

    def start_server(self, env: dict[str, str] | None = None) -> common.Server:
        """One more `python -m app serve` (or --server-cmd) on the run's database."""
        cmd = self.args.server_cmd
        command = [*shlex.split(cmd), "--workers", "1"] if cmd else None
        return self.lab.start_server(command=command, env=env)

    def create_show(self) -> None:
        per_row = 20
        need = 2 * self.args.clients
        url = self.servers["full"].url
        self.show_id = common.create_show(
            url, self.lab.secret, rows=(need + per_row - 1) // per_row, seats_per_row=per_row,
            hold_seconds=600,
        )  # fmt: skip
        self.seats = common.seat_labels(url, self.show_id)
        if len(self.seats) < need:
            raise RuntimeError(f"the show has {len(self.seats)} seats, {need} needed")

    # ---- measuring ----

    def measure(self, mode: str, server: common.Server | None = None) -> Measurement:
        """One window of load on `mode`'s server (or on `server`)."""
        import psutil

        args = self.args
        server = server or self.servers[mode]
        clients = [
            {
                "token": common.mint(self.lab.secret, f"bench-user-{i}"),
                "seats": self.seats[2 * i : 2 * i + 2],
            }
            for i in range(args.clients)
        ]
        procs = max(1, args.gen_procs)
        boot = 1.5 + 0.3 * procs
        start_at = time.time() + boot
        window_start = start_at + args.warmup
        window_end = window_start + args.seconds
        drivers = []
        outs = []
        for p in range(procs):
            out = self.lab.folder / f"drive-{mode}-{p}-{secrets.token_hex(3)}.json"
            cfg_path = out.with_suffix(".cfg.json")
            cfg = {
                "host": "127.0.0.1",
                "port": server.port,
                "mode": mode,
                "show_id": self.show_id,
                "clients": clients[p::procs],
                "start_at": start_at,
                "warmup": args.warmup,
                "seconds": args.seconds,
                "out": str(out),
            }
            cfg_path.write_text(json.dumps(cfg))
            argv = [sys.executable, str(HERE / "holds_driver.py"), str(cfg_path)]
            drivers.append(
                subprocess.Popen([*self.lab.taskset(args.gen_cpu), *argv], cwd=common.ROOT)
            )
            outs.append(out)

        server_ps = psutil.Process(server.proc.pid)
        time.sleep(max(0.0, window_start - time.time()))
        s0 = server_ps.cpu_times()
        c0 = psutil.cpu_times(percpu=True)
        pg0 = _postgres_cpu()
        w0 = time.time()
        time.sleep(max(0.0, window_end - time.time()))
        s1 = server_ps.cpu_times()
        c1 = psutil.cpu_times(percpu=True)
        pg1 = _postgres_cpu()
        wall = time.time() - w0
        for d in drivers:
            if d.wait(args.seconds + 60) != 0:
                raise RuntimeError(f"a generator process failed (exit {d.returncode})")

        latencies: list[float] = []
        kinds: dict[str, list[float]] = {}
        failures: dict[str, int] = {}
        samples: list[str] = []
        conn_errors: dict[str, int] = {}
        gen_cpu = 0.0
        for out in outs:
            r = json.loads(out.read_text())
            latencies += r["latencies"]
            for k, v in r["kinds"].items():
                kinds.setdefault(k, []).extend(v)
            for k, v in r["failures"].items():
                failures[k] = failures.get(k, 0) + v
            for k, v in r["connection_errors"].items():
                conn_errors[k] = conn_errors.get(k, 0) + v
            samples += r["failure_samples"]
            gen_cpu += r["cpu_seconds"]
        latencies.sort()

        def busy(a: Any, b: Any) -> float:
            total = sum(b) - sum(a)
            idle = (b.idle + b.iowait) - (a.idle + a.iowait)
            return 100.0 * (total - idle) / total if total > 0 else 0.0

        by_kind = {}
        for k, v in kinds.items():
            v.sort()
            by_kind[k] = {
                "requests": len(v),
                "p50_ms": common.percentile(v, 50) * 1000,
                "p99_ms": common.percentile(v, 99) * 1000,
            }
        return Measurement(
            target=mode,
            seconds=args.seconds,
            requests=len(latencies),
            rps=len(latencies) / args.seconds,
            p50_ms=common.percentile(latencies, 50) * 1000,
            p99_ms=common.percentile(latencies, 99) * 1000,
            mean_ms=(sum(latencies) / len(latencies) * 1000) if latencies else float("nan"),
            failures=failures,
            failure_samples=samples[:5],
            connection_errors=conn_errors,
            gen_cpu_pct=100.0 * gen_cpu / args.seconds,
            server_cpu_pct=100.0 * ((s1.user + s1.system) - (s0.user + s0.system)) / wall,
            cpu_pct=[busy(a, b) for a, b in zip(c0, c1, strict=True)],
            postgres_cpu_pct=100.0 * sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items()) / wall,
            by_kind=by_kind,
        )


# ---- reporting ----


def ratio_of(full: Measurement, base: Measurement) -> float:
    return full.rps / base.rps if base.rps else 0.0


def _fmt_failures(m: Measurement) -> str:
    parts = [f"{k}: {v}" for k, v in sorted(m.failures.items())]
    parts += [f"{k}: {v}" for k, v in sorted(m.connection_errors.items())]
    return ", ".join(parts) if parts else "none"


def report(
    runs: list[tuple[Measurement, Measurement]], args: argparse.Namespace, info: dict
) -> dict:
    def med(getter: Any, which: int) -> float:
        return statistics.median([getter(pair[which]) for pair in runs])

    ratios = [ratio_of(full, base) for full, base in runs]
    ratio = statistics.median(ratios)
    lines = []
    w = lines.append
    w("")
    w(
        f"Modex hold+release benchmark: {args.clients} clients, {args.warmup:g} s warm-up, "
        f"{args.seconds:g} s measured, {len(runs)} run(s)"
        + (" (median shown)" if len(runs) > 1 else "")
    )
    w("")
    header = f"{'target':<34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'failures':>10}"
    header += f"{'server CPU':>12}{'gen CPU':>9}"
    w(header)
    w("-" * len(header))
    names = {
        0: "full: POST hold + DELETE hold",
        1: "baseline: one UPDATE",
    }
    for which in (0, 1):
        w(
            f"{names[which]:<34}"
            f"{med(lambda m: m.rps, which):>9.0f}"
            f"{med(lambda m: m.p50_ms, which):>9.2f}"
            f"{med(lambda m: m.p99_ms, which):>9.2f}"
            f"{med(lambda m: m.failure_count, which):>10.0f}"
            f"{med(lambda m: m.server_cpu_pct, which):>11.0f}%"
            f"{med(lambda m: m.gen_cpu_pct, which):>8.0f}%"
        )
    w("")
    # robust under a noisy machine: what one request costs the server process in CPU
    cost = [
        med(lambda m: m.server_cpu_pct * 10 / m.rps if m.rps else 0.0, which) for which in (0, 1)
    ]
    w(
        f"server CPU per request: full {cost[0]:.2f} ms, baseline {cost[1]:.2f} ms"
        f" ({cost[0] / cost[1] if cost[1] else 0:.1f}x)"
    )
    verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
    w(f"ratio full/baseline req/s: {ratio:.2f}  ({verdict} the {TARGET_RATIO} target)")
    if len(runs) > 1:
        w("")
        w("each run:")
        for i, (full, base) in enumerate(runs, 1):
            w(
                f"  run {i}: full {full.rps:.0f} req/s p50 {full.p50_ms:.2f} p99 {full.p99_ms:.2f}"
                f" | baseline {base.rps:.0f} req/s p50 {base.p50_ms:.2f} p99 {base.p99_ms:.2f}"
                f" | ratio {ratio_of(full, base):.2f}"
            )
    w("")
    for i, (full, base) in enumerate(runs, 1):
        for m in (full, base):
            kinds = "  ".join(
                f"{k} n={v['requests']} p50={v['p50_ms']:.2f} p99={v['p99_ms']:.2f}"
                for k, v in m.by_kind.items()
            )
            w(
                f"  run {i} {m.target:<8} failures: {_fmt_failures(m)} | {kinds} | "
                f"CPUs busy {'/'.join(f'{c:.0f}%' for c in m.cpu_pct)}, "
                f"postgres (all on the machine) {m.postgres_cpu_pct:.0f}%"
            )
            for sample in m.failure_samples:
                w(f"      e.g. {sample}")
    w("")
    gen_max = max(m.gen_cpu_pct for pair in runs for m in pair)
    w(
        f"load generator: {args.gen_procs} process(es) pinned to CPU {args.gen_cpu}"
        f" (raw asyncio HTTP/1.1 keep-alive on uvloop); peak CPU {gen_max:.0f}% of a core"
        + (" -- SATURATED, figures are the generator's" if gen_max > 85 * args.gen_procs else "")
    )
    w(f"server and baseline pinned to CPU 0: {'yes (taskset -c 0)' if info['pinned'] else 'no'}")
    v = info["versions"]
    w(
        "versions: "
        + ", ".join(
            f"{k} {v[k]}"
            for k in ("python", "starlette", "uvicorn", "asyncpg", "uvloop", "httptools")
        )
    )
    c = info["cpu"]
    w(f"cpu: {c['model']}, {c['cpus']} CPUs, load average before {c['loadavg_before']}")
    print("\n".join(lines), flush=True)
    return {
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "median": {
            names[which]: {
                "rps": med(lambda m: m.rps, which),
                "p50_ms": med(lambda m: m.p50_ms, which),
                "p99_ms": med(lambda m: m.p99_ms, which),
                "failures": med(lambda m: m.failure_count, which),
            }
            for which in (0, 1)
        },
        "runs": [
            {"full": _as_dict(full), "baseline": _as_dict(base), "ratio": ratio_of(full, base)}
            for full, base in runs
        ],
        "settings": {
            "clients": args.clients,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "gen_procs": args.gen_procs,
        },
        **info,
    }


def _as_dict(m: Measurement) -> dict[str, Any]:
    d = dict(m.__dict__)
    d["failure_count"] = m.failure_count
    return d


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_service_options(parser)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per target")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1, help="measure N times, report medians")
    parser.add_argument("--gen-procs", type=int, default=1, help="load generator processes")
    parser.add_argument("--gen-cpu", type=int, default=1, help="CPU the generator is pinned to")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--only", choices=["full", "baseline"], help="measure one target only")
    parser.add_argument(
        "--hold-server-after",
        action="store_true",
        help="leave the servers running after measuring, until Enter (for profiling)",
    )
    parser.add_argument(
        "--server-cmd",
        help="run this instead of `python -m app serve` (for experiments; --port is appended)",
    )
    parser.add_argument(
        "--apply-sql",
        metavar="FILE",
        help="run this SQL on the benchmark's database after migrating (experiments: see "
        "loadtests/variants/)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", metavar="OUT", help="also write every figure to this file")
    args = parser.parse_args()

    info = {
        "versions": common.versions(),
        "cpu": common.cpu_info(),
        # the orchestrator mostly sleeps: off CPU 0, with the generator
        "pinned": common.pin_self(args.gen_cpu, not args.no_pin),
    }
    bench = Bench(args)
    runs: list[tuple[Measurement, Measurement]] = []
    try:
        bench.start()
        full, base = bench.servers["full"], bench.servers["baseline"]
        print(
            f"database {bench.lab.name}, server pid {full.proc.pid} on :{full.port}, baseline "
            f"pid {base.proc.pid} on :{base.port}, show {bench.show_id} ({len(bench.seats)} "
            f"seats), logs in {bench.lab.folder}",
            flush=True,
        )
        for i in range(args.repeat):
            found: dict[str, Measurement] = {}
            for target in ("full", "baseline"):
                if args.only in (None, target):
                    m = found[target] = bench.measure(target)
                    print(
                        f"run {i + 1} {target + ':':<10}{m.rps:8.0f} req/s  p50 {m.p50_ms:6.2f} ms"
                        f"  p99 {m.p99_ms:6.2f} ms  failures {m.failure_count}  server CPU "
                        f"{m.server_cpu_pct:.0f}%  gen CPU {m.gen_cpu_pct:.0f}%",
                        flush=True,
                    )
            if len(found) == 2:
                runs.append((found["full"], found["baseline"]))
        if args.hold_server_after:
            input("servers still running; press Enter to stop them ")
    finally:
        bench.lab.close()
    if runs:
        result = report(runs, args, info)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2, default=str))
            print(f"written {args.json}")


if __name__ == "__main__":
    main()
