"""Prometheus metrics of the realtime layer (served by the core's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from app.ops.metrics import MULTIPROCESS

ws_connections = Gauge("ws_connections", "Open WebSocket connections", multiprocess_mode="livesum")
ws_watchers = Gauge(
    "ws_watchers", "Show subscriptions of WebSocket connections", multiprocess_mode="livesum"
)
fanout_lag_seconds = Histogram(
    "fanout_lag_seconds",
    "Commit of a seat change to its frame being queued for local watchers",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# every worker counts the same rows: the largest count is the backlog
outbox_backlog = Gauge(
    "outbox_backlog", "Outbox rows waiting to be published", ["shard"], multiprocess_mode="livemax"
)
# 0 when any worker's reader is down: its watchers get no live updates
redis_listener_up = Gauge(
    "redis_listener_up",
    "1 when the Redis pub/sub reader is connected (in every worker)",
    multiprocess_mode="livemin",
)
events_published = Counter("realtime_events_published_total", "Events published", ["path"])
resyncs = Counter("realtime_resyncs_total", "Snapshots sent to resync watchers", ["reason"])
foreign_events = Counter(
    "realtime_foreign_events_total",
    "Events of another deployment's namespace that reached the reader, dropped",
    ["reason"],
)
slow_consumers = Counter(
    "realtime_slow_consumers_total", "Watchers whose backlog overflowed", ["action"]
)
frames_rejected = Counter("realtime_frames_rejected_total", "Bad client frames", ["code"])

# Frames written straight to a connection's transport (the fan-out's fast path), counted in
# a plain list (a Counter's lock would cost more than the write's bookkeeping); a test
# fails when it stays at 0 under the real server. Read when scraped or, with several
# workers, copied into the shared gauge every second (sync_direct_frames).
DIRECT_WRITES = [0]
direct_frames = Gauge(
    "realtime_direct_frames",
    "Frames written straight to a socket (encode once, no ASGI send)",
    multiprocess_mode="livesum",
)
if not MULTIPROCESS:
    direct_frames.set_function(lambda: DIRECT_WRITES[0])
ws_direct_connections = Gauge(
    "ws_direct_connections",
    "Open WebSocket connections whose frames skip the ASGI send",
    multiprocess_mode="livesum",
)


def sync_direct_frames() -> None:
    if MULTIPROCESS:
        direct_frames.set(DIRECT_WRITES[0])
