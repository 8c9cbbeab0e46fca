"""The broker: what the hub and the outbox need from a pub/sub backend (centrifuge's
`broker.go`). Implementations, side by side:

- `broker_redis.RedisBroker`: one Redis (or the embedded Valkey), classic PUBLISH/SUBSCRIBE;
  the default.
- `broker_cluster.RedisClusterBroker`: a Redis Cluster (`REDIS_URL=redis+cluster://...`),
  each show's history, offset and channel on the node that owns `{show:ID}`, sharded
  pub/sub (SPUBLISH/SSUBSCRIBE).
- `broker_memory.MemoryBroker`: one process, no Redis (unit tests).

Every implementation passes tests/realtime/test_broker_contract.py. A broker is given two
callbacks: `on_message(show_id, position, event)` for each event of a subscribed show, and
`on_reconnect(show_ids)`: events of these shows (None: of every show) published since may
have been missed, so the hub compares positions and resyncs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

HISTORY_LEN = 2000  # events kept per show for resume
STREAM_TTL = 7 * 24 * 3600  # an idle show's history and epoch expire after a week
PRESENCE_STALE_MS = 5000  # an instance that stopped heartbeating for 5 s drops out


@dataclass(frozen=True, slots=True)
class Position:
    """A point in a show's event stream: the epoch names the stream's life in the broker."""

    epoch: str
    n: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.n}"

    @classmethod
    def parse(cls, offset: str) -> Position | None:
        epoch, sep, n = offset.rpartition(":")
        # ASCII digits only: str.isdigit() accepts "²", which int() refuses
        if not sep or not epoch or not n.isascii() or not n.isdigit() or len(n) > 18:
            return None
        return cls(epoch, int(n))


# on_message(show_id, position, event JSON) for every event of a subscribed show
MessageHandler = Callable[[int, Position, bytes], None]
# on_reconnect(show_ids): these shows' (None: every show's) events may have been missed
ReconnectHandler = Callable[[Collection[int] | None], None]


class Broker(Protocol):
    """Pub/sub with history and positions, for shows."""

    @property
    def alive(self) -> bool:
        """Events are being received (liveness for /ready)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def wait_connected(self, within: float) -> bool: ...

    async def subscribe(self, show_id: int, within: float = 5.0) -> None:
        """Returns once every event published from now on will reach on_message;
        raises ConnectionError when that cannot be had within `within` seconds."""
        ...

    async def unsubscribe(self, show_id: int) -> None: ...

    async def publish(
        self, show_id: int, event: bytes, *, invalidate_availability: bool
    ) -> Position:
        """Give the event the show's next offset, keep it in history, deliver it."""
        ...

    async def publish_many(self, events: list[tuple[int, bytes]]) -> None:
        """Seat events of several commits, in order per show; each its own offset."""
        ...

    async def position(self, show_id: int) -> Position:
        """The show's top offset (starting an epoch if it has none)."""
        ...

    async def history(self, show_id: int, since: Position) -> list[tuple[Position, bytes]] | None:
        """Events after `since`, or None when they cannot all be recovered (other epoch,
        trimmed history, an offset from the future): the caller sends a snapshot."""
        ...

    async def presence(self, counts: Iterable[tuple[int, int]]) -> dict[int, int]:
        """Report this instance's watcher count per show; returns every instance's sum."""
        ...
