"""Rate limits per user and per client IP on the write endpoints, and on the guest tokens
minted per client IP (each is a new customer, so a per-user limit cannot hold a client that
mints a token per request).

Fixed windows (the cheapest check; a burst at a window edge can reach twice the limit),
written in `limits` notation ("20/second;300/minute") and parsed by that library. The
counters live in this process's memory: a check costs a microsecond or two instead of a
Redis round trip on every hold. With N instances behind a balancer a client gets at most N
times the limit; nginx's limit_req (deploy/nginx.conf) caps per-IP traffic in front of all.

The counting is ours, not limits' MemoryStorage: that one is async (an await per window),
and after nearly every hit it started a task that walked every counter it held, so its
cost grew with the number of customers (measured 11 us per check with 130 counters).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, parse_many

from app.errors import RateLimited

# lapsed windows are dropped after this many checks, or as many as there are counters if
# that is more: the sweep walks them all, so its cost per check stays constant
SWEEP_EVERY = 10_000
# what a full window of each kind of counter says
TOO_MANY = {
    "user": "too many requests for this user",
    "ip": "too many requests for this ip",
    "guest": "too many guest tokens for this ip",
}


def _parse(spec: str) -> list[RateLimitItem]:
    if spec.strip().lower() in ("", "0", "off", "none"):
        return []
    return list(parse_many(spec))


@dataclass(frozen=True, slots=True)
class Window:
    """One limit: at most `amount` hits per `seconds`."""

    amount: int
    seconds: int
    text: str

    @classmethod
    def of(cls, item: RateLimitItem) -> Window:
        return cls(item.amount, item.get_expiry(), str(item))


class RateLimits:
    def __init__(
        self,
        per_user: str,
        per_ip: str,
        guest_tokens_per_ip: str = "off",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_user = [Window.of(item) for item in _parse(per_user)]
        self.per_ip = [Window.of(item) for item in _parse(per_ip)]
        self.guest_tokens_per_ip = [Window.of(item) for item in _parse(guest_tokens_per_ip)]
        self._clock = clock
        # (kind, key, window index) -> (window end, hits in it)
        self._counters: dict[tuple[str, str, int], tuple[float, int]] = {}
        self._until_sweep = SWEEP_EVERY

    def check(self, user_id: str | None, client_ip: str | None) -> None:
        """Count one request against the caller's windows; RateLimited if one is full."""
        now = self._clock()
        if user_id:
            self._hit("user", user_id, self.per_user, now)
        if client_ip:
            self._hit("ip", client_ip, self.per_ip, now)
        self._counted(now)

    def check_guest_token(self, client_ip: str | None) -> None:
        """Count one guest token minted for this client IP; RateLimited if a window is full.
        (On top of check(): minting is a request of that IP too.)"""
        now = self._clock()
        if client_ip:
            self._hit("guest", client_ip, self.guest_tokens_per_ip, now)
        self._counted(now)

    def _counted(self, now: float) -> None:
        self._until_sweep -= 1
        if self._until_sweep <= 0:
            self._sweep(now)

    def _hit(self, kind: str, key: str, windows: list[Window], now: float) -> None:
        for index, window in enumerate(windows):
            counter = (kind, key, index)
            ends, hits = self._counters.get(counter, (0.0, 0))
            if now >= ends:  # the first hit opens a window, as in limits' fixed window
                ends, hits = now + window.seconds, 0
            hits += 1
            self._counters[counter] = (ends, hits)
            if hits > window.amount:
                raise RateLimited(
                    f"{TOO_MANY[kind]}; limit {window.text}",
                    retry_after=max(1, math.ceil(ends - now)),
                )

    def _sweep(self, now: float) -> None:
        """Forget lapsed windows, so memory follows recent callers, not every caller ever."""
        self._counters = {k: v for k, v in self._counters.items() if v[0] > now}
        self._until_sweep = max(SWEEP_EVERY, len(self._counters))

    def __len__(self) -> int:
        return len(self._counters)
