"""Starting, watching and stopping the cluster's processes by pid."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# PostgreSQL and PgBouncer refuse to run as root: as root, they run as this user
SERVICE_USER = "postgres"


def is_root() -> bool:
    return os.geteuid() == 0


def service_prefix() -> list[str]:
    """What to put before a command so that it runs as SERVICE_USER when we are root."""
    if not is_root():
        return []
    return ["setpriv", f"--reuid={SERVICE_USER}", f"--regid={SERVICE_USER}", "--init-groups"]


def give_to_service_user(*paths: Path) -> None:
    """Make folders (and what is in them) SERVICE_USER's, when we are root."""
    if not is_root():
        return
    user = pwd.getpwnam(SERVICE_USER)
    for path in paths:
        for folder, _, files in os.walk(path):
            os.chown(folder, user.pw_uid, user.pw_gid)
            for name in files:
                os.chown(os.path.join(folder, name), user.pw_uid, user.pw_gid)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    as_service_user: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a process that outlives us (its own session), output to `log_path`. Its pid is
    the command's (setpriv execs it). Keep the Popen while the process should run: Python
    warns when one is dropped with its process still running."""
    prefix = service_prefix() if as_service_user else []
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [*prefix, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    return proc


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a child of ours that exited stays a zombie until reaped
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return reaped == 0


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, pid: int, what: str, log_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if not alive(pid):
            raise RuntimeError(f"{what} exited: {tail(log_path)}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} in {timeout:.0f} s: {tail(log_path)}")


def tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


def stop(pid: int, timeout: float = 15, sig: int = signal.SIGTERM) -> None:
    """`sig`, then SIGKILL if it is still there after `timeout`."""
    if not alive(pid):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while alive(pid):
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_all(pids: list[int], timeout: float = 15, sig: int = signal.SIGTERM) -> None:
    """`sig` to every one at once, then SIGKILL to those still there after `timeout`."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid):
            stop(pid, timeout=5, sig=signal.SIGKILL)
