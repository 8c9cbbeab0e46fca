"""The edge of every handler: bounded body reading, msgspec decoding, JSON responses."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from app.errors import BodyTooLarge, InvalidBody, MalformedJson, NotFound
from app.wire import ShowId

MAX_BODY = 64 * 1024
S = TypeVar("S")
_encoder = msgspec.json.Encoder()
_ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise BodyTooLarge(f"body is over {MAX_BODY // 1024} KiB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge(f"body is over {MAX_BODY // 1024} KiB")
        chunks.append(chunk)
    return b"".join(chunks)


async def decode_body(request: Request, struct: type[S]) -> S:
    # the Content-Type is not checked: a JSON body sent by `curl -d` is still JSON
    body = await read_body(request)
    try:
        return msgspec.json.decode(body, type=struct)
    except msgspec.ValidationError as exc:
        raise InvalidBody(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise MalformedJson(f"body is not valid JSON: {exc}") from None


def path_show_id(request: Request) -> int:
    """Path ids are decoded like bodies: an id the database could not hold is a 404."""
    try:
        return msgspec.convert(request.path_params["show_id"], ShowId, strict=False)
    except msgspec.ValidationError:
        raise NotFound(f"show {request.path_params['show_id']!r} does not exist") from None


def path_client_id(request: Request, name: str) -> str:
    try:
        return msgspec.convert(request.path_params[name], _ClientId)
    except msgspec.ValidationError:
        raise NotFound(f"{name} does not exist") from None


IDEMPOTENCY_KEY_LENGTH = (1, 200)
IDEMPOTENCY_KEY = {
    "type": "string",
    "minLength": IDEMPOTENCY_KEY_LENGTH[0],
    "maxLength": IDEMPOTENCY_KEY_LENGTH[1],
}


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip()
    shortest, longest = IDEMPOTENCY_KEY_LENGTH
    if not shortest <= len(key) <= longest:
        raise InvalidBody(f"Idempotency-Key must be {shortest} to {longest} characters")
    return key
