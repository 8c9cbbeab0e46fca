"""Customers' holds and bookings. Each handler: who, parse, one call, respond (the route
table, app/http/api.py, names and checks the roles that may call each)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app import wire
from app.admission import ADMISSION_HEADER
from app.booking_queue import prefers_async
from app.errors import NotFound
from app.http.access import caller, counted_caller
from app.http.io import JSONResponse, decode_body, idempotency_key, path_client_id, path_show_id
from app.services import services


async def create_hold(request: Request) -> Response:
    who = counted_caller(request)
    show_id = path_show_id(request)
    body = await decode_body(request, wire.HoldRequest)
    svc = services(request)
    office = svc.box_office
    admission = request.headers.get(ADMISSION_HEADER)
    with svc.waiting_rooms.admitted(show_id, who.user_id, admission):
        if isinstance(body.best, wire.BestAvailable):
            hold = await office.hold_best(show_id, body.best, who.user_id, who.channels)
        else:
            assert isinstance(body.seats, list)  # HoldRequest has one or the other
            hold = await office.hold(show_id, body.seats, who.user_id, who.channels)
    return JSONResponse(hold, status_code=201)


async def extend_hold(request: Request) -> Response:
    who = counted_caller(request)
    hold = await services(request).box_office.extend(
        path_client_id(request, "hold_id"), who.user_id
    )
    return JSONResponse(hold)


async def release_hold(request: Request) -> Response:
    who = counted_caller(request)
    await services(request).box_office.release(path_client_id(request, "hold_id"), who.user_id)
    return Response(status_code=204)


async def confirm_hold(request: Request) -> Response:
    who = counted_caller(request)
    booking = await services(request).box_office.confirm(
        path_client_id(request, "hold_id"), who.user_id, idempotency_key(request)
    )
    return JSONResponse(booking, status_code=201)


async def book_seats(request: Request) -> Response:
    who = counted_caller(request)
    show_id = path_show_id(request)
    body = await decode_body(request, wire.BookRequest)
    svc = services(request)
    admission = request.headers.get(ADMISSION_HEADER)
    if prefers_async(request.headers.get("prefer")):  # the seed's queued booking
        svc.waiting_rooms.check(show_id, who.user_id, admission)
        queued = await svc.booking_queue.submit(
            show_id, body.seatNumbers, who.user_id, idempotency_key(request), who.channels
        )
        headers = {
            "Location": f"/bookings/{queued.booking_id}",
            "Preference-Applied": "respond-async",
        }
        return JSONResponse(queued, status_code=202, headers=headers)
    with svc.waiting_rooms.admitted(show_id, who.user_id, admission):
        booking = await svc.box_office.book(
            show_id, body.seatNumbers, who.user_id, idempotency_key(request), who.channels
        )
    return JSONResponse(booking, status_code=201)


async def get_booking(request: Request) -> Response:
    who = caller(request)
    svc = services(request)
    booking_id = path_client_id(request, "booking_id")
    try:
        booking = await svc.box_office.booking(booking_id, who.user_id, who.is_admin)
    except NotFound:
        # a queued booking not booked yet (PENDING) or refused (FAILED, with the reason)
        queued = await svc.booking_queue.status(booking_id, who.user_id, who.is_admin)
        if queued is None:
            raise
        return JSONResponse(queued)
    return JSONResponse(booking)


async def my_bookings(request: Request) -> Response:
    who = caller(request)
    bookings = await services(request).box_office.bookings_of(who.user_id)
    return JSONResponse(wire.BookingList(bookings))


async def cancel_booking(request: Request) -> Response:
    who = counted_caller(request)
    booking = await services(request).box_office.cancel(
        path_client_id(request, "booking_id"), who.user_id, who.is_admin
    )
    return JSONResponse(booking)
