"""The per-shard circuit breaker's states (pure logic; the end-to-end case is in test_health)."""

from __future__ import annotations

import time

from app.ops.breaker import CircuitBreaker


def test_opens_after_consecutive_failures_and_half_opens_after_the_cool_down() -> None:
    breaker = CircuitBreaker("shard1", threshold=3, reset_after=0.2)
    for _ in range(2):
        breaker.record_failure()
    assert not breaker.is_open
    breaker.record_success()  # a success in between starts the count again
    for _ in range(2):
        breaker.record_failure()
    assert not breaker.is_open
    breaker.record_failure()
    assert breaker.is_open and breaker.retry_after() >= 1
    assert not breaker.allow(), "open: calls fail fast"
    time.sleep(0.25)
    assert not breaker.is_open, "half-open after the cool-down"
    assert breaker.allow(), "the first call after the cool-down probes the shard"
    assert not breaker.allow(), "... and the others keep failing fast meanwhile"
    breaker.record_failure()
    assert breaker.is_open, "a failure while half-open re-opens at once"
    time.sleep(0.25)
    breaker.record_success()
    assert not breaker.is_open and breaker.failures == 0


def test_a_probe_that_never_answers_lets_another_call_try_after_the_cool_down() -> None:
    breaker = CircuitBreaker("shard1", threshold=1, reset_after=0.1)
    breaker.record_failure()
    time.sleep(0.12)
    assert breaker.allow()  # its call hangs, is cancelled, or fails otherwise: no verdict
    assert not breaker.allow()
    time.sleep(0.12)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.allow() and breaker.allow()
