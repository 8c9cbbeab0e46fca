"""modex serve | migrate | token."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from app.auth import Role, mint_token

# uvicorn's --http choices, both with a bound on request header bytes
HTTP_PROTOCOLS = {
    "httptools": "app.ops.http_protocol:BoundedHttpToolsProtocol",
    "h11": "h11",
}


def data_dir() -> Path:
    return Path(os.environ.get("MODEX_DATA_DIR", str(Path.home() / ".modex"))).expanduser()


def jwt_secret() -> str:
    """MODEX_JWT_SECRET, or a random secret kept in the data folder (so restarts keep tokens)."""
    secret = os.environ.get("MODEX_JWT_SECRET")
    if secret:
        return secret
    path = data_dir() / "jwt_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def start_embedded_servers() -> list[object]:
    """Fill in DATABASE_URL / REDIS_URL with embedded servers under the data folder."""
    from app.ops import embedded

    keep: list[object] = []
    folder = data_dir()
    if not os.environ.get("DATABASE_URL"):
        pg = embedded.start_postgres(folder / "pg")
        asyncio.run(embedded.ensure_database(embedded.postgres_url(pg, "postgres"), "modex"))
        os.environ["DATABASE_URL"] = embedded.postgres_url(pg, "modex")
        keep.append(pg)
    if not os.environ.get("REDIS_URL"):
        valkey = embedded.start_valkey(folder / "valkey")
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:{valkey.port}/0"
        keep.append(valkey)
    return keep


def stop_embedded_servers(keep: list[object]) -> None:
    """Stop what start_embedded_servers started (a server left running would hold its port
    and data folder, and the next start would run a second one beside it)."""
    for server in reversed(keep):
        stop = getattr(server, "cleanup", None) or getattr(server, "stop", None)
        if stop is not None:
            stop()


async def prepare(load_demo: bool) -> None:
    from app.config import Settings
    from app.migrate import migrate_all
    from app.realtime.keys import deployment_keys
    from app.shards import ShardRouter
    from app.shows import ShowCatalog, has_shows, seed_demo_shows

    settings = Settings.from_env()
    await migrate_all(settings)
    if not load_demo:
        return
    router = await ShardRouter.connect(settings)
    try:
        if not await has_shows(router.meta):
            from app.realtime.broker_cluster import connect_redis

            keys = await deployment_keys(router.meta, settings.redis_prefix, settings.redis_url)
            redis = connect_redis(settings.redis_url)
            try:
                shows = await seed_demo_shows(
                    ShowCatalog(router, redis, settings.default_hold_seconds, keys)
                )
            finally:
                await redis.aclose()
            print(f"demo shows loaded: {', '.join(s.title for s in shows)}", flush=True)
    finally:
        await router.close()


def serve(args: argparse.Namespace) -> None:
    keep = start_embedded_servers()
    # uvicorn re-raises the SIGTERM it shut down on once it is done; with the default
    # handler that kills the process before `finally` could stop the embedded servers
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        run_server(args)
    finally:
        stop_embedded_servers(keep)


def run_server(args: argparse.Namespace) -> None:
    import uvicorn

    from app.ops.http_protocol import MAX_HEADER_BYTES

    os.environ["MODEX_JWT_SECRET"] = jwt_secret()
    from app.config import Settings

    settings = Settings.from_env()
    asyncio.run(prepare(settings.demo))
    metrics_dir = None
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # several workers share one port: each keeps its metrics in a file here, so /metrics
        # adds them up whichever worker answers (see app/ops/metrics.py). Set only now, for
        # the workers uvicorn spawns, not for this process's own metrics.
        metrics_dir = tempfile.mkdtemp(prefix="modex-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    host = "localhost" if args.host in ("127.0.0.1", "0.0.0.0") else args.host
    print(f"Modex Seatmap on http://{host}:{args.port}/", flush=True)
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            ws="websockets-sansio",
            ws_per_message_deflate=False,
            # frames over 16 KiB are refused anyway; don't buffer 16 MiB before saying so
            ws_max_size=65536,
            log_config=None,
            access_log=False,
            # httptools with a bound on header bytes; h11 has its own, and is slower
            http=HTTP_PROTOCOLS[args.http],
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            # no proxy configured: X-Forwarded-For is ignored, even from this host
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=",".join(settings.trusted_proxies),
            timeout_graceful_shutdown=10,
            # longer than any proxy's idle keep-alive, so the proxy closes first and never
            # sends a request on a connection we are closing
            timeout_keep_alive=75,
            backlog=4096,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def migrate(args: argparse.Namespace) -> None:
    from app.config import Settings
    from app.migrate import migrate_all

    keep = start_embedded_servers() if not os.environ.get("DATABASE_URL") else []
    asyncio.run(migrate_all(Settings.from_env()))
    print("migrations applied", flush=True)
    del keep


def move_show(args: argparse.Namespace) -> None:
    from app.config import Settings
    from app.moves import move_show as move
    from app.shards import ShardRouter

    async def run() -> str:
        router = await ShardRouter.connect(Settings.from_env())
        try:
            return await move(router, args.show_id, args.to)
        finally:
            await router.close()

    print(asyncio.run(run()), flush=True)


def token(args: argparse.Namespace) -> None:
    value, _ = mint_token(jwt_secret(), args.user, Role(args.role), timedelta(seconds=args.ttl))
    print(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="modex", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("serve", help="run the server (embedded databases if none given)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "4000")))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--http",
        choices=sorted(HTTP_PROTOCOLS),
        default="httptools",
        help="HTTP/1.1 parser (both refuse request headers over 16 KiB; h11 is slower)",
    )
    p.set_defaults(run=serve)
    p = commands.add_parser("migrate", help="apply migrations to every database and exit")
    p.set_defaults(run=migrate)
    p = commands.add_parser("move-show", help="move one show to another shard (admin)")
    p.add_argument("show_id", type=int)
    p.add_argument("--to", type=int, required=True, help="target shard index")
    p.set_defaults(run=move_show)
    p = commands.add_parser("cluster", help="a local multi-node cluster: up | down")
    from app.cluster.local import add_arguments

    add_arguments(p)
    p = commands.add_parser("token", help="print a JWT")
    p.add_argument("user")
    p.add_argument("--role", choices=[r.value for r in Role], default=Role.CUSTOMER.value)
    p.add_argument("--ttl", type=int, default=3600 * 24, help="seconds")
    p.set_defaults(run=token)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
