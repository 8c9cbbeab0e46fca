"""Holds through PgBouncer against direct, same run (bench_holds.py's harness and load).

    .venv/bin/python loadtests/bench_pgbouncer.py                  # 20 s per target, once
    .venv/bin/python loadtests/bench_pgbouncer.py --repeat 3 --seconds 15

One fresh database on --database-url's PostgreSQL (reached over TCP), one show, and two
`modex serve` processes pinned to CPU 0, run one at a time against the same load
(--clients keep-alive clients, each holding and releasing its own seats, from CPU 1):
  direct:    DATABASE_URL is PostgreSQL itself (asyncpg's statement cache on, the session
             settings sent at connect);
  pgbouncer: DATABASE_URL is PgBouncer (Debian's 1.18, transaction pooling, pool of 20
             server connections, run as the service user) in front of the same database;
             MODEX_PGBOUNCER=1: no statement cache, settings by PgBouncer's connect_query.
Prints req/s, p50, p99 and failures of each, and pgbouncer/direct. With --repeat N the
two alternate N times and the medians are printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_holds
import common

from app.cluster import processes
from app.cluster.pgbouncer import Backend, PgBouncer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=bench_holds.DEFAULT_DB)
    parser.add_argument("--redis-url", default=bench_holds.DEFAULT_REDIS)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--pool-size", type=int, default=20, help="PgBouncer's server pool")
    args = parser.parse_args()
    # what bench_holds.Bench reads
    args.gen_procs, args.gen_cpu, args.no_pin = 1, 1, False
    args.server_cmd = args.apply_sql = None

    bench = bench_holds.Bench(args)
    if bench.pin:
        os.sched_setaffinity(0, {args.gen_cpu})
    target = urlsplit(bench.db_url)
    bouncer = PgBouncer(
        bench.folder / "pgbouncer",
        common.free_port(),
        {bench.name: Backend(target.hostname or "127.0.0.1", target.port or 5432, bench.name)},
        user=target.username or "postgres",
        pool_size=args.pool_size,
    )
    bouncer_proc = None
    servers = {}
    try:
        bench.create_database()
        bench.folder.chmod(0o755)  # the service user reaches its PgBouncer folder
        bouncer_proc = bouncer.start()
        bench.start_server()
        servers["direct"] = (bench.server, bench.server_port)
        direct_url = bench.db_url
        bench.db_url = bouncer.url(bench.name)  # what env() hands the next server
        os.environ["MODEX_PGBOUNCER"] = "1"
        bench.server_port = common.free_port()
        bench.start_server()
        servers["pgbouncer"] = (bench.server, bench.server_port)
        del os.environ["MODEX_PGBOUNCER"]
        bench.db_url = direct_url
        bench.create_show()
        print(
            f"database {bench.name}; PgBouncer on :{bouncer.port} (pool {args.pool_size}); "
            f"{args.clients} clients, {args.seconds:.0f} s each; logs in {bench.folder}",
            flush=True,
        )
        rates: dict[str, list[float]] = {"direct": [], "pgbouncer": []}
        for i in range(args.repeat):
            for name, (server, port) in servers.items():
                bench.server, bench.server_port = server, port
                found = bench.measure("full")
                rates[name].append(found.rps)
                print(
                    f"run {i + 1} {name:9s} {found.rps:7.0f} req/s  p50 {found.p50_ms:6.2f} ms"
                    f"  p99 {found.p99_ms:6.2f} ms  failures {found.failure_count}"
                    f"  server CPU {found.server_cpu_pct:.0f}%",
                    flush=True,
                )
        direct, pooled = (statistics.median(rates[n]) for n in ("direct", "pgbouncer"))
        print(
            f"median: direct {direct:.0f} req/s, through PgBouncer {pooled:.0f} req/s "
            f"(x{pooled / direct:.2f})",
            flush=True,
        )
    finally:
        for server, _ in servers.values():
            common.stop_process(server)
        if bouncer_proc is not None:
            processes.stop(bouncer_proc.pid)
            bouncer_proc.wait()
        bench.drop_database()


if __name__ == "__main__":
    main()
