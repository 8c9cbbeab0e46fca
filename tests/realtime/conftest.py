"""Fixtures of the realtime tests (the session's servers come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.support import Services


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[aioredis.Redis]:
    """A client of the Redis the session's servers use."""
    client = aioredis.Redis.from_url(services.redis_url)
    yield client
    await client.aclose()
