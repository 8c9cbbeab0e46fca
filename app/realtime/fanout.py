"""Fan-out scheduling: each event is encoded once and the same text goes to every LIVE
watcher of a show, in passes.

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
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from app.realtime import metrics
from app.realtime.batching import RawEvent, build_frames
from app.realtime.broker import Position
from app.realtime.frames import Outgoing
from app.realtime.subscription import Subscription, SubscriptionState

# Seat changes that arrive within COALESCE_SECONDS of an idle show's first one share a
# frame; during a pass, everything that arrived before the pass reaches a watcher does.
COALESCE_SECONDS = 0.005
# At most 12.5 frames a second per watcher: smooth for a person, light for a phone.
MIN_PASS_INTERVAL = 0.08
# Watchers per loop callback (~1-2 ms of socket writes): the publish path of a change
# needs several loop turns, and each waits for at most one chunk.
FANOUT_CHUNK = 100

Resync = Callable[[Subscription, str], None]  # send a LIVE watcher a fresh snapshot
Drop = Callable[[Subscription], bool]  # a sink raised: unwatch and close it; returns False


@dataclass(slots=True)
class Pass:
    """A pass in progress over the watchers that were LIVE when it began."""

    events: list[RawEvent]  # what the pass delivers; grows at chunk boundaries
    subs: list[Subscription]
    done: int = 0  # watchers visited so far
    joined: int = 0  # events[joined:] arrived during the pass (the next pass's events)
    # position.n -> (frames for a watcher there, its position after them); cleared when
    # events join
    plans: dict[int, tuple[list[Outgoing], Position]] = field(default_factory=dict)


class ShowFanOut:
    """One show's pending events and its pass in progress."""

    def __init__(
        self, show_id: int, subs: Collection[Subscription], resync: Resync, drop: Drop
    ) -> None:
        self._show_id = show_id
        self._subs = subs  # the channel's watchers (a pass takes the LIVE ones)
        self._resync = resync
        self._drop = drop
        self._pending: list[RawEvent] = []
        self._handle: asyncio.Handle | None = None  # the next flush, or the pass's next chunk
        self._pass: Pass | None = None
        self._pass_started = -1e9  # loop time the last pass began

    def add(self, raw: RawEvent) -> None:
        self._pending.append(raw)
        if self._handle is None and self._pass is None:
            self._schedule_flush()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._pass = None

    def _schedule_flush(self) -> None:
        loop = asyncio.get_running_loop()
        delay = max(COALESCE_SECONDS, self._pass_started + MIN_PASS_INTERVAL - loop.time())
        self._handle = loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        """Start a pass with what is pending."""
        self._handle = None
        events, self._pending = self._pending, []
        if not events or not self._subs:
            return
        _observe_lag(events)
        live = [sub for sub in self._subs if sub.state is SubscriptionState.LIVE]
        self._pass = Pass(events, live, joined=len(events))
        self._pass_started = asyncio.get_running_loop().time()
        self._run_chunk()

    def _run_chunk(self) -> None:
        """One chunk of the pass; the next chunk runs after the loop's pending callbacks."""
        self._handle = None
        fanout = self._pass
        if fanout is None:
            return
        if self._pending:  # arrived since the last chunk: they join the pass here
            fanout.events.extend(self._pending)
            self._pending = []
            fanout.plans.clear()
        subs, plans = fanout.subs, fanout.plans
        epoch = fanout.events[-1].position.epoch
        live = SubscriptionState.LIVE
        end = min(len(subs), fanout.done + FANOUT_CHUNK)
        for i in range(fanout.done, end):
            sub = subs[i]
            if sub.state is not live:
                continue  # left, or overflowed: it is waiting for a snapshot now
            position = sub.position
            if position is None or position.epoch != epoch:
                self._resync(sub, "epoch")  # its stream ended (Redis lost it)
                continue
            plan = plans.get(position.n)
            if plan is None:
                plan = plans[position.n] = frames_after(self._show_id, fanout.events, position)
            outs, sub.position = plan
            for out in outs:
                # the sink called directly, not through a helper: this loop runs for every
                # watcher of every event
                try:
                    sent = sub.sink.send(out)
                except Exception:
                    sent = self._drop(sub)
                if not sent:
                    break  # overflowed: it is waiting for a snapshot now (or it failed)
        fanout.done = end
        if end < len(subs):
            self._handle = asyncio.get_running_loop().call_soon(self._run_chunk)
            return
        # the watchers visited before events joined still need them: the next pass
        self._pass = None
        self._pending = fanout.events[fanout.joined :] + self._pending
        if self._pending:
            self._schedule_flush()


def frames_after(
    show_id: int, events: list[RawEvent], position: Position
) -> tuple[list[Outgoing], Position]:
    """The frames for a watcher at `position`: the events after it, merged; and its
    position after them."""
    newer = [e for e in events if e.position.epoch == position.epoch and e.position.n > position.n]
    frames = build_frames(show_id, newer)
    if not frames:
        return [], position
    return [f.out for f in frames], frames[-1].last


def _observe_lag(events: list[RawEvent]) -> None:
    now = time.time()
    for raw in events:
        if raw.event.ts is not None:
            metrics.fanout_lag_seconds.observe(max(0.0, now - raw.event.ts / 1000))
