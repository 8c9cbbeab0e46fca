"""Rate limits per user and per client IP on the write endpoints ("limits" library).

Fixed windows (the cheapest check; a burst at a window edge can reach twice the limit).
Counters live in this process's memory: a check costs microseconds instead of a Redis round
trip on every hold. With N instances behind a balancer a client gets at most N times the
limit; nginx's limit_req (deploy/nginx.conf) caps per-IP traffic in front of all of them.
"""

from __future__ import annotations

import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import FixedWindowRateLimiter

from app.errors import RateLimited


def _parse(spec: str) -> list[RateLimitItem]:
    if spec.strip().lower() in ("", "0", "off", "none"):
        return []
    return list(parse_many(spec))


class RateLimits:
    def __init__(self, per_user: str, per_ip: str) -> None:
        self.per_user = _parse(per_user)
        self.per_ip = _parse(per_ip)
        self.limiter = FixedWindowRateLimiter(MemoryStorage())

    async def check(self, user_id: str | None, client_ip: str | None) -> None:
        checks = [(item, "user", user_id) for item in self.per_user if user_id]
        checks += [(item, "ip", client_ip) for item in self.per_ip if client_ip]
        for item, kind, key in checks:
            assert key is not None
            if not await self.limiter.hit(item, kind, key):
                stats = await self.limiter.get_window_stats(item, kind, key)
                retry_after = max(1, int(stats.reset_time - time.time()) + 1)
                raise RateLimited(
                    f"too many requests for this {kind}; limit {item}", retry_after=retry_after
                )
