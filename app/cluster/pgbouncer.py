"""PgBouncer (Debian's 1.18) in transaction pooling in front of PostgreSQL.

The app's pools run without asyncpg's statement cache through it (MODEX_PGBOUNCER=1, see
app/shards.py). PgBouncer refuses startup parameters it does not know, so the app sends none
of its session settings; each database's `connect_query` sets them on every server
connection PgBouncer opens (the same SESSION_SETTINGS the app sends when direct).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from app.cluster import processes
from app.paths import project_dir
from app.shards import pgbouncer_connect_query


@dataclass(frozen=True)
class Backend:
    """Where a PgBouncer database leads: one PostgreSQL server's database."""

    host: str
    port: int
    dbname: str


@dataclass
class PgBouncer:
    folder: Path
    port: int
    # PgBouncer's database name -> the server database it leads to
    databases: dict[str, Backend] = field(default_factory=dict)
    # files of [databases] lines
    includes: list[Path] = field(default_factory=list)
    user: str = "postgres"
    pool_size: int = 20

    @property
    def config_path(self) -> Path:
        return self.folder / "pgbouncer.ini"

    @property
    def log_path(self) -> Path:
        return self.folder / "pgbouncer.log"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    @staticmethod
    def entry(name: str, backend: Backend) -> str:
        """One [databases] line."""
        return (
            f"{name} = host={backend.host} port={backend.port} dbname={backend.dbname}"
            f" connect_query='{pgbouncer_connect_query()}'\n"
        )

    def config(self) -> str:
        lines = ["[databases]"]
        lines += [
            self.entry(name, backend).rstrip("\n") for name, backend in self.databases.items()
        ]
        # entries kept in files of their own, rewritten when a database's primary moves
        lines += [f"%include {path}" for path in self.includes]
        lines += [
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            # TCP only: the socket folder would have to be the service user's
            "unix_socket_dir =",
            # local development: whoever reaches 127.0.0.1 may log in (as PostgreSQL's
            # pg_hba does for the cluster's own servers)
            "auth_type = trust",
            f"auth_file = {self.folder / 'userlist.txt'}",
            f"admin_users = {self.user}",
            "pool_mode = transaction",
            "max_client_conn = 2000",
            f"default_pool_size = {self.pool_size}",
            # a server that went away (a failover) is tried again after 1 s, not 15
            "server_login_retry = 1",
            "server_connect_timeout = 3",
            # asyncpg sends none but client_encoding; drivers that set this one are common
            "ignore_startup_parameters = extra_float_digits",
            f"logfile = {self.log_path}",
            f"pidfile = {self.folder / 'pgbouncer.pid'}",
            "",
        ]
        return "\n".join(lines)

    def _prepare(self) -> list[str]:
        """Write its files; the command that runs it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "userlist.txt").write_text(f'"{self.user}" ""\n')
        self.config_path.write_text(self.config())
        processes.give_to_service_user(self.folder)
        return [shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", str(self.config_path)]

    def start(self, timeout: float = 15) -> subprocess.Popen[bytes]:
        """Start it (as the service user when we are root)."""
        proc = processes.spawn(self._prepare(), self.folder / "pgbouncer.out", as_service_user=True)
        processes.wait_for_port(self.port, proc.pid, "pgbouncer", self.log_path, timeout)
        return proc

    def start_supervised(
        self, name: str, record: Path, timeout: float = 15
    ) -> tuple[subprocess.Popen[bytes], int]:
        """Start it under app.cluster.supervise, which starts it again when it dies (and
        points cluster.json's node `name` at the new pid): the supervisor's Popen, and
        PgBouncer's pid. A restarted PgBouncer reads the [databases] entries Patroni's
        callbacks wrote last, so it leads to the current primaries."""
        pidfile = self.folder / "supervised.pid"
        pidfile.unlink(missing_ok=True)
        command = self._prepare()
        proc = processes.spawn(
            [
                sys.executable,
                "-m",
                "app.cluster.supervise",
                f"--name={name}",
                f"--pidfile={pidfile}",
                f"--log={self.folder / 'pgbouncer.out'}",
                f"--record={record}",
                "--as-service-user",
                "--",
                *command,
            ],
            self.folder / "supervise.out",
            cwd=project_dir("app").parent,
        )
        processes.wait_for_port(self.port, proc.pid, "pgbouncer", self.log_path, timeout)
        return proc, int(pidfile.read_text())
