"""The waiting room's customer side: join a show's queue, ask where you are."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.http.access import caller, counted_caller
from app.http.io import JSONResponse, path_show_id
from app.services import services


async def join_queue(request: Request) -> Response:
    """Join (a second join keeps the first place)."""
    who = counted_caller(request)
    place = await services(request).waiting_rooms.join(path_show_id(request), who.user_id)
    return JSONResponse(place, status_code=201)


async def queue_place(request: Request) -> Response:
    who = caller(request)
    place = await services(request).waiting_rooms.place(path_show_id(request), who.user_id)
    return JSONResponse(place)
