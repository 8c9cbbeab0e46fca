"""A table of bad requests: each gets a clear 4xx with an `error` code, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import auth

CUSTOMER = auth("picky-customer")
ADMIN = auth("admin", "admin")
ELEVEN = [f"A{n}" for n in range(1, 12)]
GOOD_SHOW = {"title": "T", "venue": "V", "starts_at": "2027-01-01T20:00:00Z"}

# (name, method, path ({show} is a real show's id), body: json value or raw bytes, headers,
#  status, error code)
CASES: list[tuple[str, str, str, Any, dict[str, str], int, str]] = [
    (
        "truncated json",
        "POST",
        "/shows/{show}/holds",
        b'{"seats":',
        CUSTOMER,
        400,
        "malformed_json",
    ),
    ("not json", "POST", "/shows/{show}/holds", b"seats=A1", CUSTOMER, 400, "malformed_json"),
    ("empty body", "POST", "/shows/{show}/holds", b"", CUSTOMER, 400, "malformed_json"),
    ("array body", "POST", "/shows/{show}/holds", [], CUSTOMER, 422, "invalid_body"),
    (
        "seats not a list",
        "POST",
        "/shows/{show}/holds",
        {"seats": "A1"},
        CUSTOMER,
        422,
        "invalid_body",
    ),
    ("no seats", "POST", "/shows/{show}/holds", {"seats": []}, CUSTOMER, 422, "invalid_body"),
    (
        "eleven seats",
        "POST",
        "/shows/{show}/holds",
        {"seats": ELEVEN},
        CUSTOMER,
        422,
        "invalid_body",
    ),
    (
        "lowercase label",
        "POST",
        "/shows/{show}/holds",
        {"seats": ["a1"]},
        CUSTOMER,
        422,
        "invalid_body",
    ),
    ("seat zero", "POST", "/shows/{show}/holds", {"seats": ["A0"]}, CUSTOMER, 422, "invalid_body"),
    (
        "four row letters",
        "POST",
        "/shows/{show}/holds",
        {"seats": ["AAAA1"]},
        CUSTOMER,
        422,
        "invalid_body",
    ),
    (
        "sql in label",
        "POST",
        "/shows/{show}/holds",
        {"seats": ["A1' OR '1'='1"]},
        CUSTOMER,
        422,
        "invalid_body",
    ),
    ("number label", "POST", "/shows/{show}/holds", {"seats": [1]}, CUSTOMER, 422, "invalid_body"),
    (
        "duplicate seats",
        "POST",
        "/shows/{show}/holds",
        {"seats": ["A1", "A1"]},
        CUSTOMER,
        422,
        "invalid_body",
    ),
    (
        "unknown field",
        "POST",
        "/shows/{show}/holds",
        {"seats": ["A1"], "price": 0},
        CUSTOMER,
        422,
        "invalid_body",
    ),
    (
        "unknown seat",
        "POST",
        "/shows/{show}/holds",
        {"seats": ["A1", "Z9"]},
        CUSTOMER,
        422,
        "unknown_seats",
    ),
    (
        "body over 64 KiB",
        "POST",
        "/shows/{show}/holds",
        b'{"seats":["A1"],"pad":"' + b"x" * 70_000 + b'"}',
        CUSTOMER,
        413,
        "body_too_large",
    ),
    (
        "unknown show",
        "POST",
        "/shows/987654321987/holds",
        {"seats": ["A1"]},
        CUSTOMER,
        404,
        "not_found",
    ),
    (
        "show id not a number",
        "POST",
        "/shows/abc/holds",
        {"seats": ["A1"]},
        CUSTOMER,
        404,
        "not_found",
    ),
    ("show id negative", "GET", "/shows/-1/seats", None, {}, 404, "not_found"),
    ("show id too big", "GET", "/shows/99999999999999999999999/seats", None, {}, 404, "not_found"),
    ("show id zero", "GET", "/shows/0", None, {}, 404, "not_found"),
    ("unknown show map", "GET", "/shows/987654321987/seats", None, {}, 404, "not_found"),
    (
        "unknown show counts",
        "GET",
        "/shows/987654321987/availability",
        None,
        {},
        404,
        "not_found",
    ),
    ("malformed hold id", "POST", "/holds/garbage/confirm", None, CUSTOMER, 404, "not_found"),
    (
        "hold of unknown show",
        "POST",
        "/holds/987654321987.AAAAAAAAAAAAAAAAAAAAAAAA/confirm",
        None,
        CUSTOMER,
        404,
        "not_found",
    ),
    (
        "unknown hold",
        "DELETE",
        "/holds/{show}.AAAAAAAAAAAAAAAAAAAAAAAA",
        None,
        CUSTOMER,
        404,
        "not_found",
    ),
    (
        "unknown booking",
        "GET",
        "/bookings/{show}.AAAAAAAAAAAAAAAAAAAAAAAA",
        None,
        CUSTOMER,
        404,
        "not_found",
    ),
    (
        "idempotency key too long",
        "POST",
        "/shows/{show}/book",
        {"seatNumbers": ["A1"]},
        {**CUSTOMER, "Idempotency-Key": "k" * 300},
        422,
        "invalid_body",
    ),
    (
        "book with hold's field",
        "POST",
        "/shows/{show}/book",
        {"seats": ["A1"]},
        CUSTOMER,
        422,
        "invalid_body",
    ),
    (
        "book nothing",
        "POST",
        "/shows/{show}/book",
        {"seatNumbers": []},
        CUSTOMER,
        422,
        "invalid_body",
    ),
    (
        "show without title",
        "POST",
        "/admin/shows",
        {**GOOD_SHOW, "title": None, "rows": 1, "seats_per_row": 1},
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "show time without zone",
        "POST",
        "/admin/shows",
        {**GOOD_SHOW, "starts_at": "2027-01-01T20:00:00", "rows": 1, "seats_per_row": 1},
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "show time not a time",
        "POST",
        "/admin/shows",
        {**GOOD_SHOW, "starts_at": "tomorrow", "rows": 1, "seats_per_row": 1},
        ADMIN,
        422,
        "invalid_body",
    ),
    ("show without layout", "POST", "/admin/shows", GOOD_SHOW, ADMIN, 422, "invalid_body"),
    (
        "NUL in a show's title",
        "POST",
        "/admin/shows",
        {**GOOD_SHOW, "title": "a\u0000b", "rows": 1, "seats_per_row": 1},
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "NUL in a section's category",
        "POST",
        "/admin/shows",
        {
            **GOOD_SHOW,
            "sections": [{"name": "S", "rows": 1, "seats_per_row": 1, "category": "\u0000"}],
        },
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "NUL in a changed title",
        "PATCH",
        "/admin/shows/{show}",
        {"status": "CANCELLED", "title": "x\u0000y"},
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "layout given as null",
        "POST",
        "/admin/shows",
        {
            **GOOD_SHOW,
            "rows": None,
            "seats_per_row": None,
            "sections": [{"name": "S", "rows": 1, "seats_per_row": 1}],
        },
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "seat label with a trailing newline",
        "POST",
        "/shows/{show}/holds",
        {"seats": ["A1\n"]},
        CUSTOMER,
        422,
        "invalid_body",
    ),
    (
        "seat per customer limit of zero",
        "POST",
        "/admin/shows",
        {**GOOD_SHOW, "rows": 1, "seats_per_row": 1, "max_seats_per_customer": 0},
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "show with two layouts",
        "POST",
        "/admin/shows",
        {
            **GOOD_SHOW,
            "rows": 1,
            "seats_per_row": 1,
            "sections": [{"name": "S", "rows": 1, "seats_per_row": 1}],
        },
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "show rows without seats",
        "POST",
        "/admin/shows",
        {**GOOD_SHOW, "rows": 3},
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "show zero rows",
        "POST",
        "/admin/shows",
        {**GOOD_SHOW, "rows": 0, "seats_per_row": 5},
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "show too big",
        "POST",
        "/admin/shows",
        {**GOOD_SHOW, "rows": 700, "seats_per_row": 9999},
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "duplicate sections",
        "POST",
        "/admin/shows",
        {**GOOD_SHOW, "sections": [{"name": "S", "rows": 1, "seats_per_row": 1}] * 2},
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "unknown show status",
        "POST",
        "/admin/shows",
        {**GOOD_SHOW, "rows": 1, "seats_per_row": 1, "status": "OPEN"},
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "hold seconds too short",
        "POST",
        "/admin/shows",
        {**GOOD_SHOW, "rows": 1, "seats_per_row": 1, "hold_seconds": 1},
        ADMIN,
        422,
        "invalid_body",
    ),
    ("patch nothing", "PATCH", "/admin/shows/{show}", {}, ADMIN, 422, "invalid_body"),
    (
        "patch bad status",
        "PATCH",
        "/admin/shows/{show}",
        {"status": "NOPE"},
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "patch unknown show",
        "PATCH",
        "/admin/shows/987654321987",
        {"title": "x"},
        ADMIN,
        404,
        "not_found",
    ),
    (
        "empty broadcast",
        "POST",
        "/admin/shows/{show}/broadcast",
        {"message": ""},
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "huge broadcast",
        "POST",
        "/admin/shows/{show}/broadcast",
        {"message": "x" * 5000},
        ADMIN,
        422,
        "invalid_body",
    ),
    (
        "broadcast to unknown show",
        "POST",
        "/admin/shows/987654321987/broadcast",
        {"message": "hi"},
        ADMIN,
        404,
        "not_found",
    ),
    ("wrong method", "PUT", "/shows", None, {}, 405, "method_not_allowed"),
    ("unknown path", "GET", "/no/such/thing", None, {}, 404, "not_found"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_bad_request_gets_a_clear_4xx(
    client: httpx.AsyncClient,
    show: dict[str, Any],
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    url = path.replace("{show}", str(show["id"]))
    if isinstance(body, bytes):
        response = await client.request(
            method, url, content=body, headers={**headers, "Content-Type": "application/json"}
        )
    else:
        response = await client.request(method, url, json=body, headers=headers)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"] == code, payload
    assert isinstance(payload["message"], str) and payload["message"]
    if code == "unknown_seats":
        assert payload["seats"] == ["Z9"]


async def test_bad_input_changed_nothing(client: httpx.AsyncClient, show: dict[str, Any]) -> None:
    for case in CASES:
        _, method, path, body, headers, _, _ = case
        url = path.replace("{show}", str(show["id"]))
        if isinstance(body, bytes):
            await client.request(method, url, content=body, headers=headers)
        else:
            await client.request(method, url, json=body, headers=headers)
    seats = (await client.get(f"/shows/{show['id']}/seats")).json()["seats"]
    assert {seat["status"] for seat in seats} == {"AVAILABLE"}
    unchanged = (await client.get(f"/shows/{show['id']}")).json()
    assert (unchanged["title"], unchanged["status"]) == (show["title"], "ON_SALE")
    assert {seat["version"] for seat in seats} == {1}
