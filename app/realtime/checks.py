"""Catching what was lost. After the broker (re)subscribes a show, its position is compared
with what the show's watchers have; and every CHECK_INTERVAL each show's position and
PostgreSQL's seat versions are compared with what they were sent (the last line of
defence: a change that reached neither the outbox nor pub/sub, an event lost silently).
A show whose watchers are behind is resynced."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping

from app.realtime.broker import Broker
from app.realtime.channel import ShowChannel
from app.realtime.sync import SnapshotReader, Spawn

log = logging.getLogger("modex.realtime.checks")

CHECK_INTERVAL = 5.0  # per-show position and seat-version check (last line of defence)
CHECK_GRACE = 2.0  # a difference must outlive this to count (fast path + relay at work)

ResyncShow = Callable[[ShowChannel, str], None]


class Checks:
    def __init__(
        self,
        broker: Broker,
        read_snapshot: SnapshotReader,
        channels: Mapping[int, ShowChannel],
        resync_show: ResyncShow,
        spawn: Spawn,
        grace: float = CHECK_GRACE,
    ) -> None:
        self._broker = broker
        self._read_snapshot = read_snapshot
        self._channels = channels
        self._resync_show = resync_show
        self._spawn = spawn
        self._grace = grace

    def on_reconnect(self, show_ids: Collection[int] | None = None) -> None:
        """The broker (re)subscribed these shows' channels (None: every channel, e.g. a new
        pub/sub connection): anything published meanwhile may be lost, so compare each
        show's position with what its watchers have."""
        for channel in list(self._channels.values()):
            if show_ids is None or channel.show_id in show_ids:
                self._spawn(self._compare_position(channel))

    async def _compare_position(self, channel: ShowChannel) -> None:
        try:
            position = await self._broker.position(channel.show_id)
        except Exception as exc:
            log.warning("position of show %s after reconnect: %r; resyncing", channel.show_id, exc)
            self._resync_show(channel, "reconnect")
            return
        if channel.last != position:
            log.info(
                "show %s moved while disconnected (%s -> %s); resyncing",
                channel.show_id,
                channel.last,
                position,
            )
            channel.advance(position)
            self._resync_show(channel, "reconnect")

    async def check_show(self, show_id: int) -> bool:
        """Compare the stream's top offset and PostgreSQL's seat versions with what this
        instance's watchers were sent; a difference that outlives the grace period means
        something was lost, and the show's watchers are resynced. True when it resynced."""
        channel = self._channels.get(show_id)
        if channel is None or not channel.subs:
            return False
        position = await self._broker.position(show_id)
        states = await self._read_snapshot(show_id)
        if channel.last is None:
            channel.last = position
        if not channel.versions_complete:
            # every watcher resumed by offset (exact), so no snapshot gave the versions of
            # the seats no event changed: this read does
            channel.note_all_versions({label: version for label, _, version in states})
        behind = channel.last.epoch != position.epoch or channel.last.n < position.n
        suspects = {label: v for label, _, v in states if channel.versions.get(label, 0) < v}
        if not behind and not suspects:
            return False
        await asyncio.sleep(self._grace)
        if self._channels.get(show_id) is not channel:
            return False
        last = channel.last
        still_behind = last.epoch != position.epoch or last.n < position.n
        still_suspect = any(channel.versions.get(label, 0) < v for label, v in suspects.items())
        if not (still_behind or still_suspect):
            return False
        log.warning(
            "show %s: watchers behind (position %s vs %s, %d seats); resyncing",
            show_id,
            last,
            position,
            len(suspects),
        )
        if still_behind:
            channel.advance(position)
        self._resync_show(channel, "check")
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            for show_id in list(self._channels):
                try:
                    await self.check_show(show_id)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("check of show %s failed: %r", show_id, exc)
