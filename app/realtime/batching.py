"""Events in, frames out, each frame encoded once for every watcher that gets it: a run of
seat changes of one epoch becomes one `seats` frame (the highest version per seat), and
show changes and announcements pass through with their offset spliced in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.realtime.broker import Position
from app.realtime.frames import Event, Outgoing, SeatChange, Seats, encoder


@dataclass(slots=True)
class RawEvent:
    """An event as the broker delivered it."""

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


NOTHING = Outgoing("")  # a frame with nothing new for the watcher: not sent


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
