"""A local Redis Cluster: three masters and three replicas of Debian's `redis-server` (7.0)
on 127.0.0.1, for `modex cluster up --redis cluster` and the tests.

Settings, measured (../shared/HA-NOTES.md "Redis Cluster"): `cluster-node-timeout 1000` lets
a replica take a dead master's slots in 2-3 s; `cluster-require-full-coverage no` keeps the
other masters answering meanwhile (with the default, the whole cluster refuses every
command from when the master is marked failed until its replica has taken over: in the
fault test other masters' shows then stalled 0.8-1.3 s instead of 0.4-0.6 s). No
persistence: the history a node loses with it is refilled by the outbox relay and the
watchers' resync, and the replicas hold everything else; so a killed node is started again
only once its replica has taken its slots (`restart`), and comes back as that replica's
replica.

    found = start(folder)              # six free port pairs (port and port + 10000)
    found.url                          # redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...
    restart(folder, port)              # a killed node back, as a replica once in sync
    stop(folder)                       # kills what folder/redis-cluster.json names
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.cluster import processes

NODES = 6
BUS_OFFSET = 10000  # Redis Cluster's bus port is the client port + 10000
STATE_FILE = "redis-cluster.json"
NODE_TIMEOUT_MS = 1000


@dataclass
class RedisNode:
    port: int
    pid: int
    role: str  # "master" or "replica", as created (a failover swaps them)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def json(self) -> dict[str, Any]:
        return {"port": self.port, "pid": self.pid, "role": self.role}


@dataclass
class RedisCluster:
    url: str
    nodes: list[RedisNode]


def cluster_url(ports: list[int]) -> str:
    """Every node as a seed: the client finds the cluster even with some nodes down."""
    return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)


def free_ports(count: int = NODES, low: int = 7100, high: int = 9900) -> list[int]:
    """Ports whose cluster bus port (+10000) is free too: an OS-chosen ephemeral port plus
    10000 may not exist (> 65535)."""
    found: list[int] = []
    candidates = list(range(low, high))
    random.shuffle(candidates)
    for port in candidates:
        if len(found) == count:
            break
        if _bindable(port) and _bindable(port + BUS_OFFSET):
            found.append(port)
    if len(found) < count:
        raise RuntimeError(f"no {count} free port pairs in {low}-{high}")
    return found


def _bindable(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def node_argv(folder: Path, port: int) -> list[str]:
    return [
        "redis-server",
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(folder),
        "--cluster-enabled", "yes",
        "--cluster-config-file", f"nodes-{port}.conf",
        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        "--cluster-require-full-coverage", "no",
        "--save", "",
        "--appendonly", "no",
        "--repl-diskless-sync", "yes",
        "--repl-diskless-sync-delay", "0",
        "--daemonize", "no",
    ]  # fmt: skip


def start(folder: Path, ports: list[int] | None = None, timeout: float = 30) -> RedisCluster:
    """Start six nodes in `folder` (one sub-folder each), join them into a cluster of three
    masters with one replica each, wait until every node says the cluster is ok and every
    replica is in sync, and record the nodes in folder/redis-cluster.json."""
    ports = ports or free_ports()
    if len(ports) != NODES:
        raise ValueError(f"a Redis Cluster here has {NODES} nodes, got {len(ports)} ports")
    folder.mkdir(parents=True, exist_ok=True)
    nodes: list[RedisNode] = []
    try:
        for port in ports:
            node_dir = folder / str(port)
            node_dir.mkdir(exist_ok=True)
            log_path = folder / f"redis-{port}.log"
            proc = processes.spawn(node_argv(node_dir, port), log_path)
            nodes.append(RedisNode(port, proc.pid, "master", proc))
            _record(folder, nodes)
        for node in nodes:
            processes.wait_for_port(node.port, node.pid, "redis", folder / f"redis-{node.port}.log")
        create = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
        subprocess.run(
            [*create, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        _wait_ready(ports, time.monotonic() + timeout)
        roles = {port: role(port) for port in ports}
        for node in nodes:
            node.role = roles[node.port]
        _record(folder, nodes)
    except BaseException:
        stop(folder)
        for node in nodes:
            if node.proc is not None:
                node.proc.wait()  # reaped: no "still running" warning for a dropped Popen
        raise
    return RedisCluster(cluster_url(ports), nodes)


def restart(folder: Path, port: int, timeout: float = 30) -> RedisNode:
    """Start a killed node of `folder` again, once a replica has taken its slots: it reads
    its nodes.conf, rejoins, is made a replica of the master that took over and copies its
    data. Returns when it is a replica in sync (the pair is redundant again).

    Not before the takeover: without persistence the node comes back empty, and a master
    restarted before its replica was promoted would keep its slots and wipe that replica."""
    recorded = json.loads((folder / STATE_FILE).read_text())
    others = [int(node["port"]) for node in recorded["nodes"] if int(node["port"]) != port]
    deadline = time.monotonic() + timeout
    while _serves_slots(others, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no replica took the slots of Redis node {port}")
        time.sleep(0.1)
    log_path = folder / f"redis-{port}.log"
    proc = processes.spawn(node_argv(folder / str(port), port), log_path)
    node = RedisNode(port, proc.pid, "replica", proc)
    for entry in recorded["nodes"]:
        if int(entry["port"]) == port:
            entry.update(node.json())
    (folder / STATE_FILE).write_text(json.dumps(recorded, indent=2) + "\n")
    processes.wait_for_port(port, proc.pid, "redis", log_path)
    while True:
        try:
            if role(port) == "replica" and _ready(port):
                return node
        except (subprocess.SubprocessError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis node {port} did not rejoin as a replica in sync")
        time.sleep(0.1)


def _serves_slots(ports: list[int], port: int) -> bool:
    """Whether the first answering node of `ports` still gives `port` slots."""
    for other in ports:
        try:
            table = _cli(other, "CLUSTER", "NODES")
        except (subprocess.SubprocessError, OSError):
            continue
        for line in table.splitlines():
            fields = line.split()
            # id host:port@bus flags master ping pong epoch link slot...
            if len(fields) > 1 and fields[1].split("@")[0].endswith(f":{port}"):
                return len(fields) > 8
        return False
    raise RuntimeError("no Redis node answers CLUSTER NODES")


def stop(folder: Path) -> None:
    """Kill every node folder/redis-cluster.json names (nothing is kept on disk)."""
    try:
        recorded = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return
    processes.stop_all([int(node["pid"]) for node in recorded["nodes"]], timeout=5)


def role(port: int) -> str:
    """ "master" or "replica", as the node says now."""
    info = _cli(port, "ROLE").splitlines()
    return "master" if info and info[0] == "master" else "replica"


def master_of_slot(ports: list[int], slot: int) -> int:
    """The port of the master serving `slot`, as the first answering node sees it."""
    import redis

    for port in ports:
        client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)
        try:
            ranges = client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
        except (redis.RedisError, OSError):
            continue
        finally:
            client.close()
        for first, last, master, *_ in ranges:
            if int(first) <= slot <= int(last):
                return int(master[1])
    raise RuntimeError(f"no node answers for slot {slot}")


def _wait_ready(ports: list[int], deadline: float) -> None:
    while True:
        try:
            if all(_ready(port) for port in ports):
                return
        except (subprocess.SubprocessError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the Redis Cluster did not become ready")
        time.sleep(0.1)


def _ready(port: int) -> bool:
    if "cluster_state:ok" not in _cli(port, "CLUSTER", "INFO"):
        return False
    replication = _cli(port, "INFO", "replication")
    return "role:master" in replication or "master_link_status:up" in replication


def _cli(port: int, *args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=5,
    )
    return done.stdout


def _record(folder: Path, nodes: list[RedisNode]) -> None:
    state = {"nodes": [node.json() for node in nodes]}
    (folder / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
