"""HTTP bodies as msgspec Structs: decoded once at the edge, nothing downstream re-validates."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

from app.domain import MAX_SEATS_PER_REQUEST, MAX_SEATS_PER_SHOW, SEAT_LABEL, ShowStatus

SeatLabel = Annotated[str, Meta(pattern=SEAT_LABEL.pattern, description="row letters + number")]
SeatList = Annotated[list[SeatLabel], Meta(min_length=1, max_length=MAX_SEATS_PER_REQUEST)]
ShowId = Annotated[int, Meta(ge=1, le=2**53)]
# PostgreSQL's text cannot hold a NUL character: refused here, before any database sees it
NO_NUL = r"^[^\x00]*$"
Title = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]
HoldSeconds = Annotated[int, Meta(ge=5, le=3600)]
SeatsPerCustomer = Annotated[
    int, Meta(ge=1, le=10_000, description="seats one customer may hold and book in this show")
]
DEFAULT_SEATS_PER_CUSTOMER = 10
# an instant: a timezone is required ("2026-12-01T20:00:00Z"); `format: date-time` in the schema
Instant = Annotated[datetime, Meta(tz=True)]


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
    name: Annotated[str, Meta(min_length=1, max_length=60, pattern=NO_NUL)]
    rows: Annotated[int, Meta(ge=1, le=702)]
    seats_per_row: Annotated[int, Meta(ge=1, le=9999)]
    category: Annotated[str, Meta(min_length=1, max_length=40, pattern=NO_NUL)] = "standard"
    price_cents: Annotated[int, Meta(ge=0, le=10_000_000)] = 0
    x: float | None = None
    y: float | None = None


class CreateShow(Struct, forbid_unknown_fields=True):
    """A layout is either `rows` + `seats_per_row` (one section) or `sections`, never both."""

    title: Title
    venue: Title
    starts_at: Instant
    hold_seconds: HoldSeconds | None = None
    status: ShowStatus = ShowStatus.ON_SALE
    max_seats_per_customer: SeatsPerCustomer = DEFAULT_SEATS_PER_CUSTOMER
    # left out rather than null: the schema then states the layout rule exactly (LAYOUT_RULE)
    rows: Annotated[int, Meta(ge=1, le=702)] | UnsetType = UNSET
    seats_per_row: Annotated[int, Meta(ge=1, le=9999)] | UnsetType = UNSET
    sections: Annotated[list[SectionBody], Meta(min_length=1, max_length=100)] | UnsetType = UNSET

    def __post_init__(self) -> None:
        shorthand = self.rows is not UNSET or self.seats_per_row is not UNSET
        if shorthand == (self.sections is not UNSET):
            raise ValueError("give either rows + seats_per_row or sections")
        if shorthand and (self.rows is UNSET or self.seats_per_row is UNSET):
            raise ValueError("rows and seats_per_row go together")
        if self.sections is not UNSET:
            if len({s.name for s in self.sections}) != len(self.sections):
                raise ValueError("section names must be distinct")
            total_rows = sum(s.rows for s in self.sections)
            if total_rows > 18_278:  # ZZZ
                raise ValueError("too many rows (the last row label is ZZZ)")
            total = sum(s.rows * s.seats_per_row for s in self.sections)
        else:
            assert self.rows is not UNSET and self.seats_per_row is not UNSET
            total = self.rows * self.seats_per_row
        if total > MAX_SEATS_PER_SHOW:
            raise ValueError(f"a show has at most {MAX_SEATS_PER_SHOW} seats")


# CreateShow's layout rule (its __post_init__) in JSON Schema, for /openapi.json
LAYOUT_RULE = {"oneOf": [{"required": ["rows", "seats_per_row"]}, {"required": ["sections"]}]}


class UpdateShow(Struct, forbid_unknown_fields=True):
    title: Title | None = None
    starts_at: Instant | None = None
    status: ShowStatus | None = None
    max_seats_per_customer: SeatsPerCustomer | None = None

    def __post_init__(self) -> None:
        if all(getattr(self, name) is None for name in self.__struct_fields__):
            raise ValueError(f"nothing to change: give {', '.join(self.__struct_fields__)}")


# A booking reference: 8 characters without look-alikes (no 0/O, 1/I), made by the
# shard's booking_reference() (sql/shard/006_booking_reference.sql)
REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
BookingReference = Annotated[
    str, Meta(pattern=f"^[{REFERENCE_ALPHABET}]{{8}}$", description="8 characters, as printed")
]
UserId = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]


class BookingSearch(Struct, forbid_unknown_fields=True):
    """GET /admin/bookings' query: at least one filter; a seat needs its show."""

    reference: BookingReference | None = None
    user: UserId | None = None
    show_id: ShowId | None = None
    seat: SeatLabel | None = None

    def __post_init__(self) -> None:
        if self.reference is None and self.user is None and self.show_id is None:
            raise ValueError("give a reference, a user or a show_id (a seat needs its show_id)")
        if self.seat is not None and self.show_id is None:
            raise ValueError("a seat is found within a show: give show_id with seat")


def normalise_reference(text: str) -> str:
    """A reference as a person types it: any case, spaces or dashes between groups."""
    return "".join(c for c in text.upper() if c not in " -")


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
    max_seats_per_customer: int
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
    # 8 characters a person reads out and types (BOOKING_REFERENCE), unique in the show
    reference: str | None = None


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
    status: str | None = None  # the show's status, when it refused the request
    limit: int | None = None  # the show's max_seats_per_customer, with seat_limit


class Status(Struct):
    status: str


class Ready(Struct, omit_defaults=True):
    status: str
    failed: list[str] = field(default_factory=list)


encoder = msgspec.json.Encoder()
