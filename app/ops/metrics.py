"""Prometheus metrics of the booking core (the seed's names, plus holds and breakers)."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# `modex serve --workers N` (N > 1) sets this for its workers before they start: each worker
# then keeps its values in a file there and /metrics, whichever worker answers, adds up every
# worker's (prometheus_client's multiprocess mode). Gauges say how workers' values combine.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROCESS = bool(os.environ.get(MULTIPROCESS_DIR))

HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Duration of HTTP requests in seconds",
    ["method", "route", "status_code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DB_QUERY_DURATION = Histogram(
    "db_query_duration_seconds",
    "Duration of DB transactions and queries in seconds",
    ["query_type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BOOKINGS_TOTAL = Counter("bookings_total", "Bookings by outcome", ["status"])
HOLDS_TOTAL = Counter("holds_total", "Hold requests by result", ["result"])
SEAT_BATCH_SIZE = Histogram(
    "seat_batch_size",
    "Seat requests (hold, release, confirm, book) sent to a shard in one transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
SEAT_REQUESTS_ALONE = Counter(
    "seat_requests_alone_total",
    "Seat requests a batch handed back to run alone (busy: a row was locked elsewhere)",
    ["reason"],
)
HOLDS_EXPIRED_TOTAL = Counter("holds_expired_total", "Holds released by the sweeper")
CIRCUIT_BREAKER_OPEN = Gauge(
    "circuit_breaker_open",
    "1 while a shard's breaker is open (in any worker)",
    ["shard"],
    multiprocess_mode="livemax",
)


def exposition() -> bytes:
    """The text /metrics serves: this process's metrics, or every live worker's together."""
    if not MULTIPROCESS:
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def worker_exiting() -> None:
    """Drops this worker's live gauges (connections, listener, breakers) from the sums."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def worker_starting() -> None:
    """Drops the live gauges of workers that died without exiting (killed, crashed): uvicorn
    starts a new worker in their place, and their last values must not count any more."""
    if not MULTIPROCESS:
        return
    for path in Path(os.environ[MULTIPROCESS_DIR]).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, someone else's
