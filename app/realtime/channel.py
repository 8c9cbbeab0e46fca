"""One show's channel on this instance: its watchers, what they were sent, and the moves
of a watcher that change which of the channel's sets and queues it is in (so the sets
follow the watcher's state instead of being kept in step by hand)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from app.realtime.batching import RawEvent
from app.realtime.broker import Position
from app.realtime.fanout import Drop, Resync, ShowFanOut
from app.realtime.frames import SeatChange
from app.realtime.subscription import Subscription, SubscriptionState

MAX_SYNC_BUFFER = 10_000  # events buffered per syncing watcher before it starts over


class ShowChannel:
    def __init__(self, show_id: int, resync: Resync, drop: Drop) -> None:
        self.show_id = show_id
        self.subs: set[Subscription] = set()
        # the syncing ones among subs (ATTACHED, QUEUED, READING): each event is buffered
        # for these, so the set spares that loop the LIVE majority
        self.syncing: set[Subscription] = set()
        self.waiting: list[Subscription] = []  # QUEUED: the next snapshot read serves these
        self.fanout = ShowFanOut(show_id, self.subs, resync, drop)
        self.last: Position | None = None  # last event seen on the channel
        # seat versions watchers were sent; complete (every seat) once a snapshot or a check
        # read them, before that only the seats events changed
        self.versions: dict[str, int] = {}
        self.versions_complete = False
        self.presence = -1  # the cluster's watcher count, once known
        self.subscribed: asyncio.Task[None] | None = None
        self.syncer: asyncio.Task[None] | None = None
        self.linger: asyncio.Task[None] | None = None

    # ---- a watcher's moves ----

    def add(self, sub: Subscription) -> None:
        """A new watcher (ATTACHED): it buffers from now on."""
        self.subs.add(sub)
        self.syncing.add(sub)

    def queue(self, sub: Subscription) -> None:
        """To QUEUED: buffer afresh and wait for the next snapshot read."""
        sub.move(SubscriptionState.QUEUED)
        self.syncing.add(sub)
        self.waiting.append(sub)

    def take_waiting(self) -> list[Subscription]:
        """The queued watchers, now READING (one read serves them all)."""
        batch = [sub for sub in self.waiting if sub.state is SubscriptionState.QUEUED]
        self.waiting = []
        for sub in batch:
            sub.move(SubscriptionState.READING)
        return batch

    def go_live(self, sub: Subscription) -> None:
        sub.move(SubscriptionState.LIVE)
        self.syncing.discard(sub)

    def remove(self, sub: Subscription) -> None:
        """To ENDED (a queued one stays in `waiting` until the read skips it)."""
        sub.move(SubscriptionState.ENDED)
        self.subs.discard(sub)
        self.syncing.discard(sub)

    # ---- what arrives ----

    def receive(self, raw: RawEvent) -> None:
        """Note a new event: its seat versions, and a copy in every syncing buffer."""
        self.last = raw.position
        if raw.event.changes:
            self.note_versions(raw.event.changes)
        for sub in self.syncing:
            if len(sub.buffer) < MAX_SYNC_BUFFER:
                sub.buffer.append(raw)
            else:
                sub.overflowed = True
                sub.buffer = []

    def note_versions(self, changes: Iterable[SeatChange]) -> None:
        versions = self.versions
        for change in changes:
            if change.version > versions.get(change.label, 0):
                versions[change.label] = change.version

    def note_all_versions(self, versions: dict[str, int]) -> None:
        """Every seat's version, read from PostgreSQL: what events brought since the read
        may be newer and stays."""
        known = self.versions
        for label, version in versions.items():
            if version > known.get(label, 0):
                known[label] = version
        self.versions_complete = True

    def advance(self, position: Position) -> None:
        """The channel is subscribed and its watchers are being resynced from `position`
        on: what came before is theirs with the snapshot, so the next event is no gap."""
        last = self.last
        if last is None or last.epoch != position.epoch or last.n < position.n:
            self.last = position

    def close(self) -> None:
        """Stop its fan-out and its snapshot reads (the channel is being forgotten)."""
        self.fanout.cancel()
        if self.syncer is not None:
            self.syncer.cancel()
