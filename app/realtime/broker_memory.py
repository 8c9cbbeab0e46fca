"""An in-process broker (centrifuge's `broker_memory.go`) for unit tests: the same contract
as the Redis brokers (tests/realtime/test_broker_contract.py), no server. Brokers given one
`MemoryBus` behave like instances sharing one Redis."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from app.realtime.broker import (
    HISTORY_LEN,
    PRESENCE_STALE_MS,
    MessageHandler,
    Position,
    ReconnectHandler,
)


@dataclass
class _Stream:
    epoch: str
    n: int = 0
    history: deque[tuple[int, bytes]] = field(default_factory=lambda: deque(maxlen=HISTORY_LEN))


@dataclass
class MemoryBus:
    """What a Redis server holds for the brokers: streams, subscribers, presence."""

    streams: dict[int, _Stream] = field(default_factory=dict)
    subscribers: dict[int, set[MemoryBroker]] = field(default_factory=dict)
    presence: dict[int, dict[str, tuple[int, int]]] = field(default_factory=dict)

    def stream(self, show_id: int) -> _Stream:
        found = self.streams.get(show_id)
        if found is None:
            found = self.streams[show_id] = _Stream("mem" + secrets.token_hex(6))
        return found


class MemoryBroker:
    def __init__(
        self,
        instance_id: str,
        on_message: MessageHandler,
        on_reconnect: ReconnectHandler,
        *,
        bus: MemoryBus | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.bus = bus if bus is not None else MemoryBus()
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._started = asyncio.Event()

    @property
    def alive(self) -> bool:
        return self._started.is_set()

    async def start(self) -> None:
        self._started.set()

    async def stop(self) -> None:
        self._started.clear()
        for subscribers in self.bus.subscribers.values():
            subscribers.discard(self)

    async def wait_connected(self, within: float) -> bool:
        try:
            await asyncio.wait_for(self._started.wait(), within)
        except TimeoutError:
            return False
        return True

    async def subscribe(self, show_id: int, within: float = 5.0) -> None:
        if not await self.wait_connected(within):
            raise ConnectionError("the memory broker is not started")
        self.bus.subscribers.setdefault(show_id, set()).add(self)

    async def unsubscribe(self, show_id: int) -> None:
        self.bus.subscribers.get(show_id, set()).discard(self)

    async def publish(
        self, show_id: int, event: bytes, *, invalidate_availability: bool
    ) -> Position:
        return self._publish(show_id, event)

    async def publish_many(self, events: list[tuple[int, bytes]]) -> None:
        for show_id, event in events:
            self._publish(show_id, event)

    def _publish(self, show_id: int, event: bytes) -> Position:
        stream = self.bus.stream(show_id)
        stream.n += 1
        stream.history.append((stream.n, event))
        position = Position(stream.epoch, stream.n)
        loop = asyncio.get_running_loop()
        for broker in self.bus.subscribers.get(show_id, ()):
            # delivered later, as from Redis: a publisher never re-enters its own handler
            loop.call_soon(broker._on_message, show_id, position, event)
        return position

    async def position(self, show_id: int) -> Position:
        stream = self.bus.stream(show_id)
        return Position(stream.epoch, stream.n)

    async def history(self, show_id: int, since: Position) -> list[tuple[Position, bytes]] | None:
        stream = self.bus.stream(show_id)
        if since.epoch != stream.epoch or since.n > stream.n:
            return None
        found = [(Position(stream.epoch, n), e) for n, e in stream.history if n > since.n]
        if len(found) != stream.n - since.n:
            return None  # trimmed away
        return found

    async def presence(self, counts: Iterable[tuple[int, int]]) -> dict[int, int]:
        now_ms = int(time.time() * 1000)
        totals: dict[int, int] = {}
        for show_id, count in counts:
            entries = self.bus.presence.setdefault(show_id, {})
            if count > 0:
                entries[self.instance_id] = (count, now_ms)
            else:
                entries.pop(self.instance_id, None)
            for instance, (_, at) in list(entries.items()):
                if now_ms - at > PRESENCE_STALE_MS:
                    del entries[instance]
            totals[show_id] = sum(c for c, _ in entries.values())
        return totals
