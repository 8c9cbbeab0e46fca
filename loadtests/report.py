"""The benchmarks in one go, written up as loadtests/results/REPORT.md with PNG plots.

    .venv/bin/python loadtests/report.py                 # everything (~25 minutes)
    .venv/bin/python loadtests/report.py --quick         # short windows (~8 minutes)
    .venv/bin/python loadtests/report.py --only holds,locust

Steps (each runs the tool of its own, with its own databases; logs in results/<step>.log):
- holds: bench_holds.py at several client counts (full hold path vs the one-UPDATE handler)
  -> holds_latency.png, latency and throughput against load;
- seatmap: bench_seat_map.py (a 6,000-seat map: fresh read, kept, kept while on sale);
- fanout: bench_fanout.py --quick (server vs bare websockets.broadcast)
  -> fanout_deliveries.png, deliveries and p99 against watchers;
- stampede: bench_onsale.py (customers at once after the same seats, batched vs alone);
- locust: the Locust suite's on-sale shape against two `modex serve` instances
  -> locust_over_time.png, response times and users over time.

PostgreSQL and Redis must be running (--database-url, --redis-url); nothing else.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common

HERE = Path(__file__).resolve().parent
NUMBER = r"([0-9][0-9,]*\.?[0-9]*)"


def run_tool(out: Path, step: str, argv: list[str], timeout: float) -> str:
    """One tool of loadtests/ in a process of its own; its output, also in <step>.log."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, *argv], cwd=common.ROOT, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    text = done.stdout + done.stderr
    (out / f"{step}.log").write_text(f"$ {' '.join(argv)}\n{text}")
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {text[-1500:]}")
    print(f"  {step}: {argv[0]} done in {time.monotonic() - started:.0f} s", flush=True)
    return text


def num(text: str) -> float:
    return float(text.replace(",", ""))


def table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---- steps: each returns its Markdown section ----


def holds(args: argparse.Namespace, out: Path) -> str:
    levels = [16, 64] if args.quick else [16, 64, 128]
    seconds = "5" if args.quick else "15"
    rows: list[dict[str, Any]] = []
    line = re.compile(
        rf"run 1 (full|baseline):\s+{NUMBER} req/s\s+p50\s+{NUMBER} ms\s+p99\s+{NUMBER}"
    )
    for clients in levels:
        text = run_tool(
            out,
            f"holds-{clients}",
            ["loadtests/bench_holds.py", "--seconds", seconds, "--clients", str(clients),
             "--database-url", args.database_url, "--redis-url", args.redis_url],
            timeout=600,
        )  # fmt: skip
        for target, rps, p50, p99 in line.findall(text):
            rows.append({"clients": clients, "target": target, "rps": num(rps),
                         "p50": num(p50), "p99": num(p99)})  # fmt: skip
    plt = pyplot()
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(11, 4))
    for target, style in (("full", "-o"), ("baseline", "--s")):
        mine = [r for r in rows if r["target"] == target]
        x = [r["clients"] for r in mine]
        lat.plot(x, [r["p50"] for r in mine], style, label=f"{target} p50")
        lat.plot(x, [r["p99"] for r in mine], style, alpha=0.5, label=f"{target} p99")
        thr.plot(x, [r["rps"] for r in mine], style, label=target)
    lat.set(xlabel="clients", ylabel="ms", title="hold + release latency against load")
    thr.set(xlabel="clients", ylabel="requests/s", title="throughput")
    lat.legend()
    thr.legend()
    fig.tight_layout()
    fig.savefig(out / "holds_latency.png", dpi=100)
    plt.close(fig)
    body = table(
        ["clients", "target", "req/s", "p50 ms", "p99 ms"],
        [[r["clients"], r["target"], f"{r['rps']:,.0f}", r["p50"], r["p99"]] for r in rows],
    )
    return (
        f"## Holds (bench_holds.py, {seconds} s per target)\n\n{body}\n\n"
        "![latency against load](holds_latency.png)\n"
    )


def seatmap(args: argparse.Namespace, out: Path) -> str:
    seconds = "4" if args.quick else "10"
    text = run_tool(
        out,
        "seatmap",
        ["loadtests/bench_seat_map.py", "--seconds", seconds, "--before", "",
         "--database-url", args.database_url, "--redis-url", args.redis_url],
        timeout=600,
    )  # fmt: skip
    after = text.split("after: this code", 1)[-1]
    rows = []
    for line in after.splitlines():
        found = re.match(
            rf"^(\S.*?)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$", line
        )
        if found:
            rows.append(list(found.groups()))
    body = table(["target", "req/s", "p50 ms", "p99 ms", "bytes/read", "CPU/read ms",
                  "reads/read"], rows)  # fmt: skip
    return f"## Seat map reads (bench_seat_map.py, {seconds} s per target)\n\n{body}\n"


def fanout(args: argparse.Namespace, out: Path) -> str:
    path = out / "fanout.json"
    run_tool(
        out,
        "fanout",
        ["loadtests/bench_fanout.py", "--quick", "--json", str(path),
         "--database-url", args.database_url],
        timeout=1800,
    )  # fmt: skip
    result = json.loads(path.read_text())
    steps = [r for r in result["runs"] if r.get("step") and not r.get("warmup")]
    plt = pyplot()
    fig, (dlv, lag) = plt.subplots(1, 2, figsize=(11, 4))
    for target, style in (("full", "-o"), ("baseline", "--s")):
        mine = sorted((r for r in steps if r["target"] == target), key=lambda r: r["watchers"])
        x = [r["watchers"] for r in mine]
        dlv.plot(x, [r["deliveries_s"] for r in mine], style, label=f"{target} frames/s")
        lag.plot(x, [r["p99_ms"] for r in mine], style, label=f"{target} p99")
    dlv.set(xlabel="watchers", ylabel="frames delivered/s", title="deliveries against watchers")
    lag.set(xlabel="watchers", ylabel="ms", title="commit-to-receive p99")
    dlv.legend()
    lag.legend()
    fig.tight_layout()
    fig.savefig(out / "fanout_deliveries.png", dpi=100)
    plt.close(fig)
    rows = [
        [r["target"], r["watchers"], f"{r['rate']:.0f}", f"{r['deliveries_s']:,.0f}",
         r["p50_ms"], r["p99_ms"], r["missing"], r["resyncs"]]
        for r in sorted(steps, key=lambda r: (r["target"], r["watchers"]))
    ]  # fmt: skip
    body = table(["target", "watchers", "changes/s", "frames/s", "p50 ms", "p99 ms",
                  "missing", "resyncs"], rows)  # fmt: skip
    return (
        "## Fan-out (bench_fanout.py --quick: the server vs bare websockets.broadcast)\n\n"
        f"{body}\n\n![deliveries against watchers](fanout_deliveries.png)\n"
    )


def stampede(args: argparse.Namespace, out: Path) -> str:
    customers = "1000" if args.quick else "2000"
    text = run_tool(
        out,
        "stampede",
        ["loadtests/bench_onsale.py", "--customers", customers, "--rows", "40",
         "--database-url", args.database_url, "--redis-url", args.redis_url],
        timeout=900,
    )  # fmt: skip
    rows = [
        line.split(None, 7) for line in text.splitlines() if line.startswith(("batched ", "alone "))
    ]
    verdicts = [line for line in text.splitlines() if line.startswith(("batched:", "alone:"))]
    body = table(["mode", "sold out s", "requests", "req/s", "hold p50", "hold p99",
                  "server CPU s", "answers"], rows)  # fmt: skip
    return (
        f"## Stampede (bench_onsale.py: {customers} customers at once after 1,000 seats)\n\n"
        f"{body}\n\n" + "\n".join(f"- {v}" for v in verdicts) + "\n"
    )


@contextmanager
def two_servers(args: argparse.Namespace) -> Iterator[tuple[list[str], str]]:
    """A database of its own and two `modex serve` on it, unpinned, with the app's own
    user rate limit; (their URLs, the JWT secret)."""
    limits = {"MODEX_RATE_LIMIT_IP": "off", "MODEX_GUEST_TOKENS_PER_IP": "off"}
    with common.Lab(args.database_url, args.redis_url, prefix="locust", limits=limits) as lab:
        lab.create_database()
        servers = [lab.start_server(cpu=None, log_name=f"server-{i}.log") for i in range(2)]
        yield [server.url for server in servers], lab.secret


def locust(args: argparse.Namespace, out: Path) -> str:
    users, seconds = (300, 45) if args.quick else (1000, 120)
    with two_servers(args) as (urls, secret):
        os.environ["MODEX_JWT_SECRET"] = secret  # the suite mints its admin token from it
        argv = [
            "-m", "locust", "-f", "loadtests/locustfile.py,loadtests/locust_onsale.py",
            "--headless", "--only-summary", "-u", str(users), "-r", str(users // 5),
            "-t", f"{seconds}s", "--quiet-seconds", "15", "--quiet-users", str(users // 20),
            "--hosts", ",".join(urls), "--processes", "2",
            "--csv", str(out / "locust"), "--csv-full-history",
            "--summary-json", str(out / "locust_summary.json"),
        ]  # fmt: skip
        try:
            run_tool(out, "locust", argv, timeout=seconds + 300)
        except RuntimeError as exc:
            if not (out / "locust_summary.json").exists():
                raise
            print(f"  locust: {exc}"[:300])  # a failed run is reported, not hidden
    summary = json.loads((out / "locust_summary.json").read_text())
    with open(out / "locust_stats.csv") as f:
        stats = list(csv.DictReader(f))
    rows = [
        [s["Type"], s["Name"], s["Request Count"], s["Failure Count"], s["50%"], s["95%"],
         s["99%"]]
        for s in stats
    ]  # fmt: skip
    plot_locust(out)
    invariants = "\n".join(
        f"- {'OK' if i['holds'] else '**BROKEN**'} {i['name']}" for i in summary["invariants"]
    )
    cpu = ", ".join(f"{p['process']} {p['cpu_pct']:.0f}%" for p in summary["processes"])
    w = summary["watchers"]
    return (
        f"## Locust on-sale (two servers, --processes 2, {users} users, {seconds} s)\n\n"
        f"{table(['type', 'name', 'requests', 'failures', 'p50 ms', 'p95 ms', 'p99 ms'], rows)}"
        f"\n\n{invariants}\n\nWatchers checked {w['checked']}, frames {w['frames']}, resyncs "
        f"{w['resyncs']}, reconnects {w['reconnects']}; seats confirmed "
        f"{summary['seats_confirmed']}. Locust's CPU (of one core): {cpu}.\n\n"
        "![Locust response times over time](locust_over_time.png)\n"
    )


def plot_locust(out: Path) -> None:
    with open(out / "locust_stats_history.csv") as f:
        history = list(csv.DictReader(f))
    names = ["WS seats", "POST /shows/[id]/holds", "GET /shows/[id]/seats", "WS announcement"]
    start = min(int(r["Timestamp"]) for r in history)
    plt = pyplot()
    fig, (times, users) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for name in names:
        kind, _, label = name.partition(" ")
        mine = [
            r for r in history if r["Type"] == kind and r["Name"] == label and r["95%"] != "N/A"
        ]
        if mine:
            x = [int(r["Timestamp"]) - start for r in mine]
            times.plot(x, [float(r["95%"]) for r in mine], label=f"{name} p95")
    total = [r for r in history if r["Name"] == "Aggregated"]
    users.plot([int(r["Timestamp"]) - start for r in total], [int(r["User Count"]) for r in total])
    times.set(ylabel="ms (p95, last 10 s)", title="Locust on-sale: response times over time")
    times.set_yscale("log")
    times.legend(fontsize=8)
    users.set(xlabel="seconds", ylabel="users")
    fig.tight_layout()
    fig.savefig(out / "locust_over_time.png", dpi=100)
    plt.close(fig)


STEPS: dict[str, Callable[[argparse.Namespace, Path], str]] = {
    "holds": holds,
    "seatmap": seatmap,
    "fanout": fanout,
    "stampede": stampede,
    "locust": locust,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_service_options(parser)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--quick", action="store_true", help="short windows, fewer points")
    parser.add_argument("--only", default=",".join(STEPS), help="comma-separated steps")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    rev = subprocess.run(
        ["git", "-C", common.ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    sections = []
    for step in args.only.split(","):
        print(f"{step} ...", flush=True)
        try:
            sections.append(STEPS[step.strip()](args, out))
        except Exception as exc:  # one broken step still leaves the others' figures
            sections.append(f"## {step}\n\nfailed: `{str(exc)[:1000]}`\n")
            print(f"  {step} failed: {exc!r}"[:500], flush=True)
    load = os.getloadavg()
    head = (
        f"# Benchmark report\n\n{started:%Y-%m-%d %H:%M} UTC, commit {rev}"
        f"{', --quick' if args.quick else ''}; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; cpu: {common.cpu_info()}; "
        f"versions: {common.versions()}. Command: `.venv/bin/python loadtests/report.py"
        f"{' --quick' if args.quick else ''}`\n"
    )
    (out / "REPORT.md").write_text("\n".join([head, *sections]))
    print(f"written {out / 'REPORT.md'}")


if __name__ == "__main__":
    main()
