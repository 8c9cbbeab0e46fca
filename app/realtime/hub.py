"""This process's watchers per show (centrifuge's Hub): encode each event once, hand the
same text to every local socket, and bring every watcher to the truth and keep it there.

A watcher of one show is a `Subscription`. It is SYNCING while it waits for a snapshot or
a replay of history (events that arrive meanwhile are buffered, raw), then LIVE (it gets
the shared frames). Snapshots are taken by one `_sync_loop` task per show, which serves
every watcher waiting at that moment with one PostgreSQL read and one encoding.

The hub never talks to Redis or PostgreSQL itself: it is given a broker and a snapshot
reader. Connections are `Sink`s: they take `Outgoing` frames (encoded once, the same bytes
for every watcher), write them to the socket or queue them within a byte bound, and call
`request_snapshot` for their subscriptions when they fall behind.

A fan-out pass visits every LIVE watcher of a show, FANOUT_CHUNK watchers per loop
callback, so the publish path, HTTP requests and the Redis reader run between chunks.
Events that arrive during a pass join it at the next chunk: each watcher gets, when the
pass reaches it, ONE frame with every change it has not seen (built once per distinct
position, i.e. once for nearly all watchers); the watchers visited before the events
joined get them in the next pass, which starts MIN_PASS_INTERVAL after the previous one
began, or right after it ended when it took longer. So a change waits about one interval
or one pass at most, a watcher gets at most 1/MIN_PASS_INTERVAL frames a second, and as
the audience (and with it the pass) grows, the frames per watcher fall instead of the
latency growing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from app.realtime import metrics
from app.realtime.broker import Broker, Position
from app.realtime.frames import (
    Event,
    LastAnnouncement,
    Outgoing,
    Presence,
    RleSnapshot,
    SeatChange,
    Seats,
    Snapshot,
    encoder,
    event_decoder,
    rle_encode,
)

log = logging.getLogger("modex.realtime.hub")

SeatStates = Sequence[tuple[str, str, int]]  # (label, status, version) in map order
SnapshotReader = Callable[[int], Awaitable[SeatStates]]
# the show's last announcement, or None (a failure to read it must not stop a snapshot)
AnnouncementReader = Callable[[int], Awaitable[LastAnnouncement | None]]

# Seat changes that arrive within COALESCE_SECONDS of an idle show's first one share a
# frame; during a pass, everything that arrived before the pass reaches a watcher does.
COALESCE_SECONDS = 0.005
# At most 12.5 frames a second per watcher: smooth for a person, light for a phone.
MIN_PASS_INTERVAL = 0.08
# Watchers per loop callback (~1-2 ms of socket writes): the publish path of a change
# needs several loop turns, and each waits for at most one chunk.
FANOUT_CHUNK = 100
MAX_SYNC_BUFFER = 10_000  # events buffered per syncing watcher before it starts over
UNSUBSCRIBE_LINGER = 1.0  # keep a show's channel this long after its last watcher left
CHECK_INTERVAL = 5.0  # per-show position and seat-version check (last line of defence)
CHECK_GRACE = 2.0  # a difference must outlive this to count (fast path + relay at work)


class Sink(Protocol):
    """One connection's send side: queue a frame without blocking."""

    def send(self, frame: Outgoing) -> bool:
        """False when the frame was dropped with the backlog (the client fell behind)."""
        ...

    def send_error(self, code: str, message: str, show_id: int | None = None) -> None: ...

    def fail(self) -> None:
        """A send raised: the connection's state is unknown, so it ends (closed 1011)."""
        ...


class State(enum.Enum):
    SYNCING = 1
    LIVE = 2


@dataclass(eq=False, slots=True)
class Subscription:
    show_id: int
    sink: Sink
    encoding: str | None = None
    state: State = State.SYNCING
    position: Position | None = None  # last event this watcher was sent (or its snapshot's)
    buffer: list[RawEvent] = field(default_factory=list)
    overflowed: bool = False
    presence_sent: int = -1
    active: bool = True
    counted: bool = True  # a person watching (kiosks are not counted in presence)


@dataclass(slots=True)
class RawEvent:
    position: Position
    event: Event
    payload: bytes  # the event JSON as published, without the offset


@dataclass(slots=True)
class Frame:
    out: Outgoing
    first: int  # first and last offset (n) of the events in the frame
    last: Position

    @property
    def text(self) -> str:
        return self.out.text


@dataclass(slots=True)
class FanOut:
    """A pass in progress over the watchers that were LIVE when it began."""

    events: list[RawEvent]  # what the pass delivers; grows at chunk boundaries
    subs: list[Subscription]
    done: int = 0  # watchers visited so far
    joined: int = 0  # events[joined:] arrived during the pass (the next pass's events)
    # position.n -> (frames for a watcher there, its position after them); cleared when
    # events join
    plans: dict[int, tuple[list[Outgoing], Position]] = field(default_factory=dict)


@dataclass(eq=False)
class ShowChannel:
    show_id: int
    subs: set[Subscription] = field(default_factory=set)
    syncing: set[Subscription] = field(default_factory=set)  # the SYNCING ones among subs
    last: Position | None = None  # last event seen on the channel
    pending: list[RawEvent] = field(default_factory=list)
    flush_handle: asyncio.Handle | None = None  # the next flush, or the pass's next chunk
    fanout: FanOut | None = None
    pass_started: float = -1e9  # loop time the last pass began
    versions: dict[str, int] = field(default_factory=dict)  # what watchers were sent
    subscribed: asyncio.Task[None] | None = None
    waiting: list[Subscription] = field(default_factory=list)  # want a snapshot
    syncer: asyncio.Task[None] | None = None
    linger: asyncio.Task[None] | None = None
    presence: int = -1


def build_frames(
    show_id: int, events: Iterable[RawEvent], newer_than: dict[str, int] | None = None
) -> list[Frame]:
    """Frames for events in order: consecutive seat changes of one epoch merge into one
    `seats` frame (the highest version per seat); show changes and announcements pass
    through with their offset spliced in. `newer_than` drops changes a snapshot covers."""
    frames: list[Frame] = []
    changes: dict[str, SeatChange] = {}
    first = 0
    last: Position | None = None
    ts: float | None = None

    def close_seats() -> None:
        nonlocal changes, ts, last
        if last is not None and changes:
            text = encoder.encode(
                Seats(show_id=show_id, offset=str(last), changes=list(changes.values()), ts=ts)
            ).decode()
            frames.append(Frame(Outgoing(text), first, last))
        changes, ts, last = {}, None, None

    for raw in events:
        event = raw.event
        if event.type == "seats":
            if last is not None and last.epoch != raw.position.epoch:
                close_seats()
            if last is None:
                first = raw.position.n
            last = raw.position
            if event.ts is not None and (ts is None or event.ts < ts):
                ts = event.ts
            for change in event.changes or ():
                if newer_than is not None and change.version <= newer_than.get(change.label, 0):
                    continue
                known = changes.get(change.label)
                if known is None or change.version > known.version:
                    changes[change.label] = change
            if not changes and newer_than is not None:
                # nothing new for this watcher, but its position still moves on
                frames.append(Frame(NOTHING, raw.position.n, raw.position))
                last = None
        else:
            close_seats()
            offset = str(raw.position).encode()
            text = (b'{"offset":"' + offset + b'",' + raw.payload[1:]).decode()
            frames.append(Frame(Outgoing(text), raw.position.n, raw.position))
    close_seats()
    return frames


NOTHING = Outgoing("")  # a frame with nothing new for the watcher: not sent


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


class Hub:
    def __init__(
        self,
        broker: Broker,
        read_snapshot: SnapshotReader,
        read_announcement: AnnouncementReader | None = None,
    ) -> None:
        self._broker = broker
        self._read_snapshot = read_snapshot
        self._read_announcement = read_announcement
        self._shows: dict[int, ShowChannel] = {}
        self._reported: set[int] = set()  # shows whose presence this instance reported
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

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
        """Count a new watcher of the show (SYNCING, nothing sent yet) and start subscribing
        the show's channel. Nothing here awaits: the caller holds the subscription before
        anything can fail, so whatever happens next, its unwatch() finds it."""
        channel = self._channel(show_id)
        sub = Subscription(show_id, sink, encoding, counted=counted)
        channel.subs.add(sub)
        channel.syncing.add(sub)
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
        since = resume_position(offset)
        if since is not None:
            try:
                history = await self._broker.history(sub.show_id, since)
            except Exception as exc:
                log.warning("history of show %s unavailable: %r", sub.show_id, exc)
                history = None
            if history is not None and sub.active and sub.state is State.SYNCING:
                self._finish_replay(channel, sub, since, history)
                return
            metrics.resyncs.labels("offset_unusable").inc()
        self.request_snapshot(sub, again=True)

    def unwatch(self, sub: Subscription) -> None:
        if not sub.active:
            return
        sub.active = False
        sub.buffer = []
        metrics.ws_watchers.dec()
        channel = self._shows.get(sub.show_id)
        if channel is None:
            return
        channel.subs.discard(sub)
        channel.syncing.discard(sub)
        if not channel.subs and channel.linger is None:
            channel.linger = self._spawn(self._linger(channel))

    def _channel(self, show_id: int) -> ShowChannel:
        channel = self._shows.get(show_id)
        if channel is None:
            channel = ShowChannel(show_id)
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
        if channel.flush_handle is not None:
            channel.flush_handle.cancel()
        channel.fanout = None
        if channel.syncer is not None:
            channel.syncer.cancel()
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
        raw = RawEvent(position, event, payload)
        last = channel.last
        gapped = last is not None and (last.epoch != position.epoch or position.n > last.n + 1)
        if last is not None and last.epoch == position.epoch and position.n <= last.n:
            return  # already seen
        channel.last = position
        if event.changes:
            versions = channel.versions
            for change in event.changes:
                if change.version > versions.get(change.label, 0):
                    versions[change.label] = change.version
        for sub in channel.syncing:
            if len(sub.buffer) < MAX_SYNC_BUFFER:
                sub.buffer.append(raw)
            else:
                sub.overflowed = True
                sub.buffer = []
        channel.pending.append(raw)
        if channel.flush_handle is None and channel.fanout is None:
            self._schedule_flush(channel)
        if gapped:
            # pub/sub lost something (or Redis lost its data): the truth is in PostgreSQL
            log.warning("show %s: gap after %s, got %s; resyncing", show_id, last, position)
            self.resync_show(channel, "gap")

    def _schedule_flush(self, channel: ShowChannel) -> None:
        loop = asyncio.get_running_loop()
        delay = max(COALESCE_SECONDS, channel.pass_started + MIN_PASS_INTERVAL - loop.time())
        channel.flush_handle = loop.call_later(delay, self._flush, channel)

    def _flush(self, channel: ShowChannel) -> None:
        """Start a pass with what is pending."""
        channel.flush_handle = None
        events, channel.pending = channel.pending, []
        if not events or not channel.subs:
            return
        _observe_lag(events)
        live = [sub for sub in channel.subs if sub.state is State.LIVE]
        channel.fanout = FanOut(events, live, joined=len(events))
        channel.pass_started = asyncio.get_running_loop().time()
        self._fan_out(channel)

    def _fan_out(self, channel: ShowChannel) -> None:
        """One chunk of the pass; the next chunk runs after the loop's pending callbacks."""
        channel.flush_handle = None
        fanout = channel.fanout
        if fanout is None:
            return
        if channel.pending:  # arrived since the last chunk: they join the pass here
            fanout.events.extend(channel.pending)
            channel.pending = []
            fanout.plans.clear()
        subs, plans = fanout.subs, fanout.plans
        epoch = fanout.events[-1].position.epoch
        live = State.LIVE
        end = min(len(subs), fanout.done + FANOUT_CHUNK)
        for i in range(fanout.done, end):
            sub = subs[i]
            if not sub.active or sub.state is not live:
                continue  # left, or overflowed: it is waiting for a snapshot now
            position = sub.position
            if position is None or position.epoch != epoch:
                self.request_snapshot(sub, "epoch")  # its stream ended (Redis lost it)
                continue
            plan = plans.get(position.n)
            if plan is None:
                plan = plans[position.n] = self._plan(channel.show_id, fanout.events, position)
            outs, sub.position = plan
            for out in outs:
                try:  # _send() inlined: this loop runs for every watcher of every event
                    sent = sub.sink.send(out)
                except Exception:
                    sent = self._sink_failed(sub)
                if not sent:
                    break  # overflowed: it is waiting for a snapshot now (or it failed)
        fanout.done = end
        loop = asyncio.get_running_loop()
        if end < len(subs):
            channel.flush_handle = loop.call_soon(self._fan_out, channel)
            return
        # the watchers visited before events joined still need them: the next pass
        channel.fanout = None
        channel.pending = fanout.events[fanout.joined :] + channel.pending
        if channel.pending:
            self._schedule_flush(channel)

    @staticmethod
    def _plan(
        show_id: int, events: list[RawEvent], position: Position
    ) -> tuple[list[Outgoing], Position]:
        """The frames for a watcher at `position`: the events after it, merged."""
        newer = [
            e for e in events if e.position.epoch == position.epoch and e.position.n > position.n
        ]
        frames = build_frames(show_id, newer)
        if not frames:
            return [], position
        return [f.out for f in frames], frames[-1].last

    # ---- bringing a watcher to the truth ----

    def request_snapshot(
        self, sub: Subscription, reason: str = "subscribe", *, again: bool = False
    ) -> None:
        """Send the watcher a fresh snapshot (after buffering what arrives meanwhile).

        A watcher already SYNCING is on its way to a fresh state (its snapshot or replay
        is being taken, with its buffer), so asking again changes nothing, unless the
        sync itself found it unusable (`again`, from `_go_live` or a new watcher)."""
        if not sub.active:
            return
        channel = self._shows.get(sub.show_id)
        if channel is None:
            return
        if sub.state is State.SYNCING and (not again or sub in channel.waiting):
            return
        if reason != "subscribe":
            metrics.resyncs.labels(reason).inc()
        sub.state = State.SYNCING
        channel.syncing.add(sub)
        sub.buffer = []
        sub.overflowed = False
        channel.waiting.append(sub)
        if channel.syncer is None or channel.syncer.done():
            channel.syncer = self._spawn(self._sync_loop(channel))

    def resync_show(self, channel: ShowChannel, reason: str) -> None:
        for sub in list(channel.subs):
            if sub.state is State.LIVE:
                self.request_snapshot(sub, reason)

    async def _sync_loop(self, channel: ShowChannel) -> None:
        """Serve every watcher waiting for a snapshot with one read: position first, then
        PostgreSQL; buffered events newer than the snapshot follow it."""
        failures = 0
        while channel.waiting:
            batch = channel.waiting
            channel.waiting = []
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
                channel.waiting = [s for s in batch if s.active] + channel.waiting
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))
                continue
            failures = 0
            if channel.last is None or channel.last.epoch != position.epoch:
                channel.last = position
            versions = {label: version for label, _, version in states}
            for label, version in versions.items():
                if version > channel.versions.get(label, 0):
                    channel.versions[label] = version
            outs: dict[str | None, Outgoing] = {}
            for sub in batch:
                if not sub.active or sub.state is not State.SYNCING:
                    continue
                out = outs.get(sub.encoding)
                if out is None:
                    out = outs[sub.encoding] = Outgoing(
                        snapshot_frame(
                            channel.show_id, position, states, sub.encoding, announcement
                        )
                    )
                sub.position = position
                if not self._send(sub, out):
                    self.request_snapshot(sub, "slow_consumer", again=True)
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
                self.request_snapshot(sub, "slow_consumer", again=True)
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
            self.request_snapshot(sub, "sync_buffer", again=True)
            return
        newer: list[RawEvent] = []
        for raw in sub.buffer:
            if raw.position.epoch != position.epoch:
                sub.buffer = []
                self.request_snapshot(sub, "epoch", again=True)
                return
            if raw.position.n > position.n:
                newer.append(raw)
        sub.buffer = []
        for frame in build_frames(sub.show_id, newer, snapshot):
            if frame.out is not NOTHING and not self._send(sub, frame.out):
                # dropped with the backlog while it was still syncing: start over
                self.request_snapshot(sub, "slow_consumer", again=True)
                return
            sub.position = frame.last
        sub.state = State.LIVE
        channel.syncing.discard(sub)
        if channel.presence >= 0:
            self._send_presence(sub, channel.presence)

    # ---- presence ----

    def local_counts(self) -> list[tuple[int, int]]:
        """This instance's watcher count per show, including shows it just stopped
        watching (reported once as 0 so the cluster count drops at once)."""
        counts = {
            show_id: sum(sub.counted for sub in channel.subs)
            for show_id, channel in self._shows.items()
        }
        for show_id in self._reported - counts.keys():
            counts[show_id] = 0
        self._reported = {show_id for show_id, count in counts.items() if count}
        return list(counts.items())

    def presence(self, totals: dict[int, int]) -> None:
        for show_id, total in totals.items():
            channel = self._shows.get(show_id)
            if channel is None:
                continue
            channel.presence = total
            out: Outgoing | None = None
            for sub in channel.subs:
                if sub.state is State.LIVE and sub.presence_sent != total:
                    if out is None:
                        out = _presence_frame(show_id, total)
                    self._send_presence(sub, total, out)

    def _send_presence(self, sub: Subscription, total: int, out: Outgoing | None = None) -> None:
        sub.presence_sent = total
        self._send(sub, out or _presence_frame(sub.show_id, total))

    def _send(self, sub: Subscription, out: Outgoing) -> bool:
        """`sub.sink.send(out)`; a sink that raises is dropped and told to close, instead of
        ending the pass or the sync loop that serves every other watcher of the show.
        False (like an overflow) when the frame did not go: an inactive watcher's
        snapshot request is a no-op."""
        try:
            return sub.sink.send(out)
        except Exception:
            return self._sink_failed(sub)

    def _sink_failed(self, sub: Subscription) -> bool:
        log.exception("sending to a watcher of show %s failed; closing it", sub.show_id)
        self.unwatch(sub)
        try:
            sub.sink.fail()
        except Exception:
            log.exception("closing a failed watcher of show %s failed", sub.show_id)
        return False

    # ---- catching what was lost ----

    def on_reconnect(self, show_ids: Collection[int] | None = None) -> None:
        """The broker (re)subscribed these shows' channels (None: every channel, e.g. a new
        pub/sub connection): anything published meanwhile may be lost, so compare each
        show's position with what its watchers have."""
        for channel in list(self._shows.values()):
            if show_ids is None or channel.show_id in show_ids:
                self._spawn(self._compare_position(channel))

    async def _compare_position(self, channel: ShowChannel) -> None:
        try:
            position = await self._broker.position(channel.show_id)
        except Exception as exc:
            log.warning("position of show %s after reconnect: %r; resyncing", channel.show_id, exc)
            self.resync_show(channel, "reconnect")
            return
        if channel.last != position:
            log.info(
                "show %s moved while disconnected (%s -> %s); resyncing",
                channel.show_id,
                channel.last,
                position,
            )
            _advance(channel, position)
            self.resync_show(channel, "reconnect")

    async def check_show(self, show_id: int) -> bool:
        """The last line of defence: compare the stream's top offset and PostgreSQL's seat
        versions with what this instance's watchers were sent; a difference that outlives
        the grace period means something was lost, and the show's watchers are resynced.
        Returns True when it resynced."""
        channel = self._shows.get(show_id)
        if channel is None or not channel.subs:
            return False
        position = await self._broker.position(show_id)
        states = await self._read_snapshot(show_id)
        if channel.last is None:
            channel.last = position
        if not channel.versions:
            # every watcher resumed by offset (exact): this read becomes the baseline
            channel.versions = {label: version for label, _, version in states}
        behind = channel.last.epoch != position.epoch or channel.last.n < position.n
        suspects = {label: v for label, _, v in states if channel.versions.get(label, 0) < v}
        if not behind and not suspects:
            return False
        await asyncio.sleep(CHECK_GRACE)
        if self._shows.get(show_id) is not channel:
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
            _advance(channel, position)
        self.resync_show(channel, "check")
        return True

    async def run_checks(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            for show_id in self.shows():
                try:
                    await self.check_show(show_id)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("check of show %s failed: %r", show_id, exc)

    # ---- lifecycle ----

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        for channel in self._shows.values():
            if channel.flush_handle is not None:
                channel.flush_handle.cancel()
            for task in (channel.syncer, channel.linger, channel.subscribed):
                if task is not None:
                    task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._shows.clear()


def resume_position(offset: str | None) -> Position | None:
    """A client's resume offset, or None (it gets a snapshot) for anything unusable. ASCII
    only: str.isdigit() (in Position.parse) accepts "²", which int() refuses, and "٣",
    which int() reads as 3; both are garbage here. The frame bounds its length."""
    if not offset or not offset.isascii():
        return None
    return Position.parse(offset)


def _advance(channel: ShowChannel, position: Position) -> None:
    """The channel is subscribed and its watchers are being resynced from `position` on:
    what came before is theirs with the snapshot, so the next event is no gap."""
    last = channel.last
    if last is None or last.epoch != position.epoch or last.n < position.n:
        channel.last = position


def _presence_frame(show_id: int, total: int) -> Outgoing:
    return Outgoing(encoder.encode(Presence(show_id=show_id, watchers=total)).decode())


def _observe_lag(events: list[RawEvent]) -> None:
    now = time.time()
    for raw in events:
        if raw.event.ts is not None:
            metrics.fanout_lag_seconds.observe(max(0.0, now - raw.event.ts / 1000))
