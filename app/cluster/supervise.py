"""Keep one process of a local cluster running, as systemd's `Restart=always` or a
Kubernetes Deployment would: `python -m app.cluster.supervise --name NAME --pidfile FILE
--log FILE [--record cluster.json] [--as-service-user] -- COMMAND...`.

A crashed child is started again at once (after 0.2 s; a child that keeps dying within a
few seconds of its start waits longer each time, up to 5 s). Its pid goes to `--pidfile`
and, after a restart, to its node in `--record` (cluster.json's `pid` is the process a fault
test kills). SIGTERM or SIGINT stop the child with the same signal, then the supervisor.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from app.cluster import processes

FIRST_DELAY, LONGEST_DELAY = 0.2, 5.0
# a child that ran at least this long was healthy: its next restart waits FIRST_DELAY again
HEALTHY_AFTER = 10.0


def record_pid(record: Path, name: str, pid: int) -> None:
    """Point cluster.json's node `name` at `pid` (written whole, then renamed in place)."""
    try:
        state = json.loads(record.read_text())
    except (OSError, ValueError):
        return
    for node in state.get("nodes", []):
        if node.get("name") == name:
            node["pid"] = pid
    temporary = record.with_name(f".{record.name}.{os.getpid()}")
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    temporary.replace(record)


def supervise(args: argparse.Namespace) -> int:
    stopping: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delay = FIRST_DELAY
    while not stopping:
        started = time.monotonic()
        child = processes.spawn(args.command, args.log, as_service_user=args.as_service_user)
        args.pidfile.write_text(f"{child.pid}\n")
        if args.record is not None:
            record_pid(args.record, args.name, child.pid)
        code = child.wait()
        if stopping:
            break
        ran = time.monotonic() - started
        with args.log.open("a") as log:
            log.write(f"supervise: {args.name} exited ({code}) after {ran:.1f} s\n")
        if ran >= HEALTHY_AFTER:
            delay = FIRST_DELAY
        time.sleep(delay)
        # one that keeps dying soon after its start waits twice as long each time
        delay = min(LONGEST_DELAY, delay * 2)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.cluster.supervise")
    parser.add_argument("--name", required=True, help="the node's name in cluster.json")
    parser.add_argument("--pidfile", type=Path, required=True, help="where the child's pid goes")
    parser.add_argument("--log", type=Path, required=True, help="the child's output")
    parser.add_argument("--record", type=Path, help="cluster.json, to update after a restart")
    parser.add_argument("--as-service-user", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command to supervise")
    return supervise(args)


if __name__ == "__main__":
    sys.exit(main())
