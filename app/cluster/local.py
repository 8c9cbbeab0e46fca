"""`modex cluster up|down`: every process of a local cluster on 127.0.0.1, and DIR/cluster.json
(the contract in ../shared/DESIGN.md, "Local cluster").

    nginx -> N `modex serve` -> PgBouncer -> per database Patroni: primary + S sync standbys
                             \\-> Redis (one server, or `--redis cluster`: six nodes)

The metadata database is shard 0. PgBouncer 1.18 has no health checks and no
target_session_attrs, so it is told where each primary is: every node's Patroni runs an
on_role_change callback that, when its node becomes primary, points PgBouncer's entry for that
database at it and sends RELOAD (HA-NOTES: a host list there is round-robin, no checks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from app.cluster import processes
from app.cluster.patroni import Etcd, Node, node_config, start_node, wait_for_leader
from app.cluster.pgbouncer import Backend, PgBouncer
from app.paths import project_dir

DATABASE = "modex"  # on every PostgreSQL server of the cluster
NGINX_TEMPLATE = "deploy/nginx.conf"

ON_ROLE_CHANGE = """#!/bin/sh
# Patroni's on_role_change callback (ACTION ROLE SCOPE): the node that became primary points
# PgBouncer's entry for its database at itself, then asks PgBouncer to reload.
case "$2" in primary|master) ;; *) exit 0 ;; esac
cp {line} {entry}.tmp && mv {entry}.tmp {entry}
psql "host=127.0.0.1 port={bouncer} user=postgres dbname=pgbouncer" -qAtc RELOAD >/dev/null 2>&1
exit 0
"""


def project() -> Path:
    """The checkout (deploy/, sql/, the Patroni venv under .venv/)."""
    return project_dir("deploy").parent


def pgbouncer_name(database: int) -> str:
    return f"{DATABASE}_db{database}"


def _node_json(name: str, kind: str, port: int, pid: int | None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "role": "-",
        "shard": None,
        "port": port,
        "pid": pid,
        **extra,
    }


def nginx_config(folder: Path, port: int, app_ports: list[int]) -> str:
    """deploy/nginx.conf (the compose load balancer) for 127.0.0.1: the app instances as
    upstreams, files under `folder`, and without nginx's per-IP limits (every client of a
    local cluster is 127.0.0.1; the app's own limits still count per user)."""
    text = (project() / NGINX_TEMPLATE).read_text()
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("server app", "limit_req zone=", "limit_conn modex")):
            continue
        if stripped.startswith("upstream modex_app"):
            lines.append(line)
            lines += [
                f"        server 127.0.0.1:{p} max_fails=3 fail_timeout=2s;" for p in app_ports
            ]
            continue
        line = line.replace("listen 80 default_server", f"listen 127.0.0.1:{port} default_server")
        line = line.replace("error_log /dev/stderr", f"error_log {folder / 'error.log'}")
        line = line.replace("access_log /dev/stdout", f"access_log {folder / 'access.log'}")
        line = line.replace("worker_processes auto", "worker_processes 1")
        lines.append(line)
    head = [f"pid {folder / 'nginx.pid'};", "daemon off;"]
    text = "\n".join(head + lines) + "\n"
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return text.replace("http {\n", "http {\n" + temp + "\n", 1)


def start_redis(kind: str, folder: Path) -> tuple[str, list[tuple[dict[str, Any], Any]]]:
    """Redis for the cluster: its URL and its nodes (with their Popen objects). `cluster`:
    six nodes, three masters with a replica each (app/cluster/redis_cluster.py), reached
    with a redis+cluster:// URL (sharded pub/sub)."""
    if kind == "cluster":
        from app.cluster import redis_cluster

        started = redis_cluster.start(folder)
        return started.url, [
            (
                _node_json(f"redis-{node.port}", "redis", node.port, node.pid, role=node.role),
                node.proc,
            )
            for node in started.nodes
        ]
    folder.mkdir(parents=True, exist_ok=True)
    port = processes.free_port()
    proc = processes.spawn(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        folder / "redis.log",
    )
    processes.wait_for_port(port, proc.pid, "redis", folder / "redis.log")
    node = _node_json("redis", "redis", port, proc.pid, role="master")
    return f"redis://127.0.0.1:{port}/0", [(node, proc)]


def restart_redis(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """Start the cluster's killed Redis Cluster node on `port` again, as a replica of the
    master that took its slots (app/cluster/redis_cluster.py: restart), and record its pid
    in cluster.json (what `down` stops). Returns its Popen for the caller to keep."""
    from app.cluster import redis_cluster
    from app.cluster.supervise import record_pid

    folder = folder.resolve()
    node = redis_cluster.restart(folder / "redis", port)
    record_pid(folder / "cluster.json", f"redis-{port}", node.pid)
    assert node.proc is not None
    return node.proc


async def _create_database(port: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()


def up(
    folder: Path,
    instances: int = 3,
    shards: int = 2,
    standbys: int = 1,
    redis: str = "single",
    kept: list[subprocess.Popen[bytes]] | None = None,
) -> dict[str, Any]:
    """Start everything; write and return cluster.json's content. `kept` receives the
    processes' Popen objects (a caller that lives on holds them: Python warns about a
    dropped Popen whose process runs)."""
    folder = folder.resolve()
    if (folder / "cluster.json").exists():
        raise SystemExit(
            f"{folder / 'cluster.json'} exists: `modex cluster down --dir {folder}` first"
        )
    folder.mkdir(parents=True, exist_ok=True)
    # the service user must reach its folders below this one
    folder.chmod(0o755)
    kept = [] if kept is None else kept
    nodes: list[dict[str, Any]] = []
    state: dict[str, Any] = {"url": "", "env": {}, "nodes": nodes, "dir": str(folder)}

    def record() -> None:
        (folder / "cluster.json").write_text(json.dumps(state, indent=2) + "\n")

    try:
        etcd = Etcd(folder / "etcd", processes.free_port(), processes.free_port())
        proc = etcd.start()
        kept.append(proc)
        nodes.append(_node_json("etcd", "etcd", etcd.client_port, proc.pid))
        record()

        bouncer_dir = folder / "pgbouncer"
        bouncer_dir.mkdir(parents=True, exist_ok=True)
        bouncer = PgBouncer(bouncer_dir, processes.free_port(), pool_size=20)
        pg_nodes: list[list[Node]] = []
        patronis: list[tuple[Node, Any]] = []
        for database in range(shards):
            scope = f"modex-db{database}"
            members = []
            for index in range(standbys + 1):
                node = Node(
                    database,
                    index,
                    folder / "pg" / f"db{database}-n{index}",
                    processes.free_port(),
                    processes.free_port(),
                )
                node.folder.mkdir(parents=True, exist_ok=True)
                entry = bouncer_dir / f"{pgbouncer_name(database)}.ini"
                line = node.folder / "pgbouncer-entry.ini"
                line.write_text(
                    PgBouncer.entry(
                        pgbouncer_name(database), Backend("127.0.0.1", node.pg_port, DATABASE)
                    )
                )
                callback = node.folder / "on_role_change.sh"
                callback.write_text(
                    ON_ROLE_CHANGE.format(line=line, entry=entry, bouncer=bouncer.port)
                )
                callback.chmod(0o755)
                config = node_config(node, scope, etcd, standbys, callback)
                patronis.append((node, start_node(node, config, project())))
                members.append(node)
            pg_nodes.append(members)
        processes.give_to_service_user(bouncer_dir)
        for node, proc in patronis:
            kept.append(proc)
            nodes.append(
                _node_json(
                    f"patroni-{node.name}", "monitor", node.api_port, proc.pid, shard=node.database
                )
            )
        record()

        leaders = [wait_for_leader(members, standbys) for members in pg_nodes]
        for database, leader in enumerate(leaders):
            asyncio.run(_create_database(leader.pg_port))
            entry = bouncer_dir / f"{pgbouncer_name(database)}.ini"
            shutil.copy(leader.folder / "pgbouncer-entry.ini", entry)
            bouncer.includes.append(entry)
            for node in pg_nodes[database]:
                nodes.append(
                    _node_json(
                        f"postgres-{node.name}",
                        "postgres",
                        node.pg_port,
                        node.postmaster_pid(),
                        role="primary" if node is leader else "standby",
                        shard=database,
                    )
                )
        # restarted when it dies, as systemd or Kubernetes would (it is the one way in)
        proc, pid = bouncer.start_supervised("pgbouncer", folder / "cluster.json")
        kept.append(proc)
        nodes.append(_node_json("pgbouncer", "pgbouncer", bouncer.port, pid))
        nodes.append(
            _node_json(
                "supervise-pgbouncer", "monitor", bouncer.port, proc.pid, supervises="pgbouncer"
            )
        )
        record()

        redis_url, redis_nodes = start_redis(redis, folder / "redis")
        for node_json, proc in redis_nodes:
            kept.append(proc)
            nodes.append(node_json)

        urls = [bouncer.url(pgbouncer_name(database)) for database in range(shards)]
        env = {
            "DATABASE_URL": urls[0],
            "SHARD_URLS": " ".join(urls),
            "REDIS_URL": redis_url,
            "MODEX_JWT_SECRET": secrets.token_urlsafe(32),
            "MODEX_PGBOUNCER": "1",
        }
        if standbys:
            # seat maps and counts from a standby (libpq's prefer-standby picks one; a
            # standby promoted meanwhile is read from as the primary it now is)
            env["SHARD_READ_URLS"] = " ".join(
                "postgresql://postgres@"
                + ",".join(f"127.0.0.1:{node.pg_port}" for node in members)
                + f"/{DATABASE}?target_session_attrs=prefer-standby"
                for members in pg_nodes
            )
        state["env"] = env
        record()
        app_env = {
            **os.environ,
            **env,
            "MODEX_TRUSTED_PROXIES": "127.0.0.1",
            # every client of a local cluster is 127.0.0.1: per-user limits only
            "MODEX_RATE_LIMIT_IP": "off",
            "PYTHONUNBUFFERED": "1",
        }
        run = subprocess.run(
            [sys.executable, "-m", "app", "migrate"],
            env=app_env,
            cwd=project(),
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            raise RuntimeError(f"modex migrate failed: {run.stdout}{run.stderr}")
        app_ports = [processes.free_port() for _ in range(instances)]
        app_procs = []
        for index, port in enumerate(app_ports):
            app_folder = folder / f"app{index}"
            app_folder.mkdir(exist_ok=True)
            proc = processes.spawn(
                [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
                app_folder / "app.log",
                env={
                    **app_env,
                    "MODEX_DATA_DIR": str(app_folder),
                    "MODEX_DEMO": "1" if index == 0 else "0",
                },
                cwd=project(),
            )
            kept.append(proc)
            app_procs.append(proc)
            nodes.append(_node_json(f"app{index}", "app", port, proc.pid))
            record()
            if index == 0:  # loads the demo shows before the others start
                _wait_healthy(port, proc.pid, app_folder / "app.log")
        for index, (port, proc) in enumerate(zip(app_ports, app_procs, strict=True)):
            _wait_healthy(port, proc.pid, folder / f"app{index}" / "app.log")

        nginx_dir = folder / "nginx"
        nginx_dir.mkdir(exist_ok=True)
        port = processes.free_port()
        (nginx_dir / "nginx.conf").write_text(nginx_config(nginx_dir, port, app_ports))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        proc = processes.spawn(
            [nginx, "-c", str(nginx_dir / "nginx.conf"), "-p", str(nginx_dir)],
            nginx_dir / "nginx.out",
        )
        kept.append(proc)
        processes.wait_for_port(port, proc.pid, "nginx", nginx_dir / "error.log")
        nodes.insert(0, _node_json("nginx", "nginx", port, proc.pid))
        state["url"] = f"http://127.0.0.1:{port}"
        record()
    except BaseException:
        down(folder)
        raise
    return state


def _wait_healthy(port: int, pid: int, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if not processes.alive(pid):
            raise RuntimeError(f"modex serve exited: {processes.tail(log)}")
        time.sleep(0.2)
    raise RuntimeError(f"modex serve did not answer /health: {processes.tail(log)}")


def down(folder: Path) -> list[str]:
    """Stop what `up` started (cluster.json's pids), front to back, then every PostgreSQL
    left behind (a postmaster outlives a killed Patroni: its data folder names it)."""
    folder = folder.resolve()
    stopped = []
    try:
        state = json.loads((folder / "cluster.json").read_text())
    except (OSError, ValueError):
        state = {"nodes": []}
    # supervisors first, so that nothing they watch is started again
    order = ["supervisor", "nginx", "app", "pgbouncer", "monitor", "postgres", "redis", "etcd"]
    for kind in order:
        running = [
            node
            for node in state["nodes"]
            if ("supervisor" if node.get("supervises") else node["kind"]) == kind
            and node.get("pid")
            and processes.alive(node["pid"])
        ]
        sig = signal.SIGINT if kind == "postgres" else signal.SIGTERM
        processes.stop_all([node["pid"] for node in running], sig=sig)
        stopped += [node["name"] for node in running]
    for pid_file in sorted(folder.glob("pg/*/data/postmaster.pid")):
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            continue
        if processes.alive(pid):
            # SIGINT: PostgreSQL's fast shutdown (SIGTERM waits for its clients to leave)
            processes.stop(pid, sig=signal.SIGINT)
            stopped.append(f"postgres {pid_file.parent.parent.name}")
    (folder / "cluster.json").unlink(missing_ok=True)
    return stopped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`modex cluster up|down` (its parser, from app/cli.py)."""
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser("up", help="start the cluster; prints its URL, writes DIR/cluster.json")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--instances", type=int, default=3, help="modex serve processes")
    p.add_argument("--shards", type=int, default=2, help="databases (the first is also metadata)")
    p.add_argument("--standbys", type=int, default=1, help="synchronous standbys per database")
    p.add_argument("--redis", choices=["single", "cluster"], default="single")
    p.set_defaults(run=_run_up)
    p = actions.add_parser("down", help="stop what `up` started in DIR")
    p.add_argument("--dir", type=Path, required=True)
    p.set_defaults(run=_run_down)


def _run_up(args: argparse.Namespace) -> None:
    state = up(args.dir, args.instances, args.shards, args.standbys, args.redis)
    print(f"cluster up: {state['url']}  ({args.dir / 'cluster.json'})", flush=True)


def _run_down(args: argparse.Namespace) -> None:
    stopped = down(args.dir)
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}", flush=True)
