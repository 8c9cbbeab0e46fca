"""Published events and the frames watchers get agree: what a publisher encodes
(frames.SeatsEvent, ShowEvent, AnnouncementEvent), passed through the hub, decodes as the
frame the protocol documents, with the same fields and the offset added."""

from __future__ import annotations

import msgspec

from app.realtime.broker import Position
from app.realtime.frames import (
    Announcement,
    AnnouncementEvent,
    LiveFrame,
    SeatChange,
    Seats,
    ShowChanged,
    ShowEvent,
    encoder,
    event_decoder,
)
from app.realtime.hub import RawEvent, build_frames
from app.realtime.outbox import seats_event

live_decoder = msgspec.json.Decoder(LiveFrame)


def frame_of(payload: bytes, n: int = 5) -> object:
    raw = RawEvent(Position("e1", n), event_decoder.decode(payload), payload)
    [frame] = build_frames(7, [raw])
    return live_decoder.decode(frame.text)


def test_a_show_change_reaches_watchers_as_its_frame() -> None:
    event = ShowEvent(show_id=7, title="Hamlet", starts_at="2027-01-02T19:30:00+00:00")
    frame = frame_of(encoder.encode(event))
    assert frame == ShowChanged(**msgspec.structs.asdict(event), offset="e1:5")


def test_an_announcement_reaches_watchers_as_its_frame() -> None:
    event = AnnouncementEvent(show_id=7, message="Doors open at 7 — «bienvenue»")
    frame = frame_of(encoder.encode(event))
    assert frame == Announcement(show_id=7, message=event.message, offset="e1:5")


def test_an_outbox_row_reaches_watchers_as_a_seats_frame() -> None:
    changes = '[{"label": "A1", "status": "HELD", "version": 2}]'  # as PostgreSQL writes it
    frame = frame_of(seats_event(7, changes, 1_700_000_000.1234))
    assert frame == Seats(
        show_id=7, offset="e1:5", changes=[SeatChange("A1", "HELD", 2)], ts=1_700_000_000_123
    )
