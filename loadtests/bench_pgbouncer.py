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
import statistics
from urllib.parse import urlsplit

import bench_holds
import common

from app.cluster import processes
from app.cluster.pgbouncer import Backend, PgBouncer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_service_options(parser)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--pool-size", type=int, default=20, help="PgBouncer's server pool")
    args = parser.parse_args()
    # what bench_holds.Bench reads
    args.gen_procs, args.gen_cpu, args.no_pin, args.keep_logs = 1, 1, False, False
    args.server_cmd = args.apply_sql = None

    bench = bench_holds.Bench(args)
    lab = bench.lab
    common.pin_self(args.gen_cpu)
    target = urlsplit(lab.db_url)
    bouncer = PgBouncer(
        lab.folder / "pgbouncer",
        common.free_port(),
        {lab.name: Backend(target.hostname or "127.0.0.1", target.port or 5432, lab.name)},
        user=target.username or "postgres",
        pool_size=args.pool_size,
    )
    bouncer_proc = None
    try:
        lab.create_database()
        lab.folder.chmod(0o755)  # the service user reaches its PgBouncer folder
        bouncer_proc = bouncer.start()
        pooled = bouncer.url(lab.name)
        servers = {
            "direct": bench.start_server(),
            # no statement cache, session settings by PgBouncer's connect_query
            "pgbouncer": bench.start_server(
                {"DATABASE_URL": pooled, "SHARD_URLS": pooled, "MODEX_PGBOUNCER": "1"}
            ),
        }
        bench.servers["full"] = servers["direct"]
        bench.create_show()
        print(
            f"database {lab.name}; PgBouncer on :{bouncer.port} (pool {args.pool_size}); "
            f"{args.clients} clients, {args.seconds:.0f} s each; logs in {lab.folder}",
            flush=True,
        )
        rates: dict[str, list[float]] = {"direct": [], "pgbouncer": []}
        for i in range(args.repeat):
            for name, server in servers.items():
                found = bench.measure("full", server)
                rates[name].append(found.rps)
                print(
                    f"run {i + 1} {name:9s} {found.rps:7.0f} req/s  p50 {found.p50_ms:6.2f} ms"
                    f"  p99 {found.p99_ms:6.2f} ms  failures {found.failure_count}"
                    f"  server CPU {found.server_cpu_pct:.0f}%",
                    flush=True,
                )
        direct, through = (statistics.median(rates[n]) for n in ("direct", "pgbouncer"))
        print(
            f"median: direct {direct:.0f} req/s, through PgBouncer {through:.0f} req/s "
            f"(x{through / direct:.2f})",
            flush=True,
        )
    finally:
        for proc in list(lab.procs):  # the servers first: they hold PgBouncer's connections
            lab.stop(proc)
        if bouncer_proc is not None:
            processes.stop(bouncer_proc.pid)
            bouncer_proc.wait()
        lab.close()


if __name__ == "__main__":
    main()
