"""Admins create and change shows and talk to everyone watching one (the route table,
app/http/api.py, lets only admins in)."""

from __future__ import annotations

import logging

import msgspec
from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response

from app import wire
from app.errors import InvalidBody, LiveUpdatesUnavailable
from app.http.access import caller
from app.http.io import JSONResponse, decode_body, idempotency_key, path_show_id
from app.realtime.frames import AnnouncementEvent
from app.reports import ShowReports, report_csv
from app.services import services
from app.shows import show_event

log = logging.getLogger("app.admin")


async def create_show(request: Request) -> Response:
    body = await decode_body(request, wire.CreateShow)
    show = await services(request).catalog.create(body, idempotency_key(request))
    return JSONResponse(show, status_code=201)


async def delete_show(request: Request) -> Response:
    await services(request).catalog.delete(path_show_id(request))
    return Response(status_code=204)


async def update_show(request: Request) -> Response:
    show_id = path_show_id(request)
    body = await decode_body(request, wire.UpdateShow)
    svc = services(request)
    show = await svc.catalog.update(show_id, body)
    if body.queue is not UNSET:  # the waiting room lives in Redis (app/admission.py)
        await svc.waiting_rooms.configure(show_id, body.queue)
    show.queue = svc.waiting_rooms.info(show_id)
    try:
        await svc.realtime.publish_show(show_event(show))
    except LiveUpdatesUnavailable:
        # the change is saved; watchers see it when they next load the show
        log.warning("show change not broadcast: Redis unavailable", extra={"show_id": show_id})
    return JSONResponse(show)


async def broadcast(request: Request) -> Response:
    show_id = path_show_id(request)
    body = await decode_body(request, wire.BroadcastRequest)
    svc = services(request)
    await svc.router.show(show_id)  # 404 for an unknown show
    await svc.realtime.publish_show(AnnouncementEvent(show_id=show_id, message=body.message))
    return JSONResponse(wire.Status("accepted"), status_code=202)


async def search_bookings(request: Request) -> Response:
    """The box office finds a booking by reference, customer, show or seat."""
    params = {k: v.strip() for k, v in request.query_params.items() if v.strip()}
    if "reference" in params:
        params["reference"] = wire.normalise_reference(params["reference"])
    try:
        query = msgspec.convert(params, wire.BookingSearch, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidBody(str(exc)) from None
    bookings = await services(request).box_office.search(query)
    return JSONResponse(wire.BookingList(bookings))


async def change_seats(request: Request) -> Response:
    """Seats off sale, kept for a channel, or back on general sale; pushed live."""
    who = caller(request)
    show_id = path_show_id(request)
    body = await decode_body(request, wire.SeatStatusChange)
    changed = await services(request).box_office.set_seats(show_id, body, who.user_id)
    return JSONResponse(changed)


async def seat_audit(request: Request) -> Response:
    show_id = path_show_id(request)
    params = {k: v.strip() for k, v in request.query_params.items() if v.strip()}
    try:
        query = msgspec.convert(params, wire.AuditQuery)
    except msgspec.ValidationError as exc:
        raise InvalidBody(str(exc)) from None
    return JSONResponse(await ShowReports(services(request).router).audit(show_id, query))


async def sales_report(request: Request) -> Response:
    """JSON, or CSV when the client's Accept names text/csv."""
    show_id = path_show_id(request)
    report = await ShowReports(services(request).router).report(show_id)
    if "text/csv" in request.headers.get("accept", ""):
        disposition = f'attachment; filename="show-{show_id}-report.csv"'
        return Response(
            report_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": disposition},
        )
    return JSONResponse(report)
