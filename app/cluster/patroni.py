"""Patroni (PyPI, in its own venv) managing a primary and synchronous standbys per database,
with etcd (Debian's etcd-server, v3 API) as its store.

Failover settings measured on this machine (../shared/HA-NOTES.md): ttl 20, loop_wait 1 and
retry_timeout 3 are Patroni's floor; primary_start_timeout 0 promotes a standby at once when
the primary's PostgreSQL dies instead of restarting it in place first; failsafe_mode keeps
primaries writable through a short etcd pause.

No answered booking is lost: synchronous_mode makes Patroni keep synchronous_standby_names
naming `synchronous_node_count` standbys, and synchronous_commit = on makes a COMMIT wait
until a synchronous standby has flushed it. A standby that is not synchronous is never
promoted (synchronous_mode), so what a 201 answered survives a failover.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.cluster import processes

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def patroni_binary(project: Path) -> Path:
    return Path(
        os.environ.get("MODEX_PATRONI", str(project / ".venv" / "patroni" / "bin" / "patroni"))
    )


@dataclass
class Etcd:
    folder: Path
    client_port: int
    peer_port: int

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> subprocess.Popen[bytes]:
        self.folder.mkdir(parents=True, exist_ok=True)
        peer = f"http://127.0.0.1:{self.peer_port}"
        client = f"http://127.0.0.1:{self.client_port}"
        proc = processes.spawn(
            [
                "etcd",
                "--name=modex",
                f"--data-dir={self.folder / 'data'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=modex={peer}",
                "--log-level=warn",
            ],
            self.folder / "etcd.log",
        )
        processes.wait_for_port(self.client_port, proc.pid, "etcd", self.folder / "etcd.log")
        return proc


@dataclass
class Node:
    """One PostgreSQL server and the Patroni that runs it."""

    database: int  # which database (shard) it serves
    index: int  # 0..standbys
    folder: Path
    pg_port: int
    api_port: int

    @property
    def name(self) -> str:
        return f"db{self.database}-n{self.index}"

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid (Patroni's child, re-parented to PID 1 if Patroni dies)."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def state(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self.api}/patroni", timeout=1) as answer:
                found: dict[str, Any] = json.load(answer)
                return found
        except (OSError, ValueError):
            return None


def node_config(node: Node, scope: str, etcd: Etcd, standbys: int, on_role_change: Path) -> str:
    config = {
        "scope": scope,
        "name": node.name,
        # leave log.dir out: `dir: null` crashes Patroni 4.1
        "log": {"level": "WARNING"},
        "restapi": {
            "listen": f"127.0.0.1:{node.api_port}",
            "connect_address": f"127.0.0.1:{node.api_port}",
        },
        "etcd3": {"hosts": [etcd.endpoint]},
        "bootstrap": {
            "dcs": {
                "ttl": 20,
                "loop_wait": 1,
                "retry_timeout": 3,
                "primary_start_timeout": 0,
                "failsafe_mode": True,
                "synchronous_mode": standbys > 0,
                "synchronous_node_count": max(1, standbys),
                "postgresql": {
                    "use_pg_rewind": True,
                    "use_slots": True,
                    "parameters": {
                        "wal_log_hints": "on",
                        "synchronous_commit": "on",
                        "max_connections": 200,
                        "shared_buffers": "64MB",
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{node.pg_port}",
            "connect_address": f"127.0.0.1:{node.pg_port}",
            "data_dir": str(node.data_dir),
            "bin_dir": str(PG_BIN),
            "pgpass": str(node.folder / "pgpass"),
            "authentication": {
                "superuser": {"username": "postgres"},
                "replication": {"username": "postgres"},
                "rewind": {"username": "postgres"},
            },
            "parameters": {"unix_socket_directories": str(node.folder)},
            # local development on 127.0.0.1 only, like the machine's own server
            "pg_hba": [
                "local all all trust",
                "host all all 127.0.0.1/32 trust",
                "host replication all 127.0.0.1/32 trust",
            ],
            "callbacks": {"on_role_change": str(on_role_change)},
        },
    }
    # JSON is YAML: no YAML library needed here
    return json.dumps(config, indent=2)


def start_node(node: Node, config: str, project: Path) -> subprocess.Popen[bytes]:
    node.folder.mkdir(parents=True, exist_ok=True)
    (node.folder / "patroni.yml").write_text(config)
    processes.give_to_service_user(node.folder)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(node.folder),
        "LANG": "C.UTF-8",
    }
    return processes.spawn(
        [str(patroni_binary(project)), str(node.folder / "patroni.yml")],
        node.folder / "patroni.log",
        as_service_user=True,
        env=env,
    )


def wait_for_leader(nodes: list[Node], standbys: int, timeout: float = 90) -> Node:
    """The node that is primary once it has its synchronous standbys streaming."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {node.name: node.state() for node in nodes}
        leader = next(
            (n for n in nodes if (states[n.name] or {}).get("role") in ("primary", "master")),
            None,
        )
        if leader is not None:
            streaming = [
                n
                for n in nodes
                if n is not leader
                and (states[n.name] or {}).get("replication_state") == "streaming"
            ]
            sync = (states[leader.name] or {}).get("replication", [])
            synced = [r for r in sync if r.get("sync_state") in ("sync", "quorum")]
            if len(streaming) >= standbys and len(synced) >= standbys:
                return leader
        time.sleep(0.3)
    logs = "\n".join(processes.tail(n.folder / "patroni.log", 800) for n in nodes)
    raise RuntimeError(
        f"no primary with {standbys} synchronous standbys in {timeout:.0f} s:\n{logs}"
    )
