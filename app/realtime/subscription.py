"""One watcher of one show (a `Subscription`), the connection it sends to (a `Sink`), and
the states a watcher moves through.

A watcher is brought to the truth before it gets the shared frames: it replays history
from its offset, or waits for a snapshot, and the events that arrive meanwhile are
buffered for it, raw. Then it is LIVE until it ends. `Subscription.move` is the only way
its state changes and it refuses a move the design does not have (the model is
Starlette's `WebSocketState`: an enum and its transitions, nothing more).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from app.realtime.batching import RawEvent
from app.realtime.broker import Position
from app.realtime.frames import Outgoing


class Sink(Protocol):
    """One connection's send side: queue a frame without blocking."""

    def send(self, frame: Outgoing) -> bool:
        """False when the frame was dropped with the backlog (the client fell behind)."""
        ...

    def send_error(self, code: str, message: str, show_id: int | None = None) -> None: ...

    def fail(self) -> None:
        """A send raised: the connection's state is unknown, so it ends (closed 1011)."""
        ...


class SubscriptionState(enum.Enum):
    ATTACHED = 0  # counted, its channel subscribing; it replays from its offset or queues
    QUEUED = 1  # waits for the show's next snapshot read
    READING = 2  # in the batch whose snapshot is being read and sent
    LIVE = 3  # gets the shared frames
    ENDED = 4  # unwatched: nothing more is sent or buffered


_S = SubscriptionState
MOVES: dict[SubscriptionState, frozenset[SubscriptionState]] = {
    _S.ATTACHED: frozenset({_S.QUEUED, _S.LIVE, _S.ENDED}),
    _S.QUEUED: frozenset({_S.READING, _S.ENDED}),
    # back to QUEUED: the read failed, or the snapshot or what was buffered is unusable
    _S.READING: frozenset({_S.QUEUED, _S.LIVE, _S.ENDED}),
    _S.LIVE: frozenset({_S.QUEUED, _S.ENDED}),
    _S.ENDED: frozenset(),
}


@dataclass(eq=False, slots=True)
class Subscription:
    show_id: int
    sink: Sink
    encoding: str | None = None
    counted: bool = True  # a person watching (kiosks are not counted in presence)
    state: SubscriptionState = SubscriptionState.ATTACHED
    position: Position | None = None  # last event this watcher was sent (or its snapshot's)
    # events that arrived while it syncs (ATTACHED, QUEUED, READING); overflowed: too many
    buffer: list[RawEvent] = field(default_factory=list)
    overflowed: bool = False
    presence_sent: int = -1

    def move(self, to: SubscriptionState) -> None:
        """Change state, or raise RuntimeError for a move the design does not have (a
        watcher queued twice would get two snapshots; an ended one, frames)."""
        if to not in MOVES[self.state]:
            raise RuntimeError(f"watcher of show {self.show_id}: {self.state.name} -> {to.name}")
        self.state = to
        if to is not SubscriptionState.READING:
            # a queued watcher buffers afresh (its snapshot is read after this); a live or
            # ended one buffers nothing
            self.buffer = []
            self.overflowed = False


# how the jobs send to a watcher: False when the frame did not go (dropped with the
# backlog, or the sink raised and the watcher was unwatched)
Send = Callable[[Subscription, Outgoing], bool]
