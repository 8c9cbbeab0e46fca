"""Settings from the environment, read once into one frozen object."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, get_args

# how WebSocket frames reach the socket (app/realtime/transport.py)
WsTransport = Literal["asgi", "direct"]


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _list(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in os.environ.get(name, "").split(",") if item.strip())


# Database URLs are separated by whitespace, `;`, or a comma that starts another URL: a
# libpq multi-host URL (postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write)
# has commas in its host list and stays whole. ("-" stands for no URL in SHARD_READ_URLS.)
_URL_SEPARATOR = re.compile(r"[\s;]+|,(?=\s*(?:postgres(?:ql)?://|-\s*(?:[,;]|$)))")


def _urls(name: str) -> tuple[str, ...]:
    return tuple(
        url.strip() for url in _URL_SEPARATOR.split(os.environ.get(name, "")) if url.strip()
    )


@dataclass(frozen=True)
class Settings:
    database_url: str
    # ordered shard databases; shard 0 may be the metadata database itself
    shard_urls: tuple[str, ...]
    redis_url: str
    jwt_secret: str
    # names every Redis key and channel (app/realtime/keys.py); "": derived from the
    # deployment id in the metadata database
    redis_prefix: str = ""
    data_dir: Path = field(default_factory=lambda: Path.home() / ".modex")
    demo: bool = True
    guest_tokens: bool = True
    default_hold_seconds: int = 30
    max_hold_extensions: int = 2
    sweep_interval: float = 1.0
    # seconds between repairs of what a crash between the directory and a shard left
    # (ShowCatalog.reconcile); 0: this server leaves it to the others
    reconcile_interval: float = 60.0
    # per user and per client IP, for the write endpoints ("limits" notation)
    rate_limit_user: str = "20/second;300/minute"
    rate_limit_ip: str = "100/second"
    # guest tokens (POST /auth/guest) minted per client IP ("limits" notation, or "off")
    guest_tokens_per_ip: str = "20/minute"
    allowed_origins: tuple[str, ...] = ()
    # proxies whose X-Forwarded-For names the client (per-IP rate limits); empty: the
    # peer itself, so a client cannot pick its own address
    trusted_proxies: tuple[str, ...] = ()
    # who may frame the pages (CSP frame-ancestors sources, e.g. a kiosk's signage
    # origin); empty: nobody
    frame_ancestors: tuple[str, ...] = ()
    db_pool_size: int = 20
    # a standby of each shard, in SHARD_URLS' order ("-": none), for seat maps and seat
    # counts (app/shards.py, Replica); empty: every read goes to the primaries
    shard_read_urls: tuple[str | None, ...] = ()
    # the database URLs lead to PgBouncer in transaction pooling (app/shards.py: no
    # statement cache, session settings left to PgBouncer's connect_query)
    pgbouncer: bool = False
    # most seat requests (hold, release, confirm, book) sent to a shard in one transaction
    # (app/batches.py); 1: each alone
    seat_batch: int = 32
    # fault injection for tests: die between commit and publish
    crash_before_publish: bool = False
    # a waiting room's admission lasts this long (seconds) from the customer's turn
    admission_seconds: int = 600
    # queued bookings (app/booking_queue.py): a consumer's unsettled message is claimed by
    # another after this many idle seconds; dead-lettered after this many deliveries
    booking_claim_idle: float = 15.0
    booking_max_attempts: int = 5
    # fault injection for tests: a consumer waits this long before booking a message
    booking_fault_delay: float = 0.0
    # how WebSocket frames reach the socket (app/realtime/transport.py): "direct" writes
    # them to uvicorn's connection where start-up checks allow it, "asgi" takes the ASGI
    # send always (the reference the tests run both against)
    ws_transport: WsTransport = "direct"

    @classmethod
    def from_env(cls) -> Settings:
        database_url = os.environ.get("DATABASE_URL", "")
        if not database_url:
            raise RuntimeError("DATABASE_URL is not set (modex serve starts embedded servers)")
        shard_urls = _urls("SHARD_URLS") or (database_url,)
        read_urls = tuple(None if url == "-" else url for url in _urls("SHARD_READ_URLS"))
        if read_urls and len(read_urls) != len(shard_urls):
            raise RuntimeError(
                f"SHARD_READ_URLS names {len(read_urls)} databases, SHARD_URLS {len(shard_urls)}:"
                " one standby per shard, in the same order ('-' for a shard without one)"
            )
        ws_transport = os.environ.get("MODEX_WS_TRANSPORT", "").strip().lower() or "direct"
        if ws_transport not in get_args(WsTransport):
            raise RuntimeError(f"MODEX_WS_TRANSPORT is {ws_transport!r}: 'asgi' or 'direct'")
        return cls(
            database_url=database_url,
            shard_urls=shard_urls,
            redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            jwt_secret=os.environ.get("MODEX_JWT_SECRET", "dev-secret-change-me"),
            redis_prefix=os.environ.get("MODEX_REDIS_PREFIX", "").strip(),
            data_dir=Path(os.environ.get("MODEX_DATA_DIR", str(Path.home() / ".modex"))),
            demo=_flag("MODEX_DEMO", True),
            guest_tokens=_flag("MODEX_GUEST_TOKENS", True),
            default_hold_seconds=_int("MODEX_HOLD_SECONDS", 30),
            max_hold_extensions=_int("MODEX_MAX_EXTENSIONS", 2),
            sweep_interval=float(os.environ.get("MODEX_SWEEP_INTERVAL", "1.0")),
            reconcile_interval=float(os.environ.get("MODEX_RECONCILE_INTERVAL", "60")),
            rate_limit_user=os.environ.get("MODEX_RATE_LIMIT_USER", "20/second;300/minute"),
            rate_limit_ip=os.environ.get("MODEX_RATE_LIMIT_IP", "100/second"),
            guest_tokens_per_ip=os.environ.get("MODEX_GUEST_TOKENS_PER_IP", "20/minute"),
            allowed_origins=_list("MODEX_ALLOWED_ORIGINS"),
            trusted_proxies=_list("MODEX_TRUSTED_PROXIES"),
            frame_ancestors=_list("MODEX_FRAME_ANCESTORS"),
            db_pool_size=_int("MODEX_DB_POOL_SIZE", 20),
            shard_read_urls=read_urls,
            pgbouncer=_flag("MODEX_PGBOUNCER", False),
            seat_batch=max(1, _int("MODEX_SEAT_BATCH", 32)),
            crash_before_publish=_flag("MODEX_FAULT_CRASH_BEFORE_PUBLISH", False),
            admission_seconds=_int("MODEX_ADMISSION_SECONDS", 600),
            booking_claim_idle=float(os.environ.get("MODEX_BOOKING_CLAIM_IDLE", "15")),
            booking_max_attempts=max(1, _int("MODEX_BOOKING_MAX_ATTEMPTS", 5)),
            booking_fault_delay=float(os.environ.get("MODEX_FAULT_BOOKING_DELAY", "0")),
            ws_transport=cast(WsTransport, ws_transport),
        )
