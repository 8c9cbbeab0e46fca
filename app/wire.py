"""HTTP bodies as msgspec Structs: decoded once at the edge, nothing downstream re-validates."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta, Struct, field

from app.domain import MAX_SEATS_PER_REQUEST, MAX_SEATS_PER_SHOW, SEAT_LABEL, ShowStatus

SeatLabel = Annotated[str, Meta(pattern=SEAT_LABEL.pattern, description="row letters + number")]
SeatList = Annotated[list[SeatLabel], Meta(min_length=1, max_length=MAX_SEATS_PER_REQUEST)]
ShowId = Annotated[int, Meta(ge=1, le=2**53)]
Title = Annotated[str, Meta(min_length=1, max_length=200)]
HoldSeconds = Annotated[int, Meta(ge=5, le=3600)]


def _no_duplicates(seats: list[str]) -> None:
    if len(set(seats)) != len(seats):
        raise ValueError("seat labels must be distinct")


class HoldRequest(Struct, forbid_unknown_fields=True):
    seats: SeatList

    def __post_init__(self) -> None:
        _no_duplicates(self.seats)


class BookRequest(Struct, forbid_unknown_fields=True):
    """The seed's one-step booking body."""

    seatNumbers: SeatList

    def __post_init__(self) -> None:
        _no_duplicates(self.seatNumbers)


class SectionBody(Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=60)]
    rows: Annotated[int, Meta(ge=1, le=702)]
    seats_per_row: Annotated[int, Meta(ge=1, le=9999)]
    category: Annotated[str, Meta(min_length=1, max_length=40)] = "standard"
    price_cents: Annotated[int, Meta(ge=0, le=10_000_000)] = 0
    x: float | None = None
    y: float | None = None


class CreateShow(Struct, forbid_unknown_fields=True):
    title: Title
    venue: Title
    starts_at: datetime
    hold_seconds: HoldSeconds | None = None
    status: ShowStatus = ShowStatus.ON_SALE
    rows: Annotated[int, Meta(ge=1, le=702)] | None = None
    seats_per_row: Annotated[int, Meta(ge=1, le=9999)] | None = None
    sections: Annotated[list[SectionBody], Meta(min_length=1, max_length=100)] | None = None

    def __post_init__(self) -> None:
        if self.starts_at.tzinfo is None:
            raise ValueError("starts_at needs a timezone, e.g. 2026-12-01T20:00:00Z")
        shorthand = self.rows is not None or self.seats_per_row is not None
        if shorthand == (self.sections is not None):
            raise ValueError("give either rows + seats_per_row or sections")
        if shorthand and (self.rows is None or self.seats_per_row is None):
            raise ValueError("rows and seats_per_row go together")
        if self.sections is not None:
            if len({s.name for s in self.sections}) != len(self.sections):
                raise ValueError("section names must be distinct")
            total_rows = sum(s.rows for s in self.sections)
            if total_rows > 18_278:  # ZZZ
                raise ValueError("too many rows (the last row label is ZZZ)")
            total = sum(s.rows * s.seats_per_row for s in self.sections)
        else:
            total = (self.rows or 0) * (self.seats_per_row or 0)
        if total > MAX_SEATS_PER_SHOW:
            raise ValueError(f"a show has at most {MAX_SEATS_PER_SHOW} seats")


class UpdateShow(Struct, forbid_unknown_fields=True):
    title: Title | None = None
    starts_at: datetime | None = None
    status: ShowStatus | None = None

    def __post_init__(self) -> None:
        if self.title is None and self.starts_at is None and self.status is None:
            raise ValueError("nothing to change: give title, starts_at or status")
        if self.starts_at is not None and self.starts_at.tzinfo is None:
            raise ValueError("starts_at needs a timezone")


class BroadcastRequest(Struct, forbid_unknown_fields=True):
    message: Annotated[str, Meta(min_length=1, max_length=1000)]


# ---- responses ----


class Show(Struct):
    id: int
    title: str
    venue: str
    starts_at: datetime
    status: str
    hold_seconds: int
    shard: int
    seats_total: int
    seats_available: int | None = None


class ShowList(Struct):
    shows: list[Show]


class Seat(Struct):
    label: str
    status: str
    version: int
    section: str
    category: str
    price_cents: int
    x: float
    y: float


class SeatMap(Struct):
    show_id: int
    offset: str
    seats: list[Seat]
    stale: bool = False


class Availability(Struct):
    show_id: int
    AVAILABLE: int
    HELD: int
    BOOKED: int
    total: int
    stale: bool = False


class Hold(Struct):
    hold_id: str
    show_id: int
    seats: list[str]
    expires_at: datetime
    extensions_left: int


class Booking(Struct):
    id: str
    show_id: int
    user_id: str
    seats: list[str]
    status: str
    created_at: datetime
    hold_id: str | None = None


class BookingList(Struct):
    bookings: list[Booking]


class Token(Struct):
    token: str
    user_id: str
    role: str
    expires_at: datetime


class Error(Struct, omit_defaults=True):
    error: str
    message: str
    seats: list[str] | None = None
    failed: list[str] | None = None
    retry_after: int | None = None


class Status(Struct):
    status: str


class Ready(Struct, omit_defaults=True):
    status: str
    failed: list[str] = field(default_factory=list)


encoder = msgspec.json.Encoder()
