"""A circuit breaker per shard: after repeated connection failures, fail fast for a while."""

from __future__ import annotations

import time


class CircuitBreaker:
    """Closed -> open after `threshold` consecutive failures. After `reset_after` seconds
    calls go through again (half-open): a success closes it, a failure re-opens it at once.

    Only connection-level failures count: a unique violation means the database answered.
    """

    def __init__(self, name: str, threshold: int = 5, reset_after: float = 5.0) -> None:
        self.name = name
        self.threshold = threshold
        self.reset_after = reset_after
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def is_open(self) -> bool:
        if self.opened_at is None:
            return False
        # half-open once the cool-down has passed: calls go through and decide
        return time.monotonic() - self.opened_at < self.reset_after

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
