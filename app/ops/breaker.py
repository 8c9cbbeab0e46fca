"""A circuit breaker per shard: after repeated connection failures, fail fast for a while."""

from __future__ import annotations

import time

# How long an open breaker fails calls fast before one call tries the shard again. A kill -9
# of a shard's primary (Patroni, PgBouncer, 2 instances) opens every instance's breaker
# within 0.05 s and the new primary takes writes ~3.2 s after the kill. An instance sells
# again at the first probe after that: with 5 s here at 5.3 s (tests/cluster), with 1 s at
# 4.2 s, with 0.5 s at 3.3 s (loadtests/bench_failover.py, median of 5, every instance).
# A dead shard then costs two failed calls per second per instance.
RESET_AFTER = 0.5


class CircuitBreaker:
    """Closed -> open after `threshold` consecutive failures. Once `reset_after` seconds
    have passed, one call goes through (half-open) and the rest keep failing fast: its
    success closes the breaker, its failure (or no answer within another `reset_after`)
    lets the next call try.

    Only connection-level failures count: a unique violation means the database answered.
    """

    def __init__(self, name: str, threshold: int = 5, reset_after: float = RESET_AFTER) -> None:
        self.name = name
        self.threshold = threshold
        self.reset_after = reset_after
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def is_open(self) -> bool:
        """Failing calls fast now (a probe's call may be on its way)."""
        if self.opened_at is None:
            return False
        return time.monotonic() - self.opened_at < self.reset_after

    def allow(self) -> bool:
        """Whether a call may go through now; past the cool-down, the caller that asks
        first is the probe, and the cool-down starts again for the others."""
        if self.opened_at is None:
            return True
        now = time.monotonic()
        if now - self.opened_at < self.reset_after:
            return False
        self.opened_at = now
        return True

    def retry_after(self) -> int:
        if self.opened_at is None:
            return 0
        return max(1, round(self.reset_after - (time.monotonic() - self.opened_at)))

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def record_failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()
