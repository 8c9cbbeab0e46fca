"""What the seat functions answer (sql/shard/functions/seat_transactions.sql): the outcomes,
a typed result per function, and the error each refusal becomes.

Each result's fields are its function's result columns, in order (tests/test_seat_rules.py
holds the two to each other), and every outcome the SQL can give is an Outcome: an outcome
this module does not know fails at once (ValueError), not later as an odd response.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

import msgspec

from app.errors import (
    BookingNotCancellable,
    ExtendLimit,
    HoldExpired,
    IdempotencyKeyReused,
    ModexError,
    NoAdjacentSeats,
    NotFound,
    ReservedSeats,
    SeatLimit,
    SeatsUnavailable,
    ShowEnded,
    ShowNotFound,
    ShowNotOnSale,
    SingleSeat,
    UnknownSeats,
)


class Outcome(StrEnum):
    # done
    OK = "ok"  # check_claim(): the claim may go ahead
    HELD = "held"
    EXTENDED = "extended"
    RELEASED = "released"
    CONFIRMED = "confirmed"
    BOOKED = "booked"
    EARLIER = "earlier"  # a retry under the same Idempotency-Key: the booking made before
    CANCELLED = "cancelled"
    CHANGED = "changed"
    # not here: route again, or run alone
    MOVED = "moved"  # the show moved to another shard
    BUSY = "busy"  # seat_batch(): its rows were locked elsewhere
    # refused
    NO_SHOW = "no_show"
    NOT_FOUND = "not_found"
    NOT_ACTIVE = "not_active"
    NOT_ON_SALE = "not_on_sale"
    SHOW_ENDED = "show_ended"
    UNKNOWN = "unknown"
    TAKEN = "taken"
    CHANNEL = "channel"
    SEAT_LIMIT = "seat_limit"
    SINGLE_SEAT = "single_seat"
    NO_ADJACENT_SEATS = "no_adjacent_seats"
    EXPIRED = "expired"
    LIMIT = "limit"
    KEY_REUSED = "key_reused"
    NOT_CANCELLABLE = "not_cancellable"


# gc=False: a result holds no reference cycles and lives for one request
class ClaimResult(msgspec.Struct, frozen=True, gc=False):
    """What a claim (hold, best available, one-step book) answers first: the columns its
    refusals name."""

    outcome: Outcome
    detail: list[str] | None  # held: the seats; refused: the seats that refused it
    show_status: str | None  # not_on_sale
    seat_limit: int | None  # seat_limit

    def refusal(self, show_id: int, what: str) -> ModexError:
        return refusal(
            self.outcome,
            show_id,
            what,
            seats=self.detail,
            show_status=self.show_status,
            seat_limit=self.seat_limit,
        )


class HoldResult(ClaimResult, frozen=True, gc=False):
    """hold_seats() and best_seats()."""

    hold_until: datetime | None
    event_id: int | None
    event: str | None


class ExtendResult(msgspec.Struct, frozen=True, gc=False):
    outcome: Outcome
    detail: list[str] | None  # the hold's seats
    show_status: str | None
    hold_until: datetime | None
    extensions_used: int | None


class ReleaseResult(msgspec.Struct, frozen=True, gc=False):
    outcome: Outcome
    event_id: int | None
    event: str | None


class ConfirmResult(msgspec.Struct, frozen=True, gc=False):
    outcome: Outcome
    show_status: str | None
    booking: str | None  # the booking, as row_to_json
    event_id: int | None
    event: str | None


class BookResult(ClaimResult, frozen=True, gc=False):
    booking: str | None
    event_id: int | None
    event: str | None


class CancelResult(msgspec.Struct, frozen=True, gc=False):
    outcome: Outcome
    show_status: str | None  # show_ended
    booking_status: str | None  # not_cancellable
    booking: str | None
    event_id: int | None
    event: str | None


class SetSeatsResult(msgspec.Struct, frozen=True, gc=False):
    outcome: Outcome
    detail: list[str] | None
    event_id: int | None
    event: str | None


# each function's result type: a request that ran in seat_batch() gets its function's
RESULTS: dict[str, type[msgspec.Struct]] = {
    "hold_seats": HoldResult,
    "best_seats": HoldResult,
    "extend_hold": ExtendResult,
    "release_hold": ReleaseResult,
    "confirm_hold": ConfirmResult,
    "book_seats": BookResult,
    "cancel_booking": CancelResult,
    "set_seats": SetSeatsResult,
}

Result = TypeVar("Result", bound=msgspec.Struct)


def result_of(kind: type[Result], row: Mapping[str, Any]) -> Result:
    """A function's row (or its request's row of seat_batch(), which has more columns) as
    its result type; columns are read by name."""
    names = kind.__struct_fields__
    return kind(Outcome(row["outcome"]), *[row[name] for name in names[1:]])


def refusal(
    outcome: Outcome,
    show_id: int,
    what: str,
    *,
    seats: list[str] | None = None,
    show_status: str | None = None,
    seat_limit: int | None = None,
    booking_status: str | None = None,
) -> ModexError:
    """The error for a function's refusal outcome (`what`: what was refused, for the
    message; the other arguments: the result's columns the outcome names)."""
    seats = list(seats or [])
    match outcome:
        case Outcome.NO_SHOW:
            return ShowNotFound(f"show {show_id} does not exist")
        case Outcome.NOT_ON_SALE:
            return ShowNotOnSale(f"this show is {show_status or 'not on sale'}", status=show_status)
        case Outcome.SHOW_ENDED:
            return ShowEnded(
                f"this show has ended: {what} can no longer be cancelled", status=show_status
            )
        case Outcome.SEAT_LIMIT:
            return SeatLimit(
                f"one customer may have at most {seat_limit} seats of this show, held and booked",
                limit=seat_limit,
            )
        case Outcome.UNKNOWN:
            return UnknownSeats(f"show {show_id} has no seat {', '.join(seats)}", seats=seats)
        case Outcome.TAKEN:
            return SeatsUnavailable(f"not available: {', '.join(seats)}", seats=seats)
        case Outcome.CHANNEL:
            return ReservedSeats(
                f"kept for a sales channel your token does not list: {', '.join(seats)}",
                seats=seats,
            )
        case Outcome.SINGLE_SEAT:
            return SingleSeat(
                f"this would leave {', '.join(seats)} alone: take it too, or choose other seats",
                seats=seats,
            )
        case Outcome.NO_ADJACENT_SEATS:
            return NoAdjacentSeats(f"no row has {what} free side by side")
        case Outcome.NOT_FOUND | Outcome.NOT_ACTIVE:
            return NotFound(f"{what} does not exist or is no longer active")
        case Outcome.EXPIRED:
            return HoldExpired(f"{what} has expired or ended")
        case Outcome.LIMIT:
            return ExtendLimit(f"{what} cannot be extended again")
        case Outcome.KEY_REUSED:
            return IdempotencyKeyReused(
                "this Idempotency-Key was used for another request (another hold or other seats)"
            )
        case Outcome.NOT_CANCELLABLE:
            return BookingNotCancellable(f"booking is {booking_status or 'not confirmed'}")
    raise AssertionError(f"unexpected outcome {outcome!r}")
