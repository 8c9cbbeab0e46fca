"""HTTP bodies as msgspec Structs: decoded once at the edge, nothing downstream re-validates."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

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


Category = Annotated[str, Meta(min_length=1, max_length=40, pattern=NO_NUL)]
# a sales channel (press, vip, box-office): RESERVED seats name one, a token's `channels` lists them
Channel = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", description="a sales channel")]
SingleSeatRule = Literal["off", "enforce"]


class BestAvailable(Struct, forbid_unknown_fields=True):
    """The best `count` seats side by side in one row (of `category`); with `allow_split`,
    the best few groups when no row has them together."""

    count: Annotated[int, Meta(ge=1, le=MAX_SEATS_PER_REQUEST)]
    category: Category | None = None
    allow_split: bool = False


class HoldRequest(Struct, forbid_unknown_fields=True):
    """Either the seats by label, or `best` available."""

    seats: SeatList | UnsetType = UNSET
    best: BestAvailable | UnsetType = UNSET

    def __post_init__(self) -> None:
        if (self.seats is UNSET) == (self.best is UNSET):
            raise ValueError("give either seats or best")
        if self.seats is not UNSET:
            _no_duplicates(self.seats)


# HoldRequest's rule in JSON Schema, for /openapi.json
HOLD_RULE = {"oneOf": [{"required": ["seats"]}, {"required": ["best"]}]}


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
    # best available offers a section of higher quality first (then rows nearest the
    # stage, then seats nearest the centre)
    quality: Annotated[int, Meta(ge=0, le=100)] = 0


class CreateShow(Struct, forbid_unknown_fields=True):
    """A layout is either `rows` + `seats_per_row` (one section) or `sections`, never both."""

    title: Title
    venue: Title
    starts_at: Instant
    hold_seconds: HoldSeconds | None = None
    status: ShowStatus = ShowStatus.ON_SALE
    max_seats_per_customer: SeatsPerCustomer = DEFAULT_SEATS_PER_CUSTOMER
    single_seat_rule: SingleSeatRule = "off"
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


class QueueSettings(Struct, forbid_unknown_fields=True):
    """A show's waiting room (app/admission.py): arrivals before `opens_at` are drawn in
    random order at opening; `admit_per_minute` customers are let in per minute (with
    `adaptive`, between a quarter and twice that, following how holds fare)."""

    opens_at: Instant
    admit_per_minute: Annotated[int, Meta(ge=1, le=1_000_000)]
    adaptive: bool = False


class UpdateShow(Struct, forbid_unknown_fields=True):
    title: Title | None = None
    starts_at: Instant | None = None
    status: ShowStatus | None = None
    max_seats_per_customer: SeatsPerCustomer | None = None
    single_seat_rule: SingleSeatRule | None = None
    # the waiting room: settings turn it on (or change it), null turns it off
    queue: QueueSettings | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        if self.queue is UNSET and all(  # queue: null is a change (the room off)
            getattr(self, name) is None for name in self.__struct_fields__ if name != "queue"
        ):
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


class SeatStatusChange(Struct, forbid_unknown_fields=True):
    """An admin's change of seats: off sale (BLOCKED), kept for a `channel` (RESERVED), or
    back on general sale (AVAILABLE). `seats` left out, with AVAILABLE and a channel: every
    seat of that channel goes back on general sale."""

    status: Literal["AVAILABLE", "BLOCKED", "RESERVED"]
    seats: Annotated[list[SeatLabel], Meta(min_length=1, max_length=5000)] | UnsetType = UNSET
    channel: Channel | None = None

    def __post_init__(self) -> None:
        if self.seats is UNSET:
            if not (self.status == "AVAILABLE" and self.channel):
                raise ValueError("give seats (or AVAILABLE and a channel, to release it)")
            return
        _no_duplicates(self.seats)
        if (self.status == "RESERVED") != (self.channel is not None):
            raise ValueError("a channel goes with RESERVED, and RESERVED needs one")


class AuditQuery(Struct, forbid_unknown_fields=True):
    seat: SeatLabel | None = None
    user: Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)] | None = None


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
    single_seat_rule: str = "off"
    queue: QueueInfo | None = None  # the waiting room, while it is on


class QueueInfo(Struct, omit_defaults=True):
    opens_at: datetime
    admit_per_minute: int
    adaptive: bool = False
    # customers admitted per minute now (admit_per_minute x the adaptive factor)
    effective_per_minute: float | None = None
    waiting: int | None = None  # customers in the queue, not yet admitted


class QueuePlace(Struct, omit_defaults=True):
    """A customer's place in a waiting room: `position` is null until the draw at
    opening; once admitted, `admission` is the token holds and books need."""

    position: int | None
    eta_s: int
    admitted: bool = False
    admission: str | None = None
    expires_at: datetime | None = None  # the admission's end


class QueuedBooking(Struct, omit_defaults=True):
    """A booking accepted for the queue (202) and, while it is PENDING or once it FAILED,
    what GET /bookings/{id} answers (a Booking's fields, `id` = `booking_id`); `reason` is
    the error code of a FAILED one."""

    booking_id: str
    status: str
    id: str
    show_id: int
    user_id: str
    seats: list[str]
    created_at: datetime
    reason: str | None = None
    message: str | None = None


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


class SeatChange(Struct):
    label: str
    status: str
    version: int


class SeatsChanged(Struct):
    show_id: int
    seats: list[SeatChange]


class AuditEntry(Struct, omit_defaults=True):
    seat: str
    at: datetime
    action: str
    from_: str = field(name="from")
    to: str
    by: str | None = None
    hold_id: str | None = None
    booking_id: str | None = None
    request_id: str | None = None


class AuditTrail(Struct):
    show_id: int
    changes: list[AuditEntry]


class CategoryLine(Struct):
    category: str
    seats: int = 0
    available: int = 0
    held: int = 0
    booked: int = 0
    blocked: int = 0
    reserved: int = 0
    revenue_cents: int = 0  # the prices of its BOOKED seats


class ChannelLine(Struct):
    channel: str
    seats: int = 0  # the channel's seats: kept (RESERVED), held or booked through it
    reserved: int = 0
    held: int = 0
    booked: int = 0


class MinuteSales(Struct):
    minute: datetime
    seats: int  # booked in that minute (still booked now)
    total: int  # booked up to the end of that minute


class SalesReport(Struct):
    show_id: int
    at: datetime
    seats_total: int
    by_status: dict[str, int]
    by_category: list[CategoryLine]
    by_channel: list[ChannelLine]
    bookings: int  # confirmed
    revenue_cents: int
    holds_live: int
    seats_held_live: int
    sell_through: list[MinuteSales]  # minutes with sales, since the first


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
    # 8 characters a person reads out and types (BookingReference), unique in the show
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
