"""JWT (HS256) tokens: who is calling and in which role."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache

import jwt

from app.errors import Forbidden, Unauthorized


class Role(StrEnum):
    CUSTOMER = "customer"
    ADMIN = "admin"
    KIOSK = "kiosk"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: Role
    # sales channels (press, vip, ...) whose RESERVED seats this caller may hold and book
    channels: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


def mint_token(
    secret: str, user_id: str, role: Role, ttl: timedelta, channels: tuple[str, ...] = ()
) -> tuple[str, datetime]:
    expires_at = (datetime.now(UTC) + ttl).replace(microsecond=0)
    claims: dict[str, object] = {"sub": user_id, "role": role.value, "exp": expires_at}
    if channels:
        claims["channels"] = list(channels)
    return jwt.encode(claims, secret, algorithm="HS256"), expires_at


def guest_user_id() -> str:
    return f"guest-{secrets.token_urlsafe(9)}"


@lru_cache(maxsize=10_000)
def _decode(secret: str, token: str) -> tuple[Principal, float]:
    """Signature and claims, checked once per token: a customer sends the same token with
    every request. Failures raise, so only good tokens are cached."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "role", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("invalid token") from None
    sub, role, exp = claims.get("sub"), claims.get("role"), claims.get("exp")
    if not isinstance(sub, str) or not sub or not isinstance(role, str):
        raise Unauthorized("invalid token claims")
    if not isinstance(exp, int | float):
        raise Unauthorized("invalid token expiry")
    channels = claims.get("channels", [])
    if not isinstance(channels, list) or not all(
        isinstance(c, str) and 0 < len(c) <= 40 for c in channels
    ):
        raise Unauthorized("invalid token channels: a list of channel names")
    try:
        return Principal(sub, Role(role), tuple(channels[:20])), float(exp)
    except (TypeError, ValueError):
        raise Unauthorized(f"unknown role {role!r}") from None


def verify_token(secret: str, token: str) -> Principal:
    principal, expires = _decode(secret, token)
    if expires <= time.time():
        raise Unauthorized("token expired")
    return principal


def principal_from_header(secret: str, authorization: str | None) -> Principal:
    if not authorization:
        raise Unauthorized("missing bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    return verify_token(secret, token.strip())


def require_role(principal: Principal, *roles: Role) -> Principal:
    if principal.role not in roles:
        raise Forbidden(f"this needs the {' or '.join(r.value for r in roles)} role")
    return principal
