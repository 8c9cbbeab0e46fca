"""WebSocket frames as msgspec Structs: client frames are one tagged union on "type",
decoded once at the edge; server frames are encoded once per event (see hub.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Raw, Struct

from app.wire import ShowId

Offset = Annotated[str, Meta(max_length=64)]

MAX_CLIENT_FRAME = 16 * 1024


# ---- client -> server ----


class Subscribe(Struct, tag="subscribe", tag_field="type", forbid_unknown_fields=True):
    show_id: ShowId
    offset: Offset | None = None
    encoding: Literal["rle"] | None = None
    # false: a display (a kiosk), not a person: left out of the "people viewing" count
    counted: bool = True


class Unsubscribe(Struct, tag="unsubscribe", tag_field="type", forbid_unknown_fields=True):
    show_id: ShowId


class Ping(Struct, tag="ping", tag_field="type", forbid_unknown_fields=True):
    pass


ClientFrame = Subscribe | Unsubscribe | Ping
client_decoder = msgspec.json.Decoder(ClientFrame)


# ---- events as published through Redis (JSON, without the offset) ----
# Each is encoded once by its publisher with `encoder`. The hub merges seat events into
# `Seats` frames and sends show changes and announcements on byte for byte, with the
# offset spliced in first (hub.build_frames): ShowChanged and Announcement, below, are
# these events plus `offset`.


class SeatChange(Struct, array_like=False):
    label: str
    status: str
    version: int


class SeatsEvent(Struct, tag="seats", tag_field="type"):
    """A committed seat change (app/realtime/outbox.py). `changes` is the outbox row's
    JSON array as PostgreSQL wrote it, embedded as is rather than parsed and printed
    again; `ts` the commit time in epoch milliseconds."""

    show_id: int
    changes: Raw
    ts: int


class ShowEvent(Struct, tag="show", tag_field="type"):
    show_id: int
    title: str | None = None
    starts_at: str | None = None
    status: str | None = None


class AnnouncementEvent(Struct, tag="announcement", tag_field="type"):
    show_id: int
    message: str


class Event(Struct):
    """What the hub decodes of any published event; "show" and "announcement" events
    carry more fields, which the hub passes through untouched."""

    type: str
    show_id: int
    changes: list[SeatChange] | None = None
    ts: int | float | None = None  # epoch ms (ints; a float from an older publisher)


encoder = msgspec.json.Encoder()
event_decoder = msgspec.json.Decoder(Event)


# ---- server -> client ----


class LastAnnouncement(Struct):
    """The show's last announcement, kept for watchers who arrive after it (`at`: ISO 8601)."""

    message: str
    at: str


class Snapshot(Struct, tag="snapshot", tag_field="type", omit_defaults=True):
    show_id: int
    offset: str
    seats: list[SeatChange]
    announcement: LastAnnouncement | None = None


class RleSnapshot(Struct, tag="snapshot", tag_field="type", omit_defaults=True):
    """Compact snapshot (subscribe with "encoding": "rle"): seats in map order, statuses
    and versions as runs: status "A200H2A18B5", version "1*200,3,2,1*18,4*5"."""

    show_id: int
    offset: str
    encoding: str
    count: int
    status: str
    version: str
    announcement: LastAnnouncement | None = None


class Seats(Struct, tag="seats", tag_field="type", omit_defaults=True):
    show_id: int
    offset: str
    changes: list[SeatChange]
    # commit time of the oldest change in the frame (epoch ms): commit-to-receive lag
    ts: int | float | None = None  # a float: from a publisher of an older version


class ShowChanged(ShowEvent, kw_only=True):
    """An admin changed the show (PATCH /admin/shows/{id})."""

    offset: str  # the published ShowEvent plus this


class Announcement(AnnouncementEvent, kw_only=True):
    """An admin's message to everyone watching (POST /admin/shows/{id}/broadcast)."""

    offset: str  # the published AnnouncementEvent plus this


class Presence(Struct, tag="presence", tag_field="type"):
    show_id: int
    watchers: int


class Pong(Struct, tag="pong", tag_field="type"):
    pass


class QueuePosition(Struct, tag="queue", tag_field="type"):
    """The socket's customer's place in a show's waiting room (app/admission.py);
    `position` is null until the draw at opening."""

    show_id: int
    position: int | None
    eta_s: int


class Admitted(Struct, tag="admitted", tag_field="type"):
    """The customer's turn: `token` goes in the Admission-Token header of holds/books."""

    show_id: int
    token: str


class BookingSettled(Struct, tag="booking", tag_field="type", omit_defaults=True):
    """A queued booking of the socket's customer settled (app/booking_queue.py)."""

    show_id: int
    booking_id: str
    status: str
    reason: str | None = None


class Error(Struct, tag="error", tag_field="type", omit_defaults=True):
    code: str
    message: str
    show_id: int | None = None


# Every server frame but the snapshots (which share the tag "snapshot"; a snapshot with
# "encoding" is an RleSnapshot): what a client can decode frames with.
LiveFrame = (
    Seats
    | ShowChanged
    | Announcement
    | Presence
    | Pong
    | Error
    | QueuePosition
    | Admitted
    | BookingSettled
)


# ---- a server frame on the wire ----


class Outgoing:
    """A server frame encoded once: its JSON text (for a server whose sockets we cannot
    write to directly) and the complete WebSocket text frame, written byte for byte to
    every watcher (server frames are unmasked, and compression is off, so the bytes are
    the same for every connection)."""

    __slots__ = ("text", "wire")

    def __init__(self, text: str) -> None:
        self.text = text
        self.wire = ws_text_frame(text.encode())


def ws_text_frame(payload: bytes) -> bytes:
    """RFC 6455 5.2: FIN + text opcode, no mask, 7/16/64-bit payload length."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 1 << 16:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + payload


STATUS_LETTER = {"AVAILABLE": "A", "HELD": "H", "BOOKED": "B", "BLOCKED": "X", "RESERVED": "R"}
LETTER_STATUS = {letter: status for status, letter in STATUS_LETTER.items()}


def rle_encode(states: Sequence[tuple[str, str, int]]) -> tuple[str, str]:
    """Runs of status letters and of versions, in the given (map) order."""
    status_runs: list[str] = []
    version_runs: list[str] = []
    prev_status = ""
    status_count = 0
    prev_version = -1
    version_count = 0
    for _, status, version in states:
        letter = STATUS_LETTER[status]
        if letter == prev_status:
            status_count += 1
        else:
            if status_count:
                status_runs.append(f"{prev_status}{status_count}")
            prev_status, status_count = letter, 1
        if version == prev_version:
            version_count += 1
        else:
            if version_count:
                version_runs.append(
                    f"{prev_version}*{version_count}" if version_count > 1 else str(prev_version)
                )
            prev_version, version_count = version, 1
    if status_count:
        status_runs.append(f"{prev_status}{status_count}")
    if version_count:
        version_runs.append(
            f"{prev_version}*{version_count}" if version_count > 1 else str(prev_version)
        )
    return "".join(status_runs), ",".join(version_runs)


def rle_decode(status: str, version: str) -> list[tuple[str, int]]:
    """Inverse of rle_encode: (status, version) per seat in map order (used by clients
    and tests; labels come from the map, GET /shows/{id}/seats)."""
    statuses: list[str] = []
    i = 0
    while i < len(status):
        letter = status[i]
        j = i + 1
        while j < len(status) and status[j].isdigit():
            j += 1
        statuses.extend([LETTER_STATUS[letter]] * int(status[i + 1 : j]))
        i = j
    versions: list[int] = []
    for run in version.split(",") if version else []:
        value, _, count = run.partition("*")
        versions.extend([int(value)] * (int(count) if count else 1))
    if len(statuses) != len(versions):
        raise ValueError("status and version runs disagree on the seat count")
    return list(zip(statuses, versions, strict=True))
