"""Bringing a watcher to the truth: a replay of history from its offset, or a snapshot.

Zulip's rule: the show's channel is subscribed before anything is read, and what arrives
meanwhile is buffered for the watcher, then sent after the replay or snapshot (what a
snapshot already has is dropped by seat version). Snapshots are taken by one `_sync_loop`
task per show, which serves every watcher waiting at that moment with one PostgreSQL
read and one encoding (per snapshot encoding).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

import msgspec

from app.realtime import metrics
from app.realtime.batching import NOTHING, RawEvent, build_frames
from app.realtime.broker import Broker, Position
from app.realtime.channel import ShowChannel
from app.realtime.frames import (
    LastAnnouncement,
    Outgoing,
    RleSnapshot,
    SeatChange,
    Snapshot,
    encoder,
    event_decoder,
    rle_encode,
)
from app.realtime.subscription import Send, Subscription, SubscriptionState

log = logging.getLogger("modex.realtime.sync")

SeatStates = Sequence[tuple[str, str, int]]  # (label, status, version) in map order
SnapshotReader = Callable[[int], Awaitable[SeatStates]]
# the show's last announcement, or None (a failure to read it must not stop a snapshot)
AnnouncementReader = Callable[[int], Awaitable[LastAnnouncement | None]]
Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class Sync:
    def __init__(
        self,
        broker: Broker,
        read_snapshot: SnapshotReader,
        read_announcement: AnnouncementReader | None,
        channels: Mapping[int, ShowChannel],
        send: Send,
        went_live: Callable[[ShowChannel, Subscription], None],
        spawn: Spawn,
    ) -> None:
        self._broker = broker
        self._read_snapshot = read_snapshot
        self._read_announcement = read_announcement
        self._channels = channels
        self._send = send
        self._went_live = went_live
        self._spawn = spawn

    async def start(self, channel: ShowChannel, sub: Subscription, offset: str | None) -> None:
        """A new watcher (its channel subscribed): replay history from `offset`, or queue
        it for a snapshot when there is no usable offset."""
        since = resume_position(offset)
        if since is not None:
            try:
                history = await self._broker.history(sub.show_id, since)
            except Exception as exc:
                log.warning("history of show %s unavailable: %r", sub.show_id, exc)
                history = None
            if history is None:
                metrics.resyncs.labels("offset_unusable").inc()
            elif sub.state is SubscriptionState.ATTACHED:
                self._finish_replay(channel, sub, since, history)
                return
        if sub.state is SubscriptionState.ATTACHED:  # not unwatched meanwhile
            self.queue(channel, sub, None)

    def request_snapshot(self, sub: Subscription, reason: str) -> None:
        """Send a LIVE watcher a fresh snapshot (after buffering what arrives meanwhile).
        Any other watcher is on its way to a fresh state already (or gone): no change."""
        if sub.state is not SubscriptionState.LIVE:
            return
        channel = self._channels.get(sub.show_id)
        if channel is not None:
            self.queue(channel, sub, reason)

    def resync_show(self, channel: ShowChannel, reason: str) -> None:
        for sub in list(channel.subs):
            if sub.state is SubscriptionState.LIVE:
                self.queue(channel, sub, reason)

    def queue(self, channel: ShowChannel, sub: Subscription, reason: str | None) -> None:
        """Queue the watcher for the show's next snapshot read; `reason` names a resync
        (None: its first snapshot)."""
        if reason is not None:
            metrics.resyncs.labels(reason).inc()
        channel.queue(sub)
        if channel.syncer is None or channel.syncer.done():
            channel.syncer = self._spawn(self._sync_loop(channel))

    def _start_over(self, channel: ShowChannel, sub: Subscription, reason: str) -> None:
        """Its replay or snapshot could not be used: queue it again, unless it is gone."""
        if sub.state is not SubscriptionState.ENDED:
            self.queue(channel, sub, reason)

    async def _sync_loop(self, channel: ShowChannel) -> None:
        """Serve every watcher waiting for a snapshot with one read: position first, then
        PostgreSQL; buffered events newer than the snapshot follow it."""
        failures = 0
        while channel.waiting:
            batch = channel.take_waiting()
            try:
                if channel.subscribed is not None:
                    await asyncio.shield(channel.subscribed)
                position = await self._broker.position(channel.show_id)
                states = await self._read_snapshot(channel.show_id)
                announcement = (
                    await self._read_announcement(channel.show_id)
                    if self._read_announcement is not None
                    else None
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.error("snapshot of show %s failed (%d): %r", channel.show_id, failures, exc)
                for sub in batch:
                    if sub.state is SubscriptionState.READING:
                        channel.queue(sub)  # back in line, not a resync
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))
                continue
            failures = 0
            if channel.last is None or channel.last.epoch != position.epoch:
                channel.last = position
            versions = {label: version for label, _, version in states}
            channel.note_all_versions(versions)
            outs: dict[str | None, Outgoing] = {}
            for sub in batch:
                if sub.state is not SubscriptionState.READING:
                    continue  # unwatched meanwhile
                out = outs.get(sub.encoding)
                if out is None:
                    out = outs[sub.encoding] = Outgoing(
                        snapshot_frame(
                            channel.show_id, position, states, sub.encoding, announcement
                        )
                    )
                sub.position = position
                if not self._send(sub, out):
                    self._start_over(channel, sub, "slow_consumer")
                    continue
                self._go_live(channel, sub, versions)

    def _finish_replay(
        self,
        channel: ShowChannel,
        sub: Subscription,
        since: Position,
        history: list[tuple[Position, bytes]],
    ) -> None:
        events: list[RawEvent] = []
        for position, payload in history:
            try:
                events.append(RawEvent(position, event_decoder.decode(payload), payload))
            except msgspec.DecodeError:
                log.error("undecodable history event on show %s at %s", sub.show_id, position)
        sub.position = since
        for frame in build_frames(sub.show_id, events):
            if not self._send(sub, frame.out):
                self._start_over(channel, sub, "slow_consumer")
                return
            sub.position = frame.last
        if channel.last is None:
            channel.last = sub.position
        self._go_live(channel, sub, None)

    def _go_live(
        self, channel: ShowChannel, sub: Subscription, snapshot: dict[str, int] | None
    ) -> None:
        """Send what was buffered after the snapshot/replay, then join the shared frames."""
        position = sub.position
        assert position is not None
        if sub.overflowed:
            self._start_over(channel, sub, "sync_buffer")
            return
        newer: list[RawEvent] = []
        for raw in sub.buffer:
            if raw.position.epoch != position.epoch:
                self._start_over(channel, sub, "epoch")
                return
            if raw.position.n > position.n:
                newer.append(raw)
        for frame in build_frames(sub.show_id, newer, snapshot):
            if frame.out is not NOTHING and not self._send(sub, frame.out):
                # dropped with the backlog while it was still syncing: start over
                self._start_over(channel, sub, "slow_consumer")
                return
            sub.position = frame.last
        channel.go_live(sub)
        self._went_live(channel, sub)


def snapshot_frame(
    show_id: int,
    position: Position,
    states: SeatStates,
    encoding: str | None,
    announcement: LastAnnouncement | None = None,
) -> str:
    if encoding == "rle":
        status, version = rle_encode(states)
        frame: Snapshot | RleSnapshot = RleSnapshot(
            show_id=show_id,
            offset=str(position),
            encoding="rle",
            count=len(states),
            status=status,
            version=version,
            announcement=announcement,
        )
    else:
        frame = Snapshot(
            show_id=show_id,
            offset=str(position),
            seats=[SeatChange(label, status, version) for label, status, version in states],
            announcement=announcement,
        )
    return encoder.encode(frame).decode()


def resume_position(offset: str | None) -> Position | None:
    """A client's resume offset, or None (it gets a snapshot) for anything unusable. ASCII
    only: str.isdigit() (in Position.parse) accepts "²", which int() refuses, and "٣",
    which int() reads as 3; both are garbage here. The frame bounds its length."""
    if not offset or not offset.isascii():
        return None
    return Position.parse(offset)
