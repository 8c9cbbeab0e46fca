"""Public reads: the show list, one show, its seat map and its availability."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from app import wire
from app.errors import ShardUnavailable
from app.http.io import JSONResponse, path_show_id
from app.services import services


async def list_shows(request: Request) -> Response:
    return JSONResponse(await services(request).catalog.list_all())


async def get_show(request: Request) -> Response:
    return JSONResponse(await services(request).catalog.get(path_show_id(request)))


async def get_seats(request: Request) -> Response:
    """The seat map (see SeatMaps: reused while exact; `Cache-Control: no-cache` asks for a
    read made after the request arrived). While the show's shard is down, the last map this
    server served is returned marked stale."""
    svc = services(request)
    show_id = path_show_id(request)
    _, shard = await svc.router.for_show(show_id)
    fresh = "no-cache" in request.headers.get("cache-control", "")
    cached = svc.seat_maps.last(show_id)
    if cached is None or not shard.breaker.is_open:
        try:
            body = await svc.seat_maps.get(show_id, fresh=fresh)
            return Response(body, media_type="application/json")
        except ShardUnavailable:
            cached = svc.seat_maps.last(show_id)
            if cached is None:
                raise
    stale = msgspec.json.decode(cached, type=wire.SeatMap)
    stale.stale = True
    return JSONResponse(stale, headers={"Warning": '110 - "stale seat map"'})


async def get_availability(request: Request) -> Response:
    return JSONResponse(await services(request).catalog.availability(path_show_id(request)))
