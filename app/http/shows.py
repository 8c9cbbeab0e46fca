"""Public reads: the show list, one show, its seat map and its availability."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.compression import IDENTITY, Body, negotiate
from app.errors import ShardUnavailable
from app.http.io import JSONResponse, path_show_id
from app.services import services

STALE = {"Warning": '110 - "stale seat map"'}


async def list_shows(request: Request) -> Response:
    svc = services(request)
    shows = await svc.catalog.list_all()
    for show in shows.shows:
        show.queue = svc.waiting_rooms.info(show.id)
    return JSONResponse(shows)


async def get_show(request: Request) -> Response:
    svc = services(request)
    show = await svc.catalog.get(path_show_id(request))
    show.queue = svc.waiting_rooms.info(show.id)  # with its length, for kiosks
    return JSONResponse(show)


async def get_seats(request: Request) -> Response:
    """The seat map (see SeatMaps: reused while exact; `Cache-Control: no-cache` asks for
    one exact as of after the request arrived), in the coding Accept-Encoding prefers of
    br, gzip and identity: each kept map is compressed once per coding. While the show's
    shard is down, the last map this server served is returned marked stale."""
    svc = services(request)
    show_id = path_show_id(request)
    _, shard = await svc.router.for_show(show_id)
    fresh = "no-cache" in request.headers.get("cache-control", "")
    coding = negotiate(request.headers.get("accept-encoding"))
    if shard.breaker.is_open and (stale := svc.seat_maps.last(show_id)) is not None:
        return seat_map_response(stale, coding, STALE)
    try:
        return seat_map_response(await svc.seat_maps.get(show_id, fresh=fresh), coding)
    except ShardUnavailable:
        stale = svc.seat_maps.last(show_id)
        if stale is None:
            raise
        return seat_map_response(stale, coding, STALE)


def seat_map_response(body: Body, coding: str, headers: dict[str, str] | None = None) -> Response:
    headers = {**(headers or {}), "Vary": "Accept-Encoding"}
    if coding != IDENTITY:
        headers["Content-Encoding"] = coding
    return Response(body.coded(coding), media_type="application/json", headers=headers)


async def get_availability(request: Request) -> Response:
    return JSONResponse(await services(request).catalog.availability(path_show_id(request)))
