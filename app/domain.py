"""Seats, labels, statuses and layouts: pure functions, no I/O."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

MAX_SEATS_PER_REQUEST = 10
MAX_SEATS_PER_SHOW = 100_000
# `(?!\n)$`: Python's `$` also matches before a final newline ("A1\n"); the lookahead
# refuses it, and the pattern still means the same in the OpenAPI document (ECMA regex)
SEAT_LABEL = re.compile(r"^[A-Z]{1,3}[1-9][0-9]{0,3}(?!\n)$")
# ids a client holds: "<show_id>.<random>", so the show (and through it the shard) is in the id
CLIENT_ID = re.compile(r"^([1-9][0-9]{0,15})\.([A-Za-z0-9_-]{16,64})$")


class SeatStatus(StrEnum):
    AVAILABLE = "AVAILABLE"
    HELD = "HELD"
    BOOKED = "BOOKED"


class ShowStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    ON_SALE = "ON_SALE"
    CANCELLED = "CANCELLED"
    ENDED = "ENDED"


# Status moves an admin may make (DESIGN: SCHEDULED <-> ON_SALE, either -> ENDED, any but
# ENDED -> CANCELLED; nothing leaves ENDED or CANCELLED). Staying put is always allowed.
STATUS_MOVES: dict[ShowStatus, frozenset[ShowStatus]] = {
    ShowStatus.SCHEDULED: frozenset({ShowStatus.ON_SALE, ShowStatus.ENDED, ShowStatus.CANCELLED}),
    ShowStatus.ON_SALE: frozenset({ShowStatus.SCHEDULED, ShowStatus.ENDED, ShowStatus.CANCELLED}),
    ShowStatus.ENDED: frozenset(),
    ShowStatus.CANCELLED: frozenset(),
}


def status_move_allowed(current: str, wanted: str) -> bool:
    return current == wanted or ShowStatus(wanted) in STATUS_MOVES[ShowStatus(current)]


class BookingStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


def row_label(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA, 701 -> ZZ, 702 -> AAA (bijective base 26)."""
    if index < 0:
        raise ValueError("row index must be >= 0")
    letters = []
    n = index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters.append(chr(ord("A") + rem))
    return "".join(reversed(letters))


def row_index(label: str) -> int:
    """Inverse of row_label."""
    n = 0
    for ch in label:
        n = n * 26 + (ord(ch) - ord("A") + 1)
    return n - 1


def split_label(label: str) -> tuple[str, int]:
    """'AB12' -> ('AB', 12)."""
    digits = len(label.rstrip("0123456789"))
    return label[:digits], int(label[digits:])


def new_client_id(show_id: int) -> str:
    """An unguessable id that carries its show (and so routes to its shard without a scan)."""
    return f"{show_id}.{secrets.token_urlsafe(18)}"


def show_of_client_id(client_id: str) -> int | None:
    match = CLIENT_ID.match(client_id)
    return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class SeatSpec:
    label: str
    section: str
    category: str
    price_cents: int
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class SectionSpec:
    name: str
    rows: int
    seats_per_row: int
    category: str = "standard"
    price_cents: int = 0
    x: float | None = None
    y: float | None = None


def layout_seats(sections: list[SectionSpec]) -> list[SeatSpec]:
    """Rows are lettered continuously across sections so every label is unique in a show.

    Without explicit x/y, sections stack top to bottom with a one-row gap between them.
    """
    seats: list[SeatSpec] = []
    next_row = 0
    cursor_y = 0.0
    for section in sections:
        origin_x = section.x if section.x is not None else 0.0
        origin_y = section.y if section.y is not None else cursor_y
        for r in range(section.rows):
            row = row_label(next_row + r)
            for number in range(1, section.seats_per_row + 1):
                seats.append(
                    SeatSpec(
                        label=f"{row}{number}",
                        section=section.name,
                        category=section.category,
                        price_cents=section.price_cents,
                        x=origin_x + number - 1,
                        y=origin_y + r,
                    )
                )
        next_row += section.rows
        cursor_y = max(cursor_y, origin_y + section.rows + 1)
    return seats
