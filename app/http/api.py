"""The HTTP API as one table: the routes and /openapi.json are both built from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import wire
from app.auth import Role
from app.http import admin, booking, queue, shows, system
from app.http.access import Handler, authorized
from app.http.io import IDEMPOTENCY_KEY, MAX_BODY, JSONResponse

# who may call a route: its bearer token must carry one of these roles (none: anyone)
CUSTOMER = (Role.CUSTOMER,)
CUSTOMER_OR_ADMIN = (Role.CUSTOMER, Role.ADMIN)
ADMIN = (Role.ADMIN,)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    status: int = 200
    body: type | None = None
    response: type | None = None
    errors: tuple[int, ...] = ()
    auth: tuple[Role, ...] = ()  # enforced by api_routes (app/http/access.py)
    headers: tuple[str, ...] = ()
    query: type | None = None  # a Struct whose fields are the query parameters
    accepted: type | None = None  # the 202 answer to `Prefer: respond-async`


WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 422, 429, 503)
API: list[Endpoint] = [
    Endpoint("GET", "/health", system.health, "Liveness", response=wire.Status),
    Endpoint(
        "GET",
        "/ready",
        system.ready,
        "Readiness: every shard and Redis answer",
        response=wire.Ready,
        errors=(503,),
    ),
    Endpoint("GET", "/metrics", system.metrics, "Prometheus metrics (text format)"),
    Endpoint(
        "POST",
        "/auth/guest",
        system.guest_token,
        "A short-lived customer token (limited per client IP: MODEX_GUEST_TOKENS_PER_IP)",
        status=201,
        response=wire.Token,
        errors=(403, 429),
    ),
    Endpoint(
        "GET", "/shows", shows.list_shows, "Shows with seats available", response=wire.ShowList
    ),
    Endpoint(
        "GET", "/shows/{show_id}", shows.get_show, "One show", response=wire.Show, errors=(404,)
    ),
    Endpoint(
        "GET",
        "/shows/{show_id}/seats",
        shows.get_seats,
        "The seat map, with the offset to resume live updates from",
        response=wire.SeatMap,
        errors=(404, 503),
        headers=("Cache-Control",),
    ),
    Endpoint(
        "GET",
        "/shows/{show_id}/availability",
        shows.get_availability,
        "Seat counts by status (cached, invalidated on change)",
        response=wire.Availability,
        errors=(404,),
    ),
    Endpoint(
        "POST",
        "/shows/{show_id}/holds",
        booking.create_hold,
        "Hold 1-10 seats, all or nothing, by label or the best available (`best`: count, "
        "category?, allow_split?; 409 no_adjacent_seats); 409 seat_limit past the show's "
        "max_seats_per_customer (live holds and bookings together), 409 single_seat naming "
        "the seat a pick would strand (shows with single_seat_rule enforce), 403 "
        "reserved_seats for a channel's seats without that channel in the token",
        status=201,
        body=wire.HoldRequest,
        response=wire.Hold,
        errors=WRITE_ERRORS,
        auth=CUSTOMER,
        headers=("Admission-Token",),
    ),
    Endpoint(
        "POST",
        "/shows/{show_id}/book",
        booking.book_seats,
        "Book seats in one step (the seed's API); 409 seat_limit as for holds; an "
        "Idempotency-Key reused for other seats is 422 idempotency_key_reused; with "
        "`Prefer: respond-async`, 202 and a PENDING booking to poll (GET /bookings/{id}); "
        "403 not_admitted while the show's waiting room is on and no Admission-Token",
        status=201,
        body=wire.BookRequest,
        response=wire.Booking,
        errors=WRITE_ERRORS,
        auth=CUSTOMER,
        headers=("Idempotency-Key", "Prefer", "Admission-Token"),
        accepted=wire.QueuedBooking,
    ),
    Endpoint(
        "POST",
        "/shows/{show_id}/queue",
        queue.join_queue,
        "Join the show's waiting room (joining again keeps the place); position is null "
        "until the draw at opening",
        status=201,
        response=wire.QueuePlace,
        errors=(401, 403, 404, 409, 429),
        auth=CUSTOMER,
    ),
    Endpoint(
        "GET",
        "/shows/{show_id}/queue",
        queue.queue_place,
        "The caller's place in the waiting room, or the admission token once admitted",
        response=wire.QueuePlace,
        errors=(401, 403, 404),
        auth=CUSTOMER_OR_ADMIN,
    ),
    Endpoint(
        "POST",
        "/holds/{hold_id}/extend",
        booking.extend_hold,
        "Extend a live hold (a bounded number of times, while the show is ON_SALE)",
        response=wire.Hold,
        errors=(401, 403, 404, 409, 429),
        auth=CUSTOMER,
    ),
    Endpoint(
        "DELETE",
        "/holds/{hold_id}",
        booking.release_hold,
        "Release a hold",
        status=204,
        errors=(401, 403, 404, 429),
        auth=CUSTOMER,
    ),
    Endpoint(
        "POST",
        "/holds/{hold_id}/confirm",
        booking.confirm_hold,
        "Confirm a hold into a booking (idempotent)",
        status=201,
        response=wire.Booking,
        errors=(401, 403, 404, 409, 422, 429),
        auth=CUSTOMER,
        headers=("Idempotency-Key",),
    ),
    Endpoint(
        "GET",
        "/bookings/{booking_id}",
        booking.get_booking,
        "One booking",
        response=wire.Booking,
        errors=(401, 403, 404),
        auth=CUSTOMER_OR_ADMIN,
    ),
    Endpoint(
        "DELETE",
        "/bookings/{booking_id}",
        booking.cancel_booking,
        "Cancel a booking; its seats become available (409 show_ended once the show has ENDED)",
        response=wire.Booking,
        errors=(401, 403, 404, 409, 429),
        auth=CUSTOMER_OR_ADMIN,
    ),
    Endpoint(
        "GET",
        "/me/bookings",
        booking.my_bookings,
        "The caller's bookings on every shard",
        response=wire.BookingList,
        errors=(401, 403),
        auth=CUSTOMER_OR_ADMIN,
    ),
    Endpoint(
        "GET",
        "/admin/bookings",
        admin.search_bookings,
        "The box office's search: bookings by reference, user, show_id or seat (with "
        "show_id), newest first, at most 200; 422 with no filter",
        response=wire.BookingList,
        errors=(401, 403, 422),
        auth=ADMIN,
        query=wire.BookingSearch,
    ),
    Endpoint(
        "POST",
        "/admin/shows",
        admin.create_show,
        "Create a show and its seats (the same Idempotency-Key again: the same show)",
        status=201,
        body=wire.CreateShow,
        response=wire.Show,
        errors=(400, 401, 403, 413, 422),
        auth=ADMIN,
        headers=("Idempotency-Key",),
    ),
    Endpoint(
        "DELETE",
        "/admin/shows/{show_id}",
        admin.delete_show,
        "Delete a show nobody has booked, live holds and all (409 show_has_bookings "
        "otherwise: cancel it instead)",
        status=204,
        errors=(401, 403, 404, 409),
        auth=ADMIN,
    ),
    Endpoint(
        "PATCH",
        "/admin/shows/{show_id}",
        admin.update_show,
        "Change a show; watchers are told. Status moves: SCHEDULED <-> ON_SALE, either -> "
        "ENDED, any but ENDED -> CANCELLED (409 invalid_status_change otherwise)",
        body=wire.UpdateShow,
        response=wire.Show,
        errors=(400, 401, 403, 404, 409, 422),
        auth=ADMIN,
    ),
    Endpoint(
        "POST",
        "/admin/shows/{show_id}/broadcast",
        admin.broadcast,
        "Send a message to everyone watching the show",
        status=202,
        body=wire.BroadcastRequest,
        response=wire.Status,
        errors=(400, 401, 403, 404, 422),
        auth=ADMIN,
    ),
    Endpoint(
        "POST",
        "/admin/shows/{show_id}/seats",
        admin.change_seats,
        "Take seats off sale (BLOCKED), keep them for a channel (RESERVED + channel) or put "
        "them back on general sale (AVAILABLE; no seats + a channel: the channel's seats); "
        "answers the seats changed, pushed live; 409 seats_unavailable for seats held or "
        "booked, 422 unknown_seats",
        body=wire.SeatStatusChange,
        response=wire.SeatsChanged,
        errors=(400, 401, 403, 404, 409, 413, 422),
        auth=ADMIN,
    ),
    Endpoint(
        "GET",
        "/admin/shows/{show_id}/audit",
        admin.seat_audit,
        "Every seat status change of the show, newest first (at most 1000 writes): who, "
        "when, from, to, the hold or booking, the request id; by seat and/or customer",
        response=wire.AuditTrail,
        errors=(401, 403, 404, 422),
        auth=ADMIN,
        query=wire.AuditQuery,
    ),
    Endpoint(
        "GET",
        "/admin/shows/{show_id}/report",
        admin.sales_report,
        "Sales report: seats by status, category and channel, bookings, revenue by "
        "category, live holds, seats sold per minute; CSV with Accept: text/csv",
        response=wire.SalesReport,
        errors=(401, 403, 404),
        auth=ADMIN,
    ),
]


# Starlette tries every route in turn until one matches: the seat writes of an on-sale
# rush go first rather than after a score of regular expressions
HOT_PATHS = ("/shows/{show_id}/holds", "/holds/{hold_id}", "/holds/{hold_id}/confirm")


# header parameters' schemas, for /openapi.json
HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "Idempotency-Key": IDEMPOTENCY_KEY,
    "Cache-Control": {"type": "string"},
    "Prefer": {"type": "string", "description": "respond-async: queue the booking (202)"},
    "Admission-Token": {"type": "string", "description": "the waiting room's admission"},
}


def api_routes() -> list[Route]:
    ordered = sorted(API, key=lambda e: e.path not in HOT_PATHS)  # stable: table order else
    by_path: dict[str, dict[str, Handler]] = {}
    for e in ordered:
        handler = authorized(e.handler, e.auth) if e.auth else e.handler
        by_path.setdefault(e.path, {})[e.method] = handler
    # one route per path, so a 405 (or OPTIONS) names every method the path has
    return [
        Route(
            path,
            handlers[next(iter(handlers))] if len(handlers) == 1 else by_method(handlers),
            methods=list(handlers),
        )
        for path, handlers in by_path.items()
    ] + [Route("/openapi.json", openapi_json, methods=["GET"])]


def by_method(handlers: dict[str, Handler]) -> Handler:
    async def dispatch(request: Request) -> Response:
        return await handlers[request.method](request)

    dispatch.__name__ = "_or_".join(h.__name__ for h in handlers.values())
    return dispatch


def openapi_document() -> dict[str, Any]:
    structs = {e.body for e in API if e.body} | {e.response for e in API if e.response}
    structs |= {e.accepted for e in API if e.accepted}
    structs.add(wire.Error)
    schemas, components = msgspec.json.schema_components(
        sorted(structs, key=lambda t: t.__name__), ref_template="#/components/schemas/{name}"
    )
    components["CreateShow"].update(wire.LAYOUT_RULE)
    components["HoldRequest"].update(wire.HOLD_RULE)
    ref = dict(zip(sorted(structs, key=lambda t: t.__name__), schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for e in API:
        op: dict[str, Any] = {"summary": e.summary, "operationId": e.handler.__name__}
        params = [
            {
                "name": part[1:-1],
                "in": "path",
                "required": True,
                "schema": {"type": "integer" if part == "{show_id}" else "string"},
            }
            for part in e.path.split("/")
            if part.startswith("{")
        ]
        params += [
            {"name": h, "in": "header", "required": False, "schema": HEADER_SCHEMAS[h]}
            for h in e.headers
        ]
        if e.query is not None:
            _, query_components = msgspec.json.schema_components([e.query])
            fields = query_components[e.query.__name__]["properties"]
            params += [
                {"name": name, "in": "query", "required": False, "schema": not_null(schema)}
                for name, schema in fields.items()
            ]
        if params:
            op["parameters"] = params
        if e.auth:
            op["security"] = [{"bearer": []}]
            op["description"] = f"Bearer token with role: {who(e)}."
        if e.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref[e.body]}},
                "description": f"JSON, at most {MAX_BODY // 1024} KiB",
            }
        responses: dict[str, Any] = {}
        if e.response is not None:
            responses[str(e.status)] = {
                "description": "OK",
                "content": {"application/json": {"schema": ref[e.response]}},
            }
        elif e.path == "/metrics":
            responses["200"] = {
                "description": "Prometheus text",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        else:
            responses[str(e.status)] = {"description": "No content"}
        if e.accepted is not None:
            responses["202"] = {
                "description": "Accepted (Prefer: respond-async)",
                "content": {"application/json": {"schema": ref[e.accepted]}},
            }
        for code in e.errors:
            responses[str(code)] = {
                "description": "Error",
                "content": {"application/json": {"schema": ref[wire.Error]}},
            }
        paths.setdefault(e.path, {})[e.method.lower()] = op
        op["responses"] = responses
    return {
        "openapi": "3.1.0",
        "info": {"title": "Modex Seatmap", "version": "0.1.0"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def who(e: Endpoint) -> str:
    return " or ".join(role.value for role in e.auth) or "anyone"


def not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: absent, not null, is how a query leaves one out."""
    kinds = [k for k in schema.get("anyOf", [schema]) if k.get("type") != "null"]
    return kinds[0] if len(kinds) == 1 else schema


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi_document())


def markdown_table() -> str:
    """The API at a glance, for README (`python -m app.http.api`); a test keeps README's copy
    equal to this, so the route table stays its one source."""
    lines = ["| method | path | who | success | errors | what |", "|---|---|---|---|---|---|"]
    for e in API:
        errors = ", ".join(str(code) for code in e.errors)
        summary = e.summary.replace("|", "\\|")
        cells = [e.method, f"`{e.path}`", who(e), str(e.status), errors, summary]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
