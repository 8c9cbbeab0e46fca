"""This process's watchers per show (centrifuge's Hub): encode each event once, hand the
same text to every local socket, and bring every watcher to the truth and keep it there.

The hub is the registry: a `ShowChannel` per show with local watchers (`Subscription`s,
whose states are in `subscription`), subscribed to the broker while it has any. It wires
the jobs, one module each: `fanout` (passes over the LIVE watchers), `sync` (replay or
snapshot, then LIVE), `presence` (watcher counts), `checks` (what was lost).

The hub never talks to Redis or PostgreSQL itself: it is given a broker and a snapshot
reader. Connections are `Sink`s: they take `Outgoing` frames (encoded once, the same bytes
for every watcher), write them to the socket or queue them within a byte bound, and call
`request_snapshot` for their subscriptions when they fall behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Coroutine
from typing import Any

import msgspec

from app.realtime import metrics
from app.realtime.batching import RawEvent
from app.realtime.broker import Broker, Position
from app.realtime.channel import ShowChannel
from app.realtime.checks import CHECK_GRACE, Checks
from app.realtime.frames import Outgoing, event_decoder
from app.realtime.presence import PresenceCounts
from app.realtime.subscription import Sink, Subscription, SubscriptionState
from app.realtime.sync import AnnouncementReader, SnapshotReader, Sync

log = logging.getLogger("modex.realtime.hub")

UNSUBSCRIBE_LINGER = 1.0  # keep a show's channel this long after its last watcher left


class Hub:
    def __init__(
        self,
        broker: Broker,
        read_snapshot: SnapshotReader,
        read_announcement: AnnouncementReader | None = None,
        *,
        check_grace: float = CHECK_GRACE,
    ) -> None:
        self._broker = broker
        self._shows: dict[int, ShowChannel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._presence = PresenceCounts(self._shows, self._send)
        self._sync = Sync(
            broker,
            read_snapshot,
            read_announcement,
            self._shows,
            self._send,
            self._presence.greet,
            self._spawn,
        )
        self._checks = Checks(
            broker, read_snapshot, self._shows, self._sync.resync_show, self._spawn, check_grace
        )

    # ---- watchers come and go ----

    def shows(self) -> list[int]:
        return list(self._shows)

    def watchers(self, show_id: int) -> int:
        channel = self._shows.get(show_id)
        return len(channel.subs) if channel else 0

    async def watch(
        self, sink: Sink, show_id: int, offset: str | None, encoding: str | None
    ) -> Subscription:
        """attach() then start(); on any failure the watcher is gone again."""
        sub = self.attach(sink, show_id, encoding)
        try:
            await self.start(sub, offset)
        except BaseException:
            self.unwatch(sub)
            raise
        return sub

    def attach(
        self, sink: Sink, show_id: int, encoding: str | None, counted: bool = True
    ) -> Subscription:
        """Count a new watcher of the show (ATTACHED, nothing sent yet) and start subscribing
        the show's channel. Nothing here awaits: the caller holds the subscription before
        anything can fail, so whatever happens next, its unwatch() finds it."""
        channel = self._channel(show_id)
        sub = Subscription(show_id, sink, encoding, counted=counted)
        channel.add(sub)
        metrics.ws_watchers.inc()
        return sub

    async def start(self, sub: Subscription, offset: str | None) -> None:
        """Wait for the show's channel (acknowledged) before anything is read, then replay
        history from `offset` or queue the watcher for a snapshot. Raises ConnectionError
        when the channel cannot be subscribed; the caller unwatches."""
        channel = self._shows.get(sub.show_id)
        if channel is None or sub not in channel.subs or channel.subscribed is None:
            # its channel's subscription failed and was forgotten meanwhile
            raise ConnectionError(f"show {sub.show_id}: the channel could not be subscribed")
        await asyncio.shield(channel.subscribed)
        await self._sync.start(channel, sub, offset)

    def unwatch(self, sub: Subscription) -> None:
        if sub.state is SubscriptionState.ENDED:
            return
        metrics.ws_watchers.dec()
        channel = self._shows.get(sub.show_id)
        if channel is None:
            sub.move(SubscriptionState.ENDED)
            return
        channel.remove(sub)
        if not channel.subs and channel.linger is None:
            channel.linger = self._spawn(self._linger(channel))

    def request_snapshot(self, sub: Subscription, reason: str) -> None:
        """A LIVE watcher fell behind (or may have): send it a fresh snapshot."""
        self._sync.request_snapshot(sub, reason)

    def _channel(self, show_id: int) -> ShowChannel:
        channel = self._shows.get(show_id)
        if channel is None:
            channel = ShowChannel(show_id, self._sync.request_snapshot, self._drop)
            channel.subscribed = asyncio.create_task(self._subscribe(channel))
            self._shows[show_id] = channel
        return channel

    async def _subscribe(self, channel: ShowChannel) -> None:
        try:
            await self._broker.subscribe(channel.show_id)
        except Exception:
            # forget the channel so the next watcher tries again (a channel kept with a
            # failed subscription would fail every later watcher of the show)
            if self._shows.get(channel.show_id) is channel:
                del self._shows[channel.show_id]
            raise

    async def _linger(self, channel: ShowChannel) -> None:
        await asyncio.sleep(UNSUBSCRIBE_LINGER)
        channel.linger = None
        if channel.subs or self._shows.get(channel.show_id) is not channel:
            return
        del self._shows[channel.show_id]
        channel.close()
        if channel.subscribed is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await channel.subscribed
        if channel.show_id not in self._shows:
            await self._broker.unsubscribe(channel.show_id)

    # ---- events from the broker ----

    def on_message(self, show_id: int, position: Position, payload: bytes) -> None:
        channel = self._shows.get(show_id)
        if channel is None:
            return
        try:
            event = event_decoder.decode(payload)
        except msgspec.DecodeError:
            log.error("undecodable event on show %s at %s", show_id, position)
            return
        last = channel.last
        if last is not None and last.epoch == position.epoch and position.n <= last.n:
            return  # already seen
        raw = RawEvent(position, event, payload)
        channel.receive(raw)
        channel.fanout.add(raw)
        if last is not None and (last.epoch != position.epoch or position.n > last.n + 1):
            # pub/sub lost something (or Redis lost its data): the truth is in PostgreSQL
            log.warning("show %s: gap after %s, got %s; resyncing", show_id, last, position)
            self._sync.resync_show(channel, "gap")

    def on_reconnect(self, show_ids: Collection[int] | None = None) -> None:
        self._checks.on_reconnect(show_ids)

    # ---- checks and presence (see their modules) ----

    async def check_show(self, show_id: int) -> bool:
        return await self._checks.check_show(show_id)

    async def run_checks(self) -> None:
        await self._checks.run()

    def local_counts(self) -> list[tuple[int, int]]:
        return self._presence.local_counts()

    def presence(self, totals: dict[int, int]) -> None:
        self._presence.update(totals)

    # ---- sending ----

    def _send(self, sub: Subscription, out: Outgoing) -> bool:
        """`sub.sink.send(out)`; a sink that raises is dropped and told to close, instead of
        ending the pass or the sync loop that serves every other watcher of the show.
        False (like an overflow) when the frame did not go."""
        try:
            return sub.sink.send(out)
        except Exception:
            return self._drop(sub)

    def _drop(self, sub: Subscription) -> bool:
        log.exception("sending to a watcher of show %s failed; closing it", sub.show_id)
        self.unwatch(sub)
        try:
            sub.sink.fail()
        except Exception:
            log.exception("closing a failed watcher of show %s failed", sub.show_id)
        return False

    # ---- lifecycle ----

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        for channel in self._shows.values():
            channel.close()
            for task in (channel.linger, channel.subscribed):
                if task is not None:
                    task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._shows.clear()
