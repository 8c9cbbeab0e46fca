"""Rate limits: fixed windows per user and per IP, 429 with Retry-After over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from app.errors import RateLimited
from app.ops import limits
from app.ops.limits import RateLimits
from tests.support import Clock, Cluster, ServerProcess, auth, create_show


def refused(rl: RateLimits, user: str | None, ip: str | None) -> RateLimited | None:
    try:
        rl.check(user, ip)
    except RateLimited as exc:
        return exc
    return None


def test_each_window_counts_its_own_hits_and_says_when_to_retry() -> None:
    clock = Clock()
    rl = RateLimits("2/second;3/minute", "off", clock=clock)
    assert refused(rl, "ann", "10.0.0.1") is None
    assert refused(rl, "ann", "10.0.0.1") is None
    third = refused(rl, "ann", "10.0.0.1")
    assert (
        third is not None and third.details["retry_after"] == 1 and "2 per 1 second" in str(third)
    )
    assert refused(rl, "bob", "10.0.0.1") is None  # another user has windows of his own
    clock.now += 1.0  # the second's window closed; the minute's has room for one more
    assert refused(rl, "ann", "10.0.0.1") is None  # (a refused hit counts where it failed)
    late = refused(rl, "ann", "10.0.0.1")
    assert late is not None and late.details["retry_after"] == 59 and "3 per 1 minute" in str(late)
    clock.now += 59.0
    assert refused(rl, "ann", "10.0.0.1") is None


def test_the_ip_window_spans_users_and_off_means_no_limit() -> None:
    clock = Clock()
    rl = RateLimits("off", "2/second", clock=clock)
    assert refused(rl, "ann", "10.0.0.1") is None
    assert refused(rl, "bob", "10.0.0.1") is None
    exc = refused(rl, "cid", "10.0.0.1")
    assert exc is not None and "this ip" in str(exc)
    assert refused(rl, "cid", "10.0.0.2") is None
    for _ in range(100):
        assert refused(rl, "dee", None) is None  # no IP known, no user limit: nothing


def test_lapsed_windows_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "SWEEP_EVERY", 10)
    clock = Clock()
    rl = RateLimits("5/second", "off", clock=clock)
    for n in range(9):
        rl.check(f"user-{n}", None)
    assert len(rl) == 9
    clock.now += 2
    rl.check("late", None)  # the tenth check sweeps: only its own window is left
    assert len(rl) == 1


async def test_a_customer_over_the_limit_gets_429_with_retry_after(
    client: httpx.AsyncClient, cluster: Cluster, log_dir: Path
) -> None:
    strict = ServerProcess(
        cluster, log_dir, MODEX_RATE_LIMIT_USER="2/minute", MODEX_RATE_LIMIT_IP="3/minute"
    ).start()
    try:
        show: dict[str, Any] = await create_show(client, rows=1, seats_per_row=8)
        async with httpx.AsyncClient(base_url=strict.url) as http:
            url = f"/shows/{show['id']}/holds"
            first = await http.post(url, json={"seats": ["A1"]}, headers=auth("ann"))
            second = await http.post(url, json={"seats": ["A2"]}, headers=auth("ann"))
            assert (first.status_code, second.status_code) == (201, 201)
            third = await http.post(url, json={"seats": ["A3"]}, headers=auth("ann"))
            assert third.status_code == 429
            assert third.json()["error"] == "rate_limited"
            assert 1 <= int(third.headers["Retry-After"]) <= 60
            # the refused hold changed nothing: A3 is free for the next customer, whose
            # request is this IP's third
            other = await http.post(url, json={"seats": ["A3"]}, headers=auth("bob"))
            assert other.status_code == 201
            guest = await http.post("/auth/guest")
            assert guest.status_code == 429
            assert guest.json()["error"] == "rate_limited"
    finally:
        strict.stop()
