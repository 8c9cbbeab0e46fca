"""Public reads: the show list, one show, its seat map and its availability."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from app import wire
from app.errors import ShardUnavailable
from app.http.io import JSONResponse, path_show_id
from app.seatmap import read_seats
from app.services import services

SEAT_MAP_CACHE_SHOWS = 64


async def list_shows(request: Request) -> Response:
    return JSONResponse(await services(request).catalog.list_all())


async def get_show(request: Request) -> Response:
    return JSONResponse(await services(request).catalog.get(path_show_id(request)))


async def get_seats(request: Request) -> Response:
    """The seat map. The offset is read before the seats, so replaying from it misses nothing.

    While the show's shard is down, the last map this server served is returned marked stale.
    """
    svc = services(request)
    show_id = path_show_id(request)
    _, shard = await svc.router.for_show(show_id)
    try:
        offset = await svc.realtime.position(show_id)
        seats = await read_seats(shard, show_id)
        if not seats:
            # every show has seats: none here means it was just moved to another shard
            _, shard = await svc.router.for_show(show_id, fresh=True)
            seats = await read_seats(shard, show_id)
    except ShardUnavailable:
        cached = svc.seat_map_cache.get(show_id)
        if cached is None:
            raise
        stale = msgspec.json.decode(cached, type=wire.SeatMap)
        stale.stale = True
        return JSONResponse(stale, headers={"Warning": '110 - "stale seat map"'})
    seat_map = wire.SeatMap(show_id, offset, seats)
    body = msgspec.json.encode(seat_map)
    cache = svc.seat_map_cache
    cache.pop(show_id, None)
    if len(cache) >= SEAT_MAP_CACHE_SHOWS:
        cache.pop(next(iter(cache)))
    cache[show_id] = body
    return Response(body, media_type="application/json")


async def get_availability(request: Request) -> Response:
    return JSONResponse(await services(request).catalog.availability(path_show_id(request)))
