"""JWT (HS256) tokens: who is calling and in which role."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

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

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


def mint_token(secret: str, user_id: str, role: Role, ttl: timedelta) -> tuple[str, datetime]:
    expires_at = (datetime.now(UTC) + ttl).replace(microsecond=0)
    claims = {"sub": user_id, "role": role.value, "exp": expires_at}
    return jwt.encode(claims, secret, algorithm="HS256"), expires_at


def guest_user_id() -> str:
    return f"guest-{secrets.token_urlsafe(9)}"


def verify_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "role", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("invalid token") from None
    sub, role = claims.get("sub"), claims.get("role")
    if not isinstance(sub, str) or not sub or not isinstance(role, str):
        raise Unauthorized("invalid token claims")
    try:
        return Principal(sub, Role(role))
    except ValueError:
        raise Unauthorized(f"unknown role {role!r}") from None


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
