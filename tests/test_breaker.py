"""The per-shard circuit breaker's states (pure logic; the end-to-end case is in test_health)."""

from __future__ import annotations

import pytest

from app.ops import breaker as breaker_module
from app.ops.breaker import CircuitBreaker
from tests.support import Clock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The breaker's time, moved by the test instead of slept through."""
    found = Clock()
    monkeypatch.setattr(breaker_module, "time", found)  # it only reads time.monotonic()
    return found


def test_opens_after_consecutive_failures_and_half_opens_after_the_cool_down(
    clock: Clock,
) -> None:
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
    clock.now += 0.19
    assert breaker.is_open and not breaker.allow(), "still within the cool-down"
    clock.now += 0.02
    assert not breaker.is_open, "half-open after the cool-down"
    assert breaker.allow(), "the first call after the cool-down probes the shard"
    assert not breaker.allow(), "... and the others keep failing fast meanwhile"
    breaker.record_failure()
    assert breaker.is_open, "a failure while half-open re-opens at once"
    clock.now += 0.25
    breaker.record_success()
    assert not breaker.is_open and breaker.failures == 0


def test_a_probe_that_never_answers_lets_another_call_try_after_the_cool_down(
    clock: Clock,
) -> None:
    breaker = CircuitBreaker("shard1", threshold=1, reset_after=0.1)
    breaker.record_failure()
    clock.now += 0.12
    assert breaker.allow()  # its call hangs, is cancelled, or fails otherwise: no verdict
    assert not breaker.allow()
    clock.now += 0.12
    assert breaker.allow()
    breaker.record_success()
    assert breaker.allow() and breaker.allow()
