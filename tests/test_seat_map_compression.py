"""The seat map in the coding a client accepts (app/compression.py): br, gzip or identity,
chosen by Accept-Encoding with its q-values, each the same JSON."""

from __future__ import annotations

import gzip
import json
from typing import Any, NamedTuple

import brotli
import httpx
import pytest

from app.compression import negotiate
from tests.support import create_show

DECODE = {"br": brotli.decompress, "gzip": gzip.decompress, "identity": lambda body: body}

# Accept-Encoding -> what is sent
NEGOTIATION = [
    (None, "identity"),
    ("", "identity"),
    ("gzip", "gzip"),
    ("br", "br"),
    ("gzip, br", "br"),  # equal q: the smaller
    ("gzip, deflate, br, zstd", "br"),  # what browsers send
    ("br;q=0.5, gzip", "gzip"),
    ("br;q=0.9, gzip;q=1.0", "gzip"),
    ("GZIP;Q=0.3", "gzip"),
    ("x-gzip", "gzip"),
    ("*", "br"),
    ("*;q=0.1, gzip;q=0.2", "gzip"),
    ("*, br;q=0", "gzip"),
    ("identity, gzip;q=0.5", "identity"),  # identity named with the higher q
    ("identity;q=0.5, br", "br"),
    ("deflate", "identity"),  # none of ours
    ("gzip;q=0, br;q=0", "identity"),  # both refused
    ("identity;q=0", "identity"),  # refused, but there is nothing else to send
    ("gzip;q=abc, br;q=2, br;q=nan", "identity"),  # malformed q-values count as refusals
    (";;, ,q=1,;q=0.5", "identity"),
]


class Sent(NamedTuple):
    status: int
    headers: httpx.Headers
    body: bytes  # as sent: httpx would decode it


async def raw_map(
    client: httpx.AsyncClient, url: str, accept_encoding: str | None, **headers: str
) -> Sent:
    """GET the map with this Accept-Encoding (None: no such header at all)."""
    request = client.build_request("GET", url, headers=headers)
    del request.headers["Accept-Encoding"]  # httpx's own
    if accept_encoding is not None:
        request.headers["Accept-Encoding"] = accept_encoding
    response = await client.send(request, stream=True)
    try:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
    return Sent(response.status_code, response.headers, body)


@pytest.fixture
async def big_show(client: httpx.AsyncClient) -> dict[str, Any]:
    return await create_show(client, rows=20, seats_per_row=50)


async def test_each_coding_carries_the_same_map(
    client: httpx.AsyncClient, big_show: dict[str, Any]
) -> None:
    url = f"/shows/{big_show['id']}/seats"
    plain = await raw_map(client, url, None)
    assert plain.status == 200
    assert "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "Accept-Encoding"
    seat_map = json.loads(plain.body)
    assert len(seat_map["seats"]) == 1000
    for coding in ("gzip", "br"):
        for headers in ({}, {"Cache-Control": "no-cache"}):
            coded = await raw_map(client, url, coding, **headers)
            assert coded.status == 200
            assert coded.headers["content-encoding"] == coding
            assert coded.headers["vary"] == "Accept-Encoding"
            assert coded.headers["content-type"] == "application/json"
            assert int(coded.headers["content-length"]) == len(coded.body)
            assert len(coded.body) < len(plain.body) / 5
            assert DECODE[coding](coded.body) == plain.body


async def test_a_kept_map_is_sent_as_the_same_bytes_in_each_coding(
    client: httpx.AsyncClient, big_show: dict[str, Any]
) -> None:
    url = f"/shows/{big_show['id']}/seats"
    for coding in ("gzip", "br", None):
        first, again = [(await raw_map(client, url, coding)).body for _ in range(2)]
        assert first == again


@pytest.mark.parametrize(("accept_encoding", "coding"), NEGOTIATION)
def test_the_coding_follows_accept_encoding(accept_encoding: str | None, coding: str) -> None:
    assert negotiate(accept_encoding) == coding


async def test_the_server_sends_the_negotiated_coding(
    client: httpx.AsyncClient, show: dict[str, Any]
) -> None:
    url = f"/shows/{show['id']}/seats"
    plain = (await raw_map(client, url, None)).body
    for accept_encoding, coding in NEGOTIATION:
        response = await raw_map(client, url, accept_encoding)
        assert response.status == 200, (accept_encoding, response.body[:200])
        assert response.headers.get("content-encoding", "identity") == coding, accept_encoding
        assert DECODE[coding](response.body) == plain


async def test_httpx_reads_the_compressed_map_as_json(
    client: httpx.AsyncClient, show: dict[str, Any]
) -> None:
    """An ordinary client, with its default Accept-Encoding (gzip, deflate, br, zstd)."""
    response = await client.get(f"/shows/{show['id']}/seats")
    assert response.headers["content-encoding"] == "br"
    assert response.json()["show_id"] == show["id"]
