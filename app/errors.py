"""One exception per client-facing failure; app/http/errors.py maps each to a status code."""

from __future__ import annotations


class ModexError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(ModexError):
    status = 404
    code = "not_found"


class ShowNotFound(NotFound):
    """Same code as every other 404: a client need not tell an unknown show from an
    unknown path or id."""


class UnknownSeats(ModexError):
    status = 422
    code = "unknown_seats"


class SeatsUnavailable(ModexError):
    status = 409
    code = "seats_unavailable"


class ShowNotOnSale(ModexError):
    status = 409
    code = "show_not_on_sale"


class InvalidStatusChange(ModexError):
    """A show status move that app.domain.STATUS_MOVES does not allow."""

    status = 409
    code = "invalid_status_change"


class ShowEnded(ModexError):
    """A booking of a show that has ENDED: it can no longer be cancelled."""

    status = 409
    code = "show_ended"


class SeatLimit(ModexError):
    """The customer would have more than the show's max_seats_per_customer seats."""

    status = 409
    code = "seat_limit"


class ShowHasBookings(ModexError):
    """A show with bookings cannot be deleted (cancel it instead)."""

    status = 409
    code = "show_has_bookings"


class HoldExpired(ModexError):
    status = 409
    code = "hold_expired"


class ExtendLimit(ModexError):
    status = 409
    code = "extend_limit_reached"


class BookingNotCancellable(ModexError):
    status = 409
    code = "booking_not_cancellable"


class Contention(ModexError):
    """A lock timeout, deadlock or serialization failure that survived its retry."""

    status = 409
    code = "contention"


class ShardUnavailable(ModexError):
    status = 503
    code = "shard_unavailable"


class DatabaseUnavailable(ModexError):
    """A database connection failed outside a shard's breaker (the show directory, say)."""

    status = 503
    code = "database_unavailable"


class LiveUpdatesUnavailable(ModexError):
    """Redis is away: a show change or announcement cannot reach watchers now."""

    status = 503
    code = "live_updates_unavailable"


class RedisUnavailable(ModexError):
    """Redis failed where the caller had nothing better to do (a waiting room, a queued
    booking's submit): the client may try again."""

    status = 503
    code = "redis_unavailable"


class Unauthorized(ModexError):
    status = 401
    code = "unauthorized"


class Forbidden(ModexError):
    status = 403
    code = "forbidden"


class RateLimited(ModexError):
    status = 429
    code = "rate_limited"


class InvalidBody(ModexError):
    status = 422
    code = "invalid_body"


class MalformedJson(ModexError):
    status = 400
    code = "malformed_json"


class BodyTooLarge(ModexError):
    status = 413
    code = "body_too_large"


class IdempotencyKeyReused(ModexError):
    status = 422
    code = "idempotency_key_reused"


class ReservedSeats(ModexError):
    """Seats kept for a channel the caller's token does not list."""

    status = 403
    code = "reserved_seats"


class SingleSeat(ModexError):
    """The show enforces its single-seat rule and the claim would strand `seats`."""

    status = 409
    code = "single_seat"


class NoAdjacentSeats(ModexError):
    """Best available found no row with the seats asked for side by side."""

    status = 409
    code = "no_adjacent_seats"
